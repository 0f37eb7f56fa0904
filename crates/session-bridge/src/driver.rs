//! [`BridgeDriver`]: a thin tokio driver that runs one [`BridgeEngine`] on real sockets.
//!
//! # Shape
//!
//! - The engine lives in one `parking_lot::Mutex` together with every bridged leg's
//!   [`EndpointParts`] (its sockets, remote addresses, codec, latching state). No lock is
//!   ever held across an `.await`.
//! - One small **reader task per bridged leg** receives on the leg's RTP socket (and its RTCP
//!   socket without rtcp-mux), locks, feeds [`BridgeEngine::handle_rtp`] or
//!   [`BridgeEngine::handle_rtcp`], and sends a [`RtpAction::Forward`] at once from the
//!   listener's socket to the listener's peer with the non-blocking `try_send_to`: a full
//!   socket buffer drops the datagram and counts it ([`DriverStats::send_dropped`]).
//! - One **ticker task** sleeps until [`BridgeEngine::poll_timeout`] (woken early by a
//!   `tokio::sync::Notify` when an input or an operation moves the schedule forward), runs
//!   [`BridgeEngine::handle_timeout`] and sends every [`BridgeEngine::poll_transmit`] the same
//!   way.
//! - [`BridgeEvent`]s go to a bounded `tokio::sync::mpsc` channel the owner reads; when it is
//!   full an event is dropped and counted ([`DriverStats::events_dropped`]). Every queue
//!   between tasks is bounded: the engine's own output queue, and this channel.
//! - Time is read here only, as `tokio::time::Instant::now().into_std()` (so tests can run on
//!   tokio's paused clock); the engine stays sans-IO.
//!
//! # Legs in and out
//!
//! A call's leg comes in as [`EndpointParts`] (from `RtpEndpoint::into_leg`) with
//! [`BridgeDriver::add_member`] and goes back out, its reader task stopped and its outgoing
//! stream advanced, with [`BridgeDriver::remove_member`], [`BridgeDriver::destroy_bridge`] or
//! [`BridgeDriver::shutdown`] — ready for `RtpEndpoint::from_parts`, which continues the same
//! stream (one SSRC, contiguous sequence numbers, timestamps on the sampling clock, SR counts).
//! The port lease travels inside the parts, so the ports stay leased while the leg is bridged.
//!
//! Symmetric RTP as `RtpEndpoint` does it: a leg with latching on that has not latched yet
//! latches to the source of its first valid RTP packet; after that, RTP from any other source
//! is dropped and counted (in the leg's `counters.foreign` and [`DriverStats::foreign`]).
//!
//! # Tasks end with the driver
//!
//! Every task stops when its leg leaves, on [`BridgeDriver::shutdown`], or when the last
//! handle is dropped (the legs still inside are then dropped: sockets closed, ports given
//! back). [`DriverProbe`] watches the number of live tasks without keeping anything alive.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use session_media::endpoint::EndpointParts;
use session_media::rtcp::NtpClock;
use session_media::rtp::MAX_PACKET;
use session_types::SessionId;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::{BridgeEngine, BridgeId, EngineConfig, TechnologyChoice};
use crate::error::{Error, Result};
use crate::event::{BridgeEvent, DropReason, RtpAction, TransmitKind};
use crate::leg::{Codec, Leg, StreamState};
use crate::member::JoinSettings;
use crate::mix::Gain;
use crate::stats::{BridgeStats, MemberStats, Resources};

/// The driver's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverConfig {
    /// The engine's settings.
    pub engine: EngineConfig,
    /// Events that may wait in the channel for the owner; beyond it they are dropped and
    /// counted.
    pub event_capacity: usize,
}

impl DriverConfig {
    /// The engine's defaults with its RTCP wall clock anchored now (on tokio's clock), and
    /// room for 256 events.
    pub fn new() -> Self {
        let ntp = NtpClock::new(SystemTime::now(), now());
        Self {
            engine: EngineConfig::new(ntp),
            event_capacity: 256,
        }
    }

