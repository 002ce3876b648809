//! One runner's forward tunnel as the rest of the server sees it: it opens streams, routes the
//! runner's frames to them and enforces §6.4's stream rules and flow control, so the preview
//! proxies only deal with whole events (`HEAD`, `DATA`, `END`, `RESET`) and windows.
//!
//! The socket itself is driven by [`tunnel_connection`](crate::tunnel_connection), which feeds
//! decoded frames to [`Tunnel::dispatch`] and writes what [`Tunnel`] queues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::sync::lock;
use crate::tunnel_codec::{
    CloseStatus, DecodeError, Frame, Head, INITIAL_WINDOW, MAX_DATA_PAYLOAD, Open, Reset,
    StreamKind,
};

/// At most this many streams are open on one tunnel at once.
pub(crate) const MAX_OPEN_STREAMS: usize = 256;
/// The `RESET` code for a peer breaking the stream rules; the message says which.
pub(crate) const PROTOCOL_ERROR_CODE: &str = "protocol_error";

/// What the connection task writes to the socket.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Bytes),
    /// A close frame; the connection ends after it.
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// Why the server ends a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Abruptly, at the TCP level (`drop_tunnels`, `drop_connections`, restart, shutdown).
    Drop,
    /// With a close frame: the same runner opened a newer tunnel.
    Replaced,
}

/// What a stream's owner learns from the runner.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    Head(Head),
    Data(Bytes),
    /// The runner's direction is done; a websocket stream's close code, if it gave one.
    End(Option<CloseStatus>),
    Reset(Reset),
    /// The runner broke the stream rules; the stream was reset.
    Violation(String),
    /// The tunnel went away.
    TunnelGone,
}

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("the runner's tunnel is closed")]
    Closed,
    #[error("the runner's tunnel already has {MAX_OPEN_STREAMS} open streams")]
    TooManyStreams,
    #[error("the tunnel has used up its stream ids")]
    IdsExhausted,
}

/// The stream is over or was reset: nothing more may be sent on it.
#[derive(Debug, thiserror::Error)]
#[error("the stream is closed")]
pub(crate) struct StreamClosed;

pub(crate) struct Tunnel {
    pub(crate) runner_id: String,
    outbound: mpsc::UnboundedSender<Outgoing>,
    table: Mutex<StreamTable>,
    stop: watch::Sender<Option<Stop>>,
    /// Set once the connection task has let go of the socket.
    gone: watch::Sender<bool>,
}

struct StreamTable {
    /// Odd, from 1, never reused.
    next_id: u32,
    open: HashMap<u32, StreamEntry>,
    /// No more streams may open.
    closed: bool,
}

struct StreamEntry {
    kind: StreamKind,
    events: mpsc::UnboundedSender<StreamEvent>,
    /// All the `DATA` bytes the runner allowed so far (initial window plus `WINDOW`s).
    send_window: watch::Sender<u64>,
    /// `DATA` bytes the runner may still send.
    receive_window: u64,
    head_received: bool,
    runner_ended: bool,
    kandan_ended: bool,
}

impl Tunnel {
    /// A new tunnel and the queue its connection task writes from.
    pub(crate) fn new(runner_id: &str) -> (Arc<Tunnel>, mpsc::UnboundedReceiver<Outgoing>) {
        let (outbound, queue) = mpsc::unbounded_channel();
        let tunnel = Tunnel {
            runner_id: runner_id.to_owned(),
            outbound,
            table: Mutex::new(StreamTable {
                next_id: 1,
                open: HashMap::new(),
                closed: false,
            }),
            stop: watch::Sender::new(None),
            gone: watch::Sender::new(false),
        };
        (Arc::new(tunnel), queue)
    }

