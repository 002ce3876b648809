//! A Phoenix Channels V2 client with phoenix.js's robustness: heartbeats, reconnect with
//! backoff and jitter, rejoin with a freshly computed payload, pushes that wait out an
//! outage within their timeout, and strict, size-bounded frame decoding.
//!
//! One concept per file, as in phoenix.js: [`frame`] (the wire codec), [`backoff`]
//! (retry schedules), [`channel`] (one joined topic), [`pushes`] (replies awaited),
//! `socket` (the task that owns the connection) and [`client`] (the handle).
pub mod backoff;
pub mod channel;
pub mod client;
pub mod config;
pub mod error;
pub mod frame;
pub mod pushes;
mod socket;

pub use backoff::Backoff;
pub use channel::ChannelMessage;
pub use client::{JoinedChannel, Lifecycle, PhoenixClient};
pub use config::ClientConfig;
pub use error::{ConnectError, JoinError, PushError};
