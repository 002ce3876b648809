//! The owner's settings are ceilings: Kandan may narrow the folders Codex may work in and
//! ask for a stricter sandbox or approval policy, never for more than the owner allowed.
use linzumi_engine::runner::Runner;
use linzumi_engine::runner::allowed_cwd;
use serde_json::json;

use crate::support::{Harness, mock};
use crate::tempfile_dir;

/// The owner shares one folder (`--allowed-cwd`). Kandan's `update_runner_config` asking
/// for `/` and a folder outside is refused with a reason and changes nothing it asked
/// beyond the share; a sub-folder of the share is taken, and `start_instance` then works
/// there and nowhere else.
#[tokio::test]
async fn kandan_cannot_widen_the_folders_the_owner_shares() {
    let harness = Harness::new("ceiling-roots").await;
    let sub = harness.project.dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let outside = tempfile_dir("ceiling-outside");
    let mut options = harness.options();
    options.allowed_roots =
        allowed_cwd::configured_roots(&[harness.project.dir.display().to_string()]).unwrap();
    let mut runner = Runner::start(options).await.unwrap();

    harness
        .control(json!({"type": "update_runner_config",
            "allowedCwds": ["/", outside.display().to_string(), sub.display().to_string()]}))
        .await;
    let heartbeat = harness
        .event(|event| {
            event.event == "heartbeat"
                && event.payload["capabilities"]["allowedCwds"]
                    .as_array()
                    .is_some_and(|roots| {
                        roots
                            .iter()
                            .any(|root| root.as_str() != harness.project.dir.to_str())
                    })
        })
        .await;
    assert_eq!(
        heartbeat.payload["capabilities"]["allowedCwds"],
        json!([sub.display().to_string()])
    );
    for cwd in ["/".to_owned(), outside.display().to_string()] {
        let reply = harness
            .control_reply(json!({"type": "start_instance", "cwd": cwd}))
            .await;
        assert_eq!(
            reply.payload["ok"], false,
            "{cwd} was opened: {:?}",
            reply.payload
        );
    }
    let inside = harness
        .control_reply(json!({"type": "start_instance", "cwd": sub}))
        .await;
    assert_eq!(inside.payload["ok"], true, "{:?}", inside.payload);
    // The owner's own root is narrowed away too, as Kandan asked.
    let root = harness
        .control_reply(json!({"type": "start_instance", "cwd": harness.project.dir}))
        .await;
    assert_eq!(root.payload["ok"], false, "{:?}", root.payload);
    let refusal = harness
        .event(|event| {
            event.event == "codex_error" && event.payload["controlType"] == "update_runner_config"
        })
        .await;
    let message = refusal.payload["message"].as_str().unwrap();
    assert!(
        message.contains("outside the folders this computer shares"),
        "{message}"
    );
    assert!(
        message.contains(&outside.display().to_string()),
        "{message}"
    );
    runner.stop().await;
    std::fs::remove_dir_all(outside).unwrap();
}

/// The owner runs Codex read-only and asks before anything untrusted. Kandan's
/// `start_instance` asking for full access without approvals is refused; the same
/// settings or stricter ones are taken. Without owner settings, the ceiling is
/// workspace-write and on-request.
#[tokio::test]
async fn kandan_cannot_loosen_the_sandbox_or_the_approval_policy() {
    let harness = Harness::new("ceiling-policy").await;
    let mut options = harness.options();
    options.runtime.sandbox = Some("read-only".into());
    options.runtime.approval_policy = Some("untrusted".into());
    let mut runner = Runner::start(options).await.unwrap();
    for looser in [
        json!({"sandbox": "danger-full-access", "approvalPolicy": "never"}),
        json!({"sandbox": "workspace-write"}),
        json!({"approvalPolicy": "on-request"}),
    ] {
        let mut control = json!({"type": "start_instance", "cwd": harness.project.dir});
        control
            .as_object_mut()
            .unwrap()
            .extend(looser.as_object().unwrap().clone());
        let reply = harness.control_reply(control).await;
        assert_eq!(reply.payload["ok"], false, "{looser} was taken");
        let error = reply.payload["error"].as_str().unwrap();
        assert!(error.contains("allows at most"), "{error}");
    }
    let same = harness
        .start_thread(json!({"sandbox": "read-only", "approvalPolicy": "untrusted"}))
        .await;
    assert!(!same.is_empty());
    runner.stop().await;

    let mut runner = Runner::start(harness.options()).await.unwrap();
    let reply = harness
        .control_reply(json!({"type": "start_instance", "cwd": harness.project.dir,
            "sandbox": "danger-full-access"}))
        .await;
    assert_eq!(reply.payload["ok"], false, "{:?}", reply.payload);
    let stricter = harness
        .start_thread(json!({"sandbox": "workspace-write", "approvalPolicy": "untrusted"}))
        .await;
    assert!(!stricter.is_empty());
    runner.stop().await;
}

/// A chat session whose owner allows no writes: Kandan's `update_session_settings`
/// asking for full access is refused, and clearing the sandbox falls back to the owner's,
/// not to Codex's default: a command that writes a file still cannot.
#[tokio::test]
async fn kandan_cannot_loosen_a_chat_sessions_settings() {
    let harness = Harness::new("ceiling-session").await;
    let mut options = harness.session_options();
    options.runtime.sandbox = Some("read-only".into());
    options.runtime.approval_policy = Some("never".into());
    let mut runner = Runner::start(options).await.unwrap();
    let thread = harness.bound_thread().await;

    let refused = harness
        .control_reply(
            json!({"type": "update_session_settings", "threadId": thread,
            "sandbox": "danger-full-access"}),
        )
        .await;
    assert_eq!(refused.payload["ok"], false, "{:?}", refused.payload);
    let cleared = harness
        .control_reply(
            json!({"type": "update_session_settings", "threadId": thread,
            "sandbox": null}),
        )
        .await;
    assert_eq!(cleared.payload["ok"], true, "{:?}", cleared.payload);

    let seq = harness
        .say(
            &thread,
            "tester",
            &mock(json!([{"exec": "touch written-by-codex.txt"}, {"text": "tried"}])),
        )
        .await;
    harness.state_of(seq, "processed").await;
    assert!(
        !harness.project.dir.join("written-by-codex.txt").exists(),
        "Codex wrote in a folder its owner shares read-only"
    );
    runner.stop().await;
}
