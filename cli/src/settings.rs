//! Flag values checked and turned into runner settings, with the reference runner's
//! messages for every mistake (seed `index.ts`, `localCapabilities.ts`).
use std::path::PathBuf;

use std::time::Duration;

use linzumi_engine::codex::RuntimeOptions;
use linzumi_engine::runner::allowed_cwd::{self, AllowedRoot};
use linzumi_engine::session::{ListenUser, SessionOptions};

use crate::args::RunnerFlags;

/// A mistake on the command line, shown as is and exiting with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError(pub String);

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn flag_error(message: impl Into<String>) -> FlagError {
    FlagError(message.into())
}

/// `--forward-port 3000,5173`.
pub fn forward_ports(value: Option<&str>) -> Result<Vec<u16>, FlagError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut ports = Vec::new();
    for part in value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        match part.parse::<u16>() {
            Ok(port) if port > 0 => {
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
            _ => {
                return Err(flag_error(
                    "Invalid --forward-port: value must be a TCP port from 1 to 65535.",
                ));
            }
        }
    }
    Ok(ports)
}

/// `--stream-flush-ms 150`.
pub fn stream_flush(value: Option<&str>) -> Result<Option<Duration>, FlagError> {
    match value.map(str::trim) {
        None => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(flag_error("--stream-flush-ms must be a positive integer")),
        },
    }
}

/// `--listen-user`, or the user the token was issued to (seed
/// `defaultListenUserFromToken`).
pub fn listen_user(flag: Option<&str>, token: &str) -> Result<ListenUser, FlagError> {
    linzumi_engine::auth::identity::listen_user(flag, token)
        .map_err(|error| flag_error(error.to_string()))
}

/// The chat session for a workspace/channel, from the flags.
pub fn session(
    target: (String, String),
    thread_id: Option<String>,
    flags: &RunnerFlags,
    token: &str,
) -> Result<SessionOptions, FlagError> {
    let mut options = SessionOptions::new(
        target.0,
        target.1,
        listen_user(flags.listen_user.as_deref(), token)?,
    );
    options.thread_id = thread_id.filter(|id| !id.trim().is_empty());
    if let Some(flush) = stream_flush(flags.stream_flush_ms.as_deref())? {
        options.stream_flush = flush;
    }
    Ok(options)
}

/// `--workspace W --channel C` or `--channel W/C`; neither means no chat session.
pub fn channel_target(
    workspace: Option<&str>,
    channel: Option<&str>,
) -> Result<Option<(String, String)>, FlagError> {
    let workspace = workspace.map(str::trim).filter(|s| !s.is_empty());
    let channel = channel.map(str::trim).filter(|s| !s.is_empty());
    match (workspace, channel) {
        (None, None) => Ok(None),
        (None, Some(path)) if path.contains('/') => {
            let (workspace, channel) = path.split_once('/').unwrap_or_default();
            let (workspace, channel) = (workspace.trim(), channel.trim());
            if workspace.is_empty() || channel.is_empty() || channel.contains('/') {
                return Err(flag_error(
                    "Invalid --channel: use <channel> with --workspace, or <workspace>/<channel>.",
                ));
            }
            Ok(Some((workspace.to_owned(), channel.to_owned())))
        }
        (Some(workspace), Some(channel)) => Ok(Some((workspace.to_owned(), channel.to_owned()))),
        (None, Some(_)) => Err(flag_error(
            "Missing --workspace: give --workspace <slug> with --channel <slug>, or --channel <workspace>/<channel>.",
        )),
        (Some(_), None) => Err(flag_error(
            "Missing --channel: give --channel <slug> with --workspace <slug>.",
        )),
    }
}

/// A folder argument with `~` expanded, made absolute against the current folder.
/// An executable flag: a bare name is looked up on PATH later, anything with a
/// separator is a path (`~` expanded, relative to the current folder).
pub fn executable_path(value: &str) -> PathBuf {
    if value.contains(std::path::MAIN_SEPARATOR) || value.starts_with('~') {
        user_path(value)
    } else {
        PathBuf::from(value.trim())
    }
}

pub fn user_path(value: &str) -> PathBuf {
    let expanded = PathBuf::from(allowed_cwd::expand_home(value.trim()));
    if expanded.is_absolute() {
        expanded
    } else {
        std::env::current_dir()
            .map(|current| current.join(&expanded))
            .unwrap_or(expanded)
    }
}

/// The folder Codex works in: it must exist.
pub fn working_folder(value: Option<&str>) -> Result<PathBuf, FlagError> {
    let requested = match value {
        Some(value) => user_path(value),
        None => std::env::current_dir()
            .map_err(|error| flag_error(format!("The current folder is not usable: {error}")))?,
    };
    std::fs::canonicalize(&requested).map_err(|_| {
        flag_error(format!(
            "Folder {} does not exist on this computer.",
            requested.display()
        ))
    })
}

