//! The RTP endpoint of one audio stream on tokio UDP sockets: G.711 frames and RFC 4733
//! digits out, decoded frames, digits and RTCP in; symmetric RTP (latching to where the peer
//! really sends from), an inactivity event, RTCP reports and statistics.
//!
//! Sockets: one for RTP and one for RTCP on the next port, or a single one with `rtcp-mux`.
//! [`RtpEndpoint::bind_from_pool`] leases the pair from `session-resources`' [`PortPool`] and
//! keeps the lease inside the endpoint, so dropping the endpoint gives the ports back on every
//! path a session can end by. [`RtpEndpoint::bind`] (an explicit address) and
//! [`RtpEndpoint::from_sockets`] (sockets bound elsewhere) are there for tests and special
//! cases.
//!
//! A leg can be handed over (to a bridge) and back: [`RtpEndpoint::into_leg`] takes the
//! endpoint apart into [`EndpointParts`] — sockets, lease, outgoing stream state, reception
//! statistics, codec, payload types, addresses — and [`RtpEndpoint::from_parts`] rebuilds it,
//! continuing the same stream (one SSRC, contiguous sequence numbers, timestamps on the
//! sampling clock, SR counts over the SSRC's whole life).
//!
//! ```no_run
//! # async fn demo(media: &session_media::sdp::negotiate::NegotiatedMedia) -> session_media::Result<()> {
//! use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
//! use session_media::audio::{AudioSource, ToneSource};
//!
//! let mut ep = RtpEndpoint::bind("127.0.0.1:0".parse().unwrap(), RtcpPort::NextPort, EndpointConfig::default()).await?;
//! ep.configure(media)?;
//! let mut tone = ToneSource::new(440.0, 8000);
//! if let Some(frame) = tone.next_frame() {
//!     ep.send_frame(&frame).await?;
//! }
//! match ep.recv().await? {
//!     Received::Audio { frame, .. } => { let _ = frame.energy(); }
//!     Received::Dtmf(d) => { let _ = d.digit; }
//!     Received::Inactive(for_how_long) => { let _ = for_how_long; }
//!     _ => {}
//! }
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use session_resources::{PortPair, PortPool};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::dtmf::{DetectedDigit, DtmfDetector, DtmfEncoder};
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, FRAME_SAMPLES};
use crate::g711::G711Law;
use crate::rtcp::{self, NtpClock, ReceptionStats, RtcpPacket, StreamStats};
use crate::rtp::{self, MAX_PACKET, RtpSender, SenderState};
use crate::sdp::negotiate::NegotiatedMedia;

/// Endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// No RTP for this long → [`Received::Inactive`] (repeated each period).
    pub inactivity_timeout: Duration,
    /// Latch the remote address to the source of the first received packet (symmetric RTP,
    /// RFC 4961), which gets media through NATs whose SDP address is wrong.
    pub symmetric_rtp: bool,
    /// SDES CNAME.
    pub cname: String,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            inactivity_timeout: Duration::from_secs(30),
            symmetric_rtp: true,
            cname: format!("session-media-{:08x}", fastrand::u32(..)),
        }
    }
}

impl EndpointConfig {
    /// Sets the inactivity timeout.
    pub fn inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.inactivity_timeout = timeout;
        self
    }

    /// Enables or disables latching.
    pub fn symmetric_rtp(mut self, on: bool) -> Self {
        self.symmetric_rtp = on;
        self
    }
}

/// Where an endpoint's RTCP goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpPort {
    /// On the RTP port itself (RFC 5761 rtcp-mux): one socket.
    Muxed,
    /// On the port above the RTP port (RFC 3550 §11): two sockets.
    NextPort,
}

impl RtcpPort {
    /// [`RtcpPort::Muxed`] when `mux` (an SDP negotiation's `rtcp-mux` setting, say), else
    /// [`RtcpPort::NextPort`].
    pub fn muxed_if(mux: bool) -> Self {
        if mux { Self::Muxed } else { Self::NextPort }
    }
}

