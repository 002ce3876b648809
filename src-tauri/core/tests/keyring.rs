//! The token store against a real Secret Service (gnome-keyring on a private D-Bus
//! session), and its fallback to a private file when there is no keyring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use linzumi_desktop_core::token_store::{
    DesktopTokenStore, KEYRING_SERVICE, KeyringTokenStore, TokenStorage,
};
use linzumi_engine::auth::token_store::{StoredToken, TokenKey, TokenStore};
use linzumi_engine::auth::{AccessToken, AuthScope};
use linzumi_engine::kandan_url::KandanUrl;
use serde_json::json;
use support::Session;

fn key(channel: &str) -> TokenKey {
    TokenKey::new(
        &KandanUrl::parse("wss://kandan.example/socket").unwrap(),
        AuthScope::channel("acme", channel),
    )
}

fn token(value: &str) -> StoredToken {
    StoredToken {
        access_token: AccessToken::new(value),
        saved_at: 1_777_000_000,
        expires_at: Some(1_777_003_600),
    }
}

#[test]
fn tokens_round_trip_through_a_real_secret_service() {
    let mut session = Session::new("keyring");
    session.start_bus();
    session.start_keyring();
    session.run_inner("inner_keyring_round_trip", &[]);
}

#[test]
#[ignore = "run by tokens_round_trip_through_a_real_secret_service on its own D-Bus session"]
fn inner_keyring_round_trip() {
    if !support::is_inner() {
        return;
    }
    let dir = support::inner_dir();
    let opened = DesktopTokenStore::open_detailed(&dir);
    assert_eq!(opened.storage, TokenStorage::Keyring);
    assert_eq!(opened.warning, None);
    let store = KeyringTokenStore::new();

    assert_eq!(store.load(&key("codex")).unwrap(), None);
    store.save(&key("codex"), &token("first-token")).unwrap();
    store.save(&key("other"), &token("other-token")).unwrap();
    store.save(&key("codex"), &token("secret-token")).unwrap();
    assert_eq!(
        store.load(&key("codex")).unwrap(),
        Some(token("secret-token"))
    );
    // Through the store `open` chose, too.
    assert_eq!(
        opened.store.load(&key("other")).unwrap(),
        Some(token("other-token"))
    );

    // The same value is in the keyring for anyone who looks it up (seahorse, secret-tool).
    let user = "https://kandan.example channel:acme/codex";
    assert_eq!(KeyringTokenStore::user_for(&key("codex")), user);
    let entry = keyring::Entry::new(KEYRING_SERVICE, user).unwrap();
    let value: serde_json::Value = serde_json::from_str(&entry.get_password().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({"access_token": "secret-token", "saved_at": 1_777_000_000u64,
               "expires_at": 1_777_003_600u64})
    );

    // An entry written by someone else that is not a sign-in: an error that quotes nothing.
    entry.set_password("not json, secret-ish").unwrap();
    let error = store.load(&key("codex")).unwrap_err().to_string();
    assert!(error.contains("is not a Linzumi sign-in"), "{error}");
    assert!(!error.contains("secret-ish"), "{error}");
    store.save(&key("codex"), &token("secret-token")).unwrap();

    assert!(store.remove(&key("codex")).unwrap());
    assert!(!store.remove(&key("codex")).unwrap());
    assert_eq!(store.load(&key("codex")).unwrap(), None);
    assert!(matches!(entry.get_password(), Err(keyring::Error::NoEntry)));
    assert_eq!(
        store.load(&key("other")).unwrap(),
        Some(token("other-token"))
    );
    assert!(store.remove(&key("other")).unwrap());
    assert!(
        !dir.join("auth.json").exists(),
        "nothing went to the fallback file"
    );
}

#[test]
fn without_a_keyring_sign_ins_go_to_a_private_file() {
    let session = Session::new("no-keyring");
    let nowhere = format!("unix:path={}", session.dir.join("no-bus-here").display());
    session.run_inner(
        "inner_fallback_to_file",
        &[("DBUS_SESSION_BUS_ADDRESS", &nowhere)],
    );
}

#[test]
#[ignore = "run by without_a_keyring_sign_ins_go_to_a_private_file with a bus that does not exist"]
fn inner_fallback_to_file() {
    if !support::is_inner() {
        return;
    }
    let dir = support::inner_dir().join("linzumi");
    let opened = DesktopTokenStore::open_detailed(&dir);
    assert_eq!(opened.storage, TokenStorage::File);
    let (store, warning) = (opened.store, opened.warning.unwrap());
    let path = dir.join("auth.json");
    assert!(
        warning.starts_with("The system keyring is not available ("),
        "{warning}"
    );
    assert!(
        warning.ends_with(&format!(
            "); your Kandan sign-in is kept in {} (readable only by you).",
            path.display()
        )),
        "{warning}"
    );
    println!("warning: {warning}");

    store.save(&key("codex"), &token("secret-token")).unwrap();
    assert_eq!(
        store.load(&key("codex")).unwrap(),
        Some(token("secret-token"))
    );
    #[cfg(unix)]
    {
        assert_eq!(support::mode(&path), 0o600);
        assert_eq!(support::mode(&dir), 0o700);
    }
    // `open` (the short form) says the same.
    let (_, again) = DesktopTokenStore::open(&dir);
    assert!(again.unwrap().contains("kept in"));
}
