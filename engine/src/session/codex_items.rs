//! How each Codex notification changes the thread's rows (seed `codexOutput.ts`, whose
//! source is not published; designed from its callers): text and output deltas append
//! to their item's row, `item/started` gives commands and file changes their headline,
//! and `item/completed` is the authority that finishes a row.
use serde_json::Value;

use super::transcript::{RowContent, RowKey, RowKind, Transcript};
use crate::codex::protocol::{FileUpdateChange, ItemStatus, Notification, ThreadItem};

/// What a notification did to the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The first pending change since the last flush: arm the flush timer.
    pub arm_flush: bool,
}

/// Applies a notification of a turn the session follows; rows reply to `reply_to_seq`.
/// `mirror_user_input` is set for turns typed in the Codex TUI, whose user message is
/// not already in the Kandan thread.
pub fn apply(
    transcript: &mut Transcript,
    notification: &Notification,
    reply_to_seq: i64,
    mirror_user_input: bool,
) -> Applied {
    let arm_flush = match notification {
        Notification::AgentMessageDelta(delta) => append(
            transcript,
            &delta.turn_id,
            &delta.item_id,
            RowKind::Assistant,
            reply_to_seq,
            &delta.delta,
        ),
        Notification::ReasoningSummaryTextDelta(delta)
        | Notification::ReasoningTextDelta(delta) => append(
            transcript,
            &delta.turn_id,
            &delta.item_id,
            RowKind::Reasoning,
            reply_to_seq,
            &delta.delta,
        ),
        Notification::CommandOutputDelta(delta) => append(
            transcript,
            &delta.turn_id,
            &delta.item_id,
            RowKind::Command,
            reply_to_seq,
            &delta.delta,
        ),
        Notification::FileChangeOutputDelta(delta) => append(
            transcript,
            &delta.turn_id,
            &delta.item_id,
            RowKind::FileChange,
            reply_to_seq,
            &delta.delta,
        ),
        Notification::TerminalInteraction(input) => {
            let item = format!("{}:{}", input.item_id, input.process_id);
            let key = RowKey::new(&input.turn_id, &item, RowKind::TerminalInput);
            transcript.finish(&key, reply_to_seq, |content| {
                content.text.push_str(&input.stdin);
                content.process_id = Some(input.process_id.clone());
            })
        }
        Notification::ItemStarted(event) => {
            started(transcript, &event.turn_id, &event.item, reply_to_seq)
        }
        Notification::ItemCompleted(event) => completed(
            transcript,
            &event.turn_id,
            &event.item,
            reply_to_seq,
            mirror_user_input,
        ),
        _ => false,
    };
    Applied { arm_flush }
}

fn append(
    transcript: &mut Transcript,
    turn_id: &str,
    item_id: &str,
    kind: RowKind,
    reply_to_seq: i64,
    delta: &str,
) -> bool {
    let key = RowKey::new(turn_id, item_id, kind);
    transcript.change(&key, reply_to_seq, |content| content.text.push_str(delta))
}

fn started(transcript: &mut Transcript, turn_id: &str, item: &ThreadItem, reply_to: i64) -> bool {
    match item {
        ThreadItem::CommandExecution {
            id, command, cwd, ..
        } => transcript.change(
            &RowKey::new(turn_id, id, RowKind::Command),
            reply_to,
            |content| {
                content.command = Some(command.clone());
                content.cwd = Some(cwd.clone());
                content.status = Some("inProgress".into());
            },
        ),
        ThreadItem::FileChange { id, changes, .. } => transcript.change(
            &RowKey::new(turn_id, id, RowKind::FileChange),
            reply_to,
            |content| {
                content.changes = changes.iter().map(change_json).collect();
                content.status = Some("inProgress".into());
            },
        ),
        ThreadItem::WebSearch { query, .. } => {
            transcript.change(&web_search_key(turn_id), reply_to, |content| {
                add_query(content, query);
                content.status = Some("searching".into());
            })
        }
        _ => false,
    }
}

fn completed(
    transcript: &mut Transcript,
    turn_id: &str,
    item: &ThreadItem,
    reply_to: i64,
    mirror_user_input: bool,
) -> bool {
    match item {
        ThreadItem::AgentMessage { id, text } => transcript.finish(
            &RowKey::new(turn_id, id, RowKind::Assistant),
            reply_to,
            |content| content.text.clone_from(text),
        ),
        ThreadItem::Reasoning {
            id,
            summary,
            content: raw,
        } => {
            let text = if summary.is_empty() {
                raw.join("\n\n")
            } else {
                summary.join("\n\n")
            };
            if text.is_empty() {
                return false;
            }
            transcript.finish(
                &RowKey::new(turn_id, id, RowKind::Reasoning),
                reply_to,
                |content| {
                    content.text = text;
                },
            )
        }
        ThreadItem::CommandExecution {
            id,
            command,
            cwd,
            status,
            aggregated_output,
            exit_code,
            ..
        } => transcript.finish(
            &RowKey::new(turn_id, id, RowKind::Command),
            reply_to,
            |content| {
                content.command = Some(command.clone());
                content.cwd = Some(cwd.clone());
                // Codex's aggregated output is the authority: early chunks are not always
                // sent as deltas.
                if let Some(output) = aggregated_output {
                    content.text.clone_from(output);
                }
                content.exit_code = exit_code.map(i64::from);
                content.status = Some(status_name(*status).into());
            },
        ),
        ThreadItem::FileChange {
            id,
            changes,
            status,
        } => transcript.finish(
            &RowKey::new(turn_id, id, RowKind::FileChange),
            reply_to,
            |content| {
                content.changes = changes.iter().map(change_json).collect();
                content.status = Some(status_name(*status).into());
            },
        ),
        ThreadItem::WebSearch { query, .. } => {
            transcript.change(&web_search_key(turn_id), reply_to, |content| {
                add_query(content, query);
                content.status = Some("completed".into());
            })
        }
        ThreadItem::UserMessage { id, content: parts } if mirror_user_input => {
            let text = user_text(parts);
            transcript.finish(
                &RowKey::new(turn_id, id, RowKind::UserInput),
                reply_to,
                |content| {
                    content.text = text;
                },
            )
        }
        _ => false,
    }
}

