//! What to do about an offered listener (seed `portForwardApproval.ts`,
//! `reviewPortForwardCandidate`; its source is not published, so the rules are written
//! from its callers and the issue): skip managed ports and ports already asked about,
//! keep an approved port while the same process listens on it, revoke it and ask again
//! when another one does, and never ask twice about a denied listener that has not
//! changed.
use std::collections::{BTreeSet, HashMap};

use super::candidates::PortCandidate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    Skip,
    /// An approved port's first listener: remember it as the approved one.
    RememberApprovedTarget,
    /// Another process now listens on an approved port.
    RevokeAndPrompt {
        revoked: PortCandidate,
    },
    Prompt,
}

#[derive(Debug, Default)]
pub struct PortDecisions {
    /// Ports the listen user approved, and the owner's `--forward-port` ports (seed:
    /// both go in `approvedForwardPorts`), with the listener approved when known.
    pub approved: HashMap<u16, Option<PortCandidate>>,
    /// Listeners the listen user denied.
    pub denied: HashMap<u16, PortCandidate>,
    /// Listeners currently being asked about.
    pub pending: HashMap<u16, PortCandidate>,
}

impl PortDecisions {
    pub fn review(&self, candidate: &PortCandidate, managed: &BTreeSet<u16>) -> Review {
        let port = candidate.port;
        if managed.contains(&port) {
            return Review::Skip;
        }
        if self.pending.get(&port) == Some(candidate) {
            return Review::Skip;
        }
        match self.approved.get(&port) {
            Some(None) => return Review::RememberApprovedTarget,
            Some(Some(target)) if target == candidate => return Review::Skip,
            Some(Some(target)) => {
                return Review::RevokeAndPrompt {
                    revoked: target.clone(),
                };
            }
            None => {}
        }
        if self.denied.get(&port) == Some(candidate) {
            return Review::Skip;
        }
        Review::Prompt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(port: u16, pid: u32) -> PortCandidate {
        PortCandidate {
            port,
            pid,
            command: "node".into(),
            command_line: "node".into(),
            cwd: None,
        }
    }

    #[test]
    fn each_rule() {
        let mut decisions = PortDecisions::default();
        let none = BTreeSet::new();
        assert_eq!(decisions.review(&candidate(3000, 1), &none), Review::Prompt);
        assert_eq!(
            decisions.review(&candidate(8080, 1), &BTreeSet::from([8080])),
            Review::Skip,
            "managed (editor) ports are never offered"
        );
        decisions.pending.insert(3000, candidate(3000, 1));
        assert_eq!(decisions.review(&candidate(3000, 1), &none), Review::Skip);
        decisions.pending.clear();

        decisions.approved.insert(3000, None);
        assert_eq!(
            decisions.review(&candidate(3000, 1), &none),
            Review::RememberApprovedTarget
        );
        decisions.approved.insert(3000, Some(candidate(3000, 1)));
        assert_eq!(decisions.review(&candidate(3000, 1), &none), Review::Skip);
        assert_eq!(
            decisions.review(&candidate(3000, 2), &none),
            Review::RevokeAndPrompt {
                revoked: candidate(3000, 1)
            }
        );

        decisions.denied.insert(4000, candidate(4000, 1));
        assert_eq!(decisions.review(&candidate(4000, 1), &none), Review::Skip);
        assert_eq!(
            decisions.review(&candidate(4000, 2), &none),
            Review::Prompt,
            "a different listener is a new question"
        );
    }
}
