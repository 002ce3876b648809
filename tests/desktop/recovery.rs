//! Linzumi Desktop from the first launch to sharing, and back from every error, as a
//! person meets them: the real app on Xvfb (its window driven through WebDriver, dunst as
//! the notification server) against the Kandan test server and the real codex.
//!
//! - First run: "Signed out", one primary action (Sign in to Kandan), the shared folder
//!   "Waiting for sign-in". Sign in shows "Waiting for your browser…" with the link to
//!   copy; Cancel ends it with a message; the next sign-in starts the folder by itself.
//! - A Kandan outage reads "Offline, retrying" and recovers by itself, its retries one
//!   line in the activity list.
//! - A folder moved away is noticed (before Codex runs another turn in it) and offers
//!   Locate… and Stop sharing; Locate… (the native picker) points the share at where it
//!   went, and it starts again.
//! - Kandan ends the session (every token of the user revoked, the socket dropped): not
//!   "Offline" but "Your Kandan session ended", one notification; signing in again
//!   resumes the folder without sharing it again.
//! - Sign out asks first while a folder is shared.
//! - A start that fails (Kandan refuses the runner's join) reads as a sentence with
//!   Retry, the raw error behind Details; Retry shares the folder once the cause is gone.
//! - Settings: a bare host name is taken as https; a bad value is named at its field.
//!
//! Each state is kept as a screenshot in `.artifacts/desktop-<state>-<theme>.png`; the
//! same walk runs in the light and the dark theme.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../src-tauri/core/tests/support/mod.rs"]
mod session;
mod support;
mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use kandan_test_server::{Fault, KandanTestServer, ServerConfig};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use serde_json::{Value, json};
use session::wait_until;
use support::{
    Desk, WAIT, click_button, click_button_in, quit, wait_for_notice, wait_for_snapshot,
};
use webdriver::WebDriver;

/// Saves the window as `.artifacts/desktop-<state>-<theme>.png`, a frame after the change.
async fn screenshot(driver: &WebDriver, state: &str, theme: &str) {
    tokio::time::sleep(Duration::from_millis(800)).await;
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(
        artifacts.join(format!("desktop-{state}-{theme}.png")),
        driver.screenshot().await,
    )
    .unwrap();
}

