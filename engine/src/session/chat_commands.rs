//! `/kandan …` commands the listen user can type in the thread (protocol §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    Approve(String),
    Deny(String),
    ApprovePortForward(String),
    DenyPortForward(String),
    Interrupt,
    Steer(String),
}

const PREFIX: &str = "/kandan";

/// `None` when the body is not a `/kandan` command at all.
pub fn parse(body: &str) -> Option<Result<ChatCommand, String>> {
    let body = body.trim();
    let rest = body.strip_prefix(PREFIX)?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let (verb, argument) = match rest.split_once(char::is_whitespace) {
        Some((verb, argument)) => (verb, argument.trim()),
        None => (rest, ""),
    };
    let id = |make: fn(String) -> ChatCommand| {
        if argument.is_empty() || argument.contains(char::is_whitespace) {
            Err(format!("{PREFIX} {verb} needs one request id"))
        } else {
            Ok(make(argument.to_owned()))
        }
    };
    Some(match verb.to_ascii_lowercase().as_str() {
        "approve" => id(ChatCommand::Approve),
        "deny" => id(ChatCommand::Deny),
        "approve-port-forward" => id(ChatCommand::ApprovePortForward),
        "deny-port-forward" => id(ChatCommand::DenyPortForward),
        "interrupt" if argument.is_empty() => Ok(ChatCommand::Interrupt),
        "steer" if !argument.is_empty() => Ok(ChatCommand::Steer(argument.to_owned())),
        "steer" => Err(format!("{PREFIX} steer needs the text to add")),
        other => Err(format!("unknown command: {PREFIX} {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command() {
        assert_eq!(
            parse("/kandan approve 3"),
            Some(Ok(ChatCommand::Approve("3".into())))
        );
        assert_eq!(
            parse("  /kandan DENY-port-forward port-forward-abc "),
            Some(Ok(ChatCommand::DenyPortForward("port-forward-abc".into())))
        );
        assert_eq!(parse("/kandan interrupt"), Some(Ok(ChatCommand::Interrupt)));
        assert_eq!(
            parse("/kandan steer also add tests"),
            Some(Ok(ChatCommand::Steer("also add tests".into())))
        );
    }

    #[test]
    fn other_text_is_not_a_command() {
        assert_eq!(parse("please approve this"), None);
        assert_eq!(parse("/kandanx approve 1"), None);
    }

    #[test]
    fn malformed_commands_say_why() {
        assert_eq!(
            parse("/kandan approve"),
            Some(Err("/kandan approve needs one request id".into()))
        );
        assert_eq!(
            parse("/kandan launch rockets"),
            Some(Err("unknown command: /kandan launch".into()))
        );
    }
}
