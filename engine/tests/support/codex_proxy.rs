//! A Codex app-server that can be made to answer garbage or to stop answering requests:
//! the runner starts a stand-in `codex` (a shell script that announces this proxy's port
//! and sleeps), and every connection the runner opens to it is relayed to a REAL `codex
//! app-server` the proxy starts for that connection. [`CodexProxy::garble`] makes the
//! current app-server's answers garbage from then on; [`CodexProxy::deafen`] makes it
//! ignore the runner's messages while its WebSocket still answers pings. The next
//! connection (the app-server the runner starts after giving up on this one) is healthy.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use linzumi_engine::codex::{AppServerProcess, AppServerSource, AppServerSpec};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What a garbled app-server sends instead of JSON-RPC.
pub const GARBAGE: &str = "\u{1}\u{2}<html>502 Bad Gateway</html> {\"id\": ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Garble,
    Deafen,
}

pub struct CodexProxy {
    script: PathBuf,
    /// The current connection's switch to a fault.
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Fault>>>>,
    connections: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl CodexProxy {
    /// Relays to real app-servers started from `real`; the stand-in script lives in `dir`.
    pub async fn start(real: AppServerSource, dir: &Path) -> CodexProxy {
        let AppServerSource::Spawn(real) = real else {
            panic!("the proxy starts its own app-servers");
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = dir.join("fake-codex.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"listening on: ws://127.0.0.1:{port}\" >&2\nexec sleep 3600\n"
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let current = Arc::new(Mutex::new(None));
        let connections = Arc::new(Mutex::new(0));
        let task = tokio::spawn({
            let (current, connections) = (current.clone(), connections.clone());
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (faults_tx, faults_rx) = mpsc::unbounded_channel();
                    *current.lock().unwrap() = Some(faults_tx);
                    *connections.lock().unwrap() += 1;
                    tokio::spawn(relay(real.clone(), tcp, faults_rx));
                }
            }
        });
        CodexProxy {
            script,
            current,
            connections,
            task,
        }
    }

    /// What the runner should start as its app-server.
    pub fn source(&self) -> AppServerSource {
        AppServerSource::Spawn(AppServerSpec {
            codex_bin: self.script.clone(),
            extra_args: vec![],
            env: vec![],
            cwd: self.script.parent().unwrap().to_path_buf(),
        })
    }

    /// From now on the current app-server answers garbage (starting with one message now).
    pub fn garble(&self) {
        self.inject(Fault::Garble);
    }

    /// From now on the current app-server never sees the runner's messages (requests go
    /// unanswered), while pings still get their pongs.
    pub fn deafen(&self) {
        self.inject(Fault::Deafen);
    }

    fn inject(&self, fault: Fault) {
        let current = self.current.lock().unwrap();
        current.as_ref().unwrap().send(fault).unwrap();
    }

    /// How many connections the runner has opened so far.
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

impl Drop for CodexProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    spec: AppServerSpec,
    tcp: tokio::net::TcpStream,
    mut faults: mpsc::UnboundedReceiver<Fault>,
) {
    // The real app-server first, so the runner's handshake is answered only once it is up.
    let mut process = AppServerProcess::spawn(&spec).await.unwrap();
    let address = process.address();
    let mut request = address.url.as_str().into_client_request().unwrap();
    if let Some(token) = &address.token {
        let bearer = format!("Bearer {}", token.expose()).parse().unwrap();
        request.headers_mut().insert("authorization", bearer);
    }
    let (upstream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let Ok(downstream) = tokio_tungstenite::accept_async(tcp).await else {
        process.terminate(Duration::from_secs(1)).await;
        return;
    };
    let (mut up_sink, mut up_stream) = upstream.split();
    let (mut down_sink, mut down_stream) = downstream.split();
    let (mut garbled, mut deaf) = (false, false);
    loop {
        tokio::select! {
            Some(fault) = faults.recv() => match fault {
                Fault::Garble => {
                    garbled = true;
                    if down_sink.send(Message::text(GARBAGE)).await.is_err() {
                        break;
                    }
                }
                Fault::Deafen => deaf = true,
            },
            message = up_stream.next() => match message {
                Some(Ok(Message::Text(_))) if garbled => {
                    if down_sink.send(Message::text(GARBAGE)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(message)) if !message.is_close() => {
                    if down_sink.send(message).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            message = down_stream.next() => match message {
                Some(Ok(Message::Text(_))) if deaf => {}
                Some(Ok(message)) if !message.is_close() => {
                    if up_sink.send(message).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = down_sink.close().await;
    process.terminate(Duration::from_secs(1)).await;
}
