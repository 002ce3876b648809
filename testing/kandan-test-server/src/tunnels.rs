//! The live forward tunnels, one per runner id (a newer tunnel replaces the older one), with
//! how many times each runner opened one and a change signal so tests can wait for a tunnel
//! without polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::sync::lock;
use crate::tunnel::{Stop, Tunnel};

/// How long [`Tunnels::disconnect_all`] waits for a connection task to let go of its socket.
const DISCONNECT_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct Tunnels {
    state: Mutex<State>,
    /// Bumped on every attach and detach.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    live: HashMap<String, Arc<Tunnel>>,
    opened: HashMap<String, usize>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
        }
    }
}

impl Tunnels {
    /// Makes `tunnel` its runner's live tunnel, replacing (and closing) any older one.
    pub(crate) fn attach(&self, tunnel: Arc<Tunnel>) {
        let replaced = {
            let mut state = lock(&self.state);
            *state.opened.entry(tunnel.runner_id.clone()).or_default() += 1;
            state.live.insert(tunnel.runner_id.clone(), tunnel)
        };
        if let Some(old) = replaced {
            tracing::info!(runner_id = %old.runner_id, "a newer tunnel replaces the old one");
            old.stop(Stop::Replaced);
        }
        self.bump();
    }

    /// Forgets `tunnel` unless a newer one has replaced it already.
    pub(crate) fn detach(&self, tunnel: &Arc<Tunnel>) {
        {
            let mut state = lock(&self.state);
            if state
                .live
                .get(&tunnel.runner_id)
                .is_some_and(|live| Arc::ptr_eq(live, tunnel))
            {
                state.live.remove(&tunnel.runner_id);
            }
        }
        self.bump();
    }

    /// The runner's live tunnel. Host names are case-insensitive, so a runner id that came from
    /// a preview host matches whatever case the runner used.
    pub(crate) fn get(&self, runner_id: &str) -> Option<Arc<Tunnel>> {
        let state = lock(&self.state);
        state.live.get(runner_id).cloned().or_else(|| {
            state
                .live
                .iter()
                .find(|(id, _)| id.eq_ignore_ascii_case(runner_id))
                .map(|(_, tunnel)| Arc::clone(tunnel))
        })
    }

    pub(crate) fn is_connected(&self, runner_id: &str) -> bool {
        lock(&self.state).live.contains_key(runner_id)
    }

    /// How many tunnels `runner_id` has opened so far.
    pub(crate) fn connections(&self, runner_id: &str) -> usize {
        lock(&self.state)
            .opened
            .get(runner_id)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `runner_id` has a live tunnel; checked now and on every change.
    pub(crate) async fn wait_connected(
        &self,
        runner_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut changed = self.changed.subscribe();
        let wait = changed.wait_for(|_| self.is_connected(runner_id));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the server stopped while waiting for {runner_id:?}"),
            Err(_) => anyhow::bail!("runner {runner_id:?} opened no tunnel within {timeout:?}"),
        }
    }

    /// Drops every tunnel at the TCP level and waits until their sockets are closed. Returns
    /// how many were dropped.
    pub(crate) async fn disconnect_all(&self) -> usize {
        let dropped = self.kill_all();
        for tunnel in &dropped {
            // Stop waiting either way; a stuck task must not hang a restart.
            let _ = tokio::time::timeout(DISCONNECT_WAIT, tunnel.wait_gone()).await;
        }
        dropped.len()
    }

    /// Tells every tunnel to drop and forgets them at once; for `Drop`.
    pub(crate) fn kill_all(&self) -> Vec<Arc<Tunnel>> {
        let dropped: Vec<Arc<Tunnel>> = lock(&self.state)
            .live
            .drain()
            .map(|(_, tunnel)| tunnel)
            .collect();
        for tunnel in &dropped {
            tunnel.stop(Stop::Drop);
        }
        self.bump();
        dropped
    }

    fn bump(&self) {
        self.changed.send_modify(|version| *version += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_tunnel_replaces_the_old_one() {
        let tunnels = Tunnels::default();
        let (old, _old_queue) = Tunnel::new("Runner-1");
        let (new, _new_queue) = Tunnel::new("Runner-1");
        tunnels.attach(Arc::clone(&old));
        tunnels.attach(Arc::clone(&new));
        assert_eq!(tunnels.connections("Runner-1"), 2);
        // The old connection ending must not detach the new tunnel.
        tunnels.detach(&old);
        let live = tunnels.get("runner-1").expect("case-insensitive lookup");
        assert!(Arc::ptr_eq(&live, &new));
        tunnels.detach(&new);
        assert!(!tunnels.is_connected("Runner-1"));
        assert_eq!(tunnels.connections("Runner-1"), 2);
    }

    #[tokio::test]
    async fn waiting_sees_a_later_attach() {
        let tunnels = Arc::new(Tunnels::default());
        let waiter = {
            let tunnels = Arc::clone(&tunnels);
            tokio::spawn(async move { tunnels.wait_connected("r1", Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        let (tunnel, _queue) = Tunnel::new("r1");
        tunnels.attach(tunnel);
        waiter.await.expect("joined").expect("connected");
        let late = tunnels
            .wait_connected("r2", Duration::from_millis(20))
            .await;
        assert!(late.is_err());
    }
}
