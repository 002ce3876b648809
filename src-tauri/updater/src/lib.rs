//! Updates for Linzumi Desktop: looks for a new release at start and then daily (when the
//! setting allows), and installs it on the user's click where the bundle can replace
//! itself. Everything that decides whether a release is trusted is tauri-plugin-updater's:
//! the feed in `plugins.updater.endpoints`, the minisign signature checked against the
//! public key built into the app (`plugins.updater.pubkey`), and the version bound into
//! that signature (`requireSignedVersion`). On top of it this crate refuses downgrades
//! with a message, retries an unreachable feed quietly, and keeps the state the window
//! and the tray show ([`UpdateState`]).
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use linzumi_desktop_core::update_state::{InstallKind, Schedule, UpdateState, release_page};
use tauri::{AppHandle, Runtime};
use tauri_plugin_updater::{Error as PluginError, Update, UpdaterExt};

pub use linzumi_desktop_core::update_state;

/// How one copy of the app is updated.
pub struct Options {
    pub install: InstallKind,
    pub schedule: Schedule,
    /// The file an in-app install replaces; `None` is the running executable (or the
    /// AppImage it runs from).
    pub executable: Option<PathBuf>,
}

impl Options {
    /// This copy of the app, as installed.
    pub fn for_this_app() -> Options {
        use linzumi_desktop_core::update_state::Bundle;
        use tauri::utils::config::BundleType;
        let bundle = tauri::utils::platform::bundle_type().map(|bundle| match bundle {
            BundleType::Deb => Bundle::Deb,
            BundleType::Rpm => Bundle::Rpm,
            BundleType::AppImage => Bundle::AppImage,
            BundleType::App | BundleType::Dmg => Bundle::MacApp,
            BundleType::Msi => Bundle::Msi,
            BundleType::Nsis => Bundle::Nsis,
        });
        Options {
            install: InstallKind::for_bundle(bundle),
            schedule: Schedule::default(),
            executable: None,
        }
    }
}

/// Why a look at the feed found nothing to offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No answer (offline, the server down or failing): retried quietly.
    #[error("the update feed could not be reached: {0}")]
    Unreachable(String),
    /// The feed offered something this app must not install; the user is told.
    #[error("{0}")]
    Refused(String),
    /// Anything else (a malformed feed, no entry for this platform): logged.
    #[error("{0}")]
    Failed(String),
}

