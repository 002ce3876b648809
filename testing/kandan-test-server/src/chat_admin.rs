//! `/__admin/chat/{workspace}/{channel}/...`: the chat for tests that are not written in Rust
//! and for the demo page — list the channel's messages, post as a person, and follow the
//! channel live as server-sent events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::chat_store::{ChannelKey, ChatError, ChatMessage};
use crate::listener::Stopping;
use crate::server::ServerCore;

/// The SSE event that carries a channel snapshot.
const SNAPSHOT_EVENT: &str = "messages";
/// How soon a browser reconnects after the stream ends (a restart ends it).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new()
        .route(
            "/chat/{workspace}/{channel}/messages",
            get(list_messages).post(post_message),
        )
        .route("/chat/{workspace}/{channel}/stream", get(stream))
}

fn channel_key((workspace, channel): (String, String)) -> ChannelKey {
    ChannelKey { workspace, channel }
}

async fn list_messages(
    State(core): State<Arc<ServerCore>>,
    Path(path): Path<(String, String)>,
) -> Json<Vec<ChatMessage>> {
    Json(core.chat.messages(&channel_key(path)))
}

#[derive(Deserialize)]
struct PostRequest {
    #[serde(default)]
    thread_id: Option<String>,
    user: String,
    body: String,
}

/// `{thread_id?, user, body}` → 201 with the stored message, 404 `{"error":"thread_not_found"}`.
async fn post_message(
    State(core): State<Arc<ServerCore>>,
    Path(path): Path<(String, String)>,
    Json(request): Json<PostRequest>,
) -> Response {
    let problem = if request.user.trim().is_empty() {
        Some("user must not be empty")
    } else if request.body.trim().is_empty() {
        Some("body must not be empty")
    } else {
        None
    };
    if let Some(problem) = problem {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": problem }))).into_response();
    }
    let key = channel_key(path);
    match core.post_user_message(&key, request.thread_id, &request.user, request.body) {
        Ok(message) => (StatusCode::CREATED, Json(message)).into_response(),
        Err(err @ ChatError::ThreadNotFound) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": err.to_string() })),
        )
            .into_response(),
        Err(err) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": err.to_string() })),
        )
            .into_response(),
    }
}

/// Server-sent events: a `messages` event with `{version, messages, typing}` at once, then
/// another after every change to the channel. Ends when the listener stops (the browser's
/// EventSource reconnects after a restart).
async fn stream(
    State(core): State<Arc<ServerCore>>,
    Path(path): Path<(String, String)>,
    Extension(stopping): Extension<Stopping>,
) -> Sse<impl Stream<Item = Result<Event, axum::Error>>> {
    let follow = Follow {
        changes: core.chat.subscribe(),
        core,
        key: channel_key(path),
        stopping,
        sent_version: None,
    };
    Sse::new(futures_util::stream::unfold(follow, Follow::next)).keep_alive(KeepAlive::default())
}

/// The state of one SSE stream.
struct Follow {
    core: Arc<ServerCore>,
    key: ChannelKey,
    changes: watch::Receiver<u64>,
    stopping: Stopping,
    /// The channel version last sent; `None` before the first event.
    sent_version: Option<u64>,
}

impl Follow {
    /// The next snapshot, once the channel differs from the one last sent.
    async fn next(mut self) -> Option<(Result<Event, axum::Error>, Follow)> {
        loop {
            // Marking the value seen before reading means a change in between still wakes us.
            self.changes.borrow_and_update();
            let (messages, typing, version) = self.core.chat.snapshot(&self.key);
            if self.sent_version != Some(version) {
                self.sent_version = Some(version);
                let snapshot =
                    json!({ "version": version, "messages": messages, "typing": typing });
                let event = Event::default()
                    .event(SNAPSHOT_EVENT)
                    .id(version.to_string())
                    .retry(RECONNECT_AFTER)
                    .json_data(snapshot);
                return Some((event, self));
            }
            tokio::select! {
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = self.stopping.wait() => return None,
            }
        }
    }
}
