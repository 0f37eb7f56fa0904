//! The manager's settings: identity, transports, media, session timers. Built through
//! [`crate::SessionManagerBuilder`]; every field has a default fit for a loopback test.

use session_dialog::transaction::TimerConfig;
use session_media::sdp::negotiate::MediaConfig;
use session_sip::resource_priority::PriorityNamespace;
use session_types::Priority;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Who we are on the wire.
#[derive(Debug, Clone)]
pub struct Identity {
    /// User part of our address of record and Contact (`sip:USER@host`); `user` by default.
    pub user: String,
    /// Display name in From.
    pub display_name: Option<String>,
    /// Host of our address of record; the bind address when `None`.
    pub domain: Option<String>,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            // A neutral user part: the library's name is no identity (set one with
            // `SessionManagerBuilder::identity`).
            user: "user".to_owned(),
            display_name: None,
            domain: None,
        }
    }
}

/// How calls get media.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaMode {
    /// Every call gets an RTP endpoint from the port pool; SDP is negotiated by the manager.
    Rtp {
        /// Send every received frame back (a loopback test peer).
        echo: bool,
    },
    /// No sockets: SDP is negotiated so the peer gets a valid answer, but it names the
    /// discard port 9 and no RTP flows. For signaling load tests and for applications whose
    /// media lives elsewhere (they answer with [`crate::AcceptOptions::with_sdp`]).
    SignalingOnly,
}

/// Which SIP transports a manager listens on (one port for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transports {
    /// UDP only.
    Udp,
    /// TCP only.
    Tcp,
    /// Both (the default).
    #[default]
    UdpAndTcp,
}

/// What a call's media sends while no source plays into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdleAudio {
    /// Silence every 20 ms (the default): RTP keeps flowing before a source is attached and
    /// after one ends, as a phone's does, so a peer that ends calls without RTP (an RTP
    /// timeout) keeps the call.
    #[default]
    Silence,
    /// Nothing: RTP flows only while a source plays (or an echo answers).
    Nothing,
}

/// RFC 4028 session timer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// The session interval we ask for (Session-Expires), in seconds' resolution.
    pub expires: Duration,
    /// The smallest interval we accept (Min-SE); below 90 s is not allowed (RFC 4028 §4).
    pub min_se: Duration,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        Self {
            expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}

/// How a session's packets are marked for DiffServ (RFC 2474): the code point of SIP and of
/// RTP/RTCP. By default RTP is EF (46, RFC 3246) and SIP CS3 (24, RFC 4594) for every
/// session; both can be marked differently for sessions at or above a [`Priority`].
///
/// Each session's RTP has sockets of its own, marked by its priority (again when
/// [`crate::CallSession::set_priority`] changes it). SIP over UDP shares one socket, marked
/// with [`DscpPolicy::sip_dscp`]; a session whose priority has another SIP mark sends its
/// messages with that mark each (INVITE, answers, ACK, CANCEL, BYE and every other request and
/// answer in its dialog), set per datagram. A TCP or TLS connection is shared by every
/// session with that peer, so it keeps the manager's mark.
///
/// ```
/// use session_core::{DscpPolicy, Priority};
///
/// let urgent = Priority::new(3).unwrap();
/// let policy = DscpPolicy::default()
///     .rtp(34)
///     .rtp_at_or_above(urgent, 46)
///     .sip_at_or_above(urgent, 40);
/// assert_eq!(policy.rtp_for(Priority::ROUTINE), 34);
/// assert_eq!(policy.rtp_for(Priority::HIGHEST), 46);
/// assert_eq!(policy.sip_dscp(), 24);
/// assert_eq!(policy.sip_for(Priority::ROUTINE), 24);
/// assert_eq!(policy.sip_for(urgent), 40);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DscpPolicy {
    sip: u8,
    rtp: u8,
    /// Overrides of `rtp`, by the lowest priority they apply to.
    rtp_by_priority: Vec<(Priority, u8)>,
    /// Overrides of `sip`, the same way.
    sip_by_priority: Vec<(Priority, u8)>,
}

impl Default for DscpPolicy {
    fn default() -> Self {
        Self {
            sip: 24,
            rtp: 46,
            rtp_by_priority: Vec::new(),
            sip_by_priority: Vec::new(),
        }
    }
}

impl DscpPolicy {
    /// Nothing marked (every code point 0).
    pub fn unmarked() -> Self {
        Self {
            sip: 0,
            rtp: 0,
            rtp_by_priority: Vec::new(),
            sip_by_priority: Vec::new(),
        }
    }

    /// SIP's code point (0 … 63).
    #[must_use]
    pub fn sip(mut self, dscp: u8) -> Self {
        self.sip = dscp & 0x3f;
        self
    }

    /// RTP's code point for every session without an override (0 … 63).
    #[must_use]
    pub fn rtp(mut self, dscp: u8) -> Self {
        self.rtp = dscp & 0x3f;
        self
    }

    /// RTP's code point for sessions at or above `priority` (the override of the highest
    /// priority a session reaches applies).
    #[must_use]
    pub fn rtp_at_or_above(mut self, priority: Priority, dscp: u8) -> Self {
        self.rtp_by_priority.retain(|(p, _)| *p != priority);
        self.rtp_by_priority.push((priority, dscp & 0x3f));
        self.rtp_by_priority.sort_unstable();
        self
    }

    /// SIP's code point for sessions at or above `priority` (the override of the highest
    /// priority a session reaches applies).
    #[must_use]
    pub fn sip_at_or_above(mut self, priority: Priority, dscp: u8) -> Self {
        self.sip_by_priority.retain(|(p, _)| *p != priority);
        self.sip_by_priority.push((priority, dscp & 0x3f));
        self.sip_by_priority.sort_unstable();
        self
    }

