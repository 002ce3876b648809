//! Approval prompts over the freedesktop notification protocol, spoken directly with zbus.
//!
//! notify-rust's `wait_for_action` subscribes to the `ActionInvoked` signal only after the
//! notification is shown, so a quick answer can be lost; and KDE Plasma sends that signal
//! only to the connection that showed the notification. So each prompt gets its own
//! connection that subscribes first, then calls `Notify`, and a thread reads the signals
//! until the prompt is answered or closed. `withdraw` closes the prompt through that same
//! connection; the server's `NotificationClosed` then ends the thread.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use zbus::blocking::{Connection, MessageIterator};
use zbus::message::Type as MessageType;
use zbus::{MatchRule, zvariant};

use super::{
    APPROVE_ACTION, AnswerCallback, ApprovalHandle, ApprovalPrompt, DENY_ACTION, NotifyError,
    OPEN_ACTION, PromptAnswer,
};

const BUS: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
const INTERFACE: &str = "org.freedesktop.Notifications";
/// The `urgency` hint: prompts are routine (normal), not critical; the never-expiring
/// timeout keeps them up, and the tray menu lists them in case one is missed.
const NORMAL: u8 = 1;
/// The `expire_timeout` argument: never.
const NEVER_EXPIRE: i32 = 0;

/// Who sends the notification.
pub struct Sender<'a> {
    pub app_name: &'a str,
    pub icon: &'a str,
}

struct Shown {
    id: u32,
    connection: Connection,
}

/// The prompts on screen, by request id.
#[derive(Clone, Default)]
pub struct ShownPrompts(Arc<Mutex<HashMap<String, Shown>>>);

impl ShownPrompts {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Shown>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the prompt `id` of `request_id`; false if it was already gone (withdrawn).
    fn forget(&self, request_id: &str, id: u32) -> bool {
        let mut shown = self.lock();
        if shown.get(request_id).is_some_and(|shown| shown.id == id) {
            shown.remove(request_id);
            true
        } else {
            false
        }
    }
}

fn failed(error: impl std::fmt::Display) -> NotifyError {
    NotifyError(error.to_string())
}

pub fn show_approval(
    shown: &ShownPrompts,
    sender: &Sender<'_>,
    prompt: &ApprovalPrompt,
    on_answer: AnswerCallback,
) -> Result<ApprovalHandle, NotifyError> {
    withdraw(shown, &prompt.request_id);
    let connection = Connection::session().map_err(failed)?;
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .interface(INTERFACE)
        .map_err(failed)?
        .path(PATH)
        .map_err(failed)?
        .build();
    // Subscribed before Notify, so that no answer can slip past.
    let signals = MessageIterator::for_match_rule(rule, &connection, None).map_err(failed)?;
    let hints = HashMap::from([("urgency", zvariant::Value::U8(NORMAL))]);
    // The default action is a click on the body: it opens the window at the prompt.
    let actions = [
        OPEN_ACTION,
        "Show in Linzumi",
        APPROVE_ACTION,
        "Approve",
        DENY_ACTION,
        "Deny",
    ];
    let reply = connection
        .call_method(
            Some(BUS),
            PATH,
            Some(INTERFACE),
            "Notify",
            &(
                sender.app_name,
                0u32,
                sender.icon,
                prompt.title.as_str(),
                prompt.body.as_str(),
                &actions[..],
                hints,
                NEVER_EXPIRE,
            ),
        )
        .map_err(failed)?;
    let id: u32 = reply.body().deserialize().map_err(failed)?;
    shown.lock().insert(
        prompt.request_id.clone(),
        Shown {
            id,
            connection: connection.clone(),
        },
    );
    let listener = Listener {
        shown: shown.clone(),
        connection,
        id,
        folder_id: prompt.folder_id.clone(),
        request_id: prompt.request_id.clone(),
        on_answer,
    };
    let spawned = std::thread::Builder::new()
        .name(format!("notification-{id}"))
        .spawn(move || listener.run(signals));
    if let Err(error) = spawned {
        withdraw(shown, &prompt.request_id);
        return Err(failed(error));
    }
    Ok(ApprovalHandle {
        request_id: prompt.request_id.clone(),
        notification_id: Some(id),
    })
}

pub fn withdraw(shown: &ShownPrompts, request_id: &str) {
    let removed = shown.lock().remove(request_id);
    if let Some(Shown { id, connection }) = removed {
        close(&connection, id);
    }
}

fn close(connection: &Connection, id: u32) {
    if let Err(error) =
        connection.call_method(Some(BUS), PATH, Some(INTERFACE), "CloseNotification", &id)
    {
        tracing::debug!(%error, id, "could not close a notification");
    }
}

struct Listener {
    shown: ShownPrompts,
    connection: Connection,
    id: u32,
    folder_id: String,
    request_id: String,
    on_answer: AnswerCallback,
}

impl Listener {
    fn run(self, signals: MessageIterator) {
        for message in signals {
            let Ok(message) = message else { break };
            let header = message.header();
            let body = message.body();
            match header.member().map(|member| member.as_str()) {
                Some("ActionInvoked") => {
                    let Ok((id, action)) = body.deserialize::<(u32, String)>() else {
                        continue;
                    };
                    if id != self.id {
                        continue;
                    }
                    let answer = match action.as_str() {
                        APPROVE_ACTION => PromptAnswer::Approve,
                        DENY_ACTION => PromptAnswer::Deny,
                        OPEN_ACTION => {
                            // Shown in the window; the prompt stays to be answered there
                            // (most servers close the notification on a click anyway).
                            (self.on_answer)(&self.folder_id, &self.request_id, PromptAnswer::Open);
                            continue;
                        }
                        _ => continue,
                    };
                    // Some servers keep a notification after an action: take it down.
                    close(&self.connection, self.id);
                    if self.shown.forget(&self.request_id, self.id) {
                        (self.on_answer)(&self.folder_id, &self.request_id, answer);
                    }
                    break;
                }
                Some("NotificationClosed")
                    if body
                        .deserialize::<(u32, u32)>()
                        .is_ok_and(|(id, _reason)| id == self.id) =>
                {
                    self.shown.forget(&self.request_id, self.id);
                    break;
                }
                _ => {}
            }
        }
    }
}
