//! Turning scans into offers (seed `portForwardWatcher.ts`): a listener is offered once it
//! has been seen unchanged for the debounce period, and offered again only when what
//! listens on the port changes (another pid, command or folder).
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// A process listening on a port, as shown to the person asked about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCandidate {
    pub port: u16,
    pub pid: u32,
    /// The process's name ("node"), what the seed sends as `command` (lsof's COMMAND).
    pub command: String,
    /// Its whole command line, for a person deciding (`command_line`) [designed].
    pub command_line: String,
    pub cwd: Option<String>,
}

impl PortCandidate {
    /// The program's name, for labels ("node", "python3"): the basename of the
    /// command's first word (seed `portForwardCommandLabel`).
    pub fn label(&self) -> String {
        let first = self.command.split_whitespace().next().unwrap_or("");
        let name = first.rsplit('/').next().unwrap_or(first);
        if name.is_empty() {
            "unknown".into()
        } else {
            name.to_owned()
        }
    }
}

#[derive(Debug, Default)]
pub struct Debouncer {
    first_seen: HashMap<u16, (PortCandidate, Instant)>,
    offered: HashMap<u16, PortCandidate>,
}

impl Debouncer {
    /// Feeds one scan; returns the candidates to offer now (new, or changed and stable).
    pub fn observe(
        &mut self,
        scan: Vec<PortCandidate>,
        now: Instant,
        debounce: Duration,
    ) -> Vec<PortCandidate> {
        let mut first_seen = HashMap::new();
        let mut offered = HashMap::new();
        let mut offers = Vec::new();
        for candidate in scan {
            let since = match self.first_seen.get(&candidate.port) {
                Some((previous, since)) if *previous == candidate => *since,
                _ => now,
            };
            let stable = debounce.is_zero() || now.duration_since(since) >= debounce;
            if stable {
                if self.offered.get(&candidate.port) != Some(&candidate) {
                    offers.push(candidate.clone());
                }
                offered.insert(candidate.port, candidate.clone());
            } else if let Some(previous) = self.offered.get(&candidate.port) {
                // Still settling: keep what was offered, so a flapping port is not
                // offered twice.
                offered.insert(candidate.port, previous.clone());
            }
            first_seen.insert(candidate.port, (candidate, since));
        }
        self.first_seen = first_seen;
        self.offered = offered;
        offers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(port: u16, pid: u32) -> PortCandidate {
        PortCandidate {
            port,
            pid,
            command: "/usr/bin/node server.js".into(),
            command_line: "/usr/bin/node server.js".into(),
            cwd: Some("/w".into()),
        }
    }

    const DEBOUNCE: Duration = Duration::from_millis(750);

    #[test]
    fn a_listener_is_offered_once_stable_and_only_once() {
        let mut debouncer = Debouncer::default();
        let start = Instant::now();
        assert!(
            debouncer
                .observe(vec![candidate(3000, 7)], start, DEBOUNCE)
                .is_empty()
        );
        let later = start + Duration::from_millis(500);
        assert!(
            debouncer
                .observe(vec![candidate(3000, 7)], later, DEBOUNCE)
                .is_empty()
        );
        let stable = start + DEBOUNCE;
        assert_eq!(
            debouncer.observe(vec![candidate(3000, 7)], stable, DEBOUNCE),
            vec![candidate(3000, 7)]
        );
        let again = stable + Duration::from_secs(5);
        assert!(
            debouncer
                .observe(vec![candidate(3000, 7)], again, DEBOUNCE)
                .is_empty()
        );
    }

    #[test]
    fn a_changed_listener_is_offered_again_after_settling() {
        let mut debouncer = Debouncer::default();
        let start = Instant::now();
        debouncer.observe(vec![candidate(3000, 7)], start, Duration::ZERO);
        let restarted = start + Duration::from_secs(1);
        assert!(
            debouncer
                .observe(vec![candidate(3000, 8)], restarted, DEBOUNCE)
                .is_empty(),
            "the new listener must settle first"
        );
        assert_eq!(
            debouncer.observe(vec![candidate(3000, 8)], restarted + DEBOUNCE, DEBOUNCE),
            vec![candidate(3000, 8)]
        );
    }

    #[test]
    fn a_listener_that_goes_away_and_comes_back_is_offered_again() {
        let mut debouncer = Debouncer::default();
        let start = Instant::now();
        debouncer.observe(vec![candidate(3000, 7)], start, Duration::ZERO);
        debouncer.observe(vec![], start + Duration::from_secs(1), Duration::ZERO);
        assert_eq!(
            debouncer.observe(
                vec![candidate(3000, 7)],
                start + Duration::from_secs(2),
                Duration::ZERO
            ),
            vec![candidate(3000, 7)]
        );
    }

    #[test]
    fn labels_are_the_program_name() {
        assert_eq!(candidate(1, 1).label(), "node");
        let empty = PortCandidate {
            command: String::new(),
            ..candidate(1, 1)
        };
        assert_eq!(empty.label(), "unknown");
    }
}