/// Something the endpoint received.
// The audio variant carries its 320-byte frame inline on purpose: boxing it would allocate
// once per received packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Received {
    /// A decoded audio frame.
    Audio {
        /// The audio.
        frame: AudioFrame,
        /// RTP sequence number.
        sequence: u16,
        /// RTP timestamp.
        timestamp: u32,
        /// Marker bit (talk-spurt start).
        marker: bool,
    },
    /// A completed DTMF digit.
    Dtmf(DetectedDigit),
    /// RTCP packets (reports are already folded into the statistics).
    Rtcp(Vec<RtcpPacket>),
    /// No RTP for the given time.
    Inactive(Duration),
}

impl From<crate::reframe::ReframedAudio> for Received {
    fn from(audio: crate::reframe::ReframedAudio) -> Self {
        Received::Audio {
            frame: audio.frame,
            sequence: audio.sequence,
            timestamp: audio.timestamp,
            marker: audio.marker,
        }
    }
}

/// Counters of an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Datagrams that were neither valid RTP nor valid RTCP.
    pub malformed: u64,
    /// Packets from an address other than the latched one (dropped).
    pub foreign: u64,
    /// RTP packets with a payload type we did not negotiate (dropped).
    pub unknown_payload_type: u64,
}

/// An [`RtpEndpoint`] taken apart ([`RtpEndpoint::into_leg`]) so that something else — a
/// bridge — can run the stream for a while, and put back together
/// ([`RtpEndpoint::from_parts`]) when it hands the stream back.
///
/// It holds the whole leg: the sockets (in `Arc`s, so a driver can receive on one task and
/// send from another; whoever holds the parts is the one owner of the leg, and nothing reads
/// its sockets from two places), the port-pool lease (the ports stay leased while the leg is
/// away), the outgoing stream's state (SSRC, next sequence number, timestamp on the sampling
/// clock, SR counts), what was received, the negotiated codec and payload types, the peer's
/// addresses and the latching state. Whoever runs the stream updates `sender`, `reception`,
/// the addresses and `last_rx` as it goes, so the rebuilt endpoint continues the same stream.
///
/// Not carried over: a DTMF event or a partial frame being received when the endpoint was
/// taken apart (what arrives meanwhile goes to whoever holds the parts).
#[derive(Debug)]
#[non_exhaustive]
pub struct EndpointParts {
    /// The RTP socket (RTP and RTCP with rtcp-mux).
    pub rtp: Arc<UdpSocket>,
    /// The RTCP socket; `None` with rtcp-mux.
    pub rtcp: Option<Arc<UdpSocket>>,
    /// The leased port pair, if the endpoint came from a pool; dropping it gives the ports
    /// back.
    pub lease: Option<PortPair>,
    /// The endpoint's settings (latching on or off, CNAME, inactivity timeout).
    pub config: EndpointConfig,
    /// The outgoing stream.
    pub sender: SenderState,
    /// Statistics of what the leg received (the source of its report blocks).
    pub reception: ReceptionStats,
    /// The negotiated G.711 law.
    pub law: G711Law,
    /// The negotiated audio payload type (sent with; the static 0 and 8 are accepted too).
    pub audio_pt: u8,
    /// The peer's RFC 4733 telephone-event payload type (what we send events with).
    pub event_pt: Option<u8>,
    /// Our own telephone-event payload type (what the peer may send events with).
    pub receive_event_pt: Option<u8>,
    /// Where RTP goes.
    pub remote_rtp: Option<SocketAddr>,
    /// Where RTCP goes (the RTP address with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// The address RTP was latched to (symmetric RTP); from then on packets from any other
    /// source are foreign and dropped.
    pub latched: Option<SocketAddr>,
    /// When RTP last arrived (or the endpoint was made): the inactivity timer counts from it.
    pub last_rx: std::time::Instant,
    /// The wall clock of the leg's RTCP reports.
    pub clock: NtpClock,
    /// Round-trip time from the peer's last report block on our stream.
    pub rtt: Option<Duration>,
    /// Fraction lost (0.0–1.0) the peer last reported on our stream.
    pub remote_fraction_lost: f64,
    /// The endpoint's counters (malformed, foreign, unknown payload type).
    pub counters: EndpointCounters,
}

