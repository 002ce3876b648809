//! One tunnel stream each: an HTTP exchange or a WebSocket relay with a local port. Every
//! stream passes the same guard as the control path before anything reaches the port.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, StreamBody};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::debug;

use super::frame::{FIN, Frame, HttpHead, Kind, MAX_DATA, MAX_MESSAGE, Open};
use super::{StreamContext, StreamInput};
use crate::forwarding::guard::{self, LocalTarget};
use crate::forwarding::local_http::{LocalHttp, RequestBody, response_headers};
use crate::forwarding::local_ws::{self, LocalSocket};
use crate::forwarding::routes::Routes;

/// What a stream needs to send frames back, apart from its input.
#[derive(Clone)]
struct Sender {
    id: u32,
    out: mpsc::UnboundedSender<Bytes>,
    credit: Arc<tokio::sync::Semaphore>,
    granted: Arc<AtomicU64>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Sender {
    fn of(context: &StreamContext) -> Sender {
        Sender {
            id: context.id,
            out: context.out.clone(),
            credit: context.credit.clone(),
            granted: context.granted.clone(),
            cancel: context.cancel.clone(),
        }
    }

    fn send(&self, frame: Frame) {
        // If the connection is gone, the stream has been cancelled with it.
        let _ = self.out.send(frame.encode());
    }

    fn reset(&self, code: &str, message: &str) {
        self.send(Frame::reset(self.id, code, message));
    }

    fn end(&self) {
        self.send(Frame::new(Kind::End, self.id, Bytes::new()));
    }

    /// Lets Kandan send `bytes` more, now that this side has consumed that much.
    fn grant(&self, bytes: usize) {
        if bytes > 0 {
            self.granted.fetch_add(bytes as u64, Ordering::AcqRel);
            self.send(Frame::window(self.id, bytes as u32));
        }
    }

    /// Sends bytes as `DATA` frames within the credit Kandan granted; false once the
    /// stream is cancelled. With `opcode`, the bytes are one WebSocket message, split into
    /// fragments marked as the protocol describes.
    async fn send_data(&self, mut bytes: Bytes, opcode: Option<u8>) -> bool {
        let mut first = true;
        loop {
            let room = MAX_DATA - usize::from(opcode.is_some());
            let chunk = bytes.split_to(bytes.len().min(room));
            let last = bytes.is_empty();
            let flags = opcode.map(|opcode| {
                let code = if first { opcode } else { 0 };
                code | if last { FIN } else { 0 }
            });
            let payload = chunk.len() + usize::from(flags.is_some());
            let permit = tokio::select! {
                permit = self.credit.acquire_many(payload as u32) => permit,
                () = self.cancel.cancelled() => return false,
            };
            match permit {
                // Spent for good: only WINDOW frames add credit.
                Ok(permit) => permit.forget(),
                Err(_) => return false,
            }
            let _ = self.out.send(Frame::encode_data(self.id, flags, &chunk));
            first = false;
            if last {
                return true;
            }
        }
    }
}

fn admit(sender: &Sender, open: Open, allowed: &Routes) -> Option<LocalTarget> {
    match guard::admit(
        allowed,
        open.port,
        &open.path,
        open.query.as_deref(),
        open.headers,
    ) {
        Ok(target) => Some(target),
        Err(refused) => {
            sender.reset(refused.code(), &refused.to_string());
            None
        }
    }
}

/// An HTTP exchange: the request body from Kandan, the response streamed back.
pub(crate) async fn http(context: StreamContext, open: Open, allowed: &Routes, local: &LocalHttp) {
    let sender = Sender::of(&context);
    let method = open.method.clone();
    let Some(target) = admit(&sender, open, allowed) else {
        return;
    };
    let has_length = target
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    let bodiless = matches!(
        method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "DELETE" | "TRACE"
    );
    // A GET must not turn into a chunked upload; anything Kandan sends with it is dropped.
    let body: RequestBody = if bodiless && !has_length {
        Empty::new().map_err(|never| match never {}).boxed()
    } else {
        request_body(context.input, sender.clone())
    };
    let response = tokio::select! {
        response = local.send(&target, &method, body) => response,
        () = sender.cancel.cancelled() => return,
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => return sender.reset(error.code(), &error.to_string()),
    };
    let head = HttpHead {
        status: response.status().as_u16(),
        headers: response_headers(response.headers()),
    };
    sender.send(Frame::new(
        Kind::Head,
        sender.id,
        serde_json::to_vec(&head).unwrap_or_default(),
    ));
    let mut body = response.into_body();
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = sender.cancel.cancelled() => return,
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                    && !sender.send_data(data, None).await
                {
                    return;
                }
            }
            Some(Err(error)) => {
                return sender.reset(
                    "upstream_error",
                    &format!("the local server broke off the response: {error}"),
                );
            }
        }
    }
    sender.end();
}