/// `--allowed-cwd a,b`: every root must exist locally.
pub fn allowed_roots(value: Option<&str>) -> Result<Vec<AllowedRoot>, FlagError> {
    let roots = value.map(allowed_cwd::parse_list).unwrap_or_default();
    allowed_cwd::configured_roots(&roots).map_err(|error| flag_error(error.to_string()))
}

/// Model, effort, fast, approval policy and sandbox, checked.
pub fn runtime(flags: &RunnerFlags) -> Result<RuntimeOptions, FlagError> {
    let runtime = RuntimeOptions {
        model: flags.model.clone(),
        reasoning_effort: flags.reasoning_effort.clone(),
        fast: flags.fast,
        approval_policy: flags.approval_policy.clone(),
        sandbox: flags.sandbox.clone(),
    };
    runtime
        .validate()
        .map_err(|error| flag_error(format!("Invalid Codex setting: {error}.")))?;
    Ok(runtime)
}

/// `linzumi start` takes at most one folder and chooses its workspace itself.
pub fn start_folder(
    folders: &[String],
    workspace: Option<&str>,
    channel: Option<&str>,
) -> Result<PathBuf, FlagError> {
    let targeting: Vec<&str> = [("--workspace", workspace), ("--channel", channel)]
        .into_iter()
        .filter_map(|(flag, value)| value.map(|_| flag))
        .collect();
    if !targeting.is_empty() {
        return Err(flag_error(format!(
            "linzumi start chooses its workspace during browser onboarding; remove {} or use linzumi connect for an explicit workspace/channel.",
            targeting.join(", ")
        )));
    }
    if folders.len() > 1 {
        return Err(flag_error("linzumi start accepts at most one folder path"));
    }
    working_folder(folders.first().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_ports_follow_the_seed() {
        assert_eq!(
            forward_ports(Some("3000, 5173,3000")).unwrap(),
            vec![3000, 5173]
        );
        assert_eq!(forward_ports(None).unwrap(), Vec::<u16>::new());
        for bad in ["vite", "0", "65536", "3000,x"] {
            assert_eq!(
                forward_ports(Some(bad)).unwrap_err().0,
                "Invalid --forward-port: value must be a TCP port from 1 to 65535."
            );
        }
    }

    #[test]
    fn stream_flush_must_be_positive() {
        assert_eq!(
            stream_flush(Some("150")).unwrap(),
            Some(Duration::from_millis(150))
        );
        assert_eq!(stream_flush(None).unwrap(), None);
        for bad in ["0", "-5", "fast"] {
            assert_eq!(
                stream_flush(Some(bad)).unwrap_err().0,
                "--stream-flush-ms must be a positive integer"
            );
        }
    }

    #[test]
    fn the_listen_user_defaults_to_the_tokens_user() {
        // header.claims.signature with claims {"username":"sean","user_id":7}
        let claims = "eyJ1c2VybmFtZSI6InNlYW4iLCJ1c2VyX2lkIjo3fQ";
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{claims}.c2ln");
        assert_eq!(
            listen_user(None, &token).unwrap(),
            ListenUser::User {
                slug: "sean".into(),
                user_id: Some(7)
            }
        );
        assert_eq!(listen_user(Some("all"), &token).unwrap(), ListenUser::All);
        assert_eq!(
            listen_user(None, "not-a-jwt").unwrap_err().0,
            "missing --listen-user and authenticated user is unavailable"
        );
    }

    #[test]
    fn channel_targets() {
        assert_eq!(channel_target(None, None).unwrap(), None);
        assert_eq!(
            channel_target(None, Some("default/seans-playground")).unwrap(),
            Some(("default".into(), "seans-playground".into()))
        );
        assert_eq!(
            channel_target(Some("linzumi"), Some("general")).unwrap(),
            Some(("linzumi".into(), "general".into()))
        );
        assert!(channel_target(None, Some("general")).is_err());
        assert!(channel_target(Some("linzumi"), None).is_err());
        assert!(channel_target(None, Some("a/b/c")).is_err());
        assert!(channel_target(None, Some("/b")).is_err());
    }

    #[test]
    fn start_refuses_targeting_flags_and_extra_folders() {
        assert_eq!(
            start_folder(&[], Some("w"), Some("c")).unwrap_err().0,
            "linzumi start chooses its workspace during browser onboarding; remove --workspace, --channel or use linzumi connect for an explicit workspace/channel."
        );
        assert_eq!(
            start_folder(&["/".into(), "/tmp".into()], None, None)
                .unwrap_err()
                .0,
            "linzumi start accepts at most one folder path"
        );
        assert!(start_folder(&["/does/not/exist".into()], None, None).is_err());
        assert_eq!(
            start_folder(&["/".into()], None, None).unwrap(),
            PathBuf::from("/")
        );
    }

    #[test]
    fn allowed_roots_must_exist() {
        assert_eq!(
            allowed_roots(Some("/does/not/exist")).unwrap_err().0,
            "Invalid --allowed-cwd: allowed cwd roots must exist locally. (/does/not/exist does not exist)"
        );
        assert_eq!(allowed_roots(None).unwrap(), vec![]);
    }
}
