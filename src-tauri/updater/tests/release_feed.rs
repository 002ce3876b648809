//! The updater against a local release feed (testing/release-feed) with the real
//! tauri-plugin-updater: signature checking with a test key, the signed version, an
//! AppImage replaced in place, and the offers a compromised or absent feed makes.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linzumi_desktop_updater::update_state::{InstallKind, Schedule, UpdateState};
use linzumi_desktop_updater::{CheckError, Options, Updates};
use release_feed::{NEWER, NEWER_APPIMAGE, Offer, ReleaseFeed, TEST_PUBKEY};
use tauri::test::{MockRuntime, mock_builder, mock_context, noop_assets};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A 0.1.0 app whose updater trusts the test key and reads `feed`.
fn app(feed: &ReleaseFeed) -> Result<tauri::App<MockRuntime>, tauri::Error> {
    let mut context = mock_context(noop_assets());
    context.config_mut().plugins.0.insert(
        "updater".into(),
        serde_json::json!({
            "pubkey": TEST_PUBKEY.trim(),
            "endpoints": [feed.url()],
            "requireSignedVersion": true,
            // Only here: the test feed is plain HTTP on the loopback.
            "dangerousInsecureTransportProtocol": true,
        }),
    );
    mock_builder()
        .plugin(tauri_plugin_updater::Builder::new().build())
        .build(context)
}

struct Harness {
    updates: Arc<Updates<MockRuntime>>,
    /// Every state the shell was told about, in order.
    published: Arc<Mutex<Vec<UpdateState>>>,
    _app: tauri::App<MockRuntime>,
}

