//! The tokio driver: owns the sockets and one timer, feeds the sans-IO [`UserAgent`], and
//! sends what it returns. It is the only part of the crate that does I/O or reads the clock.
//!
//! It comes in two halves ([`SipDriver::embed`]): [`DriverInputs`], which waits for what comes
//! in (UDP datagrams, read directly; whole messages from the TCP/TLS connections, each of
//! which has a small task of its own that frames the stream with session-sip's
//! `StreamDecoder`; accepted connections; jobs of [`SipHandle`]s) behind one cancel-safe
//! `next_input`, and [`DriverState`], which holds the user agent and what sends for it, with
//! sync methods only: handle an input, fire the timers, flush what the user agent queued
//! (UDP with `try_send_to`, a bounded backlog while the socket is not writable; TCP/TLS into
//! the connection's bounded queue), take its events. There is one deadline for all
//! transactions and dialogs — the next one the user agent reports — never a timer per
//! transaction.
//!
//! [`SipDriver::start`] runs both halves in one task of its own and passes the events on over
//! a bounded queue; callers act on the user agent through a cloneable [`SipHandle`], which
//! runs a closure inside that task, so no lock is ever shared. A layer above can instead run
//! the halves in its own task ([`SipDriver::embed`]; session-core's manager does), handling
//! each event where it is produced and acting on the user agent directly: no hand-off between
//! tasks from a datagram to the answer it gets.
//!
//! Every queue between tasks is bounded (RFC-level overload handling, not memory, decides
//! what happens under load):
//! - the events to the layer above ([`DriverConfig::event_queue`], standalone driver): when
//!   it runs short of room ([`DriverConfig::overload_room`]), new INVITEs are refused with a
//!   stateless 503 and `Retry-After` ([`UserAgent::set_shedding`]) so the room left is for
//!   calls already admitted; when it is full, the driver holds the events it could not hand
//!   over and stops reading its sockets until there is room again (the kernel's buffers and
//!   the peers' retransmissions take the excess, as RFC 3261 expects of a busy element). An
//!   embedded driver has no such queue: its owner handles each event as it comes;
//! - the datagrams read ahead (at most [`DriverConfig::event_queue`]): when one arrives,
//!   whatever else the socket holds is read too, so a burst longer than the kernel's buffer
//!   waits here rather than being dropped while the owner works. For an embedded driver this
//!   is the owner's backlog, measured as the event queue is: with less than
//!   [`DriverConfig::overload_room`] of it free, new INVITEs are shed (a stateless 503) —
//!   as they are while [`SipHandle::refuse_new_calls`] says so;
//! - the datagrams the UDP socket would not take at once (1024; beyond, one is dropped as the
//!   network could drop it);
//! - the jobs from [`SipHandle`]s ([`DriverConfig::job_queue`]): a caller waits for room;
//! - the messages each TCP connection has framed but the driver not yet handled
//!   ([`DriverConfig::tcp_in_flight`] per connection, within one shared queue): a connection
//!   at its share stops reading, so a client that pipelines faster than we answer slows
//!   itself down;
//! - the bytes waiting to be written to each TCP connection ([`DriverConfig::tcp_send_queue`]
//!   messages): a peer that does not read fills it, and a write that makes no progress for
//!   [`DriverConfig::tcp_write_timeout`] closes the connection.
//!
//! Whatever makes new INVITEs shed — the queue above short of room, the layer above at its
//! admission limit ([`SipHandle::refuse_new_calls`]) or draining ([`SipHandle::set_draining`])
//! — also makes out-of-dialog OPTIONS get 503 with `Retry-After` instead of 200, so a balancer
//! that probes with OPTIONS stops sending new calls; both answers carry the load the layer
//! above reports ([`SipHandle::report_load`], the `X-Load` header).
//!
//! TCP peers cannot hold more than their share either: a message must be complete within
//! [`DriverConfig::tcp_message_timeout`] of its first byte (a "slowloris" client that never
//! finishes one is disconnected); accepted connections are capped in total
//! ([`DriverConfig::tcp_max_connections`]) and per source address
//! ([`DriverConfig::tcp_max_connections_per_ip`]), one beyond a cap being closed at once; the
//! listen backlog is [`DriverConfig::tcp_backlog`]. When `accept` itself fails (out of file
//! descriptors, say) the driver stops accepting for a while that grows up to a second, rather
//! than retrying at once in a busy loop, and warns once per such episode.
//!
//! On a TCP connection, as on UDP, a request that is well framed but malformed is answered
//! statelessly (400 and friends) and the connection stays; only a message whose framing is
//! lost closes it (RFC 3261 §18.3). A CRLFCRLF keep-alive ping is answered with a CRLF pong
//! (RFC 5626 §4.4.1).
//!
//! TLS ([`DriverConfig::tls`], RFC 3261 §26.2.1) is TCP with rustls in between: a listener of
//! its own ([`DriverConfig::tls_bind`], 5061 beside 5060), the same connection tasks, limits and
//! reuse (connections are kept per transport and peer), a handshake bounded like a message,
//! and the server's certificate checked against our trusted roots and the name we called
//! ([`SipHandle::set_tls_name`], else the IP address). A handshake that fails is a transport
//! error like a refused connection. Over TLS our Via and Contact name the TLS listener, so the
//! peer's requests in the dialog come back over TLS.
//!
//! A send that fails for good (a refused or broken TCP connection, a hard UDP error such as an
//! unreachable network) is reported to the user agent with
//! [`UserAgent::handle_transport_error`], which ends the transactions towards that peer at once
//! (RFC 3261 §17.1.4) rather than after 32 s of Timer B or F.

use crate::endpoint::{EndpointConfig, Load, Protocol, Transmit};
use crate::tls::TlsConfig;
use crate::ua::{UaConfig, UaEvent, UserAgent};
use bytes::Bytes;
use session_sip::{ParseLimits, StreamDecoder, Uri};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// The `tracing` target of the full SIP message trace: every message received and sent, whole
/// (SDP included), at TRACE level, with the transport and the peer's address — what PJSIP's log
/// level 5 shows, without a packet capture. Turn it on with a filter such as
/// `RUST_LOG=sip_wire=trace` (with `tracing-subscriber`'s `EnvFilter`); off, it costs one
/// callsite check per message.
pub const WIRE_TRACE_TARGET: &str = "sip_wire";

/// Writes one message to the wire trace (see [`WIRE_TRACE_TARGET`]).
fn trace_wire(direction: &'static str, protocol: Protocol, peer: SocketAddr, bytes: &[u8]) {
    if tracing::enabled!(target: WIRE_TRACE_TARGET, tracing::Level::TRACE) {
        let text = String::from_utf8_lossy(bytes);
        tracing::trace!(
            target: WIRE_TRACE_TARGET,
            direction,
            ?protocol,
            %peer,
            len = bytes.len(),
            "\n{text}"
        );
    }
}

/// Settings of a [`SipDriver`].
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Where to listen. UDP and TCP share the address; port 0 picks a free port (TCP then
    /// takes the same port as UDP).
    pub bind: SocketAddr,
    /// Listen on UDP.
    pub udp: bool,
    /// Listen on TCP (and accept outgoing TCP requests).
    pub tcp: bool,
    /// The user part of our Contact URI.
    pub contact_user: String,
    /// The transaction endpoint's settings.
    pub endpoint: EndpointConfig,
    /// UDP socket send and receive buffer sizes, when set.
    pub socket_buffer: Option<usize>,
    /// The DiffServ code point (RFC 2474) of the SIP packets we send, over UDP and TCP
    /// (default 0, unmarked; CS3, 24, is what RFC 4594 suggests for signaling). A UDP message
    /// the user agent marks otherwise (a priority session's: [`Transmit::dscp`]) goes with
    /// its own mark; a TCP or TLS connection is shared by every session with that peer and
    /// keeps this one.
    pub dscp: u8,
    /// SIP over TLS (`sips:`, `;transport=tls`): connections we open use it, and with an
    /// identity we also listen for TLS on [`DriverConfig::tls_bind`]. TLS connections share
    /// the TCP limits below (caps, queues, timeouts); a handshake must finish within
    /// [`DriverConfig::tcp_message_timeout`].
    pub tls: Option<TlsConfig>,
    /// Where TLS listens: by default the SIP address with port 5061 when SIP is on 5060
    /// (RFC 3261 §19.1.2), else a port the system picks.
    pub tls_bind: Option<SocketAddr>,
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Capacity of the queue of events to the layer above (default 4096), and the most
    /// datagrams read ahead (an embedded driver's owner takes the events as they come; its
    /// backlog is what was read ahead).
    pub event_queue: usize,
    /// Room in the event queue kept for calls already admitted: with less free, new INVITEs
    /// are answered 503 with [`DriverConfig::overload_retry_after`] before any state is made
    /// for them (default 1024; at most `event_queue`). For an embedded driver, the same room
    /// in its datagrams read ahead.
    pub overload_room: usize,
    /// The `Retry-After` of a 503 to a shed INVITE (default 5 s).
    pub overload_retry_after: Duration,
    /// Capacity of the queue of jobs from [`SipHandle`]s (default 1024).
    pub job_queue: usize,
    /// Messages one TCP connection may have framed and waiting for the driver (default 32):
    /// at that count it stops reading.
    pub tcp_in_flight: usize,
    /// Messages waiting to be written to one TCP connection (default 256): a peer that lets
    /// more pile up is not reading, and the connection is closed. Keep it above
    /// `tcp_in_flight`: a connection writes what is queued before it hands over another
    /// message, so a peer that reads never has more than that many answers waiting.
    pub tcp_send_queue: usize,
    /// A TCP write that makes no progress for this long closes the connection (default 10 s).
    pub tcp_write_timeout: Duration,
    /// A message on a TCP connection must be complete this long after its first byte arrived,
    /// or the connection is closed (default 10 s): a client that sends part of a request and
    /// stalls ("slowloris") cannot hold a connection and its buffer for the idle timeout.
    /// Line ends of keep-alives are not part of a message.
    pub tcp_message_timeout: Duration,
    /// Accepted TCP connections open at once, from all peers (default 10,000). One accepted
    /// beyond it is closed at once. Connections the driver opens itself do not count.
    pub tcp_max_connections: usize,
    /// Accepted TCP connections open at once from one IP address (default 256). One accepted
    /// beyond it is closed at once, so one host cannot take every connection.
    pub tcp_max_connections_per_ip: usize,
    /// The TCP listen backlog: connections the kernel completes and queues before the driver
    /// accepts them (default 1024; the kernel may cap it, as Linux does at
    /// `net.core.somaxconn`).
    pub tcp_backlog: u32,
    /// Seeds the user agent's random generator (tags, branches, Call-IDs, glare delays; see
    /// [`UaConfig::rng_seed`]). `None`, the default, seeds it from entropy, as a user agent in
    /// service must; a fixed seed is for tests and replays. The seed in use is logged at
    /// DEBUG when the driver starts.
    pub rng_seed: Option<u64>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            udp: true,
            tcp: true,
            contact_user: "user".into(),
            endpoint: EndpointConfig::default(),
            socket_buffer: None,
            dscp: 0,
            tls: None,
            tls_bind: None,
            tcp_idle_timeout: Duration::from_secs(300),
            event_queue: 4096,
            overload_room: 1024,
            overload_retry_after: Duration::from_secs(5),
            job_queue: 1024,
            tcp_in_flight: 32,
            tcp_send_queue: 256,
            tcp_write_timeout: Duration::from_secs(10),
            tcp_message_timeout: Duration::from_secs(10),
            tcp_max_connections: 10_000,
            tcp_max_connections_per_ip: 256,
            tcp_backlog: 1024,
            rng_seed: None,
        }
    }
}

