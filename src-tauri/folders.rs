//! One engine runner per shared folder: how sharing starts (the token, Kandan's start
//! target, the runner options from the settings) and the task that turns the runner's
//! events into folder state, notifications and answers.
use std::path::Path;
use std::sync::Arc;

use linzumi_desktop_core::problem::ShareFailure;
use linzumi_desktop_core::settings::{Settings, SharedFolder};
use linzumi_engine::auth::api::{self, StartTarget};
use linzumi_engine::auth::{AccessToken, AuthScope, TokenKey, TokenStore, identity};
use linzumi_engine::codex::{AppServerSource, AppServerSpec, RuntimeOptions};
use linzumi_engine::dependencies::{self, ToolState};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::phoenix::JoinError;
use linzumi_engine::runner::{EditorOptions, Runner, RunnerError, RunnerOptions};
use linzumi_engine::runner::{allowed_cwd, event_log};
use linzumi_engine::session::SessionOptions;

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

/// Why Kandan's HTTP API refused: the sign-in itself, or something else.
fn api_failure(error: api::ApiError) -> ShareFailure {
    if error.is_unauthorized() {
        ShareFailure::SessionEnded {
            details: error.to_string(),
        }
    } else {
        ShareFailure::KandanUnreachable {
            details: error.to_string(),
        }
    }
}

fn runner_failure(error: RunnerError) -> ShareFailure {
    let details = error.to_string();
    match error {
        RunnerError::Kandan(connect) if connect.is_unauthorized() => {
            ShareFailure::SessionEnded { details }
        }
        // Kandan answered, and said no: not a network problem.
        RunnerError::Join(JoinError::Rejected { .. }) => ShareFailure::KandanRefused { details },
        RunnerError::Kandan(_) | RunnerError::Join(_) => {
            ShareFailure::KandanUnreachable { details }
        }
        RunnerError::Codex(_) => ShareFailure::CodexUnusable { details },
        RunnerError::Session(_) | RunnerError::Editor(_) | RunnerError::EventLog(_) => {
            ShareFailure::Other { details }
        }
    }
}

/// Starts the runner for `folder`: bound to Kandan's start target for the signed-in
/// user (as `linzumi start` does), or to the folder's own workspace/channel.
pub async fn start(
    context: ShareContext<'_>,
    folder: &SharedFolder,
) -> Result<(Runner, StartTarget), ShareFailure> {
    let settings = context.settings;
    let kandan =
        KandanUrl::parse(&settings.kandan_url).map_err(|error| ShareFailure::BadSetting {
            field: "kandanUrl",
            details: error.to_string(),
        })?;
    let token = signed_in_token(context.tokens.as_ref(), &kandan).ok_or_else(|| {
        ShareFailure::SessionEnded {
            details: "no sign-in is saved for this Kandan".into(),
        }
    })?;
    let target = match (&folder.workspace, &folder.channel) {
        (Some(workspace), Some(channel)) => StartTarget {
            workspace_slug: workspace.clone(),
            channel_slug: channel.clone(),
        },
        _ => api::fetch_start_target(&context.http, &kandan, &token)
            .await
            .map_err(api_failure)?,
    };
    let allowed = |scope| api::validate_token(&context.http, &kandan, &token, scope);
    let scope = target.scope();
    if !allowed(&scope).await.map_err(api_failure)? {
        // Refused for this channel: for every channel (the sign-in ended), or this one.
        let signed_in = allowed(&AuthScope::Onboarding).await.map_err(api_failure)?;
        return Err(if signed_in {
            ShareFailure::ChannelNotAllowed {
                workspace: target.workspace_slug,
                channel: target.channel_slug,
            }
        } else {
            ShareFailure::SessionEnded {
                details: "Kandan no longer accepts the saved sign-in".into(),
            }
        });
    }
    let codex = dependencies::codex_status(Path::new(&settings.codex_bin)).await;
    if codex.state != ToolState::Ready {
        return Err(ShareFailure::CodexUnusable {
            details: codex.detail.unwrap_or_else(|| "codex is not usable".into()),
        });
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
        allowed_cwd::configured_roots(&roots).map_err(|error| ShareFailure::BadSetting {
            field: "allowedRoots",
            details: error.to_string(),
        })?;
    options.forward_ports = settings.forward_ports.clone();
    let listen_user = identity::listen_user(settings.listen_user.as_deref(), token.expose())
        .map_err(|_| ShareFailure::ListenUserUnknown)?;
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
    let runner = Runner::start(options).await.map_err(runner_failure)?;
    Ok((runner, target))
}
