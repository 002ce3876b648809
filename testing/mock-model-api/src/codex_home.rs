//! Throwaway `CODEX_HOME` directories configured to run the real codex against a
//! [`MockModelApi`], and locating the pinned codex binary.
//!
//! The directory is created below `/var/tmp/linzumi-codex-homes` (or
//! `$LINZUMI_CODEX_HOMES_DIR`), never below `/tmp`: codex refuses to create its helper
//! binaries under a temporary dir, and sandboxed commands then fail silently.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::MockModelApi;

/// The model slug written to the config. It must be one codex knows (`model/list`);
/// with an unknown slug codex warns every turn and offers no `apply_patch` tool.
pub const MODEL: &str = "gpt-5.5";
/// The environment variable the `mock` provider reads its API key from.
pub const API_KEY_ENV: &str = "LINZUMI_MOCK_API_KEY";
/// Overrides the directory throwaway codex homes are created in.
pub const HOMES_DIR_ENV: &str = "LINZUMI_CODEX_HOMES_DIR";
/// Overrides the codex binary [`codex_bin`] returns.
pub const CODEX_BIN_ENV: &str = "LINZUMI_CODEX_BIN";
const DEFAULT_HOMES_DIR: &str = "/var/tmp/linzumi-codex-homes";

/// Features turned off because they reach for the network at start-up (plugin sync via
/// `git ls-remote`, apps and remote plugin discovery).
pub const DISABLED_FEATURES: [&str; 3] = ["plugins", "apps", "remote_plugin"];

/// What to write into the config besides the mock provider.
#[derive(Debug, Default, Clone)]
pub struct CodexHomeOptions {
    /// `approval_policy` (`"never"`, `"on-request"`, `"on-failure"`); codex's default if `None`.
    /// codex 0.169.0 refuses `"untrusted"` in config.toml (it is accepted as the
    /// `approvalPolicy` of `thread/start` / `turn/start`), so [`CodexHome::create`] rejects it.
    pub approval_policy: Option<String>,
    /// `sandbox_mode` (`"danger-full-access"`, `"workspace-write"`, `"read-only"`); codex's default if `None`.
    pub sandbox_mode: Option<String>,
    /// Project directories marked trusted, so the TUI skips its "Trust this folder?" prompt.
    pub trusted_projects: Vec<PathBuf>,
}

/// A throwaway `CODEX_HOME` for the mock; removed (best effort) on drop.
#[derive(Debug)]
pub struct CodexHome {
    path: PathBuf,
}

impl CodexHome {
    /// Creates the directory and writes its `config.toml`.
    pub fn create(mock: &MockModelApi, options: CodexHomeOptions) -> anyhow::Result<CodexHome> {
        let base = std::env::var_os(HOMES_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOMES_DIR));
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let base = base
            .canonicalize()
            .with_context(|| format!("resolving {}", base.display()))?;
        if base.starts_with("/tmp") {
            bail!(
                "{} is below /tmp; codex will not set up its sandbox helpers there (set {HOMES_DIR_ENV})",
                base.display()
            );
        }
        if options.approval_policy.as_deref() == Some("untrusted") {
            bail!(
                "codex 0.169.0 rejects approval_policy = \"untrusted\" in config.toml; pass it as the \
                 `approvalPolicy` of thread/start or turn/start instead"
            );
        }
        let path = base.join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        let home = CodexHome { path };
        let config = config_toml(&mock.base_url(), &options);
        std::fs::write(home.path.join("config.toml"), config)
            .with_context(|| format!("writing {}/config.toml", home.path.display()))?;
        Ok(home)
    }

    /// The directory (the value of `CODEX_HOME`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Environment for a codex child: `CODEX_HOME` and the provider's API key.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CODEX_HOME".into(), self.path.display().to_string()),
            (API_KEY_ENV.into(), "mock-api-key".into()),
        ]
    }

    /// Extra arguments for `codex app-server`. None are needed: the config's `[features]`
    /// table already turns the network-touching features off (checked with strace on codex
    /// 0.169.0: the only connection was to the mock). Kept so callers need not change if a
    /// later codex needs flags.
    pub fn app_server_args(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Drop for CodexHome {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::debug!(%error, path = %self.path.display(), "could not remove codex home");
        }
    }
}

