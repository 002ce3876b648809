//! Linzumi Desktop's updates end to end: the real app on Xvfb, its window driven through
//! tauri-driver, looking at a local release feed (testing/release-feed) that a debug
//! build is pointed at with LINZUMI_TEST_UPDATE_FEED, with the feed's test key.
//!
//! - A newer release shows "Update available" in the window (a screenshot is kept in
//!   .artifacts/desktop-update-available.png); this copy is not a bundle, so it offers
//!   the release page, which opens in the browser.
//! - Turning "Look for updates" off takes the banner away and stops the looking; turned
//!   on again against a feed offering a downgrade, the window says it was refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../src-tauri/core/tests/support/mod.rs"]
mod session;
mod support;
mod webdriver;

use std::time::Duration;

use kandan_test_server::{KandanTestServer, ServerConfig};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};
use release_feed::{Offer, ReleaseFeed, TEST_PUBKEY};
use serde_json::{Value, json};
use support::{Desk, click_button_in, quit};
use webdriver::WebDriver;

/// The update banner's text once its state is `state`.
async fn banner(driver: &WebDriver, state: &str) -> String {
    driver
        .wait_for(
            &format!("the update banner shows {state:?}"),
            "const b = document.querySelector(`#update [data-update=\"${arguments[0]}\"]`); \
             return b ? b.textContent : null;",
            json!([state]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

async fn save_settings(driver: &WebDriver, change: Value) {
    driver
        .execute(
            "const invoke = window.__TAURI__.core.invoke; const change = arguments[0]; \
             return invoke('get_snapshot', {}) \
               .then((s) => invoke('save_settings', { settings: { ...s.settings, ...change } })) \
               .then(() => true);",
            json!([change]),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_release_is_announced_and_the_setting_turns_looking_off() {
    let feed = ReleaseFeed::start(Offer::Newer).await.unwrap();
    let kandan = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let model = MockModelApi::start().await.unwrap();
    let codex = CodexHome::create(&model, CodexHomeOptions::default()).unwrap();
    let mut desk = Desk::new("desktop-updates", &kandan, &codex);
    desk.env.push((
        "LINZUMI_TEST_UPDATE_FEED".into(),
        json!({
            "pubkey": TEST_PUBKEY.trim(),
            "endpoints": [feed.url()],
            "requireSignedVersion": true,
            "dangerousInsecureTransportProtocol": true,
        })
        .to_string(),
    ));
    let driver = desk.start_driver().await;

    let offer = banner(&driver, "available").await;
    assert!(
        offer.contains("Update available: Linzumi 0.2.0, on the release page."),
        "{offer}"
    );
    let state = driver
        .execute(
            "return window.__TAURI__.core.invoke('get_update_state', {});",
            json!([]),
        )
        .await;
    assert_eq!(state["install"], "download", "{state:#}");
    click_button_in(&driver, "#update", "Release page").await;
    let release = "https://github.com/linzumi/linzumi-desktop/releases/tag/v0.2.0";
    session::wait_until("the release page opens", support::WAIT, || {
        desk.opened().iter().any(|url| url == release)
    });
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(
        artifacts.join("desktop-update-available.png"),
        driver.screenshot().await,
    )
    .unwrap();

    save_settings(&driver, json!({ "checkForUpdates": false })).await;
    driver
        .wait_for(
            "the banner goes",
            "return document.querySelector('#update').textContent === '' ? true : null;",
            json!([]),
        )
        .await;
    let asked = feed.feed_requests();
    feed.set(Offer::Downgrade);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(feed.feed_requests(), asked, "turned off, it does not look");

    save_settings(&driver, json!({ "checkForUpdates": true })).await;
    let refused = banner(&driver, "refused").await;
    assert!(
        refused.contains("offers Linzumi 0.0.9, older than this 0.1.0; it was refused"),
        "{refused}"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&desk.config_path).unwrap()).unwrap();
    assert_eq!(config["settings"]["checkForUpdates"], true, "{config:#}");

    quit(driver, &desk.config_path).await;
    kandan.shutdown().await;
}
