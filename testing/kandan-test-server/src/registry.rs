//! Every open socket: its outbound queue, its kill switch and the channels it has joined.
//!
//! The channel table lives here rather than inside each connection task because server-side
//! pushes and broadcasts (from tests, the admin API or other sockets) must find every socket
//! joined to a topic, with that socket's join_ref.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::frame::Frame;
use crate::sync::lock;

/// How long [`Registry::disconnect_all`] waits for a connection task to let go of its socket.
const DISCONNECT_WAIT: Duration = Duration::from_secs(2);

/// Something for a connection task to write to its socket.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(Frame),
    /// Sent verbatim, to test how clients cope with garbage.
    RawText(String),
}

/// A channel joined on one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedChannel {
    /// The join_ref the client sent with `phx_join`: later messages must carry it (or null), and
    /// `phx_close`/`phx_error` for the channel carry it.
    pub join_ref: Option<String>,
    /// The join_ref the channel puts on its replies and pushes. Phoenix's channel process uses
    /// `join_ref || ref`, so a join sent with a null join_ref still gets a usable one.
    pub reply_join_ref: Option<String>,
}

/// What a connection task gets when it registers.
pub(crate) struct Registration {
    pub id: u64,
    pub outbound: mpsc::UnboundedReceiver<Outbound>,
    /// Fires when the server wants the socket dropped without a close frame.
    pub kill: oneshot::Receiver<()>,
    /// Dropped by the connection task once its socket is gone.
    pub finished: oneshot::Sender<()>,
}

struct Connection {
    outbound: mpsc::UnboundedSender<Outbound>,
    kill: oneshot::Sender<()>,
    finished: oneshot::Receiver<()>,
    channels: HashMap<String, JoinedChannel>,
}

pub(crate) struct Registry {
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Connection>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            next_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
        }
    }
}