    /// Sends `OPEN` on a fresh stream.
    pub(crate) fn open(self: &Arc<Self>, open: Open) -> Result<OpenedStream, OpenError> {
        let mut table = lock(&self.table);
        if table.closed {
            return Err(OpenError::Closed);
        }
        if table.open.len() >= MAX_OPEN_STREAMS {
            return Err(OpenError::TooManyStreams);
        }
        let id = table.next_id;
        table.next_id = id.checked_add(2).ok_or(OpenError::IdsExhausted)?;
        let (events, receiver) = mpsc::unbounded_channel();
        let send_window = watch::Sender::new(u64::from(INITIAL_WINDOW));
        let window = send_window.subscribe();
        table.open.insert(
            id,
            StreamEntry {
                kind: open.kind,
                events,
                send_window,
                receive_window: u64::from(INITIAL_WINDOW),
                head_received: false,
                runner_ended: false,
                kandan_ended: false,
            },
        );
        self.queue(&Frame::Open { stream: id, open });
        Ok(OpenedStream {
            sender: StreamSender {
                tunnel: Arc::clone(self),
                id,
                window,
                sent: 0,
            },
            receiver: StreamReceiver {
                tunnel: Arc::clone(self),
                id,
                events: receiver,
            },
            guard: StreamGuard {
                tunnel: Arc::clone(self),
                id,
            },
        })
    }

    /// Handles one frame from the runner.
    pub(crate) fn dispatch(&self, frame: Frame) {
        let id = frame.stream();
        match frame {
            Frame::Ping { stream, payload } => self.queue(&Frame::Pong { stream, payload }),
            Frame::Pong { .. } => {}
            Frame::Reset { reset, .. } => self.reset_by_runner(id, reset),
            frame => {
                let mut table = lock(&self.table);
                match table.open.get_mut(&id) {
                    Some(entry) => {
                        if let Err(problem) = entry.accept(frame) {
                            self.violation(&mut table, id, problem);
                        } else if entry.runner_ended && entry.kandan_ended {
                            table.open.remove(&id);
                        }
                    }
                    None => self.unknown_stream(&table, id, frame.name()),
                }
            }
        }
    }

    /// A frame for `stream` that could not be decoded.
    pub(crate) fn malformed(&self, stream: u32, err: &DecodeError) {
        if err.is_reset() {
            // The runner abandoned the stream all the same; a RESET is never answered.
            let reset = Reset::new(PROTOCOL_ERROR_CODE, format!("an unreadable RESET: {err}"));
            return self.reset_by_runner(stream, reset);
        }
        let mut table = lock(&self.table);
        if table.open.contains_key(&stream) {
            self.violation(&mut table, stream, err.to_string());
        } else {
            self.unknown_stream(&table, stream, &err.to_string());
        }
    }

    /// The runner abandoned `id`: its owner learns why; nothing is sent back.
    fn reset_by_runner(&self, id: u32, reset: Reset) {
        let removed = lock(&self.table).open.remove(&id);
        if let Some(entry) = removed {
            // A closed receiver means the stream's owner is already gone.
            let _ = entry.events.send(StreamEvent::Reset(reset));
        }
    }

    /// Resets a stream whose runner broke the rules and tells its owner why.
    fn violation(&self, table: &mut StreamTable, id: u32, problem: String) {
        tracing::warn!(runner_id = %self.runner_id, stream = id, %problem, "resetting a tunnel stream");
        if let Some(entry) = table.open.remove(&id) {
            let _ = entry.events.send(StreamEvent::Violation(problem.clone()));
        }
        let reset = Reset::new(PROTOCOL_ERROR_CODE, problem);
        self.queue(&Frame::Reset { stream: id, reset });
    }

    /// Late frames for streams that are over are normal (they crossed our `END` or `RESET`);
    /// a stream that was never opened is reset.
    fn unknown_stream(&self, table: &StreamTable, id: u32, what: &str) {
        let was_ours = id % 2 == 1 && id < table.next_id;
        if !was_ours {
            tracing::warn!(runner_id = %self.runner_id, stream = id, what, "frame for an unknown stream");
            let reset = Reset::new(
                PROTOCOL_ERROR_CODE,
                format!("{what}: stream {id} was never opened"),
            );
            self.queue(&Frame::Reset { stream: id, reset });
        }
    }

    /// Queues `frame` on `id` if the stream is still open; `end` marks Kandan's side done.
    fn send_on(&self, id: u32, frame: &Frame, end: bool) -> Result<(), StreamClosed> {
        let mut table = lock(&self.table);
        let entry = table.open.get_mut(&id).ok_or(StreamClosed)?;
        if entry.kandan_ended {
            return Err(StreamClosed);
        }
        entry.kandan_ended = end;
        let over = entry.kandan_ended && entry.runner_ended;
        self.queue(frame);
        if over {
            table.open.remove(&id);
        }
        Ok(())
    }

