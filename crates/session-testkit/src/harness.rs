//! [`Harness`]: the managers of one test — the engine's and its [`TestPeer`]s — started on
//! loopback, each with its own slice of one media port range, and checked together at the end:
//! every one of them must have released every call, admission slot and RTP port.

use crate::error::{Error, Result};
use crate::events::DEFAULT_TIMEOUT;
use crate::peer::TestPeerBuilder;
use parking_lot::Mutex;
use session_core::crates::events::{EventKind, RecvError};
use session_core::{Filter, SessionManager, SessionManagerBuilder};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

/// The managers a harness checks at the end, by name.
pub(crate) type Tracked = Arc<Mutex<Vec<(String, SessionManager)>>>;

/// Media ports each manager of a harness gets by default: 50 calls with RTP at once.
pub const PORTS_PER_MANAGER: u16 = 100;

/// The managers of one test, on loopback, with media ports handed out from one range, and
/// the end-of-test check that they all let go of everything.
///
/// ```
/// # session_testkit::time::run_paused(async {
/// use session_testkit::{Answer, Harness};
///
/// let harness = Harness::new(37_200..=37_399);
/// let engine = harness.start("engine", harness.manager()?).await?;
/// let bob = harness.peer("bob").answer(Answer::Accept).start().await?;
/// let call = session_testkit::TestCall::from_session(engine.call(&bob.uri()).await?, harness.timeout());
/// call.answered().await?;
/// call.hangup().await?;
/// harness.finish().await?; // both hold nothing any more, and are shut down
/// # Ok::<_, session_testkit::Error>(()) }).unwrap().unwrap();
/// ```
#[derive(Debug)]
pub struct Harness {
    range: RangeInclusive<u16>,
    per_manager: u16,
    /// Slices handed out so far.
    slices: Mutex<u32>,
    tracked: Tracked,
    timeout: Duration,
}

impl Harness {
    /// A harness handing out `media_ports` in slices of [`PORTS_PER_MANAGER`] (give each test
    /// a range of its own: tests of one binary run side by side).
    pub fn new(media_ports: RangeInclusive<u16>) -> Self {
        Self {
            range: media_ports,
            per_manager: PORTS_PER_MANAGER,
            slices: Mutex::new(0),
            tracked: Arc::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Slices of `ports` ports (at least 2: one RTP/RTCP pair) instead.
    #[must_use]
    pub fn ports_per_manager(mut self, ports: u16) -> Self {
        self.per_manager = ports.max(2);
        self
    }

    /// Bounds every wait of the harness and of the peers it starts ([`DEFAULT_TIMEOUT`] by
    /// default).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bound of its waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The next slice of the range.
    pub fn media_ports(&self) -> Result<RangeInclusive<u16>> {
        let mut slices = self.slices.lock();
        let start = u32::from(*self.range.start()) + *slices * u32::from(self.per_manager);
        let end = start + u32::from(self.per_manager) - 1;
        if end > u32::from(*self.range.end()) {
            return Err(Error::PortsExhausted {
                range: self.range.clone(),
                per_manager: self.per_manager,
            });
        }
        *slices += 1;
        // Both are within `range`, whose bounds are u16.
        let (start, end) = (
            u16::try_from(start).unwrap_or(u16::MAX),
            u16::try_from(end).unwrap_or(u16::MAX),
        );
        Ok(start..=end)
    }

    /// A manager builder for the engine under test: SIP on 127.0.0.1 (a port the system
    /// picks), the next slice of media ports, a short shutdown grace. Add the engine's handler
    /// and settings, then [`Harness::start`] it.
    pub fn manager(&self) -> Result<SessionManagerBuilder> {
        Ok(SessionManager::builder()
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .media_ports(self.media_ports()?)
            .shutdown_grace(Duration::from_millis(500)))
    }

    /// Starts `builder` and tracks the manager as `name`.
    pub async fn start(
        &self,
        name: &str,
        builder: SessionManagerBuilder,
    ) -> Result<SessionManager> {
        let manager = builder.start().await?;
        self.track(name, &manager);
        Ok(manager)
    }

    /// Tracks a manager started elsewhere (by the engine's own start-up code), so that
    /// [`Harness::finish`] checks it.
    pub fn track(&self, name: &str, manager: &SessionManager) {
        self.tracked.lock().push((name.to_owned(), manager.clone()));
    }

    /// A test peer for `user` with the next slice of media ports, tracked once started.
    pub fn peer(&self, user: &str) -> TestPeerBuilder {
        TestPeerBuilder::new(user, self.media_ports())
            .tracked(Arc::clone(&self.tracked), self.timeout)
    }

    /// Waits until every tracked manager holds nothing: no call, no admission slot, no RTP
    /// port. Fails naming the first that still does.
    pub async fn assert_released(&self) -> Result<()> {
        let managers = self.tracked.lock().clone();
        for (name, manager) in &managers {
            released(name, manager, self.timeout).await?;
        }
        Ok(())
    }

    /// The end of a test: [`Harness::assert_released`], then every tracked manager is shut
    /// down (also when the check failed).
    pub async fn finish(&self) -> Result<()> {
        let verdict = self.assert_released().await;
        self.shutdown().await;
        verdict
    }

    /// Shuts every tracked manager down.
    pub async fn shutdown(&self) {
        let managers = self.tracked.lock().clone();
        for (_, manager) in &managers {
            manager.shutdown().await;
        }
    }
}

/// Waits until `manager` holds nothing. A session's counts drop before its
/// `SessionTerminated` is published ("terminated" means "released"), so the counts are read
/// again after each one, and between them nothing is polled.
pub(crate) async fn released(
    name: &str,
    manager: &SessionManager,
    timeout: Duration,
) -> Result<()> {
    let mut ends = manager
        .events()
        .subscribe(Filter::kind(EventKind::SessionTerminated));
    let deadline = crate::time::deadline(timeout);
    loop {
        let (calls, admitted, ports) = (
            manager.active_calls(),
            manager.admission().active(),
            manager.ports().in_use(),
        );
        if calls == 0 && admitted == 0 && ports == 0 {
            return Ok(());
        }
        let more = match tokio::time::timeout_at(deadline, ends.recv()).await {
            Ok(Ok(_) | Err(RecvError::Lagged(_))) => true,
            // The bus is gone (the manager with it), or time is up: nothing more will change.
            Ok(Err(_)) | Err(_) => false,
        };
        if !more {
            return Err(Error::NotReleased {
                name: name.to_owned(),
                calls: manager.active_calls(),
                admitted: manager.admission().active(),
                ports: manager.ports().in_use(),
                after: timeout,
            });
        }
    }
}
