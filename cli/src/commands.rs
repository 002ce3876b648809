//! `connect`, `start` and `auth`: flags → checks → sign-in → a running runner.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use linzumi_engine::auth::{self, AuthScope, TokenSource};
use linzumi_engine::codex::{AppServerAddress, AppServerSource, AppServerSpec, CapabilityToken};
use linzumi_engine::dependencies::{self, ToolState};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::runner::allowed_cwd::AllowedRoot;
use linzumi_engine::runner::event_log;
use linzumi_engine::runner::{EditorOptions, Runner, RunnerOptions};
use linzumi_engine::session::SessionOptions;
use serde_json::Value;

use kandan_test_server::{AdminKey, DemoConfig, KandanTestServer, ServerConfig, TestUser};
use mock_model_api::{CodexHome, CodexHomeOptions, MockModelApi};

use crate::args::{AuthArgs, ConnectArgs, DemoArgs, RunnerFlags, StartArgs};
use crate::session;
use crate::settings::{self, FlagError};
use crate::sign_in::SignIn;

/// Why a command could not run: a flag mistake (exit 2) or anything else (exit 1).
#[derive(Debug)]
pub enum CommandError {
    Flag(FlagError),
    Failed(String),
}

impl From<FlagError> for CommandError {
    fn from(error: FlagError) -> Self {
        CommandError::Flag(error)
    }
}

fn failed(message: impl ToString) -> CommandError {
    CommandError::Failed(message.to_string())
}

pub async fn connect(args: ConnectArgs) -> Result<ExitCode, CommandError> {
    let kandan = parse_kandan_url(&args.kandan_url)?;
    let target = settings::channel_target(args.workspace.as_deref(), args.channel.as_deref())?;
    let cwd = settings::working_folder(args.cwd.as_deref())?;
    let allowed_roots = settings::allowed_roots(args.allowed_cwd.as_deref())?;
    let prepared = prepare(&args.runner, &cwd, allowed_roots).await?;
    let scope = match &target {
        Some((workspace, channel)) => AuthScope::channel(workspace, channel),
        None => AuthScope::Unscoped,
    };
    settings::stream_flush(args.runner.stream_flush_ms.as_deref())?;
    let sign_in = SignIn::new(&kandan, &args.kandan).map_err(failed)?;
    let token = sign_in.token(&scope).await.map_err(failed)?;
    let session = match target {
        Some(target) => Some(settings::session(
            target,
            args.kandan_thread_id.clone(),
            &args.runner,
            token.expose(),
        )?),
        None => None,
    };
    run(
        kandan,
        token.expose(),
        &cwd,
        &args.runner,
        prepared,
        session,
    )
    .await
}

pub async fn start(args: StartArgs) -> Result<ExitCode, CommandError> {
    let cwd = settings::start_folder(
        &args.folders,
        args.workspace.as_deref(),
        args.channel.as_deref(),
    )?;
    let kandan = parse_kandan_url(&args.kandan_url)?;
    let root = settings::allowed_roots(Some(&cwd.display().to_string()))?;
    let prepared = prepare(&args.runner, &cwd, root).await?;
    settings::stream_flush(args.runner.stream_flush_ms.as_deref())?;
    let sign_in = SignIn::new(&kandan, &args.kandan).map_err(failed)?;
    let start =
        auth::resolve_start_token(&sign_in.oauth, &sign_in.store, sign_in.explicit.as_ref())
            .await
            .map_err(failed)?;
    eprintln!(
        "Sharing {} with Kandan workspace {} (channel {}).",
        cwd.display(),
        start.target.workspace_slug,
        start.target.channel_slug
    );
    let token = start.token.token.expose();
    let target = (start.target.workspace_slug, start.target.channel_slug);
    let session = settings::session(target, args.kandan_thread_id.clone(), &args.runner, token)?;
    run(kandan, token, &cwd, &args.runner, prepared, Some(session)).await
}

/// `linzumi demo`: the Kandan test server as a local stand-in, and a runner bound to its
/// demo thread as the signed-in user. The stand-in has a fresh admin key, which only the
/// printed (and opened) page URL carries: other local users and other web pages cannot drive
/// the demo through its admin API.
pub async fn demo(args: DemoArgs) -> Result<ExitCode, CommandError> {
    let cwd = settings::working_folder(args.folder.as_deref())?;
    let root = settings::allowed_roots(Some(&cwd.display().to_string()))?;
    let mut prepared = prepare(&args.runner, &cwd, root).await?;
    // Kept alive for the whole run: the model server and the codex home it configures.
    let mock = match args.mock_model {
        true => Some(mock_model(&cwd, &mut prepared).await?),
        false => None,
    };
    let user = std::env::var("USER")
        .ok()
        .filter(|user| !user.trim().is_empty())
        .unwrap_or_else(|| "you".into());
    let (workspace, channel) = ("demo".to_owned(), "codex".to_owned());
    let server = KandanTestServer::start(ServerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], args.port)),
        users: vec![TestUser {
            id: 1,
            slug: user.clone(),
        }],
        demo: Some(DemoConfig {
            workspace: workspace.clone(),
            channel: channel.clone(),
            user_slug: user.clone(),
        }),
        admin_key: Some(AdminKey::generate()),
        ..ServerConfig::default()
    })
    .await
    .map_err(|error| {
        failed(format!(
            "could not start the local Kandan stand-in: {error}"
        ))
    })?;
    let token = server.issue_token(&user, Some((&workspace, &channel)));
    let kandan = parse_kandan_url(&server.ws_url())?;
    let page = server.demo_url();
    eprintln!("Linzumi demo: open {page}");
    if !args.no_open
        && let Err(error) = open::that_detached(&page)
    {
        eprintln!("(could not open a browser: {error})");
    }
    let session = settings::session((workspace, channel), None, &args.runner, &token)?;
    let outcome = run(kandan, &token, &cwd, &args.runner, prepared, Some(session)).await;
    server.shutdown().await;
    if let Some((model, _home)) = mock {
        model.shutdown().await;
    }
    outcome
}