/// Errors of the driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// Binding or configuring a socket failed.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The driver task has stopped.
    #[error("the SIP driver has stopped")]
    Stopped,
    /// The configuration asks for nothing to listen on, or is otherwise unusable.
    #[error("invalid driver configuration: {0}")]
    Config(&'static str),
}

impl session_types::Classify for DriverError {
    fn kind(&self) -> session_types::ErrorKind {
        match self {
            Self::Bind { .. } | Self::Stopped => session_types::ErrorKind::Unavailable,
            Self::Config(_) => session_types::ErrorKind::ApiMisuse,
        }
    }
}

type Job = Box<dyn FnOnce(&mut UserAgent, Instant) + Send>;

/// A cloneable handle to a running driver.
#[derive(Clone)]
pub struct SipHandle {
    jobs: mpsc::Sender<Job>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    tls_names: TlsNames,
    contact: Uri,
    refusing_calls: Arc<AtomicBool>,
    /// The layer above is draining ([`SipHandle::set_draining`]).
    draining: Arc<AtomicBool>,
    /// The load to report, packed ([`pack_load`]).
    load: Arc<AtomicU64>,
    shed_invites: Arc<AtomicU64>,
}

impl SipHandle {
    /// The address we listen on (UDP, and TCP when enabled).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Our Contact URI.
    pub fn contact(&self) -> &Uri {
        &self.contact
    }

    /// Where we listen for TLS, when we do.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The name the certificate of the TLS server at `address` must carry (the host of the
    /// URI we resolved to it, RFC 3261 §26.3.1); without one, its IP address.
    pub fn set_tls_name(&self, address: SocketAddr, host: &str) {
        let mut names = self
            .tls_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // One per peer address; a busy server sees few peers, but bound it anyway.
        if names.len() >= MAX_TLS_NAMES && !names.contains_key(&address) {
            names.clear();
        }
        names.insert(address, host.to_owned());
    }

    /// Whether new INVITEs are to be refused (503 with Retry-After, statelessly, before any
    /// state is made: [`UserAgent::set_shedding`]) whatever room the event queue has: the
    /// layer above sets it while it is at its admission limit, so refusing costs it nothing.
    pub fn refuse_new_calls(&self, refuse: bool) {
        self.refusing_calls.store(refuse, Ordering::Relaxed);
    }

    /// Whether the layer above is draining: while set, new INVITEs are refused as by
    /// [`SipHandle::refuse_new_calls`], and out-of-dialog OPTIONS get 503 (so a balancer
    /// probing with them stops sending), however [`SipHandle::refuse_new_calls`] is set. A
    /// flag of its own so that the admission limit's updates never undo it.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// The load our answers to out-of-dialog OPTIONS report (`X-Load: ACTIVE/LIMIT`, see
    /// [`crate::endpoint::LOAD_HEADER`]); they carry none until this is first called. Cheap:
    /// one atomic store, read by the driver before it handles the next message.
    pub fn report_load(&self, active: usize, limit: Option<usize>) {
        self.load
            .store(pack_load(Load { active, limit }), Ordering::Relaxed);
    }

    /// New INVITEs refused with a stateless 503 so far (overload, or
    /// [`SipHandle::refuse_new_calls`]): calls that never reached the layer above.
    pub fn shed_invites(&self) -> u64 {
        self.shed_invites.load(Ordering::Relaxed)
    }

    /// Runs `f` on the user agent inside the task that runs the driver (its own, or the one it
    /// is embedded in: [`SipDriver::embed`]) and returns its result. Whatever it queues
    /// (requests, responses) is sent right after. Waits for room when the driver's job queue
    /// is full. (Called from the task that runs an embedded driver, it would wait for itself:
    /// that task acts on [`DriverState::user_agent`] directly.)
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut UserAgent, Instant) -> R + Send + 'static,
    ) -> Result<R, DriverError> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |ua, now| {
            // The caller may have gone away; then nobody wants the result.
            let _ = reply.send(f(ua, now));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| DriverError::Stopped)?;
        result.await.map_err(|_| DriverError::Stopped)
    }
}

/// No load reported yet ([`SipHandle::report_load`]).
const NO_LOAD: u64 = u64::MAX;

/// A load in one word, so the driver reads it with one atomic load: the active count in the
/// high half (at most `u32::MAX - 1`, so that it never makes [`NO_LOAD`]), the limit plus one
/// in the low half (0: no limit; saturating).
fn pack_load(load: Load) -> u64 {
    let active = u64::try_from(load.active)
        .unwrap_or(u64::MAX)
        .min(u64::from(u32::MAX - 1));
    let limit = load.limit.map_or(0, |limit| {
        u64::try_from(limit)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .min(u64::from(u32::MAX))
    });
    (active << 32) | limit
}

/// The load [`pack_load`] packed, or `None` for [`NO_LOAD`].
fn unpack_load(packed: u64) -> Option<Load> {
    if packed == NO_LOAD {
        return None;
    }
    let active = usize::try_from(packed >> 32).unwrap_or(usize::MAX);
    let limit = match packed & u64::from(u32::MAX) {
        0 => None,
        limit => Some(usize::try_from(limit - 1).unwrap_or(usize::MAX)),
    };
    Some(Load { active, limit })
}

/// The host names TLS servers' certificates must carry, by address ([`SipHandle::set_tls_name`]).
type TlsNames = Arc<Mutex<HashMap<SocketAddr, String>>>;

/// At most this many TLS names are kept.
const MAX_TLS_NAMES: usize = 4096;

/// A stream connection: its transport (TCP or TLS) and its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Link {
    protocol: Protocol,
    peer: SocketAddr,
}

/// What stream (TCP and TLS) connection tasks tell the driver.
enum TcpInbound {
    /// A framed message, with one of its connection's in-flight permits (given back when the
    /// driver has handled it).
    Message(Link, session_sip::Message, OwnedSemaphorePermit),
    /// The bytes of a well-framed message that did not parse, to be answered as the same
    /// bytes in a datagram would be (a stateless 400 when they are a request), with one of
    /// its connection's in-flight permits.
    Rejected(Link, Bytes, OwnedSemaphorePermit),
    Closed(Link),
    /// The connection could not be made, or bytes queued for it were never written.
    Failed(Link),
}

/// How many times a datagram is sent past other datagrams' pending ICMP errors.
const UDP_SEND_TRIES: usize = 4;

/// Whether a UDP send error can be an ICMP error pending on the socket for an earlier datagram
/// (RFC 1122 §4.1.3.3: a UDP layer passes ICMP errors up; with `IP_RECVERR` Linux reports
/// them by the next call on the socket), worth sending again once it is consumed. A host or
/// network unreachable can also be the send's own (no route), which every try meets again.
fn may_be_pending_icmp_error(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | HostUnreachable | NetworkUnreachable
    )
}

/// Whether a UDP send error says the send's own destination cannot be reached (worth failing
/// the transactions towards it), rather than a passing local shortage such as a full buffer.
/// Not "connection refused": that comes only from an ICMP port unreachable, which is never
/// reported by the send it answers but by a later one, whatever its destination (see
/// [`DriverState::send_datagram`]).
fn is_hard_send_error(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
            | PermissionDenied
            | InvalidInput
    )
}

/// Binds UDP and TCP on one address. With port 0 the UDP socket picks the port and TCP takes
/// the same one; when another program holds that TCP port already, a new port is tried.
async fn bind_sockets(
    config: &DriverConfig,
) -> Result<(Option<UdpSocket>, Option<TcpListener>, SocketAddr), DriverError> {
    const TRIES: usize = 16;
    let bind_error = |address, source| DriverError::Bind { address, source };
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = if config.udp {
            Some(
                bind_udp(config.bind, config.socket_buffer, config.dscp)
                    .map_err(|e| bind_error(config.bind, e))?,
            )
        } else {
            None
        };
        let local_addr = match &udp {
            Some(socket) => socket
                .local_addr()
                .map_err(|e| bind_error(config.bind, e))?,
            None => config.bind,
        };
        if !config.tcp {
            return Ok((udp, None, local_addr));
        }
        match bind_tcp(local_addr, config.tcp_backlog, config.dscp) {
            Ok(listener) => {
                let local_addr = listener
                    .local_addr()
                    .map_err(|e| bind_error(local_addr, e))?;
                return Ok((udp, Some(listener), local_addr));
            }
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && config.udp
                    && config.bind.port() == 0
                    && tries < TRIES => {}
            Err(e) => return Err(bind_error(local_addr, e)),
        }
    }
}

/// Starts SIP over UDP/TCP as configured.
pub struct SipDriver;

impl SipDriver {
    /// Binds the sockets, spawns the driver task, and returns a handle and the event stream.
    /// The driver stops when every handle is dropped.
    ///
    /// The task is [`SipDriver::embed`]'s two parts run together: it waits for the next
    /// [`DriverInput`], hands it to the [`DriverState`], sends what that produced and passes
    /// the user agent's events on to the bounded queue (holding them, and reading no socket,
    /// while the queue is full; shedding new INVITEs while it runs short of room).
    pub async fn start(
        config: DriverConfig,
    ) -> Result<(SipHandle, mpsc::Receiver<UaEvent>), DriverError> {
        let (inputs, mut state, handle) = Self::embed(config.clone()).await?;
        // Overload is measured by the event queue's room here.
        state.backlog_sheds = false;
        let (events_tx, events_rx) = mpsc::channel(config.event_queue);
        let task = DriverTask {
            inputs,
            state,
            events: events_tx,
            held_events: VecDeque::new(),
            overload_room: config.overload_room.min(config.event_queue),
        };
        tokio::spawn(task.run());
        Ok((handle, events_rx))
    }

