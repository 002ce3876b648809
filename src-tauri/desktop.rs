//! The app's state and what the window, the tray and the deep link can do with it. Every
//! change ends in [`Desktop::publish`]: one snapshot event for the window and a tray
//! refresh, so the two never disagree and the window never polls.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use linzumi_desktop_core::account::{Account, SIGN_IN_TIMEOUT_MS, SignInEnd};
use linzumi_desktop_core::activity::ActivityLog;
use linzumi_desktop_core::folder_state::{ActivityLevel, FolderInput, FolderState, FolderStatus};
use linzumi_desktop_core::links;
use linzumi_desktop_core::notices::{NOTICE_MS, NewNotice, Notices};
use linzumi_desktop_core::notifications::{
    self, DesktopNotifier, InfoThrottle, Notifier, PromptAnswer, RateLimit, UpdateContext,
};
use linzumi_desktop_core::problem::{NextStep, ShareFailure};
use linzumi_desktop_core::prompts::Surface;
use linzumi_desktop_core::settings::{
    ConfigStore, DesktopConfig, Settings, SettingsRejected, SharedFolder,
};
use linzumi_desktop_core::snapshot::{Focus, Snapshot, SnapshotInput, build_snapshot, tray_input};
use linzumi_desktop_core::token_store::DesktopTokenStore;
use linzumi_desktop_core::tray_menu;
use linzumi_engine::auth::api::StartTarget;
use linzumi_engine::auth::deep_link::{DeepLinkSignIn, LinkRefused};
use linzumi_engine::auth::{self, AuthScope, StoredToken, TokenKey, TokenStore};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::runner::{Runner, RunnerEvent};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tauri_plugin_dialog::DialogExt as _;

use crate::folders;
use crate::tray::{self, TrayModel};

/// How often shared folders are checked for having been moved or deleted.
const FOLDER_CHECK: Duration = Duration::from_secs(2);
/// A connection to Kandan that comes back within this long (a deploy, a network blip)
/// is not worth a notification; the window shows it all the same.
const OFFLINE_GRACE: Duration = Duration::from_secs(20);

pub struct Desktop<R: Runtime> {
    app: AppHandle<R>,
    store: ConfigStore,
    config: Mutex<DesktopConfig>,
    tokens: Arc<dyn TokenStore>,
    account: Mutex<Account>,
    statuses: Mutex<HashMap<String, FolderStatus>>,
    activity: Mutex<ActivityLog>,
    runners: tokio::sync::Mutex<HashMap<String, Runner>>,
    notices: Mutex<Notices>,
    /// The prompt the window is to bring into view.
    focus: Mutex<Option<Focus>>,
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
        tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms()))).await;
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

fn open_in_browser(url: &url::Url) -> Result<(), NewNotice> {
    open::that_detached(url.as_str()).map_err(|error| NewNotice {
        details: Some(format!("{error}; the address is {url}")),
        ..NewNotice::error("Could not open a web browser.")
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Shows the window, creating it if it is closed: a closed window keeps no webview (and
/// no WebKit processes) alive while the app waits in the tray.
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
        return;
    }
    let built = tauri::WebviewWindowBuilder::new(app, "main", tauri::WebviewUrl::default())
        .title("Linzumi")
        .inner_size(900.0, 640.0)
        .min_inner_size(560.0, 420.0)
        .build();
    match built {
        Ok(window) => {
            let _ = window.set_focus();
        }
        Err(error) => tracing::warn!(%error, "could not open the window"),
    }
}

/// Whether the window is on screen (else a failure is also said in a notification).
fn window_shown<R: Runtime>(app: &AppHandle<R>) -> bool {
    app.get_webview_window("main")
        .and_then(|window| window.is_visible().ok())
        .unwrap_or(false)
}

/// Asks for a folder with the native picker (no window needed: the tray opens it too).
pub async fn pick_folder<R: Runtime>(app: &AppHandle<R>, title: &str) -> Option<PathBuf> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app.dialog().file().set_title(title);
    if let Some(window) = app.get_webview_window("main")
        && window.is_visible().unwrap_or(false)
    {
        dialog = dialog.set_parent(&window);
    }
    dialog.pick_folder(move |folder| {
        let _ = tx.send(folder);
    });
    let folder = rx.await.ok().flatten()?;
    match folder.into_path() {
        Ok(path) => Some(path),
        Err(error) => {
            tracing::warn!(%error, "the picker returned something that is not a path");
            None
        }
    }
}

/// Asks a yes/no question with the native dialog; true for `confirm`.
pub async fn confirm<R: Runtime>(
    app: &AppHandle<R>,
    title: &str,
    text: &str,
    confirm: &str,
) -> bool {
    use tauri_plugin_dialog::{MessageDialogButtons, MessageDialogKind};
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .message(text)
        .title(title)
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom(
            confirm.to_owned(),
            "Cancel".to_owned(),
        ))
        .show(move |answer| {
            let _ = tx.send(answer);
        });
    rx.await.unwrap_or(false)
}