    /// Sets the engine's settings.
    #[must_use]
    pub fn engine(mut self, engine: EngineConfig) -> Self {
        self.engine = engine;
        self
    }

    /// Sets the event channel's capacity (at least 1).
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The driver's own counters, and what it and its engine hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Legs bridged now (each with its reader task).
    pub legs: usize,
    /// Tasks alive: the ticker and one reader per leg (0 once shut down or dropped).
    pub tasks: usize,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams dropped because a socket's send buffer was full (`try_send_to` would block).
    pub send_dropped: u64,
    /// Datagrams dropped because the sending leg has no remote address yet (nothing latched
    /// or set).
    pub no_remote: u64,
    /// Sends that failed for another reason.
    pub send_errors: u64,
    /// Receives that failed (the reader goes on).
    pub recv_errors: u64,
    /// RTP datagrams from a source other than the latched one, dropped.
    pub foreign: u64,
    /// Events dropped because the owner's channel was full or closed.
    pub events_dropped: u64,
    /// What the engine holds.
    pub engine: Resources,
}

/// Watches a driver's tasks without keeping the driver alive (for tests and shutdown checks).
#[derive(Debug, Clone)]
pub struct DriverProbe {
    tasks: watch::Receiver<usize>,
}

impl DriverProbe {
    /// Tasks alive now.
    pub fn tasks(&self) -> usize {
        *self.tasks.borrow()
    }

    /// Waits until no task of the driver is alive.
    pub async fn stopped(&mut self) {
        // An error means the count's sender is gone, which happens only after every task
        // ended: stopped either way.
        let _ = self.tasks.wait_for(|n| *n == 0).await;
    }
}

/// A cloneable handle to a running bridge driver (see the module docs). Dropping the last
/// handle stops every task and drops the legs still bridged; [`BridgeDriver::shutdown`] hands
/// them back instead.
#[derive(Debug, Clone)]
pub struct BridgeDriver {
    handle: Arc<Handle>,
}

/// The owners' side: when the last handle goes, the tasks go.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.closed = true;
        st.events = None;
        if let Some(ticker) = st.ticker.take() {
            ticker.abort();
        }
        for leg in st.legs.values_mut() {
            if let Some(reader) = leg.reader.take() {
                reader.abort();
            }
        }
    }
}

/// What the tasks share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the ticker when its deadline moved earlier.
    wake: Notify,
    /// Tasks alive.
    tasks: watch::Sender<usize>,
    /// Where reader tasks are spawned (so `add_member` works from any thread).
    runtime: tokio::runtime::Handle,
}

#[derive(Debug)]
struct State {
    engine: BridgeEngine,
    legs: HashMap<SessionId, Bridged>,
    /// `None` once shut down: the owner's receiver then ends.
    events: Option<mpsc::Sender<BridgeEvent>>,
    ticker: Option<JoinHandle<()>>,
    /// What the ticker sleeps until.
    ticker_deadline: Option<Instant>,
    closed: bool,
    stats: DriverStats,
}

/// A leg inside the driver.
#[derive(Debug)]
struct Bridged {
    /// The leg's sockets and state; `sender` and `reception` are stale while bridged (the
    /// engine's copy is current) and brought up to date when the leg leaves.
    parts: EndpointParts,
    reader: Option<JoinHandle<()>>,
}

/// A leg on its way out: the engine's half, the driver's half, and its last figures.
struct Leaving {
    session: SessionId,
    bridged: Bridged,
    leg: Leg,
    stats: Option<MemberStats>,
}

/// The driver's clock: tokio's, so a paused test clock drives it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Counts a task alive for as long as it exists (dropped with the task's future, aborted or
/// not).
struct Running(Arc<Shared>);