    /// Binds the sockets and returns the driver's two halves without spawning anything, for a
    /// layer above that runs the user agent in its own task (session-core's manager does):
    ///
    /// - [`DriverInputs::next_input`] waits for what comes in — a datagram, a message framed
    ///   by a TCP/TLS connection task, an accepted connection, a [`SipHandle`] job — and is
    ///   cancel-safe, so it can be one branch of the caller's `select!`;
    /// - [`DriverState`] holds the user agent and what sends (the UDP socket, the
    ///   connections' writers), with sync methods only: [`DriverState::handle`] an input,
    ///   [`DriverState::handle_timeout`] at [`DriverState::poll_timeout`],
    ///   [`DriverState::user_agent`] to act on it directly, then [`DriverState::flush`] to
    ///   send, and [`DriverState::poll_event`] for its events.
    ///
    /// There is no event queue in this form (the caller takes the events as they come):
    /// [`DriverConfig::event_queue`] bounds the datagrams read ahead instead, and new INVITEs
    /// are shed while less than [`DriverConfig::overload_room`] of that is free, or while
    /// [`SipHandle::refuse_new_calls`] or [`SipHandle::set_draining`] says so. The returned handle
    /// works as [`SipDriver::start`]'s does for other tasks: its jobs are inputs.
    pub async fn embed(
        config: DriverConfig,
    ) -> Result<(DriverInputs, DriverState, SipHandle), DriverError> {
        if !config.udp && !config.tcp {
            return Err(DriverError::Config("neither UDP nor TCP enabled"));
        }
        if [
            config.event_queue,
            config.job_queue,
            config.tcp_in_flight,
            config.tcp_send_queue,
        ]
        .contains(&0)
        {
            return Err(DriverError::Config("a queue has no room"));
        }
        if config.tcp && (config.tcp_max_connections == 0 || config.tcp_max_connections_per_ip == 0)
        {
            return Err(DriverError::Config("a TCP connection cap is zero"));
        }
        let (udp, listener, local_addr) = bind_sockets(&config).await?;
        let udp = udp.map(Arc::new);
        let host = match local_addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let bad_user = |_| DriverError::Config("contact user is not a valid URI user part");
        let contact = Uri::parse(&format!(
            "sip:{}@{host}:{}",
            config.contact_user,
            local_addr.port()
        ))
        .map_err(bad_user)?;
        // TLS listens beside UDP/TCP when we have an identity to accept connections with.
        let tls_listener = match &config.tls {
            Some(tls) if tls.accepts_connections() => {
                let address = config.tls_bind.unwrap_or_else(|| {
                    let port = if local_addr.port() == 5060 { 5061 } else { 0 };
                    SocketAddr::new(local_addr.ip(), port)
                });
                let listener = bind_tcp(address, config.tcp_backlog, config.dscp)
                    .map_err(|source| DriverError::Bind { address, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| DriverError::Bind { address, source })?;
                Some((listener, bound))
            }
            _ => None,
        };
        let tls_addr = tls_listener.as_ref().map(|(_, bound)| *bound);
        let tls_contact = tls_addr
            .map(|bound| {
                Uri::parse(&format!(
                    "sip:{}@{host}:{};transport=tls",
                    config.contact_user,
                    bound.port()
                ))
            })
            .transpose()
            .map_err(bad_user)?;
        let mut ua = UserAgent::new(UaConfig {
            endpoint: config.endpoint.clone(),
            via_host: host,
            via_port: local_addr.port(),
            contact: contact.clone(),
            large_requests_over_tcp: config.tcp,
            rng_seed: config.rng_seed,
        });
        if let (Some(bound), Some(tls_contact)) = (tls_addr, tls_contact) {
            ua.set_tls_listener(bound.port(), tls_contact);
        }
        tracing::debug!(%local_addr, rng_seed = ua.rng_seed(), "SIP driver started");
        let (jobs_tx, jobs_rx) = mpsc::channel(config.job_queue);
        // Each connection holds at most `tcp_in_flight` of these; the bound is for them all.
        let (tcp_tx, tcp_rx) = mpsc::channel(config.job_queue);
        let refusing_calls = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicBool::new(false));
        let load = Arc::new(AtomicU64::new(NO_LOAD));
        let shed_invites = Arc::new(AtomicU64::new(0));
        let udp_blocked = Arc::new(AtomicBool::new(false));
        let tls_names = TlsNames::default();
        let inputs = DriverInputs {
            udp: udp.clone(),
            buf: vec![0u8; 65_535],
            read_ahead: VecDeque::new(),
            read_ahead_max: config.event_queue,
            udp_error_pending: false,
            udp_errors: udp.clone().map(UdpErrorWatch::new),
            listener,
            tls_listener: tls_listener.map(|(listener, _)| listener),
            jobs: jobs_rx,
            jobs_open: true,
            tcp_inbound: tcp_rx,
            accept_backoff: AcceptBackoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX),
            accept_pause: None,
            turn: 0,
            gates: GateSet::new(),
            reading: true,
            udp_blocked: udp_blocked.clone(),
        };
        let state = DriverState {
            ua,
            udp,
            udp_backlog: VecDeque::new(),
            udp_blocked,
            tls: config.tls.clone(),
            tls_names: tls_names.clone(),
            tcp_inbound_tx: tcp_tx,
            connections: HashMap::new(),
            refusing_calls: refusing_calls.clone(),
            draining: draining.clone(),
            load: load.clone(),
            load_seen: NO_LOAD,
            shed_invites: shed_invites.clone(),
            tcp: TcpSettings {
                limits: config.endpoint.limits.clone(),
                idle_timeout: config.tcp_idle_timeout,
                write_timeout: config.tcp_write_timeout,
                in_flight: config.tcp_in_flight,
                send_queue: config.tcp_send_queue,
                message_timeout: config.tcp_message_timeout,
                dscp: config.dscp,
            },
            caps: ConnectionCaps::new(
                config.tcp_max_connections,
                config.tcp_max_connections_per_ip,
            ),
            overloaded: false,
            backlogged: false,
            backlog_sheds: true,
            // As the standalone driver's event queue: short of room, new INVITEs are shed.
            backlog_limit: config
                .event_queue
                .saturating_sub(config.overload_room.min(config.event_queue))
                .max(1),
            overload_retry_after: config.overload_retry_after,
            shedding: false,
        };
        let handle = SipHandle {
            jobs: jobs_tx,
            local_addr,
            tls_addr,
            tls_names,
            contact,
            refusing_calls,
            draining,
            load,
            shed_invites,
        };
        Ok((inputs, state, handle))
    }
}

fn bind_udp(address: SocketAddr, buffer: Option<usize>, dscp: u8) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if let Some(size) = buffer {
        socket.set_recv_buffer_size(size)?;
        socket.set_send_buffer_size(size)?;
    }
    mark(socket2::SockRef::from(&socket), address, dscp)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    let socket = UdpSocket::from_std(socket.into())?;
    // Without it, a request to a closed port waits for Timer B or F instead of failing.
    if let Err(error) = crate::icmp::enable(&socket, address) {
        tracing::debug!(%error, "ICMP errors of the UDP socket not reported");
    }
    Ok(socket)
}

/// Sets the DiffServ code point of a socket's packets (0 leaves the system default).
fn mark(socket: socket2::SockRef<'_>, address: SocketAddr, dscp: u8) -> io::Result<()> {
    if dscp == 0 {
        return Ok(());
    }
    let class = u32::from(dscp & 0x3f) << 2;
    match address {
        SocketAddr::V4(_) => socket.set_tos_v4(class),
        SocketAddr::V6(_) => socket.set_tclass_v6(class),
    }
}

/// Binds the TCP listener with `backlog` (tokio's `TcpListener::bind` always asks for 128);
/// accepted connections inherit its marking.
fn bind_tcp(address: SocketAddr, backlog: u32, dscp: u8) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    mark(socket2::SockRef::from(&socket), address, dscp)?;
    // As `TcpListener::bind` does: a restarted driver can bind while old connections linger
    // in TIME_WAIT. (On Windows the option would let another socket take the port.)
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// First pause of accepting after `accept` failed.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause of accepting while `accept` keeps failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// When to call `accept` again after it failed: the policy, as a value so it can be tested
/// without running out of file descriptors.
///
/// An error that concerns only the connection being accepted (it was reset or aborted
/// before we took it) is retried at once: the next one is another connection. Any other
/// error (EMFILE, ENFILE, ENOBUFS, ENOMEM …) will fail again at once, since the pending
/// connection stays queued, so accepting pauses: `min` after the first failure, doubling
/// with each further one up to `max`. Such a run of failures is an *episode*, to be logged
/// once; it ends when an accept succeeds at least `max` after the last failure, and a failure
/// after that starts a new one.
#[derive(Debug)]
struct AcceptBackoff {
    min: Duration,
    max: Duration,
    /// The pause after the latest failure.
    delay: Duration,
    episode: Option<AcceptEpisode>,
}

#[derive(Debug)]
struct AcceptEpisode {
    failures: u64,
    last_failure: Instant,
    /// An accept has worked since the last failure.
    succeeded: bool,
}

/// What to do after `accept` failed.
#[derive(Debug, PartialEq, Eq)]
struct AcceptRetry {
    /// Accept nothing before this instant.
    at: Instant,
    /// This failure starts an episode: worth a warning (later ones are not).
    warn: bool,
}

impl AcceptBackoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            delay: min,
            episode: None,
        }
    }

    /// `accept` failed with `kind` at `now`.
    fn failed(&mut self, kind: io::ErrorKind, now: Instant) -> AcceptRetry {
        use io::ErrorKind::*;
        if matches!(
            kind,
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        ) {
            return AcceptRetry {
                at: now,
                warn: false,
            };
        }
        match &mut self.episode {
            Some(episode)
                if !(episode.succeeded
                    && now >= episode.last_failure.checked_add(self.max).unwrap_or(now)) =>
            {
                episode.failures += 1;
                episode.last_failure = now;
                episode.succeeded = false;
                self.delay = self.delay.saturating_mul(2).min(self.max);
                AcceptRetry {
                    at: now.checked_add(self.delay).unwrap_or(now),
                    warn: false,
                }
            }
            _ => {
                self.episode = Some(AcceptEpisode {
                    failures: 1,
                    last_failure: now,
                    succeeded: false,
                });
                self.delay = self.min;
                AcceptRetry {
                    at: now.checked_add(self.delay).unwrap_or(now),
                    warn: true,
                }
            }
        }
    }

    /// `accept` worked at `now`. Returns how many failures the episode had when this ends it.
    fn succeeded(&mut self, now: Instant) -> Option<u64> {
        let episode = self.episode.as_mut()?;
        if now >= episode.last_failure.checked_add(self.max).unwrap_or(now) {
            let failures = episode.failures;
            self.episode = None;
            self.delay = self.min;
            Some(failures)
        } else {
            episode.succeeded = true;
            None
        }
    }
}

/// The caps on accepted TCP connections, in total and per source IP, and the connections
/// open now. Shared by the driver, which admits connections, and their tasks, whose
/// [`ConnectionSlot`] gives the place back when they end, however they end.
#[derive(Clone, Debug)]
struct ConnectionCaps {
    max_total: usize,
    max_per_ip: usize,
    open: Arc<Mutex<OpenConnections>>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which cap a refused connection hit.
#[derive(Debug, PartialEq, Eq)]
enum CapReached {
    Total,
    PerIp,
}

impl ConnectionCaps {
    fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            max_total,
            max_per_ip,
            open: Arc::default(),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        // Nothing panics while holding the lock; were it poisoned, the counts are still
        // whole numbers that every slot keeps consistent.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a connection from `ip`, unless a cap is reached.
    fn admit(&self, ip: IpAddr) -> Result<ConnectionSlot, CapReached> {
        let mut open = self.open();
        if open.total >= self.max_total {
            return Err(CapReached::Total);
        }
        if open.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Err(CapReached::PerIp);
        }
        *open.per_ip.entry(ip).or_insert(0) += 1;
        open.total += 1;
        Ok(ConnectionSlot {
            open: self.open.clone(),
            ip,
        })
    }
}