    /// SIP's code point: the mark of the SIP socket, and of every session without an
    /// override.
    pub fn sip_dscp(&self) -> u8 {
        self.sip
    }

    /// The code point of SIP for a session at `priority`.
    pub fn sip_for(&self, priority: Priority) -> u8 {
        by_priority(&self.sip_by_priority, priority).unwrap_or(self.sip)
    }

    /// The code point of RTP for a session at `priority`.
    pub fn rtp_for(&self, priority: Priority) -> u8 {
        by_priority(&self.rtp_by_priority, priority).unwrap_or(self.rtp)
    }

    /// Whether some priority has a SIP mark of its own (else nothing per session is done).
    pub(crate) fn marks_sip_by_priority(&self) -> bool {
        !self.sip_by_priority.is_empty()
    }

    /// The mark a session at `priority` sets on its SIP messages: `None` when it is the
    /// socket's own.
    pub(crate) fn sip_mark(&self, priority: Priority) -> Option<u8> {
        let dscp = self.sip_for(priority);
        (dscp != self.sip).then_some(dscp)
    }
}

/// The override of the highest priority at or below `priority`, if any.
fn by_priority(overrides: &[(Priority, u8)], priority: Priority) -> Option<u8> {
    overrides
        .iter()
        .rev()
        .find(|(from, _)| priority >= *from)
        .map(|(_, dscp)| *dscp)
}

/// Limits past which the manager ends a session stuck waiting (opt-in; every limit is off by
/// default), recording [`session_types::FailureReason::Stuck`] as its reason: an application
/// that deferred a call and never answered it, a peer that never ACKs our 2xx. No media is
/// the media timeout's job ([`crate::SessionManagerBuilder::media_timeout`]).
///
/// ```
/// use session_core::StuckLimits;
/// use std::time::Duration;
///
/// let limits = StuckLimits::default()
///     .final_response(Duration::from_secs(120))
///     .ack(Duration::from_secs(10));
/// assert_eq!(limits.final_response, Some(Duration::from_secs(120)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StuckLimits {
    /// An INVITE without a final response this long after the session began: an incoming
    /// call is refused 480, an outgoing one cancelled.
    pub final_response: Option<Duration>,
    /// Our 2xx without its ACK this long after it was sent: the call is ended with BYE (the
    /// SIP layer gives up by itself after 64·T1, 32 s).
    pub ack: Option<Duration>,
}

impl StuckLimits {
    /// Sets [`StuckLimits::final_response`].
    #[must_use]
    pub fn final_response(mut self, limit: Duration) -> Self {
        self.final_response = Some(limit);
        self
    }

    /// Sets [`StuckLimits::ack`].
    #[must_use]
    pub fn ack(mut self, limit: Duration) -> Self {
        self.ack = Some(limit);
        self
    }
}

/// Everything the manager is configured with.
#[derive(Debug, Clone)]
pub(crate) struct ManagerConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) udp: bool,
    pub(crate) tcp: bool,
    pub(crate) identity: Identity,
    pub(crate) media_ip: Option<IpAddr>,
    pub(crate) media_ports: RangeInclusive<u16>,
    pub(crate) media_mode: MediaMode,
    pub(crate) idle_audio: IdleAudio,
    /// An active call with no RTP from the peer for this long is ended with BYE.
    pub(crate) media_timeout: Option<Duration>,
    pub(crate) media: MediaConfig,
    pub(crate) timers: TimerConfig,
    pub(crate) session_timer: Option<SessionTimerConfig>,
    pub(crate) socket_buffer: Option<usize>,
    /// How long `shutdown` waits for BYE/CANCEL transactions to finish.
    pub(crate) shutdown_grace: Duration,
    /// How long a transferor waits for the final NOTIFY.
    pub(crate) transfer_timeout: Duration,
    /// Calls to size every map for up front (no rehash pauses under load).
    pub(crate) reserve_calls: usize,
    /// Where every outbound call's INVITE goes, with this URI as pre-loaded Route.
    pub(crate) outbound_proxy: Option<session_sip::Uri>,
    /// The seed of every random draw on the wire (tags, branches, Call-IDs, glare delays).
    pub(crate) rng_seed: Option<u64>,
    /// How packets are marked.
    pub(crate) dscp: DscpPolicy,
    /// The namespace our `Resource-Priority` values are written in.
    pub(crate) priority_namespace: PriorityNamespace,
    /// When a session stuck waiting is ended.
    pub(crate) stuck: StuckLimits,
    /// SIP over TLS, and where it listens.
    pub(crate) tls: Option<session_dialog::tls::TlsConfig>,
    pub(crate) tls_bind: Option<SocketAddr>,
    /// Whose credentials answer 401/407 to our requests (client digest, RFC 3261 §22.2);
    /// a call's own `CallOptions::account` wins.
    pub(crate) account: Option<session_dialog::auth::Account>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            udp: true,
            tcp: true,
            identity: Identity::default(),
            media_ip: None,
            media_ports: 20_000..=29_999,
            media_mode: MediaMode::Rtp { echo: false },
            idle_audio: IdleAudio::Silence,
            media_timeout: None,
            media: MediaConfig::default(),
            timers: TimerConfig::default(),
            session_timer: None,
            socket_buffer: None,
            shutdown_grace: Duration::from_secs(2),
            transfer_timeout: Duration::from_secs(32),
            reserve_calls: 0,
            outbound_proxy: None,
            rng_seed: None,
            dscp: DscpPolicy::default(),
            priority_namespace: PriorityNamespace::default(),
            stuck: StuckLimits::default(),
            tls: None,
            account: None,
            tls_bind: None,
        }
    }
}
