//! A child process the runner owns (the Codex app-server, code-server, the collaboration
//! server): its last output lines kept for "why did it die" messages, and ending it ends
//! everything it started (see [`crate::process_tree`]), also when it is dropped.
use std::collections::VecDeque;
use std::future::Future;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::process_tree::{self, Signal};

/// The last lines a process wrote, shared with the tasks that read its output.
#[derive(Debug, Clone)]
pub struct OutputTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
}

impl OutputTail {
    pub fn new(capacity: usize) -> Self {
        OutputTail {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    pub fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() == self.capacity {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// The kept lines, oldest first, one per line.
    pub fn text(&self) -> String {
        self.lines
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Reads `stream` line by line into the tail until it ends, handing each line to
    /// `observe` first (readiness lines, logging).
    pub fn follow(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
        mut observe: impl FnMut(&str) + Send + 'static,
    ) {
        let tail = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                observe(&line);
                tail.push(line);
            }
        });
    }
}

/// How waiting for a server to come up ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// It exited first, with this status.
    Exited(String),
    /// It did not get ready in time; it has been ended.
    TimedOut,
}

/// A spawned process and the tree it starts.
pub struct ChildTree {
    child: Child,
    /// The root of the tree to end; `None` once it has been ended. Kept apart from
    /// `Child::id`, which forgets the pid once the process is reaped.
    root: Option<u32>,
}

impl ChildTree {
    /// Spawns `command` in a process group of its own (unix), killed if dropped, without
    /// this process's secrets in its environment.
    pub fn spawn(mut command: Command) -> std::io::Result<ChildTree> {
        crate::secrets::clear_from_environment(command.as_std_mut());
        command.kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let child = command.spawn()?;
        let root = child.id();
        Ok(ChildTree { child, root })
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn pid(&self) -> Option<u32> {
        self.root
    }

    /// Resolves when the process exits.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Keeps the last `capacity` lines of its (piped) stdout and stderr in one tail,
    /// handing each line to `log` first.
    pub fn capture_output(&mut self, capacity: usize, log: fn(&str)) -> OutputTail {
        let tail = OutputTail::new(capacity);
        if let Some(stdout) = self.child.stdout.take() {
            tail.follow(stdout, log);
        }
        if let Some(stderr) = self.child.stderr.take() {
            tail.follow(stderr, log);
        }
        tail
    }

    /// Tries `probe` every `poll` until it answers `true`, the process exits, or
    /// `timeout` passes (then the tree is ended with SIGINT, SIGKILL after 1 s).
    pub async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        poll: Duration,
        mut probe: F,
    ) -> Readiness
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                status = self.child.wait() => {
                    // Let the output readers store the last lines.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return Readiness::Exited(status.map_or_else(
                        |error| error.to_string(),
                        |status| status.to_string(),
                    ));
                }
                ready = probe() => {
                    if ready {
                        return Readiness::Ready;
                    }
                }
            }
            if Instant::now() >= deadline {
                self.terminate(Signal::Interrupt, Duration::from_secs(1))
                    .await;
                return Readiness::TimedOut;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Ends the process and everything it started: `first` (SIGTERM, or SIGINT for
    /// servers that only clean up on it) to the whole tree, then SIGKILL to whatever of
    /// it is left after `grace`.
    pub async fn terminate(&mut self, first: Signal, grace: Duration) {
        let Some(root) = self.root else {
            return;
        };
        let tree = process_tree::tree(root);
        process_tree::signal(&tree, first);
        // If this is cancelled here, `Drop` still knows the root and kills the tree.
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        process_tree::signal(&tree, Signal::Kill);
        #[cfg(unix)]
        process_tree::signal_group(root, Signal::Kill);
        self.root = None;
        let _ = self.child.wait().await;
    }
}

impl Drop for ChildTree {
    /// A process dropped without `terminate` (a panic, a cancelled task) must not leave
    /// anything behind.
    fn drop(&mut self) {
        if let Some(root) = self.root.take() {
            process_tree::signal(&process_tree::tree(root), Signal::Kill);
            #[cfg(unix)]
            process_tree::signal_group(root, Signal::Kill);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let tail = OutputTail::new(2);
        for line in ["one", "two", "three"] {
            tail.push(line.into());
        }
        assert_eq!(tail.text(), "two\nthree");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn terminate_ends_the_children_too() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        let mut tree = ChildTree::spawn(command).unwrap();
        let stdout = tree.child_mut().stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let sleeper: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
        assert!(process_tree::alive(sleeper));
        tree.terminate(Signal::Interrupt, Duration::from_secs(2))
            .await;
        // SIGKILL is delivered asynchronously: give the kernel a moment to act on it.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while process_tree::alive(sleeper) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!process_tree::alive(sleeper));
        assert_eq!(tree.pid(), None);
    }
}
