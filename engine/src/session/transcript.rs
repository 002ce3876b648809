//! The Kandan rows of a chat session: one row per logical Codex item (assistant text,
//! reasoning, a command and its output, a file change, web searches of a turn), posted
//! on its first flush, updated on later ones, and finished once from Codex's
//! authoritative `item/completed` — never posted twice (seed `streamDeltaCoalescing.ts`
//! and the reconciliation in `channelSession.ts`).
//!
//! Deltas append to their row and mark it dirty; a flush writes each dirty row once, in
//! the order rows first changed, so thousands of deltas cost a handful of writes. This
//! module decides *what* to write; the session performs the writes and reports back
//! when a post has its seq.
use std::collections::{HashMap, VecDeque};

use serde_json::{Value, json};

/// How many finished rows are remembered (seed `maxForwardedTurnIds`); rows still
/// streaming or being posted are never forgotten.
pub const REMEMBERED_ROWS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RowKind {
    Assistant,
    Reasoning,
    Command,
    FileChange,
    WebSearch,
    TerminalInput,
    UserInput,
    TurnFailed,
}

/// A row's identity: the turn and the Codex item (or a per-turn name) it shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub turn_id: String,
    pub item: String,
    pub kind: RowKind,
}

impl RowKey {
    pub fn new(turn_id: &str, item: &str, kind: RowKind) -> RowKey {
        RowKey {
            turn_id: turn_id.to_owned(),
            item: item.to_owned(),
            kind,
        }
    }
}

/// What a row shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowContent {
    pub text: String,
    pub command: Option<String>,
    pub cwd: Option<String>,
    pub exit_code: Option<i64>,
    pub status: Option<String>,
    pub changes: Vec<Value>,
    pub queries: Vec<String>,
    pub process_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum PostState {
    NotPosted,
    Posting,
    Posted(i64),
    /// Kandan refused it for good; it will not be written again.
    Abandoned,
}

#[derive(Debug)]
struct Row {
    reply_to_seq: i64,
    content: RowContent,
    streaming: bool,
    post: PostState,
    /// Bumped on every change; compared with what was last sent.
    version: u64,
    written: u64,
}

impl Row {
    fn settled(&self) -> bool {
        match self.post {
            PostState::Abandoned => true,
            PostState::Posted(_) => !self.streaming && self.written == self.version,
            PostState::NotPosted | PostState::Posting => false,
        }
    }
}

/// A write for the session to perform.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Post a new row; report its seq with [`Transcript::posted`].
    Post(RowKey),
    /// Replace the row with this seq.
    Update(RowKey, i64),
}

#[derive(Debug, Default)]
pub struct Transcript {
    rows: HashMap<RowKey, Row>,
    /// Rows in the order they were created, for eviction and for turn-wide passes.
    order: VecDeque<RowKey>,
    /// Rows changed since the last flush, in the order they first changed.
    dirty: Vec<RowKey>,
}

impl Transcript {
    /// Changes a row's content (creating the row), marking it for the next flush.
    /// Returns whether this is the first pending change (so a flush timer is due).
    pub fn change(
        &mut self,
        key: &RowKey,
        reply_to_seq: i64,
        change: impl FnOnce(&mut RowContent),
    ) -> bool {
        let row = self.row(key, reply_to_seq);
        if !row.streaming && row.version > 0 {
            // Already finished: late deltas of a completed item change nothing.
            return false;
        }
        change(&mut row.content);
        row.version += 1;
        self.mark_dirty(key)
    }

    /// The authoritative end of an item: its final content, written once more.
    pub fn finish(
        &mut self,
        key: &RowKey,
        reply_to_seq: i64,
        finish: impl FnOnce(&mut RowContent),
    ) -> bool {
        let row = self.row(key, reply_to_seq);
        finish(&mut row.content);
        row.streaming = false;
        row.version += 1;
        self.mark_dirty(key)
    }

    /// Finishes every still-streaming row of `turn_id` as it stands (an interrupted
    /// turn gets no `item/completed` for what was in flight).
    pub fn finish_turn(&mut self, turn_id: &str) {
        let open: Vec<RowKey> = self
            .order
            .iter()
            .filter(|key| key.turn_id == turn_id)
            .filter(|key| self.rows.get(*key).is_some_and(|row| row.streaming))
            .cloned()
            .collect();
        for key in open {
            if let Some(row) = self.rows.get_mut(&key) {
                row.streaming = false;
                row.version += 1;
            }
            self.mark_dirty(&key);
        }
    }

