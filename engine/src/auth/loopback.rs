//! The loopback HTTP server the browser is sent back to at the end of the OAuth flow
//! (seed `startCallbackServer`): it listens on `<callback host>:<free port>`, serves
//! `GET /callback?code&state`, and hands the first accepted code to whoever waits.
//!
//! Every callback is checked by the [`PendingAuthorization`] it owns: a forged or repeated
//! callback gets a 400 page and the wait goes on, so a stray request on the network cannot
//! end (or hijack) the person's sign-in. Dropping the server stops it listening at once;
//! a page already being answered is still delivered.
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::pending::{AuthorizationCode, CallbackError, CallbackParams, PendingAuthorization};

/// The path of the redirect URI.
pub const CALLBACK_PATH: &str = "/callback";
/// The page the browser shows once the code is received.
pub const SUCCESS_PAGE: &str = "Kandan local Codex runner authorized. You can close this tab.";
/// The answer to a callback without a code.
pub const MISSING_CODE_PAGE: &str = "Missing local runner authorization code.";
/// How long a stopped server still lets open connections finish their answer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error(
        "could not listen for the OAuth callback on {host}: {reason}; pass \
         --oauth-callback-host with an address of this computer that your browser can reach"
    )]
    Bind { host: String, reason: String },
    #[error("the OAuth callback server stopped before the browser came back")]
    Stopped,
    #[error(transparent)]
    Callback(#[from] CallbackError),
}

/// What a completed callback delivers to the waiter.
type Outcome = Result<AuthorizationCode, CallbackError>;

/// A running callback server. Drop it to stop listening.
pub struct LoopbackCallbackServer {
    pending: Arc<PendingAuthorization>,
    local_addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// Dropping it (with the server) stops the serving task.
    _shutdown: oneshot::Sender<()>,
}

impl LoopbackCallbackServer {
    /// Listens on `host` (a name or an IP address, IPv6 with or without brackets) on a free
    /// port, with a new [`PendingAuthorization`] for `http://<host>:<port>/callback`.
    pub async fn start(host: &str) -> Result<LoopbackCallbackServer, LoopbackError> {
        let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
        let bind_error = |reason: String| LoopbackError::Bind {
            host: host.to_owned(),
            reason,
        };
        let listener = TcpListener::bind((bare, 0))
            .await
            .map_err(|error| bind_error(error.to_string()))?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| bind_error(error.to_string()))?;
        let url_host = match bare.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => bare.to_owned(),
        };
        let redirect_uri = format!(
            "http://{url_host}:{port}{CALLBACK_PATH}",
            port = local_addr.port()
        );
        let pending = Arc::new(PendingAuthorization::new(redirect_uri));
        let (sender, outcomes) = mpsc::unbounded_channel();
        let (shutdown, stop) = oneshot::channel();
        tokio::spawn(serve(listener, Arc::clone(&pending), sender, stop));
        tracing::debug!(%local_addr, "OAuth callback server listening");
        Ok(LoopbackCallbackServer {
            pending,
            local_addr,
            outcomes,
            _shutdown: shutdown,
        })
    }

    /// The authorization this server completes (its state and redirect URI).
    pub fn pending(&self) -> &PendingAuthorization {
        &self.pending
    }

    pub fn redirect_uri(&self) -> &str {
        self.pending.redirect_uri()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the callback that completes the authorization: its code, or Kandan's
    /// refusal. Forged, incomplete and repeated callbacks are answered and skipped.
    pub async fn wait(&mut self) -> Result<AuthorizationCode, LoopbackError> {
        match self.outcomes.recv().await {
            Some(outcome) => Ok(outcome?),
            None => Err(LoopbackError::Stopped),
        }
    }
}

impl std::fmt::Debug for LoopbackCallbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackCallbackServer")
            .field("local_addr", &self.local_addr)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

async fn serve(
    listener: TcpListener,
    pending: Arc<PendingAuthorization>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        // Per-connection failures (e.g. too many open files) are transient.
                        tracing::warn!(%error, "OAuth callback server could not accept");
                        continue;
                    }
                };
                let pending = Arc::clone(&pending);
                let outcomes = outcomes.clone();
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&request, &pending, &outcomes);
                    async move { Ok::<_, Infallible>(response) }
                });
                connections.spawn(async move {
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(error) = served {
                        tracing::debug!(%error, "OAuth callback connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Stop listening at once, but let the browser receive the page it is being sent.
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::debug!("closing OAuth callback connections still open after the grace period");
    }
}

fn respond(
    request: &Request<Incoming>,
    pending: &PendingAuthorization,
    outcomes: &mpsc::UnboundedSender<Outcome>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != CALLBACK_PATH {
        return text(StatusCode::NOT_FOUND, "Not found.");
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.");
    }
    let params = CallbackParams::from_query(request.uri().query().unwrap_or(""));
    match pending.complete(&params) {
        Ok(code) => {
            // The waiter may have given up (timeout); the page is still the truth for the browser.
            let _ = outcomes.send(Ok(code));
            text(StatusCode::OK, SUCCESS_PAGE)
        }
        Err(CallbackError::MissingCode) => text(StatusCode::BAD_REQUEST, MISSING_CODE_PAGE),
        Err(CallbackError::StateMismatch) => {
            tracing::warn!("refused an OAuth callback with the wrong state");
            text(
                StatusCode::BAD_REQUEST,
                "Local runner OAuth state mismatch: this link does not belong to the \
                 authorization in progress.",
            )
        }
        Err(CallbackError::AlreadyCompleted) => text(
            StatusCode::BAD_REQUEST,
            "This local runner authorization was already completed.",
        ),
        Err(denied @ CallbackError::Denied(_)) => {
            let page = format!("{denied}.");
            let _ = outcomes.send(Err(denied));
            text(StatusCode::BAD_REQUEST, &page)
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The callback URL holds the code; keep it out of any Referer.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}