    /// Lets the runner send `increment` more `DATA` bytes on `id`.
    fn grant(&self, id: u32, increment: u32) {
        let mut table = lock(&self.table);
        if let Some(entry) = table.open.get_mut(&id)
            && !entry.runner_ended
            && increment > 0
        {
            entry.receive_window += u64::from(increment);
            self.queue(&Frame::Window {
                stream: id,
                increment,
            });
        }
    }

    /// Resets `id` unless it is already over.
    fn abandon(&self, id: u32, reset: Reset) {
        let removed = lock(&self.table).open.remove(&id);
        if removed.is_some() {
            self.queue(&Frame::Reset { stream: id, reset });
        }
    }

    /// Ends every open stream (their owners see [`StreamEvent::TunnelGone`]) and refuses new ones.
    pub(crate) fn close_streams(&self) {
        let mut table = lock(&self.table);
        table.closed = true;
        table.open.clear();
    }

    /// Asks the connection task to end the tunnel.
    pub(crate) fn stop(&self, how: Stop) {
        // A drop overrides a replacement whose close frame is stuck behind a slow runner.
        self.stop.send_if_modified(|stop| match stop {
            Some(Stop::Drop) => false,
            _ => {
                *stop = Some(how);
                true
            }
        });
        if how == Stop::Replaced {
            self.close(1000, "replaced by a newer tunnel");
        }
    }

    /// Has the writer send a close frame (after what is queued) and end the connection.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        // A closed queue means the connection is already gone.
        let _ = self.outbound.send(Outgoing::Close { code, reason });
    }

    /// Resolves once [`Self::stop`] was called with [`Stop::Drop`].
    pub(crate) async fn dropped(&self) {
        let mut stop = self.stop.subscribe();
        // An error means the tunnel itself is gone, which is as good as dropped.
        let _ = stop.wait_for(|stop| *stop == Some(Stop::Drop)).await;
    }

    /// Called by the connection task once the socket is closed.
    pub(crate) fn mark_gone(&self) {
        self.gone.send_replace(true);
    }

    /// Resolves once the connection task has let go of the socket.
    pub(crate) async fn wait_gone(&self) {
        let mut gone = self.gone.subscribe();
        let _ = gone.wait_for(|gone| *gone).await;
    }

    /// Queues `frame` for the socket. The queue is unbounded, but flow control bounds it: only
    /// `DATA` within a window and small control frames ever enter it.
    pub(crate) fn queue(&self, frame: &Frame) {
        // A closed queue means the connection is already gone; its streams learn that anyway.
        let _ = self.outbound.send(Outgoing::Frame(frame.encode()));
    }
}

impl StreamEntry {
    /// Applies a `HEAD`, `DATA`, `END` or `WINDOW` from the runner, or says which rule it broke.
    fn accept(&mut self, frame: Frame) -> Result<(), String> {
        let event = match frame {
            Frame::Window { increment, .. } => {
                self.send_window
                    .send_modify(|granted| *granted = granted.saturating_add(increment.into()));
                return Ok(());
            }
            _ if self.runner_ended => return Err(format!("{} after END", frame.name())),
            Frame::Head { head, .. } => {
                if self.head_received {
                    return Err("a second HEAD".into());
                }
                self.head_received = true;
                StreamEvent::Head(head)
            }
            Frame::Data { .. } | Frame::End { .. } if !self.head_received => {
                return Err(format!("{} before HEAD", frame.name()));
            }
            Frame::Data { data, .. } => {
                let len = data.len() as u64;
                if len > self.receive_window {
                    return Err(format!(
                        "DATA of {len} bytes beyond the window ({} bytes left)",
                        self.receive_window
                    ));
                }
                self.receive_window -= len;
                StreamEvent::Data(data)
            }
            Frame::End { close, .. } => {
                if close.is_some() && self.kind == StreamKind::Http {
                    return Err("an END with a close code on an http stream".into());
                }
                self.runner_ended = true;
                StreamEvent::End(close)
            }
            other => return Err(format!("an unexpected {} from the runner", other.name())),
        };
        // A closed receiver means the owner is gone; its guard resets the stream.
        let _ = self.events.send(event);
        Ok(())
    }
}

/// The three handles of an open stream.
pub(crate) struct OpenedStream {
    pub sender: StreamSender,
    pub receiver: StreamReceiver,
    /// Resets the stream when dropped before it is over.
    pub guard: StreamGuard,
}

