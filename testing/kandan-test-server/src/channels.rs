//! Phoenix channel semantics for the messages of one socket: heartbeats, joins (including
//! duplicate joins), leaves, stale join_refs and unmatched topics, following
//! `Phoenix.Socket.handle_in/4` of Phoenix 1.8. What a joined topic *does* is up to its
//! [`TopicHandler`].

use serde_json::{Value, json};

use crate::TestUser;
use crate::conformance_topic::ConformanceTopic;
use crate::frame::{Frame, PHOENIX_TOPIC, ReplyStatus, events};
use crate::recorder::{RecordedEvent, RecordedJoin};
use crate::registry::JoinedChannel;
use crate::runner_topic::RunnerTopic;
use crate::server::ServerCore;
use crate::tokens::TokenScope;

/// Who is on the other end of a socket.
pub(crate) struct SocketInfo {
    pub connection_id: u64,
    /// The user the socket's token belongs to.
    pub user: TestUser,
    /// The workspace and channel the token is limited to, if any.
    pub scope: Option<TokenScope>,
}

/// What a topic handler gets to see and use.
pub(crate) struct ChannelContext<'a> {
    pub core: &'a ServerCore,
    pub socket: &'a SocketInfo,
    pub topic: &'a str,
}

/// How a channel answers a push.
#[derive(Debug, PartialEq)]
pub(crate) enum PushOutcome {
    Reply(ReplyStatus, Value),
    /// A reply followed by pushes `(event, payload)` on the same channel, to this socket only
    /// and in this order (e.g. the catch-up after `session:bind`). They leave together, so a
    /// delayed reply is never overtaken by its own follow-ups.
    ReplyThenPush(ReplyStatus, Value, Vec<(String, Value)>),
    /// The channel process crashed: the socket sends `phx_error` and forgets the channel.
    Crash,
}

impl PushOutcome {
    pub(crate) fn ok(response: Value) -> PushOutcome {
        PushOutcome::Reply(ReplyStatus::Ok, response)
    }

    pub(crate) fn error(reason: impl Into<String>) -> PushOutcome {
        PushOutcome::Reply(ReplyStatus::Error, json!({ "reason": reason.into() }))
    }
}