impl<R: Runtime> Desktop<R> {
    /// Loads the configuration and opens the token store (the keyring, else a file).
    pub fn open(app: AppHandle<R>, config_path: PathBuf) -> Arc<Desktop<R>> {
        let store = ConfigStore::open(&config_path);
        let mut notices = Notices::default();
        let config = match store.load_reporting() {
            Ok(loaded) => {
                if let Some(notice) = loaded.notice {
                    notices.push(NewNotice::error(notice), now_ms());
                }
                loaded.config
            }
            Err(error) => {
                notices.push(NewNotice::error(error.to_string()), now_ms());
                DesktopConfig::default()
            }
        };
        let fallback = config_path
            .parent()
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let opened = DesktopTokenStore::open_detailed(&fallback);
        let tokens: Arc<dyn TokenStore> = Arc::from(opened.store);
        let mut account = Account::default();
        account.token_storage = Some(opened.storage);
        account.warning = opened.warning;
        Arc::new_cyclic(|weak: &std::sync::Weak<Desktop<R>>| {
            let answers = weak.clone();
            let notifier = DesktopNotifier::new(
                "Linzumi",
                Arc::new(
                    move |folder_id: &str, request_id: &str, answer: PromptAnswer| {
                        if let Some(desktop) = answers.upgrade() {
                            let (folder, request) = (folder_id.to_owned(), request_id.to_owned());
                            tauri::async_runtime::spawn(async move {
                                desktop.from_notification(&folder, &request, answer).await;
                            });
                        }
                    },
                ),
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
                notices: Mutex::new(notices),
                focus: Mutex::new(None),
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
        let present = token.is_some();
        let user = token
            .and_then(|token| auth::identity_from_token(token.expose()))
            .and_then(|identity| identity.username);
        lock(&self.account).token_found(user, present);
    }

    fn snapshot_input<'a>(
        &self,
        config: &'a DesktopConfig,
        statuses: &'a HashMap<String, FolderStatus>,
        activity: &'a ActivityLog,
        account: &'a Account,
        preview_url: &'a dyn Fn(&SharedFolder, u16) -> Option<String>,
    ) -> SnapshotInput<'a> {
        SnapshotInput {
            config,
            statuses,
            activity,
            account,
            autostart: config.settings.start_at_login,
            notices: lock(&self.notices).visible(now_ms()),
            focus: lock(&self.focus).clone(),
            preview_url,
        }
    }

    /// The window's snapshot and the tray's model, from one look at the state.
    fn views(&self) -> (Snapshot, TrayModel) {
        let config = lock(&self.config);
        let statuses = lock(&self.statuses);
        let activity = lock(&self.activity);
        let account = lock(&self.account);
        let kandan = KandanUrl::parse(&config.settings.kandan_url).ok();
        let preview_url = |folder: &SharedFolder, port: u16| {
            kandan
                .as_ref()
                .map(|kandan| links::preview(kandan, &folder.runner_id, port).to_string())
        };
        let input = self.snapshot_input(&config, &statuses, &activity, &account, &preview_url);
        let snapshot = build_snapshot(&input);
        let mut entries = tray_menu::menu(&tray_input(&input));
        if let Some(update) = crate::updates::tray_label(&self.app) {
            entries.splice(
                0..0,
                [
                    tray_menu::MenuEntry::Item {
                        action: tray_menu::MenuAction::Update,
                        text: update,
                    },
                    tray_menu::MenuEntry::Separator,
                ],
            );
        }
        let model = TrayModel {
            state: snapshot.tray_state,
            status: snapshot.status_line.clone(),
            entries,
        };
        (snapshot, model)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.views().0
    }

    /// Sends the state to the window and the tray.
    pub fn publish(&self) {
        let (snapshot, model) = self.views();
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

    /// The tray's first model (before the tray exists).
    pub fn tray_model(&self) -> TrayModel {
        self.views().1
    }

    fn apply(&self, folder_id: &str, input: FolderInput) {
        let (note, fine) = {
            let mut statuses = lock(&self.statuses);
            let status = statuses.entry(folder_id.to_owned()).or_default();
            let note = status.apply(input);
            let fine = matches!(status.state(), FolderState::Ready | FolderState::Working);
            (note, fine)
        };
        if fine {
            // An error about this folder that was resolved disappears.
            lock(&self.notices).resolve_folder(folder_id);
        }
        lock(&self.activity).record(now_ms(), folder_id, note);
    }

    /// Says something at the top of the window; a warning or an error also becomes a
    /// notification while the window is closed (a tray action has nowhere else to fail).
    pub fn report(self: &Arc<Self>, notice: NewNotice) {
        let loud = notice.level != ActivityLevel::Info && !window_shown(&self.app);
        if loud {
            let notifier = self.notifier.clone();
            let text = notice.text.clone();
            tauri::async_runtime::spawn_blocking(move || {
                if let Err(error) = notifier.info("Linzumi", &text) {
                    tracing::warn!(%error, "could not show a notification");
                }
            });
        }
        let sticky = notice.action.is_some() || notice.level == ActivityLevel::Error;
        lock(&self.notices).push(notice, now_ms());
        self.publish();
        if !sticky {
            // The snapshot drops it once it expires (the window hides it by itself).
            let desktop = Arc::clone(self);
            tauri::async_runtime::spawn(async move {
                tokio::time::sleep(Duration::from_millis(NOTICE_MS + 50)).await;
                lock(&desktop.notices).prune(now_ms());
                desktop.publish();
            });
        }
    }

    pub fn dismiss_notice(&self, id: u64) {
        lock(&self.notices).dismiss(id);
        self.publish();
    }

    fn save_config(&self) -> Result<(), String> {
        let config = lock(&self.config).clone();
        self.store.save(&config).map_err(|error| error.to_string())
    }

    pub fn folder_name(&self, folder_id: &str) -> Option<String> {
        lock(&self.config)
            .folder(folder_id)
            .map(SharedFolder::display_name)
    }

    /// Starts every folder that is not running (at launch, after signing in, after a
    /// folder came back).
    pub async fn resume(self: &Arc<Self>) {
        let ids: Vec<String> = lock(&self.config)
            .folders
            .iter()
            .map(|folder| folder.id.clone())
            .collect();
        for id in ids {
            let live = lock(&self.statuses)
                .get(&id)
                .is_some_and(FolderStatus::is_live);
            let running = self.runners.lock().await.contains_key(&id);
            if !live && !running {
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

    /// The tray's "Share folder with Kandan…": the picker at once, window or not.
    pub async fn share_from_tray(self: &Arc<Self>) {
        let Some(path) = pick_folder(&self.app, "Share a folder with Kandan").await else {
            return;
        };
        if let Err(message) = self.share(path).await {
            self.report(NewNotice::error(message));
        }
    }

    /// Starts (or restarts: Retry) the folder's runner. Signed out it waits for a sign-in;
    /// a folder no longer where it was shared is not started.
    pub async fn start_folder(self: &Arc<Self>, id: &str) {
        let Some(folder) = lock(&self.config).folder(id).cloned() else {
            return;
        };
        if !folder.is_intact() {
            self.apply(
                id,
                FolderInput::Missing {
                    path: folder.path.display().to_string(),
                },
            );
            self.publish();
            return;
        }
        if !lock(&self.account).signed_in() {
            self.apply(id, FolderInput::NeedsSignIn);
            self.publish();
            return;
        }
        self.apply(id, FolderInput::Connecting);
        self.publish();
        let settings = lock(&self.config).settings.clone();
        let http = match self.kandan().and_then(|kandan| {
            linzumi_engine::http::client_for(&kandan).map_err(|error| error.to_string())
        }) {
            Ok(http) => http,
            Err(details) => {
                let failure = ShareFailure::BadSetting {
                    field: "kandanUrl",
                    details,
                };
                self.apply(id, FolderInput::StartFailed(failure));
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
            Ok((mut runner, target)) => {
                self.remember_target(id, target);
                self.apply(
                    id,
                    FolderInput::Started {
                        runner_id: runner.runner_id().to_owned(),
                        instance_id: runner.instance_id().to_owned(),
                    },
                );
                let still_wanted = lock(&self.statuses)
                    .get(id)
                    .is_some_and(FolderStatus::is_live);
                if still_wanted {
                    let events = runner.events();
                    self.runners.lock().await.insert(id.to_owned(), runner);
                    self.watch(id.to_owned(), events);
                } else {
                    // Signed out, ended or stopped while it started.
                    runner.stop().await;
                }
            }
            Err(failure) => {
                let ended = matches!(failure, ShareFailure::SessionEnded { .. });
                self.apply(id, FolderInput::StartFailed(failure));
                if ended {
                    self.session_ended().await;
                }
            }
        }
        self.publish();
    }

    /// "Retry": starts a folder again, whatever it was doing.
    pub async fn retry(self: &Arc<Self>, id: &str) {
        self.stop_runner(id).await;
        self.start_folder(id).await;
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
                let unauthorized = matches!(event, RunnerEvent::KandanUnauthorized { .. });
                let missing = matches!(event, RunnerEvent::FolderMissing { .. });
                desktop.apply(&id, FolderInput::Runner(event));
                desktop.publish();
                if unauthorized {
                    desktop.session_ended().await;
                }
                if missing {
                    // No turn starts in it any more; the runner has nothing left to do.
                    desktop.stop_runner(&id).await;
                }
                if stopped {
                    break;
                }
            }
        });
    }

    async fn stop_runner(&self, id: &str) {
        let runner = self.runners.lock().await.remove(id);
        if let Some(mut runner) = runner {
            runner.stop().await;
        }
    }

    /// Kandan refused the sign-in (401/403): every folder's runner is stopped (they share
    /// the token) and waits for a sign-in; the owner is told once.
    async fn session_ended(self: &Arc<Self>) {
        let first = lock(&self.account).session_ended();
        self.wait_for_sign_in().await;
        if first {
            let notifier = self.notifier.clone();
            tauri::async_runtime::spawn_blocking(move || {
                let shown = notifier.info(
                    "Your Kandan session ended",
                    "Sign in again to keep sharing your folders; they resume by themselves.",
                );
                if let Err(error) = shown {
                    tracing::warn!(%error, "could not show a notification");
                }
            });
        }
    }

    /// Notices folders that were moved or deleted (and ones that came back) while the app
    /// runs, every [`FOLDER_CHECK`].
    pub fn watch_folders(self: &Arc<Self>) {
        let desktop = Arc::clone(self);
        tauri::async_runtime::spawn(async move {
            let mut every = tokio::time::interval(FOLDER_CHECK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let folders = lock(&desktop.config).folders.clone();
                let checked = tauri::async_runtime::spawn_blocking(move || {
                    folders
                        .into_iter()
                        .map(|folder| {
                            let intact = folder.is_intact();
                            (folder, intact)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for (folder, intact) in checked {
                    desktop.folder_checked(&folder, intact).await;
                }
            }
        });
    }

    async fn folder_checked(self: &Arc<Self>, folder: &SharedFolder, intact: bool) {
        let state = lock(&self.statuses)
            .get(&folder.id)
            .map(FolderStatus::state);
        match (intact, state) {
            (false, Some(FolderState::Missing)) | (true, None) => {}
            (false, _) => {
                let event = RunnerEvent::FolderMissing {
                    path: folder.path.clone(),
                };
                self.notify_update(&folder.id, &event);
                // Missing first: the runner's own "stopped" then says nothing.
                self.apply(
                    &folder.id,
                    FolderInput::Missing {
                        path: folder.path.display().to_string(),
                    },
                );
                self.publish();
                self.stop_runner(&folder.id).await;
            }
            (true, Some(FolderState::Missing)) => {
                // Put back where it was: share it again.
                self.start_folder(&folder.id).await;
            }
            (true, Some(_)) => {}
        }
    }

    /// "Locate…": the picker, then the share points at the chosen folder and restarts.
    pub async fn locate(self: &Arc<Self>, folder_id: &str) -> Result<(), String> {
        let name = self.folder_name(folder_id).unwrap_or_default();
        let Some(path) = pick_folder(&self.app, &format!("Where is {name} now?")).await else {
            return Ok(());
        };
        lock(&self.config)
            .relocate(folder_id, &path)
            .map_err(|error| error.to_string())?;
        self.save_config()?;
        self.stop_runner(folder_id).await;
        self.start_folder(folder_id).await;
        Ok(())
    }

    fn notify(self: &Arc<Self>, folder_id: &str, event: &RunnerEvent) {
        self.notify_update(folder_id, event);
        let Some(name) = self.folder_name(folder_id) else {
            return;
        };
        match event {
            RunnerEvent::ApprovalResolved { request_id, .. }
            | RunnerEvent::ApprovalWithdrawn { request_id }
            | RunnerEvent::PortForwardResolved { request_id, .. } => {
                let (notifier, request_id) = (self.notifier.clone(), request_id.clone());
                tauri::async_runtime::spawn_blocking(move || notifier.withdraw(&request_id));
            }
            _ => {
                if let Some(prompt) = notifications::prompt_for(folder_id, &name, event) {
                    let notifier = self.notifier.clone();
                    // D-Bus round trips: off the async workers.
                    tauri::async_runtime::spawn_blocking(move || {
                        if let Err(error) = notifier.approval(&prompt) {
                            tracing::warn!(%error, "could not show the approval notification");
                        }
                    });
                }
            }
        }
    }

    /// A finished turn or an error: a notification, unless the folder had its share. Lost
    /// Kandan is said only if it stays lost past [`OFFLINE_GRACE`].
    fn notify_update(self: &Arc<Self>, folder_id: &str, event: &RunnerEvent) {
        let Some(name) = self.folder_name(folder_id) else {
            return;
        };
        let (working_on, offline) = {
            let statuses = lock(&self.statuses);
            let status = statuses.get(folder_id);
            (
                status.and_then(|status| status.working_on().cloned()),
                status.is_some_and(FolderStatus::is_offline),
            )
        };
        let context = UpdateContext {
            folder: &name,
            working_on: working_on.as_ref(),
            offline,
        };
        let Some(update) = notifications::update_for(&context, event) else {
            return;
        };
        if !matches!(event, RunnerEvent::KandanOffline { .. }) {
            self.show_update(folder_id.to_owned(), name, update);
            return;
        }
        let (desktop, folder_id) = (Arc::clone(self), folder_id.to_owned());
        tauri::async_runtime::spawn(async move {
            tokio::time::sleep(OFFLINE_GRACE).await;
            let still = lock(&desktop.statuses)
                .get(&folder_id)
                .is_some_and(|status| status.state() == FolderState::Offline);
            if still {
                desktop.show_update(folder_id, name, update);
            }
        });
    }

    fn show_update(&self, folder_id: String, name: String, update: notifications::Update) {
        let (notifier, updates) = (self.notifier.clone(), self.updates.clone());
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

    /// A notification's button or body.
    async fn from_notification(
        self: &Arc<Self>,
        folder_id: &str,
        request_id: &str,
        answer: PromptAnswer,
    ) {
        let approve = match answer {
            PromptAnswer::Approve => true,
            PromptAnswer::Deny => false,
            PromptAnswer::Open => {
                self.show_prompt(folder_id, request_id);
                return;
            }
        };
        if let Err(message) = self
            .answer(folder_id, request_id, approve, Surface::Notification)
            .await
        {
            self.report(NewNotice::error(message).about_folder(folder_id));
        }
    }

    /// Opens the window at a prompt.
    pub fn show_prompt(&self, folder_id: &str, request_id: &str) {
        {
            let mut focus = lock(&self.focus);
            let serial = focus.as_ref().map_or(1, |focus| focus.serial + 1);
            *focus = Some(Focus {
                folder_id: folder_id.to_owned(),
                request_id: request_id.to_owned(),
                serial,
            });
        }
        show_window(&self.app);
        self.publish();
    }

    /// Answers a prompt (an approval or a port) of `folder_id` from this computer.
    pub async fn answer(
        &self,
        folder_id: &str,
        request_id: &str,
        approve: bool,
        via: Surface,
    ) -> Result<(), String> {
        let is_port = lock(&self.statuses).get(folder_id).is_some_and(|status| {
            status
                .port_prompts
                .iter()
                .any(|prompt| prompt.request_id == request_id)
        });
        self.apply(
            folder_id,
            FolderInput::AnsweredHere {
                request_id: request_id.to_owned(),
                via,
            },
        );
        let runners = self.runners.lock().await;
        let runner = runners
            .get(folder_id)
            .ok_or("That folder is not being shared any more.")?;
        let answered = if is_port {
            runner.resolve_port_forward(request_id, approve).await
        } else {
            runner.resolve_approval(request_id, approve).await
        };
        answered.map_err(|reason| match reason.as_str() {
            "port_forward_request_not_found" | "approval_request_not_found" => {
                "That question was already answered.".to_owned()
            }
            _ => format!("The answer did not go through: {reason}"),
        })
    }

    /// Stops an approved preview: Kandan can no longer reach the port.
    pub async fn stop_preview(&self, folder_id: &str, port: u16) -> Result<(), String> {
        let runners = self.runners.lock().await;
        let runner = runners
            .get(folder_id)
            .ok_or("That folder is not being shared any more.")?;
        runner
            .stop_preview(port)
            .await
            .map_err(|_| format!("Port {port} has no preview to stop."))
    }

    /// Opens the folder's Kandan channel in the browser.
    pub fn open_in_kandan(&self, folder_id: &str) -> Result<(), NewNotice> {
        let kandan = self.kandan().map_err(NewNotice::error)?;
        let (workspace, channel) = lock(&self.config)
            .folder(folder_id)
            .and_then(|folder| Some((folder.workspace.clone()?, folder.channel.clone()?)))
            .ok_or_else(|| {
                NewNotice::error("Kandan has not given this folder a channel yet: share it first.")
            })?;
        open_in_browser(&links::channel(&kandan, &workspace, &channel))
    }

    /// Opens a forwarded port's Kandan preview in the browser.
    pub fn open_preview(&self, folder_id: &str, port: u16) -> Result<(), NewNotice> {
        let kandan = self.kandan().map_err(NewNotice::error)?;
        let runner_id = lock(&self.config)
            .folder(folder_id)
            .map(|folder| folder.runner_id.clone())
            .ok_or_else(|| NewNotice::error("That folder is not shared any more."))?;
        open_in_browser(&links::preview(&kandan, &runner_id, port))
    }

    /// Opens the folder in the editor, starting it first if it is not running. The editor
    /// is reachable only through the runner, so the browser goes through Kandan's preview
    /// of its port, whose root opens the shared folder.
    pub async fn open_editor(&self, folder_id: &str) -> Result<(), NewNotice> {
        let address = match self.runners.lock().await.get(folder_id) {
            Some(runner) => runner.open_editor().await.map_err(|reason| NewNotice {
                details: Some(reason),
                ..NewNotice::error("The editor did not start.").about_folder(folder_id)
            }),
            None => Err(NewNotice::error(
                "The folder is not being shared right now, so the editor cannot open.",
            )),
        }?;
        self.open_preview(folder_id, address.port)
    }

    pub async fn stop_sharing(&self, folder_id: &str) -> Result<(), String> {
        self.stop_runner(folder_id).await;
        lock(&self.config).remove_folder(folder_id);
        lock(&self.statuses).remove(folder_id);
        lock(&self.activity).forget_folder(folder_id);
        lock(&self.notices).resolve_folder(folder_id);
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

    /// Opens the browser on Kandan's authorization page; the deep link completes it. The
    /// window shows "Waiting for your browser…" until it succeeds, fails, is canceled or
    /// times out.
    pub fn sign_in(self: &Arc<Self>) -> Result<(), String> {
        let kandan = self.kandan()?;
        let started = self.signin.begin(&kandan, AuthScope::Onboarding);
        let attempt = lock(&self.account).begin(started.url.to_string(), now_ms());
        self.publish();
        if let Err(notice) = open_in_browser(&started.url) {
            // Still waiting: "Copy link" lets the person open it themselves.
            self.report(NewNotice {
                text: "Could not open a web browser: use Copy link and open it yourself.".into(),
                ..notice
            });
        }
        let desktop = Arc::clone(self);
        tauri::async_runtime::spawn(async move {
            let timeout = Duration::from_millis(SIGN_IN_TIMEOUT_MS);
            let end = match tokio::time::timeout(timeout, started.code).await {
                Err(_) => {
                    desktop.signin.cancel();
                    SignInEnd::TimedOut
                }
                // Canceled, or replaced by a newer sign-in (which then ends this one).
                Ok(Err(_)) => SignInEnd::Canceled,
                Ok(Ok(Err(refused))) => SignInEnd::Failed {
                    message: refused.to_string(),
                    details: None,
                },
                Ok(Ok(Ok(code))) => match desktop.finish_sign_in(&kandan, &code).await {
                    Ok(user) => SignInEnd::Succeeded { user },
                    Err(details) => SignInEnd::Failed {
                        message: "Kandan did not accept the sign-in.".into(),
                        details: Some(details),
                    },
                },
            };
            desktop.sign_in_ended(attempt, end).await;
        });
        Ok(())
    }

    async fn sign_in_ended(self: &Arc<Self>, attempt: u64, end: SignInEnd) {
        let succeeded = matches!(end, SignInEnd::Succeeded { .. });
        let notice = lock(&self.account).finish(attempt, end);
        let Some(notice) = notice else {
            return;
        };
        if succeeded {
            let mut notices = lock(&self.notices);
            notices.resolve_action(NextStep::SignIn);
            // "Sign-in canceled" and the like are old news now.
            notices.clear_passing();
        }
        self.report(notice);
        if succeeded {
            self.resume().await;
        }
    }

    /// "Cancel" while waiting for the browser.
    pub async fn cancel_sign_in(self: &Arc<Self>) {
        self.signin.cancel();
        let attempt = lock(&self.account).waiting().map(|waiting| waiting.attempt);
        if let Some(attempt) = attempt {
            self.sign_in_ended(attempt, SignInEnd::Canceled).await;
        }
    }

    /// Exchanges the code and saves the token; returns who signed in.
    async fn finish_sign_in(
        &self,
        kandan: &KandanUrl,
        code: &auth::AuthorizationCode,
    ) -> Result<Option<String>, String> {
        let http = linzumi_engine::http::client_for(kandan).map_err(|error| error.to_string())?;
        let token = auth::exchange_code(&http, kandan, code)
            .await
            .map_err(|error| error.to_string())?;
        let key = TokenKey::new(kandan, AuthScope::Onboarding);
        let tokens = self.tokens.clone();
        let stored = StoredToken::from_oauth(&token);
        let user = auth::identity_from_token(token.access_token.expose())
            .and_then(|identity| identity.username);
        blocking(move || {
            tokens
                .save(&key, &stored)
                .map_err(|error| error.to_string())
        })
        .await?;
        Ok(user)
    }

    /// A `linzumi://` link arrived (this launch, or a second one handed over). A refused
    /// link needs nothing from the owner: it is said, and goes by itself, unless Kandan
    /// itself said no.
    pub fn deep_link(self: &Arc<Self>, link: &url::Url) {
        let Err(refused) = self.signin.deliver(link) else {
            return;
        };
        let warning = |text: &str| NewNotice {
            level: ActivityLevel::Warning,
            details: Some(refused.to_string()),
            ..NewNotice::info(text)
        };
        let notice = match &refused {
            LinkRefused::Forged => warning("Ignored a sign-in link that was not for this sign-in."),
            LinkRefused::NotASignInLink(_) => warning("Ignored a link Linzumi does not handle."),
            LinkRefused::MissingCode => warning("Ignored a broken sign-in link."),
            LinkRefused::Denied(_) => NewNotice::error(refused.to_string()),
            LinkRefused::Unsolicited | LinkRefused::Replayed | LinkRefused::Canceled => {
                NewNotice::info(refused.to_string())
            }
        };
        self.report(notice);
    }

    /// Every shared folder waits for a sign-in, its runner stopped. Marked first, so a
    /// runner's own "stopped" says nothing (the folder is still shared).
    async fn wait_for_sign_in(&self) {
        let ids: Vec<String> = lock(&self.config)
            .folders
            .iter()
            .map(|folder| folder.id.clone())
            .collect();
        for id in ids {
            self.apply(&id, FolderInput::NeedsSignIn);
        }
        self.publish();
        let runners: Vec<Runner> = self.runners.lock().await.drain().map(|(_, r)| r).collect();
        for mut runner in runners {
            runner.stop().await;
        }
    }

    pub async fn sign_out(&self) -> Result<(), String> {
        self.wait_for_sign_in().await;
        let kandan = self.kandan()?;
        let key = TokenKey::new(&kandan, AuthScope::Onboarding);
        let tokens = self.tokens.clone();
        blocking(move || tokens.remove(&key).map_err(|error| error.to_string())).await?;
        lock(&self.account).signed_out();
        self.publish();
        Ok(())
    }

    /// Whether any folder is shared (signing out stops them: it asks first).
    pub fn has_folders(&self) -> bool {
        !lock(&self.config).folders.is_empty()
    }

    pub async fn save_settings(&self, settings: Settings) -> Result<Settings, SettingsRejected> {
        let settings = settings.normalized();
        settings.validate()?;
        let kandan_changed = lock(&self.config).settings.kandan_url != settings.kandan_url;
        lock(&self.config).settings = settings.clone();
        self.save_config()?;
        if kandan_changed {
            // Another Kandan: its own sign-in, if any, is a new start.
            lock(&self.account).signed_out();
        }
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
