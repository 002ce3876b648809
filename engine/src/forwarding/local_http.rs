//! Requests to the local dev server, through a pooled HTTP/1.1 client (hyper), or to a
//! private Unix socket (the editor) over a connection of their own. Used streaming by the
//! tunnel, and bounded (body size and time) by the one-request control path
//! (`forward_http_request`).
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::guard::{LocalTarget, connection_tokens, is_hop_by_hop};
use super::routes::Endpoint;

pub type RequestBody = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    #[error("connect_failed: nothing answered on 127.0.0.1:{port}: {reason}")]
    ConnectFailed { port: u16, reason: String },
    #[error("upstream_error: {0}")]
    Upstream(String),
    #[error("timeout: the local server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("body_too_large: the response is over the {0}-byte limit")]
    ResponseTooLarge(usize),
    #[error("bad_request: {0}")]
    BadRequest(String),
}

impl LocalError {
    pub fn code(&self) -> &'static str {
        match self {
            LocalError::ConnectFailed { .. } => "connect_failed",
            LocalError::Upstream(_) => "upstream_error",
            LocalError::Timeout(_) => "timeout",
            LocalError::ResponseTooLarge(_) => "body_too_large",
            LocalError::BadRequest(_) => "bad_open",
        }
    }
}

/// A whole response, read within limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct LocalHttp {
    client: Client<HttpConnector, RequestBody>,
}

impl Default for LocalHttp {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        LocalHttp { client }
    }
}

impl LocalHttp {
    /// Sends a request and returns the response as it starts (its body streams).
    pub async fn send(
        &self,
        target: &LocalTarget,
        method: &str,
        body: RequestBody,
    ) -> Result<hyper::Response<Incoming>, LocalError> {
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| LocalError::BadRequest(format!("{method:?} is not an HTTP method")))?;
        // On a connection of its own the request line is origin-form (Host is a header).
        let uri = match target.endpoint {
            Endpoint::Loopback | Endpoint::LoopbackWithCookie(_) => {
                format!("http://{}{}", target.authority(), target.path_and_query)
            }
            #[cfg(unix)]
            Endpoint::UnixSocket(_) => target.path_and_query.clone(),
        };
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in &target.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|error| LocalError::BadRequest(error.to_string()))?;
        match &target.endpoint {
            Endpoint::Loopback | Endpoint::LoopbackWithCookie(_) => {
                self.client.request(request).await.map_err(|error| {
                    if error.is_connect() {
                        LocalError::ConnectFailed {
                            port: target.port,
                            reason: source_message(&error),
                        }
                    } else {
                        LocalError::Upstream(source_message(&error))
                    }
                })
            }
            #[cfg(unix)]
            Endpoint::UnixSocket(_) => send_on_own_connection(target, request).await,
        }
    }

    /// One request with its whole body in memory (the control path), within `limit`
    /// bytes and `timeout`.
    pub async fn once(
        &self,
        target: &LocalTarget,
        method: &str,
        body: Bytes,
        limit: usize,
        timeout: Duration,
    ) -> Result<BufferedResponse, LocalError> {
        let exchange = async {
            let body = Full::new(body).map_err(|never| match never {}).boxed();
            let response = self.send(target, method, body).await?;
            let status = response.status().as_u16();
            let headers = response_headers(response.headers());
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        LocalError::ResponseTooLarge(limit)
                    } else {
                        LocalError::Upstream(error.to_string())
                    }
                })?
                .to_bytes();
            Ok(BufferedResponse {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(LocalError::Timeout(timeout)))
    }
}

/// Sends one request over a new connection to the target's endpoint. Only the editor is
/// reached this way; a Unix socket connects in microseconds, so nothing is pooled.
#[cfg(unix)]
async fn send_on_own_connection(
    target: &LocalTarget,
    request: http::Request<RequestBody>,
) -> Result<hyper::Response<Incoming>, LocalError> {
    let stream = super::local_stream::connect(target)
        .await
        .map_err(|error| LocalError::ConnectFailed {
            port: target.port,
            reason: error.to_string(),
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|error| LocalError::Upstream(source_message(&error)))?;
    // Drives the connection until the response body is read (or dropped).
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|error| LocalError::Upstream(source_message(&error)))
}

/// A response's headers as pairs, without hop-by-hop ones.
pub fn response_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let listed = connection_tokens(&pairs);
    pairs
        .into_iter()
        .filter(|(name, _)| !is_hop_by_hop(name, &listed))
        .collect()
}

fn source_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}
