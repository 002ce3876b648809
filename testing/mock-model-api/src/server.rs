//! The HTTP side: an axum server on 127.0.0.1 that records every `POST …/responses` body and
//! answers it with the reply [`crate::script::plan`] chose, streamed as SSE.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::script::{Item, Reply, plan};
use crate::sse::{Frame, encode, error_body};

/// One request body the mock received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The JSON body (`model`, `input`, `tools`, …). A body that is not JSON is kept as a string.
    pub body: Value,
    pub received_at: SystemTime,
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    /// How many requests were recorded, for [`MockModelApi::wait_for_requests`].
    recorded: watch::Sender<usize>,
    responses: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// A running mock of the Responses API. Dropping it stops the server too (abruptly);
/// [`MockModelApi::shutdown`] stops it cleanly.
pub struct MockModelApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockModelApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockModelApi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockModelApi {
    /// Starts a mock on 127.0.0.1 with a port the OS picks.
    pub async fn start() -> anyhow::Result<MockModelApi> {
        MockModelApi::start_on_port(0).await
    }

    /// Starts a mock on 127.0.0.1:`port` (0: the OS picks).
    pub async fn start_on_port(port: u16) -> anyhow::Result<MockModelApi> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            recorded: watch::Sender::new(0),
            responses: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
        });
        let router = Router::new()
            .route("/v1/responses", post(responses))
            .route("/responses", post(responses))
            .fallback(unknown)
            .with_state(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            });
            if let Err(error) = server.await {
                tracing::warn!(%error, "mock model API server failed");
            }
        });
        Ok(MockModelApi {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`; codex POSTs `{base_url}/responses`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every `POST …/responses` body seen so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `count` requests were recorded, then returns them all;
    /// fails after `timeout`.
    pub async fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let mut recorded = self.shared.recorded.subscribe();
        tokio::time::timeout(timeout, recorded.wait_for(|seen| *seen >= count))
            .await
            .with_context(|| format!("waited {timeout:?} for {count} model request(s)"))??;
        Ok(self.requests())
    }

    /// Stops the server: streams still open (a hang step) are ended, then the server task
    /// is awaited (aborted if it takes more than two seconds).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for MockModelApi {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        tracing::warn!(?encoding, "compressed request body; not supported");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(error_body(
                415,
                "the mock does not accept compressed bodies",
            )),
        )
            .into_response();
    }
    let body = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let reply = plan(&body);
    let recorded = {
        let mut requests = shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.push(RecordedRequest {
            body,
            received_at: SystemTime::now(),
        });
        requests.len()
    };
    shared.recorded.send_replace(recorded);
    match reply {
        Reply::HttpError { status, message } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::debug!(%status, "mock model API: error reply");
            (status, axum::Json(error_body(status.as_u16(), &message))).into_response()
        }
        Reply::Stream(items) => {
            let n = shared.responses.fetch_add(1, Ordering::Relaxed) + 1;
            let response_id = format!("resp_{n}");
            let kinds: Vec<&str> = items.iter().map(Item::kind).collect();
            tracing::debug!(%response_id, ?kinds, "mock model API: streaming");
            let frames = encode(&response_id, &items);
            let body = Body::from_stream(frame_stream(frames, shared.shutdown.clone()));
            (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        }
    }
}

/// The frames as a body stream. Pauses end early (and the stream with them) when the
/// server shuts down; when the client disconnects the body, and so the pause, is dropped.
fn frame_stream(
    frames: Vec<Frame>,
    shutdown: watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures_util::stream::unfold(
        (VecDeque::from(frames), shutdown),
        |(mut frames, mut shutdown)| async move {
            loop {
                match frames.pop_front()? {
                    Frame::Data(bytes) => return Some((Ok(bytes), (frames, shutdown))),
                    Frame::Pause(pause) => {
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            _ = shutdown.wait_for(|stopping| *stopping) => return None,
                        }
                    }
                }
            }
        },
    )
}

async fn unknown(uri: Uri) -> Response {
    tracing::warn!(%uri, "mock model API: unexpected request");
    (
        StatusCode::NOT_FOUND,
        axum::Json(error_body(404, &format!("the mock does not serve {uri}"))),
    )
        .into_response()
}