/// The server side of one family of topics (a Phoenix channel module).
pub(crate) trait TopicHandler: Sync {
    /// `Ok(response)` accepts the join, `Err(response)` refuses it.
    fn join(&self, ctx: &ChannelContext<'_>, payload: &Value) -> Result<Value, Value>;

    fn handle_in(&self, ctx: &ChannelContext<'_>, event: &str, payload: &Value) -> PushOutcome;
}

/// The socket's channel routes (`channel "local_runner:*", ...`).
fn handler_for(topic: &str) -> Option<&'static dyn TopicHandler> {
    if topic.starts_with(RunnerTopic::PREFIX) {
        Some(&RunnerTopic)
    } else if topic.starts_with(ConformanceTopic::PREFIX) {
        Some(&ConformanceTopic)
    } else {
        None
    }
}

/// Handles one decoded client message; returns the frames to send back on this socket, in order.
pub(crate) fn handle_message(core: &ServerCore, socket: &SocketInfo, message: Frame) -> Vec<Frame> {
    if message.topic == PHOENIX_TOPIC && message.event == events::HEARTBEAT {
        return heartbeat(core, &message);
    }
    core.recorder.record_event(RecordedEvent {
        topic: message.topic.clone(),
        event: message.event.clone(),
        payload: message.payload.clone(),
        join_ref: message.join_ref.clone(),
        msg_ref: message.msg_ref.clone(),
        connection_id: socket.connection_id,
        received_at: std::time::SystemTime::now(),
    });
    if core.faults.holds(&message.topic, &message.event) {
        tracing::debug!(topic = %message.topic, event = %message.event, "fault: holding message");
        return Vec::new();
    }
    match message.event.as_str() {
        events::JOIN => join(core, socket, message),
        events::LEAVE => leave(core, socket, message),
        _ => push(core, socket, message),
    }
}

fn heartbeat(core: &ServerCore, message: &Frame) -> Vec<Frame> {
    if core.faults.ignores_heartbeats() {
        return Vec::new();
    }
    vec![Frame::reply(
        None,
        message.msg_ref.clone(),
        PHOENIX_TOPIC,
        ReplyStatus::Ok,
        json!({}),
    )]
}

fn join(core: &ServerCore, socket: &SocketInfo, message: Frame) -> Vec<Frame> {
    let topic = message.topic.as_str();
    // A duplicate join closes the existing channel first. Phoenix queues that channel's
    // phx_close to the socket's own mailbox, so on the wire it comes *after* the new join's
    // reply; clients must tell the two apart by join_ref.
    let replaced = core.registry.remove_channel(socket.connection_id, topic);

    let (reply, accepted) = match handler_for(topic) {
        None => (unmatched_topic(&message), false),
        Some(handler) => {
            let ctx = ChannelContext {
                core,
                socket,
                topic,
            };
            let result = match core.faults.join_rejection(topic) {
                Some(reason) => Err(json!({ "reason": reason })),
                None => handler.join(&ctx, &message.payload),
            };
            let (status, response) = match result {
                Ok(response) => (ReplyStatus::Ok, response),
                Err(response) => (ReplyStatus::Error, response),
            };
            let reply = Frame::reply(
                message.join_ref.clone(),
                message.msg_ref.clone(),
                topic,
                status,
                response,
            );
            (reply, status == ReplyStatus::Ok)
        }
    };

    if accepted {
        let channel = JoinedChannel {
            join_ref: message.join_ref.clone(),
            reply_join_ref: message.join_ref.clone().or_else(|| message.msg_ref.clone()),
        };
        core.registry
            .insert_channel(socket.connection_id, topic, channel);
    }
    core.recorder.record_join(RecordedJoin {
        topic: topic.to_owned(),
        join_ref: message.join_ref.clone(),
        payload: message.payload.clone(),
        accepted,
        connection_id: socket.connection_id,
    });

    let mut frames = vec![reply];
    if let Some(old) = replaced {
        frames.push(Frame::channel_exit(old.join_ref, topic, events::CLOSE));
    }
    frames
}

fn leave(core: &ServerCore, socket: &SocketInfo, message: Frame) -> Vec<Frame> {
    let topic = message.topic.as_str();
    let Some(channel) = core.registry.channel(socket.connection_id, topic) else {
        // Phoenix acknowledges leaving a topic that is not joined.
        return vec![Frame::reply(
            message.join_ref.clone(),
            message.msg_ref.clone(),
            topic,
            ReplyStatus::Ok,
            json!({}),
        )];
    };
    if is_stale(&message, &channel) {
        // The client raced a server-side close; Phoenix sends nothing.
        return Vec::new();
    }
    core.registry.remove_channel(socket.connection_id, topic);
    vec![
        Frame::reply(
            channel.reply_join_ref,
            message.msg_ref.clone(),
            topic,
            ReplyStatus::Ok,
            json!({}),
        ),
        Frame::channel_exit(channel.join_ref, topic, events::CLOSE),
    ]
}

fn push(core: &ServerCore, socket: &SocketInfo, message: Frame) -> Vec<Frame> {
    let topic = message.topic.as_str();
    let joined = core.registry.channel(socket.connection_id, topic);
    let (Some(channel), Some(handler)) = (joined, handler_for(topic)) else {
        return vec![unmatched_topic(&message)];
    };
    if is_stale(&message, &channel) {
        tracing::debug!(%topic, event = %message.event, "ignoring message for an old join_ref");
        return Vec::new();
    }
    let ctx = ChannelContext {
        core,
        socket,
        topic,
    };
    match handler.handle_in(&ctx, &message.event, &message.payload) {
        PushOutcome::Reply(status, response) => vec![Frame::reply(
            channel.reply_join_ref,
            message.msg_ref.clone(),
            topic,
            status,
            response,
        )],
        PushOutcome::ReplyThenPush(status, response, pushes) => {
            let mut frames = vec![Frame::reply(
                channel.reply_join_ref.clone(),
                message.msg_ref.clone(),
                topic,
                status,
                response,
            )];
            frames.extend(pushes.into_iter().map(|(event, payload)| {
                Frame::push(channel.reply_join_ref.clone(), topic, &event, payload)
            }));
            frames
        }
        PushOutcome::Crash => {
            core.registry.remove_channel(socket.connection_id, topic);
            vec![Frame::channel_exit(channel.join_ref, topic, events::ERROR)]
        }
    }
}

/// A message for an earlier join of the channel. A null join_ref is never stale: the protocol
/// does not require clients to send it on non-join messages.
fn is_stale(message: &Frame, channel: &JoinedChannel) -> bool {
    message.join_ref.is_some() && message.join_ref != channel.join_ref
}

/// Phoenix's reply for a topic with no channel (or not joined): no join_ref.
fn unmatched_topic(message: &Frame) -> Frame {
    Frame::reply(
        None,
        message.msg_ref.clone(),
        &message.topic,
        ReplyStatus::Error,
        json!({ "reason": "unmatched topic" }),
    )
}
