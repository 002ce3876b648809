//! `forward_http_request` → `forward:http_response` (protocol §6.2): one bounded request
//! to a local port, its body and the answer's body in base64.
//!
//! Each request holds its body, and later its answer's, until the local server answers
//! or [`TIMEOUT`] passes; a flood of them to a server that never answers would hold them
//! all. [`InFlight`] bounds how many wait at once and how many body bytes they hold, and
//! refuses the rest at once with `busy` [designed].
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::guard::{self, MAX_CONTROL_BODY, Refused};
use super::local_http::LocalHttp;
use super::routes::Routes;
use crate::protocol::controls::ForwardHttpRequest;

pub const RESPONSE_EVENT: &str = "forward:http_response";
/// How long one control-path request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many control-path requests wait for their local servers at once (the
/// tunnel allows 256 streams; the relay 64 sockets).
pub const MAX_IN_FLIGHT: usize = 16;
/// And their request bodies hold at most this much (eight bodies of the largest size).
pub const MAX_IN_FLIGHT_BODY_BYTES: usize = 8 * MAX_CONTROL_BODY;
/// Body bytes are counted in units of this many (semaphore permits are `u32`).
const BODY_UNIT: usize = 1024;

/// The runner's budget for control-path requests under way; cheap to clone.
#[derive(Clone)]
pub struct InFlight {
    requests: Arc<Semaphore>,
    body_units: Arc<Semaphore>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            requests: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            body_units: Arc::new(Semaphore::new(MAX_IN_FLIGHT_BODY_BYTES / BODY_UNIT)),
        }
    }
}

/// A request's share of the budget, given back when it is dropped.
struct Admitted {
    _request: OwnedSemaphorePermit,
    _body: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    /// A place for one more request with a body of `body_bytes`, or `busy` at once.
    fn admit(&self, body_bytes: usize) -> Result<Admitted, Refused> {
        let request = self.requests.clone().try_acquire_owned().map_err(|_| {
            Refused::Busy(format!(
                "{MAX_IN_FLIGHT} forwarded requests are already waiting"
            ))
        })?;
        let units = u32::try_from(body_bytes.div_ceil(BODY_UNIT)).unwrap_or(u32::MAX);
        let body = match units {
            0 => None,
            units => Some(
                self.body_units
                    .clone()
                    .try_acquire_many_owned(units)
                    .map_err(|_| {
                        Refused::Busy(format!(
                            "forwarded requests already hold {} MiB of bodies",
                            MAX_IN_FLIGHT_BODY_BYTES >> 20
                        ))
                    })?,
            ),
        };
        Ok(Admitted {
            _request: request,
            _body: body,
        })
    }
}

/// The `forward:http_response` payload for a request.
pub async fn forward(
    local: &LocalHttp,
    allowed: &Routes,
    in_flight: &InFlight,
    request: ForwardHttpRequest,
) -> Value {
    let request_id = request.request_id.clone();
    match exchange(local, allowed, in_flight, request).await {
        Ok((status, headers, body)) => json!({"requestId": request_id, "ok": true,
            "status": status, "headers": headers, "bodyBase64": BASE64.encode(body)}),
        Err(error) => json!({"requestId": request_id, "ok": false, "error": error}),
    }
}

async fn exchange(
    local: &LocalHttp,
    allowed: &Routes,
    in_flight: &InFlight,
    request: ForwardHttpRequest,
) -> Result<(u16, Vec<(String, String)>, Bytes), String> {
    let mut headers = guard::header_pairs(request.headers.as_ref()).map_err(|e| e.to_string())?;
    // The body is whole here, and hyper gives it its true length; a length Kandan states
    // would make the local server wait for bytes that never come.
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
    let target = guard::admit(
        allowed,
        request.port,
        &request.path,
        request.query_string.as_deref(),
        headers,
    )
    .map_err(|error| error.to_string())?;
    let encoded = request.body_base64.as_deref().unwrap_or_default();
    // Refuse before decoding: base64 is 4/3 the size of what it carries.
    let size = decoded_len(encoded);
    if size > MAX_CONTROL_BODY {
        return Err(Refused::BodyTooLarge {
            size,
            limit: MAX_CONTROL_BODY,
        }
        .to_string());
    }
    let _admitted = in_flight.admit(size).map_err(|error| error.to_string())?;
    let body = Bytes::from(
        BASE64
            .decode(encoded)
            .map_err(|error| format!("bad_request: bodyBase64 is not base64: {error}"))?,
    );
    let response = local
        .once(&target, &request.method, body, MAX_CONTROL_BODY, TIMEOUT)
        .await
        .map_err(|error| error.to_string())?;
    Ok((response.status, response.headers, response.body))
}

/// How many bytes padded base64 `encoded` carries (its `=` padding carries none).
fn decoded_len(encoded: &str) -> usize {
    let padding = encoded
        .bytes()
        .rev()
        .take(2)
        .take_while(|byte| *byte == b'=')
        .count();
    (encoded.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoded_length_counts_no_padding() {
        for size in [
            0,
            1,
            2,
            3,
            4,
            MAX_CONTROL_BODY - 1,
            MAX_CONTROL_BODY,
            MAX_CONTROL_BODY + 1,
        ] {
            let encoded = BASE64.encode(vec![0u8; size]);
            assert_eq!(decoded_len(&encoded), size, "{size}");
        }
    }

    #[test]
    fn requests_past_either_cap_are_busy_and_places_come_back() {
        let in_flight = InFlight::default();
        let held: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| in_flight.admit(0).unwrap())
            .collect();
        let refused = in_flight.admit(0).err().unwrap();
        assert!(
            refused
                .to_string()
                .starts_with("busy: 16 forwarded requests"),
            "{refused}"
        );
        drop(held);
        let big: Vec<_> = (0..8)
            .map(|_| in_flight.admit(MAX_CONTROL_BODY).unwrap())
            .collect();
        let refused = in_flight.admit(1).err().unwrap();
        assert!(
            refused.to_string().contains("32 MiB of bodies"),
            "{refused}"
        );
        assert!(in_flight.admit(0).is_ok(), "a bodiless request still fits");
        drop(big);
        assert!(in_flight.admit(MAX_CONTROL_BODY).is_ok());
    }
}
