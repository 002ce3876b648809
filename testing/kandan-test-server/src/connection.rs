//! One WebSocket connection: reads and decodes client frames, hands them to the channel layer,
//! writes replies (possibly delayed by a fault) and server-initiated frames, and closes the
//! socket when it has been idle for too long or when the server drops it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::time::Instant;

use crate::channels::{self, SocketInfo};
use crate::frame::Frame;
use crate::registry::{Outbound, Registration};
use crate::server::ServerCore;
use crate::tokens::Grant;

/// Close code Cowboy (Phoenix's web server) sends when a socket hits its idle timeout.
const CLOSE_NORMAL: u16 = 1000;

/// Why the loop ended, for the log.
enum End {
    /// Dropped by the server (`drop_connections`, restart, shutdown): no close frame.
    Killed,
    ClosedByClient,
    IdleTimeout,
    SocketError(axum::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Killed => f.write_str("dropped by the server"),
            End::ClosedByClient => f.write_str("closed by the client"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::SocketError(err) => write!(f, "socket error: {err}"),
        }
    }
}

/// Runs the connection until it ends, then forgets it (and its channels).
pub(crate) async fn run(core: Arc<ServerCore>, mut socket: WebSocket, grant: Grant) {
    let Registration {
        id,
        mut outbound,
        mut kill,
        finished,
    } = core.registry.register();
    let info = SocketInfo {
        connection_id: id,
        user: grant.user,
        scope: grant.scope,
    };
    tracing::debug!(connection = id, user = %info.user.slug, "socket connected");
    let idle_timeout = core.heartbeat_idle_timeout;
    let mut idle_deadline = Instant::now() + idle_timeout;
    let mut replies = ReplyQueue::default();

    let end = loop {
        let sent = tokio::select! {
            biased;
            _ = &mut kill => break End::Killed,
            incoming = socket.recv() => match incoming {
                Some(Ok(message)) => {
                    // Like Cowboy's idle timeout, any data from the client counts as activity.
                    idle_deadline = Instant::now() + idle_timeout;
                    let frames = handle_ws_message(&core, &info, message);
                    let due = replies.schedule(frames, core.faults.reply_delay());
                    send_frames(&mut socket, due).await
                }
                Some(Err(err)) => break End::SocketError(err),
                None => break End::ClosedByClient,
            },
            out = outbound.recv() => match out {
                Some(out) => send(&mut socket, out).await,
                // The registry dropped its sender: the server has forgotten this connection.
                None => break End::Killed,
            },
            () = replies.next_due(), if !replies.is_empty() => {
                let due = replies.take_due();
                send_frames(&mut socket, due).await
            }
            () = tokio::time::sleep_until(idle_deadline) => break End::IdleTimeout,
        };
        if let Err(err) = sent {
            break End::SocketError(err);
        }
    };

    tracing::debug!(connection = id, reason = %end, "socket closed");
    // Forget the connection before the client can notice it is gone.
    core.registry.unregister(id);
    if let End::IdleTimeout = end {
        let close = CloseFrame {
            code: CLOSE_NORMAL,
            reason: "".into(),
        };
        // The socket is being abandoned either way; a failed close changes nothing.
        let _ = socket.send(Message::Close(Some(close))).await;
    }
    // Close the TCP connection before telling `disconnect_all` this connection is gone.
    drop(socket);
    drop(finished);
}

/// Decodes one WebSocket message and returns the frames to answer it with.
fn handle_ws_message(core: &ServerCore, info: &SocketInfo, message: Message) -> Vec<Frame> {
    let decoded = match &message {
        Message::Text(text) => Frame::decode_text(text.as_str()),
        Message::Binary(bytes) => Frame::decode_binary(bytes),
        // Pings are answered by the WebSocket layer; a close is seen as the end of the stream.
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Vec::new(),
    };
    match decoded {
        Ok(frame) => channels::handle_message(core, info, frame),
        Err(err) => {
            // A Phoenix server would crash the socket; we keep it up so tests can go on.
            tracing::warn!(connection = info.connection_id, %err, ?message, "ignoring malformed frame");
            Vec::new()
        }
    }
}

async fn send(socket: &mut WebSocket, out: Outbound) -> Result<(), axum::Error> {
    let text = match out {
        Outbound::Frame(frame) => frame.encode_text(),
        Outbound::RawText(text) => text,
    };
    socket.send(Message::Text(text.into())).await
}

async fn send_frames(socket: &mut WebSocket, frames: Vec<Frame>) -> Result<(), axum::Error> {
    for frame in frames {
        send(socket, Outbound::Frame(frame)).await?;
    }
    Ok(())
}

/// Replies waiting out a `DelayReplies` fault. Replies leave in the order they were produced,
/// so a reply never overtakes an earlier, still-delayed one.
#[derive(Default)]
struct ReplyQueue {
    waiting: VecDeque<(Instant, Frame)>,
}

impl ReplyQueue {
    /// Queues `frames` to leave after `delay`; returns those that may leave right away.
    fn schedule(&mut self, frames: Vec<Frame>, delay: Option<Duration>) -> Vec<Frame> {
        if delay.is_none() && self.waiting.is_empty() {
            return frames;
        }
        let mut due = Instant::now() + delay.unwrap_or_default();
        if let Some((last_due, _)) = self.waiting.back() {
            due = due.max(*last_due);
        }
        self.waiting
            .extend(frames.into_iter().map(|frame| (due, frame)));
        Vec::new()
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Resolves when the oldest waiting reply is due (never, if none is waiting).
    async fn next_due(&self) {
        match self.waiting.front() {
            Some((due, _)) => tokio::time::sleep_until(*due).await,
            None => std::future::pending().await,
        }
    }

    fn take_due(&mut self) -> Vec<Frame> {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some((at, _)) = self.waiting.front()
            && *at <= now
        {
            if let Some((_, frame)) = self.waiting.pop_front() {
                due.push(frame);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(n: u64) -> Frame {
        Frame::broadcast("t", "e", json!({ "n": n }))
    }

    #[tokio::test]
    async fn delayed_replies_keep_their_order() {
        let mut queue = ReplyQueue::default();
        assert_eq!(queue.schedule(vec![frame(1)], None), vec![frame(1)]);
        let start = Instant::now();
        assert!(
            queue
                .schedule(vec![frame(2)], Some(Duration::from_millis(30)))
                .is_empty()
        );
        // The fault is gone, but reply 3 must not overtake reply 2.
        assert!(queue.schedule(vec![frame(3)], None).is_empty());
        assert!(queue.take_due().is_empty());
        queue.next_due().await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(queue.take_due(), vec![frame(2), frame(3)]);
        assert!(queue.is_empty());
    }
}
