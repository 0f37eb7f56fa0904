//! The four transaction state machines of RFC 3261 §17, with RFC 6026's `Accepted` state for
//! INVITE 2xx responses.
//!
//! Each machine is message-agnostic: it stores the bytes it may have to retransmit and is told
//! the status code of what arrives, so the layer above (which parses and matches messages)
//! decides *which* transaction a message belongs to, and the machine decides *what happens*.
//! After every input, drain [`ClientInvite::poll_action`] (or its siblings) and re-arm the timer
//! at `deadline()`.
//!
//! | machine | RFC | timers |
//! | --- | --- | --- |
//! | [`ClientInvite`] | §17.1.1, RFC 6026 §7.2 | A (retransmit), B (timeout), D (absorb), M (accepted) |
//! | [`ClientNonInvite`] | §17.1.2 | E (retransmit), F (timeout), K (absorb) |
//! | [`ServerInvite`] | §17.2.1, RFC 6026 §7.1 | 100 Trying, G (retransmit), H (ACK wait), I (absorb), L (accepted) |
//! | [`ServerNonInvite`] | §17.2.2 | J (absorb) |

mod client_invite;
mod client_non_invite;
pub(crate) mod deadlines;
mod server_invite;
mod server_non_invite;
pub(crate) mod table;
mod timers;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use table::{Transaction, TransactionId, TransactionTable};
pub use timers::{TimerConfig, Transport};

use bytes::Bytes;

/// Something a transaction asks its owner to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer (a request, a retransmission, an ACK, a
    /// response).
    Transmit(Bytes),
    /// Build a `100 Trying` for the INVITE and give it to [`ServerInvite::send_response`]:
    /// the transaction user has not answered within 200 ms (§17.2.1).
    SendTrying,
    /// The transaction gave up: Timer B or F (no final response) or Timer H (no ACK for a
    /// final non-2xx response). The transaction user should treat it as a 408.
    TimedOut,
    /// The transaction is over; its owner removes it from its maps.
    Terminated,
}

/// A machine's queued actions. Most inputs queue one action at a time (a transmission, a
/// timeout, the end), which is kept inline; a queue is allocated only when a second one comes
/// before the first is polled.
#[derive(Debug, Default)]
enum ActionQueue {
    #[default]
    Empty,
    One(Action),
    Many(std::collections::VecDeque<Action>),
}

impl ActionQueue {
    fn push_back(&mut self, action: Action) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(action),
            Self::One(first) => Self::Many([first, action].into()),
            Self::Many(mut queue) => {
                queue.push_back(action);
                Self::Many(queue)
            }
        };
    }

    fn pop_front(&mut self) -> Option<Action> {
        match self {
            Self::Empty => None,
            Self::One(_) => match std::mem::take(self) {
                Self::One(action) => Some(action),
                _ => None,
            },
            Self::Many(queue) => queue.pop_front(),
        }
    }

    /// Frees a drained queue's buffer: most of a transaction's life is spent waiting for a
    /// timer with nothing queued.
    fn release(&mut self) {
        if let Self::Many(queue) = self
            && queue.is_empty()
        {
            *self = Self::Empty;
        }
    }
}

/// The earliest of a machine's armed timers.
fn earliest<const N: usize>(timers: [Option<std::time::Instant>; N]) -> Option<std::time::Instant> {
    timers.into_iter().flatten().min()
}

/// What to do with a message a transaction was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the message to the transaction user (the dialog or application layer).
    PassUp,
    /// The transaction handled it (a retransmission); do not hand it up.
    Absorbed,
}
