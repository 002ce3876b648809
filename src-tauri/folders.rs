//! One engine runner per shared folder: how sharing starts (the token, Kandan's start
//! target, the runner options from the settings) and the task that turns the runner's
//! events into folder state, notifications and answers.
use std::path::Path;
use std::sync::Arc;

use linzumi_desktop_core::settings::{Settings, SharedFolder};
use linzumi_engine::auth::api::{self, StartTarget};
use linzumi_engine::auth::{AccessToken, AuthScope, TokenKey, TokenStore, identity};
use linzumi_engine::codex::{AppServerSource, AppServerSpec, RuntimeOptions};
use linzumi_engine::dependencies::{self, ToolState};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::runner::{EditorOptions, Runner, RunnerOptions};
use linzumi_engine::runner::{allowed_cwd, event_log};
use linzumi_engine::session::SessionOptions;

/// Why a folder could not be shared, in words for the window.
pub type ShareError = String;

/// What sharing a folder needs from the rest of the app.
pub struct ShareContext<'a> {
    pub settings: &'a Settings,
    pub tokens: Arc<dyn TokenStore>,
    pub http: reqwest::Client,
}

/// The signed-in token (onboarding scope) for this Kandan, if any.
pub fn signed_in_token(tokens: &dyn TokenStore, kandan: &KandanUrl) -> Option<AccessToken> {
    tokens
        .load(&TokenKey::new(kandan, AuthScope::Onboarding))
        .ok()
        .flatten()
        .map(|stored| stored.access_token)
}

/// Starts the runner for `folder`: bound to Kandan's start target for the signed-in
/// user (as `linzumi start` does), or to the folder's own workspace/channel.
pub async fn start(
    context: ShareContext<'_>,
    folder: &SharedFolder,
) -> Result<(Runner, StartTarget), ShareError> {
    let settings = context.settings;
    let kandan = KandanUrl::parse(&settings.kandan_url).map_err(|error| error.to_string())?;
    let token = signed_in_token(context.tokens.as_ref(), &kandan)
        .ok_or_else(|| "Sign in to Kandan first.".to_owned())?;
    let target = match (&folder.workspace, &folder.channel) {
        (Some(workspace), Some(channel)) => StartTarget {
            workspace_slug: workspace.clone(),
            channel_slug: channel.clone(),
        },
        _ => api::fetch_start_target(&context.http, &kandan, &token)
            .await
            .map_err(|error| error.to_string())?,
    };
    if !api::validate_token(&context.http, &kandan, &token, &target.scope())
        .await
        .map_err(|error| error.to_string())?
    {
        return Err(format!(
            "Your Kandan sign-in is not allowed in {}/{}: sign out and sign in again.",
            target.workspace_slug, target.channel_slug
        ));
    }
    let codex = dependencies::codex_status(Path::new(&settings.codex_bin)).await;
    if codex.state != ToolState::Ready {
        return Err(codex.detail.unwrap_or_else(|| "codex is not usable".into()));
    }
    let cwd = folder.path.clone();
    let source = AppServerSource::Spawn(AppServerSpec {
        codex_bin: codex
            .path
            .clone()
            .unwrap_or_else(|| settings.codex_bin.clone().into()),
        extra_args: Vec::new(),
        env: Vec::new(),
        cwd: cwd.clone(),
    });
    let mut options = RunnerOptions::new(
        &kandan,
        token.expose().to_owned(),
        folder.runner_id.clone(),
        cwd.clone(),
        source,
    );
    options.tool_status = Some(dependencies::tool_status_payload(&codex));
    // One log per folder, in the user's state folder (never the shared folder).
    options.log_file = event_log::default_path(&folder.runner_id);
    options.runtime = RuntimeOptions {
        model: settings.model.clone(),
        reasoning_effort: settings.reasoning_effort.clone(),
        fast: settings.fast,
        approval_policy: settings.approval_policy.clone(),
        sandbox: settings.sandbox.clone(),
    };
    let roots: Vec<String> = if settings.allowed_roots.is_empty() {
        vec![cwd.display().to_string()]
    } else {
        settings.allowed_roots.clone()
    };
    options.allowed_roots =
        allowed_cwd::configured_roots(&roots).map_err(|error| error.to_string())?;
    options.forward_ports = settings.forward_ports.clone();
    let listen_user = identity::listen_user(settings.listen_user.as_deref(), token.expose())
        .map_err(|_| "Choose whose messages Codex takes (Settings → Listen user): your sign-in does not name you.".to_owned())?;
    let mut session = SessionOptions::new(
        target.workspace_slug.clone(),
        target.channel_slug.clone(),
        listen_user,
    );
    session.stream_flush = std::time::Duration::from_millis(settings.stream_flush_ms);
    options.channel_session = Some(session);
    options.editor = Some(EditorOptions::new(
        &kandan,
        token.expose(),
        &folder.runner_id,
        settings.code_server_bin.clone().map(Into::into),
    ));
    let runner = Runner::start(options)
        .await
        .map_err(|error| error.to_string())?;
    Ok((runner, target))
}