    /// The writes for everything changed since the last flush.
    pub fn flush(&mut self) -> Vec<Write> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|key| self.write_for(&key))
            .collect()
    }

    /// A post came back with its seq; if the row changed meanwhile, it needs an update.
    pub fn posted(&mut self, key: &RowKey, seq: i64) -> Option<Write> {
        let row = self.rows.get_mut(key)?;
        row.post = PostState::Posted(seq);
        let update = (row.version > row.written).then(|| {
            row.written = row.version;
            Write::Update(key.clone(), seq)
        });
        self.evict();
        update
    }

    /// A post failed for good: the next change (or the turn's end) posts it again.
    pub fn post_failed(&mut self, key: &RowKey) {
        if let Some(row) = self.rows.get_mut(key) {
            row.post = PostState::NotPosted;
            row.written = 0;
        }
        self.mark_dirty(key);
    }

    /// Kandan refused the row: stop trying, so its turn can finish.
    pub fn abandon(&mut self, key: &RowKey) {
        if let Some(row) = self.rows.get_mut(key) {
            row.post = PostState::Abandoned;
        }
        self.dirty.retain(|dirty| dirty != key);
    }

    /// Whether every row of `turn_id` is finished and written.
    pub fn turn_settled(&self, turn_id: &str) -> bool {
        self.dirty.iter().all(|key| key.turn_id != turn_id)
            && self
                .order
                .iter()
                .filter(|key| key.turn_id == turn_id)
                .all(|key| self.rows.get(key).is_none_or(Row::settled))
    }

    /// What to send for a row: its body and structured payload, and whether it streams.
    pub fn view(&self, key: &RowKey) -> Option<RowView<'_>> {
        self.rows.get_key_value(key).map(|(key, row)| RowView {
            key,
            content: &row.content,
            streaming: row.streaming,
            reply_to_seq: row.reply_to_seq,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn row(&mut self, key: &RowKey, reply_to_seq: i64) -> &mut Row {
        if !self.rows.contains_key(key) {
            self.order.push_back(key.clone());
        }
        self.rows.entry(key.clone()).or_insert_with(|| Row {
            reply_to_seq,
            content: RowContent::default(),
            streaming: true,
            post: PostState::NotPosted,
            version: 0,
            written: 0,
        })
    }

    fn mark_dirty(&mut self, key: &RowKey) -> bool {
        if self.dirty.contains(key) {
            return false;
        }
        self.dirty.push(key.clone());
        self.dirty.len() == 1
    }

    fn write_for(&mut self, key: &RowKey) -> Option<Write> {
        let row = self.rows.get_mut(key)?;
        if row.version == row.written {
            return None;
        }
        match row.post {
            PostState::NotPosted => {
                row.post = PostState::Posting;
                row.written = row.version;
                Some(Write::Post(key.clone()))
            }
            // The post's reply will bring any change since.
            PostState::Posting | PostState::Abandoned => None,
            PostState::Posted(seq) => {
                row.written = row.version;
                Some(Write::Update(key.clone(), seq))
            }
        }
    }

    /// Forgets the oldest finished rows beyond [`REMEMBERED_ROWS`].
    fn evict(&mut self) {
        let mut index = 0;
        while self.order.len() > REMEMBERED_ROWS && index < self.order.len() {
            let settled = self
                .order
                .get(index)
                .and_then(|key| self.rows.get(key))
                .is_some_and(Row::settled);
            if settled {
                if let Some(key) = self.order.remove(index) {
                    self.rows.remove(&key);
                }
            } else {
                index += 1;
            }
        }
    }
}

/// A row ready to be rendered.
#[derive(Debug)]
pub struct RowView<'a> {
    pub key: &'a RowKey,
    pub content: &'a RowContent,
    pub streaming: bool,
    pub reply_to_seq: i64,
}

