//! Datagrams waiting for [`crate::BridgeEngine::poll_transmit`]: one byte buffer and a queue of
//! ranges in it. The buffer is emptied when the queue has been drained and something new is
//! written, so at steady state (the caller drains after every input) it never reallocates.

use std::collections::VecDeque;
use std::ops::Range;

use session_types::SessionId;

use crate::event::{Transmit, TransmitKind};

#[derive(Debug)]
struct Queued {
    from: SessionId,
    kind: TransmitKind,
    bytes: Range<usize>,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    queue: VecDeque<Queued>,
    capacity: usize,
    /// Datagrams not queued because the queue was full (the caller did not drain it).
    pub(crate) overflowed: u64,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::new(),
            queue: VecDeque::new(),
            capacity,
            overflowed: 0,
        }
    }

    /// Whether one more datagram fits; counts the overflow when it does not.
    pub(crate) fn has_room(&mut self) -> bool {
        if self.queue.len() < self.capacity {
            true
        } else {
            self.overflowed += 1;
            false
        }
    }

    /// Queues the datagram `write` appends to the buffer.
    pub(crate) fn push(
        &mut self,
        from: SessionId,
        kind: TransmitKind,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.queue.is_empty() {
            self.buf.clear();
        }
        let start = self.buf.len();
        write(&mut self.buf);
        let end = self.buf.len();
        if end > start {
            self.queue.push_back(Queued {
                from,
                kind,
                bytes: start..end,
            });
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Transmit<'_>> {
        let q = self.queue.pop_front()?;
        Some(Transmit {
            from: q.from,
            kind: q.kind,
            data: self.buf.get(q.bytes).unwrap_or_default(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
