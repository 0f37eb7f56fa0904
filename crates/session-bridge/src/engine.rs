//! [`BridgeEngine`]: every bridge of one manager, as one sans-IO state machine. Its inputs
//! are in `input` (RTP, RTCP) and its timers in `tick` (mixer ticks, RTCP reports, stall
//! checks); this file holds the bridges, the membership operations and the technology
//! decision ([`BridgeEngine::reevaluate`]). The user-facing description is on
//! [`BridgeEngine`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use session_media::FRAME_DURATION;
use session_media::jitter::JitterConfig;
use session_media::rtcp::NtpClock;
use session_types::SessionId;

use crate::error::{Error, Refused, Result};
use crate::event::{BridgeEvent, Transmit};
use crate::leg::Leg;
use crate::member::{JoinSettings, Member};
use crate::mix::{Gain, MixBus};
use crate::outbox::Outbox;
use crate::relay::Transcoder;
use crate::stats::{BridgeStats, MemberStats, Resources};
use crate::timer::{Timer, Timers};

mod input;
mod tick;

/// Identifies a bridge inside one engine (the type lives in session-types, shared with the
/// events about bridges).
pub use session_types::BridgeId;

/// How a bridge carries media, as asked at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TechnologyChoice {
    /// Relay two members without settings, mix otherwise (see the module docs).
    #[default]
    Auto,
    /// Always relay: at most two members; mute, deaf and zero gains drop packets, other gains
    /// have no effect.
    ForceRelay,
    /// Always mix, even two members.
    ForceMixer,
}

/// How a bridge carries media now (defined in session-types, so bridge events name it).
pub use session_types::BridgeTechnology as Technology;

/// The engine's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Wall clock for RTCP SR times, anchored by the caller (the engine never reads a clock):
    /// `NtpClock::new(SystemTime::now(), Instant::now())` in a driver, any anchor in tests.
    pub ntp: NtpClock,
    /// RTCP CNAME of legs that bring none.
    pub cname: String,
    /// Time between a leg's RTCP reports (RFC 3550 §6.2 suggests 5 s for two parties).
    pub rtcp_interval: Duration,
    /// Silence after which a member that did send is reported [`BridgeEvent::MediaStalled`].
    pub stall_timeout: Duration,
    /// Jitter buffer settings of mixer members.
    pub jitter: JitterConfig,
    /// Datagrams that may wait for `poll_transmit`; beyond it new ones are not made (the
    /// caller is not draining the output).
    pub max_queued_transmits: usize,
    /// How far behind a mixer tick may run before missed ticks are skipped.
    pub max_tick_lag: Duration,
    /// Events waiting for `poll_event` beyond which DTMF digits from the network are no longer
    /// queued (a peer cannot grow the queue of a caller that does not drain it). Events of the
    /// caller's own operations are always queued.
    pub max_queued_events: usize,
}

impl EngineConfig {
    /// Defaults: 5 s RTCP, 10 s stall timeout, session-media's jitter defaults, 4096 queued
    /// datagrams, 60 ms tick lag, 1024 queued events.
    pub fn new(ntp: NtpClock) -> Self {
        Self {
            ntp,
            cname: "session-bridge".to_owned(),
            rtcp_interval: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
            jitter: JitterConfig::default(),
            max_queued_transmits: 4096,
            max_tick_lag: Duration::from_millis(60),
            max_queued_events: 1024,
        }
    }

    /// Sets the default CNAME.
    #[must_use]
    pub fn cname(mut self, cname: impl Into<String>) -> Self {
        self.cname = cname.into();
        self
    }

    /// Sets the RTCP interval (at least 100 ms).
    #[must_use]
    pub fn rtcp_interval(mut self, interval: Duration) -> Self {
        self.rtcp_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// Sets the stall timeout (at least one frame).
    #[must_use]
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout.max(FRAME_DURATION);
        self
    }

