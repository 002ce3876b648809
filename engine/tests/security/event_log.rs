//! The event log as a way out of the sandbox or a place secrets leak: a link planted at
//! its name (before a start and while running, the way a command Codex runs in the
//! shared folder could), who else may read it, credentials and contents in what it
//! records, and a flood of huge controls.
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use linzumi_engine::runner::event_log::{self, EventLogError, MAX_LINE_BYTES};
use linzumi_engine::runner::{Runner, RunnerError};
use serde_json::json;

use crate::support::{Harness, RUNNER_ID, TOPIC, WAIT, mock};

/// What a planted link points at: a file of the user's outside the shared folder.
const BASHRC: &str = "# the user's own shell profile\nexport PS1='$ '\n";

/// A folder outside the project standing for the user's home.
struct Home(PathBuf);

impl Home {
    fn new(name: &str) -> Home {
        let dir = std::env::temp_dir().join(format!(
            "linzumi-log-home-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".bashrc"), BASHRC).unwrap();
        std::fs::set_permissions(dir.join(".bashrc"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        Home(dir)
    }

    fn bashrc(&self) -> PathBuf {
        self.0.join(".bashrc")
    }

    fn assert_untouched(&self) {
        assert_eq!(
            std::fs::read_to_string(self.bashrc()).unwrap(),
            BASHRC,
            "the log was written through the link"
        );
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_symlink())
}

/// A `--log-file` that is a symbolic link (or a second hard link) to a file of the
/// user's: the start is refused before anything connects, with an error that says why,
/// and the file is unchanged.
#[tokio::test]
async fn a_log_file_that_is_a_link_is_refused_at_start() {
    let harness = Harness::new("log-link-refused").await;
    let home = Home::new("refused");
    symlink(home.bashrc(), &harness.log_file).unwrap();
    let error = match Runner::start(harness.options()).await {
        Ok(_) => panic!("a runner started logging through a link"),
        Err(error) => error,
    };
    assert!(
        matches!(error, RunnerError::EventLog(EventLogError::Symlink { .. })),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("symbolic link")
            && message.contains(&harness.log_file.display().to_string()),
        "{message}"
    );
    assert!(harness.kandan.joins().is_empty(), "it connected first");
    home.assert_untouched();

    std::fs::remove_file(&harness.log_file).unwrap();
    std::fs::hard_link(home.bashrc(), &harness.log_file).unwrap();
    let error = match Runner::start(harness.options()).await {
        Ok(_) => panic!("a runner started logging through a hard link"),
        Err(error) => error,
    };
    assert!(
        matches!(
            error,
            RunnerError::EventLog(EventLogError::HardLinked { .. })
        ),
        "{error:?}"
    );
    home.assert_untouched();
    assert_eq!(
        std::fs::metadata(home.bashrc()).unwrap().mode() & 0o777,
        0o644,
        "the profile's mode was not changed"
    );
}

/// The reproduced exploit, played by Codex itself: a command run for the chat (approved
/// by the owner as housekeeping) replaces the log in the shared folder with a link to
/// the user's `~/.bashrc`, and then a chat user named like a shell command speaks. Nothing reaches `~/.bashrc`, neither while
/// that runner goes on nor when it is started again (which is refused).
#[tokio::test]
async fn a_link_planted_by_codex_while_running_is_never_written_through() {
    let harness = Harness::new("log-link-planted").await;
    let home = Home::new("planted");
    let mut runner = Runner::start(harness.session_options()).await.unwrap();
    let thread = harness.bound_thread().await;
    let plant = format!(
        "rm -f {log} && ln -s {bashrc} {log} && echo planted",
        log = harness.log_file.display(),
        bashrc = home.bashrc().display()
    );
    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{ "exec": plant }, {"text": "Done."}])),
        )
        .await;
    // The owner approves what looks like housekeeping.
    let waiting = harness
        .state_where(seq, |state| state["reason"] == "awaiting approval")
        .await;
    let request_id = waiting["approval_request_id"].as_str().unwrap();
    harness
        .say(&thread, "tester", &format!("/kandan approve {request_id}"))
        .await;
    harness.state_of(seq, "processed").await;
    assert!(is_symlink(&harness.log_file), "Codex planted the link");