/// One accepted connection's place within the [`ConnectionCaps`], given back on drop.
#[derive(Debug)]
struct ConnectionSlot {
    open: Arc<Mutex<OpenConnections>>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // See `ConnectionCaps::open` on poisoning.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(from_ip) = open.per_ip.get_mut(&self.ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The settings every TCP connection task gets.
#[derive(Clone)]
struct TcpSettings {
    limits: ParseLimits,
    idle_timeout: Duration,
    write_timeout: Duration,
    in_flight: usize,
    send_queue: usize,
    message_timeout: Duration,
    /// The marking of connections we open (accepted ones inherit the listener's).
    dscp: u8,
}

/// Datagrams the UDP socket would not take at once (its send buffer was full), sent again
/// when it is writable. Bounded: beyond it a datagram is dropped, as the network could drop
/// it (the transaction layer retransmits what matters).
const UDP_BACKLOG: usize = 1024;

/// How many sources [`DriverInputs::poll_input`] takes in turn: the jobs ([`JOBS`]), the UDP
/// socket ([`UDP`]), the connections' messages ([`STREAMS`]), the TCP ([`TCP_ACCEPT`]) and
/// TLS ([`TLS_ACCEPT`]) listeners, the UDP socket's writability ([`WRITABLE`]). A set of them
/// is a [`GateBits`], bit `i` for source `i`.
const SOURCES: usize = 6;
const JOBS: usize = 0;
const UDP: usize = 1;
const STREAMS: usize = 2;
const TCP_ACCEPT: usize = 3;
const TLS_ACCEPT: usize = 4;
const WRITABLE: usize = 5;
/// Not a source taking turns: the UDP socket's error readiness, watched when the socket has
/// nothing to read ([`UdpErrorWatch`]), through a gate of its own in the same set.
const UDP_ERRORS: usize = SOURCES;

/// The gates of [`DriverInputs`], by source (with [`UDP_ERRORS`] after them); the UDP socket
/// and its writability have none, so their bits go unused.
const GATES: usize = SOURCES + 1;

/// The sources polled only once they woke the task (mostly idle), through a gate of
/// [`DriverInputs::gates`]: the jobs, the connections' messages, the TCP and TLS listeners.
const GATED: GateBits = 1 << JOBS | 1 << STREAMS | 1 << TCP_ACCEPT | 1 << TLS_ACCEPT;

/// Every source.
const ALL_SOURCES: GateBits = (1 << SOURCES) - 1;

/// A set of gates (or of sources), bit `i` for gate `i`.
type GateBits = u8;

/// Gates for sources of one task that share one word: the waker of gate `i` sets bit `i`,
/// then wakes the task. So a source that has not woken the task since it was last found empty
/// is not polled again (which would cost as much as finding it empty each time: a listener's
/// poll takes a lock), and one load tells which of the set's sources are to be polled.
/// [`WakeGate`] is a set of one; [`DriverInputs`] keeps one for its mostly idle sources.
struct GateSet<const N: usize> {
    shared: Arc<GateShared>,
    /// Gate `i`'s waker, made once.
    wakers: [Waker; N],
    /// The task the gates wake, as last seen.
    task: Option<Waker>,
}

struct GateShared {
    /// Bit `i`: source `i` is to be polled (it woke the task, or gave something the last
    /// time, or it has not been polled with its gate's waker yet).
    open: AtomicU8,
    /// The task's waker.
    task: Mutex<Option<Waker>>,
}

/// The waker of one gate: opens the gate, then wakes the task.
struct GateWaker {
    shared: Arc<GateShared>,
    bit: GateBits,
}

impl std::task::Wake for GateWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.open.fetch_or(self.bit, Ordering::Release);
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = &*task {
            task.wake_by_ref();
        }
    }
}

impl<const N: usize> GateSet<N> {
    /// Every gate of the set.
    const ALL: GateBits = {
        assert!(N >= 1 && N <= GateBits::BITS as usize, "one bit per gate");
        GateBits::MAX >> (GateBits::BITS as usize - N)
    };

    /// Every gate open: each source's first poll registers its gate's waker.
    fn new() -> Self {
        let shared = Arc::new(GateShared {
            open: AtomicU8::new(Self::ALL),
            task: Mutex::new(None),
        });
        let wakers = std::array::from_fn(|gate| {
            Waker::from(Arc::new(GateWaker {
                shared: shared.clone(),
                bit: 1 << gate,
            }))
        });
        Self {
            shared,
            wakers,
            task: None,
        }
    }

    /// Notes the task that polls: a task other than the last one seen (or whose waker does
    /// not compare equal: `will_wake` is best-effort) opens every gate, the sources' wakers to
    /// be registered anew, and is the one the gates wake from now on.
    #[inline]
    fn register(&mut self, cx: &Context<'_>) {
        if !self
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            self.new_task(cx.waker());
        }
    }

    #[cold]
    fn new_task(&mut self, task: &Waker) {
        *self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task.clone());
        self.shared.open.fetch_or(Self::ALL, Ordering::Release);
        self.task = Some(task.clone());
    }

    /// The open gates.
    #[inline]
    fn open(&self) -> GateBits {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Closes gate `gate` (until its source wakes the task again), before its source is
    /// polled; whether it was open.
    #[inline]
    fn take(&self, gate: usize) -> bool {
        let bit = 1 << gate;
        self.shared.open.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// The source of gate `gate` gave something: poll it again next time.
    fn reopen(&self, gate: usize) {
        self.shared.open.fetch_or(1 << gate, Ordering::Release);
    }

    /// Gate `gate`'s waker, to poll its source with.
    fn waker(&self, gate: usize) -> Option<&Waker> {
        self.wakers.get(gate)
    }
}

/// A gate for an owner's own sources: wraps the polls of one source (a queue, a socket)
/// so that it is polled only once it woke the task (or gave something the last time), not
/// on every wake-up of a task that waits on many sources. For the branches of a `select!` in
/// a loop, where most sources are empty most of the time (the manager's commands and events
/// next to [`DriverInputs::next_input`], and the mostly idle sources inside it).
pub struct WakeGate {
    gates: GateSet<1>,
}

impl Default for WakeGate {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WakeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeGate")
            .field("open", &(self.gates.open() != 0))
            .finish()
    }
}

impl WakeGate {
    /// A gate that is open: the source's first poll registers the gate's waker.
    pub fn new() -> Self {
        Self {
            gates: GateSet::new(),
        }
    }

    /// Polls the source with `poll` if it woke the task since it was last found empty (or
    /// gave something then, or the task is another one), with the gate's waker; else
    /// `Pending` without polling it. `poll` must be the source's only poll, every time. (A
    /// task whose waker does not compare equal from one poll to the next — `will_wake` is
    /// best-effort — has every source polled each time: slower, never stuck.)
    pub fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.gates.register(cx);
        if !self.gates.take(0) {
            return Poll::Pending;
        }
        let polled = match self.gates.waker(0) {
            Some(waker) => poll(&mut Context::from_waker(waker)),
            None => poll(cx),
        };
        if polled.is_ready() {
            self.gates.reopen(0);
        }
        polled
    }
}

/// Waits for the UDP socket's error readiness. An ICMP error for a datagram we sent (with
/// `IP_RECVERR` on, see the `icmp` module) makes the socket report an error, not readable,
/// and a read waits only for readability: without this watch the error would be seen with
/// the next datagram or timer (a retransmission 500 ms later), not at once as RFC 3261 §18.4
/// wants. Mostly idle, so it is polled only once it woke the task (through the
/// [`UDP_ERRORS`] gate of [`DriverInputs::gates`]).
struct UdpErrorWatch {
    socket: Arc<UdpSocket>,
    /// The wait in progress (a future of tokio's, boxed once per error seen).
    wait: Option<Pin<Box<dyn Future<Output = io::Result<tokio::io::Ready>> + Send>>>,
    /// Off once the wait failed (the runtime is going away): a read still finds errors.
    on: bool,
}

impl UdpErrorWatch {
    fn new(socket: Arc<UdpSocket>) -> Self {
        Self {
            socket,
            wait: None,
            on: true,
        }
    }

    /// Whether an error is queued on the socket now; if so, its readiness is cleared, so the
    /// next wait is for a new error (the owner drains the queue, `icmp::take_unreachable`).
    /// Waits only if the [`UDP_ERRORS`] gate of `gates` (registered with the polling task) is
    /// open, with that gate's waker.
    fn poll_queued(&mut self, gates: &GateSet<GATES>) -> bool {
        let Self { socket, wait, on } = self;
        if !*on || !gates.take(UDP_ERRORS) {
            return false;
        }
        let Some(waker) = gates.waker(UDP_ERRORS) else {
            return false;
        };
        let polled = wait
            .get_or_insert_with(|| {
                let socket = socket.clone();
                Box::pin(async move { socket.ready(tokio::io::Interest::ERROR).await })
            })
            .as_mut()
            .poll(&mut Context::from_waker(waker));
        let Poll::Ready(result) = polled else {
            return false;
        };
        gates.reopen(UDP_ERRORS);
        *wait = None;
        match result {
            Ok(_) => {
                // `WouldBlock` from the closure clears the error readiness just seen.
                let _ = socket.try_io(tokio::io::Interest::ERROR, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
                true
            }
            Err(error) => {
                tracing::debug!(%error, "UDP error readiness not watched any more");
                *on = false;
                false
            }
        }
    }
}

/// What the driver waits for, apart from its timer: the UDP socket (with its receive buffer),
/// the TCP and TLS listeners, the messages the connection tasks framed, and the jobs of
/// [`SipHandle`]s. [`DriverInputs::next_input`] yields one at a time for the [`DriverState`]
/// to handle. See [`SipDriver::embed`].
pub struct DriverInputs {
    udp: Option<Arc<UdpSocket>>,
    buf: Vec<u8>,
    /// Datagrams read from the socket, not yet handed out: when one arrives, what else is
    /// waiting in the socket's buffer is read too (up to `read_ahead_max`), so a burst
    /// longer than the kernel's buffer is not dropped while the owner works. Its length is
    /// the owner's backlog ([`DriverConfig::overload_room`]).
    read_ahead: VecDeque<(SocketAddr, Bytes)>,
    read_ahead_max: usize,
    /// A read ahead met a UDP error (an ICMP error for one of our datagrams): the next input
    /// says so.
    udp_error_pending: bool,
    /// Wakes the task for an ICMP error queued on the UDP socket.
    udp_errors: Option<UdpErrorWatch>,
    listener: Option<TcpListener>,
    /// Where TLS connections are accepted, when we have an identity.
    tls_listener: Option<TcpListener>,
    jobs: mpsc::Receiver<Job>,
    /// Until every handle is gone.
    jobs_open: bool,
    tcp_inbound: mpsc::Receiver<TcpInbound>,
    /// When to accept again after `accept` failed.
    accept_backoff: AcceptBackoff,
    /// While set, nothing is accepted before it ends (see [`AcceptBackoff`]).
    accept_pause: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The source [`DriverInputs::poll_input`] polls first next time (they take turns).
    turn: usize,
    /// The gates of the sources that are mostly idle ([`GATED`]: the jobs, the connections'
    /// messages, the listeners) and of the UDP socket's error readiness ([`UDP_ERRORS`]), by
    /// source: each is polled only once it woke the task.
    gates: GateSet<GATES>,
    /// Whether sockets are read (the standalone driver stops while it holds events).
    reading: bool,
    /// Set by the state while datagrams wait for the UDP socket to be writable.
    udp_blocked: Arc<AtomicBool>,
}

/// One input for [`DriverState::handle`], from [`DriverInputs::next_input`].
pub struct DriverInput(Input);

enum Input {
    /// A datagram, and how many more were read and wait behind it.
    Datagram(SocketAddr, Bytes, usize),
    Stream(TcpInbound),
    Accepted(TcpStream, Link),
    Job(Job),
    /// The UDP socket can take the datagrams held back.
    Writable,
    /// Receiving from the UDP socket failed: an ICMP error for a datagram we sent (a closed
    /// port, an unreachable host) is pending.
    UdpError,
    /// Every [`SipHandle`] is gone (said once).
    HandlesGone,
}

impl DriverInput {
    /// Whether this says that every [`SipHandle`] has been dropped. The standalone driver
    /// stops then; an embedded one may go on (its owner decides).
    pub fn handles_gone(&self) -> bool {
        matches!(self.0, Input::HandlesGone)
    }
}

impl std::fmt::Debug for DriverInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Input::Datagram(..) => "datagram",
            Input::Stream(_) => "stream",
            Input::Accepted(..) => "accepted",
            Input::Job(_) => "job",
            Input::Writable => "writable",
            Input::UdpError => "UDP error",
            Input::HandlesGone => "handles gone",
        };
        f.debug_tuple("DriverInput").field(&kind).finish()
    }
}