impl EndpointParts {
    /// Applies a new offer/answer agreement to a leg that is away from its endpoint (in a
    /// bridge), as [`RtpEndpoint::configure`] does to an endpoint: codec, payload types, and
    /// the peer's addresses unless RTP is latched.
    pub fn configure(&mut self, media: &NegotiatedMedia) -> Result<()> {
        self.law = G711Law::from_encoding_name(&media.codec.name)
            .ok_or(Error::InvalidConfig("negotiated codec is not G.711"))?;
        self.audio_pt = media.codec.payload_type;
        self.event_pt = media.telephone_event;
        self.receive_event_pt = media.local_telephone_event;
        if let (Some(rtp), Some(rtcp)) = (media.remote_rtp(), media.remote_rtcp())
            && self.latched.is_none()
        {
            self.remote_rtp = Some(rtp);
            self.remote_rtcp = Some(if self.rtcp.is_none() { rtp } else { rtcp });
        }
        Ok(())
    }

    /// Latches the leg to `src` if symmetric RTP is on and nothing is latched yet (as the
    /// endpoint does on its first valid RTP packet), and says whether a packet from `src` is
    /// the peer's: `false` means foreign (latched elsewhere), and the packet is to be dropped
    /// and counted in `counters.foreign`.
    pub fn accept_rtp_from(&mut self, src: SocketAddr) -> bool {
        match self.latched {
            Some(addr) => addr == src,
            None if self.config.symmetric_rtp => {
                self.latched = Some(src);
                self.remote_rtp = Some(src);
                if self.rtcp.is_none() {
                    self.remote_rtcp = Some(src);
                }
                tracing::debug!(%src, "RTP latched to the peer's source address");
                true
            }
            None => true,
        }
    }

    /// Notes an RTCP packet from `src` on the RTCP socket: with symmetric RTP, reports go back
    /// where the peer sends them from (as the endpoint does).
    pub fn note_rtcp_from(&mut self, src: SocketAddr) {
        if self.config.symmetric_rtp && self.rtcp.is_some() {
            self.remote_rtcp = Some(src);
        }
    }
}

/// Sets the DiffServ code point (RFC 2474) of an endpoint's RTP and RTCP packets. It holds
/// the sockets weakly: once they are closed it does nothing, and it never keeps a port bound.
#[derive(Debug, Clone, Default)]
pub struct PacketMarking {
    rtp: std::sync::Weak<UdpSocket>,
    rtcp: Option<std::sync::Weak<UdpSocket>>,
}

impl PacketMarking {
    /// Marks every packet sent from now on with `dscp` (0 … 63; EF is 46): the IPv4 TOS or
    /// IPv6 traffic class byte's upper six bits. `Ok` once the sockets are gone.
    pub fn set_dscp(&self, dscp: u8) -> Result<()> {
        let class = u32::from(dscp & 0x3f) << 2;
        let sockets = std::iter::once(&self.rtp).chain(self.rtcp.as_ref());
        for socket in sockets.filter_map(std::sync::Weak::upgrade) {
            let socket_ref = socket2::SockRef::from(&*socket);
            if socket.local_addr()?.is_ipv4() {
                socket_ref.set_tos_v4(class)?;
            } else {
                socket_ref.set_tclass_v6(class)?;
            }
        }
        Ok(())
    }

    /// The code point the RTP socket marks packets with now, read back from the system;
    /// `None` once the socket is closed.
    pub fn dscp(&self) -> Option<u8> {
        let socket = self.rtp.upgrade()?;
        let socket_ref = socket2::SockRef::from(&*socket);
        let class = if socket.local_addr().ok()?.is_ipv4() {
            socket_ref.tos_v4().ok()?
        } else {
            socket_ref.tclass_v6().ok()?
        };
        u8::try_from(class >> 2).ok()
    }
}