impl Running {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.tasks.send_modify(|n| *n += 1);
        Self(Arc::clone(shared))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.tasks.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl BridgeDriver {
    /// Starts a driver (its ticker task) and returns a handle and the receiver of its events.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn start(config: DriverConfig) -> (Self, mpsc::Receiver<BridgeEvent>) {
        let (events, receiver) = mpsc::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                engine: BridgeEngine::new(config.engine),
                legs: HashMap::new(),
                events: Some(events),
                ticker: None,
                ticker_deadline: None,
                closed: false,
                stats: DriverStats::default(),
            }),
            wake: Notify::new(),
            tasks: watch::Sender::new(0),
            runtime: tokio::runtime::Handle::current(),
        });
        let running = Running::new(&shared);
        let ticker = shared.runtime.spawn(ticker(running));
        shared.state.lock().ticker = Some(ticker);
        let driver = Self {
            handle: Arc::new(Handle { shared }),
        };
        (driver, receiver)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Runs an operation on the engine, then sends what it produced.
    fn operate<R>(&self, op: impl FnOnce(&mut BridgeEngine, Instant) -> Result<R>) -> Result<R> {
        let shared = self.shared();
        let mut st = shared.state.lock();
        if st.closed {
            return Err(Error::DriverClosed);
        }
        let result = op(&mut st.engine, now());
        shared.flush(&mut st);
        result
    }

    // ---- getters ----

    /// The bridge a session is in.
    pub fn bridge_of(&self, session: SessionId) -> Option<BridgeId> {
        self.shared().state.lock().engine.bridge_of(session)
    }

    /// The members of a bridge.
    pub fn members(&self, bridge: BridgeId) -> Option<Vec<SessionId>> {
        let st = self.shared().state.lock();
        st.engine.members(bridge).map(<[SessionId]>::to_vec)
    }

    /// A bridge's counters.
    pub fn stats(&self, bridge: BridgeId) -> Option<BridgeStats> {
        self.shared().state.lock().engine.stats(bridge)
    }

    /// A member's counters and its leg's figures.
    pub fn member_stats(&self, session: SessionId) -> Option<MemberStats> {
        self.shared().state.lock().engine.member_stats(session)
    }

    /// The driver's counters and what it holds.
    pub fn driver_stats(&self) -> DriverStats {
        let shared = self.shared();
        let st = shared.state.lock();
        DriverStats {
            legs: st.legs.len(),
            tasks: *shared.tasks.borrow(),
            engine: st.engine.resources(),
            ..st.stats
        }
    }

    /// A probe on the driver's tasks that does not keep them alive.
    pub fn probe(&self) -> DriverProbe {
        DriverProbe {
            tasks: self.shared().tasks.subscribe(),
        }
    }

    // ---- operations ----

    /// Creates an empty bridge.
    pub fn create_bridge(&self, technology: TechnologyChoice) -> Result<BridgeId> {
        self.operate(|engine, _| Ok(engine.create_bridge(technology)))
    }

    /// Bridges a call's leg: its sockets and state move in and a reader task starts on its
    /// sockets. The outgoing stream continues from `parts.sender`. On refusal (an unknown
    /// bridge, a session already bridged, a leg the engine cannot carry, a driver shut down)
    /// the parts come back untouched with the reason.
    // The parts come back by value on the rare refusal, so the caller's leg keeps one owner.
    #[allow(clippy::result_large_err)]
    pub fn add_member(
        &self,
        bridge: BridgeId,
        session: SessionId,
        parts: EndpointParts,
    ) -> Result<(), (Error, EndpointParts)> {
        self.add_member_with(bridge, session, parts, &JoinSettings::default())
    }

    /// [`BridgeDriver::add_member`] with settings in force from the leg's first packet (see
    /// [`JoinSettings`]).
    #[allow(clippy::result_large_err)]
    pub fn add_member_with(
        &self,
        bridge: BridgeId,
        session: SessionId,
        parts: EndpointParts,
        settings: &JoinSettings,
    ) -> Result<(), (Error, EndpointParts)> {
        let shared = self.shared();
        let leg = leg_of(&parts);
        let mut st = shared.state.lock();
        if st.closed {
            return Err((Error::DriverClosed, parts));
        }
        if let Err(refused) = st
            .engine
            .add_member_with(now(), bridge, session, leg, settings)
        {
            return Err((refused.error, parts));
        }
        let reader = shared.runtime.spawn(reader(
            Running::new(shared),
            session,
            Arc::clone(&parts.rtp),
            parts.rtcp.clone(),
        ));
        st.legs.insert(
            session,
            Bridged {
                parts,
                reader: Some(reader),
            },
        );
        shared.flush(&mut st);
        Ok(())
    }

    /// Takes a session's leg out of its bridge and hands it back: its reader task stopped, its
    /// outgoing stream advanced to now (packets already queued for it are sent first), its
    /// reception statistics and RTCP figures current — ready for `RtpEndpoint::from_parts`.
    ///
    /// A datagram the reader had just received when the leg left is dropped. If this future
    /// is dropped before it completes, the leg is dropped with it (sockets closed, ports
    /// given back).
    pub async fn remove_member(&self, session: SessionId) -> Result<EndpointParts> {
        let leaving = {
            let shared = self.shared();
            let mut st = shared.state.lock();
            if st.closed {
                return Err(Error::DriverClosed);
            }
            let stats = st.engine.member_stats(session);
            let leg = st.engine.remove_member(now(), session)?;
            shared.flush(&mut st);
            let bridged = st.legs.remove(&session);
            bridged.map(|bridged| Leaving {
                session,
                bridged,
                leg,
                stats,
            })
        };
        let leaving = leaving.ok_or(Error::NotBridged(session))?;
        let mut legs = hand_back(vec![leaving]).await;
        legs.pop()
            .map(|(_, parts)| parts)
            .ok_or(Error::NotBridged(session))
    }

    /// Destroys a bridge and hands every member's leg back (as [`BridgeDriver::remove_member`]
    /// does).
    pub async fn destroy_bridge(
        &self,
        bridge: BridgeId,
    ) -> Result<Vec<(SessionId, EndpointParts)>> {
        let leaving = {
            let shared = self.shared();
            let mut st = shared.state.lock();
            if st.closed {
                return Err(Error::DriverClosed);
            }
            let leaving = take_bridge(&mut st, bridge)?;
            shared.flush(&mut st);
            leaving
        };
        Ok(hand_back(leaving).await)
    }

    /// Moves a member to another bridge without it leaving the engine (its stream goes on).
    pub fn move_member(&self, session: SessionId, to: BridgeId) -> Result<()> {
        self.operate(|engine, now| engine.move_member(now, session, to))
    }

    /// Moves every member of `from` into `into` and destroys `from`.
    pub fn merge(&self, from: BridgeId, into: BridgeId) -> Result<()> {
        self.operate(|engine, now| engine.merge(now, from, into))
    }

    /// Mutes or unmutes a member (see [`BridgeEngine::set_muted`]).
    pub fn set_muted(&self, session: SessionId, muted: bool) -> Result<()> {
        self.operate(|engine, now| engine.set_muted(now, session, muted))
    }

    /// Applies new media terms to a bridged leg (a re-INVITE or UPDATE of its call): the
    /// peer's addresses and payload types in the driver, the codec in the engine
    /// ([`BridgeEngine::update_leg`]).
    pub fn reconfigure(
        &self,
        session: SessionId,
        media: &session_media::sdp::negotiate::NegotiatedMedia,
    ) -> Result<()> {
        let shared = self.shared();
        let mut st = shared.state.lock();
        if st.closed {
            return Err(Error::DriverClosed);
        }
        let bridged = st
            .legs
            .get_mut(&session)
            .ok_or(Error::NotBridged(session))?;
        bridged
            .parts
            .configure(media)
            .map_err(|_| Error::InvalidLeg("the negotiated codec is not G.711"))?;
        let parts = &bridged.parts;
        let (codec, event, receive) = (
            Codec::new(parts.law, parts.audio_pt),
            parts.event_pt,
            parts.receive_event_pt,
        );
        st.engine
            .update_leg(now(), session, codec, event, receive)?;
        shared.flush(&mut st);
        Ok(())
    }

    /// Stops or resumes sending to a member's peer (see [`BridgeEngine::set_sending`]).
    pub fn set_sending(&self, session: SessionId, sending: bool) -> Result<()> {
        self.operate(|engine, _| engine.set_sending(session, sending))
    }

    /// Makes a member deaf or hearing again (see [`BridgeEngine::set_deaf`]).
    pub fn set_deaf(&self, session: SessionId, deaf: bool) -> Result<()> {
        self.operate(|engine, now| engine.set_deaf(now, session, deaf))
    }

    /// Sets the gain `listener` hears `talker` with (see [`BridgeEngine::set_gain`]).
    pub fn set_gain(&self, listener: SessionId, talker: SessionId, gain: Gain) -> Result<()> {
        self.operate(|engine, now| engine.set_gain(now, listener, talker, gain))
    }

    /// Stops the driver: every bridge is destroyed, every leg handed back (as
    /// [`BridgeDriver::remove_member`] does), every task stopped before this returns, and the
    /// event channel closed after the last events. Later operations answer
    /// [`Error::DriverClosed`]; a second shutdown returns nothing.
    pub async fn shutdown(&self) -> Vec<(SessionId, EndpointParts)> {
        let (leaving, ticker) = {
            let shared = self.shared();
            let mut st = shared.state.lock();
            if st.closed {
                return Vec::new();
            }
            st.closed = true;
            let bridges: Vec<BridgeId> = st.engine.bridges().collect();
            let mut leaving = Vec::new();
            for bridge in bridges {
                if let Ok(mut legs) = take_bridge(&mut st, bridge) {
                    leaving.append(&mut legs);
                }
            }
            shared.flush(&mut st);
            st.events = None;
            (leaving, st.ticker.take())
        };
        if let Some(ticker) = ticker {
            ticker.abort();
            // The ticker was aborted: the join error says so and means nothing more.
            let _ = ticker.await;
        }
        hand_back(leaving).await
    }
}

