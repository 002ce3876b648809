//! Codex app-server messages (`codex::jsonrpc`, `codex::protocol`), one per line as a
//! recorded session, driven through what the runner does with them: notifications into
//! the session transcript (`session::codex_items`, `session::transcript`) with Kandan's
//! post replies simulated, server requests into approval answers and prompts, responses
//! into the typed result views.
//!
//! Properties: nothing panics; messages are classified by their members exactly as the
//! module documents; a remembered row is never posted twice and an abandoned one never
//! written again; a flush right after the writes were handled has nothing to do.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use linzumi_engine::codex::jsonrpc::Incoming;
use linzumi_engine::codex::protocol::{
    Notification, ServerRequest, ThreadResult, TurnResult, TurnStatus, TurnSteerResult,
};
use linzumi_engine::codex::thread_not_loaded;
use linzumi_engine::runner::approvals::{PendingApproval, PendingApprovals, request_key};
use linzumi_engine::runner::turns::ActiveTurns;
use linzumi_engine::session::approvals::prompt;
use linzumi_engine::session::codex_items;
use linzumi_engine::session::intake::ListenUser;
use linzumi_engine::session::message_state::reason_for_notification;
use linzumi_engine::session::transcript::{RowKey, Transcript, Write};
use serde::Deserialize;
use serde_json::Value;

const REPLY_TO: i64 = 101;

#[derive(Default)]
struct Session {
    transcript: Transcript,
    turns: ActiveTurns,
    approvals: PendingApprovals,
    /// Rows Kandan holds (posted or being posted), and rows it refused for good.
    posted: HashSet<RowKey>,
    abandoned: HashSet<RowKey>,
    next_seq: i64,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut session = Session::default();
    for (index, line) in text.lines().enumerate() {
        session.forget_evicted();
        session.message(line, index % 2 == 1);
        session.flush();
    }
});