/// Kandan's direction of a stream: `DATA` within the runner's window, then `END`.
pub(crate) struct StreamSender {
    tunnel: Arc<Tunnel>,
    id: u32,
    window: watch::Receiver<u64>,
    sent: u64,
}

impl StreamSender {
    /// Sends `data` as `DATA` frames as fast as the runner's window allows.
    pub(crate) async fn send_data(&mut self, mut data: Bytes) -> Result<(), StreamClosed> {
        while !data.is_empty() {
            let available = self.wait_window(1).await?;
            let len = data.len().min(MAX_DATA_PAYLOAD);
            let len = usize::try_from(available).map_or(len, |available| len.min(available));
            self.send_frame(data.split_to(len))?;
        }
        Ok(())
    }

    /// Waits until the runner's window has room for `need` bytes; returns the room.
    pub(crate) async fn wait_window(&mut self, need: u64) -> Result<u64, StreamClosed> {
        let sent = self.sent;
        let granted = self
            .window
            .wait_for(|granted| granted.saturating_sub(sent) >= need)
            .await
            .map_err(|_| StreamClosed)?;
        Ok(granted.saturating_sub(sent))
    }

    /// Sends one `DATA` frame at once; the caller made sure it fits the window.
    pub(crate) fn send_frame(&mut self, data: Bytes) -> Result<(), StreamClosed> {
        let len = data.len() as u64;
        let frame = Frame::Data {
            stream: self.id,
            data,
        };
        self.tunnel.send_on(self.id, &frame, false)?;
        self.sent += len;
        Ok(())
    }

    /// Sends `END`: Kandan's direction is done.
    pub(crate) fn end(&self) -> Result<(), StreamClosed> {
        self.end_with(None)
    }

    /// Sends a websocket stream's `END` with the client's close code and reason, if it gave one.
    pub(crate) fn end_with(&self, close: Option<CloseStatus>) -> Result<(), StreamClosed> {
        let end = Frame::End {
            stream: self.id,
            close,
        };
        self.tunnel.send_on(self.id, &end, true)
    }

    /// Abandons the stream with `RESET` (if it is not over already).
    pub(crate) fn reset(&self, code: &str, message: impl Into<String>) {
        self.tunnel.abandon(self.id, Reset::new(code, message));
    }
}

/// The runner's direction of a stream.
pub(crate) struct StreamReceiver {
    tunnel: Arc<Tunnel>,
    id: u32,
    events: mpsc::UnboundedReceiver<StreamEvent>,
}

impl StreamReceiver {
    pub(crate) async fn next(&mut self) -> StreamEvent {
        self.events.recv().await.unwrap_or(StreamEvent::TunnelGone)
    }

    /// Abandons the stream with `RESET` (if it is not over already).
    pub(crate) fn reset(&self, code: &str, message: impl Into<String>) {
        self.tunnel.abandon(self.id, Reset::new(code, message));
    }

    /// Tells the runner that `consumed` bytes of its `DATA` were used up, so it may send more.
    pub(crate) fn consumed(&self, consumed: usize) {
        if let Ok(increment) = u32::try_from(consumed) {
            self.tunnel.grant(self.id, increment);
        }
    }
}

