//! Forwarding Kandan's requests to local dev servers (protocol §6): where each allowed
//! port is dialled ([`routes`]), the [`guard`] every request passes, the connection to
//! it ([`local_stream`]), the local HTTP client ([`local_http`]) and WebSockets
//! ([`local_ws`]), the one-request control path ([`control_http`], [`websocket_relay`]),
//! and the streaming [`tunnel`].
pub mod control_http;
pub mod guard;
pub mod local_http;
pub mod local_stream;
pub mod local_ws;
pub mod routes;
pub mod tunnel;
pub mod websocket_relay;
