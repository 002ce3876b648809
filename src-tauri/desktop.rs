//! The app's state and what the window, the tray and the deep link can do with it. Every
//! change ends in [`Desktop::publish`]: one snapshot event for the window and a tray
//! refresh, so the two never disagree and the window never polls.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use linzumi_desktop_core::activity::ActivityLog;
use linzumi_desktop_core::folder_state::{self, FolderInput, FolderStatus};
use linzumi_desktop_core::links;
use linzumi_desktop_core::notifications::{
    self, ApprovalPrompt, DesktopNotifier, InfoThrottle, Notifier, RateLimit,
};
use linzumi_desktop_core::settings::{ConfigStore, DesktopConfig, Settings};
use linzumi_desktop_core::snapshot::{AccountInput, Snapshot, SnapshotInput, build_snapshot};
use linzumi_desktop_core::token_store::DesktopTokenStore;
use linzumi_engine::auth::api::StartTarget;
use linzumi_engine::auth::deep_link::DeepLinkSignIn;
use linzumi_engine::auth::{self, AuthScope, StoredToken, TokenKey, TokenStore};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::runner::{Runner, RunnerEvent};
use tauri::{AppHandle, Emitter, Runtime};

use crate::folders;
use crate::tray::{self, TrayFolder, TrayModel};

pub struct Desktop<R: Runtime> {
    app: AppHandle<R>,
    store: ConfigStore,
    config: Mutex<DesktopConfig>,
    tokens: Arc<dyn TokenStore>,
    account: Mutex<AccountInput>,
    statuses: Mutex<HashMap<String, FolderStatus>>,
    activity: Mutex<ActivityLog>,
    runners: tokio::sync::Mutex<HashMap<String, Runner>>,
    notice: Mutex<Option<String>>,
    notifier: Arc<dyn Notifier>,
    /// Keeps finished turns and errors to a few notifications per folder per minute.
    updates: Arc<Mutex<Updates>>,
    /// What the tray shows now.
    tray_shown: Mutex<Option<TrayModel>>,
    pub signin: DeepLinkSignIn,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The update notifications' throttle, and whether [`show_summaries`] runs for it.
struct Updates {
    throttle: InfoThrottle,
    summarizing: bool,
}

/// Shows each held-back summary once its folder's window ends, until none is pending.
/// `summarizing` is cleared under the same lock that finds nothing pending, so an update
/// held back meanwhile starts a new task instead of being left without a summary.
async fn show_summaries(updates: Arc<Mutex<Updates>>, notifier: Arc<dyn Notifier>) {
    loop {
        let due = {
            let mut held = lock(&updates);
            let due = held.throttle.next_due_ms();
            held.summarizing = due.is_some();
            due
        };
        let Some(due) = due else {
            return;
        };
        tokio::time::sleep(std::time::Duration::from_millis(
            due.saturating_sub(now_ms()),
        ))
        .await;
        let (updates, notifier) = (updates.clone(), notifier.clone());
        // D-Bus round trips: off the async workers.
        let _ = tauri::async_runtime::spawn_blocking(move || {
            if let Err(error) = lock(&updates).throttle.flush(notifier.as_ref(), now_ms()) {
                tracing::warn!(%error, "could not show a notification");
            }
        })
        .await;
    }
}

/// Runs keyring and other blocking I/O on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|error| error.to_string())?
}