    /// Sets the jitter buffer settings.
    #[must_use]
    pub fn jitter(mut self, jitter: JitterConfig) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets how far behind a mixer tick may run before missed ticks are skipped (at least one
    /// frame).
    #[must_use]
    pub fn max_tick_lag(mut self, lag: Duration) -> Self {
        self.max_tick_lag = lag.max(FRAME_DURATION);
        self
    }

    /// Sets how many datagrams may wait (at least 16).
    #[must_use]
    pub fn max_queued_transmits(mut self, max: usize) -> Self {
        self.max_queued_transmits = max.max(16);
        self
    }
}

#[derive(Debug)]
struct Bridge {
    choice: TechnologyChoice,
    technology: Technology,
    /// Members in slot order (a member's `slot` is its index here).
    members: Vec<SessionId>,
    /// The next mixer tick, while mixing with members.
    next_tick: Option<Instant>,
    bus: MixBus,
    forwarded: u64,
    mixed_ticks: u64,
    dropped: u64,
}

/// Every bridge of one manager, as one sans-IO state machine (see the crate docs for the run
/// loop).
///
/// The methods come in four groups: getters, `handle_*` (a datagram or the time), mutators
/// (create, add, remove, move, merge, mute, deaf, gain) and `poll_*` (datagrams to send,
/// events, the next wake-up). Time is always an argument.
///
/// # Technology
///
/// A bridge created with [`TechnologyChoice::Auto`] relays while it has two members and no
/// settings, in place and without allocating (a transcoding relay when their G.711 laws
/// differ), and mixes as soon as it has three members or a member is muted, deaf or has a
/// pair gain. Every membership or setting change re-decides; a switch is reported as
/// [`BridgeEvent::TechnologyChanged`]. Each member's outgoing stream continues across it (see
/// [`StreamState`](crate::StreamState)): the first relayed packet after a mixer period
/// continues the sequence numbers and takes its timestamp from the stream's sampling clock,
/// and the first mixer packet after a relay period does the same. A relay never reuses its
/// mapping of a talker's numbers across a change: it starts a new one on the next packet.
///
/// # Mixer ticks
///
/// A mixing bridge ticks every 20 ms on its own schedule, from 20 ms after it started mixing.
/// [`BridgeEngine::handle_timeout`] runs every tick that is due, in time order across bridges,
/// each stamped with its own instant; a driver that fell behind by more than
/// [`EngineConfig::max_tick_lag`] skips the missed ticks rather than sending a burst (the
/// streams' timestamps then jump with the clock, with the marker bit). A tick pulls one frame
/// from each member's jitter buffer, mixes once (see [`Gain`] for the arithmetic), and queues
/// one packet per member in its own codec — silence included, so every stream keeps going.
/// A member's jitter buffer exists only while its bridge mixes.
#[derive(Debug)]
pub struct BridgeEngine {
    config: EngineConfig,
    bridges: HashMap<BridgeId, Bridge>,
    members: HashMap<SessionId, Member>,
    timers: Timers,
    outbox: Outbox,
    events: VecDeque<BridgeEvent>,
    transcoder: Transcoder,
    next_bridge: u64,
    next_generation: u64,
}

impl BridgeEngine {
    /// An engine without bridges. Durations in the configuration are capped (a day for the
    /// stall timeout, an hour for the RTCP interval, a second for the tick lag), so no
    /// setting can overflow an `Instant`.
    pub fn new(mut config: EngineConfig) -> Self {
        config.stall_timeout = config
            .stall_timeout
            .clamp(FRAME_DURATION, Duration::from_secs(86_400));
        config.rtcp_interval = config
            .rtcp_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(3_600));
        config.max_tick_lag = config
            .max_tick_lag
            .clamp(FRAME_DURATION, Duration::from_secs(1));
        config.max_queued_transmits = config.max_queued_transmits.max(16);
        let outbox = Outbox::new(config.max_queued_transmits);
        Self {
            config,
            bridges: HashMap::new(),
            members: HashMap::new(),
            timers: Timers::default(),
            outbox,
            events: VecDeque::new(),
            transcoder: Transcoder::new(),
            next_bridge: 1,
            next_generation: 1,
        }
    }

    // ---- getters ----

    /// The bridge a session is in (a map lookup).
    pub fn bridge_of(&self, session: SessionId) -> Option<BridgeId> {
        self.members.get(&session).map(|m| m.bridge)
    }

    /// The members of a bridge, in no particular order.
    pub fn members(&self, bridge: BridgeId) -> Option<&[SessionId]> {
        self.bridges.get(&bridge).map(|b| b.members.as_slice())
    }

