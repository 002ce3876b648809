//! Codex's control port: the app-server the runner starts runs commands as the owner, so
//! only the runner (and the TUI it opens) may drive it. Another local user, or any
//! process without the runner's capability token, is refused at the WebSocket handshake.
use std::time::Duration;

use linzumi_engine::codex::{AppServerAddress, AppServerProcess, AppServerSource};
use linzumi_engine::phoenix::Backoff;
use linzumi_engine::runner::Runner;

use crate::support::Harness;
use crate::support::other_user;

/// As `nobody`, and as the owner's own user without the token, a raw WebSocket client
/// gets no `initialize` answer from the runner's app-server: the handshake is refused.
#[tokio::test]
async fn only_the_runner_can_drive_the_codex_it_started() {
    let harness = Harness::new("codex-port").await;
    let mut runner = Runner::start(harness.options()).await.unwrap();
    let url = runner.codex().url;

    if let Some(answer) = other_user::raw_websocket(&url, "") {
        assert!(answer.contains("status:"), "the client ran: {answer}");
        assert!(
            !answer.contains("userAgent"),
            "another user initialized the runner's Codex: {answer}"
        );
        assert!(!answer.contains(" 101 "), "{answer}");
    }
    let guessed = other_user::raw_websocket_as_me(&url, "guessed-token");
    assert!(guessed.contains("status:"), "the client ran: {guessed}");
    assert!(
        !guessed.contains("userAgent"),
        "a wrong token was let in: {guessed}"
    );
    // The same client with the runner's token is let in: the refusals above are the
    // token's doing, not the client's.
    let token = runner
        .codex()
        .token
        .expect("the app-server asks for a token");
    let answer = other_user::raw_websocket_as_me(&url, token.expose());
    assert!(answer.contains("userAgent"), "{answer}");
    runner.stop().await;
}

/// An app-server started by someone else (`--codex-url`) that asks for a token is
/// reached with it, and refused without it, with a reason that says so.
#[tokio::test]
async fn an_outside_app_server_is_attached_with_its_token() {
    let harness = Harness::new("codex-attach").await;
    let AppServerSource::Spawn(spec) = harness.codex_source() else {
        unreachable!("the harness starts codex itself");
    };
    let mut outside = AppServerProcess::spawn(&spec).await.unwrap();
    let address = outside.address().clone();
    assert!(address.token.is_some());

    let mut options = harness.options();
    options.codex = AppServerSource::Attach(AppServerAddress {
        url: address.url.clone(),
        token: None,
    });
    options.codex_restart = Backoff::new(vec![Duration::from_secs(60)], Duration::from_secs(60));
    let refused = Runner::start(options)
        .await
        .err()
        .expect("no token, no Codex");
    assert!(refused.to_string().contains("401"), "{refused}");

    let mut options = harness.options();
    options.codex = AppServerSource::Attach(address);
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.start_thread(serde_json::json!({})).await;
    assert!(!thread.is_empty());
    runner.stop().await;
    outside.terminate(Duration::from_secs(1)).await;
}