impl DriverInputs {
    /// Closes the queue of [`SipHandle::with`] jobs and drops every job in it or on its way,
    /// so that each caller waiting on one gets [`DriverError::Stopped`]. For an owner that
    /// stops while handles may still exist: merely dropping the inputs would strand a job
    /// whose sender took its place in the queue just before (tokio#7714), and its caller
    /// would wait until the last handle went.
    pub async fn close(&mut self) {
        self.jobs.close();
        while self.jobs.recv().await.is_some() {}
        self.jobs_open = false;
    }

    /// Waits for the next input. Cancel-safe: dropped before it returns, it loses nothing
    /// (a datagram is taken from the socket only when it returns it).
    pub async fn next_input(&mut self) -> DriverInput {
        std::future::poll_fn(|cx| self.poll_input(cx)).await
    }

    /// [`DriverInputs::next_input`] as a poll: each source is polled in place (no future is
    /// made per call), the first one polled taking turns, so that each source that has
    /// something is served within [`SOURCES`] inputs whatever the others hold (a UDP flood
    /// does not starve the jobs, the TCP and TLS connections or the listeners). Only the
    /// sources that may give something are polled, found at once: a gated source whose gate
    /// is closed, or a source that is off, would be `Pending` without being polled anyway.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<DriverInput> {
        if std::mem::take(&mut self.udp_error_pending) {
            return Poll::Ready(DriverInput(Input::UdpError));
        }
        let first = self.turn;
        self.turn = if first + 1 >= SOURCES { 0 } else { first + 1 };
        self.gates.register(cx);
        let mut due = self.gates.open() & self.gated_on();
        if self.reading {
            due |= 1 << UDP;
        }
        if self.udp_blocked.load(Ordering::Relaxed) {
            due |= 1 << WRITABLE;
        }
        // In turn from `first`: rotated so that bit 0 is source `first`.
        let mut turns = (due >> first | due << (SOURCES - first)) & ALL_SOURCES;
        while turns != 0 {
            let offset = turns.trailing_zeros() as usize;
            turns &= turns - 1;
            let source = first + offset;
            let source = if source >= SOURCES {
                source - SOURCES
            } else {
                source
            };
            if let Poll::Ready(input) = self.poll_due(source, cx) {
                return Poll::Ready(input);
            }
        }
        Poll::Pending
    }

    /// The gated sources that are on (an off source is left alone, its gate as it was): the
    /// jobs until every handle is gone, the others while reading.
    fn gated_on(&self) -> GateBits {
        let mut on = 0;
        if self.jobs_open {
            on |= 1 << JOBS;
        }
        if self.reading {
            on |= 1 << STREAMS | 1 << TCP_ACCEPT | 1 << TLS_ACCEPT;
        }
        on
    }

    /// Polls a source that may give something, through its gate if it has one (closing it
    /// until the source wakes the task again, or gives something), with the gate's waker.
    fn poll_due(&mut self, source: usize, cx: &mut Context<'_>) -> Poll<DriverInput> {
        if GATED & 1 << source == 0 {
            return self.poll_source(source, cx);
        }
        self.gates.take(source);
        // The source's poll needs `self`: the gate's waker is taken out first.
        let Some(waker) = self.gates.waker(source).cloned() else {
            return self.poll_source(source, cx);
        };
        let polled = self.poll_source(source, &mut Context::from_waker(&waker));
        if polled.is_ready() {
            self.gates.reopen(source);
        }
        polled
    }

    /// Polls one source: the jobs (0), the UDP socket (1), the connections' messages (2), the
    /// TCP (3) and TLS (4) listeners, the UDP socket's writability while datagrams wait (5).
    /// A source that is off (not reading, no socket, no listener) is pending without a waker:
    /// it is polled again when something else wakes the task.
    fn poll_source(&mut self, source: usize, cx: &mut Context<'_>) -> Poll<DriverInput> {
        match source {
            JOBS if self.jobs_open => match self.jobs.poll_recv(cx) {
                Poll::Ready(Some(job)) => Poll::Ready(DriverInput(Input::Job(job))),
                Poll::Ready(None) => {
                    self.jobs_open = false;
                    Poll::Ready(DriverInput(Input::HandlesGone))
                }
                Poll::Pending => Poll::Pending,
            },
            UDP if self.reading => match self.poll_datagram(cx) {
                Poll::Ready(Ok((source, bytes))) => Poll::Ready(DriverInput(Input::Datagram(
                    source,
                    bytes,
                    self.read_ahead.len(),
                ))),
                // An ICMP error for a datagram we sent (a closed port, an unreachable host)
                // surfaces here; the socket stays usable.
                Poll::Ready(Err(error)) => {
                    tracing::debug!(%error, "UDP receive error");
                    Poll::Ready(DriverInput(Input::UdpError))
                }
                Poll::Pending => Poll::Pending,
            },
            // The state holds a sender as long as it lives.
            STREAMS if self.reading => match self.tcp_inbound.poll_recv(cx) {
                Poll::Ready(Some(inbound)) => Poll::Ready(DriverInput(Input::Stream(inbound))),
                _ => Poll::Pending,
            },
            TCP_ACCEPT if self.reading => self.poll_accept(Protocol::Tcp, cx),
            TLS_ACCEPT if self.reading => self.poll_accept(Protocol::Tls, cx),
            // An error is found again by the send itself.
            WRITABLE if self.udp_blocked.load(Ordering::Relaxed) => match self.udp.as_deref() {
                Some(socket) => socket
                    .poll_send_ready(cx)
                    .map(|_| DriverInput(Input::Writable)),
                None => Poll::Pending,
            },
            _ => Poll::Pending,
        }
    }

    /// The next datagram: one read ahead, else one from the socket — and what else waits in
    /// the socket's buffer then is read ahead too (up to `read_ahead_max`), so a burst longer
    /// than the kernel's buffer is not dropped while the owner works.
    fn poll_datagram(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(SocketAddr, Bytes)>> {
        let Self {
            udp,
            buf,
            read_ahead,
            read_ahead_max,
            udp_error_pending,
            udp_errors,
            gates,
            ..
        } = self;
        if !read_ahead.is_empty() {
            // Each datagram handed out spends some of the task's budget (tokio's cooperative
            // scheduling), as a read from the socket would: under a flood the read-ahead never
            // runs dry, and its owner would otherwise keep its thread for as long as it lasts
            // (its timers not fired, the other tasks there not run).
            let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            if let Some(datagram) = read_ahead.pop_front() {
                coop.made_progress();
                return Poll::Ready(Ok(datagram));
            }
        }
        let Some(socket) = udp.as_deref() else {
            return Poll::Pending;
        };
        let mut read = tokio::io::ReadBuf::new(buf);
        let source = match socket.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(source)) => source,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            // Nothing to read: wait for an ICMP error too (a read does not wait for one).
            Poll::Pending => {
                return match udp_errors.as_mut().map(|watch| watch.poll_queued(gates)) {
                    Some(true) => Poll::Ready(Err(io::Error::other(
                        "an ICMP error is queued on the UDP socket",
                    ))),
                    _ => Poll::Pending,
                };
            }
        };
        let first = (source, Bytes::copy_from_slice(read.filled()));
        // Until the socket is empty (which a read would find out anyway before waiting again).
        while read_ahead.len() < *read_ahead_max {
            match socket.try_recv_from(buf) {
                Ok((len, source)) => read_ahead.push_back((
                    source,
                    Bytes::copy_from_slice(buf.get(..len).unwrap_or_default()),
                )),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error (consumed by this read): reported as the next input.
                Err(_) => {
                    *udp_error_pending = true;
                    break;
                }
            }
        }
        Poll::Ready(Ok(first))
    }

    /// Accepts a connection on the TCP or TLS listener, not while accepting is paused after
    /// it failed (both listeners share the pause), never without that listener.
    fn poll_accept(&mut self, protocol: Protocol, cx: &mut Context<'_>) -> Poll<DriverInput> {
        loop {
            if let Some(pause) = &mut self.accept_pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.accept_pause = None;
            }
            let listener = match protocol {
                Protocol::Tls => self.tls_listener.as_ref(),
                _ => self.listener.as_ref(),
            };
            let Some(listener) = listener else {
                return Poll::Pending;
            };
            let accepted = match listener.poll_accept(cx) {
                Poll::Ready(accepted) => accepted,
                Poll::Pending => return Poll::Pending,
            };
            // A failure pauses accepting: the loop waits for the pause's end.
            if let Some(input) = self.accepted(accepted, protocol) {
                return Poll::Ready(input);
            }
        }
    }

    /// Takes what `accept` returned: a connection to hand over, or an error to back off from.
    fn accepted(
        &mut self,
        accepted: io::Result<(TcpStream, SocketAddr)>,
        protocol: Protocol,
    ) -> Option<DriverInput> {
        match accepted {
            Ok((stream, peer)) => {
                self.accept_pause = None;
                if let Some(failures) = self.accept_backoff.succeeded(now()) {
                    tracing::info!(failures, "TCP accept works again");
                }
                Some(DriverInput(Input::Accepted(
                    stream,
                    Link { protocol, peer },
                )))
            }
            Err(error) => {
                let retry = self.accept_backoff.failed(error.kind(), now());
                let pause = retry.at.saturating_duration_since(now());
                if retry.warn {
                    tracing::warn!(%error, ?pause, "TCP accept failing: pausing accepts (warned once until it works again)");
                } else {
                    tracing::debug!(%error, ?pause, "TCP accept error");
                }
                self.accept_pause = Some(Box::pin(tokio::time::sleep_until(
                    tokio::time::Instant::from_std(retry.at),
                )));
                None
            }
        }
    }
}

