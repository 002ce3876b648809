//! One forward-tunnel WebSocket: a reader that decodes the runner's frames and hands them to
//! the [`Tunnel`], and a writer that sends what the tunnel queues plus a `PING` every
//! interval. They run concurrently, so a runner that is slow to read never stops the server from
//! reading. A tunnel silent for the idle timeout is dropped, as §6.4's keepalive says; a message
//! over §6.4's 1 MiB cap closes it with 1009.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite;

use crate::server::ServerCore;
use crate::tunnel::{Outgoing, Tunnel};
use crate::tunnel_codec::Frame;

/// Why the connection ended, for the log.
enum End {
    /// By the server (`drop_tunnels`, restart, shutdown): no close frame.
    Dropped,
    /// By the server, with a close frame: replaced by a newer tunnel, or a message too big.
    Closed(&'static str),
    ClosedByRunner,
    IdleTimeout,
    SocketError(axum::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Dropped => f.write_str("dropped by the server"),
            End::Closed(reason) => write!(f, "closed by the server: {reason}"),
            End::ClosedByRunner => f.write_str("closed by the runner"),
            End::IdleTimeout => f.write_str("idle timeout"),
            End::SocketError(err) => write!(f, "socket error: {err}"),
        }
    }
}

/// Serves `tunnel` (already attached) until it ends, then resets its streams and detaches it.
pub(crate) async fn run(
    core: Arc<ServerCore>,
    socket: WebSocket,
    tunnel: Arc<Tunnel>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    tracing::info!(runner_id = %tunnel.runner_id, "forward tunnel connected");
    let (sink, stream) = socket.split();
    let end = tokio::select! {
        end = read(&core, &tunnel, stream) => end,
        end = write(&core, sink, queue) => end,
        () = tunnel.dropped() => End::Dropped,
    };
    // Leaving the select dropped both halves of the socket, which closes it.
    tracing::info!(runner_id = %tunnel.runner_id, reason = %end, "forward tunnel closed");
    tunnel.close_streams();
    core.tunnels.detach(&tunnel);
    tunnel.mark_gone();
}

async fn read(core: &ServerCore, tunnel: &Tunnel, mut stream: SplitStream<WebSocket>) -> End {
    let idle_timeout = core.tunnel_idle_timeout;
    loop {
        let next = tokio::time::timeout(idle_timeout, stream.next()).await;
        let message = match next {
            Err(_) => return End::IdleTimeout,
            Ok(None) => return End::ClosedByRunner,
            Ok(Some(Err(err))) if is_message_too_big(&err) => {
                // The writer sends the close frame (after what is queued) and ends the
                // connection; nothing more is read meanwhile.
                tunnel.close(1009, "a tunnel message over 1 MiB");
                return std::future::pending().await;
            }
            Ok(Some(Err(err))) => return End::SocketError(err),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Binary(bytes) => match Frame::decode(&bytes) {
                Ok(frame) => tunnel.dispatch(frame),
                Err(err) => match err.stream() {
                    Some(stream) => tunnel.malformed(stream, &err),
                    // §6.4: dropped with a warning; the tunnel stays up.
                    None => {
                        tracing::warn!(runner_id = %tunnel.runner_id, %err, "dropping a tunnel frame")
                    }
                },
            },
            // Not a frame at all: dropped like one too short to name its stream.
            Message::Text(_) => {
                tracing::warn!(runner_id = %tunnel.runner_id, "dropping a text message on the tunnel")
            }
            Message::Close(_) => return End::ClosedByRunner,
            // WebSocket-level pings are answered by tungstenite; like pongs they count as
            // activity.
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// Whether a read failed because the peer's message was over the size limit (as opposed to a
/// broken connection or a protocol error).
pub(crate) fn is_message_too_big(err: &axum::Error) -> bool {
    // axum's error is a plain wrapper: its source is tungstenite's error.
    std::error::Error::source(err)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|inner| matches!(inner, tungstenite::Error::Capacity(_)))
}

async fn write(
    core: &ServerCore,
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) -> End {
    // tokio's interval refuses a zero period.
    let interval = core.tunnel_ping_interval.max(Duration::from_millis(1));
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pings: u64 = 0;
    loop {
        let first = tokio::select! {
            out = queue.recv() => match out {
                Some(out) => out,
                // The tunnel owns the sender, so this cannot happen while it exists.
                None => return End::Dropped,
            },
            _ = ping.tick() => {
                pings += 1;
                let frame = Frame::Ping { stream: 0, payload: pings.to_be_bytes() };
                Outgoing::Frame(frame.encode())
            }
        };
        // Write what is queued together and flush once: a request's OPEN and END, or many
        // streams' frames under load, then take one write.
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Outgoing::Frame(bytes) => {
                    if let Err(err) = sink.feed(Message::Binary(bytes)).await {
                        return End::SocketError(err);
                    }
                }
                Outgoing::Close { code, reason } => {
                    let close = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    // The connection ends either way.
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return End::Closed(reason);
                }
            }
            next = queue.try_recv().ok();
        }
        if let Err(err) = sink.flush().await {
            return End::SocketError(err);
        }
    }
}
