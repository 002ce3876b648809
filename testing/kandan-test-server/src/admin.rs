//! `/__admin/...`: the test-control API for tests that are not written in Rust and for the
//! local demo. Each route mirrors a `KandanTestServer` method.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::chat_admin;
use crate::faults::{Fault, FaultSpec};
use crate::recorder::RecordedEvent;
use crate::server::ServerCore;
use crate::tokens::TokenScope;

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new()
        .route("/drop-connections", post(drop_connections))
        .route("/drop-tunnels", post(drop_tunnels))
        .route("/restart", post(restart))
        .route("/topics/{topic}/push", post(push))
        .route("/topics/{topic}/broadcast", post(broadcast))
        .route("/events", axum::routing::get(events))
        .route("/tokens", post(issue_token))
        .route("/faults", post(set_fault).delete(clear_faults))
        .merge(chat_admin::routes())
}

/// Sockets and forward tunnels; `dropped` counts both.
async fn drop_connections(State(core): State<Arc<ServerCore>>) -> Json<Value> {
    let dropped = core.disconnect_all().await;
    Json(json!({ "dropped": dropped }))
}

async fn drop_tunnels(State(core): State<Arc<ServerCore>>) -> Json<Value> {
    let dropped = core.tunnels.disconnect_all().await;
    Json(json!({ "dropped": dropped }))
}

#[derive(Deserialize)]
struct RestartQuery {
    #[serde(default)]
    downtime_ms: u64,
}

/// Answers first and restarts in the background: the restart ends this very HTTP connection.
async fn restart(
    State(core): State<Arc<ServerCore>>,
    Query(query): Query<RestartQuery>,
) -> StatusCode {
    let downtime = Duration::from_millis(query.downtime_ms);
    tokio::spawn(async move { core.restart(downtime).await });
    StatusCode::ACCEPTED
}

#[derive(Deserialize)]
struct EventRequest {
    event: String,
    #[serde(default = "empty_object")]
    payload: Value,
}

fn empty_object() -> Value {
    json!({})
}

async fn push(
    State(core): State<Arc<ServerCore>>,
    Path(topic): Path<String>,
    Json(request): Json<EventRequest>,
) -> Response {
    match core
        .registry
        .push_to_topic(&topic, &request.event, &request.payload)
    {
        0 => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no socket has joined {topic}") })),
        )
            .into_response(),
        delivered => Json(json!({ "delivered": delivered })).into_response(),
    }
}

async fn broadcast(
    State(core): State<Arc<ServerCore>>,
    Path(topic): Path<String>,
    Json(request): Json<EventRequest>,
) -> Json<Value> {
    let delivered = core
        .registry
        .broadcast(&topic, &request.event, &request.payload);
    Json(json!({ "delivered": delivered }))
}

#[derive(Deserialize)]
struct EventsQuery {
    topic: Option<String>,
}

/// A recorded event as JSON (`received_at_ms`: milliseconds since the Unix epoch).
#[derive(Serialize)]
struct EventView {
    topic: String,
    event: String,
    payload: Value,
    join_ref: Option<String>,
    #[serde(rename = "ref")]
    msg_ref: Option<String>,
    connection_id: u64,
    received_at_ms: u128,
}

impl From<RecordedEvent> for EventView {
    fn from(event: RecordedEvent) -> EventView {
        EventView {
            received_at_ms: event
                .received_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis()),
            topic: event.topic,
            event: event.event,
            payload: event.payload,
            join_ref: event.join_ref,
            msg_ref: event.msg_ref,
            connection_id: event.connection_id,
        }
    }
}

async fn events(
    State(core): State<Arc<ServerCore>>,
    Query(query): Query<EventsQuery>,
) -> Json<Vec<EventView>> {
    let events = core
        .recorder
        .events()
        .into_iter()
        .filter(|event| {
            query
                .topic
                .as_ref()
                .is_none_or(|topic| *topic == event.topic)
        })
        .map(EventView::from)
        .collect();
    Json(events)
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    workspace: Option<String>,
    channel: Option<String>,
}

async fn issue_token(
    State(core): State<Arc<ServerCore>>,
    Json(request): Json<TokenRequest>,
) -> Response {
    let scope = match (request.workspace, request.channel) {
        (Some(workspace), Some(channel)) => Some(TokenScope { workspace, channel }),
        (None, None) => None,
        _ => {
            let error = "workspace and channel must be given together";
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
        }
    };
    let user = core.users.find_or_create(&request.user);
    let token = core.tokens.issue(&user, scope);
    Json(json!({ "token": token })).into_response()
}

async fn set_fault(State(core): State<Arc<ServerCore>>, Json(spec): Json<FaultSpec>) -> StatusCode {
    core.faults.set(Fault::from(spec));
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(core): State<Arc<ServerCore>>) -> StatusCode {
    core.faults.clear();
    StatusCode::NO_CONTENT
}
