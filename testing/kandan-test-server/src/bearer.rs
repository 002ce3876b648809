//! `Authorization: Bearer <token>` for the runner's HTTP API: an extractor that yields the
//! token's grant or rejects the request with 401.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::ServerCore;
use crate::tokens::Grant;

/// Extracts the grant of the request's `Authorization: Bearer` token; rejects with 401.
pub(crate) struct Bearer(pub(crate) Grant);

impl FromRequestParts<Arc<ServerCore>> for Bearer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        core: &Arc<ServerCore>,
    ) -> Result<Bearer, Response> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let result = match token {
            Some(token) => core.tokens.verify(token).map_err(|err| err.to_string()),
            None => Err("missing bearer token".to_owned()),
        };
        result.map(Bearer).map_err(|problem| {
            let body = json!({ "ok": false, "error": problem });
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(body),
            )
                .into_response()
        })
    }
}