    // More events, one of them naming a person `$(…)`.
    let named = harness
        .say(&thread, "$(touch pwned)", "echo $(id) >> ~/.bashrc")
        .await;
    harness.state_of(named, "ignored").await;
    let after = harness.say(&thread, "tester", "still logging?").await;
    harness.state_of(after, "processed").await;
    runner.stop().await;
    home.assert_untouched();

    match Runner::start(harness.options()).await {
        Ok(_) => panic!("the next start logged through the planted link"),
        Err(error) => assert!(error.to_string().contains("symbolic link"), "{error}"),
    }
    home.assert_untouched();
}

/// A log in a folder that does not exist yet (as the default one in the state folder
/// at first): the folder is 0700 and the file 0600, and another Unix user can neither
/// list the folder nor read the log.
#[tokio::test]
async fn the_log_is_private_to_its_user() {
    let harness = Harness::new("log-private").await;
    let home = Home::new("private");
    let log = home
        .0
        .join("state/linzumi/logs")
        .join(format!("{RUNNER_ID}.jsonl"));
    let mut options = harness.options();
    options.log_file = Some(log.clone());
    let mut runner = Runner::start(options).await.unwrap();
    runner.stop().await;
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("kandan.joined")
    );
    assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
    for folder in ["state", "state/linzumi", "state/linzumi/logs"] {
        let mode = std::fs::metadata(home.0.join(folder)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{folder}");
    }
    assert_eq!(
        event_log::default_path("../x")
            .unwrap()
            .file_name()
            .unwrap(),
        "___x.jsonl",
        "the default is one file per runner id, named as one path component"
    );

    if which_setpriv().is_none() {
        eprintln!("skipped the other-user reads: setpriv is not installed");
        return;
    }
    // The home folder itself lets anyone through, so only the modes above stop them.
    std::fs::set_permissions(&home.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (command, target) in [("cat", &log), ("ls", &log.parent().unwrap().to_owned())] {
        let output = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", command])
            .arg(target)
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "another user could {command} {}",
            target.display()
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn which_setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Controls and chat carrying every credential form and private contents: Cookie,
/// Set-Cookie, Authorization and Proxy-Authorization (headers as an object and as
/// `[name, value]` pairs), X-Api-Key, `access_token`/`code`/`key` in paths and query
/// strings, request and WebSocket bodies, a turn's input and a chat prompt. None of
/// them is in the log, which still records each control.
#[tokio::test]
async fn credentials_and_contents_never_reach_the_log() {
    let harness = Harness::new("log-redaction").await;
    let mut runner = Runner::start(harness.session_options()).await.unwrap();
    let thread = harness.bound_thread().await;
    let secrets = [
        "cookie-secret-4821",
        "set-cookie-secret-7731",
        "bearer-secret-9925",
        "proxy-secret-1187",
        "api-key-secret-6604",
        "query-token-secret-3390",
        "oauth-code-secret-5512",
        "path-key-secret-2276",
        "http-body-secret-8843",
        "ws-message-secret-4409",
        "turn-input-secret-7150",
        "chat-prompt-secret-6018",
    ];
    let controls = [
        json!({"type": "forward_http_request", "requestId": "r1", "port": 9,
            "method": "POST",
            "path": format!("/login?access_token={}&code={}", secrets[5], secrets[6]),
            "queryString": format!("key={}", secrets[7]),
            "headers": {"Cookie": format!("sid={}", secrets[0]),
                "Authorization": format!("Bearer {}", secrets[2]),
                "Proxy-Authorization": format!("Basic {}", secrets[3]),
                "X-Api-Key": secrets[4], "Accept": "text/html"},
            "bodyBase64": BASE64.encode(secrets[8])}),
        json!({"type": "forward_websocket_open", "socketId": "s1", "port": 9, "path": "/ws",
            "queryString": format!("token={}&code={}", secrets[5], secrets[6]),
            "headers": [["cookie", format!("sid={}", secrets[0])],
                ["authorization", format!("Bearer {}", secrets[2])],
                ["x-api-key", secrets[4]], ["accept", "*/*"]]}),
        json!({"type": "forward_websocket_send", "socketId": "s1", "opcode": "text",
            "bodyBase64": BASE64.encode(secrets[9])}),
        json!({"type": "start_turn", "threadId": "t", "input":
            [{"type": "text", "text": secrets[10]}]}),
        // Refused controls are logged whole: the same forms in one Kandan does not know.
        json!({"type": "replay_response", "status": 200,
            "headers": [["Set-Cookie", format!("sid={}", secrets[1])]],
            "url": format!("https://kandan.test/cb?code={}", secrets[6]),
            "body": secrets[8], "text": secrets[11]}),
    ];
    for control in &controls {
        harness.control(control.clone()).await;
    }
    let prompt = harness
        .say(&thread, "tester", &format!("remember {}", secrets[11]))
        .await;
    harness.state_of(prompt, "processed").await;
    // Controls are handled in order: once this one is answered, all were logged.
    harness.control_reply(json!({"type": "probe_end"})).await;
    runner.stop().await;

    let log = std::fs::read_to_string(&harness.log_file).unwrap();
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    let lines = harness.log_lines();
    let logged = |kind: &str| {
        lines.iter().any(|line| {
            line["control"]["type"] == kind
                && matches!(
                    line["event"].as_str(),
                    Some("kandan.control" | "kandan.control_refused")
                )
        })
    };
    for control in &controls {
        let kind = control["type"].as_str().unwrap();
        assert!(logged(kind), "{kind} was not logged:\n{log}");
    }
    assert!(
        log.contains("[REDACTED]") && log.contains("omittedBytes"),
        "{log}"
    );
    assert!(log.contains("text/html"), "harmless headers stay:\n{log}");
}

/// 30 controls of 7.9 MB each (just under the runner's 8 MiB frame limit): before,
/// each was written whole (237 MB in seconds); now each is one line with its long text
/// cut, and the log grows by at most one line cap per line written.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_huge_controls_grows_the_log_a_bounded_amount() {
    const CONTROLS: usize = 30;
    const PADDING: usize = 7_900_000;
    let harness = Harness::new("log-flood").await;
    let mut runner = harness.start_runner().await;
    let codex = runner.codex();
    let before = std::fs::metadata(&harness.log_file).unwrap().len();
    let lines_before = harness.log_lines().len();
    // One frame, sent as is each time (serialising 7.9 MB 30 times would only slow the
    // test down).
    let control = json!({"type": "kill_instance", "instanceId": "codex-stale",
        "padding": "k".repeat(PADDING)});
    let frame = json!([null, null, TOPIC, "control", control]).to_string();
    drop(control);
    for _ in 0..CONTROLS {
        harness.kandan.send_raw_text(&frame).await;
    }
    // Controls are handled in order: once this one is answered, all were logged. (A
    // deadline long enough for a debug build that writes the flood whole, so that the
    // size check below is what fails there.)
    harness.control(json!({"type": "probe_end"})).await;
    harness
        .kandan
        .wait_for_event(
            |event| event.topic == TOPIC && event.payload["controlType"] == "probe_end",
            4 * WAIT,
        )
        .await
        .unwrap();
    let grown = std::fs::metadata(&harness.log_file).unwrap().len() - before;
    assert!(
        grown < (2 * CONTROLS * MAX_LINE_BYTES) as u64,
        "the flood grew the log by {grown} bytes"
    );
    let lines = harness.log_lines();
    let added = lines.len() - lines_before;
    assert!(
        grown <= (added * MAX_LINE_BYTES) as u64,
        "{grown} bytes for {added} lines"
    );
    let cut = format!("… [cut from {PADDING} bytes]");
    let seen = lines
        .iter()
        .filter(|line| {
            line["event"] == "kandan.control"
                && line["truncated"] == true
                && line["control"]["padding"]
                    .as_str()
                    .is_some_and(|padding| padding.ends_with(&cut))
        })
        .count();
    assert_eq!(seen, CONTROLS, "each huge control is seen, not skipped");
    assert_eq!(runner.codex(), codex, "the stale kills were ignored");
    runner.stop().await;
}
