//! A log shared between a recorder that must never wait (a handler callback on the manager's
//! task) and a test that waits on it: items behind a short lock, a `watch` of their count to
//! wake waiters, a cursor for the expectation waits, and a bound on the memory it takes.

use crate::error::{Error, Result};
use crate::expect::{self, Expect, Progress};
use parking_lot::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// The most items a recording keeps; later ones are counted, not kept (a test that records
/// more has lost track of what it checks).
pub(crate) const MAX_ITEMS: usize = 100_000;

struct Items<T> {
    items: Vec<T>,
    /// Where the expectation waits resume.
    cursor: usize,
    /// Items not kept, beyond [`MAX_ITEMS`].
    dropped: u64,
}

/// Items recorded in order, waited on with bounded waits.
pub(crate) struct Recording<T> {
    items: Mutex<Items<T>>,
    /// The number of items recorded so far (dropped ones included).
    count: watch::Sender<u64>,
}

impl<T: Clone> Recording<T> {
    pub(crate) fn new() -> Self {
        Self {
            items: Mutex::new(Items {
                items: Vec::new(),
                cursor: 0,
                dropped: 0,
            }),
            count: watch::Sender::new(0),
        }
    }

    /// Records `item`; never waits beyond the short lock.
    pub(crate) fn push(&self, item: T) {
        let mut items = self.items.lock();
        if items.items.len() < MAX_ITEMS {
            items.items.push(item);
        } else {
            items.dropped += 1;
        }
        drop(items);
        self.count.send_modify(|count| *count += 1);
    }

    /// Every item so far.
    pub(crate) fn all(&self) -> Vec<T> {
        self.items.lock().items.clone()
    }

    /// The items from `from` on (none when there are fewer).
    fn from(&self, from: usize) -> Vec<T> {
        self.items
            .lock()
            .items
            .get(from..)
            .map(<[T]>::to_vec)
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.items.lock().items.len()
    }

    /// Waits until an item at or after `index` meets `test`; returns its index and the item.
    /// For consumers with a cursor of their own (the peer's incoming calls).
    pub(crate) async fn next_where(
        &self,
        index: usize,
        test: impl Fn(&T) -> bool,
        timeout: Duration,
        what: &str,
    ) -> Result<(usize, T)> {
        let mut count = self.count.subscribe();
        let deadline = crate::time::deadline(timeout);
        let mut next = index;
        loop {
            // Marked seen before reading, so an item pushed in between still wakes us.
            count.borrow_and_update();
            for item in self.from(next) {
                if test(&item) {
                    return Ok((next, item));
                }
                next += 1;
            }
            match tokio::time::timeout_at(deadline, count.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`: it cannot be dropped while we wait.
                Ok(Err(_)) => return Err(Error::Stopped(what.to_owned())),
                Err(_) => return Err(Error::timed_out(what, timeout)),
            }
        }
    }

    /// [`crate::EventLog::expect_in_order`] for this recording, from its cursor.
    pub(crate) async fn expect_in_order(
        &self,
        expects: &[Expect<T>],
        timeout: Duration,
        describe: impl Fn(&T) -> String,
    ) -> Result<Vec<T>> {
        let mut count = self.count.subscribe();
        let start = self.items.lock().cursor;
        let mut progress = Progress::from(start);
        let deadline = crate::time::deadline(timeout);
        loop {
            count.borrow_and_update();
            {
                let mut items = self.items.lock();
                if progress.advance(expects, &items.items) {
                    if let Some(last) = progress.met.last() {
                        items.cursor = last + 1;
                    }
                    return Ok(progress
                        .met
                        .iter()
                        .map(|&i| items.items[i].clone())
                        .collect());
                }
            }
            let more = tokio::time::timeout_at(deadline, count.changed()).await;
            if !matches!(more, Ok(Ok(()))) {
                let items = self.items.lock();
                let mut notes = Vec::new();
                if items.dropped > 0 {
                    notes.push(format!(
                        "{} later item(s) were not kept (at most {MAX_ITEMS})",
                        items.dropped
                    ));
                }
                if start > 0 {
                    notes.push(format!(
                        "items before {start} were matched by earlier waits"
                    ));
                }
                return Err(Error::Expectation(expect::report(
                    expects,
                    &progress,
                    &items.items,
                    start,
                    timeout,
                    describe,
                    &notes,
                )));
            }
        }
    }

    /// [`crate::EventLog::expect_none`] for this recording, from its cursor.
    pub(crate) async fn expect_none(
        &self,
        expect: &Expect<T>,
        window: Duration,
        describe: impl Fn(&T) -> String,
    ) -> Result<()> {
        let mut count = self.count.subscribe();
        let start = self.items.lock().cursor;
        let deadline = crate::time::deadline(window);
        let mut next = start;
        loop {
            count.borrow_and_update();
            for item in self.from(next) {
                if expect.matches(&item) {
                    let mut text = format!(
                        "expected nothing like \"{expect}\" within {window:?}, but item {next} is:\n"
                    );
                    let items = self.items.lock();
                    expect::report_items(&mut text, &items.items, start, &describe);
                    return Err(Error::Expectation(text));
                }
                next += 1;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, count.changed()).await,
                Ok(Ok(()))
            ) {
                return Ok(());
            }
        }
    }

    /// Moves the cursor past everything recorded so far.
    pub(crate) fn skip_seen(&self) {
        let len = self.len();
        self.items.lock().cursor = len;
    }
}
