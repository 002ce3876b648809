//! clap's parse errors in the reference runner's words: a misspelled flag gets
//! "Invalid flag: use --listen-user." rather than clap's generic text.
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The message for a clap error, or `None` to let clap print its own (help, version,
/// missing values, which are already clear).
pub fn message(error: &clap::Error) -> Option<String> {
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        Some(ContextValue::Strings(values)) => values.first().cloned(),
        _ => None,
    };
    let invalid = context(ContextKind::InvalidArg).unwrap_or_default();
    Some(match context(ContextKind::SuggestedArg) {
        Some(suggested) => format!("Invalid flag: use {suggested}."),
        None => format!("Invalid flag: {invalid} is not a linzumi flag; see --help."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cli;
    use clap::Parser;

    fn error(args: &[&str]) -> clap::Error {
        Cli::try_parse_from(args).unwrap_err()
    }

    #[test]
    fn a_misspelled_flag_names_the_right_one() {
        let error = error(&[
            "linzumi",
            "connect",
            "--kandan-url",
            "ws://h",
            "--listen-users",
            "sean",
        ]);
        assert_eq!(
            message(&error).as_deref(),
            Some("Invalid flag: use --listen-user.")
        );
    }

    #[test]
    fn an_unknown_flag_is_named() {
        let error = error(&["linzumi", "connect", "--kandan-url", "ws://h", "--zzz"]);
        assert_eq!(
            message(&error).as_deref(),
            Some("Invalid flag: --zzz is not a linzumi flag; see --help.")
        );
    }

    #[test]
    fn other_errors_keep_clap_wording() {
        let error = error(&["linzumi", "connect"]);
        assert_eq!(message(&error), None);
    }
}
