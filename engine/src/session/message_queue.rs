//! Accepted chat messages waiting for their turn (seed `pendingKandanMessageQueue.ts`):
//! O(1) at both ends, put back at the front after a recoverable failure, and
//! "interrupt queued messages through seq" removes a prefix.
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub seq: i64,
    pub actor_slug: Option<String>,
    pub actor_user_id: Option<i64>,
    pub body: String,
}

#[derive(Debug, Default)]
pub struct MessageQueue {
    messages: VecDeque<QueuedMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    pub selected: Vec<i64>,
    pub remaining: usize,
}

impl MessageQueue {
    pub fn enqueue(&mut self, message: QueuedMessage) {
        self.messages.push_back(message);
    }

    pub fn dequeue(&mut self) -> Option<QueuedMessage> {
        self.messages.pop_front()
    }

    /// Puts a message back first in line (its turn failed in a way worth retrying).
    pub fn requeue_front(&mut self, message: QueuedMessage) {
        self.messages.push_front(message);
    }

    /// Removes every queued message with `seq <= through` (all of them without a bound).
    pub fn interrupt_through(&mut self, through: Option<i64>) -> Interrupted {
        let (selected, kept): (Vec<_>, Vec<_>) = self
            .messages
            .drain(..)
            .partition(|message| through.is_none_or(|through| message.seq <= through));
        self.messages = kept.into();
        Interrupted {
            selected: selected.into_iter().map(|message| message.seq).collect(),
            remaining: self.messages.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn drain(&mut self) -> Vec<QueuedMessage> {
        self.messages.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64) -> QueuedMessage {
        QueuedMessage {
            seq,
            actor_slug: Some("sean".into()),
            actor_user_id: Some(1),
            body: format!("m{seq}"),
        }
    }

    #[test]
    fn first_in_first_out_with_put_back() {
        let mut queue = MessageQueue::default();
        for seq in [1, 2, 3] {
            queue.enqueue(message(seq));
        }
        let first = queue.dequeue().unwrap();
        assert_eq!(first.seq, 1);
        queue.requeue_front(first);
        let order: Vec<i64> = std::iter::from_fn(|| queue.dequeue())
            .map(|m| m.seq)
            .collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn interrupt_through_removes_a_prefix() {
        let mut queue = MessageQueue::default();
        for seq in [4, 5, 9] {
            queue.enqueue(message(seq));
        }
        assert_eq!(
            queue.interrupt_through(Some(5)),
            Interrupted {
                selected: vec![4, 5],
                remaining: 1
            }
        );
        assert_eq!(
            queue.interrupt_through(None),
            Interrupted {
                selected: vec![9],
                remaining: 0
            }
        );
        assert!(queue.is_empty());
    }
}