impl RowView<'_> {
    /// The structured part of the row's payload (protocol §5.3).
    pub fn structured(&self) -> Value {
        let content = self.content;
        let turn = &self.key.turn_id;
        let item = &self.key.item;
        match self.key.kind {
            RowKind::Assistant => json!({"kind": "codex_assistant_message", "turn_id": turn,
                "item_id": item, "text": content.text, "streaming": self.streaming}),
            RowKind::Reasoning => json!({"kind": "codex_reasoning", "turn_id": turn,
                "item_id": item, "text": content.text, "streaming": self.streaming}),
            RowKind::Command => json!({"kind": "codex_command", "turn_id": turn, "item_id": item,
                "command": content.command, "cwd": content.cwd, "output": content.text,
                "exit_code": content.exit_code, "status": content.status,
                "streaming": self.streaming}),
            RowKind::FileChange => json!({"kind": "codex_file_change", "turn_id": turn,
                "item_id": item, "changes": content.changes, "patch": content.text,
                "status": content.status, "streaming": self.streaming}),
            RowKind::WebSearch => json!({"kind": "codex_web_search", "turn_id": turn,
                "queries": content.queries, "status": content.status}),
            RowKind::TerminalInput => json!({"kind": "codex_terminal_input", "turn_id": turn,
                "item_id": item, "process_id": content.process_id, "stdin": content.text}),
            RowKind::UserInput => json!({"kind": "codex_user_input", "turn_id": turn,
                "text": content.text, "source": "tui"}),
            RowKind::TurnFailed => json!({"kind": "codex_turn_failed", "turn_id": turn,
                "message": content.text}),
        }
    }

    /// The Markdown body Kandan shows for the row.
    pub fn body(&self) -> String {
        let content = self.content;
        match self.key.kind {
            RowKind::Assistant => content.text.clone(),
            RowKind::Reasoning => quote(&content.text),
            RowKind::Command => {
                let mut body = format!(
                    "```console\n$ {}\n{}",
                    content.command.as_deref().unwrap_or(""),
                    content.text
                );
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                body.push_str("```");
                match (content.exit_code, content.status.as_deref()) {
                    (Some(code), _) => body.push_str(&format!("\nexit code {code}")),
                    (None, Some("declined")) => body.push_str("\ndeclined"),
                    _ => {}
                }
                body
            }
            RowKind::FileChange => {
                let paths: Vec<String> = content
                    .changes
                    .iter()
                    .filter_map(|change| {
                        let path = change.get("path")?.as_str()?;
                        let kind = change
                            .get("kind")
                            .and_then(|kind| kind.get("type"))
                            .and_then(Value::as_str)
                            .unwrap_or("update");
                        Some(format!("- {kind} `{path}`"))
                    })
                    .collect();
                let diff: String = content
                    .changes
                    .iter()
                    .filter_map(|change| change.get("diff")?.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                let diff = if diff.is_empty() {
                    &content.text
                } else {
                    &diff
                };
                let status = content.status.as_deref().unwrap_or("inProgress");
                format!(
                    "File changes ({status}):\n{}\n```diff\n{diff}\n```",
                    paths.join("\n")
                )
            }
            RowKind::WebSearch => format!("Searching the web: {}", content.queries.join(", ")),
            RowKind::TerminalInput => format!("⌨ `{}`", content.text.trim_end()),
            RowKind::UserInput => format!("(from the Codex TUI) {}", content.text),
            RowKind::TurnFailed => format!("Codex failed: {}", content.text),
        }
    }
}

