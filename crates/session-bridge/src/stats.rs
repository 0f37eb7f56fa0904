//! Snapshots of a bridge, of a member, and of everything the engine holds (for dashboards, and
//! for tests that count resources back to zero).

use std::time::Duration;

use session_media::jitter::JitterStats;

use crate::engine::{BridgeId, Technology, TechnologyChoice};
use crate::leg::StreamState;

/// A bridge's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// What the bridge was created with.
    pub choice: TechnologyChoice,
    /// What it uses now.
    pub technology: Technology,
    /// Members now.
    pub members: usize,
    /// Packets relayed (rewritten and handed back as `Forward`).
    pub forwarded: u64,
    /// Mixer ticks run.
    pub mixed_ticks: u64,
    /// RTP datagrams dropped (see [`crate::DropReason`]).
    pub dropped: u64,
}

/// A member's counters since it joined, and its leg's reception and RTCP figures.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MemberStats {
    /// The member's bridge.
    pub bridge: BridgeId,
    /// The bridge's technology.
    pub technology: Technology,
    /// Muted: nobody hears it.
    pub muted: bool,
    /// Deaf: it hears nothing.
    pub deaf: bool,
    /// Sending to its peer (`false` while the peer holds the call).
    pub sending: bool,
    /// RTP packets received from the member's peer.
    pub packets_in: u64,
    /// RTP packets sent on the member's stream while bridged (relayed and mixed).
    pub packets_out: u64,
    /// Packets of this member relayed to the other member.
    pub forwarded: u64,
    /// Mixer packets sent to this member.
    pub mixed: u64,
    /// Packets of this member dropped.
    pub dropped: u64,
    /// DTMF digits received from this member.
    pub dtmf_digits: u64,
    /// The jitter buffer's counters over every mixing period of the membership (concealed,
    /// late, lost …); zero for a member that was only ever relayed.
    pub jitter: JitterStats,
    /// Packets lost on the way in, cumulative, as RTCP counts them (RFC 3550 §6.4.1).
    pub lost: i64,
    /// Interarrival jitter of what the member sends us, in ms.
    pub jitter_ms: f64,
    /// Round-trip time to the member's peer, from its last report block on our stream.
    pub rtt: Option<Duration>,
    /// Fraction lost (0.0–1.0) the peer last reported on our stream.
    pub remote_fraction_lost: Option<f32>,
    /// RTCP compound packets sent and received on the leg.
    pub rtcp_sent: u64,
    /// RTCP compound packets received (parsed) on the leg.
    pub rtcp_received: u64,
    /// The outgoing stream as it stands.
    pub stream: StreamState,
}

/// How much the engine holds: every count returns to zero when every bridge is destroyed and
/// the output is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Resources {
    /// Bridges.
    pub bridges: usize,
    /// Members.
    pub members: usize,
    /// Pending timers (mixer ticks, RTCP reports, stall checks).
    pub timers: usize,
    /// Datagrams waiting for `poll_transmit`.
    pub queued_transmits: usize,
    /// Events waiting for `poll_event`.
    pub queued_events: usize,
    /// Members holding a jitter buffer (members of mixing bridges).
    pub jitter_buffers: usize,
}
