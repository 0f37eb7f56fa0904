//! [`Expect`]: one expectation on an item of a log (a [`SessionEvent`] of an
//! [`EventLog`](crate::EventLog), a [`PeerEvent`](crate::PeerEvent) of a
//! [`TestPeer`](crate::TestPeer)) — a description for the failure report and a test — and the
//! matching both logs share: expectations are met *in order*, each by the first item after the
//! previous one's that satisfies it, skipping items that satisfy none (other sessions, events
//! the test does not care about).
//!
//! When a wait runs out, the report lists each expectation with the item that met it (✓) or
//! the first one that was never met (✗), then the items seen, one line each:
//!
//! ```text
//! expected in order, within 10s:
//!   ✓ state → Ringing                       (item 1)
//!   ✗ state → Active                        not seen
//!     terminated with remote hangup
//! seen (3 items):
//!      0  a1b2c3d4 created: inbound sip:alice@127.0.0.1:5062 → sip:sales@127.0.0.1:5060
//!      1  a1b2c3d4 state Initiating → Ringing
//!      2  a1b2c3d4 state Ringing → Failed(rejected: 486 Busy Here)
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::time::Duration;

type Test<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// One expectation on an item: a description (what the failure report prints) and a test.
///
/// Built by the functions of [`crate::event`] (on [`SessionEvent`]s) and [`crate::seen`] (on
/// [`PeerEvent`](crate::PeerEvent)s), or by [`Expect::new`] for anything else; narrowed with
/// [`Expect::and`].
///
/// [`SessionEvent`]: session_core::SessionEvent
pub struct Expect<T> {
    description: String,
    test: Test<T>,
}

impl<T> Expect<T> {
    /// An expectation that `test` holds, described as `description` in reports.
    pub fn new(
        description: impl Into<String>,
        test: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            description: description.into(),
            test: Box::new(test),
        }
    }

    /// This expectation and another condition (`description` is appended to the report's
    /// text).
    #[must_use]
    pub fn and(
        self,
        description: impl fmt::Display,
        test: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Self
    where
        T: 'static,
    {
        let first = self.test;
        Self {
            description: format!("{}, {description}", self.description),
            test: Box::new(move |item| first(item) && test(item)),
        }
    }

    /// Whether `item` meets it.
    pub fn matches(&self, item: &T) -> bool {
        (self.test)(item)
    }

    /// What it expects, in words.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl<T> fmt::Display for Expect<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl<T> fmt::Debug for Expect<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expect").field(&self.description).finish()
    }
}

/// How far a list of expectations has got through a log: which item met each expectation
/// met so far, and where the scan stands.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// For each expectation met so far (in order), the index of the item that met it.
    pub(crate) met: Vec<usize>,
    /// The next item to look at.
    pub(crate) scanned: usize,
}

impl Progress {
    pub(crate) fn from(start: usize) -> Self {
        Self {
            met: Vec::new(),
            scanned: start,
        }
    }

    /// Looks at the items not scanned yet; returns whether every expectation is met.
    pub(crate) fn advance<T, I: Borrow<T>>(&mut self, expects: &[Expect<T>], items: &[I]) -> bool {
        while self.met.len() < expects.len() && self.scanned < items.len() {
            if expects[self.met.len()].matches(items[self.scanned].borrow()) {
                self.met.push(self.scanned);
            }
            self.scanned += 1;
        }
        self.met.len() == expects.len()
    }
}

/// The most lines of seen items a report prints (the newest; the rest are counted).
const REPORT_ITEMS: usize = 60;

/// The failure report of expectations waited for in vain: each expectation with the item
/// that met it, or the first one never met, then the items seen from `start`.
pub(crate) fn report<T, I>(
    expects: &[Expect<T>],
    progress: &Progress,
    items: &[I],
    start: usize,
    within: Duration,
    describe: impl Fn(&I) -> String,
    notes: &[String],
) -> String {
    use fmt::Write as _;
    let mut out = String::new();
    let heading = if expects.len() == 1 {
        "expected"
    } else {
        "expected in order"
    };
    let _ = writeln!(out, "{heading}, within {within:?}:");
    let width = expects
        .iter()
        .map(|e| e.description.chars().count())
        .max()
        .unwrap_or(0);
    for (i, expect) in expects.iter().enumerate() {
        let text = &expect.description;
        let pad = width - text.chars().count();
        match progress.met.get(i) {
            Some(index) => {
                let _ = writeln!(out, "  ✓ {text}{:pad$}  (item {index})", "");
            }
            None if i == progress.met.len() => {
                let _ = writeln!(out, "  ✗ {text}{:pad$}  not seen", "");
            }
            None => {
                let _ = writeln!(out, "    {text}");
            }
        }
    }
    report_items(&mut out, items, start, describe);
    for note in notes {
        let _ = writeln!(out, "  ({note})");
    }
    out
}

/// Appends the items from `start`, one line each, the newest [`REPORT_ITEMS`] of them.
pub(crate) fn report_items<T>(
    out: &mut String,
    items: &[T],
    start: usize,
    describe: impl Fn(&T) -> String,
) {
    use fmt::Write as _;
    let shown = items.get(start..).unwrap_or_default();
    let _ = writeln!(out, "seen ({} item(s)):", shown.len());
    let skip = shown.len().saturating_sub(REPORT_ITEMS);
    if skip > 0 {
        let _ = writeln!(out, "  … {skip} older item(s)");
    }
    for (offset, item) in shown.iter().enumerate().skip(skip) {
        let _ = writeln!(out, "  {:>4}  {}", start + offset, describe(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is(n: u32) -> Expect<u32> {
        Expect::new(format!("is {n}"), move |item| *item == n)
    }

    #[test]
    fn expectations_are_met_in_order_skipping_other_items() {
        let expects = [is(1), is(3)];
        let mut progress = Progress::from(0);
        assert!(!progress.advance(&expects, &[3, 1]));
        assert_eq!(progress.met, [1], "a 3 before the 1 does not count");
        assert!(progress.advance(&expects, &[3, 1, 2, 3]));
        assert_eq!(progress.met, [1, 3]);
        assert_eq!(progress.scanned, 4);
    }

    #[test]
    fn a_report_marks_what_was_met_and_what_was_not() {
        let expects = [is(1), is(7), is(2)];
        let items = [5, 1, 2];
        let mut progress = Progress::from(0);
        assert!(!progress.advance(&expects, &items));
        let text = report(
            &expects,
            &progress,
            &items,
            0,
            Duration::from_secs(1),
            |n| format!("number {n}"),
            &["a note".to_owned()],
        );
        assert!(text.contains("✓ is 1  (item 1)"), "{text}");
        assert!(text.contains("✗ is 7  not seen"), "{text}");
        assert!(text.contains("    is 2\n"), "{text}");
        assert!(text.contains("   2  number 2"), "{text}");
        assert!(text.contains("(a note)"), "{text}");
    }

    #[test]
    fn and_narrows_an_expectation_and_says_so() {
        let odd_three = is(3).and("odd", |n| n % 2 == 1);
        assert!(odd_three.matches(&3));
        assert!(!odd_three.matches(&4));
        assert_eq!(odd_three.to_string(), "is 3, odd");
    }
}