/// Takes a bridge's members out of the engine and the leg map (the caller flushes).
fn take_bridge(st: &mut State, bridge: BridgeId) -> Result<Vec<Leaving>> {
    let members = st
        .engine
        .members(bridge)
        .ok_or(Error::UnknownBridge(bridge))?
        .to_vec();
    let mut stats: HashMap<SessionId, MemberStats> = members
        .iter()
        .filter_map(|s| st.engine.member_stats(*s).map(|m| (*s, m)))
        .collect();
    let legs = st.engine.destroy_bridge(now(), bridge)?;
    Ok(legs
        .into_iter()
        .filter_map(|(session, leg)| {
            st.legs.remove(&session).map(|bridged| Leaving {
                session,
                bridged,
                leg,
                stats: stats.remove(&session),
            })
        })
        .collect())
}

/// Stops the legs' readers and waits until they are gone (so nothing reads the sockets any
/// more), then writes the engine's figures back into the parts.
async fn hand_back(leaving: Vec<Leaving>) -> Vec<(SessionId, EndpointParts)> {
    for l in &leaving {
        if let Some(reader) = &l.bridged.reader {
            reader.abort();
        }
    }
    let mut legs = Vec::with_capacity(leaving.len());
    for mut l in leaving {
        if let Some(reader) = l.bridged.reader.take() {
            // Aborted above: the join error only says so.
            let _ = reader.await;
        }
        let mut parts = l.bridged.parts;
        parts.sender = l.leg.stream.to_sender_state();
        parts.reception = l.leg.reception;
        if let Some(stats) = l.stats {
            if stats.rtt.is_some() {
                parts.rtt = stats.rtt;
            }
            if let Some(fraction) = stats.remote_fraction_lost {
                parts.remote_fraction_lost = f64::from(fraction);
            }
        }
        legs.push((l.session, parts));
    }
    legs
}