fn quote(text: &str) -> String {
    text.lines()
        .map(|line| format!("> {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(item: &str) -> RowKey {
        RowKey::new("u1", item, RowKind::Assistant)
    }

    fn append(transcript: &mut Transcript, item: &str, text: &str) -> bool {
        transcript.change(&key(item), 7, |content| content.text.push_str(text))
    }

    #[test]
    fn many_deltas_make_one_post_then_updates() {
        let mut transcript = Transcript::default();
        assert!(
            append(&mut transcript, "m", "Hel"),
            "the first change arms the timer"
        );
        assert!(!append(&mut transcript, "m", "lo"));
        assert_eq!(transcript.flush(), vec![Write::Post(key("m"))]);
        // While the post is in flight, changes wait for its seq.
        append(&mut transcript, "m", ", world");
        assert_eq!(transcript.flush(), vec![]);
        assert_eq!(
            transcript.posted(&key("m"), 42),
            Some(Write::Update(key("m"), 42))
        );
        assert_eq!(
            transcript.view(&key("m")).unwrap().content.text,
            "Hello, world"
        );
        append(&mut transcript, "m", "!");
        assert_eq!(transcript.flush(), vec![Write::Update(key("m"), 42)]);
        assert_eq!(transcript.flush(), vec![], "nothing changed since");
    }

    #[test]
    fn the_final_text_replaces_the_streamed_one_exactly_once() {
        let mut transcript = Transcript::default();
        append(&mut transcript, "m", "partial tex");
        transcript.flush();
        transcript.posted(&key("m"), 5);
        transcript.finish(&key("m"), 7, |content| {
            content.text = "partial text.".into()
        });
        assert!(!transcript.turn_settled("u1"));
        assert_eq!(transcript.flush(), vec![Write::Update(key("m"), 5)]);
        assert!(transcript.turn_settled("u1"));
        // A straggling delta after completion changes nothing.
        assert!(!append(&mut transcript, "m", "zzz"));
        assert_eq!(
            transcript.view(&key("m")).unwrap().content.text,
            "partial text."
        );
    }

    #[test]
    fn an_item_that_never_streamed_is_posted_at_completion() {
        let mut transcript = Transcript::default();
        let file = RowKey::new("u1", "call_1", RowKind::FileChange);
        transcript.finish(&file, 7, |content| {
            content.status = Some("completed".into())
        });
        assert_eq!(transcript.flush(), vec![Write::Post(file.clone())]);
        assert!(!transcript.turn_settled("u1"), "the post has no seq yet");
        assert_eq!(transcript.posted(&file, 9), None);
        assert!(transcript.turn_settled("u1"));
    }

    #[test]
    fn an_interrupted_turn_finishes_its_open_rows() {
        let mut transcript = Transcript::default();
        append(&mut transcript, "m", "cut sh");
        transcript.flush();
        transcript.posted(&key("m"), 3);
        transcript.finish_turn("u1");
        assert_eq!(transcript.flush(), vec![Write::Update(key("m"), 3)]);
        assert!(!transcript.view(&key("m")).unwrap().streaming);
        assert!(transcript.turn_settled("u1"));
    }

    #[test]
    fn rows_flush_in_the_order_they_first_changed() {
        let mut transcript = Transcript::default();
        append(&mut transcript, "b", "1");
        append(&mut transcript, "a", "2");
        append(&mut transcript, "b", "3");
        assert_eq!(
            transcript.flush(),
            vec![Write::Post(key("b")), Write::Post(key("a"))]
        );
    }

    #[test]
    fn a_failed_post_is_retried_by_the_next_flush() {
        let mut transcript = Transcript::default();
        append(&mut transcript, "m", "x");
        transcript.flush();
        transcript.post_failed(&key("m"));
        assert_eq!(transcript.flush(), vec![Write::Post(key("m"))]);
    }

    #[test]
    fn an_abandoned_row_no_longer_holds_its_turn() {
        let mut transcript = Transcript::default();
        append(&mut transcript, "m", "x");
        transcript.flush();
        transcript.abandon(&key("m"));
        append(&mut transcript, "m", "y");
        assert_eq!(transcript.flush(), vec![]);
        assert!(transcript.turn_settled("u1"));
    }

    #[test]
    fn only_finished_rows_are_forgotten() {
        let mut transcript = Transcript::default();
        let open = key("open");
        transcript.change(&open, 1, |content| content.text.push('x'));
        for n in 0..(REMEMBERED_ROWS + 10) {
            let done = key(&format!("done-{n}"));
            transcript.finish(&done, 1, |content| content.text.push('y'));
            transcript.flush();
            transcript.posted(&done, n as i64);
        }
        assert_eq!(transcript.len(), REMEMBERED_ROWS);
        assert!(transcript.view(&open).is_some(), "a streaming row is kept");
    }

    #[test]
    fn rows_render_their_structured_payload_and_body() {
        let mut transcript = Transcript::default();
        let command = RowKey::new("u1", "call_1", RowKind::Command);
        transcript.finish(&command, 7, |content| {
            content.command = Some("ls".into());
            content.text = "a\nb\n".into();
            content.exit_code = Some(0);
            content.status = Some("completed".into());
        });
        let view = transcript.view(&command).unwrap();
        assert_eq!(view.body(), "```console\n$ ls\na\nb\n```\nexit code 0");
        assert_eq!(view.structured()["kind"], "codex_command");
        assert_eq!(view.structured()["streaming"], false);
        assert_eq!(view.reply_to_seq, 7);
    }
}