/// The RTP endpoint of one audio stream.
#[derive(Debug)]
pub struct RtpEndpoint {
    rtp: Arc<UdpSocket>,
    rtcp: Option<Arc<UdpSocket>>,
    config: EndpointConfig,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    law: G711Law,
    audio_pt: u8,
    event_pt: Option<u8>,
    receive_event_pt: Option<u8>,
    sender: RtpSender,
    reception: ReceptionStats,
    dtmf: DtmfDetector,
    /// Packets of any ptime become 20 ms frames here.
    reframer: crate::reframe::Reframer,
    buf: Box<[u8; MAX_PACKET]>,
    rtcp_in: Box<[u8; MAX_PACKET]>,
    rtcp_out: Vec<u8>,
    last_rx: Instant,
    clock: NtpClock,
    rtt: Option<Duration>,
    last_fraction: f64,
    counters: EndpointCounters,
    /// The leased port pair, released when the endpoint is dropped.
    lease: Option<PortPair>,
}

impl RtpEndpoint {
    /// Binds RTP at `addr` and, for [`RtcpPort::NextPort`], RTCP at the next port. With port 0
    /// an even port whose successor is free is chosen by the OS and checked.
    pub async fn bind(addr: SocketAddr, rtcp: RtcpPort, config: EndpointConfig) -> Result<Self> {
        if rtcp == RtcpPort::Muxed {
            let rtp = std::net::UdpSocket::bind(addr)?;
            return Self::from_sockets(rtp, None, config);
        }
        let mut last_err = None;
        for _ in 0..16 {
            let rtp = std::net::UdpSocket::bind(addr)?;
            let local = rtp.local_addr()?;
            let Some(next) = local.port().checked_add(1) else {
                continue;
            };
            match std::net::UdpSocket::bind(SocketAddr::new(local.ip(), next)) {
                Ok(rtcp) => return Self::from_sockets(rtp, Some(rtcp), config),
                Err(e) if addr.port() == 0 => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err.map_or(
            Error::InvalidConfig("no free RTP/RTCP port pair"),
            Error::Io,
        ))
    }

    /// Leases an RTP/RTCP port pair from `pool` and binds it on `ip` (only the RTP port with
    /// [`RtcpPort::Muxed`]). A pair that cannot be bound (another program holds a port) is kept leased
    /// while the next is tried, then given back, as the pool asks; after eight
    /// pairs the last bind error is returned. Pool exhaustion is [`Error::Resources`] (503).
    pub async fn bind_from_pool(
        pool: &PortPool,
        ip: std::net::IpAddr,
        rtcp_port: RtcpPort,
        config: EndpointConfig,
    ) -> Result<Self> {
        const MAX_BIND_TRIES: usize = 8;
        let mut refused = Vec::new();
        let mut last_err = None;
        for _ in 0..MAX_BIND_TRIES {
            let pair = pool.acquire()?;
            let rtp = std::net::UdpSocket::bind(SocketAddr::new(ip, pair.rtp()));
            let rtcp = if rtcp_port == RtcpPort::Muxed {
                Ok(None)
            } else {
                std::net::UdpSocket::bind(SocketAddr::new(ip, pair.rtcp())).map(Some)
            };
            match (rtp, rtcp) {
                (Ok(rtp), Ok(rtcp)) => {
                    let mut endpoint = Self::from_sockets(rtp, rtcp, config)?;
                    endpoint.lease = Some(pair);
                    return Ok(endpoint);
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(rtp = pair.rtp(), error = %e, "leased RTP port pair is busy");
                    last_err = Some(e);
                    refused.push(pair);
                }
            }
        }
        drop(refused);
        Err(last_err.map_or(Error::InvalidConfig("no bindable RTP port pair"), Error::Io))
    }

    /// The leased port pair, when the endpoint came from [`RtpEndpoint::bind_from_pool`].
    pub fn lease(&self) -> Option<&PortPair> {
        self.lease.as_ref()
    }

    /// An endpoint on sockets bound elsewhere (e.g. on ports leased from a port pool). `rtcp`
    /// `None` means RTCP is multiplexed on the RTP socket. Must be called inside a tokio
    /// runtime.
    pub fn from_sockets(
        rtp: std::net::UdpSocket,
        rtcp: Option<std::net::UdpSocket>,
        config: EndpointConfig,
    ) -> Result<Self> {
        rtp.set_nonblocking(true)?;
        let rtp = Arc::new(UdpSocket::from_std(rtp)?);
        let rtcp = match rtcp {
            Some(s) => {
                s.set_nonblocking(true)?;
                Some(Arc::new(UdpSocket::from_std(s)?))
            }
            None => None,
        };
        let now = Instant::now();
        Ok(Self {
            rtp,
            rtcp,
            config,
            remote_rtp: None,
            remote_rtcp: None,
            latched: None,
            law: G711Law::Ulaw,
            audio_pt: 0,
            event_pt: None,
            receive_event_pt: None,
            sender: RtpSender::random(),
            reception: ReceptionStats::new(8_000),
            dtmf: DtmfDetector::new(),
            reframer: crate::reframe::Reframer::new(),
            buf: Box::new([0; MAX_PACKET]),
            rtcp_in: Box::new([0; MAX_PACKET]),
            rtcp_out: Vec::with_capacity(256),
            last_rx: now,
            clock: NtpClock::new(SystemTime::now(), now.into_std()),
            rtt: None,
            last_fraction: 0.0,
            counters: EndpointCounters::default(),
            lease: None,
        })
    }

    /// Takes the endpoint apart to hand its leg over (to a bridge): sockets, port lease,
    /// outgoing stream state, reception statistics, codec and payload types, the peer's
    /// addresses and latching state. [`RtpEndpoint::from_parts`] puts it back together; the
    /// ports stay leased in between. Stop reading the endpoint first: whatever is queued on
    /// its sockets then goes to whoever holds the parts.
    pub fn into_leg(self) -> EndpointParts {
        EndpointParts {
            rtp: self.rtp,
            rtcp: self.rtcp,
            lease: self.lease,
            config: self.config,
            sender: self.sender.state(),
            reception: self.reception,
            law: self.law,
            audio_pt: self.audio_pt,
            event_pt: self.event_pt,
            receive_event_pt: self.receive_event_pt,
            remote_rtp: self.remote_rtp,
            remote_rtcp: self.remote_rtcp,
            latched: self.latched,
            last_rx: self.last_rx.into_std(),
            clock: self.clock,
            rtt: self.rtt,
            remote_fraction_lost: self.last_fraction,
            counters: self.counters,
        }
    }

    /// Rebuilds an endpoint from its parts: it continues the same stream (SSRC, next sequence
    /// number, timestamp on the sampling clock, marker pending, SR counts), keeps the lease,
    /// and receives on the same sockets.
    pub fn from_parts(parts: EndpointParts) -> Self {
        Self {
            rtp: parts.rtp,
            rtcp: parts.rtcp,
            config: parts.config,
            remote_rtp: parts.remote_rtp,
            remote_rtcp: parts.remote_rtcp,
            latched: parts.latched,
            law: parts.law,
            audio_pt: parts.audio_pt,
            event_pt: parts.event_pt,
            receive_event_pt: parts.receive_event_pt,
            sender: RtpSender::from_state(parts.sender),
            reception: parts.reception,
            dtmf: DtmfDetector::new(),
            reframer: crate::reframe::Reframer::new(),
            buf: Box::new([0; MAX_PACKET]),
            rtcp_in: Box::new([0; MAX_PACKET]),
            rtcp_out: Vec::with_capacity(256),
            last_rx: Instant::from_std(parts.last_rx),
            clock: parts.clock,
            rtt: parts.rtt,
            last_fraction: parts.remote_fraction_lost,
            counters: parts.counters,
            lease: parts.lease,
        }
    }

    /// The outgoing stream's state (SSRC, next sequence number and timestamp, SR counts).
    pub fn sender_state(&self) -> SenderState {
        self.sender.state()
    }

    /// Local RTP address (for the SDP `m=` port).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.rtp.local_addr()?)
    }

