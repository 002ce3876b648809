//! The `/socket/websocket` endpoint: negotiates the serializer version, authenticates the token
//! and hands the upgraded socket to the connection loop — refusing the upgrade with the HTTP
//! status Phoenix uses when it would.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use crate::connection;
use crate::server::ServerCore;

/// The only serializer version served (Phoenix.Socket.V2.JSONSerializer).
const SUPPORTED_VSN: &str = "2.0.0";
/// What Phoenix assumes when the client sends no `vsn`.
const DEFAULT_VSN: &str = "1.0.0";
/// Subprotocol prefix phoenix.js uses for its `authToken` option.
const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";
/// The subprotocol the server selects when phoenix.js offers one (it always offers "phoenix").
const PHOENIX_SUBPROTOCOL: &str = "phoenix";

pub(crate) fn routes() -> Router<Arc<ServerCore>> {
    Router::new().route("/socket/websocket", get(upgrade))
}

async fn upgrade(
    State(core): State<Arc<ServerCore>>,
    Query(params): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let vsn = params.get("vsn").map_or(DEFAULT_VSN, String::as_str);
    if vsn != SUPPORTED_VSN {
        let message = format!(
            "unsupported serializer vsn {vsn:?}: this server speaks only Phoenix Channels V2 \
             (vsn=2.0.0); the V1 serializer is not supported\n"
        );
        return (StatusCode::BAD_REQUEST, message).into_response();
    }

    let token = params
        .get("token")
        .cloned()
        .or_else(|| token_from_subprotocols(upgrade.requested_protocols()));
    let grant = match token.as_deref().map(|token| core.tokens.verify(token)) {
        Some(Ok(grant)) => grant,
        // Phoenix answers 403 whenever the socket's connect/3 returns :error.
        Some(Err(err)) => return (StatusCode::FORBIDDEN, format!("{err}\n")).into_response(),
        None => return (StatusCode::FORBIDDEN, "missing token\n").into_response(),
    };

    upgrade
        .protocols([PHOENIX_SUBPROTOCOL])
        .on_upgrade(move |socket| connection::run(core, socket, grant))
}

/// phoenix.js's `authToken` travels as the subprotocol `base64url.bearer.phx.<encoded>`.
/// Despite the name, phoenix.js encodes with `btoa` (standard alphabet, `=` stripped) and
/// Phoenix decodes the same way; the URL-safe alphabet is accepted too.
fn token_from_subprotocols<'a>(protocols: impl Iterator<Item = &'a HeaderValue>) -> Option<String> {
    let encoded = protocols
        .filter_map(|protocol| protocol.to_str().ok())
        .find_map(|protocol| protocol.trim().strip_prefix(AUTH_TOKEN_PREFIX))?;
    let bytes = STANDARD_NO_PAD
        .decode(encoded)
        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded))
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_phoenix_js_auth_token_subprotocol() {
        let offered = [
            HeaderValue::from_static("phoenix"),
            HeaderValue::from_static("base64url.bearer.phx.YS5iLmM"),
        ];
        assert_eq!(
            token_from_subprotocols(offered.iter()),
            Some("a.b.c".into())
        );
        assert_eq!(token_from_subprotocols(offered[..1].iter()), None);
        // btoa's alphabet ("???" → "Pz8/") and the URL-safe one ("???" → "Pz8_").
        for encoded in ["Pz8/", "Pz8_"] {
            let protocol = HeaderValue::from_str(&format!("{AUTH_TOKEN_PREFIX}{encoded}"))
                .expect("header value");
            assert_eq!(
                token_from_subprotocols([protocol].iter()),
                Some("???".into())
            );
        }
    }
}
