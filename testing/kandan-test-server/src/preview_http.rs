//! A preview HTTP request as an http stream of the runner's tunnel (§6.4): `OPEN`, the request
//! body as `DATA` within the runner's window, `END`; then the runner's `HEAD` becomes the
//! response and its `DATA` is streamed to the client as it arrives, granting `WINDOW` only as
//! the client takes it, so a slow client slows the runner and nothing is buffered whole.

use std::io;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;

use crate::preview::{self, PreviewTarget};
use crate::server::ServerCore;
use crate::tunnel::{
    OpenedStream, PROTOCOL_ERROR_CODE, StreamEvent, StreamGuard, StreamReceiver, StreamSender,
};
use crate::tunnel_codec::{Head, StreamKind};

pub(crate) async fn proxy(core: &ServerCore, target: PreviewTarget, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let stream = preview::open_stream(
        core,
        target,
        StreamKind::Http,
        &parts.method,
        &parts.headers,
    );
    let OpenedStream {
        sender,
        mut receiver,
        guard,
    } = match stream {
        Ok(stream) => stream,
        Err(refusal) => return refusal.into_response(),
    };
    // The upload runs beside the wait for HEAD: most servers answer only after the whole body.
    let upload = AbortOnDrop(tokio::spawn(upload(sender, body)));
    let head = match preview::await_head(&mut receiver).await {
        Ok(head) => head,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(status) = final_status(&head) else {
        let problem = format!("HEAD has no valid final status: {:?}", head.status);
        receiver.reset(PROTOCOL_ERROR_CODE, problem.clone());
        return preview::Refusal::bad_gateway(format!(
            "the runner broke the tunnel protocol: {problem}"
        ))
        .into_response();
    };
    let download = Download {
        receiver,
        unacknowledged: 0,
        failed: false,
        _guard: guard,
        _upload: upload,
    };
    let mut response = Response::new(Body::from_stream(download.into_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers(head.headers);
    response
}

/// Sends the client's request body, then `END`. A failing body (the client went away) resets
/// the stream.
async fn upload(mut sender: StreamSender, body: Body) {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(data) => {
                if sender.send_data(data).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                sender.reset("cancelled", format!("the request body failed: {err}"));
                return;
            }
        }
    }
    // An error means the stream was reset meanwhile: nothing is left to say.
    let _ = sender.end();
}

fn final_status(head: &Head) -> Option<StatusCode> {
    head.status
        .and_then(|status| StatusCode::from_u16(status).ok())
        .filter(|status| !status.is_informational())
}

/// The `HEAD`'s headers minus hop-by-hop ones (hyper frames the body itself); invalid ones are
/// skipped with a log line.
fn response_headers(pairs: Vec<(String, String)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in preview::without_hop_by_hop(pairs) {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(%name, %value, "dropping an invalid response header"),
        }
    }
    headers
}

/// The runner's response body on its way to the client.
struct Download {
    receiver: StreamReceiver,
    /// Bytes handed to hyper but not yet granted back to the runner.
    unacknowledged: usize,
    failed: bool,
    /// Resets the stream if the client goes away first.
    _guard: StreamGuard,
    _upload: AbortOnDrop,
}

impl Download {
    /// Each poll first grants the window the previous chunk used: hyper asks for the next chunk
    /// only once it has taken the previous one.
    fn into_stream(self) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
        futures_util::stream::unfold(self, |mut download| async move {
            if download.failed {
                return None;
            }
            if download.unacknowledged > 0 {
                download.receiver.consumed(download.unacknowledged);
                download.unacknowledged = 0;
            }
            let problem = match download.receiver.next().await {
                StreamEvent::Data(data) => {
                    download.unacknowledged = data.len();
                    return Some((Ok(data), download));
                }
                StreamEvent::End(_) => return None,
                StreamEvent::Reset(reset) => {
                    format!(
                        "the runner reset the stream: {}: {}",
                        reset.code, reset.message
                    )
                }
                StreamEvent::Violation(problem) => {
                    format!("the runner broke the tunnel protocol: {problem}")
                }
                StreamEvent::TunnelGone => "the runner's tunnel dropped".to_owned(),
                StreamEvent::Head(_) => "a second HEAD".to_owned(),
            };
            // The error makes hyper abort the response: the client sees a truncated body.
            download.failed = true;
            Some((Err(io::Error::other(problem)), download))
        })
    }
}

/// Aborts a task when dropped (the upload, once the response is over or abandoned).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn hop_by_hop_response_headers_are_dropped() {
        let headers = response_headers(pairs(&[
            ("Content-Type", "text/plain"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive, X-Hop"),
            ("x-hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("TE", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "h2c"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("bad name", "x"),
            ("x-bad-value", "a\nb"),
        ]));
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, vec!["content-type", "set-cookie"]);
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn only_final_statuses_are_accepted() {
        let head = |status| Head {
            status,
            ..Head::default()
        };
        assert_eq!(final_status(&head(Some(204))), Some(StatusCode::NO_CONTENT));
        assert_eq!(final_status(&head(Some(101))), None);
        assert_eq!(final_status(&head(Some(1000))), None);
        assert_eq!(final_status(&head(None)), None);
    }
}
