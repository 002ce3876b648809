//! What the app tells the user about updates, and when it looks for one next. Pure, so
//! the messages and the schedule are tested without a feed; the checking, the signature
//! verification and the installing are `linzumi-desktop-updater`'s (tauri-plugin-updater).
use std::time::Duration;

use serde::Serialize;

/// The update part of the window and the tray.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(
    tag = "state",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum UpdateState {
    /// Not looking: the setting is off, or this build carries no update key.
    Off {
        reason: String,
    },
    /// Nothing newer found yet.
    Current {
        version: String,
    },
    Available {
        version: String,
        current: String,
        notes: Option<String>,
        install: InstallKind,
        /// The release's page, for reading the notes or downloading by hand.
        release_url: String,
    },
    Installing {
        version: String,
    },
    /// Installed; the new version runs from the next start.
    Installed {
        version: String,
    },
    /// The feed or the download was not trusted; nothing was installed.
    Refused {
        message: String,
    },
}

/// How this copy of the app gets a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstallKind {
    /// The app replaces itself: the macOS app, the Windows installers, the AppImage.
    InApp,
    /// A .deb or .rpm: the package manager owns the files, so it updates them.
    PackageManager,
    /// Not installed from a bundle (a development build): the release page has them.
    Download,
}

/// The bundle this copy was installed from (Tauri's `BundleType`, without Tauri).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    Deb,
    Rpm,
    AppImage,
    MacApp,
    Msi,
    Nsis,
}

impl InstallKind {
    pub fn for_bundle(bundle: Option<Bundle>) -> InstallKind {
        match bundle {
            Some(Bundle::Deb | Bundle::Rpm) => InstallKind::PackageManager,
            Some(Bundle::AppImage | Bundle::MacApp | Bundle::Msi | Bundle::Nsis) => {
                InstallKind::InApp
            }
            None => InstallKind::Download,
        }
    }
}

impl UpdateState {
    /// The sentence for the window's banner; `None` when there is nothing to say.
    pub fn message(&self) -> Option<String> {
        match self {
            UpdateState::Off { .. } | UpdateState::Current { .. } => None,
            UpdateState::Available {
                version, install, ..
            } => Some(match install {
                InstallKind::InApp => format!("Update available: Linzumi {version}."),
                InstallKind::PackageManager => format!(
                    "Update available: Linzumi {version}. Update it with your package manager \
                     (apt or dnf), or download it from the release page."
                ),
                InstallKind::Download => {
                    format!("Update available: Linzumi {version}, on the release page.")
                }
            }),
            UpdateState::Installing { version } => Some(format!("Installing Linzumi {version}…")),
            UpdateState::Installed { version } => Some(format!(
                "Linzumi {version} is installed; it starts the next time Linzumi starts."
            )),
            UpdateState::Refused { message } => Some(message.clone()),
        }
    }

    /// The tray's item for it, when there is one.
    pub fn tray_label(&self) -> Option<String> {
        match self {
            UpdateState::Available { version, .. } => {
                Some(format!("Update available: Linzumi {version}"))
            }
            UpdateState::Installed { version } => {
                Some(format!("Linzumi {version} installed: restart to use it"))
            }
            _ => None,
        }
    }
}

/// The page of release `version` in `repository` (the crate's repository URL). Built here
/// rather than read from the feed: the feed is not signed, and the link opens a browser.
pub fn release_page(repository: &str, version: &str) -> String {
    format!(
        "{}/releases/tag/v{version}",
        repository.trim_end_matches('/')
    )
}

/// When to look: at start, then every day; after a failed look (no network, the feed
/// down), sooner, with growing gaps, and never more than a day apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub retries: Vec<Duration>,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            every: Duration::from_secs(24 * 60 * 60),
            retries: [60, 5 * 60, 30 * 60, 2 * 60 * 60]
                .map(Duration::from_secs)
                .to_vec(),
        }
    }
}

impl Schedule {
    /// The wait before the next look, after `failures` failed looks in a row.
    pub fn next(&self, failures: usize) -> Duration {
        match failures.checked_sub(1) {
            None => self.every,
            Some(index) => self
                .retries
                .get(index)
                .or(self.retries.last())
                .copied()
                .unwrap_or(self.every)
                .min(self.every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_managed_bundles_are_not_replaced_in_place() {
        assert_eq!(
            InstallKind::for_bundle(Some(Bundle::Deb)),
            InstallKind::PackageManager
        );
        assert_eq!(
            InstallKind::for_bundle(Some(Bundle::Rpm)),
            InstallKind::PackageManager
        );
        for bundle in [Bundle::AppImage, Bundle::MacApp, Bundle::Msi, Bundle::Nsis] {
            assert_eq!(InstallKind::for_bundle(Some(bundle)), InstallKind::InApp);
        }
        assert_eq!(InstallKind::for_bundle(None), InstallKind::Download);
    }

    #[test]
    fn a_package_managed_copy_is_told_to_use_its_package_manager_with_a_link() {
        let state = UpdateState::Available {
            version: "0.2.0".into(),
            current: "0.1.0".into(),
            notes: None,
            install: InstallKind::PackageManager,
            release_url: release_page("https://github.com/linzumi/linzumi-desktop/", "0.2.0"),
        };
        let message = state.message().unwrap_or_default();
        assert!(message.contains("package manager"), "{message}");
        assert_eq!(
            state.tray_label().as_deref(),
            Some("Update available: Linzumi 0.2.0")
        );
        let json = serde_json::to_value(&state).unwrap_or_default();
        assert_eq!(json["state"], "available");
        assert_eq!(json["install"], "packageManager");
        assert_eq!(
            json["releaseUrl"],
            "https://github.com/linzumi/linzumi-desktop/releases/tag/v0.2.0"
        );
    }

    #[test]
    fn failed_looks_are_retried_sooner_but_never_more_than_a_day_apart() {
        let schedule = Schedule::default();
        let day = Duration::from_secs(24 * 60 * 60);
        assert_eq!(schedule.next(0), day);
        assert_eq!(schedule.next(1), Duration::from_secs(60));
        assert!(schedule.next(2) > schedule.next(1));
        assert_eq!(schedule.next(40), Duration::from_secs(2 * 60 * 60));
        let short_day = Schedule {
            every: Duration::from_secs(10),
            retries: vec![Duration::from_secs(60)],
        };
        assert_eq!(short_day.next(1), Duration::from_secs(10));
    }
}
