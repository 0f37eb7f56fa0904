//! Virtual time: managers, peers and the engine under test on one tokio runtime whose clock
//! is paused, so that timers and timeouts — a 30 s media timeout, a 20 s no-answer timer,
//! Timer B — run without waiting.
//!
//! session-core reads one clock, tokio's (the manager's timers, the SIP transactions' timers,
//! the media tasks' 20 ms ticks, the bridges'). With the clock paused, tokio *auto-advances*:
//! whenever every task is waiting, the clock jumps to the next timer. Loopback sockets in the
//! same process fit in: a datagram sent on loopback is in the receiving socket when the send
//! returns, the runtime sees it before it would advance, and since tokio 1.53.3 a task woken by
//! I/O keeps the clock where it is (older versions jumped to the next timer on every
//! message, which the kit's own tests would catch). So a call set up on loopback takes no
//! virtual time at all, and a test reads like real time without taking it.
//!
//! Two ways in:
//!
//! - `#[tokio::test(start_paused = true)]` on a test (tokio's `test-util` feature in your
//!   dev-dependencies; the runtime is current-thread, which pausing requires);
//! - [`run_paused`], which builds such a runtime and runs a future on it — for a `main` (an
//!   example, a doctest) or a test without tokio's macros.
//!
//! [`Stopwatch`] measures virtual durations ("the agent's phone rang 1 s after the call
//! came").
//!
//! ## What works, and what does not
//!
//! - **Works:** everything inside the process over loopback — any number of
//!   [`SessionManager`](session_core::SessionManager)s, [`TestPeer`](crate::TestPeer)s and the
//!   engine's own tasks and sleeps; RTP, DTMF, bridges, transfers; timers of any length. Every
//!   wait of the kit is bounded by a *virtual* timeout, so a test that hangs fails at once
//!   instead of after the timeout's worth of real time.
//! - **Does not work:** a peer outside the process (SIPp, baresip, a softphone). While the
//!   runtime waits for it, nothing is ready, and the clock jumps to the next timer: the
//!   transaction retransmits and times out in microseconds. Test against real peers in real
//!   time.
//! - **Does not work:** a multi-thread runtime (tokio cannot pause it), and blocking the
//!   runtime's thread (a `std::thread::sleep` stops every manager of the test with it).
//! - **Careful:** the wall clock does not stop. Anything that reads `std::time::Instant` or
//!   `SystemTime` (an engine's business hours, a timestamp in a CDR) sees real time; inject a
//!   clock into such code and set it from the test. `spawn_blocking` work (DNS lookups of host
//!   names: use IP literals) holds the clock still while it runs, which is correct but real.
//! - **Careful:** auto-advance only happens when *everything* waits: a task that never yields
//!   (a busy loop) keeps virtual time still and the test hangs for real.

use crate::error::{Error, Result};
use std::future::Future;
use std::time::Duration;

/// Runs `future` to its end on a new current-thread runtime whose clock starts paused
/// (I/O and timers enabled): every manager, peer and task the future starts lives in virtual
/// time. What [`tokio::test`]`(start_paused = true)` does for a test, for any function.
///
/// ```
/// use std::time::Duration;
///
/// let waited = session_testkit::time::run_paused(async {
///     let watch = session_testkit::time::Stopwatch::start();
///     tokio::time::sleep(Duration::from_secs(3600)).await; // an hour, at once
///     watch.elapsed()
/// })
/// .unwrap();
/// assert!(waited >= Duration::from_secs(3600));
/// ```
pub fn run_paused<F: Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(Error::Runtime)?;
    Ok(runtime.block_on(future))
}

/// Measures durations on tokio's clock: virtual time in a paused runtime, real time otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stopwatch {
    started: tokio::time::Instant,
}

impl Stopwatch {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self { started: now() }
    }

    /// How long since it started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// When it started.
    pub fn started(&self) -> tokio::time::Instant {
        self.started
    }
}

/// The kit's one clock read: tokio's, so virtual in a paused runtime.
pub(crate) fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The instant a wait of `timeout` that starts now must end by.
pub(crate) fn deadline(timeout: Duration) -> tokio::time::Instant {
    now() + timeout
}