/// The request body as Kandan sends it; more is granted as hyper consumes it. A stream
/// cancelled mid-body fails the request rather than pass for a complete one.
fn request_body(input: mpsc::UnboundedReceiver<StreamInput>, sender: Sender) -> RequestBody {
    let chunks = futures_util::stream::unfold(Some((input, sender)), |state| async move {
        let (mut input, sender) = state?;
        let next = tokio::select! {
            next = input.recv() => next,
            () = sender.cancel.cancelled() => {
                return Some((Err(std::io::Error::other("the request was cancelled")), None));
            }
        };
        match next {
            Some(StreamInput::Data(bytes)) => {
                sender.grant(bytes.len());
                Some((Ok(hyper::body::Frame::data(bytes)), Some((input, sender))))
            }
            Some(StreamInput::End(_)) | None => None,
        }
    });
    BodyExt::boxed(StreamBody::new(chunks))
}

/// A WebSocket relay between Kandan and a local server. Close codes pass both ways in
/// `END`; a close the relay causes is 1011 towards the browser.
pub(crate) async fn websocket(context: StreamContext, open: Open, allowed: &Routes) {
    let sender = Sender::of(&context);
    let Some(target) = admit(&sender, open, allowed) else {
        return;
    };
    let (socket, protocol) = match local_ws::connect(&target).await {
        Ok(connected) => connected,
        Err(error) => return sender.reset("connect_failed", &error),
    };
    sender.send(Frame::new(
        Kind::Head,
        sender.id,
        serde_json::json!({ "protocol": protocol }).to_string(),
    ));
    let (local_sink, local_stream) = socket.split();
    tokio::join!(
        local_to_kandan(local_stream, sender.clone()),
        kandan_to_local(context.input, local_sink, sender),
    );
}

async fn local_to_kandan(mut local: SplitStream<LocalSocket>, sender: Sender) {
    while let Some(message) = local.next().await {
        let (opcode, bytes) = match message {
            Ok(Message::Text(text)) => (1, Bytes::from(text)),
            Ok(Message::Binary(bytes)) => (2, bytes),
            Ok(Message::Ping(bytes)) => (9, bytes),
            Ok(Message::Pong(bytes)) => (10, bytes),
            Ok(Message::Close(frame)) => {
                let close = frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                return sender.send(Frame::end_websocket(
                    sender.id,
                    close
                        .as_ref()
                        .map(|(code, reason)| (*code, reason.as_str())),
                ));
            }
            Ok(Message::Frame(_)) => continue,
            Err(error) => {
                debug!(stream = sender.id, %error, "the local WebSocket broke");
                break;
            }
        };
        if !sender.send_data(bytes, Some(opcode)).await {
            return;
        }
    }
    if !sender.cancel.is_cancelled() {
        sender.send(Frame::end_websocket(
            sender.id,
            Some((1011, "the local server went away")),
        ));
    }
}

async fn kandan_to_local(
    mut input: mpsc::UnboundedReceiver<StreamInput>,
    mut local: SplitSink<LocalSocket, Message>,
    sender: Sender,
) {
    let mut message = BytesMut::new();
    let mut opcode = 0;
    loop {
        let next = tokio::select! {
            next = input.recv() => next,
            () = sender.cancel.cancelled() => None,
        };
        let data = match next {
            Some(StreamInput::Data(data)) => data,
            Some(StreamInput::End(close)) => {
                let frame = close.and_then(|(code, reason)| local_ws::close_frame(code, &reason));
                let _ = local.send(Message::Close(frame)).await;
                return;
            }
            None => {
                let gone = local_ws::close_frame(1001, "Kandan ended the forwarded connection");
                let _ = local.send(Message::Close(gone)).await;
                return;
            }
        };
        sender.grant(data.len());
        let Some((&flags, bytes)) = data.split_first() else {
            continue;
        };
        if flags & 0x0F != 0 {
            opcode = flags & 0x0F;
            message.clear();
        }
        message.extend_from_slice(bytes);
        if message.len() > MAX_MESSAGE {
            sender.reset("message_too_big", "a WebSocket message over 8 MiB");
            let _ = local
                .send(Message::Close(local_ws::close_frame(
                    1009,
                    "message too big",
                )))
                .await;
            return;
        }
        if flags & FIN == 0 {
            continue;
        }
        let payload = message.split().freeze();
        let outgoing = match opcode {
            1 => match Utf8Bytes::try_from(payload) {
                Ok(text) => Message::Text(text),
                Err(_) => {
                    sender.reset("protocol_error", "a text message that is not UTF-8");
                    let _ = local
                        .send(Message::Close(local_ws::close_frame(1007, "invalid UTF-8")))
                        .await;
                    return;
                }
            },
            2 => Message::Binary(payload),
            9 => Message::Ping(payload),
            10 => Message::Pong(payload),
            other => {
                sender.reset(
                    "protocol_error",
                    &format!("unknown WebSocket opcode {other}"),
                );
                let _ = local
                    .send(Message::Close(local_ws::close_frame(
                        1002,
                        "protocol error",
                    )))
                    .await;
                return;
            }
        };
        if local.send(outgoing).await.is_err() {
            return;
        }
    }
}
