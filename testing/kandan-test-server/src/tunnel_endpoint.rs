//! `GET /api/v2/local-codex-runner/forward-tunnel?runner_id=<id>`: the runner's forward tunnel
//! (protocol §6.4). Checks the bearer token (401), that the token's user owns the runner id
//! (403) and that the client speaks `linzumi-forward-tunnel.v1`, then hands the socket to
//! [`tunnel_connection`](crate::tunnel_connection) as the runner's live tunnel.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::bearer::Bearer;
use crate::server::ServerCore;
use crate::tunnel::Tunnel;
use crate::tunnel_codec::MAX_TUNNEL_MESSAGE;
use crate::tunnel_connection;

pub(crate) const TUNNEL_PATH: &str = "/api/v2/local-codex-runner/forward-tunnel";
pub(crate) const SUBPROTOCOL: &str = "linzumi-forward-tunnel.v1";

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new().route(TUNNEL_PATH, get(upgrade))
}

#[derive(Deserialize)]
struct TunnelQuery {
    runner_id: Option<String>,
}

async fn upgrade(
    State(core): State<Arc<ServerCore>>,
    Bearer(grant): Bearer,
    Query(query): Query<TunnelQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(runner_id) = query.runner_id.filter(|id| !id.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "runner_id is required\n").into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let speaks_v1 = upgrade
        .requested_protocols()
        .any(|protocol| protocol.as_bytes() == SUBPROTOCOL.as_bytes());
    if !speaks_v1 {
        let message = format!("the forward tunnel needs the WebSocket subprotocol {SUBPROTOCOL}\n");
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    if let Err(owner) = core.runner_owners.claim(&runner_id, grant.user.id) {
        tracing::warn!(%runner_id, user = %grant.user.slug, owner, "tunnel refused: not the owner");
        let message = format!("runner {runner_id:?} belongs to another user\n");
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    upgrade
        .protocols([SUBPROTOCOL])
        // §6.4's cap, well above any valid frame: a frame too big for its type is reset as a
        // frame; only a message over the cap ends the tunnel.
        .max_message_size(MAX_TUNNEL_MESSAGE)
        .on_upgrade(move |socket| {
            let (tunnel, queue) = Tunnel::new(&runner_id);
            core.tunnels.attach(Arc::clone(&tunnel));
            tunnel_connection::run(core, socket, tunnel, queue)
        })
}
