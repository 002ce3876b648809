//! The command line: `start`, `connect`, `auth`, `version`, `guide`, with the flags,
//! defaults and examples of the reference runner (seed `index.ts`). Values are kept as
//! text here and checked in `settings`, so every mistake gets the seed's exact message.
use clap::{Args, Parser, Subcommand};

use crate::help;

#[derive(Debug, Parser)]
#[command(
    name = "linzumi",
    version,
    about = "Kandan local Codex runner",
    long_about = help::ABOUT,
    after_help = help::EXAMPLES,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in through the browser and share a folder: the one-command path.
    #[command(long_about = help::START_ABOUT, after_help = help::START_EXAMPLES)]
    Start(StartArgs),
    /// Connect this computer to an explicit Kandan workspace/channel as a runner.
    /// (`run` is the reference runner's older name for it, kept as an alias.)
    #[command(after_help = help::EXAMPLES, alias = "run")]
    Connect(ConnectArgs),
    /// Sign in through the browser and save the token for later runs.
    Auth(AuthArgs),
    /// Try Linzumi without a Kandan account: a local Kandan stand-in with a live thread
    /// page, and a runner sharing your folder with your own codex.
    #[command(long_about = help::DEMO_ABOUT)]
    Demo(DemoArgs),
    /// Print the version.
    Version,
    /// Explain the ways to connect, with examples.
    Guide,
}

/// Where Kandan is and how to sign in to it.
#[derive(Debug, Args)]
pub struct KandanFlags {
    /// Optional scoped local-runner token override. Other users on this computer can read
    /// a command line (`ps`): prefer KANDAN_TOKEN or the auth file
    #[arg(long, value_name = "jwt", env = "KANDAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Auth cache path, default ~/.kandan/auth.json
    #[arg(long, value_name = "path")]
    pub auth_file: Option<String>,
    /// Callback host reachable by your browser
    #[arg(long, value_name = "ip")]
    pub oauth_callback_host: Option<String>,
}

/// What the runner does and offers.
#[derive(Debug, Args)]
pub struct RunnerFlags {
    /// Stable local runner id
    #[arg(long, value_name = "id")]
    pub runner_id: Option<String>,
    /// Codex executable, default codex
    #[arg(long, value_name = "path", default_value = "codex")]
    pub codex_bin: String,
    /// Attach to a running Codex app-server instead of starting one
    #[arg(long, value_name = "ws-url")]
    pub codex_url: Option<String>,
    /// The capability token of the app-server at --codex-url, in a file (the one given to
    /// `codex app-server --ws-auth capability-token --ws-token-file`)
    #[arg(long, value_name = "path", requires = "codex_url")]
    pub codex_token_file: Option<String>,
    /// Open the Codex TUI on the same session
    #[arg(long)]
    pub launch_tui: bool,
    /// User whose replies are accepted (a username, or all), default the signed-in user
    #[arg(long, value_name = "user|all")]
    pub listen_user: Option<String>,
    /// Model requested for Codex sessions
    #[arg(long, value_name = "name")]
    pub model: Option<String>,
    /// Reasoning effort requested for Codex and shown in Kandan
    #[arg(long, value_name = "value")]
    pub reasoning_effort: Option<String>,
    /// Codex sandbox: danger-full-access, read-only or workspace-write
    #[arg(long, value_name = "value")]
    pub sandbox: Option<String>,
    /// Codex approval policy: untrusted, on-request or never
    #[arg(long, value_name = "value")]
    pub approval_policy: Option<String>,
    /// Batch live Codex deltas before Kandan persistence, default 150
    #[arg(long, value_name = "ms")]
    pub stream_flush_ms: Option<String>,
    /// Mark this runner as low-latency/fast in Kandan
    #[arg(long)]
    pub fast: bool,
    /// JSONL event log path (a symbolic link is refused), default <runner id>.jsonl in the per-user log folder (Linux: $XDG_STATE_HOME/linzumi/logs)
    #[arg(long, value_name = "path")]
    pub log_file: Option<String>,
    /// Comma-separated local TCP ports Kandan may expose as authenticated previews
    #[arg(long, value_name = "ports")]
    pub forward_port: Option<String>,
    /// Custom development code-server executable. By default Kandan installs the approved editor runtime.
    #[arg(long, value_name = "path")]
    pub code_server_bin: Option<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The folder to share, default the current folder
    #[arg(value_name = "folder", num_args = 0..)]
    pub folders: Vec<String>,
    /// Kandan websocket base URL
    #[arg(long, value_name = "ws-url", default_value = help::DEFAULT_KANDAN_URL)]
    pub kandan_url: String,
    /// Bind to this existing Kandan thread instead of starting a new one
    #[arg(long, value_name = "id")]
    pub kandan_thread_id: Option<String>,
    #[command(flatten)]
    pub kandan: KandanFlags,
    #[command(flatten)]
    pub runner: RunnerFlags,
    /// Not for start: it chooses its workspace during browser onboarding.
    #[arg(long, hide = true)]
    pub workspace: Option<String>,
    #[arg(long, hide = true)]
    pub channel: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Kandan websocket base URL, e.g. wss://serve.kandanai.com
    #[arg(long, value_name = "ws-url")]
    pub kandan_url: String,
    /// Kandan workspace slug
    #[arg(long, value_name = "slug")]
    pub workspace: Option<String>,
    /// Kandan channel slug, or workspace/channel
    #[arg(long, value_name = "slug")]
    pub channel: Option<String>,
    /// Bind to this existing Kandan thread instead of starting a new one
    #[arg(long, value_name = "id")]
    pub kandan_thread_id: Option<String>,
    /// Folder Codex works in, default the current folder
    #[arg(long, value_name = "path")]
    pub cwd: Option<String>,
    /// Comma-separated roots where Kandan may start new local Codex sessions
    #[arg(long, value_name = "paths")]
    pub allowed_cwd: Option<String>,
    #[command(flatten)]
    pub kandan: KandanFlags,
    #[command(flatten)]
    pub runner: RunnerFlags,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The folder to share, default the current folder
    #[arg(value_name = "folder")]
    pub folder: Option<String>,
    /// Port for the local Kandan stand-in (0 picks a free one)
    #[arg(long, default_value_t = 4160)]
    pub port: u16,
    /// Do not open the thread page in a browser
    #[arg(long)]
    pub no_open: bool,
    /// Point codex at the project's scripted model API instead of your model account,
    /// so the demo works offline (replies are canned; type `mock: {...}` to script them)
    #[arg(long)]
    pub mock_model: bool,
    #[command(flatten)]
    pub runner: RunnerFlags,
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Kandan websocket base URL
    #[arg(long, value_name = "ws-url")]
    pub kandan_url: String,
    /// Kandan workspace slug
    #[arg(long, value_name = "slug")]
    pub workspace: Option<String>,
    /// Kandan channel slug, or workspace/channel
    #[arg(long, value_name = "slug")]
    pub channel: Option<String>,
    #[command(flatten)]
    pub kandan: KandanFlags,
}