impl Session {
    fn message(&mut self, line: &str, mirror: bool) {
        let parsed = Incoming::parse(line);
        check_classification(line, &parsed);
        match parsed {
            Ok(Incoming::Notification { method, params }) => {
                self.notification(&method, &params, mirror)
            }
            Ok(Incoming::Request { id, method, params }) => self.request(id, &method, &params),
            Ok(Incoming::Response { outcome, .. }) => match outcome {
                Ok(result) => {
                    let _ = ThreadResult::deserialize(&result);
                    let _ = TurnResult::deserialize(&result);
                    let _ = TurnSteerResult::deserialize(&result);
                }
                Err(error) => {
                    let _ = thread_not_loaded(&error.message);
                    let _ = error.to_string();
                }
            },
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }

    fn notification(&mut self, method: &str, params: &Value, mirror: bool) {
        let _ = reason_for_notification(method, params);
        let Ok(notification) = Notification::decode(method, params) else {
            return;
        };
        self.turns.observe(&notification);
        match &notification {
            Notification::TurnCompleted(event) => {
                // As the session driver does when a turn ends.
                self.transcript.finish_turn(&event.turn.id);
                if event.turn.status == TurnStatus::Failed {
                    let message = event.turn.error.as_ref().map(|e| e.message.as_str());
                    codex_items::turn_failed(
                        &mut self.transcript,
                        &event.turn.id,
                        REPLY_TO,
                        message.unwrap_or("the turn failed"),
                    );
                }
                let _ = self.transcript.turn_settled(&event.turn.id);
            }
            Notification::TurnStarted(event) => {
                assert_eq!(
                    self.turns.turn_of(&event.thread_id),
                    Some(event.turn.id.as_str())
                );
            }
            _ => {
                codex_items::apply(&mut self.transcript, &notification, REPLY_TO, mirror);
            }
        }
    }

    fn request(&mut self, id: Value, method: &str, params: &Value) {
        let Ok(request) = ServerRequest::decode(method, params) else {
            return;
        };
        for approve in [true, false] {
            let answer = request.answer(approve);
            match &request {
                ServerRequest::CommandApproval(_) | ServerRequest::FileChangeApproval(_) => {
                    let decision = if approve { "accept" } else { "decline" };
                    assert_eq!(answer["decision"], decision);
                }
                ServerRequest::PermissionsApproval(_) => assert!(answer.is_object()),
                ServerRequest::Unsupported => assert!(answer.is_null()),
            }
        }
        let shown = prompt(&id, method, params, &request, &ListenUser::All, None);
        assert_eq!(shown.request_id, request_key(&id));
        let key = self.approvals.insert(PendingApproval {
            rpc_id: id.clone(),
            method: method.to_owned(),
            request,
        });
        let taken = self
            .approvals
            .take(&key)
            .expect("an approval is found by its key");
        assert_eq!(taken.rpc_id, id);
    }

    /// Performs the transcript's writes as Kandan would answer them: most posts get a
    /// seq, some fail (and are posted again by the next flush), some are refused for good.
    fn flush(&mut self) {
        let writes = self.transcript.flush();
        self.perform(writes, true);
        // Only the posts that failed just now are due again; once they succeed, nothing is.
        let retries = self.transcript.flush();
        assert!(
            retries.iter().all(|write| matches!(write, Write::Post(_))),
            "{retries:?}"
        );
        self.perform(retries, false);
        let idle = self.transcript.flush();
        assert!(
            idle.is_empty(),
            "writes after everything was written: {idle:?}"
        );
    }

    fn perform(&mut self, writes: Vec<Write>, may_fail: bool) {
        for write in writes {
            let key = match write {
                Write::Post(key) => {
                    assert!(!self.posted.contains(&key), "row posted twice: {key:?}");
                    assert!(
                        !self.abandoned.contains(&key),
                        "abandoned row posted: {key:?}"
                    );
                    key
                }
                Write::Update(key, seq) => {
                    assert!(
                        seq > 0 && self.posted.contains(&key),
                        "update of an unposted row"
                    );
                    assert!(
                        !self.abandoned.contains(&key),
                        "abandoned row updated: {key:?}"
                    );
                    self.render(&key);
                    continue;
                }
            };
            self.render(&key);
            self.next_seq += 1;
            match self.next_seq % 13 {
                5 if may_fail => self.transcript.post_failed(&key),
                11 if may_fail => {
                    self.transcript.abandon(&key);
                    self.abandoned.insert(key);
                }
                _ => {
                    self.posted.insert(key.clone());
                    if let Some(Write::Update(updated, seq)) =
                        self.transcript.posted(&key, self.next_seq)
                    {
                        assert_eq!((&updated, seq), (&key, self.next_seq));
                    }
                }
            }
        }
    }

    fn render(&self, key: &RowKey) {
        let view = self
            .transcript
            .view(key)
            .expect("a written row is remembered");
        assert!(view.structured()["kind"].is_string());
        let _ = view.body();
    }

    /// Rows the transcript forgot (finished rows beyond its memory) may come back as new.
    fn forget_evicted(&mut self) {
        let transcript = &self.transcript;
        self.posted.retain(|key| transcript.view(key).is_some());
        self.abandoned.retain(|key| transcript.view(key).is_some());
    }
}

/// `Incoming::parse` classifies by members: `method` (a string) with `id` is a request,
/// without is a notification; `id` with `result` or a well-formed `error` is a response.
fn check_classification(line: &str, parsed: &Result<Incoming, impl std::fmt::Debug>) {
    // The engine's own JSON reader is the reference: serde_json's would take its private
    // raw-value key for a marker, which the runner reads as an ordinary key.
    let Ok(Value::Object(object)) = linzumi_engine::json::from_str(line) else {
        assert!(parsed.is_err(), "{line:?} → {parsed:?}");
        return;
    };
    let has_id = object.contains_key("id");
    let method = object.get("method");
    match parsed {
        Ok(Incoming::Request { method: m, .. }) => {
            assert!(has_id && method.and_then(Value::as_str) == Some(m.as_str()))
        }
        Ok(Incoming::Notification { method: m, .. }) => {
            assert!(!has_id && method.and_then(Value::as_str) == Some(m.as_str()))
        }
        Ok(Incoming::Response { outcome, .. }) => {
            assert!(has_id && method.is_none());
            match outcome {
                Ok(result) => assert!(!object.contains_key("error") && object["result"] == *result),
                Err(_) => assert!(object.contains_key("error")),
            }
        }
        Err(_) => assert!(
            method.is_some_and(|m| !m.is_string())
                || (method.is_none() && !has_id)
                || (method.is_none()
                    && (object.contains_key("error") || !object.contains_key("result")))
        ),
    }
}