    /// Every bridge.
    pub fn bridges(&self) -> impl Iterator<Item = BridgeId> + '_ {
        self.bridges.keys().copied()
    }

    /// A bridge's technology now.
    pub fn technology(&self, bridge: BridgeId) -> Option<Technology> {
        self.bridges.get(&bridge).map(|b| b.technology)
    }

    /// The gain `listener` hears `talker` with ([`Gain::UNITY`] unless set), if both are
    /// members of one bridge.
    pub fn gain(&self, listener: SessionId, talker: SessionId) -> Option<Gain> {
        let l = self.members.get(&listener)?;
        let t = self.members.get(&talker)?;
        (l.bridge == t.bridge && listener != talker).then(|| l.gain_from(talker))
    }

    /// A bridge's counters.
    pub fn stats(&self, bridge: BridgeId) -> Option<BridgeStats> {
        self.bridges.get(&bridge).map(|b| BridgeStats {
            choice: b.choice,
            technology: b.technology,
            members: b.members.len(),
            forwarded: b.forwarded,
            mixed_ticks: b.mixed_ticks,
            dropped: b.dropped,
        })
    }

    /// A member's counters and its leg's figures.
    pub fn member_stats(&self, session: SessionId) -> Option<MemberStats> {
        let m = self.members.get(&session)?;
        let technology = self.bridges.get(&m.bridge)?.technology;
        Some(MemberStats {
            bridge: m.bridge,
            technology,
            muted: m.muted,
            deaf: m.deaf,
            sending: m.sending,
            packets_in: m.counters.packets_in,
            packets_out: m.counters.packets_out,
            forwarded: m.counters.forwarded,
            mixed: m.counters.mixed,
            dropped: m.counters.dropped,
            dtmf_digits: m.counters.dtmf,
            jitter: m.jitter_stats(),
            lost: m.leg.reception.cumulative_lost(),
            jitter_ms: m.leg.reception.jitter_ms(),
            rtt: m.rtcp.rtt,
            remote_fraction_lost: m.rtcp.remote_fraction_lost,
            rtcp_sent: m.rtcp.sent,
            rtcp_received: m.rtcp.received,
            stream: m.leg.stream,
        })
    }

    /// What the engine holds now.
    pub fn resources(&self) -> Resources {
        Resources {
            bridges: self.bridges.len(),
            members: self.members.len(),
            timers: self.timers.len(),
            queued_transmits: self.outbox.len(),
            queued_events: self.events.len(),
            jitter_buffers: self.members.values().filter(|m| m.mixer.is_some()).count(),
        }
    }

    /// Datagrams that were not made because the output queue was full.
    pub fn overflowed_transmits(&self) -> u64 {
        self.outbox.overflowed
    }

    // ---- mutators ----

    /// Creates an empty bridge.
    pub fn create_bridge(&mut self, technology: TechnologyChoice) -> BridgeId {
        let id = BridgeId::from_raw(self.next_bridge);
        self.next_bridge += 1;
        let initial = match technology {
            TechnologyChoice::ForceMixer => Technology::Mixer,
            _ => Technology::Relay,
        };
        self.bridges.insert(
            id,
            Bridge {
                choice: technology,
                technology: initial,
                members: Vec::new(),
                next_tick: None,
                bus: MixBus::default(),
                forwarded: 0,
                mixed_ticks: 0,
                dropped: 0,
            },
        );
        tracing::debug!(bridge = %id, ?technology, "bridge created");
        id
    }

    /// Destroys a bridge; every member leaves with its leg, the outgoing stream advanced to
    /// `now` (see [`BridgeEngine::remove_member`]).
    pub fn destroy_bridge(
        &mut self,
        now: Instant,
        bridge: BridgeId,
    ) -> Result<Vec<(SessionId, Leg)>> {
        let removed = self
            .bridges
            .remove(&bridge)
            .ok_or(Error::UnknownBridge(bridge))?;
        self.timers.forget_ticks(bridge);
        self.timers.forget_sessions(&removed.members);
        let mut legs = Vec::with_capacity(removed.members.len());
        for session in removed.members {
            if let Some(member) = self.members.remove(&session) {
                legs.push((session, release(now, member)));
                self.events
                    .push_back(BridgeEvent::MemberLeft { bridge, session });
            }
        }
        self.events
            .push_back(BridgeEvent::BridgeDestroyed { bridge });
        tracing::debug!(%bridge, members = legs.len(), "bridge destroyed");
        Ok(legs)
    }

    /// Adds a session to a bridge with its leg. On refusal the leg comes back in the error.
    pub fn add_member(
        &mut self,
        now: Instant,
        bridge: BridgeId,
        session: SessionId,
        leg: Leg,
    ) -> Result<(), Refused> {
        self.add_member_with(now, bridge, session, leg, &JoinSettings::default())
    }

    /// [`BridgeEngine::add_member`] with settings in force from the member's first packet
    /// (see [`JoinSettings`]). Members named in the settings must be in `bridge` already.
    pub fn add_member_with(
        &mut self,
        now: Instant,
        bridge: BridgeId,
        session: SessionId,
        leg: Leg,
        settings: &JoinSettings,
    ) -> Result<(), Refused> {
        let refuse = |error, leg| {
            Err(Refused {
                error,
                leg: Box::new(leg),
            })
        };
        if let Some(m) = self.members.get(&session) {
            let bridge = m.bridge;
            return refuse(Error::AlreadyBridged { session, bridge }, leg);
        }
        if let Err(reason) = leg.validate() {
            return refuse(Error::InvalidLeg(reason), leg);
        }
        let Some(b) = self.bridges.get_mut(&bridge) else {
            return refuse(Error::UnknownBridge(bridge), leg);
        };
        if b.choice == TechnologyChoice::ForceRelay && b.members.len() >= 2 {
            return refuse(Error::RelayFull(bridge), leg);
        }
        let named = settings
            .hears
            .iter()
            .map(|(talker, _)| talker)
            .chain(settings.heard_only_by.iter().flatten());
        for other in named {
            if !b.members.contains(other) {
                return refuse(
                    Error::NotInSameBridge {
                        listener: session,
                        talker: *other,
                    },
                    leg,
                );
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut member = Member::new(bridge, b.members.len(), generation, leg);
        member.muted = settings.muted;
        member.deaf = settings.deaf;
        for (talker, gain) in &settings.hears {
            member.set_gain(*talker, *gain);
        }
        if let Some(listeners) = &settings.heard_only_by {
            for other in &b.members {
                if !listeners.contains(other)
                    && let Some(m) = self.members.get_mut(other)
                {
                    m.set_gain(session, Gain::ZERO);
                }
            }
        }
        b.members.push(session);
        let report_at = now + self.config.rtcp_interval;
        member.rtcp.next_report = Some(report_at);
        self.timers
            .push(report_at, Timer::Rtcp(session, generation));
        self.members.insert(session, member);
        self.events
            .push_back(BridgeEvent::MemberJoined { bridge, session });
        tracing::debug!(%bridge, session_id = %session, "member joined");
        self.reevaluate(now, bridge);
        Ok(())
    }

    /// Removes a session from its bridge and hands its leg back: the outgoing stream state
    /// holds the next sequence number and a timestamp that stands for `now` (moved on with the
    /// clock, marker pending, if the stream was quiet), so the call continues the same stream.
    /// Packets already queued for the member are still its stream's: send them first.
    pub fn remove_member(&mut self, now: Instant, session: SessionId) -> Result<Leg> {
        let member = self.unlink(session).ok_or(Error::NotBridged(session))?;
        let bridge = member.bridge;
        self.events
            .push_back(BridgeEvent::MemberLeft { bridge, session });
        tracing::debug!(%bridge, session_id = %session, "member left");
        self.timers.forget_sessions(&[session]);
        let leg = release(now, member);
        self.reevaluate(now, bridge);
        Ok(leg)
    }

    /// Moves a member to another bridge, make-before-break: it never leaves the engine, its
    /// stream goes on (same SSRC, next sequence number, timestamp on the clock) and its mute
    /// and deaf settings stay; pair gains with members of the old bridge are dropped.
    pub fn move_member(&mut self, now: Instant, session: SessionId, to: BridgeId) -> Result<()> {
        let from = self
            .members
            .get(&session)
            .ok_or(Error::NotBridged(session))?
            .bridge;
        let target = self.bridges.get(&to).ok_or(Error::UnknownBridge(to))?;
        if from == to {
            return Ok(());
        }
        if target.choice == TechnologyChoice::ForceRelay && target.members.len() >= 2 {
            return Err(Error::RelayFull(to));
        }
        self.detach_from_bridge(session, from);
        if let Some(member) = self.members.get_mut(&session) {
            member.gains.clear();
            if let Some(target) = self.bridges.get_mut(&to) {
                member.bridge = to;
                member.slot = target.members.len();
                target.members.push(session);
            }
        }
        self.events
            .push_back(BridgeEvent::MemberMoved { session, from, to });
        tracing::debug!(session_id = %session, %from, %to, "member moved");
        self.reevaluate(now, from);
        self.reevaluate(now, to);
        Ok(())
    }

    /// Moves every member of `from` into `into` (as [`BridgeEngine::move_member`] does, keeping
    /// their pair gains among themselves) and destroys `from`.
    pub fn merge(&mut self, now: Instant, from: BridgeId, into: BridgeId) -> Result<()> {
        if from == into {
            return Err(Error::InvalidArgument(
                "a bridge cannot be merged into itself",
            ));
        }
        let target = self.bridges.get(&into).ok_or(Error::UnknownBridge(into))?;
        let source = self.bridges.get(&from).ok_or(Error::UnknownBridge(from))?;
        if target.choice == TechnologyChoice::ForceRelay
            && target.members.len() + source.members.len() > 2
        {
            return Err(Error::RelayFull(into));
        }
        let moving = self
            .bridges
            .remove(&from)
            .map(|b| b.members)
            .unwrap_or_default();
        self.timers.forget_ticks(from);
        for session in moving {
            let (Some(member), Some(target)) =
                (self.members.get_mut(&session), self.bridges.get_mut(&into))
            else {
                continue;
            };
            member.bridge = into;
            member.slot = target.members.len();
            target.members.push(session);
            self.events.push_back(BridgeEvent::MemberMoved {
                session,
                from,
                to: into,
            });
        }
        self.events
            .push_back(BridgeEvent::BridgeDestroyed { bridge: from });
        tracing::debug!(%from, %into, "bridges merged");
        self.reevaluate(now, into);
        Ok(())
    }

    /// Mutes (nobody hears it) or unmutes a member; it still hears the others.
    pub fn set_muted(&mut self, now: Instant, session: SessionId, muted: bool) -> Result<()> {
        let member = self
            .members
            .get_mut(&session)
            .ok_or(Error::NotBridged(session))?;
        member.muted = muted;
        let bridge = member.bridge;
        self.reevaluate(now, bridge);
        Ok(())
    }

    /// Makes a member deaf (it hears silence; its stream keeps going) or hearing again.
    pub fn set_deaf(&mut self, now: Instant, session: SessionId, deaf: bool) -> Result<()> {
        let member = self
            .members
            .get_mut(&session)
            .ok_or(Error::NotBridged(session))?;
        member.deaf = deaf;
        let bridge = member.bridge;
        self.reevaluate(now, bridge);
        Ok(())
    }

    /// A member's peer agreed on new media terms (a re-INVITE or UPDATE): its codec and
    /// telephone-event payload types change, the bridge re-chooses its technology (PCMU on
    /// both sides relays, PCMU against PCMA transcodes) and its stream goes on unbroken.
    pub fn update_leg(
        &mut self,
        now: Instant,
        session: SessionId,
        codec: crate::Codec,
        telephone_event: Option<u8>,
        receive_telephone_event: Option<u8>,
    ) -> Result<()> {
        let member = self
            .members
            .get_mut(&session)
            .ok_or(Error::NotBridged(session))?;
        member.leg.codec = codec;
        member.leg.telephone_event = telephone_event;
        member.leg.receive_telephone_event =
            receive_telephone_event.filter(|pt| Some(*pt) != telephone_event);
        let bridge = member.bridge;
        self.reevaluate(now, bridge);
        Ok(())
    }

    /// Whether anything is sent to a member's peer. `false` while the peer holds the call
    /// (RFC 3264 §6.1: having answered `recvonly` or `inactive` we send nothing, not even
    /// silence); its outgoing stream pauses, and resumes on the sampling clock with the marker
    /// bit set. Unlike deaf, this is about the direction negotiated with the peer, not a
    /// setting of the application, and it does not make a bridge mix.
    pub fn set_sending(&mut self, session: SessionId, sending: bool) -> Result<()> {
        let member = self
            .members
            .get_mut(&session)
            .ok_or(Error::NotBridged(session))?;
        if member.sending != sending && sending {
            member.leg.stream.marker_pending = true;
        }
        member.sending = sending;
        if !sending {
            member.relay_map = None;
        }
        Ok(())
    }

    /// Sets the gain `listener` hears `talker` with ([`Gain::ZERO`]: not at all;
    /// [`Gain::UNITY`] clears the setting). Both must be members of one bridge. Monitor (a
    /// supervisor hears everyone, nobody hears the supervisor) is `ZERO` from the supervisor to
    /// every other member; whisper (only one member hears the supervisor) is the same except
    /// for that member. Mute and deaf apply on top of pair gains.
    pub fn set_gain(
        &mut self,
        now: Instant,
        listener: SessionId,
        talker: SessionId,
        gain: Gain,
    ) -> Result<()> {
        if listener == talker {
            return Err(Error::InvalidArgument(
                "a member never hears itself (mix-minus)",
            ));
        }
        let talker_bridge = self
            .members
            .get(&talker)
            .ok_or(Error::NotBridged(talker))?
            .bridge;
        let member = self
            .members
            .get_mut(&listener)
            .ok_or(Error::NotBridged(listener))?;
        if member.bridge != talker_bridge {
            return Err(Error::NotInSameBridge { listener, talker });
        }
        member.set_gain(talker, gain);
        self.reevaluate(now, talker_bridge);
        Ok(())
    }

    // ---- output ----

    /// The next datagram to send, borrowed from the engine's output buffer.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.outbox.pop()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<BridgeEvent> {
        self.events.pop_front()
    }

    /// When [`BridgeEngine::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---- internals ----

    /// Takes a member out of its bridge's list, keeping the other slots right, and drops the
    /// pair gains other members had towards it.
    fn detach_from_bridge(&mut self, session: SessionId, bridge: BridgeId) {
        let Some(b) = self.bridges.get_mut(&bridge) else {
            return;
        };
        let Some(slot) = b.members.iter().position(|s| *s == session) else {
            return;
        };
        b.members.swap_remove(slot);
        if let Some(moved) = b.members.get(slot).and_then(|s| self.members.get_mut(s)) {
            moved.slot = slot;
        }
        for other in &b.members {
            if let Some(m) = self.members.get_mut(other) {
                m.gains.retain(|(t, _)| *t != session);
            }
        }
    }

    /// Removes a member from the engine.
    fn unlink(&mut self, session: SessionId) -> Option<Member> {
        let bridge = self.members.get(&session)?.bridge;
        self.detach_from_bridge(session, bridge);
        self.members.remove(&session)
    }

    /// Decides a bridge's technology after a change (the rules are on [`BridgeEngine`]) and
    /// sets its members up for it.
    fn reevaluate(&mut self, now: Instant, id: BridgeId) {
        let Some(bridge) = self.bridges.get_mut(&id) else {
            return;
        };
        let members: Vec<&Member> = bridge
            .members
            .iter()
            .filter_map(|s| self.members.get(s))
            .collect();
        let relay = match members.as_slice() {
            [a, b] if a.leg.codec.law != b.leg.codec.law => Technology::TranscodingRelay,
            _ => Technology::Relay,
        };
        let desired = match bridge.choice {
            TechnologyChoice::ForceMixer => Technology::Mixer,
            TechnologyChoice::ForceRelay => relay,
            TechnologyChoice::Auto => {
                let settings = members.iter().any(|m| m.has_settings());
                if members.len() >= 3 || (members.len() == 2 && settings) {
                    Technology::Mixer
                } else {
                    relay
                }
            }
        };
        drop(members);
        if desired != bridge.technology {
            let from = bridge.technology;
            bridge.technology = desired;
            self.events.push_back(BridgeEvent::TechnologyChanged {
                bridge: id,
                from,
                to: desired,
            });
            tracing::debug!(bridge = %id, ?from, to = ?desired, "technology changed");
        }
        let mixing = desired == Technology::Mixer;
        for session in &bridge.members {
            if let Some(m) = self.members.get_mut(session) {
                // Any change starts a new relay course (see `relay`).
                m.relay_map = None;
                if mixing {
                    m.enter_mixer(self.config.jitter);
                } else {
                    m.leave_mixer();
                }
            }
        }
        if mixing && !bridge.members.is_empty() {
            if bridge.next_tick.is_none() {
                let at = now + FRAME_DURATION;
                bridge.next_tick = Some(at);
                self.timers.push(at, Timer::Tick(id));
            }
        } else if bridge.next_tick.take().is_some() {
            bridge.bus.release();
            self.timers.forget_ticks(id);
        }
    }
}

/// Frees what a departing member holds and hands back its leg, settled at `now` (its timers
/// are the caller's to forget).
fn release(now: Instant, mut member: Member) -> Leg {
    member.leave_mixer();
    member.leg.stream.settle(now);
    member.leg
}