/// The driver's state: the user agent and what sends for it (the UDP socket, the writers of
/// the TCP and TLS connections). Every method is sync and quick; nothing here waits. See
/// [`SipDriver::embed`].
pub struct DriverState {
    ua: UserAgent,
    udp: Option<Arc<UdpSocket>>,
    /// Datagrams waiting for the UDP socket to be writable, in order (at most [`UDP_BACKLOG`]).
    udp_backlog: VecDeque<Transmit>,
    /// Whether `udp_backlog` has any: the inputs then wait for writability too.
    udp_blocked: Arc<AtomicBool>,
    tls: Option<TlsConfig>,
    tls_names: TlsNames,
    tcp_inbound_tx: mpsc::Sender<TcpInbound>,
    /// Writers of open TCP and TLS connections, by transport and peer address (RFC 3261 §18:
    /// reuse connections).
    connections: HashMap<Link, mpsc::Sender<Bytes>>,
    /// Set by the layer above through [`SipHandle::refuse_new_calls`].
    refusing_calls: Arc<AtomicBool>,
    /// Set by the layer above through [`SipHandle::set_draining`].
    draining: Arc<AtomicBool>,
    /// Set by the layer above through [`SipHandle::report_load`], packed.
    load: Arc<AtomicU64>,
    /// The packed load the user agent has last been given.
    load_seen: u64,
    /// The user agent's count of shed INVITEs, for [`SipHandle::shed_invites`].
    shed_invites: Arc<AtomicU64>,
    tcp: TcpSettings,
    /// Accepted TCP connections open, against their caps.
    caps: ConnectionCaps,
    /// The standalone driver's event queue is short of room (or full).
    overloaded: bool,
    /// The inputs hold `backlog_limit` datagrams or more read ahead (the owner is behind).
    backlogged: bool,
    /// Whether that sheds new INVITEs: for an embedded driver, which has no event queue to
    /// measure by (the standalone one sheds on its event queue's room).
    backlog_sheds: bool,
    backlog_limit: usize,
    overload_retry_after: Duration,
    /// Whether the user agent is shedding new INVITEs now.
    shedding: bool,
}

impl DriverState {
    /// The user agent, to act on directly (call [`DriverState::flush`] after).
    pub fn user_agent(&mut self) -> &mut UserAgent {
        &mut self.ua
    }

    /// Handles one input at `now`; call [`DriverState::flush`] after.
    pub fn handle(&mut self, input: DriverInput, now: Instant) {
        match input.0 {
            Input::Datagram(source, bytes, waiting) => {
                trace_wire("in", Protocol::Udp, source, &bytes);
                self.backlogged = self.backlog_sheds && waiting >= self.backlog_limit;
                // The layer above may have changed its mind while we waited.
                self.update_shedding();
                self.ua.handle_datagram(now, Protocol::Udp, source, &bytes);
            }
            Input::Stream(TcpInbound::Message(link, message, permit)) => {
                if tracing::enabled!(target: WIRE_TRACE_TARGET, tracing::Level::TRACE) {
                    trace_wire("in", link.protocol, link.peer, &message.to_bytes());
                }
                self.update_shedding();
                self.ua
                    .handle_message(now, link.protocol, link.peer, message);
                // The connection may frame one more.
                drop(permit);
            }
            Input::Stream(TcpInbound::Rejected(link, bytes, permit)) => {
                trace_wire("in", link.protocol, link.peer, &bytes);
                self.update_shedding();
                // The same verdict, and answer, as for these bytes in a datagram.
                self.ua
                    .handle_datagram(now, link.protocol, link.peer, &bytes);
                drop(permit);
            }
            Input::Stream(TcpInbound::Closed(link)) => self.forget_connection(link),
            Input::Stream(TcpInbound::Failed(link)) => {
                self.forget_connection(link);
                self.ua
                    .handle_transport_error(now, link.peer, link.protocol);
            }
            Input::Accepted(stream, link) => self.adopt(stream, link),
            Input::Job(job) => job(&mut self.ua, now),
            Input::Writable => self.send_backlog(now),
            Input::UdpError => {
                self.fail_unreachable(now);
            }
            Input::HandlesGone => {}
        }
    }

    /// The next instant [`DriverState::handle_timeout`] is due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.ua.poll_timeout()
    }

    /// Fires the timers due at `now`; call [`DriverState::flush`] after.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ua.handle_timeout(now);
    }

    /// The user agent's next event.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.ua.poll_event()
    }

    /// Sends what the user agent queued, without waiting: a datagram the socket cannot take
    /// now waits (bounded) for it to be writable; a TCP or TLS message goes to its
    /// connection's bounded queue, opening the connection when there is none.
    pub fn flush(&mut self) {
        while let Some(transmit) = self.ua.poll_transmit() {
            trace_wire(
                "out",
                transmit.protocol,
                transmit.destination,
                &transmit.bytes,
            );
            match transmit.protocol {
                Protocol::Udp => self.send_udp(transmit),
                Protocol::Tcp | Protocol::Tls => {
                    let link = Link {
                        protocol: transmit.protocol,
                        peer: transmit.destination,
                    };
                    self.send_stream(link, transmit.bytes);
                }
            }
        }
        self.update_shedding();
        self.shed_invites
            .store(self.ua.shed_invites(), Ordering::Relaxed);
    }

    /// For the standalone driver: whether its event queue is short of room (new INVITEs are
    /// shed meanwhile).
    fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = overloaded;
        self.update_shedding();
    }

    /// Turns the user agent's shedding of new INVITEs on or off: on while the layer above
    /// refuses new calls, or while the event queue has less room than the calls already
    /// admitted may need.
    fn update_shedding(&mut self) {
        let load = self.load.load(Ordering::Relaxed);
        if load != self.load_seen {
            self.load_seen = load;
            self.ua.set_load(unpack_load(load));
        }
        let shed = self.refusing_calls.load(Ordering::Relaxed)
            || self.draining.load(Ordering::Relaxed)
            || self.overloaded
            || self.backlogged;
        if shed != self.shedding {
            self.shedding = shed;
            tracing::debug!(shedding = shed, "overload shedding of new INVITEs");
            self.ua
                .set_shedding(shed.then_some(self.overload_retry_after));
        }
    }

    fn send_udp(&mut self, transmit: Transmit) {
        let Some(udp) = &self.udp else {
            return;
        };
        if !self.udp_backlog.is_empty() {
            // Behind those already waiting, to keep the order.
            self.hold_datagram(transmit);
            return;
        }
        let udp = udp.clone();
        match self.send_datagram(&udp, &transmit, now()) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.hold_datagram(transmit);
            }
            Err(error) => self.udp_send_failed(&error, transmit.destination, now()),
        }
    }

    /// Sends one datagram. With `IP_RECVERR` an ICMP error is reported by the socket's next
    /// send or receive, whatever its destination (the failed send consuming it): an error
    /// such as "connection refused" is an earlier datagram's, so the error queue is drained
    /// (failing the destinations it names) and the send tried again — a few times, as under
    /// a stream of ICMP errors another may come in between. The queue may not name the
    /// culprit at all: its entries are dropped while the receive buffer is full, the error
    /// still reported, which is how a flood of requests with dead `Via` addresses made a
    /// live peer's transactions fail. A send that still fails returns its error, which
    /// [`DriverState::udp_send_failed`] does not blame on this destination when an ICMP
    /// error for another datagram could have made it.
    fn send_datagram(
        &mut self,
        udp: &UdpSocket,
        transmit: &Transmit,
        now: Instant,
    ) -> io::Result<()> {
        let mut tries = 0;
        loop {
            match crate::dscp::try_send(udp, transmit) {
                Ok(_) => return Ok(()),
                Err(error) if may_be_pending_icmp_error(&error) && tries < UDP_SEND_TRIES => {
                    tries += 1;
                    self.fail_unreachable(now);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Fails the transactions towards each destination the network refused our datagrams to
    /// (ICMP port or host unreachable: a transport error, RFC 3261 §18.4) rather than letting
    /// them wait for Timer B or F. Whether any was found.
    fn fail_unreachable(&mut self, now: Instant) -> bool {
        let Some(udp) = &self.udp else { return false };
        let refused = crate::icmp::take_unreachable(udp);
        for (destination, error) in &refused {
            tracing::debug!(%destination, %error, "ICMP: datagram refused");
            self.ua
                .handle_transport_error(now, *destination, Protocol::Udp);
        }
        !refused.is_empty()
    }

    fn hold_datagram(&mut self, transmit: Transmit) {
        if self.udp_backlog.len() >= UDP_BACKLOG {
            let destination = transmit.destination;
            tracing::debug!(%destination, "UDP send buffer full and backlog full: datagram dropped");
            return;
        }
        self.udp_backlog.push_back(transmit);
        self.udp_blocked.store(true, Ordering::Relaxed);
    }

    /// Sends the datagrams held back, while the socket takes them.
    fn send_backlog(&mut self, now: Instant) {
        let Some(udp) = self.udp.clone() else {
            self.udp_backlog.clear();
            self.udp_blocked.store(false, Ordering::Relaxed);
            return;
        };
        while let Some(transmit) = self.udp_backlog.pop_front() {
            match self.send_datagram(&udp, &transmit, now) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.udp_backlog.push_front(transmit);
                    return;
                }
                Err(error) => self.udp_send_failed(&error, transmit.destination, now),
            }
        }
        self.udp_blocked.store(false, Ordering::Relaxed);
    }

    /// A datagram was not sent: its transactions to `destination` fail when the error says
    /// the destination cannot be reached; an error that only an ICMP error for another
    /// datagram makes is not taken as this destination's (see [`DriverState::send_datagram`]),
    /// and the datagram counts as lost, for the retransmissions to try again.
    fn udp_send_failed(&mut self, error: &io::Error, destination: SocketAddr, now: Instant) {
        tracing::debug!(%error, %destination, "UDP send failed");
        if is_hard_send_error(error) {
            self.ua
                .handle_transport_error(now, destination, Protocol::Udp);
        }
    }

    /// Drops the writer of a connection that ended, unless a newer connection to the same
    /// peer has replaced it.
    fn forget_connection(&mut self, link: Link) {
        if self
            .connections
            .get(&link)
            .is_some_and(|writer| writer.is_closed())
        {
            self.connections.remove(&link);
        }
    }

    /// Sends over the TCP or TLS connection to `link`'s peer, opening one when there is none.
    fn send_stream(&mut self, link: Link, bytes: Bytes) {
        let destination = link.peer;
        let bytes = match self.connections.get(&link) {
            Some(writer) => match writer.try_send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The peer does not read what we send: give the connection up, and with
                    // it the transactions waiting on it (§17.1.4). Its task ends at once (its
                    // queue is closed) or when its stuck write times out.
                    tracing::debug!(%destination, "send queue full: closing the connection");
                    self.connections.remove(&link);
                    self.ua
                        .handle_transport_error(now(), destination, link.protocol);
                    return;
                }
                // The connection ended: open a new one.
                Err(mpsc::error::TrySendError::Closed(bytes)) => bytes,
            },
            None => bytes,
        };
        let tls = match (link.protocol, &self.tls) {
            (Protocol::Tls, Some(tls)) => {
                let names = self
                    .tls_names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let host = names.get(&destination).map(String::as_str);
                Some((tls.connector(), crate::tls::server_name(host, destination)))
            }
            (Protocol::Tls, None) => {
                tracing::debug!(%destination, "TLS asked for but not configured");
                self.ua
                    .handle_transport_error(now(), destination, Protocol::Tls);
                return;
            }
            _ => None,
        };
        let (writer, queue) = mpsc::channel(self.tcp.send_queue);
        // Queued until the connection is up; the queue is new, so it has room.
        let _ = writer.try_send(bytes);
        self.connections.insert(link, writer);
        let inbound = self.tcp_inbound_tx.clone();
        let settings = self.tcp.clone();
        tokio::spawn(async move {
            let stream = match TcpStream::connect(destination).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%error, %destination, "TCP connect failed");
                    drop(queue);
                    let _ = inbound.send(TcpInbound::Failed(link)).await;
                    return;
                }
            };
            if let Err(error) = mark(socket2::SockRef::from(&stream), destination, settings.dscp) {
                tracing::debug!(%error, %destination, "TCP connection not marked");
            }
            let Some((connector, name)) = tls else {
                serve_connection(stream, link, queue, inbound, settings, None).await;
                return;
            };
            let handshake = connector.connect(name, stream);
            match tokio::time::timeout(settings.message_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, link, queue, inbound, settings, None).await;
                }
                failed => {
                    // A certificate that does not verify or name the peer fails here.
                    match failed {
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %destination, "TLS handshake failed");
                        }
                        _ => tracing::debug!(%destination, "TLS handshake timed out"),
                    }
                    drop(queue);
                    let _ = inbound.send(TcpInbound::Failed(link)).await;
                }
            }
        });
    }

    fn adopt(&mut self, stream: TcpStream, link: Link) {
        let slot = match self.caps.admit(link.peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                // Dropping the stream closes it.
                tracing::debug!(peer = %link.peer, ?cap, "TCP connection cap reached: closing the new connection");
                return;
            }
        };
        let acceptor = match link.protocol {
            Protocol::Tls => match self.tls.as_ref().and_then(TlsConfig::acceptor) {
                Some(acceptor) => Some(acceptor),
                None => return,
            },
            _ => None,
        };
        let (writer, queue) = mpsc::channel(self.tcp.send_queue);
        self.connections.insert(link, writer);
        let inbound = self.tcp_inbound_tx.clone();
        let settings = self.tcp.clone();
        let Some(acceptor) = acceptor else {
            tokio::spawn(serve_connection(
                stream,
                link,
                queue,
                inbound,
                settings,
                Some(slot),
            ));
            return;
        };
        tokio::spawn(async move {
            // The handshake counts as the first message: it must end in time.
            let handshake = acceptor.accept(stream);
            match tokio::time::timeout(settings.message_timeout, handshake).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, link, queue, inbound, settings, Some(slot)).await;
                }
                _ => {
                    tracing::debug!(peer = %link.peer, "TLS handshake with a client failed");
                    drop(queue);
                    let _ = inbound.send(TcpInbound::Closed(link)).await;
                }
            }
        });
    }
}

