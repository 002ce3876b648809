//! `--launch-tui`: the real Codex TUI, in tmux, on the chat session's own thread; what is
//! typed there is mirrored into the Kandan thread (`linzumi demo` hosts the thread).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use linzumi_engine::process_tree;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed by scripts/setup-tests.sh");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tui"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// Polls `probe` until it returns something (the TUI and the thread have no event to
/// wait on from here), failing after `WAIT` with what was last seen.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> (Option<T>, String)) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let (found, seen) = probe();
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; last seen:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linzumi-tui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(dir).unwrap()
}

fn linzumi_pid(socket: &str) -> Option<u32> {
    let output = Command::new("tmux")
        .args(["-L", socket, "list-panes", "-t", "tui", "-F", "#{pane_pid}"])
        .output()
        .ok()?;
    let shell: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    Some(shell)
}

#[test]
fn a_turn_typed_in_the_codex_tui_is_mirrored_into_the_kandan_thread() {
    let project = scratch("project");
    let home = scratch("home");
    let stderr = home.join("linzumi.stderr");
    let codex = mock_model_api::codex_bin().unwrap();
    let tmux = Tmux {
        socket: format!("linzumi-tui-test-{}", std::process::id()),
    };
    let command = format!(
        "cd '{}' && HOME='{}' exec '{}' demo '{}' --port 0 --no-open --mock-model --codex-bin '{}' --launch-tui 2> '{}'",
        project.display(),
        home.display(),
        env!("CARGO_BIN_EXE_linzumi"),
        project.display(),
        codex.display(),
        stderr.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "160",
        "-y",
        "45",
        &command,
    ]);
    let linzumi = linzumi_pid(&tmux.socket).unwrap();

    let page = eventually("the demo URL", || {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        let url = text
            .lines()
            .find_map(|line| line.strip_prefix("Linzumi demo: open "))
            .map(str::to_owned);
        (url, text)
    });
    let messages_url = page.replace("/demo", "/__admin/chat/demo/codex/messages");
    eventually("the TUI prompt", || {
        let screen = tmux.screen();
        (screen.contains("Ask Codex").then_some(()), screen)
    });
    tmux.run(&["send-keys", "-t", "tui", "hello from the tui"]);
    eventually("the typed prompt on screen", || {
        let screen = tmux.screen();
        (
            screen.contains("› hello from the tui").then_some(()),
            screen,
        )
    });
    tmux.run(&["send-keys", "-t", "tui", "Enter"]);

    let rows = eventually("the mirrored turn in Kandan", || {
        let rows: Vec<Value> = Command::new("curl")
            .args(["-s", &messages_url])
            .output()
            .ok()
            .and_then(|output| serde_json::from_slice(&output.stdout).ok())
            .unwrap_or_default();
        let kinds: Vec<String> = rows
            .iter()
            .map(|row| {
                row["payload"]["structured"]["kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        let done = rows.iter().any(|row| {
            row["payload"]["structured"]["kind"] == "codex_assistant_message"
                && row["payload"]["structured"]["streaming"] == false
        });
        (
            done.then(|| rows.clone()),
            format!("{kinds:?}\n{}", tmux.screen()),
        )
    });
    let input = rows
        .iter()
        .find(|row| row["payload"]["structured"]["kind"] == "codex_user_input")
        .unwrap();
    assert_eq!(input["payload"]["structured"]["text"], "hello from the tui");
    assert_eq!(input["payload"]["structured"]["source"], "tui");
    let answer = rows
        .iter()
        .find(|row| row["payload"]["structured"]["kind"] == "codex_assistant_message")
        .unwrap();
    assert_eq!(
        answer["payload"]["structured"]["text"],
        "You said: hello from the tui"
    );
    let root = &rows[0];
    assert_eq!(
        answer["payload"]["reply_to_seq"], root["seq"],
        "TUI turns answer the root"
    );

    // Closing the terminal stops linzumi, and with it Codex and the TUI.
    let tree = process_tree::tree(linzumi);
    drop(tmux);
    eventually("linzumi's processes ending", || {
        let alive: Vec<u32> = tree
            .iter()
            .copied()
            .filter(|&pid| process_tree::alive(pid))
            .collect();
        (alive.is_empty().then_some(()), format!("{alive:?}"))
    });
    let text = std::fs::read_to_string(&stderr).unwrap();
    assert!(text.contains("Stopping:"), "{text}");
    cleanup(&[project, home]);
}

fn cleanup(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = std::fs::remove_dir_all(Path::new(dir));
    }
}
