//! `instance_started` / `instance_stopped`: the runner tells Kandan when its Codex
//! app-server comes and goes (seed `protocol.ts` names both events; where the seed
//! pushes them is not published, so the emit points and payloads are [designed],
//! docs/protocol.md §4.2).
//!
//! `instance_started` carries the Codex threads found in the shared folders (seed
//! `discoverCodexThreads`: `thread/list`, each thread as `{id, preview, cwd, createdAt,
//! updatedAt, status}`). Codex keeps every thread of the computer's user in one history,
//! so threads whose cwd lies outside what the owner shares are left out: a thread's
//! preview is the first thing someone typed into it.
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::allowed_cwd::AllowedRoot;
use crate::codex::CodexClient;
use crate::codex::protocol::methods;

pub const STARTED: &str = "instance_started";
pub const STOPPED: &str = "instance_stopped";

/// How many of the newest threads discovery reads (one `thread/list` page).
pub const DISCOVERY_LIMIT: usize = 50;
/// Discovery never holds up the event longer than this; the threads are then `[]`.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the app-server went away, as `instance_stopped.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It exited or stopped answering; the runner starts it again.
    Exited,
    /// `kill_instance`: the runner restarts it on purpose.
    Killed,
    /// The runner itself stops.
    RunnerStopped,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::Exited => "exited",
            StopReason::Killed => "killed",
            StopReason::RunnerStopped => "runner_stopped",
        }
    }
}

pub fn stopped_payload(instance_id: &str, reason: StopReason, message: Option<&str>) -> Value {
    json!({"instanceId": instance_id, "reason": reason.as_str(), "message": message})
}

pub fn started_payload(
    instance_id: &str,
    cwd: &Path,
    pid: Option<u32>,
    restart: bool,
    threads: Vec<Value>,
) -> Value {
    json!({"instanceId": instance_id, "cwd": cwd, "pid": pid, "restart": restart,
        "threads": threads})
}

/// The newest threads Codex has for the shared folders; `[]` when Codex does not answer.
pub async fn discover_threads(codex: &CodexClient, shared: &[AllowedRoot]) -> Vec<Value> {
    let params = json!({"limit": DISCOVERY_LIMIT});
    let call = codex.call::<_, Value>(methods::THREAD_LIST, &params);
    match tokio::time::timeout(DISCOVERY_TIMEOUT, call).await {
        Ok(Ok(page)) => threads_within(&page, shared),
        _ => Vec::new(),
    }
}

/// The page's threads (seed field mapping), keeping those inside a shared root.
pub fn threads_within(page: &Value, shared: &[AllowedRoot]) -> Vec<Value> {
    let Some(data) = page.get("data").and_then(Value::as_array) else {
        return Vec::new();
    };
    data.iter()
        .filter(|thread| thread.is_object())
        .map(|thread| {
            json!({
                "id": thread["id"].as_str().unwrap_or(""),
                "preview": thread["preview"].as_str().unwrap_or(""),
                "cwd": thread["cwd"].as_str().unwrap_or(""),
                "createdAt": thread["createdAt"].as_i64(),
                "updatedAt": thread["updatedAt"].as_i64(),
                "status": thread.get("status").filter(|status| status.is_object()),
            })
        })
        .filter(|thread| thread["id"] != "")
        .filter(|thread| inside(thread["cwd"].as_str().unwrap_or(""), shared))
        .collect()
}

fn inside(cwd: &str, shared: &[AllowedRoot]) -> bool {
    if cwd.is_empty() {
        return false;
    }
    // A thread's folder may be gone since; compare its recorded path as well.
    let path = Path::new(cwd);
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    shared
        .iter()
        .any(|root| canonical.starts_with(&root.canonical) || path.starts_with(&root.configured))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(path: &Path) -> AllowedRoot {
        AllowedRoot {
            configured: path.display().to_string(),
            canonical: std::fs::canonicalize(path).unwrap(),
        }
    }

    #[test]
    fn only_threads_inside_the_shared_folders_are_listed() {
        let shared = tempfile::tempdir().unwrap();
        let inner = shared.path().join("app");
        std::fs::create_dir(&inner).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let page = json!({"data": [
            {"id": "t1", "preview": "fix the build", "cwd": inner, "createdAt": 1,
             "updatedAt": 2, "status": {"type": "notLoaded"}, "extra": true},
            {"id": "t2", "preview": "my private notes", "cwd": elsewhere.path()},
            {"id": "", "cwd": inner},
            {"id": "t3", "cwd": shared.path().display().to_string() + "-sibling"},
            "not a thread",
        ]});
        let threads = threads_within(&page, &[root(shared.path())]);
        assert_eq!(
            threads,
            [
                json!({"id": "t1", "preview": "fix the build", "cwd": inner, "createdAt": 1,
                "updatedAt": 2, "status": {"type": "notLoaded"}})
            ]
        );
    }

    #[test]
    fn a_page_without_data_lists_nothing() {
        assert!(threads_within(&json!({"error": 1}), &[]).is_empty());
    }

    #[test]
    fn stop_reasons_are_named() {
        assert_eq!(
            stopped_payload("i", StopReason::Killed, None),
            json!({"instanceId": "i", "reason": "killed", "message": null})
        );
    }
}
