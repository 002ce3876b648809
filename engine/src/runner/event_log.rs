//! The runner's JSONL event log (`--log-file`, default
//! `<cwd>/.kandan-local-codex-runner.log`): one object per line with `ts` and `event`.
//!
//! Secrets never reach the file: fields named like credentials are replaced, and any
//! occurrence of a known secret (the access token) anywhere in a line is masked too.
//! A failing write (a full disk, a removed folder) never stops the runner: the first
//! failure is reported once, later lines are counted, and logging resumes by itself. A
//! line is written whole or not at all.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::warn;

pub const DEFAULT_FILE_NAME: &str = ".kandan-local-codex-runner.log";
const REDACTED: &str = "[REDACTED]";
/// Keys whose values are credentials wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "token",
    "accesstoken",
    "access_token",
    "authorization",
    "bootstraptoken",
    "bootstrap_token",
    "refresh_token",
];

pub struct EventLog {
    path: Option<PathBuf>,
    secrets: Vec<String>,
    sink: Mutex<Sink>,
}

struct Sink {
    file: Option<File>,
    failing: bool,
    dropped: u64,
}

impl EventLog {
    /// A log writing to `path`; the file is created (or appended to) on first use.
    pub fn open(path: &Path, secrets: Vec<String>) -> EventLog {
        EventLog {
            path: Some(path.to_owned()),
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            sink: Mutex::new(Sink {
                file: None,
                failing: false,
                dropped: 0,
            }),
        }
    }

    /// A log that writes nothing (tests, embedded uses).
    pub fn disabled() -> EventLog {
        EventLog {
            path: None,
            secrets: Vec::new(),
            sink: Mutex::new(Sink {
                file: None,
                failing: false,
                dropped: 0,
            }),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends `{"ts", "event", ...fields}`.
    pub fn log(&self, event: &str, fields: Value) {
        let Some(path) = &self.path else {
            return;
        };
        let mut line = Map::new();
        line.insert(
            "ts".into(),
            Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
        );
        line.insert("event".into(), Value::String(event.into()));
        if let Value::Object(fields) = redact_keys(fields) {
            line.extend(fields);
        }
        let mut text = Value::Object(line).to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text.push('\n');
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        sink.write(path, text.as_bytes());
    }
}

impl Sink {
    fn write(&mut self, path: &Path, bytes: &[u8]) {
        if self.file.is_none() {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => self.file = Some(file),
                Err(error) => return self.failed(path, &error),
            }
        }
        let result = match self.file.as_mut() {
            Some(file) => append_whole(file, bytes),
            None => Ok(()),
        };
        match result {
            Ok(()) if self.failing => {
                warn!(path = %path.display(), dropped = self.dropped, "the event log is writable again");
                self.failing = false;
                self.dropped = 0;
            }
            Ok(()) => {}
            Err(error) => {
                // Reopen next time: the file may have been removed or the disk freed.
                self.file = None;
                self.failed(path, &error);
            }
        }
    }

    fn failed(&mut self, path: &Path, error: &std::io::Error) {
        if !self.failing {
            warn!(path = %path.display(), %error, "cannot write the event log; the runner carries on without it");
        }
        self.failing = true;
        self.dropped += 1;
    }
}

/// Appends `bytes` whole or not at all: a write cut short (a full disk) is taken back, so
/// the file never holds half a line for the next line to run into.
fn append_whole(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    let start = file.metadata()?.len();
    file.write_all(bytes).inspect_err(|_| {
        let _ = file.set_len(start);
    })
}

fn redact_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    if SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) && !value.is_null()
                    {
                        (key, Value::String(REDACTED.into()))
                    } else {
                        (key, redact_keys(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_log(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("linzumi-log-{name}-{}.jsonl", std::process::id()))
    }

    #[test]
    fn writes_one_json_object_per_line() {
        let path = temp_log("lines");
        let _ = std::fs::remove_file(&path);
        let log = EventLog::open(&path, vec![]);
        log.log("kandan.control", json!({"type": "start_turn"}));
        log.log("codex.notification", json!({"method": "turn/started"}));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "kandan.control");
        assert_eq!(lines[1]["method"], "turn/started");
        assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn tokens_never_reach_the_file() {
        let path = temp_log("secrets");
        let _ = std::fs::remove_file(&path);
        let token = "eyJhbGciOiJIUzI1NiJ9.secret-claims.signature";
        let log = EventLog::open(&path, vec![token.into()]);
        log.log(
            "kandan.control",
            json!({"control": {"type": "start_local_editor", "collaboration": {"bootstrapToken": "bt-123"}},
                   "url": format!("ws://h/socket/websocket?token={token}"),
                   "nested": [{"Authorization": "Bearer abc"}]}),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(token), "{text}");
        assert!(!text.contains("bt-123"), "{text}");
        assert!(!text.contains("Bearer abc"), "{text}");
        assert_eq!(text.matches(REDACTED).count(), 3, "{text}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_does_not_stop_the_runner() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let log = EventLog::open(Path::new("/dev/full"), vec![]);
        for n in 0..3 {
            log.log("x", json!({ "n": n }));
        }
        let sink = log.sink.lock().unwrap();
        assert!(sink.failing);
        assert_eq!(sink.dropped, 3);
    }
}