fn open_in_browser(url: &url::Url) -> Result<(), String> {
    open::that_detached(url.as_str())
        .map_err(|error| format!("Could not open a browser ({error}); open {url} yourself."))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

impl<R: Runtime> Desktop<R> {
    /// Loads the configuration and opens the token store (the keyring, else a file).
    pub fn open(app: AppHandle<R>, config_path: PathBuf) -> Arc<Desktop<R>> {
        let store = ConfigStore::open(&config_path);
        let (config, notice) = match store.load_reporting() {
            Ok(loaded) => (loaded.config, loaded.notice),
            Err(error) => (DesktopConfig::default(), Some(error.to_string())),
        };
        let fallback = config_path
            .parent()
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let opened = DesktopTokenStore::open_detailed(&fallback);
        let tokens: Arc<dyn TokenStore> = Arc::from(opened.store);
        let account = AccountInput {
            signed_in: false,
            user: None,
            token_storage: Some(opened.storage),
            warning: opened.warning,
        };
        Arc::new_cyclic(|weak: &std::sync::Weak<Desktop<R>>| {
            let answers = weak.clone();
            let notifier = DesktopNotifier::new(
                "Linzumi",
                Arc::new(move |folder_id: &str, request_id: &str, approve: bool| {
                    if let Some(desktop) = answers.upgrade() {
                        let (folder, request) = (folder_id.to_owned(), request_id.to_owned());
                        tauri::async_runtime::spawn(async move {
                            desktop
                                .answer_from_notification(&folder, &request, approve)
                                .await;
                        });
                    }
                }),
            );
            let desktop = Desktop {
                app,
                store,
                config: Mutex::new(config),
                tokens,
                account: Mutex::new(account),
                statuses: Mutex::new(HashMap::new()),
                activity: Mutex::new(ActivityLog::new()),
                runners: tokio::sync::Mutex::new(HashMap::new()),
                notice: Mutex::new(notice),
                notifier: Arc::new(notifier),
                updates: Arc::new(Mutex::new(Updates {
                    throttle: InfoThrottle::new(RateLimit::default(), "Linzumi"),
                    summarizing: false,
                })),
                tray_shown: Mutex::new(None),
                signin: DeepLinkSignIn::default(),
            };
            // At launch, before any window: reading the keyring here is fine.
            let token = desktop
                .kandan()
                .ok()
                .and_then(|kandan| folders::signed_in_token(desktop.tokens.as_ref(), &kandan));
            desktop.set_account(token);
            desktop
        })
    }

    fn kandan(&self) -> Result<KandanUrl, String> {
        KandanUrl::parse(&lock(&self.config).settings.kandan_url).map_err(|error| error.to_string())
    }

    /// Reads who is signed in (a keyring round trip: off the async workers).
    async fn refresh_account(&self) {
        let token = match self.kandan() {
            Ok(kandan) => {
                let tokens = self.tokens.clone();
                blocking(move || Ok(folders::signed_in_token(tokens.as_ref(), &kandan)))
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        self.set_account(token);
    }

    fn set_account(&self, token: Option<auth::AccessToken>) {
        let mut account = lock(&self.account);
        account.signed_in = token.is_some();
        account.user = token
            .and_then(|token| auth::identity_from_token(token.expose()))
            .and_then(|identity| identity.username);
    }

    pub fn snapshot(&self) -> Snapshot {
        let config = lock(&self.config);
        let statuses = lock(&self.statuses);
        let activity = lock(&self.activity);
        let account = lock(&self.account);
        let notice = lock(&self.notice);
        let kandan = KandanUrl::parse(&config.settings.kandan_url).ok();
        let preview_url = |folder: &linzumi_desktop_core::settings::SharedFolder, port: u16| {
            kandan
                .as_ref()
                .map(|kandan| links::preview(kandan, &folder.runner_id, port).to_string())
        };
        build_snapshot(&SnapshotInput {
            config: &config,
            statuses: &statuses,
            activity: &activity,
            account: &account,
            autostart: config.settings.start_at_login,
            notice: notice.as_deref(),
            preview_url: &preview_url,
        })
    }

    /// Sends the state to the window and the tray.
    pub fn publish(&self) {
        let snapshot = self.snapshot();
        let model = TrayModel {
            state: snapshot.tray_state,
            signed_in: snapshot.account.signed_in,
            autostart: snapshot.autostart,
            update: crate::updates::tray_label(&self.app),
            folders: {
                let config = lock(&self.config);
                let statuses = lock(&self.statuses);
                config
                    .folders
                    .iter()
                    .map(|folder| TrayFolder {
                        id: folder.id.clone(),
                        name: folder.display_name(),
                        state: statuses
                            .get(&folder.id)
                            .map_or(folder_state::FolderState::Stopped, FolderStatus::state),
                    })
                    .collect()
            },
        };
        // Rebuilding the menu closes it if it is open: only when something it shows changed.
        let changed = {
            let mut shown = lock(&self.tray_shown);
            let changed = shown.as_ref() != Some(&model);
            *shown = Some(model.clone());
            changed
        };
        if changed && let Err(error) = tray::update(&self.app, &model) {
            tracing::warn!(%error, "could not update the tray");
        }
        let _ = self.app.emit("snapshot", snapshot);
    }

    fn apply(&self, folder_id: &str, input: FolderInput) {
        let note = lock(&self.statuses)
            .entry(folder_id.to_owned())
            .or_default()
            .apply(input);
        lock(&self.activity).record(now_ms(), folder_id, note);
    }

    /// A sentence for the window's notice bar (menu actions have no other place to fail).
    pub fn set_notice(&self, notice: impl Into<String>) {
        *lock(&self.notice) = Some(notice.into());
        self.publish();
    }

    fn save_config(&self) -> Result<(), String> {
        let config = lock(&self.config).clone();
        self.store.save(&config).map_err(|error| error.to_string())
    }

    /// Starts every folder of the configuration (at launch, and after signing in).
    pub async fn resume(self: &Arc<Self>) {
        let ids: Vec<String> = lock(&self.config)
            .folders
            .iter()
            .map(|folder| folder.id.clone())
            .collect();
        for id in ids {
            let running = self.runners.lock().await.contains_key(&id);
            if !running {
                self.start_folder(&id).await;
            }
        }
    }

    /// Adds `path` to the shared folders and starts sharing it.
    pub async fn share(self: &Arc<Self>, path: PathBuf) -> Result<(), String> {
        let id = {
            let mut config = lock(&self.config);
            config
                .add_folder(&path)
                .map_err(|error| error.to_string())?
                .id
                .clone()
        };
        self.save_config()?;
        self.start_folder(&id).await;
        Ok(())
    }

    async fn start_folder(self: &Arc<Self>, id: &str) {
        let Some(folder) = lock(&self.config).folder(id).cloned() else {
            return;
        };
        self.apply(id, FolderInput::Connecting);
        self.publish();
        let settings = lock(&self.config).settings.clone();
        let http = match self.kandan().and_then(|kandan| {
            linzumi_engine::http::client_for(&kandan).map_err(|error| error.to_string())
        }) {
            Ok(http) => http,
            Err(message) => {
                self.apply(id, FolderInput::StartFailed { message });
                self.publish();
                return;
            }
        };
        let context = folders::ShareContext {
            settings: &settings,
            tokens: self.tokens.clone(),
            http,
        };
        match folders::start(context, &folder).await {
            Ok((runner, target)) => {
                self.remember_target(id, target);
                self.apply(
                    id,
                    FolderInput::Started {
                        runner_id: runner.runner_id().to_owned(),
                        instance_id: runner.instance_id().to_owned(),
                    },
                );
                let events = runner.events();
                self.runners.lock().await.insert(id.to_owned(), runner);
                self.watch(id.to_owned(), events);
            }
            Err(message) => self.apply(id, FolderInput::StartFailed { message }),
        }
        self.publish();
    }

    /// Binds the folder to the channel Kandan chose, so a restart shares it into the same
    /// channel and "Open in Kandan" knows where to go.
    fn remember_target(&self, id: &str, target: StartTarget) {
        let changed = {
            let mut config = lock(&self.config);
            match config.folder_mut(id) {
                Some(folder)
                    if folder.workspace.as_deref() != Some(target.workspace_slug.as_str())
                        || folder.channel.as_deref() != Some(target.channel_slug.as_str()) =>
                {
                    folder.workspace = Some(target.workspace_slug);
                    folder.channel = Some(target.channel_slug);
                    true
                }
                _ => false,
            }
        };
        if changed && let Err(message) = self.save_config() {
            tracing::warn!(%message, "could not remember the folder's channel");
        }
    }

    /// Follows a runner's events: folder state, activity, notifications.
    fn watch(
        self: &Arc<Self>,
        id: String,
        mut events: tokio::sync::broadcast::Receiver<RunnerEvent>,
    ) {
        let desktop = Arc::clone(self);
        tauri::async_runtime::spawn(async move {
            while let Ok(event) = events.recv().await {
                desktop.notify(&id, &event);
                let stopped = event == RunnerEvent::Stopped;
                desktop.apply(&id, FolderInput::Runner(event));
                desktop.publish();
                if stopped {
                    break;
                }
            }
        });
    }

    fn notify(&self, folder_id: &str, event: &RunnerEvent) {
        self.notify_update(folder_id, event);
        let prompt = match event {
            RunnerEvent::ApprovalRequested {
                request_id,
                summary,
                reason,
                ..
            } => Some(ApprovalPrompt {
                folder_id: folder_id.to_owned(),
                request_id: request_id.clone(),
                title: "Codex asks for approval".into(),
                body: match reason {
                    Some(reason) => format!("{summary}\n{reason}"),
                    None => summary.clone(),
                },
            }),
            RunnerEvent::PortForwardRequested {
                request_id,
                port,
                command,
                ..
            } => Some(ApprovalPrompt {
                folder_id: folder_id.to_owned(),
                request_id: request_id.clone(),
                title: format!("Open a preview of port {port}?"),
                body: format!("{command} is listening on port {port}."),
            }),
            RunnerEvent::ApprovalResolved { request_id, .. }
            | RunnerEvent::ApprovalWithdrawn { request_id }
            | RunnerEvent::PortForwardResolved { request_id, .. } => {
                self.notifier.withdraw(request_id);
                None
            }
            _ => None,
        };
        if let Some(prompt) = prompt {
            let notifier = self.notifier.clone();
            // D-Bus round trips: off the async workers.
            tauri::async_runtime::spawn_blocking(move || {
                if let Err(error) = notifier.approval(&prompt) {
                    tracing::warn!(%error, "could not show the approval notification");
                }
            });
        }
    }

    /// A finished turn or an error: a notification, unless the folder had its share.
    fn notify_update(&self, folder_id: &str, event: &RunnerEvent) {
        let Some(name) = lock(&self.config)
            .folder(folder_id)
            .map(|folder| folder.display_name())
        else {
            return;
        };
        let Some(update) = notifications::update_for(&name, event) else {
            return;
        };
        let (notifier, updates) = (self.notifier.clone(), self.updates.clone());
        let folder_id = folder_id.to_owned();
        tauri::async_runtime::spawn_blocking(move || {
            let mut held = lock(&updates);
            let shown = held.throttle.info(
                notifier.as_ref(),
                &folder_id,
                &name,
                &update.title,
                &update.body,
                now_ms(),
            );
            if let Err(error) = shown {
                tracing::warn!(%error, "could not show a notification");
            }
            // One task shows the summaries of what was held back, each when its folder's
            // window ends; it is started here unless it already runs.
            if held.throttle.next_due_ms().is_some() && !held.summarizing {
                held.summarizing = true;
                drop(held);
                tauri::async_runtime::spawn(show_summaries(updates, notifier));
            }
        });
    }

    /// An Approve/Deny from a notification: the same engine path as the window's.
    async fn answer_from_notification(&self, folder_id: &str, request_id: &str, approve: bool) {
        let is_port = lock(&self.statuses).get(folder_id).is_some_and(|status| {
            status
                .port_prompts
                .iter()
                .any(|p| p.request_id == request_id)
        });
        let result = if is_port {
            self.resolve_port_forward(folder_id, request_id, approve)
                .await
        } else {
            self.resolve_approval(folder_id, request_id, approve).await
        };
        if let Err(message) = result {
            self.set_notice(message);
        }
    }

    pub async fn resolve_approval(
        &self,
        folder_id: &str,
        request_id: &str,
        approve: bool,
    ) -> Result<(), String> {
        match self.runners.lock().await.get(folder_id) {
            Some(runner) => runner.resolve_approval(request_id, approve).await,
            None => Err("That folder is not being shared any more.".into()),
        }
    }

    pub async fn resolve_port_forward(
        &self,
        folder_id: &str,
        request_id: &str,
        approve: bool,
    ) -> Result<(), String> {
        match self.runners.lock().await.get(folder_id) {
            Some(runner) => runner.resolve_port_forward(request_id, approve).await,
            None => Err("That folder is not being shared any more.".into()),
        }
    }

    /// Opens the folder's Kandan channel in the browser.
    pub fn open_in_kandan(&self, folder_id: &str) -> Result<(), String> {
        let kandan = self.kandan()?;
        let (workspace, channel) = lock(&self.config)
            .folder(folder_id)
            .and_then(|folder| Some((folder.workspace.clone()?, folder.channel.clone()?)))
            .ok_or("Kandan has not given this folder a channel yet: share it first.")?;
        open_in_browser(&links::channel(&kandan, &workspace, &channel))
    }

    /// Opens a forwarded port's Kandan preview in the browser.
    pub fn open_preview(&self, folder_id: &str, port: u16) -> Result<(), String> {
        let kandan = self.kandan()?;
        let runner_id = lock(&self.config)
            .folder(folder_id)
            .map(|folder| folder.runner_id.clone())
            .ok_or("That folder is not shared any more.")?;
        open_in_browser(&links::preview(&kandan, &runner_id, port))
    }

    /// Opens the folder in the editor, starting it first if it is not running. The editor
    /// is reachable only through the runner, so the browser goes through Kandan's preview
    /// of its port, whose root opens the shared folder.
    pub async fn open_editor(&self, folder_id: &str) -> Result<(), String> {
        let address = match self.runners.lock().await.get(folder_id) {
            Some(runner) => runner.open_editor().await,
            None => Err("The folder is not being shared: share it first.".into()),
        }
        .map_err(|reason| format!("The editor did not start: {reason}"))?;
        self.open_preview(folder_id, address.port)
    }

    pub async fn stop_sharing(&self, folder_id: &str) -> Result<(), String> {
        let runner = self.runners.lock().await.remove(folder_id);
        if let Some(mut runner) = runner {
            runner.stop().await;
        }
        lock(&self.config).remove_folder(folder_id);
        lock(&self.statuses).remove(folder_id);
        lock(&self.activity).forget_folder(folder_id);
        self.save_config()?;
        self.publish();
        Ok(())
    }

    /// Ends every folder's runner (the app quits); the folders stay shared for next time.
    pub async fn stop_all(&self) {
        let runners: Vec<Runner> = self.runners.lock().await.drain().map(|(_, r)| r).collect();
        for mut runner in runners {
            runner.stop().await;
        }
    }

    /// Opens the browser on Kandan's authorization page; the deep link completes it.
    pub fn sign_in(self: &Arc<Self>) -> Result<(), String> {
        let kandan = self.kandan()?;
        let started = self.signin.begin(&kandan, AuthScope::Onboarding);
        open_in_browser(&started.url)?;
        let desktop = Arc::clone(self);
        tauri::async_runtime::spawn(async move {
            let Ok(code) = started.code.await else {
                return;
            };
            let result = match code {
                Ok(code) => desktop.finish_sign_in(&kandan, &code).await,
                Err(refused) => Err(refused.to_string()),
            };
            match result {
                Ok(()) => {
                    desktop.set_notice("Signed in to Kandan.");
                    desktop.resume().await;
                }
                Err(message) => desktop.set_notice(message),
            }
        });
        Ok(())
    }

    async fn finish_sign_in(
        &self,
        kandan: &KandanUrl,
        code: &auth::AuthorizationCode,
    ) -> Result<(), String> {
        let http = linzumi_engine::http::client_for(kandan).map_err(|error| error.to_string())?;
        let token = auth::exchange_code(&http, kandan, code)
            .await
            .map_err(|error| error.to_string())?;
        let key = TokenKey::new(kandan, AuthScope::Onboarding);
        let tokens = self.tokens.clone();
        let stored = StoredToken::from_oauth(&token);
        blocking(move || {
            tokens
                .save(&key, &stored)
                .map_err(|error| error.to_string())
        })
        .await?;
        self.refresh_account().await;
        Ok(())
    }

    /// A `linzumi://` link arrived (this launch, or a second one handed over).
    pub fn deep_link(&self, link: &url::Url) {
        if let Err(refused) = self.signin.deliver(link) {
            self.set_notice(refused.to_string());
        }
    }

    pub async fn sign_out(&self) -> Result<(), String> {
        let ids: Vec<String> = self.runners.lock().await.keys().cloned().collect();
        for id in ids {
            if let Some(mut runner) = self.runners.lock().await.remove(&id) {
                runner.stop().await;
            }
            self.apply(&id, FolderInput::Stopped);
        }
        let kandan = self.kandan()?;
        let key = TokenKey::new(&kandan, AuthScope::Onboarding);
        let tokens = self.tokens.clone();
        blocking(move || tokens.remove(&key).map_err(|error| error.to_string())).await?;
        self.refresh_account().await;
        self.publish();
        Ok(())
    }

    pub async fn save_settings(&self, settings: Settings) -> Result<Settings, String> {
        settings.validate().map_err(|invalid| invalid.to_string())?;
        lock(&self.config).settings = settings.clone();
        self.save_config()?;
        self.refresh_account().await;
        self.publish();
        Ok(settings)
    }

    pub fn set_autostart(&self, enabled: bool) -> Result<(), String> {
        lock(&self.config).settings.start_at_login = enabled;
        self.save_config()?;
        self.publish();
        Ok(())
    }
}