/// The `config.toml` for a codex talking to the mock at `base_url`.
pub fn config_toml(base_url: &str, options: &CodexHomeOptions) -> String {
    let mut config = String::new();
    let mut line = |text: String| {
        config.push_str(&text);
        config.push('\n');
    };
    line(format!("model = {}", toml_string(MODEL)));
    line("model_provider = \"mock\"".into());
    if let Some(policy) = &options.approval_policy {
        line(format!("approval_policy = {}", toml_string(policy)));
    }
    if let Some(mode) = &options.sandbox_mode {
        line(format!("sandbox_mode = {}", toml_string(mode)));
    }
    line("check_for_update_on_startup = false".into());
    // Commands run in a plain `bash -c`: a login shell would run this machine's
    // dotfiles (a pyenv rehash lock left by a killed shell stalled every command 60 s).
    line("allow_login_shell = false".into());
    line(String::new());
    line("[model_providers.mock]".into());
    line("name = \"Linzumi mock model API\"".into());
    line(format!("base_url = {}", toml_string(base_url)));
    line("wire_api = \"responses\"".into());
    line(format!("env_key = {}", toml_string(API_KEY_ENV)));
    line("request_max_retries = 0".into());
    line("stream_max_retries = 0".into());
    line(String::new());
    line("[features]".into());
    for feature in DISABLED_FEATURES {
        line(format!("{feature} = false"));
    }
    line(String::new());
    line("[analytics]".into());
    line("enabled = false".into());
    line(String::new());
    line("[tui]".into());
    line("screen_reader_detection_done = true".into());
    line(String::new());
    // The TUI otherwise opens on a "try the new model" notice before its prompt.
    line("[notice.model_migrations]".into());
    line(format!("{} = \"gpt-6-sol\"", toml_string(MODEL)));
    for project in &options.trusted_projects {
        let project = project.canonicalize().unwrap_or_else(|_| project.clone());
        line(String::new());
        line(format!(
            "[projects.{}]",
            toml_string(&project.display().to_string())
        ));
        line("trust_level = \"trusted\"".into());
    }
    config
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The pinned codex binary: `$LINZUMI_CODEX_BIN`, else `<workspace>/tools/node_modules/.bin/codex`.
pub fn codex_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(CODEX_BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{CODEX_BIN_ENV}={} does not exist", path.display());
        }
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = workspace.join("tools/node_modules/.bin/codex");
    if !path.is_file() {
        bail!(
            "the pinned codex CLI is not installed at {}; run ./scripts/setup.sh (or `cd tools && npm ci`), or set {CODEX_BIN_ENV}",
            path.display()
        );
    }
    Ok(path.canonicalize().unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(toml_string("\u{1}"), "\"\\u0001\"");
    }

    #[test]
    fn config_names_the_mock_and_the_options() {
        let config = config_toml(
            "http://127.0.0.1:9/v1",
            &CodexHomeOptions {
                approval_policy: Some("untrusted".into()),
                sandbox_mode: None,
                trusted_projects: vec![PathBuf::from("/no/such \"dir\"")],
            },
        );
        assert!(config.contains("base_url = \"http://127.0.0.1:9/v1\"\n"));
        assert!(config.contains("approval_policy = \"untrusted\"\n"));
        assert!(config.contains("allow_login_shell = false\n"));
        assert!(!config.contains("sandbox_mode"));
        assert!(
            config.contains("[projects.\"/no/such \\\"dir\\\"\"]\ntrust_level = \"trusted\"\n")
        );
    }
}