/// Starts the scripted model API and points the app-server at it.
async fn mock_model(
    cwd: &Path,
    prepared: &mut Prepared,
) -> Result<(MockModelApi, CodexHome), CommandError> {
    let model = MockModelApi::start()
        .await
        .map_err(|error| failed(format!("could not start the mock model API: {error}")))?;
    let home = CodexHome::create(
        &model,
        CodexHomeOptions {
            trusted_projects: vec![cwd.to_owned()],
            ..CodexHomeOptions::default()
        },
    )
    .map_err(failed)?;
    if let AppServerSource::Spawn(spec) = &mut prepared.source {
        spec.env = home.env();
        spec.extra_args = home.app_server_args();
    }
    eprintln!("Using the mock model API at {}", model.base_url());
    Ok((model, home))
}

pub async fn sign_in(args: AuthArgs) -> Result<ExitCode, CommandError> {
    let kandan = parse_kandan_url(&args.kandan_url)?;
    let scope = match settings::channel_target(args.workspace.as_deref(), args.channel.as_deref())?
    {
        Some((workspace, channel)) => AuthScope::channel(workspace, channel),
        None => AuthScope::Unscoped,
    };
    let sign_in = SignIn::new(&kandan, &args.kandan).map_err(failed)?;
    let saved = auth::sign_in_and_save(
        &sign_in.oauth,
        &sign_in.store,
        sign_in.explicit.as_ref(),
        &scope,
    )
    .await
    .map_err(failed)?;
    let base = kandan.http_base().as_str().trim_end_matches('/').to_owned();
    match saved.source {
        TokenSource::Explicit => {
            println!(
                "Saved the given Kandan local runner token for {base} (not checked with Kandan)"
            )
        }
        _ => println!("Saved Kandan local runner auth for {base}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything checked before anyone is asked to sign in.
struct Prepared {
    source: AppServerSource,
    tool_status: Value,
    runtime: linzumi_engine::codex::RuntimeOptions,
    forward_ports: Vec<u16>,
    allowed_roots: Vec<AllowedRoot>,
}

async fn prepare(
    flags: &RunnerFlags,
    cwd: &Path,
    allowed_roots: Vec<AllowedRoot>,
) -> Result<Prepared, CommandError> {
    let runtime = settings::runtime(flags)?;
    let forward_ports = settings::forward_ports(flags.forward_port.as_deref())?;
    let codex = dependencies::codex_status(Path::new(&flags.codex_bin)).await;
    let source = match &flags.codex_url {
        Some(url) => AppServerSource::Attach(AppServerAddress {
            url: url.clone(),
            token: flags
                .codex_token_file
                .as_deref()
                .map(|path| CapabilityToken::from_file(Path::new(path)))
                .transpose()
                .map_err(failed)?,
        }),
        None => {
            if codex.state != ToolState::Ready {
                return Err(failed(codex.detail.clone().unwrap_or_default()));
            }
            AppServerSource::Spawn(AppServerSpec {
                codex_bin: codex
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&flags.codex_bin)),
                extra_args: Vec::new(),
                env: Vec::new(),
                cwd: cwd.to_owned(),
            })
        }
    };
    Ok(Prepared {
        source,
        tool_status: dependencies::tool_status_payload(&codex),
        runtime,
        forward_ports,
        allowed_roots,
    })
}

async fn run(
    kandan: KandanUrl,
    token: &str,
    cwd: &Path,
    flags: &RunnerFlags,
    prepared: Prepared,
    session: Option<SessionOptions>,
) -> Result<ExitCode, CommandError> {
    let runner_id = flags
        .runner_id
        .clone()
        .unwrap_or_else(|| format!("runner-{}", uuid::Uuid::new_v4()));
    let tui_env = match &prepared.source {
        AppServerSource::Spawn(spec) => spec.env.clone(),
        AppServerSource::Attach(_) => Vec::new(),
    };
    let mut options = RunnerOptions::new(
        &kandan,
        token.to_owned(),
        runner_id,
        cwd.to_owned(),
        prepared.source,
    );
    options.runtime = prepared.runtime;
    options.allowed_roots = prepared.allowed_roots;
    options.forward_ports = prepared.forward_ports;
    options.tool_status = Some(prepared.tool_status);
    options.channel_session = session;
    options.editor = Some(EditorOptions::new(
        &kandan,
        token,
        &options.runner_id,
        flags
            .code_server_bin
            .as_deref()
            .map(settings::executable_path),
    ));
    // Never in the shared folder by default: Codex may write there (and plant a link).
    options.log_file = match &flags.log_file {
        Some(path) => Some(settings::user_path(path)),
        None => event_log::default_path(&options.runner_id),
    };
    let mut shutdown = session::Shutdown::install();
    let runner = tokio::select! {
        runner = Runner::start(options) => runner.map_err(failed)?,
        signal = shutdown.wait() => {
            // Dropping the half-started runner ends the Codex it started.
            eprintln!("Stopped by {signal} before the runner was ready.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let tui = flags.launch_tui.then_some(session::Tui {
        codex_bin: &flags.codex_bin,
        cwd,
        env: tui_env,
    });
    Ok(session::run(runner, tui, shutdown).await)
}

fn parse_kandan_url(text: &str) -> Result<KandanUrl, FlagError> {
    KandanUrl::parse(text).map_err(|error| FlagError(error.to_string()))
}