    /// Local RTCP address (the RTP one with rtcp-mux).
    pub fn local_rtcp_addr(&self) -> Result<SocketAddr> {
        match &self.rtcp {
            Some(s) => Ok(s.local_addr()?),
            None => self.local_addr(),
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.sender.ssrc()
    }

    /// A handle that marks this endpoint's packets (DSCP) for as long as its sockets live,
    /// whoever owns them by then (the endpoint, a bridge).
    pub fn marking(&self) -> PacketMarking {
        PacketMarking {
            rtp: Arc::downgrade(&self.rtp),
            rtcp: self.rtcp.as_ref().map(Arc::downgrade),
        }
    }

    /// Counters.
    pub fn counters(&self) -> EndpointCounters {
        self.counters
    }

    /// Where RTP goes now (after latching, the peer's real source address).
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        self.remote_rtp
    }

    /// Applies the result of an offer/answer: codec, payload types and the peer's addresses.
    /// A peer address given as a host name is not resolved here; set it with
    /// [`RtpEndpoint::set_remote`] (or let latching find it).
    pub fn configure(&mut self, media: &NegotiatedMedia) -> Result<()> {
        self.law = G711Law::from_encoding_name(&media.codec.name)
            .ok_or(Error::InvalidConfig("negotiated codec is not G.711"))?;
        self.audio_pt = media.codec.payload_type;
        self.event_pt = media.telephone_event;
        self.receive_event_pt = media.local_telephone_event;
        if let (Some(rtp), Some(rtcp)) = (media.remote_rtp(), media.remote_rtcp())
            && self.latched.is_none()
        {
            self.set_remote(rtp, rtcp);
        }
        Ok(())
    }