/// The app's updater; share it with `Arc`.
pub struct Updates<R: Runtime> {
    app: AppHandle<R>,
    options: Options,
    state: Mutex<UpdateState>,
    /// The announced release, kept for the install click.
    pending: tokio::sync::Mutex<Option<Update>>,
    enabled: AtomicBool,
    failures: AtomicUsize,
    wake: tokio::sync::Notify,
    changed: Box<dyn Fn(&UpdateState) + Send + Sync>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The public key built into the app; empty in builds without one.
fn pubkey<R: Runtime>(app: &AppHandle<R>) -> String {
    app.config()
        .plugins
        .0
        .get("updater")
        .and_then(|updater| updater.get("pubkey"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

impl<R: Runtime> Updates<R> {
    /// `changed` runs after every change of [`Updates::state`] (the shell republishes).
    /// Needs the updater plugin (`tauri_plugin_updater::Builder`) on the app.
    pub fn new(
        app: AppHandle<R>,
        options: Options,
        enabled: bool,
        changed: impl Fn(&UpdateState) + Send + Sync + 'static,
    ) -> Arc<Updates<R>> {
        let updates = Updates {
            state: Mutex::new(UpdateState::Current {
                version: app.package_info().version.to_string(),
            }),
            app,
            options,
            pending: tokio::sync::Mutex::new(None),
            enabled: AtomicBool::new(enabled),
            failures: AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
            changed: Box::new(changed),
        };
        let idle = updates.idle_state();
        *lock(&updates.state) = idle;
        Arc::new(updates)
    }

    pub fn state(&self) -> UpdateState {
        lock(&self.state).clone()
    }

    fn set_state(&self, state: UpdateState) {
        let changed = {
            let mut current = lock(&self.state);
            let changed = *current != state;
            *current = state.clone();
            changed
        };
        if changed {
            (self.changed)(&state);
        }
    }

    /// What to show while nothing was found: why it is off, or the running version.
    fn idle_state(&self) -> UpdateState {
        if !self.enabled.load(Ordering::SeqCst) {
            UpdateState::Off {
                reason: "Looking for updates is turned off in the settings.".into(),
            }
        } else if pubkey(&self.app).is_empty() {
            UpdateState::Off {
                reason: "This build has no update key, so it does not look for updates.".into(),
            }
        } else {
            UpdateState::Current {
                version: self.app.package_info().version.to_string(),
            }
        }
    }

    fn looking(&self) -> bool {
        matches!(self.idle_state(), UpdateState::Current { .. })
    }

    /// The setting: on looks now and daily; off stops looking and forgets an offer.
    pub fn set_enabled(&self, enabled: bool) {
        if self.enabled.swap(enabled, Ordering::SeqCst) == enabled {
            return;
        }
        if !enabled {
            self.set_state(self.idle_state());
        }
        self.wake.notify_one();
    }

    /// Looks at the feed once and updates the state. An unreachable feed leaves the state
    /// as it was (the caller retries); an untrusted offer becomes [`UpdateState::Refused`].
    pub async fn check(&self) -> Result<(), CheckError> {
        if !self.looking() {
            self.set_state(self.idle_state());
            return Ok(());
        }
        let current = self.app.package_info().version.clone();
        let older_offer = Arc::new(Mutex::new(None));
        let seen = older_offer.clone();
        let mut builder = self
            .app
            .updater_builder()
            .timeout(Duration::from_secs(30))
            .version_comparator(move |current, release| {
                if release.version < current {
                    *lock(&seen) = Some(release.version.to_string());
                }
                release.version > current
            });
        if let Some(executable) = &self.options.executable {
            builder = builder.executable_path(executable);
        }
        let updater = builder.build().map_err(classify)?;
        let found = updater.check().await.map_err(classify);
        let found = match found {
            Ok(found) => found,
            Err(CheckError::Refused(message)) => {
                self.set_state(UpdateState::Refused {
                    message: message.clone(),
                });
                return Err(CheckError::Refused(message));
            }
            Err(error) => return Err(error),
        };
        let Some(update) = found else {
            if let Some(offered) = lock(&older_offer).take() {
                let message = format!(
                    "The update feed offers Linzumi {offered}, older than this {current}; \
                     it was refused."
                );
                self.set_state(UpdateState::Refused {
                    message: message.clone(),
                });
                return Err(CheckError::Refused(message));
            }
            *self.pending.lock().await = None;
            self.set_state(self.idle_state());
            return Ok(());
        };
        let state = UpdateState::Available {
            version: update.version.clone(),
            current: current.to_string(),
            notes: update.body.clone(),
            install: self.options.install,
            release_url: release_page(env!("CARGO_PKG_REPOSITORY"), &update.version),
        };
        *self.pending.lock().await = Some(update);
        self.set_state(state);
        Ok(())
    }

    /// Looks at start and then on the schedule until the app ends; failures to reach the
    /// feed are retried sooner, without telling the user.
    pub async fn run(self: Arc<Self>) {
        loop {
            let wait = if self.looking() {
                match self.check().await {
                    Ok(()) | Err(CheckError::Refused(_)) => {
                        self.failures.store(0, Ordering::SeqCst);
                    }
                    Err(CheckError::Unreachable(reason)) => {
                        self.failures.fetch_add(1, Ordering::SeqCst);
                        tracing::info!(%reason, "no answer from the update feed; trying again later");
                    }
                    Err(CheckError::Failed(reason)) => {
                        self.failures.store(0, Ordering::SeqCst);
                        tracing::warn!(%reason, "could not look for updates");
                    }
                }
                self.options
                    .schedule
                    .next(self.failures.load(Ordering::SeqCst))
            } else {
                self.options.schedule.every
            };
            // The setting turned on (or off) ends the wait.
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    /// The user's click: downloads the announced release, which the plugin verifies
    /// against the app's key and the signed version, and installs it. Only where the
    /// bundle can replace itself; a package manager's copy is updated by the package
    /// manager.
    pub async fn install(&self) -> Result<(), String> {
        if self.options.install != InstallKind::InApp {
            return Err(
                "This copy of Linzumi is updated by your package manager or from the release page."
                    .into(),
            );
        }
        if !self.looking() {
            return Err("Looking for updates is turned off in the settings.".into());
        }
        let pending = self.pending.lock().await;
        let Some(update) = pending.as_ref() else {
            return Err("There is no update to install.".into());
        };
        let version = update.version.clone();
        self.set_state(UpdateState::Installing {
            version: version.clone(),
        });
        let result = match update.download(|_, _| {}, || {}).await {
            Ok(bytes) => update.install(bytes).map_err(classify),
            Err(error) => Err(classify(error)),
        };
        drop(pending);
        match result {
            Ok(()) => {
                self.set_state(UpdateState::Installed { version });
                Ok(())
            }
            Err(CheckError::Refused(message)) => {
                let message = format!("Linzumi {version} was not installed: {message}");
                self.set_state(UpdateState::Refused {
                    message: message.clone(),
                });
                Err(message)
            }
            Err(error) => {
                let message = format!("Linzumi {version} could not be installed: {error}");
                // Still on offer: the user can try again.
                self.set_state(UpdateState::Refused {
                    message: message.clone(),
                });
                Err(message)
            }
        }
    }
}

/// Sorts the plugin's errors into what the app does about them.
fn classify(error: PluginError) -> CheckError {
    match error {
        PluginError::Reqwest(_) | PluginError::Network(_) | PluginError::ReleaseNotFound => {
            CheckError::Unreachable(error.to_string())
        }
        PluginError::Minisign(_) | PluginError::Base64(_) | PluginError::SignatureUtf8(_) => {
            CheckError::Refused("its signature does not match Linzumi's release key.".into())
        }
        PluginError::SignedVersionMismatch { signed, announced } => CheckError::Refused(format!(
            "the update feed announces version {announced}, but the download is signed as \
             {signed}."
        )),
        PluginError::MissingSignedVersion => {
            CheckError::Refused("its signature does not name the version it was made for.".into())
        }
        other => CheckError::Failed(other.to_string()),
    }
}
