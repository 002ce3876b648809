//! The TCP accept loop: serves HTTP/1.1 (with WebSocket upgrades) until told to stop, then
//! closes the listening socket at once — so a restart can reopen the same port — and lets
//! in-flight HTTP requests finish.
//!
//! This is hand-rolled on hyper rather than `axum::serve` because a restart must know when the
//! port is free and must also end keep-alive HTTP connections, which `axum::serve` keeps alive.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long stopped HTTP connections get to finish the request they are serving.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A running accept loop.
pub(crate) struct RunningListener {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds a listening socket (tokio sets `SO_REUSEADDR` on Unix, so a restart can rebind the
/// port while old connections linger in `TIME_WAIT`).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Starts serving `router` on `listener`. Handlers can extract [`Stopping`] to learn when
/// this listener stops.
pub(crate) fn spawn(listener: TcpListener, router: Router) -> RunningListener {
    let (stop, stopped) = watch::channel(false);
    let router = router.layer(axum::Extension(Stopping(stopped.clone())));
    let task = tokio::spawn(accept_loop(listener, router, stopped));
    RunningListener { stop, task }
}

/// The stop signal of the listener serving a request. Long-lived responses (server-sent events)
/// end on it: a stopping listener waits for its responses to finish, so an endless one would
/// hold up a restart until the drain timeout.
#[derive(Clone)]
pub(crate) struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the listener stops (at once if it already has).
    pub(crate) async fn wait(&mut self) {
        stop_requested(&mut self.0).await;
    }
}

impl RunningListener {
    /// Closes the listening socket and waits (bounded) for HTTP connections to drain.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(err) = self.task.await {
            tracing::warn!(%err, "accept loop ended abnormally");
        }
    }

    /// Stops at once without waiting, for use from `Drop`.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, router: Router, mut stopped: watch::Receiver<bool>) {
    let stop_signal = stopped.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop_requested(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // As Phoenix's Cowboy does: small frames (tunnel HEAD, END, WINDOW) must
                    // not wait for the peer's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_http(stream, router.clone(), stop_signal.clone()));
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::debug!("aborting HTTP connections that did not drain");
    }
    // Dropping the set aborts whatever is left.
}

/// Serves one HTTP connection until it ends, or until the server stops (then gracefully: the
/// current request is answered, the connection is not kept alive).
async fn serve_http(stream: TcpStream, router: Router, mut stopped: watch::Receiver<bool>) {
    let service = TowerToHyperService::new(router);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop_requested(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "HTTP connection ended with an error");
    }
}

/// Resolves once the server stops (or its stop switch is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped, which also means "stop".
    let _ = stopped.wait_for(|stopped| *stopped).await;
}