/// The engine's view of a leg.
fn leg_of(parts: &EndpointParts) -> Leg {
    let mut leg = Leg::new(
        Codec::new(parts.law, parts.audio_pt),
        StreamState::from_sender_state(&parts.sender),
    )
    .with_reception(parts.reception.clone())
    .with_cname(parts.config.cname.clone());
    // Events go to the peer with its number and come from it with ours (RFC 3264 §6.1).
    if let Some(pt) = parts.event_pt {
        leg = leg.with_telephone_event(pt);
    }
    match parts.receive_event_pt {
        Some(pt) if Some(pt) != parts.event_pt => leg.with_receive_telephone_event(pt),
        _ => leg,
    }
}

impl Shared {
    /// Sends what the engine queued, hands its events to the owner, and wakes the ticker if
    /// the engine's next deadline is now earlier than the one it sleeps until.
    fn flush(&self, st: &mut State) {
        self.drain(st);
        let next = st.engine.poll_timeout();
        let earlier = match (next, st.ticker_deadline) {
            (None, _) => false,
            (Some(next), Some(sleeping_until)) => next < sleeping_until,
            (Some(_), None) => true,
        };
        if earlier {
            st.ticker_deadline = next;
            self.wake.notify_one();
        }
    }

    /// Sends every queued datagram and passes every event on.
    fn drain(&self, st: &mut State) {
        let State {
            engine,
            legs,
            events,
            stats,
            ..
        } = st;
        while let Some(t) = engine.poll_transmit() {
            send(legs, stats, t.from, t.kind, t.data);
        }
        while let Some(event) = engine.poll_event() {
            let delivered = events.as_ref().is_some_and(|tx| tx.try_send(event).is_ok());
            if !delivered {
                stats.events_dropped += 1;
            }
        }
    }

