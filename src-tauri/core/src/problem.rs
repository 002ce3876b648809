//! What went wrong, in words a person understands, with the one thing to do next.
//!
//! Engine errors speak to developers ("Invalid --allowed-cwd", `ws://…/socket/websocket?…`,
//! "pass --code-server-bin"). The window, the tray and notifications show a [`Problem`]
//! instead: a short title, a sentence, the next step, and the raw error kept for the
//! "Details" disclosure. The shell sorts its failures into [`ShareFailure`]s; the wording
//! lives here so that it is tested without a GUI.
use serde::Serialize;

/// The one action that moves a problem forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NextStep {
    /// Try again (the cause may have gone away).
    Retry,
    SignIn,
    /// Point Linzumi at where the folder went.
    Locate,
    /// Change a setting (the field is named).
    Settings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub title: String,
    pub message: String,
    pub next: Option<NextStep>,
    /// The settings field to fix, with [`NextStep::Settings`].
    pub field: Option<&'static str>,
    /// The raw error, for "Details".
    pub details: Option<String>,
}

/// Why sharing a folder did not start (or stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareFailure {
    /// Kandan refused the saved sign-in (401/403).
    SessionEnded { details: String },
    /// The folder is not where it was shared.
    FolderMissing { path: String },
    /// Kandan could not be reached (network, TLS, a server error).
    KandanUnreachable { details: String },
    /// Kandan answered but would not take the folder (it refused the join).
    KandanRefused { details: String },
    /// The signed-in account may not use the folder's channel.
    ChannelNotAllowed { workspace: String, channel: String },
    /// Codex is not installed, or not where the settings say.
    CodexUnusable { details: String },
    /// The sign-in does not name a user and none is set to listen to.
    ListenUserUnknown,
    /// A settings value cannot be used.
    BadSetting {
        field: &'static str,
        details: String,
    },
    /// Anything else; the details say what.
    Other { details: String },
}

impl ShareFailure {
    pub fn problem(&self) -> Problem {
        let problem = |title: &str, message: String, next, details: Option<&String>| Problem {
            title: title.to_owned(),
            message,
            next,
            field: None,
            details: details.cloned(),
        };
        match self {
            ShareFailure::SessionEnded { details } => problem(
                "Your Kandan session ended",
                "Sign in again; the folder starts by itself afterwards.".into(),
                Some(NextStep::SignIn),
                Some(details),
            ),
            ShareFailure::FolderMissing { path } => problem(
                "The folder was moved or deleted",
                format!(
                    "Linzumi cannot find it at {path} any more, and Codex stopped working in \
                     it. Locate it where it is now, or stop sharing it."
                ),
                Some(NextStep::Locate),
                None,
            ),
            ShareFailure::KandanUnreachable { details } => problem(
                "Kandan could not be reached",
                "Check your internet connection and the Kandan server in Settings, then try \
                 again."
                    .into(),
                Some(NextStep::Retry),
                Some(details),
            ),
            ShareFailure::KandanRefused { details } => problem(
                "Kandan did not accept this folder",
                "Kandan answered but turned sharing down; Details say why. Try again, or ask \
                 whoever runs your Kandan."
                    .into(),
                Some(NextStep::Retry),
                Some(details),
            ),
            ShareFailure::ChannelNotAllowed { workspace, channel } => problem(
                "Your account cannot use this channel",
                format!(
                    "Kandan does not let your sign-in into {workspace} / #{channel}. Sign in \
                     with an account that can."
                ),
                Some(NextStep::SignIn),
                None,
            ),
            ShareFailure::CodexUnusable { details } => Problem {
                field: Some("codexBin"),
                ..problem(
                    "Codex is not available",
                    "Install Codex, or set where it is in Settings, then try again.".into(),
                    Some(NextStep::Settings),
                    Some(details),
                )
            },
            ShareFailure::ListenUserUnknown => Problem {
                field: Some("listenUser"),
                ..problem(
                    "Choose whose messages Codex takes",
                    "Your sign-in does not say who you are. Enter your Kandan user name under \
                     Settings → Listen to."
                        .into(),
                    Some(NextStep::Settings),
                    None,
                )
            },
            ShareFailure::BadSetting { field, details } => Problem {
                field: Some(field),
                ..problem(
                    "A setting cannot be used",
                    format!("Fix {} in Settings, then try again.", field_label(field)),
                    Some(NextStep::Settings),
                    Some(details),
                )
            },
            ShareFailure::Other { details } => problem(
                "Sharing did not start",
                "Something went wrong while starting. Try again; Details say what happened.".into(),
                Some(NextStep::Retry),
                Some(details),
            ),
        }
    }
}

