//! Notifications against a real notification server: dunst on Xvfb, on a private D-Bus
//! session.
//!
//! A button is pressed the way a keyboard user does it in dunst: `dunstctl context` opens
//! the context menu, which dunst builds by piping one line per action
//! (`#Approve (<summary>) [<id>,approve]`) to its `dmenu` program and invoking the line
//! that program prints. Our dunstrc points `dmenu` at a script that records the menu and
//! prints the line of the button named in the file `choice`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use linzumi_desktop_core::notifications::{
    ApprovalPrompt, DesktopNotifier, InfoThrottle, Notifier, PromptAnswer, RateLimit,
};
use serde_json::Value;
use support::Session;

const PICK_SCRIPT: &str = r#"#!/bin/sh
# dunst's dmenu: record the menu, answer with the line of the button named in ./choice.
here=$(dirname "$0")
menu=$(cat)
printf '%s\n' "$menu" >> "$here/menus"
printf '%s\n' "$menu" | grep -m1 "^#$(cat "$here/choice") "
"#;

#[test]
fn approval_prompts_through_dunst() {
    let mut session = Session::new("notifications");
    session.start_bus();
    for program in ["dunst", "dunstctl", "dbus-send"] {
        support::require(program);
    }
    let display = session.start_xvfb();
    let script = session.dir.join("pick.sh");
    std::fs::write(&script, PICK_SCRIPT).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dunstrc = session.dir.join("dunstrc");
    std::fs::write(
        &dunstrc,
        // The rule marks each notification's urgency in its message: dunst's history
        // does not record it.
        format!(
            "[global]\n    dmenu = {}\n[urgency-normal]\n    msg_urgency = normal\n    \
             format = \"NORMAL %s\"\n",
            script.display()
        ),
    )
    .unwrap();
    let dir = session.dir.clone();
    session.spawn(
        "dunst",
        Command::new("dunst")
            .arg("-config")
            .arg(&dunstrc)
            .env("DISPLAY", &display)
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    session.wait_for_name("org.freedesktop.Notifications");
    session.run_inner("inner_approval_prompts", &[]);
}

fn dunstctl(args: &[&str]) -> String {
    let output = Command::new("dunstctl").args(args).output().unwrap();
    assert!(output.status.success(), "dunstctl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn displayed() -> usize {
    dunstctl(&["count", "displayed"]).trim().parse().unwrap()
}

fn wait_displayed(count: usize) {
    support::wait_until(
        &format!("dunst displays {count} notification(s)"),
        Duration::from_secs(10),
        || displayed() == count,
    );
}

/// The closed notification `id` in dunst's history, as `{field: value}`.
fn history_entry(id: u32) -> serde_json::Map<String, Value> {
    let history: Value = serde_json::from_str(&dunstctl(&["history"])).unwrap();
    let entry = history["data"][0]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["id"]["data"] == id)
        .unwrap_or_else(|| panic!("notification {id} is not in dunst's history: {history}"));
    entry
        .as_object()
        .unwrap()
        .iter()
        .map(|(field, value)| (field.clone(), value["data"].clone()))
        .collect()
}

/// The id of the most recent notification in dunst's history.
fn newest_in_history() -> u32 {
    let history: Value = serde_json::from_str(&dunstctl(&["history"])).unwrap();
    let id = history["data"][0][0]["id"]["data"].as_u64().unwrap();
    u32::try_from(id).unwrap()
}

fn choose(dir: &Path, button: &str) {
    std::fs::write(dir.join("choice"), button).unwrap();
}

#[test]
#[ignore = "run by approval_prompts_through_dunst on its own D-Bus session and display"]
fn inner_approval_prompts() {
    if !support::is_inner() {
        return;
    }
    let dir = support::inner_dir();
    let (answers_tx, answers) = mpsc::channel();
    let notifier = DesktopNotifier::new(
        "Linzumi",
        Arc::new(move |folder: &str, request: &str, answer: PromptAnswer| {
            let _ = answers_tx.send((folder.to_owned(), request.to_owned(), answer));
        }),
    );
    let prompt = |request_id: &str, command: &str| ApprovalPrompt {
        folder_id: "folder-1".into(),
        request_id: request_id.into(),
        title: format!("Codex asks to run `{command}`"),
        body: "in my-app".into(),
    };

    // "Approve" pressed in dunst reaches on_answer.
    choose(&dir, "Approve");
    let shown = notifier.approval(&prompt("r1", "npm test")).unwrap();
    let id = shown.notification_id.unwrap();
    wait_displayed(1);
    dunstctl(&["context"]);
    let answer = answers
        .recv_timeout(Duration::from_secs(10))
        .expect("on_answer is called");
    assert_eq!(
        answer,
        ("folder-1".into(), "r1".into(), PromptAnswer::Approve)
    );
    wait_displayed(0);
    let menus = std::fs::read_to_string(dir.join("menus")).unwrap();
    assert!(
        menus.contains(&format!(
            "#Approve (Codex asks to run `npm test`) [{id},approve]"
        )),
        "{menus}"
    );
    assert!(
        menus.contains(&format!("#Deny (Codex asks to run `npm test`) [{id},deny]")),
        "{menus}"
    );
    let entry = history_entry(id);
    assert_eq!(entry["appname"], "Linzumi");
    assert_eq!(entry["summary"], "Codex asks to run `npm test`");
    assert_eq!(entry["body"], "in my-app");
    assert_eq!(
        entry["timeout"], 0,
        "a prompt waits for its answer: {entry:?}"
    );
    assert!(
        entry["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("NORMAL ")),
        "a routine prompt, not a critical one: {entry:?}"
    );

    // "Deny" too.
    choose(&dir, "Deny");
    notifier.approval(&prompt("r2", "rm -rf build")).unwrap();
    wait_displayed(1);
    dunstctl(&["context"]);
    let answer = answers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, ("folder-1".into(), "r2".into(), PromptAnswer::Deny));
    wait_displayed(0);

    // A click on the body (dunst's default action) asks to show the prompt, no answer.
    notifier.approval(&prompt("r5", "ls")).unwrap();
    wait_displayed(1);
    dunstctl(&["action", "0"]);
    let answer = answers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, ("folder-1".into(), "r5".into(), PromptAnswer::Open));
    notifier.withdraw("r5");
    wait_displayed(0);

    // Withdrawn (answered elsewhere): closed, and no answer comes.
    let shown = notifier.approval(&prompt("r3", "cargo build")).unwrap();
    wait_displayed(1);
    notifier.withdraw("r3");
    wait_displayed(0);
    assert_eq!(newest_in_history(), shown.notification_id.unwrap());
    notifier.withdraw("r3"); // twice is harmless
    notifier.withdraw("unknown");

    // Showing a request again replaces its prompt; dismissing it gives no answer.
    notifier.approval(&prompt("r4", "make")).unwrap();
    wait_displayed(1);
    notifier.approval(&prompt("r4", "make")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    wait_displayed(1);
    dunstctl(&["close"]);
    wait_displayed(0);
    assert!(
        answers.recv_timeout(Duration::from_millis(500)).is_err(),
        "no answer for withdrawn or dismissed prompts"
    );

    // Updates: a plain notification, rate-limited by the throttle.
    let mut throttle = InfoThrottle::new(
        RateLimit {
            max_per_window: 1,
            window_ms: 60_000,
        },
        "Linzumi",
    );
    assert!(
        throttle
            .info(
                &notifier,
                "folder-1",
                "my-app",
                "Turn finished",
                "Codex finished message #7",
                0
            )
            .unwrap()
    );
    assert!(
        !throttle
            .info(&notifier, "folder-1", "my-app", "Turn finished", "#8", 1)
            .unwrap()
    );
    wait_displayed(1);
    dunstctl(&["close"]);
    wait_displayed(0);
    let entry = history_entry(newest_in_history());
    assert_eq!(entry["appname"], "Linzumi");
    assert_eq!(entry["summary"], "Turn finished");
    assert_eq!(entry["body"], "Codex finished message #7");
    assert_eq!(throttle.flush(&notifier, 60_000).unwrap(), 1);
    wait_displayed(1);
    dunstctl(&["close"]);
    wait_displayed(0);
    let entry = history_entry(newest_in_history());
    assert_eq!(entry["summary"], "Linzumi");
    assert_eq!(entry["body"], "1 more update in my-app");
}