/// The standalone driver's task ([`SipDriver::start`]): the two halves in one loop, the
/// events to a bounded queue.
struct DriverTask {
    inputs: DriverInputs,
    state: DriverState,
    events: mpsc::Sender<UaEvent>,
    /// Events the full queue could not take yet, in order. While any are held the driver
    /// reads no socket, so this only grows by what timers and jobs produce meanwhile.
    held_events: VecDeque<UaEvent>,
    overload_room: usize,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Waits for room in the event queue when given its sender (the driver holds events),
/// else forever.
async fn room_for(
    events: Option<mpsc::Sender<UaEvent>>,
) -> Result<mpsc::OwnedPermit<UaEvent>, mpsc::error::SendError<()>> {
    match events {
        Some(events) => events.reserve_owned().await,
        None => std::future::pending().await,
    }
}

impl DriverTask {
    async fn run(mut self) {
        loop {
            self.update_overload();
            // The queue above is full: hand over what is held before reading anything more.
            let holding = !self.held_events.is_empty();
            self.inputs.reading = !holding;
            let deadline = self.state.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                permit = room_for(holding.then(|| self.events.clone())) => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.held_events.pop_front() {
                            permit.send(event);
                        }
                        self.hand_over_held();
                    }
                    // Nobody listens any more; the calls still run to their end.
                    Err(_) => self.held_events.clear(),
                },
                input = self.inputs.next_input() => {
                    if input.handles_gone() {
                        break; // every handle is gone
                    }
                    self.state.handle(input, now());
                }
                () = sleep => self.state.handle_timeout(now()),
            }
            self.state.flush();
            while let Some(event) = self.state.poll_event() {
                // Behind events already held, to keep the order.
                self.held_events.push_back(event);
            }
            self.hand_over_held();
        }
        tracing::debug!("SIP driver stopped");
    }

    /// Tells the state whether the event queue is short of room: new INVITEs are shed while
    /// events are held or the queue has less room than the calls already admitted may need.
    fn update_overload(&mut self) {
        let overloaded =
            !self.held_events.is_empty() || self.events.capacity() < self.overload_room;
        self.state.set_overloaded(overloaded);
    }

    /// Hands held events to the queue while it has room.
    fn hand_over_held(&mut self) {
        while let Some(event) = self.held_events.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.held_events.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.held_events.clear();
                    return;
                }
            }
        }
    }
}