impl Registry {
    pub(crate) fn register(&self) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
        let (kill_tx, kill_rx) = oneshot::channel();
        let (finished_tx, finished_rx) = oneshot::channel();
        let connection = Connection {
            outbound: outbound_tx,
            kill: kill_tx,
            finished: finished_rx,
            channels: HashMap::new(),
        };
        lock(&self.connections).insert(id, connection);
        Registration {
            id,
            outbound: outbound_rx,
            kill: kill_rx,
            finished: finished_tx,
        }
    }

    /// Forgets a connection and with it every channel it had joined.
    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.connections).len()
    }

    pub(crate) fn channel(&self, id: u64, topic: &str) -> Option<JoinedChannel> {
        lock(&self.connections)
            .get(&id)
            .and_then(|connection| connection.channels.get(topic).cloned())
    }

    pub(crate) fn insert_channel(&self, id: u64, topic: &str, channel: JoinedChannel) {
        if let Some(connection) = lock(&self.connections).get_mut(&id) {
            connection.channels.insert(topic.to_owned(), channel);
        }
    }

    pub(crate) fn remove_channel(&self, id: u64, topic: &str) -> Option<JoinedChannel> {
        lock(&self.connections)
            .get_mut(&id)
            .and_then(|connection| connection.channels.remove(topic))
    }

    /// Pushes to every socket joined to `topic`, each with its own join_ref. Returns how many
    /// sockets it reached.
    pub(crate) fn push_to_topic(&self, topic: &str, event: &str, payload: &Value) -> usize {
        self.send_to_subscribers(topic, |channel| {
            Frame::push(
                channel.reply_join_ref.clone(),
                topic,
                event,
                payload.clone(),
            )
        })
    }

    /// Broadcasts to every socket joined to `topic` (null join_ref and ref).
    pub(crate) fn broadcast(&self, topic: &str, event: &str, payload: &Value) -> usize {
        self.send_to_subscribers(topic, |_| Frame::broadcast(topic, event, payload.clone()))
    }

    fn send_to_subscribers(&self, topic: &str, frame: impl Fn(&JoinedChannel) -> Frame) -> usize {
        let connections = lock(&self.connections);
        connections
            .values()
            .filter_map(|connection| {
                let channel = connection.channels.get(topic)?;
                connection
                    .outbound
                    .send(Outbound::Frame(frame(channel)))
                    .ok()
            })
            .count()
    }

    pub(crate) fn send_raw_text(&self, text: &str) {
        for connection in lock(&self.connections).values() {
            // A closed queue means the connection is already going away.
            let _ = connection.outbound.send(Outbound::RawText(text.to_owned()));
        }
    }

    /// Drops every socket without a close frame and waits until their tasks let go of them.
    /// Returns how many sockets were dropped.
    pub(crate) async fn disconnect_all(&self) -> usize {
        let finished = self.kill_all();
        let count = finished.len();
        for done in finished {
            // Either outcome (sender dropped or timeout) means we stop waiting for this one.
            let _ = tokio::time::timeout(DISCONNECT_WAIT, done).await;
        }
        count
    }

    /// Tells every connection task to drop its socket and forgets the connections; returns
    /// their `finished` signals.
    pub(crate) fn kill_all(&self) -> Vec<oneshot::Receiver<()>> {
        let dropped: Vec<Connection> = lock(&self.connections)
            .drain()
            .map(|(_, connection)| connection)
            .collect();
        dropped
            .into_iter()
            .map(|connection| {
                // An error means the task already ended on its own.
                let _ = connection.kill.send(());
                connection.finished
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn joined(join_ref: &str) -> JoinedChannel {
        JoinedChannel {
            join_ref: Some(join_ref.into()),
            reply_join_ref: Some(join_ref.into()),
        }
    }

    #[test]
    fn pushes_reach_only_joined_sockets_with_their_join_ref() {
        let registry = Registry::default();
        let mut a = registry.register();
        let mut b = registry.register();
        let mut c = registry.register();
        registry.insert_channel(a.id, "room", joined("1"));
        registry.insert_channel(b.id, "room", joined("9"));
        registry.insert_channel(c.id, "elsewhere", joined("1"));

        assert_eq!(registry.push_to_topic("room", "ev", &json!({"n": 1})), 2);
        let Ok(Outbound::Frame(frame)) = a.outbound.try_recv() else {
            panic!("a got nothing")
        };
        assert_eq!(frame.join_ref.as_deref(), Some("1"));
        let Ok(Outbound::Frame(frame)) = b.outbound.try_recv() else {
            panic!("b got nothing")
        };
        assert_eq!(frame.join_ref.as_deref(), Some("9"));
        assert!(c.outbound.try_recv().is_err());

        assert_eq!(registry.broadcast("room", "ev", &json!({})), 2);
        let Ok(Outbound::Frame(frame)) = a.outbound.try_recv() else {
            panic!("a got no broadcast")
        };
        assert_eq!((frame.join_ref, frame.msg_ref), (None, None));
    }

    #[test]
    fn unregistering_forgets_channels() {
        let registry = Registry::default();
        let a = registry.register();
        registry.insert_channel(a.id, "room", joined("1"));
        assert_eq!(registry.channel(a.id, "room"), Some(joined("1")));
        registry.unregister(a.id);
        assert_eq!(registry.channel(a.id, "room"), None);
        assert_eq!(registry.push_to_topic("room", "ev", &json!({})), 0);
        assert_eq!(registry.len(), 0);
    }

    #[tokio::test]
    async fn disconnect_all_kills_and_waits() {
        let registry = Registry::default();
        let a = registry.register();
        let task = tokio::spawn(async move {
            let Registration { kill, finished, .. } = a;
            kill.await.expect("killed");
            drop(finished);
        });
        assert_eq!(registry.disconnect_all().await, 1);
        task.await.expect("task ended");
        assert_eq!(registry.len(), 0);
    }
}
