//! Local "dev servers" that misbehave on purpose, for the forwarding fault tests: one that
//! hangs up halfway through every response, one that streams an endless body, WebSocket
//! servers that flood, never read, or send one enormous message. Each counts what it
//! managed to write, so a test can see whether backpressure held.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Clone, Copy)]
pub enum Behavior {
    /// Announces `announced` bytes, sends `sent` of them, and closes the socket.
    CutMidBody { announced: usize, sent: usize },
    /// Streams an endless body as fast as the client takes it.
    EndlessBody,
    /// Accepts a WebSocket and sends 64 KiB binary messages as fast as it can.
    FloodWebSocket,
    /// Accepts a WebSocket and never reads from it again.
    DeafWebSocket,
    /// Accepts a WebSocket and sends one binary message of this many bytes.
    HugeWebSocketMessage(usize),
}

pub struct RogueServer {
    pub port: u16,
    /// Body or message bytes written so far, across connections.
    pub written: Arc<AtomicU64>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RogueServer {
    pub async fn start(behavior: Behavior) -> RogueServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        RogueServer::serve(listener, behavior)
    }

    /// Serves on `listener` (for servers bound somewhere other than 127.0.0.1).
    pub fn serve(listener: TcpListener, behavior: Behavior) -> RogueServer {
        let port = listener.local_addr().unwrap().port();
        let written = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (written, accepted) = (written.clone(), accepted.clone());
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve_one(socket, behavior, written.clone()));
                }
            }
        });
        RogueServer {
            port,
            written,
            accepted,
            task,
        }
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RogueServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head (up to the blank line).
async fn read_head(socket: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = socket.read(&mut byte).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&byte[..read]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn serve_one(mut socket: TcpStream, behavior: Behavior, written: Arc<AtomicU64>) {
    let chunk = vec![b'x'; 64 * 1024];
    match behavior {
        Behavior::CutMidBody { announced, sent } => {
            if read_head(&mut socket).await.is_none() {
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {announced}\r\n\r\n"
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut left = sent;
            while left > 0 {
                let part = &chunk[..left.min(chunk.len())];
                if socket.write_all(part).await.is_err() {
                    return;
                }
                written.fetch_add(part.len() as u64, Ordering::SeqCst);
                left -= part.len();
            }
            // An abrupt end: the client is owed the rest.
            let _ = socket.shutdown().await;
        }
        Behavior::EndlessBody => {
            if read_head(&mut socket).await.is_none() {
                return;
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000000000\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while socket.write_all(&chunk).await.is_ok() {
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Behavior::FloodWebSocket => {
            let Ok(mut ws) = tokio_tungstenite::accept_async(socket).await else {
                return;
            };
            while ws.send(Message::binary(chunk.clone())).await.is_ok() {
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Behavior::DeafWebSocket => {
            let Ok(ws) = tokio_tungstenite::accept_async(socket).await else {
                return;
            };
            // Holds the socket open and never reads it.
            std::future::pending::<()>().await;
            drop(ws);
        }
        Behavior::HugeWebSocketMessage(size) => {
            let config = WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            let Ok(mut ws) =
                tokio_tungstenite::accept_async_with_config(socket, Some(config)).await
            else {
                return;
            };
            if ws.send(Message::binary(vec![b'h'; size])).await.is_ok() {
                written.fetch_add(size as u64, Ordering::SeqCst);
            }
            // Answer whatever comes next (an echo), so the test can see the socket's fate.
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() && ws.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}