    /// An RTP-socket datagram for `session` (RTP, or RTCP with rtcp-mux).
    fn on_rtp(
        &self,
        now: Instant,
        session: SessionId,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) {
        let mut st = self.state.lock();
        let State {
            engine,
            legs,
            stats,
            ..
        } = &mut *st;
        let Some(leg) = legs.get_mut(&session) else {
            return; // the leg is leaving
        };
        let datagram = buf.get(..len).unwrap_or_default();
        if !session_media::rtcp::is_rtcp(datagram) && session_media::rtp::parse(datagram).is_ok() {
            if !leg.parts.accept_rtp_from(src) {
                leg.parts.counters.foreign += 1;
                stats.foreign += 1;
                return;
            }
            leg.parts.last_rx = now;
        }
        match engine.handle_rtp(now, session, buf, len) {
            RtpAction::Forward { from, len } => {
                let data = buf.get(..len).unwrap_or_default();
                send(legs, stats, from, TransmitKind::Rtp, data);
            }
            // The leg's own counters, as its endpoint would have kept them.
            RtpAction::Dropped(reason) => {
                if let Some(leg) = legs.get_mut(&session) {
                    match reason {
                        DropReason::Malformed => leg.parts.counters.malformed += 1,
                        DropReason::UnknownPayloadType(_) => {
                            leg.parts.counters.unknown_payload_type += 1;
                        }
                        _ => {}
                    }
                }
            }
            RtpAction::Absorbed => {}
        }
        self.flush(&mut st);
    }

