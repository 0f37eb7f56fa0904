//! The tokio driver: owns the sockets and one timer, feeds the sans-IO [`UserAgent`], and
//! sends what it returns. It is the only part of the crate that does I/O or reads the clock.
//!
//! One task runs the user agent. UDP datagrams are read by that task directly; each TCP
//! connection has a small task of its own that frames the stream with session-sip's
//! `StreamDecoder` and hands whole messages to the driver. There is one `sleep_until` for all
//! transactions and dialogs — the next deadline the user agent reports — never a timer per
//! transaction. Callers talk to the driver through a cloneable [`SipHandle`], which runs a
//! closure on the user agent inside the driver task, so no lock is ever shared.
//!
//! Every queue between tasks is bounded (RFC-level overload handling, not memory, decides
//! what happens under load):
//! - the events to the layer above ([`DriverConfig::event_queue`]): when it runs short of
//!   room ([`DriverConfig::overload_room`]), new INVITEs are refused with a stateless 503 and
//!   `Retry-After` ([`UserAgent::set_shedding`]) so the room left is for calls already
//!   admitted; when it is full, the driver holds the events it could not hand over and stops
//!   reading its sockets until there is room again (the kernel's buffers and the peers'
//!   retransmissions take the excess, as RFC 3261 expects of a busy element);
//! - the jobs from [`SipHandle`]s ([`DriverConfig::job_queue`]): a caller waits for room;
//! - the messages each TCP connection has framed but the driver not yet handled
//!   ([`DriverConfig::tcp_in_flight`] per connection, within one shared queue): a connection
//!   at its share stops reading, so a client that pipelines faster than we answer slows
//!   itself down;
//! - the bytes waiting to be written to each TCP connection ([`DriverConfig::tcp_send_queue`]
//!   messages): a peer that does not read fills it, and a write that makes no progress for
//!   [`DriverConfig::tcp_write_timeout`] closes the connection.
//!
//! A send that fails for good (a refused or broken TCP connection, a hard UDP error such as an
//! unreachable network) is reported to the user agent with
//! [`UserAgent::handle_transport_error`], which ends the transactions towards that peer at once
//! (RFC 3261 §17.1.4) rather than after 32 s of Timer B or F.

use crate::endpoint::{EndpointConfig, Protocol};
use crate::ua::{UaConfig, UaEvent, UserAgent};
use bytes::Bytes;
use session_sip::{ParseLimits, StreamDecoder, Uri};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
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
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Capacity of the queue of events to the layer above (default 4096).
    pub event_queue: usize,
    /// Room in the event queue kept for calls already admitted: with less free, new INVITEs
    /// are answered 503 with [`DriverConfig::overload_retry_after`] before any state is made
    /// for them (default 1024; at most `event_queue`).
    pub overload_room: usize,
    /// The `Retry-After` of a 503 to a shed INVITE (default 5 s).
    pub overload_retry_after: Duration,
    /// Capacity of the queue of jobs from [`SipHandle`]s (default 1024).
    pub job_queue: usize,
    /// Messages one TCP connection may have framed and waiting for the driver (default 32):
    /// at that count it stops reading.
    pub tcp_in_flight: usize,
    /// Messages waiting to be written to one TCP connection (default 256): a peer that lets
    /// more pile up is not reading, and the connection is closed.
    pub tcp_send_queue: usize,
    /// A TCP write that makes no progress for this long closes the connection (default 10 s).
    pub tcp_write_timeout: Duration,
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
            tcp_idle_timeout: Duration::from_secs(300),
            event_queue: 4096,
            overload_room: 1024,
            overload_retry_after: Duration::from_secs(5),
            job_queue: 1024,
            tcp_in_flight: 32,
            tcp_send_queue: 256,
            tcp_write_timeout: Duration::from_secs(10),
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
    contact: Uri,
    refusing_calls: Arc<AtomicBool>,
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

    /// Whether new INVITEs are to be refused (503 with Retry-After, statelessly, before any
    /// state is made: [`UserAgent::set_shedding`]) whatever room the event queue has: the
    /// layer above sets it while it is at its admission limit, so refusing costs it nothing.
    pub fn refuse_new_calls(&self, refuse: bool) {
        self.refusing_calls.store(refuse, Ordering::Relaxed);
    }

    /// New INVITEs refused with a stateless 503 so far (overload, or
    /// [`SipHandle::refuse_new_calls`]): calls that never reached the layer above.
    pub fn shed_invites(&self) -> u64 {
        self.shed_invites.load(Ordering::Relaxed)
    }

    /// Runs `f` on the user agent inside the driver task and returns its result. Whatever it
    /// queues (requests, responses) is sent right after. Waits for room when the driver's job
    /// queue is full.
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

