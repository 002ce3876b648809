//! WebSockets to local servers, shared by the control-path relay and the tunnel.
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::guard::LocalTarget;
use super::local_stream::{self, LocalStream};
use super::tunnel::frame::MAX_MESSAGE;

pub type LocalSocket = tokio_tungstenite::WebSocketStream<LocalStream>;

/// Opens a WebSocket to the local server of `target`, with its (guarded) headers; returns
/// the socket and the subprotocol the server chose.
pub async fn connect(target: &LocalTarget) -> Result<(LocalSocket, Option<String>), String> {
    let url = format!("ws://{}{}", target.authority(), target.path_and_query);
    let mut request = url
        .into_client_request()
        .map_err(|error| error.to_string())?;
    for (name, value) in &target.headers {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        // tungstenite writes its own handshake headers.
        if !matches!(
            name.as_str(),
            "sec-websocket-key" | "sec-websocket-version" | "sec-websocket-extensions"
        ) {
            request.headers_mut().insert(name, value);
        }
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let stream = local_stream::connect(target)
        .await
        .map_err(|error| error.to_string())?;
    let (socket, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|error| error.to_string())?;
    let protocol = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Ok((socket, protocol))
}

/// The close frame to send for a code and reason that came from the other side, or none
/// when the code may not appear on the wire (1005 "no status", 1006, 1015, out of range).
pub fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    sendable.then(|| CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_allowed_on_the_wire_make_close_frames() {
        assert_eq!(
            close_frame(4001, "bye").map(|f| (u16::from(f.code), f.reason.to_string())),
            Some((4001, "bye".into()))
        );
        assert!(close_frame(1000, "").is_some());
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(close_frame(reserved, "x").is_none(), "{reserved}");
        }
    }
}
