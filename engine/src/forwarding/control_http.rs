//! `forward_http_request` → `forward:http_response` (protocol §6.2): one bounded request
//! to a local port, its body and the answer's body in base64.
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};

use super::guard::{self, MAX_CONTROL_BODY, Refused};
use super::local_http::LocalHttp;
use super::routes::Routes;
use crate::protocol::controls::ForwardHttpRequest;

pub const RESPONSE_EVENT: &str = "forward:http_response";
/// How long one control-path request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The `forward:http_response` payload for a request.
pub async fn forward(local: &LocalHttp, allowed: &Routes, request: ForwardHttpRequest) -> Value {
    let request_id = request.request_id.clone();
    match exchange(local, allowed, request).await {
        Ok((status, headers, body)) => json!({"requestId": request_id, "ok": true,
            "status": status, "headers": headers, "bodyBase64": BASE64.encode(body)}),
        Err(error) => json!({"requestId": request_id, "ok": false, "error": error}),
    }
}

async fn exchange(
    local: &LocalHttp,
    allowed: &Routes,
    request: ForwardHttpRequest,
) -> Result<(u16, Vec<(String, String)>, Bytes), String> {
    let headers = guard::header_pairs(request.headers.as_ref()).map_err(|e| e.to_string())?;
    let target = guard::admit(
        allowed,
        request.port,
        &request.path,
        request.query_string.as_deref(),
        headers,
    )
    .map_err(|error| error.to_string())?;
    let body = match &request.body_base64 {
        Some(encoded) => {
            // Refuse before decoding: base64 is 4/3 the size of what it carries.
            if encoded.len() / 4 * 3 > MAX_CONTROL_BODY {
                return Err(Refused::BodyTooLarge {
                    size: encoded.len() / 4 * 3,
                    limit: MAX_CONTROL_BODY,
                }
                .to_string());
            }
            Bytes::from(
                BASE64
                    .decode(encoded)
                    .map_err(|error| format!("bad_request: bodyBase64 is not base64: {error}"))?,
            )
        }
        None => Bytes::new(),
    };
    let response = local
        .once(&target, &request.method, body, MAX_CONTROL_BODY, TIMEOUT)
        .await
        .map_err(|error| error.to_string())?;
    Ok((response.status, response.headers, response.body))
}