/// The text the page's element `selector` shows (closed Details left out), once it exists.
async fn text_of(driver: &WebDriver, selector: &str) -> String {
    driver
        .wait_for(
            &format!("{selector} is shown"),
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([selector]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The summaries of the notifications dunst showed after notification `seen` (oldest
/// first); `seen` moves to the newest.
fn notifications(desk: &Desk, seen: &mut u64) -> Vec<String> {
    desk.dunstctl(&["close-all"]);
    let history: Value = serde_json::from_str(&desk.dunstctl(&["history"])).unwrap();
    let mut new: Vec<(u64, String)> = history["data"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["id"]["data"].as_u64().unwrap(),
                entry["summary"]["data"].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(id, _)| id > seen)
        .collect();
    new.sort();
    *seen = new.last().map_or(*seen, |(id, _)| *id);
    new.into_iter().map(|(_, summary)| summary).collect()
}

/// Plays the browser for a sign-in the window started: follows Kandan's authorization
/// page and hands the `linzumi://` link it redirects to to the app.
async fn finish_in_browser(desk: &Desk, authorize: &str) {
    let response = webdriver::http_client(false)
        .get(authorize)
        .send()
        .await
        .unwrap();
    desk.hand_over(response.headers()["location"].to_str().unwrap());
}

/// Presses `label` and waits for the browser to be sent to Kandan's authorization page.
async fn start_sign_in(desk: &Desk, driver: &WebDriver, label: &str) -> String {
    let before = desk.opened().len();
    click_button(driver, label).await;
    wait_until("the app opens the browser", WAIT, || {
        desk.opened().len() > before
    });
    desk.opened().remove(before)
}

async fn first_run_to_recovery(theme: &str) {
    let kandan = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let model = MockModelApi::start().await.unwrap();
    let codex = CodexHome::create(&model, CodexHomeOptions::default()).unwrap();
    let mut desk = Desk::new(&format!("desktop-recovery-{theme}"), &kandan, &codex);
    if theme == "dark" {
        // GTK's dark variant: WebKit then answers prefers-color-scheme: dark.
        desk.env.push(("GTK_THEME".into(), "Adwaita:dark".into()));
    }
    desk.start_dunst();
    let driver = desk.start_driver().await;
    let dark = driver
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            json!([]),
        )
        .await;
    assert_eq!(
        dark,
        json!(theme == "dark"),
        "the window is in the {theme} theme"
    );

    // First run: signed out, the shared folder waits, and signing in is the one primary
    // action (the tray's status line is the pill's title).
    let state = wait_for_snapshot(&driver, "the folder waits for a sign-in", |s| {
        s["folders"][0]["state"] == "waiting_for_sign_in"
    })
    .await;
    assert_eq!(state["statusLine"], "Signed out");
    assert_eq!(
        text_of(&driver, "#tray-pill .pill-text").await,
        "Signed out"
    );
    let primaries = driver
        .execute(
            "return [...document.querySelectorAll('.btn-primary')] \
               .filter((b) => b.offsetParent !== null).map((b) => b.textContent.trim());",
            json!([]),
        )
        .await;
    assert_eq!(primaries, json!(["Sign in to Kandan"]));
    let card = text_of(&driver, ".folder-card").await;
    assert!(card.contains("Waiting for sign-in"), "{card}");
    assert!(
        !card.contains("Runner"),
        "no runner id outside Details: {card}"
    );
    screenshot(&driver, "first-run", theme).await;

    // Sign in, then change one's mind: the window waits for the browser, offers the link
    // to copy, and Cancel ends it with a message.
    let authorize = start_sign_in(&desk, &driver, "Sign in to Kandan").await;
    let waiting = text_of(&driver, ".signin-card.waiting").await;
    assert!(waiting.contains("Waiting for your browser…"), "{waiting}");
    assert!(waiting.contains("Copy link"), "{waiting}");
    let link = driver
        .execute(
            "return document.querySelector('#signin-url').value;",
            json!([]),
        )
        .await;
    assert_eq!(link, json!(authorize));
    assert_eq!(
        text_of(&driver, "#tray-pill .pill-text").await,
        "Waiting for browser"
    );
    screenshot(&driver, "waiting-for-browser", theme).await;
    click_button(&driver, "Copy link").await;
    let copied = text_of(&driver, ".signin-link").await;
    driver
        .wait_for(
            "the link is copied",
            "return document.querySelector('.signin-link')?.innerText.includes('Copied') || null;",
            json!([]),
        )
        .await;
    assert!(!copied.contains("Could not copy"), "{copied}");
    click_button(&driver, "Cancel").await;
    wait_for_notice(&driver, "Sign-in canceled.").await;
    // The canceled sign-in's link, should it still arrive, signs nobody in.
    finish_in_browser(&desk, &authorize).await;
    wait_for_notice(&driver, "a sign-in that was canceled").await;
    assert_eq!(
        wait_for_snapshot(&driver, "still signed out", |_| true).await["account"]["signedIn"],
        false
    );

    // Signed in, the folder starts by itself.
    let authorize = start_sign_in(&desk, &driver, "Sign in to Kandan").await;
    finish_in_browser(&desk, &authorize).await;
    wait_for_notice(&driver, "Signed in to Kandan as tester.").await;
    let state = wait_for_snapshot(&driver, "the folder starts after signing in", |s| {
        s["folders"][0]["state"] == "ready"
    })
    .await;
    let folder_id = state["folders"][0]["id"].clone();
    assert_eq!(state["statusLine"], "1 folder shared");
    screenshot(&driver, "signed-in", theme).await;

    // A real outage is not an ended session: "Offline, retrying", each failed retry
    // folded into one activity line, and back by itself.
    let offline = async {
        wait_for_snapshot(&driver, "the folder is offline", |s| {
            s["folders"][0]["state"] == "offline"
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let card = text_of(&driver, ".folder-card[data-state=offline]").await;
        assert!(card.contains("Offline, retrying"), "{card}");
        screenshot(&driver, "offline", theme).await;
    };
    tokio::join!(kandan.restart(Duration::from_secs(8)), offline);
    let state = wait_for_snapshot(&driver, "the folder is back after the outage", |s| {
        s["folders"][0]["state"] == "ready"
    })
    .await;
    assert_eq!(state["account"]["sessionEnded"], false);
    let retries: Vec<&Value> = state["activity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["text"] == "Still cannot reach Kandan; retrying")
        .collect();
    assert!(retries.len() <= 1, "repeats are one line: {retries:#?}");

    // The folder is moved away: noticed, with Locate… and Stop sharing, and one
    // notification.
    let mut seen = 0;
    notifications(&desk, &mut seen);
    let moved = desk.dir().join("moved-app");
    std::fs::rename(&desk.project, &moved).unwrap();
    let state = wait_for_snapshot(&driver, "the moved folder is noticed", |s| {
        s["folders"][0]["state"] == "missing"
    })
    .await;
    assert_eq!(state["folders"][0]["problem"]["next"], "locate");
    let card = text_of(&driver, ".folder-card[data-state=missing]").await;
    for words in ["The folder was moved or deleted", "Locate…", "Stop sharing"] {
        assert!(card.contains(words), "{words:?} in {card}");
    }
    screenshot(&driver, "error", theme).await;
    wait_until("a notification says so", WAIT, || desk.displayed() >= 1);
    assert_eq!(
        notifications(&desk, &mut seen),
        ["my-app was moved or deleted"]
    );
    // Locate… asks where it went (the native picker); the share follows it there.
    click_button_in(&driver, ".folder-card", "Locate…").await;
    let moved_path = std::fs::canonicalize(&moved).unwrap();
    desk.pick_folder("^Where is my-app now\\?$", &moved_path, &|| {
        std::fs::read_to_string(&desk.config_path)
            .is_ok_and(|config| config.contains(moved_path.to_str().unwrap()))
    });
    let state = wait_for_snapshot(&driver, "the located folder is shared again", |s| {
        s["folders"][0]["state"] == "ready"
    })
    .await;
    assert_eq!(state["folders"][0]["path"], moved_path.to_str().unwrap());
    assert_eq!(state["folders"][0]["id"], folder_id, "the same share");

    // Kandan ends the session: not offline, but "session ended", said once.
    assert!(kandan.revoke_user_tokens("tester") > 0);
    kandan.drop_connections().await;
    let state = wait_for_snapshot(&driver, "the window says the session ended", |s| {
        s["account"]["sessionEnded"] == true && s["folders"][0]["state"] == "waiting_for_sign_in"
    })
    .await;
    assert_eq!(state["statusLine"], "Your Kandan session ended");
    let ended = text_of(&driver, ".signin-card.ended").await;
    assert!(
        ended.contains("Your Kandan session ended — Sign in again"),
        "{ended}"
    );
    assert_eq!(
        text_of(&driver, "#tray-pill .pill-text").await,
        "Session ended"
    );
    screenshot(&driver, "session-ended", theme).await;
    wait_until("a notification says so", WAIT, || desk.displayed() >= 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        notifications(&desk, &mut seen),
        ["Your Kandan session ended"]
    );

    // Signing in again resumes the same folder, not shared anew.
    let authorize = start_sign_in(&desk, &driver, "Sign in again").await;
    finish_in_browser(&desk, &authorize).await;
    let state = wait_for_snapshot(&driver, "the folder resumes", |s| {
        s["account"]["signedIn"] == true && s["folders"][0]["state"] == "ready"
    })
    .await;
    assert_eq!(state["folders"][0]["id"], folder_id);
    assert_eq!(state["folders"].as_array().unwrap().len(), 1);

    // Sign out asks first while a folder is shared; Cancel keeps everything.
    click_button(&driver, "Sign out").await;
    let asked = text_of(&driver, "#confirm-signout").await;
    assert!(
        asked.contains("Your shared folder stops until you sign in again"),
        "{asked}"
    );
    click_button(&driver, "Cancel").await;
    wait_for_snapshot(&driver, "still signed in", |s| {
        s["account"]["signedIn"] == true
    })
    .await;
    click_button(&driver, "Sign out").await;
    text_of(&driver, "#confirm-signout").await;
    click_button_in(&driver, "#account", "Sign out").await;
    wait_for_snapshot(&driver, "signed out, the folder waits", |s| {
        s["account"]["signedIn"] == false && s["folders"][0]["state"] == "waiting_for_sign_in"
    })
    .await;

    // A start that fails is said in words with Retry, which starts it once the cause is
    // gone.
    let runner_id = state["folders"][0]["runnerId"].as_str().unwrap();
    kandan.set_fault(Fault::RejectJoins {
        topic: format!("local_runner:{runner_id}"),
        reason: "maintenance".into(),
    });
    let authorize = start_sign_in(&desk, &driver, "Sign in to Kandan").await;
    finish_in_browser(&desk, &authorize).await;
    let state = wait_for_snapshot(&driver, "the start fails", |s| {
        s["folders"][0]["state"] == "error"
    })
    .await;
    let problem = &state["folders"][0]["problem"];
    assert_eq!(problem["next"], "retry", "{problem:#}");
    // Kandan answered and said no: not "could not be reached".
    assert_eq!(problem["title"], "Kandan did not accept this folder");
    let card = text_of(&driver, ".folder-card[data-state=error]").await;
    assert!(card.contains(problem["title"].as_str().unwrap()), "{card}");
    assert!(
        !card.contains("maintenance"),
        "the raw error only in Details: {card}"
    );
    screenshot(&driver, "start-failed", theme).await;
    kandan.clear_faults();
    click_button_in(&driver, ".folder-card", "Retry").await;
    wait_for_snapshot(&driver, "Retry shares the folder", |s| {
        s["folders"][0]["state"] == "ready"
    })
    .await;

    // Settings: a field's problem is shown at that field.
    click_button(&driver, "Settings").await;
    driver
        .execute(
            "const i = document.querySelector('#s-forwardPorts'); i.value = '80000'; \
             i.dispatchEvent(new Event('input', {bubbles: true}));",
            json!([]),
        )
        .await;
    click_button(&driver, "Save settings").await;
    let field = text_of(&driver, "#e-forwardPorts").await;
    assert!(field.contains("“80000” is not a port number"), "{field}");
    driver
        .execute(
            "document.querySelector('#s-forwardPorts').scrollIntoView({block: 'center'});",
            json!([]),
        )
        .await;
    screenshot(&driver, "settings-field-error", theme).await;
    // A bare host name is taken as https (another Kandan: its own sign-in).
    driver
        .execute(
            "const p = document.querySelector('#s-forwardPorts'); p.value = ''; \
             const k = document.querySelector('#s-kandanUrl'); k.value = 'kandan.example.com'; \
             k.dispatchEvent(new Event('input', {bubbles: true}));",
            json!([]),
        )
        .await;
    click_button(&driver, "Save settings").await;
    wait_for_snapshot(&driver, "the host is saved as https", |s| {
        s["settings"]["kandanUrl"] == "https://kandan.example.com"
    })
    .await;
    assert_eq!(text_of(&driver, "#e-forwardPorts").await, "");

    quit(driver, &desk.config_path).await;
    kandan.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_to_recovery_in_the_light_theme() {
    first_run_to_recovery("light").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_to_recovery_in_the_dark_theme() {
    first_run_to_recovery("dark").await;
}
