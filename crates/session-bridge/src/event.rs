//! What the engine hands back: the answer to one RTP datagram ([`RtpAction`]), datagrams to
//! send ([`Transmit`]) and things that happened ([`BridgeEvent`]).

use std::time::Duration;

use session_types::SessionId;

use crate::engine::{BridgeId, Technology};

/// What to do with an RTP datagram given to [`crate::BridgeEngine::handle_rtp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a `Forward` must be sent, or the listener's stream has a gap"]
pub enum RtpAction {
    /// The packet was rewritten in place for another member's stream: send the first `len`
    /// bytes of the buffer from member `from`'s RTP socket to that member's peer.
    Forward {
        /// The member whose socket (and stream) the packet now belongs to.
        from: SessionId,
        /// Bytes to send (the same length as received: G.711 transcodes byte for byte).
        len: usize,
    },
    /// The engine took the datagram and there is nothing to send now: mixer audio went into
    /// the member's jitter buffer, a DTMF event in a mixer was reported, or RTCP (rtcp-mux)
    /// updated the leg's statistics.
    Absorbed,
    /// The datagram was dropped; the reason says why.
    Dropped(DropReason),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Not an RTP packet (too short, wrong version, truncated header or padding), or `len`
    /// beyond the buffer. RTCP that does not parse is dropped with this reason too.
    Malformed,
    /// The session is in no bridge of this engine.
    UnknownSession,
    /// A payload type that is neither G.711 nor the leg's telephone-event type (comfort noise,
    /// a codec the bridge does not carry).
    UnknownPayloadType(u8),
    /// The talker is muted (or the listener cannot hear it) in a relay.
    Muted,
    /// The listener of a relay is deaf.
    Deaf,
    /// Nothing may be sent to the listener of a relay: its peer holds the call
    /// ([`BridgeEngine::set_sending`](crate::BridgeEngine::set_sending)).
    NotSending,
    /// A relay with no second member: nobody to forward to.
    NoListener,
    /// A DTMF event, and the listener negotiated no telephone-event payload type (the digit
    /// is still reported as [`BridgeEvent::DtmfReceived`]).
    NoTelephoneEvent,
    /// A late packet from before the relay took its current course (a switch, a move): its
    /// sequence number on the listener's stream would reuse one already sent.
    Stale,
}

/// Which socket of the member a [`Transmit`] goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransmitKind {
    /// An RTP packet: the member's RTP socket.
    Rtp,
    /// An RTCP compound packet: the member's RTCP socket (its RTP socket with rtcp-mux).
    Rtcp,
}

/// A datagram to send, borrowed from the engine's output buffer: send it before the next call
/// on the engine (the borrow checker makes sure of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit<'a> {
    /// The member whose socket sends it, to that member's peer.
    pub from: SessionId,
    /// RTP or RTCP.
    pub kind: TransmitKind,
    /// The datagram.
    pub data: &'a [u8],
}

/// Something that happened in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeEvent {
    /// A session joined a bridge.
    MemberJoined {
        /// The bridge.
        bridge: BridgeId,
        /// The session.
        session: SessionId,
    },
    /// A session left a bridge (removed, or the bridge was destroyed); its leg was handed back.
    MemberLeft {
        /// The bridge.
        bridge: BridgeId,
        /// The session.
        session: SessionId,
    },
    /// A session moved from one bridge to another (a move or a merge) without leaving the
    /// engine.
    MemberMoved {
        /// The session.
        session: SessionId,
        /// The bridge it left.
        from: BridgeId,
        /// The bridge it is in now.
        to: BridgeId,
    },
    /// A bridge switched technology (members joined or left, or a setting changed).
    TechnologyChanged {
        /// The bridge.
        bridge: BridgeId,
        /// The technology before.
        from: Technology,
        /// The technology now.
        to: Technology,
    },
    /// A member sent RTP and then nothing for longer than
    /// [`crate::EngineConfig::stall_timeout`]. Reported once per silence; a member that never
    /// sent is never reported. The engine does not evict anyone: that is the caller's policy.
    MediaStalled {
        /// The bridge.
        bridge: BridgeId,
        /// The silent member.
        session: SessionId,
        /// How long it has been silent.
        silent_for: Duration,
    },
    /// A member sent an RFC 4733 DTMF digit (reported once per event, however many end
    /// packets came).
    DtmfReceived {
        /// The bridge.
        bridge: BridgeId,
        /// The member that sent it.
        session: SessionId,
        /// The digit: `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// How long it lasted.
        duration: Duration,
    },
    /// A bridge was destroyed (by the caller, or emptied by a merge).
    BridgeDestroyed {
        /// The bridge.
        bridge: BridgeId,
    },
}