/// What TCP connection tasks tell the driver.
enum TcpInbound {
    /// A framed message, with one of its connection's in-flight permits (given back when the
    /// driver has handled it).
    Message(SocketAddr, session_sip::Message, OwnedSemaphorePermit),
    Closed(SocketAddr),
    /// The connection could not be made, or bytes queued for it were never written.
    Failed(SocketAddr),
}

/// Whether a UDP send error says the destination cannot be reached (worth failing the
/// transactions towards it), rather than a passing local shortage such as a full buffer.
fn is_hard_send_error(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused
            | ConnectionReset
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
                bind_udp(config.bind, config.socket_buffer)
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
        match TcpListener::bind(local_addr).await {
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
    pub async fn start(
        config: DriverConfig,
    ) -> Result<(SipHandle, mpsc::Receiver<UaEvent>), DriverError> {
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
        let (udp, listener, local_addr) = bind_sockets(&config).await?;
        let host = match local_addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        let contact = Uri::parse(&format!(
            "sip:{}@{host}:{}",
            config.contact_user,
            local_addr.port()
        ))
        .map_err(|_| DriverError::Config("contact user is not a valid URI user part"))?;
        let ua = UserAgent::new(UaConfig {
            endpoint: config.endpoint.clone(),
            via_host: host,
            via_port: local_addr.port(),
            contact: contact.clone(),
            large_requests_over_tcp: config.tcp,
            rng_seed: config.rng_seed,
        });
        tracing::debug!(%local_addr, rng_seed = ua.rng_seed(), "SIP driver started");
        let (jobs_tx, jobs_rx) = mpsc::channel(config.job_queue);
        let (events_tx, events_rx) = mpsc::channel(config.event_queue);
        // Each connection holds at most `tcp_in_flight` of these; the bound is for them all.
        let (tcp_tx, tcp_rx) = mpsc::channel(config.job_queue);
        let refusing_calls = Arc::new(AtomicBool::new(false));
        let shed_invites = Arc::new(AtomicU64::new(0));
        let task = DriverTask {
            ua,
            udp,
            listener,
            jobs: jobs_rx,
            events: events_tx,
            held_events: VecDeque::new(),
            tcp_inbound: tcp_rx,
            tcp_inbound_tx: tcp_tx,
            connections: HashMap::new(),
            refusing_calls: refusing_calls.clone(),
            shed_invites: shed_invites.clone(),
            tcp: TcpSettings {
                limits: config.endpoint.limits.clone(),
                idle_timeout: config.tcp_idle_timeout,
                write_timeout: config.tcp_write_timeout,
                in_flight: config.tcp_in_flight,
                send_queue: config.tcp_send_queue,
            },
            overload_room: config.overload_room.min(config.event_queue),
            overload_retry_after: config.overload_retry_after,
            shedding: false,
        };
        tokio::spawn(task.run());
        Ok((
            SipHandle {
                jobs: jobs_tx,
                local_addr,
                contact,
                refusing_calls,
                shed_invites,
            },
            events_rx,
        ))
    }
}

fn bind_udp(address: SocketAddr, buffer: Option<usize>) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if let Some(size) = buffer {
        socket.set_recv_buffer_size(size)?;
        socket.set_send_buffer_size(size)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// The settings every TCP connection task gets.
#[derive(Clone)]
struct TcpSettings {
    limits: ParseLimits,
    idle_timeout: Duration,
    write_timeout: Duration,
    in_flight: usize,
    send_queue: usize,
}

struct DriverTask {
    ua: UserAgent,
    udp: Option<UdpSocket>,
    listener: Option<TcpListener>,
    jobs: mpsc::Receiver<Job>,
    events: mpsc::Sender<UaEvent>,
    /// Events the full queue could not take yet, in order. While any are held the driver
    /// reads no socket, so this only grows by what timers and jobs produce meanwhile.
    held_events: VecDeque<UaEvent>,
    tcp_inbound: mpsc::Receiver<TcpInbound>,
    tcp_inbound_tx: mpsc::Sender<TcpInbound>,
    /// Writers of open TCP connections, by peer address (RFC 3261 §18: reuse connections).
    connections: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    /// Set by the layer above through [`SipHandle::refuse_new_calls`].
    refusing_calls: Arc<AtomicBool>,
    /// The user agent's count of shed INVITEs, for [`SipHandle::shed_invites`].
    shed_invites: Arc<AtomicU64>,
    tcp: TcpSettings,
    overload_room: usize,
    overload_retry_after: Duration,
    /// Whether the user agent is shedding new INVITEs now.
    shedding: bool,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
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

async fn accept_tcp(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

impl DriverTask {
    async fn run(mut self) {
        let mut buf = vec![0u8; 65_535];
        loop {
            self.update_shedding();
            // The queue above is full: hand over what is held before reading anything more.
            let holding = !self.held_events.is_empty();
            let deadline = self.ua.poll_timeout();
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
                job = self.jobs.recv() => match job {
                    Some(job) => job(&mut self.ua, now()),
                    None => break, // every handle is gone
                },
                received = recv_udp(self.udp.as_ref(), &mut buf), if !holding => match received {
                    Ok((len, source)) => {
                        let bytes = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
                        trace_wire("in", Protocol::Udp, source, &bytes);
                        self.ua.handle_datagram(now(), Protocol::Udp, source, &bytes);
                    }
                    // ICMP errors surface here on some systems; the socket stays usable.
                    Err(error) => tracing::debug!(%error, "UDP receive error"),
                },
                inbound = self.tcp_inbound.recv(), if !holding => match inbound {
                    Some(TcpInbound::Message(source, message, permit)) => {
                        if tracing::enabled!(target: WIRE_TRACE_TARGET, tracing::Level::TRACE) {
                            trace_wire("in", Protocol::Tcp, source, &message.to_bytes());
                        }
                        self.ua.handle_message(now(), Protocol::Tcp, source, message);
                        // The connection may frame one more.
                        drop(permit);
                    }
                    Some(TcpInbound::Closed(peer)) => self.forget_connection(peer),
                    Some(TcpInbound::Failed(peer)) => {
                        self.forget_connection(peer);
                        self.ua.handle_transport_error(now(), peer, Protocol::Tcp);
                    }
                    None => {}
                },
                accepted = accept_tcp(self.listener.as_ref()), if !holding => match accepted {
                    Ok((stream, peer)) => self.adopt(stream, peer),
                    Err(error) => tracing::debug!(%error, "TCP accept error"),
                },
                () = sleep => self.ua.handle_timeout(now()),
            }
            self.flush().await;
        }
        tracing::debug!("SIP driver stopped");
    }

    /// Turns the user agent's shedding of new INVITEs on or off: on while the layer above
    /// refuses new calls, or while the event queue has less room than the calls already
    /// admitted may need.
    fn update_shedding(&mut self) {
        let shed = self.refusing_calls.load(Ordering::Relaxed)
            || !self.held_events.is_empty()
            || self.events.capacity() < self.overload_room;
        if shed != self.shedding {
            self.shedding = shed;
            tracing::debug!(shedding = shed, "overload shedding of new INVITEs");
            self.ua
                .set_shedding(shed.then_some(self.overload_retry_after));
        }
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

    /// Drops the writer of a connection that ended, unless a newer connection to the same
    /// peer has replaced it.
    fn forget_connection(&mut self, peer: SocketAddr) {
        if self
            .connections
            .get(&peer)
            .is_some_and(|writer| writer.is_closed())
        {
            self.connections.remove(&peer);
        }
    }

    /// Sends what the user agent queued and forwards its events.
    async fn flush(&mut self) {
        while let Some(transmit) = self.ua.poll_transmit() {
            trace_wire(
                "out",
                transmit.protocol,
                transmit.destination,
                &transmit.bytes,
            );
            match transmit.protocol {
                Protocol::Udp => {
                    if let Some(udp) = &self.udp
                        && let Err(error) = udp.send_to(&transmit.bytes, transmit.destination).await
                    {
                        tracing::debug!(%error, destination = %transmit.destination, "UDP send failed");
                        if is_hard_send_error(&error) {
                            self.ua.handle_transport_error(
                                now(),
                                transmit.destination,
                                Protocol::Udp,
                            );
                        }
                    }
                }
                Protocol::Tcp => self.send_tcp(transmit.destination, transmit.bytes),
            }
        }
        while let Some(event) = self.ua.poll_event() {
            // Behind events already held, to keep the order.
            self.held_events.push_back(event);
        }
        self.hand_over_held();
        self.update_shedding();
        self.shed_invites
            .store(self.ua.shed_invites(), Ordering::Relaxed);
    }

    fn send_tcp(&mut self, destination: SocketAddr, bytes: Bytes) {
        let bytes = match self.connections.get(&destination) {
            Some(writer) => match writer.try_send(bytes) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The peer does not read what we send: give the connection up, and with
                    // it the transactions waiting on it (§17.1.4). Its task ends at once (its
                    // queue is closed) or when its stuck write times out.
                    tracing::debug!(%destination, "TCP send queue full: closing the connection");
                    self.connections.remove(&destination);
                    self.ua
                        .handle_transport_error(now(), destination, Protocol::Tcp);
                    return;
                }
                // The connection ended: open a new one.
                Err(mpsc::error::TrySendError::Closed(bytes)) => bytes,
            },
            None => bytes,
        };
        let (writer, queue) = mpsc::channel(self.tcp.send_queue);
        // Queued until the connection is up; the queue is new, so it has room.
        let _ = writer.try_send(bytes);
        self.connections.insert(destination, writer);
        let inbound = self.tcp_inbound_tx.clone();
        let settings = self.tcp.clone();
        tokio::spawn(async move {
            match TcpStream::connect(destination).await {
                Ok(stream) => serve_connection(stream, destination, queue, inbound, settings).await,
                Err(error) => {
                    tracing::debug!(%error, %destination, "TCP connect failed");
                    drop(queue);
                    let _ = inbound.send(TcpInbound::Failed(destination)).await;
                }
            }
        });
    }

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        let (writer, queue) = mpsc::channel(self.tcp.send_queue);
        self.connections.insert(peer, writer);
        let inbound = self.tcp_inbound_tx.clone();
        tokio::spawn(serve_connection(
            stream,
            peer,
            queue,
            inbound,
            self.tcp.clone(),
        ));
    }
}

/// Reads and frames one TCP connection, and writes what the driver queues for it. Ends on
/// EOF, an error, a framing error (RFC 3261 §18.3: the stream cannot be resynchronised), the
/// idle timeout, or a write that makes no progress within the write timeout. A failed write,
/// or bytes still queued when it ends, is reported as [`TcpInbound::Failed`] so the
/// transactions waiting on them end at once (§17.1.4).
///
/// Each framed message takes one of the connection's in-flight permits until the driver has
/// handled it; with none left, the connection waits (and reads nothing) — backpressure to
/// the client through TCP's own window.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut queue: mpsc::Receiver<Bytes>,
    inbound: mpsc::Sender<TcpInbound>,
    settings: TcpSettings,
) {
    let TcpSettings {
        limits,
        idle_timeout,
        write_timeout,
        in_flight,
        ..
    } = settings;
    let in_flight = Arc::new(Semaphore::new(in_flight));
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    let mut failed = false;
    loop {
        tokio::select! {
            read = tokio::time::timeout(idle_timeout, stream.read(&mut buf)) => {
                let Ok(Ok(len)) = read else { break };
                if len == 0 {
                    break;
                }
                decoder.push(buf.get(..len).unwrap_or_default());
                let mut broken = false;
                loop {
                    match decoder.decode() {
                        Ok(Some(message)) => {
                            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                                break;
                            };
                            if inbound.send(TcpInbound::Message(peer, message, permit)).await.is_err() {
                                // The driver is gone.
                                broken = true;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::debug!(%error, %peer, "TCP framing error: closing");
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    break;
                }
            }
            bytes = queue.recv() => match bytes {
                Some(bytes) => {
                    match tokio::time::timeout(write_timeout, stream.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "TCP write failed");
                            failed = true;
                            break;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, ?write_timeout, "TCP write made no progress: closing");
                            failed = true;
                            break;
                        }
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
    let report = if failed {
        TcpInbound::Failed(peer)
    } else {
        TcpInbound::Closed(peer)
    };
    let _ = inbound.send(report).await;
}
