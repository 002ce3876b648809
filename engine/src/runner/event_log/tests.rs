// Helpers of the tests below, which unwrap like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{PermissionsExt as _, symlink};

use super::file::GENERATIONS;
use super::redact::REDACTED;
use super::*;
use serde_json::json;

/// A folder of the test's own, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-log-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A file standing for `~/.bashrc`: what a planted link points at.
    fn victim(&self) -> PathBuf {
        let victim = self.path("bashrc");
        std::fs::write(&victim, "export PS1='$ '\n").unwrap();
        victim
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const VICTIM: &str = "export PS1='$ '\n";

#[test]
fn writes_one_json_object_per_line() {
    let scratch = Scratch::new("lines");
    let path = scratch.path("runner.jsonl");
    let log = EventLog::open(&path, vec![]).unwrap();
    log.log("kandan.control", json!({"type": "start_turn"}));
    log.log("codex.notification", json!({"method": "turn/started"}));
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event"], "kandan.control");
    assert_eq!(lines[1]["method"], "turn/started");
    assert!(lines[0]["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn tokens_never_reach_the_file() {
    let scratch = Scratch::new("secrets");
    let path = scratch.path("runner.jsonl");
    let token = "eyJhbGciOiJIUzI1NiJ9.secret-claims.signature";
    let log = EventLog::open(&path, vec![token.into()]).unwrap();
    log.log(
        "kandan.control",
        json!({"control": {"type": "start_local_editor", "collaboration": {"bootstrapToken": "bt-123"}},
               "url": format!("ws://h/socket/websocket?token={token}"),
               "nested": [{"Authorization": "Bearer abc"}],
               "note": format!("quoted {token} in text")}),
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(token), "{text}");
    assert!(!text.contains("bt-123"), "{text}");
    assert!(!text.contains("Bearer abc"), "{text}");
    assert_eq!(text.matches(REDACTED).count(), 4, "{text}");
}

#[test]
#[cfg(target_os = "linux")]
fn a_full_disk_does_not_stop_the_runner() {
    // /dev/full accepts opens and fails every write with ENOSPC.
    let log = EventLog::open(Path::new("/dev/full"), vec![]).unwrap();
    for n in 0..3 {
        log.log("x", json!({ "n": n }));
    }
    let sink = log.sink.lock().unwrap();
    assert!(sink.failing);
    assert_eq!(sink.dropped, 3);
}

#[test]
fn a_link_at_the_name_is_refused_and_its_target_left_alone() {
    let scratch = Scratch::new("symlink");
    let victim = scratch.victim();
    let path = scratch.path("runner.jsonl");
    symlink(&victim, &path).unwrap();
    let error = EventLog::open(&path, vec![]).err().unwrap();
    assert!(matches!(error, EventLogError::Symlink { .. }), "{error:?}");
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM);

    // A dangling link: O_CREAT alone would create its target.
    let dangling = scratch.path("dangling.jsonl");
    let target = scratch.path("created-through-the-link");
    symlink(&target, &dangling).unwrap();
    assert!(matches!(
        EventLog::open(&dangling, vec![]),
        Err(EventLogError::Symlink { .. })
    ));
    assert!(!target.exists());
}

#[test]
fn a_hard_link_fifo_or_folder_at_the_name_is_refused() {
    let scratch = Scratch::new("not-own-file");
    let victim = scratch.victim();
    let linked = scratch.path("linked.jsonl");
    std::fs::hard_link(&victim, &linked).unwrap();
    let error = EventLog::open(&linked, vec![]).err().unwrap();
    assert!(
        matches!(error, EventLogError::HardLinked { .. }),
        "{error:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM);
    assert_eq!(mode(&victim), 0o644, "the victim's mode was not touched");

    // Nobody reads the FIFO: opening it must fail rather than hang.
    let fifo = scratch.path("fifo.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let error = EventLog::open(&fifo, vec![]).err().unwrap();
    assert!(matches!(error, EventLogError::NotAFile { .. }), "{error:?}");

    let folder = scratch.path("folder.jsonl");
    std::fs::create_dir(&folder).unwrap();
    let error = EventLog::open(&folder, vec![]).err().unwrap();
    assert!(matches!(error, EventLogError::NotAFile { .. }), "{error:?}");
}

#[test]
fn the_file_is_private_in_a_private_folder() {
    let scratch = Scratch::new("modes");
    let path = scratch.path("state/linzumi/logs/runner.jsonl");
    let log = EventLog::open(&path, vec![]).unwrap();
    log.log("x", json!({}));
    assert_eq!(mode(&path), 0o600);
    for folder in ["state", "state/linzumi", "state/linzumi/logs"] {
        assert_eq!(mode(&scratch.path(folder)), 0o700, "{folder}");
    }

    // A log a person (or an earlier version) left readable by others is made private.
    let open = scratch.path("open.jsonl");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    EventLog::open(&open, vec![]).unwrap();
    assert_eq!(mode(&open), 0o600);
}

#[test]
fn an_oversized_event_is_cut_or_summarised_within_the_line_limit() {
    let scratch = Scratch::new("oversized");
    let path = scratch.path("runner.jsonl");
    let log = EventLog::open(&path, vec![]).unwrap();
    // Control characters are the worst case for JSON escaping (six bytes each).
    let padding: String = "\u{1}".repeat(200_000);
    log.log(
        "kandan.control",
        json!({"control": {"type": "x", "padding": padding}}),
    );
    // Many short texts: nothing to cut, too long all the same.
    let many: Vec<String> = (0..5_000).map(|n| format!("item-{n}")).collect();
    log.log(
        "kandan.control",
        json!({"control": {"type": "y", "items": many}}),
    );
    log.log("after", json!({}));
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        assert!(line.len() < MAX_LINE_BYTES, "{}", line.len());
    }
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["truncated"], true);
    assert_eq!(lines[0]["control"]["type"], "x");
    let cut = lines[0]["control"]["padding"].as_str().unwrap();
    assert!(cut.ends_with("… [cut from 200000 bytes]"), "{cut}");
    assert_eq!(lines[1]["event"], "kandan.control");
    assert_eq!(lines[1]["truncated"], true);
    assert!(lines[1]["bytes"].as_u64().unwrap() > 50_000);
    assert!(
        lines[1]["head"]
            .as_str()
            .unwrap()
            .starts_with("{\"control\"")
    );
    assert_eq!(lines[2]["event"], "after");
}

fn small(path: &Path) -> EventLog {
    EventLog::open_rotating_at(path, vec![], 1024).unwrap()
}

#[test]
fn the_log_rotates_by_size_and_keeps_three_generations() {
    let scratch = Scratch::new("rotation");
    let path = scratch.path("runner.jsonl");
    let log = small(&path);
    for n in 0..200 {
        log.log("tick", json!({ "n": n }));
    }
    let mut seen = Vec::new();
    for n in (1..=GENERATIONS).rev() {
        seen.extend(lines_of(&file::generation(&path, n)));
    }
    seen.extend(lines_of(&path));
    for file in [path.clone(), file::generation(&path, 1)] {
        let len = std::fs::metadata(&file).unwrap().len();
        assert!(len <= 1024, "{}: {len}", file.display());
    }
    assert!(!file::generation(&path, GENERATIONS + 1).exists());
    // The newest lines, whole and in order, up to the last one.
    let numbers: Vec<u64> = seen
        .iter()
        .map(|line| line["n"].as_u64().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{numbers:?}"
    );
    assert_eq!(numbers.last(), Some(&199));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn links_planted_while_running_or_at_rotation_are_not_followed() {
    let scratch = Scratch::new("planted");
    let victim = scratch.victim();
    let path = scratch.path("runner.jsonl");
    let log = small(&path);
    log.log("before", json!({}));
    // While running: the log's own name, and every generation rotation moves into.
    std::fs::remove_file(&path).unwrap();
    symlink(&victim, &path).unwrap();
    for n in 1..=GENERATIONS {
        symlink(&victim, file::generation(&path, n)).unwrap();
    }
    for n in 0..100 {
        log.log("tick", json!({ "n": n }));
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM);
    // Rotation replaced the links with files of its own, and logging went on.
    assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    assert_eq!(lines_of(&path).last().unwrap()["n"], 99);

    // A link planted after a failed write, when the log is opened again.
    let sink_reopens = EventLog::open(&scratch.path("reopen.jsonl"), vec![]).unwrap();
    sink_reopens.sink.lock().unwrap().file = None;
    std::fs::remove_file(scratch.path("reopen.jsonl")).unwrap();
    symlink(&victim, scratch.path("reopen.jsonl")).unwrap();
    sink_reopens.log("x", json!({}));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM);
    assert!(sink_reopens.sink.lock().unwrap().failing);
}

#[test]
#[cfg(target_os = "linux")]
fn the_default_log_is_one_file_per_runner_in_the_state_folder() {
    let path = default_path("../../etc/passwd").unwrap();
    assert_eq!(path.file_name().unwrap(), "______etc_passwd.jsonl");
    assert_eq!(
        path.parent().unwrap(),
        dirs::state_dir().unwrap().join("linzumi").join("logs")
    );
    assert_eq!(
        default_path("").unwrap().file_name().unwrap(),
        "runner.jsonl"
    );
}
