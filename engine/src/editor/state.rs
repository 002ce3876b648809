//! Which editor is current, as a pure state machine (seed `runner.ts`: the editor
//! generation counter and `watchLocalEditorExit`).
//!
//! Every start takes a new generation. An exit is acted on only when it is the exit of
//! the current generation, so the exit of an editor that a newer start replaced never
//! revokes the newer editor's ports.
use std::path::PathBuf;

use crate::forwarding::routes::Endpoint;

/// The editor that is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningEditor {
    pub generation: u64,
    pub cwd: PathBuf,
    /// The number Kandan addresses it by.
    pub port: u16,
    /// Where the forwarder dials `port`.
    pub endpoint: Endpoint,
    /// The collaboration server's port, when the editor was started with one.
    pub collaboration_port: Option<u16>,
}

impl RunningEditor {
    /// Every port the editor owns: revoked together when it ends.
    pub fn ports(&self) -> Vec<u16> {
        std::iter::once(self.port)
            .chain(self.collaboration_port)
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct EditorSlot {
    generation: u64,
    running: Option<RunningEditor>,
}

impl EditorSlot {
    /// A start begins: the current editor (if any) is handed back to be ended, and no
    /// exit from before this point will be acted on any more. Returns the generation
    /// the new editor will have.
    pub fn begin_start(&mut self) -> (u64, Option<RunningEditor>) {
        self.generation += 1;
        (self.generation, self.running.take())
    }

    /// The editor of `generation` answered. `false` if a newer start began meanwhile:
    /// the caller must end this one instead.
    pub fn started(&mut self, editor: RunningEditor) -> bool {
        if editor.generation != self.generation {
            return false;
        }
        self.running = Some(editor);
        true
    }

    /// The editor of `generation` exited. The editor whose ports must be revoked, or
    /// `None` when that exit is stale (a newer editor is current, or it was stopped).
    pub fn exited(&mut self, generation: u64) -> Option<RunningEditor> {
        if self
            .running
            .as_ref()
            .is_some_and(|running| running.generation == generation)
        {
            self.running.take()
        } else {
            None
        }
    }

    /// The runner stops: the editor to end.
    pub fn stop(&mut self) -> Option<RunningEditor> {
        self.generation += 1;
        self.running.take()
    }

    pub fn running(&self) -> Option<&RunningEditor> {
        self.running.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editor(generation: u64, port: u16) -> RunningEditor {
        RunningEditor {
            generation,
            cwd: "/w".into(),
            port,
            endpoint: Endpoint::Loopback,
            collaboration_port: None,
        }
    }

    #[test]
    fn an_exit_of_the_current_editor_revokes_it() {
        let mut slot = EditorSlot::default();
        let (generation, previous) = slot.begin_start();
        assert_eq!(previous, None);
        assert!(slot.started(editor(generation, 9000)));
        assert_eq!(slot.exited(generation), Some(editor(generation, 9000)));
        assert_eq!(slot.running(), None);
        assert_eq!(slot.exited(generation), None, "revoked once");
    }

    #[test]
    fn a_replaced_editors_exit_never_revokes_the_new_one() {
        let mut slot = EditorSlot::default();
        let (first, _) = slot.begin_start();
        assert!(slot.started(editor(first, 9000)));
        let (second, previous) = slot.begin_start();
        assert_eq!(previous, Some(editor(first, 9000)));
        assert!(slot.started(editor(second, 9001)));
        // The first editor's exit arrives late.
        assert_eq!(slot.exited(first), None);
        assert_eq!(slot.running(), Some(&editor(second, 9001)));
    }

    #[test]
    fn a_start_overtaken_by_a_newer_one_is_not_kept() {
        let mut slot = EditorSlot::default();
        let (first, _) = slot.begin_start();
        let (second, _) = slot.begin_start();
        assert!(!slot.started(editor(first, 9000)));
        assert!(slot.started(editor(second, 9001)));
    }

    #[test]
    fn stopping_hands_back_the_editor_and_ignores_its_exit() {
        let mut slot = EditorSlot::default();
        let (generation, _) = slot.begin_start();
        let mut running = editor(generation, 9000);
        running.collaboration_port = Some(9100);
        assert!(slot.started(running.clone()));
        assert_eq!(running.ports(), vec![9000, 9100]);
        assert_eq!(slot.stop(), Some(running));
        assert_eq!(slot.exited(generation), None);
    }
}
