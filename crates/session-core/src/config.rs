//! The manager's settings: identity, transports, media, session timers. Built through
//! [`crate::SessionManagerBuilder`]; every field has a default fit for a loopback test.

use session_dialog::transaction::TimerConfig;
use session_media::sdp::negotiate::MediaConfig;
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
        }
    }
}