    /// An RTCP-socket datagram for `session`.
    fn on_rtcp(&self, now: Instant, session: SessionId, src: SocketAddr, datagram: &[u8]) {
        let mut st = self.state.lock();
        let State { engine, legs, .. } = &mut *st;
        let Some(leg) = legs.get_mut(&session) else {
            return; // the leg is leaving
        };
        match engine.handle_rtcp(now, session, datagram) {
            // Reports go back where the peer sends them from (as the endpoint does).
            Ok(()) => leg.parts.note_rtcp_from(src),
            Err(_) => leg.parts.counters.malformed += 1,
        }
        self.flush(&mut st);
    }

    /// The ticker's turn: runs what is due and says when to come back (`None` inside: only
    /// when woken), or `None` once closed.
    fn on_timer(&self, now: Instant) -> Option<Option<Instant>> {
        let mut st = self.state.lock();
        if st.closed {
            return None;
        }
        st.engine.handle_timeout(now);
        self.drain(&mut st);
        let next = st.engine.poll_timeout();
        st.ticker_deadline = next;
        Some(next)
    }

    fn count_recv_error(&self, error: &io::Error) {
        tracing::debug!(%error, "bridge leg receive failed");
        self.state.lock().stats.recv_errors += 1;
    }
}

/// Sends a datagram from `from`'s socket to `from`'s peer without waiting: a full send buffer
/// drops it (counted).
fn send(
    legs: &HashMap<SessionId, Bridged>,
    stats: &mut DriverStats,
    from: SessionId,
    kind: TransmitKind,
    data: &[u8],
) {
    let Some(leg) = legs.get(&from) else {
        stats.no_remote += 1;
        return;
    };
    let parts = &leg.parts;
    let (socket, to) = match kind {
        TransmitKind::Rtp => (&parts.rtp, parts.remote_rtp),
        TransmitKind::Rtcp => match &parts.rtcp {
            Some(rtcp) => (rtcp, parts.remote_rtcp),
            None => (&parts.rtp, parts.remote_rtcp.or(parts.remote_rtp)),
        },
    };
    let Some(to) = to else {
        stats.no_remote += 1;
        return;
    };
    match socket.try_send_to(data, to) {
        Ok(_) => stats.sent += 1,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => stats.send_dropped += 1,
        Err(error) => {
            stats.send_errors += 1;
            tracing::debug!(session_id = %from, %to, %error, "bridge send failed");
        }
    }
}

/// Receives on `socket`, or never without one.
async fn recv_on(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// One leg's reader task: datagrams in, the engine fed, forwards sent.
async fn reader(
    running: Running,
    session: SessionId,
    rtp: Arc<UdpSocket>,
    rtcp: Option<Arc<UdpSocket>>,
) {
    let shared = Arc::clone(&running.0);
    // `try_send_to` only tries a socket tokio has seen writable: make sure it has.
    let _ = rtp.writable().await;
    if let Some(rtcp) = &rtcp {
        let _ = rtcp.writable().await;
    }
    let mut rtp_buf = Box::new([0u8; MAX_PACKET]);
    let mut rtcp_buf = Box::new([0u8; MAX_PACKET]);
    loop {
        tokio::select! {
            received = rtp.recv_from(&mut rtp_buf[..]) => match received {
                Ok((len, src)) => shared.on_rtp(now(), session, src, &mut rtp_buf[..], len),
                Err(e) => {
                    shared.count_recv_error(&e);
                    tokio::task::yield_now().await;
                }
            },
            received = recv_on(rtcp.as_deref(), &mut rtcp_buf[..]) => match received {
                Ok((len, src)) => {
                    let datagram = rtcp_buf.get(..len).unwrap_or_default();
                    shared.on_rtcp(now(), session, src, datagram);
                }
                Err(e) => {
                    shared.count_recv_error(&e);
                    tokio::task::yield_now().await;
                }
            },
        }
    }
}

/// The ticker task: the engine's timers.
async fn ticker(running: Running) {
    let shared = Arc::clone(&running.0);
    while let Some(next) = shared.on_timer(now()) {
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    () = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}