/// A failed turn gets a row that says why.
pub fn turn_failed(
    transcript: &mut Transcript,
    turn_id: &str,
    reply_to: i64,
    message: &str,
) -> bool {
    transcript.finish(
        &RowKey::new(turn_id, "turn", RowKind::TurnFailed),
        reply_to,
        |content| content.text = message.to_owned(),
    )
}

fn web_search_key(turn_id: &str) -> RowKey {
    RowKey::new(turn_id, "web-search", RowKind::WebSearch)
}

fn add_query(content: &mut RowContent, query: &str) {
    if !query.is_empty() && !content.queries.iter().any(|q| q == query) {
        content.queries.push(query.to_owned());
    }
}

fn change_json(change: &FileUpdateChange) -> Value {
    let kind = match &change.kind {
        crate::codex::protocol::PatchChangeKind::Add => serde_json::json!({"type": "add"}),
        crate::codex::protocol::PatchChangeKind::Delete => serde_json::json!({"type": "delete"}),
        crate::codex::protocol::PatchChangeKind::Update { move_path } => {
            serde_json::json!({"type": "update", "move_path": move_path})
        }
    };
    serde_json::json!({"path": change.path, "kind": kind, "diff": change.diff})
}

fn status_name(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::InProgress => "inProgress",
        ItemStatus::Completed => "completed",
        ItemStatus::Failed => "failed",
        ItemStatus::Declined => "declined",
    }
}

/// The text of a user message's input items.
fn user_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::transcript::Write;
    use serde_json::json;

    fn notification(method: &str, params: Value) -> Notification {
        Notification::decode(method, &params).unwrap()
    }

    fn delta(method: &str, item: &str, text: &str) -> Notification {
        notification(
            method,
            json!({"threadId": "t", "turnId": "u", "itemId": item, "delta": text}),
        )
    }

    #[test]
    fn a_command_gets_one_row_with_its_authoritative_output() {
        let mut transcript = Transcript::default();
        let started = notification(
            "item/started",
            json!({"threadId": "t", "turnId": "u", "startedAtMs": 1, "item": {
                "type": "commandExecution", "id": "c1", "command": "ls", "cwd": "/w",
                "status": "inProgress", "commandActions": []}}),
        );
        assert!(apply(&mut transcript, &started, 3, false).arm_flush);
        apply(
            &mut transcript,
            &delta("item/commandExecution/outputDelta", "c1", "line2\n"),
            3,
            false,
        );
        let key = RowKey::new("u", "c1", RowKind::Command);
        assert_eq!(transcript.flush(), vec![Write::Post(key.clone())]);
        transcript.posted(&key, 10);
        let done = notification(
            "item/completed",
            json!({"threadId": "t", "turnId": "u", "completedAtMs": 2, "item": {
                "type": "commandExecution", "id": "c1", "command": "ls", "cwd": "/w",
                "status": "completed", "commandActions": [], "aggregatedOutput": "line1\nline2\n",
                "exitCode": 0}}),
        );
        apply(&mut transcript, &done, 3, false);
        assert_eq!(transcript.flush(), vec![Write::Update(key.clone(), 10)]);
        let view = transcript.view(&key).unwrap();
        assert_eq!(
            view.content.text, "line1\nline2\n",
            "early output Codex did not stream"
        );
        assert_eq!(view.structured()["exit_code"], 0);
    }

    #[test]
    fn assistant_and_reasoning_deltas_share_nothing() {
        let mut transcript = Transcript::default();
        apply(
            &mut transcript,
            &delta("item/agentMessage/delta", "m", "Hi"),
            1,
            false,
        );
        apply(
            &mut transcript,
            &delta("item/reasoning/summaryTextDelta", "r", "thinking"),
            1,
            false,
        );
        assert_eq!(transcript.flush().len(), 2);
    }

    #[test]
    fn user_messages_are_mirrored_only_for_tui_turns() {
        let done = notification(
            "item/completed",
            json!({"threadId": "t", "turnId": "u", "completedAtMs": 2, "item": {
                "type": "userMessage", "id": "um", "content": [{"type": "text", "text": "from the tui"}]}}),
        );
        let mut chat = Transcript::default();
        apply(&mut chat, &done, 1, false);
        assert!(chat.is_empty());
        let mut tui = Transcript::default();
        apply(&mut tui, &done, 1, true);
        let key = RowKey::new("u", "um", RowKind::UserInput);
        assert_eq!(tui.view(&key).unwrap().content.text, "from the tui");
    }

    #[test]
    fn web_searches_of_a_turn_share_a_row() {
        let mut transcript = Transcript::default();
        for query in ["rust tokio", "rust tokio", "phoenix channels"] {
            let started = notification(
                "item/started",
                json!({"threadId": "t", "turnId": "u", "startedAtMs": 1,
                    "item": {"type": "webSearch", "id": format!("ws-{query}"), "query": query}}),
            );
            apply(&mut transcript, &started, 1, false);
        }
        let view = transcript.view(&web_search_key("u")).unwrap();
        assert_eq!(view.content.queries, vec!["rust tokio", "phoenix channels"]);
    }
}
