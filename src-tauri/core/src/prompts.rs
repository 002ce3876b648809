//! The words of a prompt (a Codex approval or a dev-server preview), the same in the
//! notification, the window's card, the tray menu and the activity list: what is asked,
//! who asked (the chat user whose message Codex is working on, and how it starts), and who
//! answered.
use linzumi_engine::codex::protocol::server_requests;
use linzumi_engine::runner::ChatOrigin;

/// Where on this computer the owner answered a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Window,
    Notification,
    Tray,
}

impl Surface {
    fn name(self) -> &'static str {
        match self {
            Surface::Window => "window",
            Surface::Notification => "notification",
            Surface::Tray => "tray menu",
        }
    }
}

/// The most of a command or a message a title shows.
pub const TITLE_CHARS: usize = 60;

/// `text` on one line, at most `max` characters, with `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut short: String = line.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// The command a person would type: Codex runs each one through a login shell
/// (`/bin/bash -lc 'npm test'`), which is noise in a question.
pub fn plain_command(command: &str) -> &str {
    const SHELLS: [&str; 4] = ["/bin/bash", "bash", "/bin/zsh", "/bin/sh"];
    let command = command.trim();
    let Some(rest) = SHELLS.iter().find_map(|shell| {
        let rest = command.strip_prefix(shell)?.trim_start();
        ["-lc ", "-c "]
            .iter()
            .find_map(|flag| rest.strip_prefix(flag))
    }) else {
        return command;
    };
    let rest = rest.trim();
    for quote in ['\'', '"'] {
        if let Some(inner) = rest
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
            && !inner.contains(quote)
        {
            return inner;
        }
    }
    rest
}

/// What a Codex approval asks, as a question: "Run `npm test`?".
pub fn approval_question(kind: &str, summary: &str) -> String {
    match kind {
        server_requests::COMMAND_APPROVAL => {
            format!("Run `{}`?", shorten(plain_command(summary), TITLE_CHARS))
        }
        server_requests::FILE_CHANGE_APPROVAL => "Let Codex change files?".to_owned(),
        server_requests::PERMISSIONS_APPROVAL => "Give Codex more permissions?".to_owned(),
        _ => "Let Codex go ahead?".to_owned(),
    }
}

/// What a dev-server prompt asks: "Open a preview of port 5173?".
pub fn port_question(port: u16) -> String {
    format!("Open a preview of port {port}?")
}

/// What the dev server is: "`vite` is listening on it".
pub fn port_context(command: &str) -> String {
    format!("`{}` is listening on it", shorten(command, TITLE_CHARS))
}

/// Who asked: "ada asked: “fix the login page”", or without a known author, "Asked in:
/// “…”".
pub fn asked_line(origin: &ChatOrigin) -> String {
    let excerpt = shorten(&origin.excerpt, TITLE_CHARS);
    match &origin.author {
        Some(author) => format!("{author} asked: “{excerpt}”"),
        None => format!("Asked in: “{excerpt}”"),
    }
}

/// Whose message Codex works on: "ada's message “fix the login page”".
pub fn message_of(origin: &ChatOrigin) -> String {
    let excerpt = shorten(&origin.excerpt, TITLE_CHARS);
    match &origin.author {
        Some(author) => format!("{author}'s message “{excerpt}”"),
        None => format!("the message “{excerpt}”"),
    }
}

/// Who answered, from the engine's `by` (`local`, `kandan:<user>`, `kandan`) and, for the
/// owner, where they answered.
pub fn answered_by(by: &str, here: Option<Surface>) -> String {
    match (by, here) {
        ("local", Some(surface)) => format!("you ({})", surface.name()),
        ("local", None) => "you".to_owned(),
        _ => match by.strip_prefix("kandan:") {
            Some(user) if !user.starts_with("user-") && !user.is_empty() => {
                format!("{user} in Kandan")
            }
            _ => "someone in Kandan".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(author: Option<&str>, excerpt: &str) -> ChatOrigin {
        ChatOrigin {
            seq: 5,
            author: author.map(str::to_owned),
            excerpt: excerpt.into(),
        }
    }

    #[test]
    fn questions_by_kind() {
        assert_eq!(
            approval_question(server_requests::COMMAND_APPROVAL, "npm test"),
            "Run `npm test`?"
        );
        assert_eq!(
            approval_question(server_requests::FILE_CHANGE_APPROVAL, "x"),
            "Let Codex change files?"
        );
        assert_eq!(
            approval_question(server_requests::PERMISSIONS_APPROVAL, "x"),
            "Give Codex more permissions?"
        );
        assert_eq!(approval_question("other", "x"), "Let Codex go ahead?");
        let long = "x".repeat(200);
        let question = approval_question(server_requests::COMMAND_APPROVAL, &long);
        assert_eq!(question.chars().count(), TITLE_CHARS + "Run ``?".len());
        assert!(question.ends_with("…`?"));
        assert_eq!(port_question(5173), "Open a preview of port 5173?");
        assert_eq!(port_context("vite"), "`vite` is listening on it");
    }

    #[test]
    fn who_asked_and_who_answered() {
        assert_eq!(
            asked_line(&origin(Some("ada"), "fix the\nlogin page")),
            "ada asked: “fix the login page”"
        );
        assert_eq!(asked_line(&origin(None, "hi")), "Asked in: “hi”");
        assert_eq!(message_of(&origin(Some("ada"), "hi")), "ada's message “hi”");
        assert_eq!(
            answered_by("local", Some(Surface::Notification)),
            "you (notification)"
        );
        assert_eq!(answered_by("local", Some(Surface::Tray)), "you (tray menu)");
        assert_eq!(answered_by("local", None), "you");
        assert_eq!(answered_by("kandan:ada", None), "ada in Kandan");
        assert_eq!(answered_by("kandan:user-7", None), "someone in Kandan");
        assert_eq!(answered_by("kandan", None), "someone in Kandan");
    }

    #[test]
    fn commands_lose_their_shell_wrapper() {
        for (ran, shown) in [
            ("/bin/bash -lc 'touch approved.txt'", "touch approved.txt"),
            ("bash -c \"npm test\"", "npm test"),
            ("/bin/sh -c ls", "ls"),
            ("npm test", "npm test"),
            // Quoting the wrapper does not undo is shown as it is.
            ("/bin/bash -lc 'a' && 'b'", "'a' && 'b'"),
            ("/bin/bashful -lc x", "/bin/bashful -lc x"),
        ] {
            assert_eq!(plain_command(ran), shown, "{ran}");
        }
        assert_eq!(
            approval_question(
                server_requests::COMMAND_APPROVAL,
                "/bin/bash -lc 'npm test'"
            ),
            "Run `npm test`?"
        );
    }

    #[test]
    fn shortening_keeps_short_text_and_one_line() {
        assert_eq!(shorten("  a \n b  ", 10), "a b");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