fn harness(feed: &ReleaseFeed, install: InstallKind, appimage: Option<&Path>) -> Harness {
    let app = app(feed).unwrap_or_else(|error| panic!("the test app starts: {error}"));
    let published = Arc::new(Mutex::new(Vec::new()));
    let seen = published.clone();
    let options = Options {
        install,
        schedule: Schedule {
            every: Duration::from_secs(3600),
            retries: vec![Duration::from_millis(100)],
        },
        executable: appimage.map(Path::to_path_buf),
    };
    let updates = Updates::new(app.handle().clone(), options, true, move |state| {
        if let Ok(mut seen) = seen.lock() {
            seen.push(state.clone());
        }
    });
    Harness {
        updates,
        published,
        _app: app,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_release_is_announced_and_replaces_the_appimage_on_click() -> TestResult {
    let feed = ReleaseFeed::start(Offer::Newer).await?;
    let folder = tempdir()?;
    let appimage = folder.join("Linzumi.AppImage");
    std::fs::write(&appimage, "#!/bin/sh\necho 'Linzumi 0.1.0'\n")?;
    let h = harness(&feed, InstallKind::InApp, Some(&appimage));
    assert_eq!(
        h.updates.state(),
        UpdateState::Current {
            version: "0.1.0".into()
        }
    );

    h.updates.check().await?;
    let state = h.updates.state();
    let UpdateState::Available {
        version,
        current,
        install,
        release_url,
        ..
    } = &state
    else {
        panic!("0.2.0 should be on offer: {state:?}");
    };
    assert_eq!(
        (version.as_str(), current.as_str()),
        (NEWER.version, "0.1.0")
    );
    assert_eq!(*install, InstallKind::InApp);
    assert_eq!(
        release_url,
        "https://github.com/linzumi/linzumi-desktop/releases/tag/v0.2.0"
    );
    assert_eq!(
        state.tray_label().as_deref(),
        Some("Update available: Linzumi 0.2.0")
    );

    h.updates.install().await?;
    assert_eq!(std::fs::read_to_string(&appimage)?, NEWER_APPIMAGE);
    assert_eq!(
        h.updates.state(),
        UpdateState::Installed {
            version: NEWER.version.into()
        }
    );
    let published = h.published.lock().map(|p| p.clone()).unwrap_or_default();
    assert!(
        matches!(
            published.as_slice(),
            [
                UpdateState::Available { .. },
                UpdateState::Installing { .. },
                UpdateState::Installed { .. }
            ]
        ),
        "{published:?}"
    );
    std::fs::remove_dir_all(folder)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_the_release_workflow_publishes_is_read_and_installed() {
    let feed = ReleaseFeed::start(Offer::Published)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let folder = tempdir().unwrap_or_else(|e| panic!("{e}"));
    let appimage = folder.join("Linzumi.AppImage");
    std::fs::write(&appimage, "#!/bin/sh\necho 'Linzumi 0.1.0'\n").unwrap_or_default();
    let h = harness(&feed, InstallKind::InApp, Some(&appimage));
    let checked = h.updates.check().await;
    assert!(checked.is_ok(), "{checked:?}");
    assert!(
        matches!(&h.updates.state(), UpdateState::Available { version, .. } if version == "0.2.0"),
        "{:?}",
        h.updates.state()
    );
    let installed = h.updates.install().await;
    assert!(installed.is_ok(), "{installed:?}");
    assert_eq!(
        std::fs::read_to_string(&appimage).unwrap_or_default(),
        NEWER_APPIMAGE
    );
    let _ = std::fs::remove_dir_all(folder);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_managed_copy_is_told_to_use_its_package_manager() -> TestResult {
    let feed = ReleaseFeed::start(Offer::Newer).await?;
    let h = harness(&feed, InstallKind::PackageManager, None);
    h.updates.check().await?;
    let state = h.updates.state();
    let message = state.message().unwrap_or_default();
    assert!(
        message.starts_with("Update available: Linzumi 0.2.0.")
            && message.contains("package manager"),
        "{message}"
    );
    let refused = h.updates.install().await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|m| m.contains("package manager")),
        "{refused:?}"
    );
    assert_eq!(h.updates.state(), state, "the offer stays on screen");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_with_a_bad_signature_is_refused_and_nothing_is_replaced() -> TestResult {
    let feed = ReleaseFeed::start(Offer::BadSignature).await?;
    let folder = tempdir()?;
    let appimage = folder.join("Linzumi.AppImage");
    let original = "#!/bin/sh\necho 'Linzumi 0.1.0'\n";
    std::fs::write(&appimage, original)?;
    let h = harness(&feed, InstallKind::InApp, Some(&appimage));
    h.updates.check().await?;
    let refused = h.updates.install().await;
    let message = refused.err().unwrap_or_default();
    assert!(
        message.contains("0.2.0 was not installed") && message.contains("signature"),
        "{message}"
    );
    assert_eq!(h.updates.state(), UpdateState::Refused { message });
    assert_eq!(std::fs::read_to_string(&appimage)?, original);
    std::fs::remove_dir_all(folder)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downgrade_is_refused_with_a_message() -> TestResult {
    let feed = ReleaseFeed::start(Offer::Downgrade).await?;
    let h = harness(&feed, InstallKind::InApp, None);
    let refused = h.updates.check().await;
    let Err(CheckError::Refused(message)) = refused else {
        panic!("a downgrade should be refused: {refused:?}");
    };
    assert!(
        message.contains("0.0.9, older than this 0.1.0"),
        "{message}"
    );
    assert_eq!(h.updates.state(), UpdateState::Refused { message });
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_release_announced_as_new_is_refused_by_its_signed_version() -> TestResult {
    let feed = ReleaseFeed::start(Offer::OlderAsNewer).await?;
    let folder = tempdir()?;
    let appimage = folder.join("Linzumi.AppImage");
    let original = "#!/bin/sh\necho 'Linzumi 0.1.0'\n";
    std::fs::write(&appimage, original)?;
    let h = harness(&feed, InstallKind::InApp, Some(&appimage));
    h.updates.check().await?;
    let message = h.updates.install().await.err().unwrap_or_default();
    assert!(
        message.contains("announces version 0.3.0") && message.contains("signed as 0.0.9"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&appimage)?, original);
    std::fs::remove_dir_all(folder)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_feed_is_retried_quietly_until_it_answers() -> TestResult {
    let feed = ReleaseFeed::start(Offer::Unreachable).await?;
    let h = harness(&feed, InstallKind::InApp, None);
    let running = tokio::spawn(h.updates.clone().run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while feed.feed_requests() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retried {} times",
            feed.feed_requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.updates.state(),
        UpdateState::Current {
            version: "0.1.0".into()
        },
        "nothing is said while the feed does not answer"
    );
    assert!(h.published.lock().map(|p| p.is_empty()).unwrap_or(false));

    feed.set(Offer::Newer);
    while !matches!(h.updates.state(), UpdateState::Available { .. }) {
        assert!(tokio::time::Instant::now() < deadline, "never announced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn turned_off_it_does_not_look_and_forgets_the_offer() -> TestResult {
    let feed = ReleaseFeed::start(Offer::Newer).await?;
    let h = harness(&feed, InstallKind::InApp, None);
    h.updates.check().await?;
    assert!(matches!(h.updates.state(), UpdateState::Available { .. }));
    h.updates.set_enabled(false);
    assert!(matches!(h.updates.state(), UpdateState::Off { .. }));
    let asked = feed.feed_requests();
    h.updates.check().await?;
    assert_eq!(feed.feed_requests(), asked);
    assert!(h.updates.install().await.is_err());
    Ok(())
}

fn tempdir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("linzumi-updater-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