    /// Sets the peer's RTP and RTCP addresses.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: SocketAddr) {
        self.remote_rtp = Some(rtp);
        self.remote_rtcp = Some(if self.rtcp.is_none() { rtp } else { rtcp });
    }

    async fn send_rtp_bytes(
        socket: &UdpSocket,
        to: Option<SocketAddr>,
        bytes: &[u8],
    ) -> Result<()> {
        let to = to.ok_or(Error::InvalidConfig("no remote RTP address"))?;
        socket.send_to(bytes, to).await?;
        Ok(())
    }

    /// Encodes and sends one 20 ms frame.
    pub async fn send_frame(&mut self, frame: &AudioFrame) -> Result<()> {
        let mut payload = [0u8; FRAME_SAMPLES];
        self.law.encode_frame(frame, &mut payload);
        // The sender keeps the timestamp on the sampling clock across pauses (RFC 3550 §5.1);
        // tokio's clock, so that tests can run it in virtual time.
        let now = Instant::now().into_std();
        let packet = self
            .sender
            .audio_at(now, self.audio_pt, &payload, FRAME_SAMPLES as u32)?;
        Self::send_rtp_bytes(&self.rtp, self.remote_rtp, packet).await
    }

    /// Marks the next frame as a talk-spurt start (after a pause in sending).
    pub fn start_talkspurt(&mut self) {
        self.sender.start_talkspurt();
    }

    /// Sends one digit as RFC 4733 events, one packet every 20 ms (paced with a tokio
    /// interval), and moves the audio timestamp past the event.
    pub async fn send_dtmf(&mut self, digit: char, duration: Duration) -> Result<()> {
        let pt = self
            .event_pt
            .ok_or(Error::InvalidConfig("telephone-event was not negotiated"))?;
        let samples = u32::try_from(duration.as_millis() * 8).unwrap_or(u32::MAX);
        let encoder = DtmfEncoder::new(digit, samples, FRAME_SAMPLES as u16)
            .ok_or(Error::InvalidConfig("not a DTMF digit"))?;
        let start_ts = self.sender.timestamp();
        let mut ticker = tokio::time::interval(crate::frame::FRAME_DURATION);
        let mut updates = 0u32;
        for packet in encoder {
            ticker.tick().await;
            if !packet.end {
                updates += 1;
            }
            let bytes = self
                .sender
                .event(pt, &packet.payload, packet.marker, start_ts)?;
            Self::send_rtp_bytes(&self.rtp, self.remote_rtp, bytes).await?;
        }
        self.sender.skip((updates + 1) * FRAME_SAMPLES as u32);
        Ok(())
    }

    /// Waits for the next thing received: audio, a digit, RTCP, or the inactivity timeout.
    /// Malformed, foreign and unknown packets are counted and skipped. Cancel-safe: dropping
    /// the future loses at most the datagram being read.
    pub async fn recv(&mut self) -> Result<Received> {
        loop {
            if let Some(audio) = self.reframer.pop() {
                return Ok(audio.into());
            }
            let deadline = self.last_rx + self.config.inactivity_timeout;
            let rtcp_socket = self.rtcp.as_ref();
            let rtcp_recv = async {
                match rtcp_socket {
                    Some(s) => s.recv_from(&mut self.rtcp_in[..]).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                biased;
                r = self.rtp.recv_from(&mut self.buf[..]) => Some((r?, true)),
                r = rtcp_recv => Some((r?, false)),
                () = tokio::time::sleep_until(deadline) => None,
            };
            let now = Instant::now();
            let Some(((len, src), on_rtp_socket)) = event else {
                // The stream went quiet: hand out the samples still waiting, then report.
                self.reframer.flush();
                if let Some(audio) = self.reframer.pop() {
                    return Ok(audio.into());
                }
                let silent = now.saturating_duration_since(self.last_rx);
                self.last_rx = now;
                if let Some(d) = self.dtmf.take_unfinished() {
                    return Ok(Received::Dtmf(d));
                }
                return Ok(Received::Inactive(silent));
            };
            if let Some(received) = self.handle_datagram(now, src, len, on_rtp_socket) {
                return Ok(received);
            }
        }
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        len: usize,
        on_rtp_socket: bool,
    ) -> Option<Received> {
        let data = if on_rtp_socket {
            self.buf.get(..len)?
        } else {
            self.rtcp_in.get(..len)?
        };
        if !on_rtp_socket || rtcp::is_rtcp(data) {
            let Ok(packets) = rtcp::parse_compound(data) else {
                self.counters.malformed += 1;
                return None;
            };
            if self.config.symmetric_rtp && self.rtcp.is_some() && !on_rtp_socket {
                self.remote_rtcp = Some(src);
            }
            let arrival = self.clock.at(now.into_std());
            for p in &packets {
                let (reports, sr) = match p {
                    RtcpPacket::SenderReport { info, reports, .. } => (reports, Some(info.ntp)),
                    RtcpPacket::ReceiverReport { reports, .. } => (reports, None),
                    _ => continue,
                };
                if let Some(ntp) = sr {
                    self.reception.on_sender_report(now.into_std(), ntp);
                }
                if let Some(b) = reports.iter().find(|b| b.ssrc == self.sender.ssrc()) {
                    self.last_fraction = f64::from(b.fraction_lost) / 256.0;
                    if let Some(rtt) = b.round_trip(arrival) {
                        self.rtt = Some(rtt);
                    }
                }
            }
            return Some(Received::Rtcp(packets));
        }
        let Ok((header, payload)) = rtp::parse(data) else {
            self.counters.malformed += 1;
            return None;
        };
        match self.latched {
            Some(addr) if addr != src => {
                self.counters.foreign += 1;
                return None;
            }
            Some(_) => {}
            None if self.config.symmetric_rtp => {
                self.latched = Some(src);
                self.remote_rtp = Some(src);
                if self.rtcp.is_none() {
                    self.remote_rtcp = Some(src);
                }
                tracing::debug!(%src, "RTP latched to the peer's source address");
            }
            None => {}
        }
        self.last_rx = now;
        self.reception.on_rtp(
            now.into_std(),
            header.ssrc,
            header.sequence,
            header.timestamp,
        );
        let pt = Some(header.payload_type);
        if pt == self.receive_event_pt || pt == self.event_pt {
            return self
                .dtmf
                .on_packet(header.timestamp, payload)
                .map(Received::Dtmf);
        }
        // The peer may switch between the codecs both sides listed: G.711 has static numbers.
        let law = match header.payload_type {
            0 => Some(G711Law::Ulaw),
            8 => Some(G711Law::Alaw),
            p if p == self.audio_pt => Some(self.law),
            _ => None,
        };
        if let Some(law) = law {
            // 10, 20 or 30 ms packets all become 20 ms frames; none of their samples is lost.
            self.reframer.push(
                law,
                header.sequence,
                header.timestamp,
                header.marker,
                payload,
            );
            return self.reframer.pop().map(Received::from);
        }
        self.counters.unknown_payload_type += 1;
        None
    }

    /// Sends an RTCP report: SR when we have sent media, RR otherwise, with SDES CNAME.
    pub async fn send_report(&mut self) -> Result<()> {
        let now = Instant::now();
        self.rtcp_out.clear();
        let blocks: Vec<_> = self
            .reception
            .report_block(now.into_std())
            .into_iter()
            .collect();
        if self.sender.packets() > 0 {
            let info = self
                .sender
                .sender_info(self.clock.at(now.into_std()), now.into_std());
            rtcp::write_sr(&mut self.rtcp_out, self.sender.ssrc(), &info, &blocks);
        } else {
            rtcp::write_rr(&mut self.rtcp_out, self.sender.ssrc(), &blocks);
        }
        rtcp::write_sdes_cname(&mut self.rtcp_out, self.sender.ssrc(), &self.config.cname);
        self.send_rtcp_out().await
    }

    /// Sends an RTCP BYE (with a report first, as RFC 3550 §6.1 wants compound packets).
    pub async fn send_bye(&mut self, reason: Option<&str>) -> Result<()> {
        self.rtcp_out.clear();
        rtcp::write_rr(&mut self.rtcp_out, self.sender.ssrc(), &[]);
        rtcp::write_bye(&mut self.rtcp_out, &[self.sender.ssrc()], reason);
        self.send_rtcp_out().await
    }

    async fn send_rtcp_out(&mut self) -> Result<()> {
        let to = self
            .remote_rtcp
            .ok_or(Error::InvalidConfig("no remote RTCP address"))?;
        let socket = self.rtcp.as_ref().unwrap_or(&self.rtp);
        socket.send_to(&self.rtcp_out, to).await?;
        Ok(())
    }

    /// Statistics of the stream so far.
    pub fn stats(&self) -> StreamStats {
        let received = self.reception.received();
        let lost = self.reception.cumulative_lost().max(0);
        let expected = received as i64 + lost;
        let fraction = if expected > 0 {
            lost as f64 / expected as f64
        } else {
            0.0
        };
        let fraction = fraction.max(self.last_fraction);
        let jitter_ms = self.reception.jitter_ms();
        StreamStats {
            packets_sent: self.sender.packets(),
            octets_sent: self.sender.octets(),
            packets_received: received,
            packets_lost: self.reception.cumulative_lost(),
            fraction_lost: fraction,
            jitter_ms,
            rtt: self.rtt,
            mos: (received > 0).then(|| rtcp::mos_estimate(fraction, jitter_ms, self.rtt)),
        }
    }
}