/// Resets its stream when dropped before the stream is over: the client went away.
pub(crate) struct StreamGuard {
    tunnel: Arc<Tunnel>,
    id: u32,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.tunnel
            .abandon(self.id, Reset::new("cancelled", "the client went away"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel_codec::StreamKind;

    fn open_request() -> Open {
        Open {
            kind: StreamKind::Http,
            port: 3000,
            method: "GET".into(),
            path: "/".into(),
            query: None,
            headers: Vec::new(),
        }
    }

    fn sent(queue: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Ok(out) = queue.try_recv() {
            match out {
                Outgoing::Frame(bytes) => frames.push(Frame::decode(&bytes).expect("valid")),
                Outgoing::Close { .. } => panic!("unexpected close"),
            }
        }
        frames
    }

    fn head() -> Frame {
        Frame::Head {
            stream: 1,
            head: Head {
                status: Some(200),
                ..Head::default()
            },
        }
    }

    #[tokio::test]
    async fn streams_get_odd_ids_and_events_in_order() {
        let (tunnel, mut queue) = Tunnel::new("r1");
        let mut first = tunnel.open(open_request()).expect("open");
        let second = tunnel.open(open_request()).expect("open");
        let ids: Vec<u32> = sent(&mut queue).iter().map(Frame::stream).collect();
        assert_eq!(ids, vec![1, 3]);
        drop(second);
        assert!(matches!(
            sent(&mut queue).as_slice(),
            [Frame::Reset { stream: 3, .. }]
        ));

        tunnel.dispatch(head());
        tunnel.dispatch(Frame::Data {
            stream: 1,
            data: Bytes::from_static(b"hi"),
        });
        tunnel.dispatch(end(1));
        assert!(matches!(first.receiver.next().await, StreamEvent::Head(_)));
        assert!(matches!(first.receiver.next().await, StreamEvent::Data(data) if data == "hi"));
        assert!(matches!(
            first.receiver.next().await,
            StreamEvent::End(None)
        ));
        // Kandan's END completes the stream; dropping the guard then resets nothing.
        first.sender.end().expect("end");
        drop(first);
        assert_eq!(sent(&mut queue), vec![end(1)]);
        // A late frame for a finished stream is ignored; one for a stream never opened is reset.
        tunnel.dispatch(Frame::Window {
            stream: 1,
            increment: 1,
        });
        tunnel.dispatch(Frame::Data {
            stream: 8,
            data: Bytes::new(),
        });
        assert!(matches!(
            sent(&mut queue).as_slice(),
            [Frame::Reset { stream: 8, reset }] if reset.code == "protocol_error"
        ));
    }

    fn end(stream: u32) -> Frame {
        Frame::End {
            stream,
            close: None,
        }
    }

    #[tokio::test]
    async fn data_beyond_the_window_resets_the_stream() {
        let (tunnel, mut queue) = Tunnel::new("r1");
        let mut stream = tunnel.open(open_request()).expect("open");
        tunnel.dispatch(head());
        let chunk = Bytes::from(vec![0; MAX_DATA_PAYLOAD]);
        for _ in 0..(INITIAL_WINDOW as usize / MAX_DATA_PAYLOAD) {
            tunnel.dispatch(Frame::Data {
                stream: 1,
                data: chunk.clone(),
            });
        }
        stream.receiver.consumed(10);
        tunnel.dispatch(Frame::Data {
            stream: 1,
            data: Bytes::from(vec![0; 11]),
        });
        assert!(matches!(stream.receiver.next().await, StreamEvent::Head(_)));
        for _ in 0..4 {
            assert!(matches!(stream.receiver.next().await, StreamEvent::Data(_)));
        }
        let StreamEvent::Violation(problem) = stream.receiver.next().await else {
            panic!("expected a violation");
        };
        assert!(problem.contains("beyond the window"), "{problem}");
        let frames = sent(&mut queue);
        assert!(matches!(
            frames[1],
            Frame::Window {
                stream: 1,
                increment: 10
            }
        ));
        assert!(matches!(
            &frames[2],
            Frame::Reset { stream: 1, reset }
                if reset.code == "protocol_error" && reset.message.contains("window")
        ));
    }

    #[tokio::test]
    async fn rules_are_enforced() {
        let closing = Frame::End {
            stream: 1,
            close: Some(CloseStatus::new(1000, "")),
        };
        let open = Frame::Open {
            stream: 1,
            open: open_request(),
        };
        for (frames, problem) in [
            (vec![end(1)], "END before HEAD"),
            (vec![head(), head()], "a second HEAD"),
            (vec![head(), end(1), head()], "HEAD after END"),
            (vec![head(), end(1), end(1)], "END after END"),
            (
                vec![head(), closing],
                "an END with a close code on an http stream",
            ),
            (vec![open], "an unexpected OPEN from the runner"),
        ] {
            let (tunnel, mut queue) = Tunnel::new("r1");
            let mut stream = tunnel.open(open_request()).expect("open");
            for frame in frames {
                tunnel.dispatch(frame);
            }
            let violation = loop {
                match stream.receiver.next().await {
                    StreamEvent::Violation(violation) => break violation,
                    StreamEvent::TunnelGone => panic!("no violation for {problem}"),
                    _ => {}
                }
            };
            assert_eq!(violation, problem);
            let frames = sent(&mut queue);
            assert!(
                matches!(
                    frames.last(),
                    Some(Frame::Reset { stream: 1, reset })
                        if reset.code == "protocol_error" && reset.message == problem
                ),
                "{frames:?}"
            );
        }
    }

    #[tokio::test]
    async fn resets_are_never_answered() {
        let (tunnel, mut queue) = Tunnel::new("r1");
        let mut first = tunnel.open(open_request()).expect("open");
        let mut second = tunnel.open(open_request()).expect("open");
        sent(&mut queue);
        let reset = Frame::Reset {
            stream: 1,
            reset: Reset::new("connect_failed", "refused"),
        };
        tunnel.dispatch(reset);
        let StreamEvent::Reset(reset) = first.receiver.next().await else {
            panic!("expected the reset");
        };
        assert_eq!(reset.code, "connect_failed");
        // An unreadable RESET still abandons its stream.
        let garbled = Frame::decode(&Bytes::from_static(b"\x05\0\0\0\x03{")).expect_err("bad");
        tunnel.malformed(3, &garbled);
        let StreamEvent::Reset(reset) = second.receiver.next().await else {
            panic!("expected the reset");
        };
        assert_eq!(reset.code, "protocol_error");
        // Neither for streams that are over nor for streams never opened.
        tunnel.malformed(3, &garbled);
        tunnel.malformed(41, &garbled);
        tunnel.dispatch(Frame::Reset {
            stream: 40,
            reset: Reset::new("cancelled", ""),
        });
        drop((first, second));
        assert_eq!(sent(&mut queue), Vec::new());
    }

    #[tokio::test]
    async fn websocket_ends_carry_the_close_code() {
        let (tunnel, mut queue) = Tunnel::new("r1");
        let open = Open {
            kind: StreamKind::Websocket,
            ..open_request()
        };
        let mut stream = tunnel.open(open).expect("open");
        tunnel.dispatch(Frame::Head {
            stream: 1,
            head: Head::default(),
        });
        let bye = Some(CloseStatus::new(4001, "bye"));
        tunnel.dispatch(Frame::End {
            stream: 1,
            close: bye.clone(),
        });
        assert!(matches!(stream.receiver.next().await, StreamEvent::Head(_)));
        assert!(matches!(stream.receiver.next().await, StreamEvent::End(close) if close == bye));
        stream.sender.end_with(bye.clone()).expect("end");
        let frames = sent(&mut queue);
        assert_eq!(
            frames.last(),
            Some(&Frame::End {
                stream: 1,
                close: bye
            })
        );
    }

    #[tokio::test]
    async fn the_sender_waits_for_the_window() {
        let (tunnel, mut queue) = Tunnel::new("r1");
        let mut stream = tunnel.open(open_request()).expect("open");
        let body = Bytes::from(vec![1; INITIAL_WINDOW as usize + 100]);
        let send = stream.sender.send_data(body);
        tokio::pin!(send);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut send)
                .await
                .is_err(),
            "must stall at the window"
        );
        let data: usize = sent(&mut queue)
            .iter()
            .map(|frame| match frame {
                Frame::Data { data, .. } => {
                    assert!(data.len() <= MAX_DATA_PAYLOAD);
                    data.len()
                }
                _ => 0,
            })
            .sum();
        assert_eq!(data, INITIAL_WINDOW as usize);
        tunnel.dispatch(Frame::Window {
            stream: 1,
            increment: 100,
        });
        send.await.expect("sent");
        assert!(
            matches!(sent(&mut queue).as_slice(), [Frame::Data { data, .. }] if data.len() == 100)
        );
    }

    #[tokio::test]
    async fn closing_ends_every_stream_and_refuses_new_ones() {
        let (tunnel, _queue) = Tunnel::new("r1");
        let mut stream = tunnel.open(open_request()).expect("open");
        tunnel.close_streams();
        assert!(matches!(
            stream.receiver.next().await,
            StreamEvent::TunnelGone
        ));
        assert!(stream.sender.send_frame(Bytes::from_static(b"x")).is_err());
        assert!(stream.sender.end().is_err());
        assert!(matches!(
            tunnel.open(open_request()),
            Err(OpenError::Closed)
        ));
    }

    #[tokio::test]
    async fn at_most_256_streams_are_open() {
        let (tunnel, _queue) = Tunnel::new("r1");
        let streams: Vec<OpenedStream> = (0..MAX_OPEN_STREAMS)
            .map(|_| tunnel.open(open_request()).expect("open"))
            .collect();
        assert!(matches!(
            tunnel.open(open_request()),
            Err(OpenError::TooManyStreams)
        ));
        drop(streams);
        assert!(tunnel.open(open_request()).is_ok());
    }
}