/// The settings field's label as the window shows it.
pub fn field_label(field: &str) -> &'static str {
    match field {
        "kandanUrl" => "the Kandan server",
        "listenUser" => "Listen to",
        "codexBin" => "the Codex program",
        "codeServerBin" => "the editor program",
        "allowedRoots" => "the other folders Kandan may use",
        "forwardPorts" => "the ports to always forward",
        "approvalPolicy" => "Ask before Codex acts",
        "sandbox" => "what Codex's commands may change",
        _ => "a setting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing a person reads carries a flag name, an internal address or an identifier.
    fn plain(problem: &Problem) {
        for text in [&problem.title, &problem.message] {
            for jargon in [
                "--",
                "ws://",
                "wss://",
                "socket/websocket",
                "runner",
                "HTTP",
            ] {
                assert!(!text.contains(jargon), "{jargon:?} in {text:?}");
            }
        }
    }

    #[test]
    fn every_failure_reads_plainly_and_has_a_next_step() {
        let failures = [
            ShareFailure::SessionEnded {
                details: "Kandan refused the connection to ws://k/socket/websocket?token=REDACTED (HTTP 403)".into(),
            },
            ShareFailure::FolderMissing {
                path: "/home/ada/app".into(),
            },
            ShareFailure::KandanUnreachable {
                details: "could not reach Kandan at ws://k: refused".into(),
            },
            ShareFailure::KandanRefused {
                details: "phoenix join failed: runner disabled".into(),
            },
            ShareFailure::ChannelNotAllowed {
                workspace: "acme".into(),
                channel: "codex".into(),
            },
            ShareFailure::CodexUnusable {
                details: "codex was not found on PATH".into(),
            },
            ShareFailure::ListenUserUnknown,
            ShareFailure::BadSetting {
                field: "allowedRoots",
                details: "Invalid --allowed-cwd: allowed cwd roots must exist locally.".into(),
            },
            ShareFailure::Other {
                details: "the editor could not be set up: pass --code-server-bin".into(),
            },
        ];
        for failure in failures {
            let problem = failure.problem();
            plain(&problem);
            assert!(problem.next.is_some(), "{failure:?}");
            assert_eq!(
                problem.field.is_some(),
                problem.next == Some(NextStep::Settings),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn the_raw_error_is_kept_for_details() {
        let problem = ShareFailure::SessionEnded {
            details: "HTTP 403".into(),
        }
        .problem();
        assert_eq!(problem.title, "Your Kandan session ended");
        assert_eq!(problem.next, Some(NextStep::SignIn));
        assert_eq!(problem.details.as_deref(), Some("HTTP 403"));
        let setting = ShareFailure::BadSetting {
            field: "allowedRoots",
            details: "Invalid --allowed-cwd".into(),
        }
        .problem();
        assert_eq!(setting.field, Some("allowedRoots"));
        assert_eq!(
            setting.message,
            "Fix the other folders Kandan may use in Settings, then try again."
        );
        let json = serde_json::to_value(&setting).unwrap();
        assert_eq!(json["next"], "settings");
        assert_eq!(json["field"], "allowedRoots");
    }
}
