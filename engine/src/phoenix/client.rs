//! The handle the rest of the engine uses: join, push, leave, close, and watch the
//! connection's lifecycle. All state lives in the socket task; this only sends it
//! commands.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::channel::{ChannelMessage, PayloadFn};
use super::config::ClientConfig;
use super::error::{ConnectError, JoinError, PushError};
use super::socket::{Command, SocketTask};

/// Connection lifecycle, for whoever needs to react to outages (re-bind a chat session,
/// show "offline" in the tray, push a heartbeat after a reconnect).
#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    Connected {
        generation: u64,
    },
    Disconnected {
        reason: String,
    },
    ChannelRejoined {
        topic: String,
    },
    ChannelErrored {
        topic: String,
        reason: String,
    },
    /// After a reconnect, every joined channel has been rejoined or has failed to be;
    /// the moment phoenix.js-style `onReconnect` callbacks run.
    Reconnected {
        generation: u64,
    },
    /// A reconnect was refused because of the token (HTTP 401/403). The client does not
    /// retry with a token Kandan no longer accepts: it closes right after this event.
    Unauthorized {
        reason: String,
    },
    Closed,
}

/// A joined topic: the server's join response and its server-initiated messages.
#[derive(Debug)]
pub struct JoinedChannel {
    pub response: Value,
    pub messages: mpsc::UnboundedReceiver<ChannelMessage>,
}

#[derive(Clone)]
pub struct PhoenixClient {
    commands: mpsc::UnboundedSender<Command>,
    lifecycle: broadcast::Sender<Lifecycle>,
    push_timeout: Duration,
}

impl PhoenixClient {
    /// Opens the socket and returns once it is connected; a first failure is returned as
    /// is (a wrong URL or token should be reported, not retried forever). Later outages
    /// are handled inside: reconnect with backoff, rejoin, replay; except a reconnect
    /// refused for the token, which ends the client ([`Lifecycle::Unauthorized`]).
    pub async fn connect(config: ClientConfig) -> Result<PhoenixClient, ConnectError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (lifecycle, _) = broadcast::channel(256);
        let push_timeout = config.push_timeout;
        let (first_tx, first_rx) = oneshot::channel();
        let task = SocketTask::new(config, receiver, lifecycle.clone(), first_tx)?;
        tokio::spawn(task.run());
        match first_rx.await {
            Ok(Ok(())) => Ok(PhoenixClient {
                commands,
                lifecycle,
                push_timeout,
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ConnectError::Unreachable {
                url: String::new(),
                reason: "the socket task stopped".into(),
            }),
        }
    }

    /// Joins `topic`, computing the payload now and again on every rejoin.
    pub async fn join(
        &self,
        topic: impl Into<String>,
        payload: impl Fn() -> Value + Send + Sync + 'static,
    ) -> Result<JoinedChannel, JoinError> {
        self.join_with_timeout(topic, payload, self.push_timeout)
            .await
    }

    pub async fn join_with_timeout(
        &self,
        topic: impl Into<String>,
        payload: impl Fn() -> Value + Send + Sync + 'static,
        timeout: Duration,
    ) -> Result<JoinedChannel, JoinError> {
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        let payload: PayloadFn = Arc::new(payload);
        self.send(Command::Join {
            topic: topic.into(),
            payload,
            timeout,
            messages: messages_tx,
            reply,
        })
        .map_err(|()| JoinError::Closed)?;
        let response = answer.await.map_err(|_| JoinError::Closed)??;
        Ok(JoinedChannel { response, messages })
    }

    /// Pushes `event` to a joined topic and waits for the reply's response. While the
    /// socket is down the push waits for the reconnect, within the same timeout.
    pub async fn push(&self, topic: &str, event: &str, payload: Value) -> Result<Value, PushError> {
        self.push_with_timeout(topic, event, payload, self.push_timeout)
            .await
    }

    pub async fn push_with_timeout(
        &self,
        topic: &str,
        event: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, PushError> {
        self.enqueue_push(topic, event, payload, timeout).await
    }

    /// Queues the push at once, so pushes reach Kandan in the order this is called, and
    /// returns the future of its reply (which need not be awaited before the next push).
    pub fn enqueue_push(
        &self,
        topic: &str,
        event: &str,
        payload: Value,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, PushError>> + Send + 'static {
        let queued = self.queue_push(topic, event, payload, timeout);
        async move { queued?.await.map_err(|_| PushError::Closed)? }
    }

    fn queue_push(
        &self,
        topic: &str,
        event: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<oneshot::Receiver<Result<Value, PushError>>, PushError> {
        if !payload.is_object() {
            return Err(PushError::PayloadNotObject {
                topic: topic.into(),
                event: event.into(),
            });
        }
        let payload =
            serde_json::value::to_raw_value(&payload).map_err(|_| PushError::PayloadNotObject {
                topic: topic.into(),
                event: event.into(),
            })?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Push {
            topic: topic.into(),
            event: event.into(),
            payload,
            timeout,
            reply,
        })
        .map_err(|()| PushError::Closed)?;
        Ok(answer)
    }

    /// The timeout pushes get unless they say otherwise.
    pub fn push_timeout(&self) -> Duration {
        self.push_timeout
    }

    /// Leaves `topic`: no more rejoins, buffered pushes fail with [`PushError::Left`].
    pub async fn leave(&self, topic: &str) {
        let (reply, done) = oneshot::channel();
        if self
            .send(Command::Leave {
                topic: topic.into(),
                reply,
            })
            .is_ok()
        {
            let _ = done.await;
        }
    }

    pub fn lifecycle(&self) -> broadcast::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }

    /// Closes the socket; every waiting push and join fails with `Closed`.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Close { reply }).is_ok() {
            let _ = done.await;
        }
    }

    fn send(&self, command: Command) -> Result<(), ()> {
        self.commands.send(command).map_err(|_| ())
    }
}