/// Reads and frames one TCP connection, and writes what the driver queues for it. Ends on
/// EOF, an error, a framing error (RFC 3261 §18.3: the stream cannot be resynchronised), the
/// idle timeout, a message not complete within the message timeout of its first byte, or a
/// write that makes no progress within the write timeout. A failed write, or bytes still
/// queued when it ends, is reported as [`TcpInbound::Failed`] so the transactions waiting on
/// them end at once (§17.1.4).
///
/// Each framed message takes one of the connection's in-flight permits until the driver has
/// handled it; with none left, the connection waits (and reads nothing) — backpressure to
/// the client through TCP's own window. A well-framed message that does not parse goes to
/// the driver as [`TcpInbound::Rejected`] (it is answered like a datagram, and the
/// connection stays). Each CRLFCRLF ping is answered with a CRLF pong (RFC 5626 §4.4.1).
///
/// `slot`, for an accepted connection, is its place within the connection caps, given back
/// when this ends.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    link: Link,
    mut queue: mpsc::Receiver<Bytes>,
    inbound: mpsc::Sender<TcpInbound>,
    settings: TcpSettings,
    slot: Option<ConnectionSlot>,
) {
    let TcpSettings {
        limits,
        idle_timeout,
        write_timeout,
        in_flight,
        message_timeout,
        ..
    } = settings;
    let peer = link.peer;
    let in_flight = Arc::new(Semaphore::new(in_flight));
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    let mut failed = false;
    // When the message being received must be complete: set when its first byte arrives.
    let mut message_deadline: Option<tokio::time::Instant> = None;
    loop {
        let stalled = async {
            match message_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = tokio::time::timeout(idle_timeout, stream.read(&mut buf)) => {
                let Ok(Ok(len)) = read else { break };
                if len == 0 {
                    break;
                }
                decoder.push(buf.get(..len).unwrap_or_default());
                let mut broken = false;
                // Whether a message ended in these bytes: what is left started after it.
                let mut completed = false;
                loop {
                    let inbound_message = match decoder.decode() {
                        Ok(Some(message)) => {
                            completed = true;
                            InboundKind::Message(message)
                        }
                        Ok(None) => break,
                        Err(error) if error.is_framing() => {
                            tracing::debug!(%error, %peer, "TCP framing error: closing");
                            broken = true;
                            break;
                        }
                        Err(error) => {
                            completed = true;
                            let Some(raw) = decoder.take_rejected() else {
                                // Cannot happen for a skipped message; close rather than
                                // risk decoding the same bytes again.
                                tracing::debug!(%error, %peer, "TCP decode error: closing");
                                broken = true;
                                break;
                            };
                            tracing::debug!(%error, %peer, "malformed message on TCP: answering it");
                            InboundKind::Rejected(raw)
                        }
                    };
                    // Both waits answer meanwhile: a client that pipelines and reads its
                    // answers is never cut off for a send queue we did not drain.
                    let acquire = in_flight.clone().acquire_owned();
                    let permit = match while_writing(acquire, &mut stream, &mut queue, write_timeout).await {
                        Ok(Ok(permit)) => permit,
                        Ok(Err(_)) => {
                            broken = true;
                            break;
                        }
                        Err(stop) => {
                            failed = stop == Stop::WriteFailed;
                            broken = true;
                            break;
                        }
                    };
                    let report = match inbound_message {
                        InboundKind::Message(message) => TcpInbound::Message(link, message, permit),
                        InboundKind::Rejected(raw) => TcpInbound::Rejected(link, raw, permit),
                    };
                    let handed = while_writing(inbound.send(report), &mut stream, &mut queue, write_timeout).await;
                    match handed {
                        Ok(Ok(())) => {}
                        // The driver is gone.
                        Ok(Err(_)) => {
                            broken = true;
                            break;
                        }
                        Err(stop) => {
                            failed = stop == Stop::WriteFailed;
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    break;
                }
                let pings = decoder.take_pings();
                if pings > 0 {
                    // One CRLF per ping; at most one per four bytes read, so this is bounded.
                    let pongs = b"\r\n".repeat(pings);
                    if let Err(error) = write_bounded(&mut stream, &pongs, write_timeout).await {
                        tracing::debug!(%error, %peer, "TCP keep-alive pong not written: closing");
                        failed = true;
                        break;
                    }
                }
                message_deadline = if !decoder.in_message() {
                    None
                } else if completed || message_deadline.is_none() {
                    // No deadline when it is beyond what the clock can say.
                    tokio::time::Instant::now().checked_add(message_timeout)
                } else {
                    message_deadline
                };
            }
            () = stalled => {
                tracing::debug!(%peer, ?message_timeout, buffered = decoder.buffered(), "TCP message not completed in time: closing");
                break;
            }
            bytes = queue.recv() => match bytes {
                Some(bytes) => {
                    if let Err(error) = write_bounded(&mut stream, &bytes, write_timeout).await {
                        tracing::debug!(%error, %peer, "TCP write failed: closing");
                        failed = true;
                        break;
                    }
                    // Whatever else is queued goes now, before the next read.
                    if let Err(stop) = drain(&mut stream, &mut queue, write_timeout).await {
                        failed = stop == Stop::WriteFailed;
                        break;
                    }
                }
                None => break,
            },
        }
    }
    // Close the queue first, so the driver sees this writer as gone; bytes still in it were
    // never sent.
    queue.close();
    failed |= queue.try_recv().is_ok();
    drop(queue);
    // The connection no longer counts against the caps.
    drop(slot);
    let report = if failed {
        TcpInbound::Failed(link)
    } else {
        TcpInbound::Closed(link)
    };
    let _ = inbound.send(report).await;
}

/// Why a connection task stops writing.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// A write failed or made no progress in time.
    WriteFailed,
    /// The driver closed the send queue (it gave the connection up).
    QueueClosed,
}

/// Awaits `wanted` while writing whatever the driver queues for this connection meanwhile,
/// so a connection that waits for room to hand over what it read keeps answering.
async fn while_writing<S: AsyncWrite + Unpin, T>(
    wanted: impl std::future::Future<Output = T>,
    stream: &mut S,
    queue: &mut mpsc::Receiver<Bytes>,
    write_timeout: Duration,
) -> Result<T, Stop> {
    // What is queued already goes first. Otherwise a connection whose permits come back at
    // once would hand over message after message without writing their answers, until the
    // driver found the send queue full and gave the connection up. With it, the queue holds
    // at most the answers to the messages in flight (`tcp_in_flight` < `tcp_send_queue`).
    drain(stream, queue, write_timeout).await?;
    tokio::pin!(wanted);
    loop {
        tokio::select! {
            biased;
            out = &mut wanted => return Ok(out),
            bytes = queue.recv() => match bytes {
                Some(bytes) => write_bounded(stream, &bytes, write_timeout)
                    .await
                    .map_err(|_| Stop::WriteFailed)?,
                None => return Err(Stop::QueueClosed),
            },
        }
    }
}

/// Writes everything queued for this connection now, without waiting for more.
async fn drain<S: AsyncWrite + Unpin>(
    stream: &mut S,
    queue: &mut mpsc::Receiver<Bytes>,
    write_timeout: Duration,
) -> Result<(), Stop> {
    while let Ok(bytes) = queue.try_recv() {
        write_bounded(stream, &bytes, write_timeout)
            .await
            .map_err(|_| Stop::WriteFailed)?;
    }
    Ok(())
}

/// What a connection task hands over, before it has a permit for it.
enum InboundKind {
    Message(session_sip::Message),
    Rejected(Bytes),
}

/// Writes all of `bytes` and flushes them, failing with `TimedOut` when that takes longer
/// than `timeout` (a peer that does not read fills its window and the write stops making
/// progress).
///
/// The flush matters for TLS: when the socket cannot take more, tokio-rustls's `write` still
/// reports the bytes written once rustls has encrypted them, and keeps the records in its own
/// buffer until the next write or flush — for the last message before a quiet spell, that could
/// be never. Over plain TCP the flush does nothing.
async fn write_bounded<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the write made no progress for {timeout:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_load_survives_packing_and_saturates_instead_of_wrapping() {
        for load in [
            Load {
                active: 0,
                limit: None,
            },
            Load {
                active: 3,
                limit: Some(100),
            },
            Load {
                active: 7,
                limit: Some(0),
            },
        ] {
            assert_eq!(unpack_load(pack_load(load)), Some(load));
        }
        assert_eq!(unpack_load(NO_LOAD), None);
        let huge = pack_load(Load {
            active: usize::MAX,
            limit: Some(usize::MAX),
        });
        assert_ne!(huge, NO_LOAD, "a real load is never taken for none");
        assert!(unpack_load(huge).is_some_and(|load| load.active > 1 << 31));
    }

    fn backoff() -> AcceptBackoff {
        AcceptBackoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX)
    }

    /// EMFILE as `accept` reports it.
    fn out_of_fds() -> io::ErrorKind {
        io::Error::from_raw_os_error(24).kind()
    }

    #[test]
    fn accept_failures_pause_accepting_longer_each_time_up_to_a_second() {
        let t0 = Instant::now();
        let mut policy = backoff();
        let mut now = t0;
        let mut pauses = Vec::new();
        let mut warnings = 0;
        for _ in 0..10 {
            let retry = policy.failed(out_of_fds(), now);
            warnings += usize::from(retry.warn);
            pauses.push(retry.at - now);
            // The driver tries again when told to, and fails again.
            now = retry.at;
        }
        assert_eq!(
            pauses,
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000].map(|ms| ms * MS)
        );
        assert_eq!(warnings, 1, "one warning for the whole episode");
    }

    #[test]
    fn an_accept_that_works_long_enough_after_the_last_failure_ends_the_episode() {
        let t0 = Instant::now();
        let mut policy = backoff();
        assert!(policy.failed(out_of_fds(), t0).warn);
        let retry = policy.failed(out_of_fds(), t0 + 10 * MS);
        assert!(!retry.warn);
        // Working again soon after does not end it: at the fd limit, one accept may work
        // between failures, and that is no reason to warn again or to start the pause over.
        assert_eq!(policy.succeeded(retry.at), None);
        let again = policy.failed(out_of_fds(), retry.at + MS);
        assert!(!again.warn);
        assert_eq!(again.at - (retry.at + MS), 40 * MS);
        // A second of working accepts ends it, saying how many failures it had.
        let later = retry.at + ACCEPT_BACKOFF_MAX + 2 * MS;
        assert_eq!(policy.succeeded(later), Some(3));
        assert_eq!(policy.succeeded(later + MS), None, "no episode any more");
        // The next failure starts a new episode: a warning, and the shortest pause.
        let next = policy.failed(out_of_fds(), later + ACCEPT_BACKOFF_MAX);
        assert!(next.warn);
        assert_eq!(next.at - (later + ACCEPT_BACKOFF_MAX), ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn a_failure_after_a_quiet_time_with_a_working_accept_between_warns_again() {
        let t0 = Instant::now();
        let mut policy = backoff();
        assert!(policy.failed(out_of_fds(), t0).warn);
        // Worked right after the pause, then nothing for a while.
        assert_eq!(policy.succeeded(t0 + 10 * MS), None);
        let retry = policy.failed(out_of_fds(), t0 + 5 * ACCEPT_BACKOFF_MAX);
        assert!(retry.warn);
        assert_eq!(retry.at - (t0 + 5 * ACCEPT_BACKOFF_MAX), ACCEPT_BACKOFF_MIN);
        // Without any working accept between, failures belong to one episode however far
        // apart they are.
        let retry = policy.failed(out_of_fds(), t0 + 50 * ACCEPT_BACKOFF_MAX);
        assert!(!retry.warn);
    }

    #[test]
    fn errors_of_one_connection_are_retried_at_once() {
        let t0 = Instant::now();
        let mut policy = backoff();
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::Interrupted,
        ] {
            assert_eq!(
                policy.failed(kind, t0),
                AcceptRetry {
                    at: t0,
                    warn: false
                }
            );
        }
        // They neither start nor feed an episode.
        assert!(policy.failed(io::ErrorKind::OutOfMemory, t0).warn);
        assert_eq!(
            policy.failed(io::ErrorKind::ConnectionAborted, t0 + MS).at,
            t0 + MS
        );
        assert_eq!(policy.failed(out_of_fds(), t0 + 2 * MS).at, t0 + 22 * MS);
    }

    #[test]
    fn connection_caps_count_per_ip_and_in_total_and_slots_give_places_back() {
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let c: IpAddr = [192, 0, 2, 3].into();
        let caps = ConnectionCaps::new(3, 2);
        let a1 = caps.admit(a).unwrap();
        let a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), CapReached::PerIp);
        let b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(c).unwrap_err(), CapReached::Total);
        drop(a1);
        let c1 = caps.admit(c).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), CapReached::Total);
        drop((a2, b1, c1));
        assert_eq!(caps.open().total, 0);
        assert!(
            caps.open().per_ip.is_empty(),
            "no entry kept for gone peers"
        );
    }

    /// A message written to a TLS stream whose transport cannot take it all at once reaches
    /// the peer whole: `write_bounded` pushes out the records rustls still holds. The
    /// transport here is a pipe of 1 KiB, read by the peer as bytes come.
    #[tokio::test]
    async fn a_tls_write_larger_than_the_transport_takes_arrives_whole() {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let tls = TlsConfig::builder()
            .identity_pem(
                cert.cert.pem().as_bytes(),
                cert.signing_key.serialize_pem().as_bytes(),
            )
            .unwrap()
            .trust_pem(cert.cert.pem().as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let (near, far) = tokio::io::duplex(1024);
        let address = SocketAddr::from(([127, 0, 0, 1], 5061));
        let acceptor = tls.acceptor().unwrap();
        let (client, server) = tokio::join!(
            tls.connector()
                .connect(crate::tls::server_name(None, address), near),
            acceptor.accept(far)
        );
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        let message = vec![b'x'; 16 * 1024];
        let expected = message.len();
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            while received.len() < expected {
                match server.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
            received.len()
        });
        write_bounded(&mut client, &message, Duration::from_secs(5))
            .await
            .unwrap();
        // Bounded: without the flush the tail stays in the writer's buffer for good.
        let received = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the whole message arrives")
            .unwrap();
        assert_eq!(received, expected);
    }

    /// Linux only: it refuses SYNs beyond the backlog, so connections the listener never
    /// accepts show how long the queue is. (`listen(128)`, tokio's, would stop at 129.)
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_listen_backlog_is_the_configured_one() {
        const BACKLOG: u32 = 300;
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if somaxconn.is_none_or(|max| max < BACKLOG) {
            // The kernel caps the backlog lower than this test needs.
            return;
        }
        let listener = bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0)), BACKLOG, 0).unwrap();
        let address = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for n in 0..200 {
            let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address));
            match connect.await {
                Ok(Ok(stream)) => clients.push(stream),
                Ok(Err(error)) => panic!("connection {n}: {error}"),
                Err(_) => panic!("connection {n} not queued: the backlog is too short"),
            }
        }
    }

    /// A gated source is polled again only once it woke the task, and then gives what it has.
    #[tokio::test]
    async fn a_wake_gate_polls_its_source_only_once_it_woke_the_task() {
        let (tx, mut rx) = mpsc::channel::<u32>(4);
        struct Task;
        impl std::task::Wake for Task {
            fn wake(self: Arc<Self>) {}
        }
        let task = Waker::from(Arc::new(Task));
        let mut gate = WakeGate::new();
        let mut polls = 0;
        let poll = |gate: &mut WakeGate, rx: &mut mpsc::Receiver<u32>, polls: &mut u32| {
            let mut cx = Context::from_waker(&task);
            gate.poll(&mut cx, |cx| {
                *polls += 1;
                rx.poll_recv(cx)
            })
        };
        // Open at first: polled, empty.
        assert!(poll(&mut gate, &mut rx, &mut polls).is_pending());
        assert_eq!(polls, 1);
        // Nothing woke it: not polled.
        assert!(poll(&mut gate, &mut rx, &mut polls).is_pending());
        assert_eq!(polls, 1);
        // A send wakes it: polled, and again after it gave something.
        tx.try_send(7).unwrap();
        tx.try_send(8).unwrap();
        assert_eq!(poll(&mut gate, &mut rx, &mut polls), Poll::Ready(Some(7)));
        assert_eq!(poll(&mut gate, &mut rx, &mut polls), Poll::Ready(Some(8)));
        assert!(poll(&mut gate, &mut rx, &mut polls).is_pending());
        assert_eq!(polls, 4);
        assert!(poll(&mut gate, &mut rx, &mut polls).is_pending());
        assert_eq!(polls, 4);
    }
}
