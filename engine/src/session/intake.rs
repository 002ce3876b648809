//! Which chat messages the session acts on (seed `channelSession.ts`,
//! `handleKandanChatEvent`): only the listen user's, in the bound thread, newer than the
//! bind cursor, never one already seen, never one a runner wrote. Everything else is
//! ignored with a reason Kandan shows.
use serde::Deserialize;
use serde_json::Value;

use super::chat_commands::{self, ChatCommand};

/// `session:message` (protocol §5.2).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatEvent {
    pub workspace: String,
    pub channel: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    pub seq: i64,
    #[serde(default)]
    pub reply_to_seq: Option<i64>,
    #[serde(default)]
    pub actor_slug: Option<String>,
    #[serde(default)]
    pub actor_user_id: Option<i64>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub payload: Option<Value>,
}

impl ChatEvent {
    fn written_by_runner(&self) -> bool {
        self.payload
            .as_ref()
            .and_then(|payload| payload.get("source"))
            .and_then(Value::as_str)
            == Some("linzumi_runner")
    }
}

/// Whose messages drive Codex (`--listen-user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenUser {
    All,
    User {
        slug: String,
        /// Known when the listen user is the signed-in user, or Kandan resolved it.
        user_id: Option<i64>,
    },
}

impl ListenUser {
    pub fn parse(value: &str, own_user_id: Option<(String, i64)>) -> ListenUser {
        let value = value.trim();
        if value.eq_ignore_ascii_case("all") {
            return ListenUser::All;
        }
        let user_id = own_user_id
            .filter(|(slug, _)| slug.eq_ignore_ascii_case(value))
            .map(|(_, id)| id);
        ListenUser::User {
            slug: value.to_owned(),
            user_id,
        }
    }

    pub fn slug(&self) -> &str {
        match self {
            ListenUser::All => "all",
            ListenUser::User { slug, .. } => slug,
        }
    }

    /// Who a prompt says may answer it: the listen user's slug even when it is `all`
    /// (seed `allowedActorSlug`), and a user id when one is known.
    pub fn prompt_actor(&self, bound_user_id: Option<i64>) -> (Option<String>, Option<i64>) {
        match self {
            ListenUser::All => (Some("all".to_owned()), None),
            ListenUser::User { slug, user_id } => (Some(slug.clone()), user_id.or(bound_user_id)),
        }
    }

    /// Whether an actor (as Kandan reports it) is the listen user (seed `senderAllowed`).
    pub fn allows(&self, actor_slug: Option<&str>, actor_user_id: Option<i64>) -> bool {
        match self {
            ListenUser::All => actor_slug.is_some() || actor_user_id.is_some(),
            ListenUser::User { slug, user_id } => {
                actor_slug.is_some_and(|actor| actor.eq_ignore_ascii_case(slug))
                    || matches!((user_id, actor_user_id), (Some(a), Some(b)) if *a == b)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// A message for Codex.
    Turn,
    /// A `/kandan …` command (or why it could not be understood).
    Command(Result<ChatCommand, String>),
    Ignore(&'static str),
}

pub struct IntakeContext<'a> {
    pub bound_thread: Option<&'a str>,
    pub cursor_seq: i64,
    pub listen: &'a ListenUser,
}

pub fn classify(event: &ChatEvent, context: &IntakeContext<'_>, seen: bool) -> Intake {
    if event.written_by_runner() {
        return Intake::Ignore("runner_message");
    }
    if event.seq <= context.cursor_seq {
        return Intake::Ignore("history");
    }
    if seen {
        return Intake::Ignore("duplicate");
    }
    if context.bound_thread.is_none() || event.thread_id.as_deref() != context.bound_thread {
        return Intake::Ignore("not_bound_thread");
    }
    if !context
        .listen
        .allows(event.actor_slug.as_deref(), event.actor_user_id)
    {
        return Intake::Ignore("not_listen_user");
    }
    match chat_commands::parse(&event.body) {
        Some(command) => Intake::Command(command),
        None => Intake::Turn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i64, actor: &str, thread: &str, body: &str) -> ChatEvent {
        serde_json::from_value(
            json!({"workspace": "w", "channel": "c", "thread_id": thread,
            "seq": seq, "actor_slug": actor, "actor_user_id": 7, "body": body}),
        )
        .unwrap()
    }

    fn context(listen: &ListenUser) -> IntakeContext<'_> {
        IntakeContext {
            bound_thread: Some("t1"),
            cursor_seq: 10,
            listen,
        }
    }

    #[test]
    fn the_listen_users_messages_in_the_thread_become_turns() {
        let listen = ListenUser::parse("Sean", None);
        assert_eq!(
            classify(&event(11, "sean", "t1", "hi"), &context(&listen), false),
            Intake::Turn
        );
    }

    #[test]
    fn everything_else_is_ignored_with_a_reason() {
        let listen = ListenUser::parse("sean", None);
        let cases = [
            (event(9, "sean", "t1", "old"), false, "history"),
            (event(12, "sean", "t1", "again"), true, "duplicate"),
            (
                event(12, "sean", "t2", "elsewhere"),
                false,
                "not_bound_thread",
            ),
            (
                event(12, "mallory", "t1", "do it"),
                false,
                "not_listen_user",
            ),
        ];
        for (event, seen, reason) in cases {
            assert_eq!(
                classify(&event, &context(&listen), seen),
                Intake::Ignore(reason),
                "{event:?}"
            );
        }
        let mut own = event(12, "sean", "t1", "a row");
        own.payload = Some(json!({"source": "linzumi_runner"}));
        assert_eq!(
            classify(&own, &context(&listen), false),
            Intake::Ignore("runner_message")
        );
    }

    #[test]
    fn listen_user_matching() {
        let all = ListenUser::parse("ALL", None);
        assert!(all.allows(Some("anyone"), None));
        assert!(!all.allows(None, None));
        let me = ListenUser::parse("sean", Some(("Sean".into(), 7)));
        assert!(
            me.allows(None, Some(7)),
            "matched by the signed-in user's id"
        );
        assert!(!me.allows(Some("seanx"), Some(8)));
        let other = ListenUser::parse("alex", Some(("sean".into(), 7)));
        assert!(!other.allows(None, Some(7)));
    }

    #[test]
    fn commands_are_recognized() {
        let listen = ListenUser::All;
        assert_eq!(
            classify(
                &event(11, "sean", "t1", "/kandan interrupt"),
                &context(&listen),
                false
            ),
            Intake::Command(Ok(ChatCommand::Interrupt))
        );
    }

    #[test]
    fn prompts_name_the_listen_user_even_when_it_is_all() {
        // Seed: allowedActorSlug = listenUser; a user id only for the runner's own user.
        assert_eq!(
            ListenUser::parse("all", Some(("sean".into(), 7))).prompt_actor(None),
            (Some("all".into()), None)
        );
        assert_eq!(
            ListenUser::parse("Sean", Some(("sean".into(), 7))).prompt_actor(None),
            (Some("Sean".into()), Some(7))
        );
        assert_eq!(
            ListenUser::parse("ada", Some(("sean".into(), 7))).prompt_actor(None),
            (Some("ada".into()), None)
        );
    }
}
