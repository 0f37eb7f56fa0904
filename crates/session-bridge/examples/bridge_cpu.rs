//! CPU and memory of [`BridgeDriver`] on loopback sockets, each next to a baseline measured in
//! the same run: bridged G.711 calls against a plain UDP forwarder, mixing conferences
//! (participants per core, tick lateness seen at the phones, cost per member from 3 to 50
//! members), and the memory a bridged pair holds.
//!
//! ```text
//! cargo run --release -p session-bridge --example bridge_cpu -- \
//!     [--seconds 3] [--rounds 2] [--parts memory,relay,conf,scale] [--calls 1,10,50] \
//!     [--modes bridge,fwd-std] [--rooms 25x4,100x4] [--room-sizes 3,5,10,20,50] \
//!     [--memory-pairs 1000]
//! ```
//!
//! Traffic: every participant (every leg of every call) has a generator, a socket on its own
//! OS thread and current-thread tokio runtime that sends a 172-byte PCMU packet (160 bytes of
//! payload) every 20 ms to its leg, the streams spread evenly over the 20 ms, and counts what
//! comes back. The system under test runs on other thread(s), whose CPU time is read from
//! `/proc/thread-self/schedstat` (first field: ns on a CPU; third: run slices) from inside the
//! thread at the start and the end of the measurement window (one warm-up second excluded).
//!
//! Parts and modes:
//! - `relay`: per call two legs, each an `RtpEndpoint::bind(127.0.0.1:0, RtcpPort::muxed_if(rtcp-mux))` with its
//!   generator as remote, handed to the driver with `into_leg` in a `TechnologyChoice::Auto`
//!   bridge (which relays two PCMU legs in place). Modes, interleaved per call count:
//!   - `bridge`: one `BridgeDriver` on a current-thread runtime (IO and time drivers) in a
//!     dedicated OS thread; that thread is measured. It runs the driver's reader task per leg,
//!     its ticker (RTCP every 5 s per leg, stall checks) and a task draining its events.
//!   - `fwd-std`: the floor. No tokio: one OS thread per direction blocking in `recv_from` and
//!     calling `send_to` with the bytes unchanged (plain `recvfrom`/`sendto`, no `recvmmsg`);
//!     the CPU of all those threads is summed.
//!   - `fwd-tokio` (not run by default): the same forwarding as tasks on one current-thread
//!     runtime in one thread, tokio's `UdpSocket::recv_from` / `send_to`: what the runtime
//!     alone costs, without the bridge.
//! - `conf`: `ROOMSxMEMBERS` rooms of `TechnologyChoice::ForceMixer` bridges in one driver,
//!   every participant's generator sending every 20 ms and receiving its mix-minus; next to
//!   it, in the same round, `fwd-std` carrying as many streams (participants / 2 calls, one
//!   direction per participant: the same 50 packets/s in and out each).
//! - `scale`: one mixing room of each size in `--room-sizes`: the cost per member, each next
//!   to `fwd-std` carrying as many streams (rounded up to whole calls).
//! - `memory`: one child process per variant (so no variant inherits another's freed
//!   memory): VmRSS (`/proc/self/status`), the live heap (a counting global allocator), open
//!   descriptors and the system-wide `SUnreclaim` of `/proc/meminfo` (kernel objects, sockets
//!   among them; informative, other processes move it too), read before and after setting up
//!   `--memory-pairs` bridged pairs with no traffic (variants in `MEMORY_VARIANTS`).
//!
//! Tick lateness: the driver's ticker cannot be instrumented from outside, so the generators
//! time what they receive: for every packet that comes back in the window, |gap since the
//! previous one on the same socket − 20 ms|. The generators' own lateness (how late their 20 ms
//! interval fires) is printed next to it as the floor of that observation.
#![allow(unsafe_code)] // the counting allocator below: a forwarding `GlobalAlloc`, nothing else
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use session_bridge::{BridgeDriver, DriverConfig, Technology, TechnologyChoice};
use session_media::endpoint::{EndpointConfig, RtcpPort, RtpEndpoint};
use session_media::rtcp::is_rtcp;
use session_media::rtp::{MAX_PACKET, RtpSender, parse};
use session_types::SessionId;
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

// ---- the counting allocator ----

/// The system allocator, counting live bytes and blocks (process-wide) and allocations per
/// thread (so a measured thread's allocations per packet can be read).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count_thread_alloc() {
    // A const-initialised `Cell` has no destructor, so this cannot fail; ignore it if it did.
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn thread_allocs() -> u64 {
    THREAD_ALLOCS.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
            count_thread_alloc();
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc` and `dealloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            count_thread_alloc();
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- constants ----

const PTIME: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_secs(1);
const DRAIN: Duration = Duration::from_millis(300);
const G711_PAYLOAD: [u8; 160] = [0xFF; 160];
const RTP_LEN: usize = 172;
/// Relay target: the bridge's CPU per call at most this many times the plain forwarder's.
const RELAY_TARGET_RATIO: f64 = 2.0;
/// Memory target per bridged pair (both legs and the bridge).
const MEMORY_TARGET: f64 = 64.0 * 1024.0;
/// Cost per member from 3 to 50 members: every size within this of the median.
const FLAT_TOLERANCE: f64 = 0.20;

/// Control datagrams for the `fwd-std` threads (RTP packets are 172 bytes, so a 1-byte or
/// empty datagram cannot be mistaken for one).
const MARK_START: u8 = 0xA1;
const MARK_STOP: u8 = 0xA2;

fn lo0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// ---- what is measured ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `BridgeDriver`, relaying (two legs per bridge, `Auto`).
    Bridge,
    /// Blocking forwarder thread per direction.
    FwdStd,
    /// Tokio forwarder tasks on one current-thread runtime.
    FwdTokio,
    /// `BridgeDriver`, mixing (`ForceMixer`).
    Mixer,
}

impl Mode {
    fn parse(s: &str) -> Self {
        match s {
            "bridge" => Self::Bridge,
            "fwd-std" => Self::FwdStd,
            "fwd-tokio" => Self::FwdTokio,
            other => panic!("unknown mode {other:?} (bridge, fwd-std, fwd-tokio)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::FwdStd => "fwd-std",
            Self::FwdTokio => "fwd-tokio",
            Self::Mixer => "mixer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Relay,
    Conf,
    Scale,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Conf => "conf",
            Self::Scale => "scale",
        }
    }
}

/// Rooms (calls for a relay) of `per_room` participants (legs) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    rooms: usize,
    per_room: usize,
}

impl Shape {
    fn participants(self) -> usize {
        self.rooms * self.per_room
    }

    fn parse(s: &str) -> Self {
        let (rooms, per_room) = s.split_once('x').expect("ROOMSxMEMBERS, e.g. 25x4");
        Self {
            rooms: rooms.parse().expect("rooms"),
            per_room: per_room.parse().expect("members"),
        }
    }
}

// ---- CPU from schedstat ----

/// The calling thread's (ns on a CPU, run slices) from schedstat: user + system time
/// (softirq work done in the thread's context included), and the number of times it was
/// scheduled onto a CPU, about one per wakeup for a thread that sleeps between packets.
/// Read into a stack buffer, so that the read allocates nothing and a measured thread's
/// allocation count is its own.
fn thread_schedstat() -> (u64, u64) {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let n = std::fs::File::open("/proc/thread-self/schedstat")
        .and_then(|mut f| f.read(&mut buf))
        .expect("/proc/thread-self/schedstat (Linux with CONFIG_SCHED_INFO)");
    let s = std::str::from_utf8(&buf[..n]).expect("schedstat is ASCII");
    let mut fields = s.split_whitespace().map(|f| f.parse::<u64>().ok());
    let on_cpu = fields.next().flatten().expect("schedstat: ns on CPU");
    let slices = fields.nth(1).flatten().expect("schedstat: run slices");
    (on_cpu, slices)
}

/// A snapshot taken inside a measured thread.
#[derive(Debug, Clone, Copy)]
struct Mark {
    cpu_ns: u64,
    slices: u64,
    allocs: u64,
    at: Instant,
    packets: u64,
}

impl Mark {
    fn now(packets: u64) -> Self {
        let (cpu_ns, slices) = thread_schedstat();
        Self {
            cpu_ns,
            slices,
            allocs: thread_allocs(),
            at: Instant::now(),
            packets,
        }
    }
}

/// What one measured thread did in the window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    cpu_ns: u64,
    slices: u64,
    allocs: u64,
    wall: Duration,
    /// Datagrams the system under test sent.
    packets: u64,
}

impl Window {
    fn between(start: Mark, stop: Mark) -> Self {
        Self {
            cpu_ns: stop.cpu_ns.saturating_sub(start.cpu_ns),
            slices: stop.slices.saturating_sub(start.slices),
            allocs: stop.allocs.saturating_sub(start.allocs),
            wall: stop.at.saturating_duration_since(start.at),
            packets: stop.packets.saturating_sub(start.packets),
        }
    }

    fn sum(windows: &[Window]) -> Self {
        let n = windows.len().max(1) as u32;
        Self {
            cpu_ns: windows.iter().map(|w| w.cpu_ns).sum(),
            slices: windows.iter().map(|w| w.slices).sum(),
            allocs: windows.iter().map(|w| w.allocs).sum(),
            // The threads share the start and stop signals: the wall is their mean.
            wall: windows.iter().map(|w| w.wall).sum::<Duration>() / n,
            packets: windows.iter().map(|w| w.packets).sum(),
        }
    }
}

// ---- the system under test ----

/// How the generator thread tells the measured thread(s) where the window starts and ends.
enum Control {
    Tokio {
        start: oneshot::Sender<()>,
        stop: oneshot::Sender<()>,
        exit: oneshot::Sender<()>,
    },
    Std {
        socket: StdUdpSocket,
        targets: Vec<SocketAddr>,
    },
}

impl Control {
    fn tokio() -> (Self, TokioSignals) {
        let (start, start_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel();
        let (exit, exit_rx) = oneshot::channel();
        let signals = TokioSignals {
            start: start_rx,
            stop: stop_rx,
            exit: exit_rx,
        };
        (Self::Tokio { start, stop, exit }, signals)
    }

    fn signal(&mut self, which: u8) {
        match self {
            Self::Tokio { start, stop, exit } => {
                let tx = match which {
                    MARK_START => start,
                    MARK_STOP => stop,
                    _ => exit,
                };
                let (dead, _) = oneshot::channel();
                let _ = std::mem::replace(tx, dead).send(());
            }
            Self::Std { socket, targets } => {
                let datagram: &[u8] = match which {
                    MARK_START => &[MARK_START],
                    MARK_STOP => &[MARK_STOP],
                    _ => &[],
                };
                for target in targets.iter() {
                    socket.send_to(datagram, target).expect("control datagram");
                }
            }
        }
    }
}

struct TokioSignals {
    start: oneshot::Receiver<()>,
    stop: oneshot::Receiver<()>,
    exit: oneshot::Receiver<()>,
}

/// The measured side's result: per measured thread the window, the datagrams it sent over
/// the whole run, and what it counted about itself.
struct Measured {
    windows: Vec<Window>,
    sent_total: u64,
    notes: String,
}

/// Starts the system under test for participants whose generator sockets are at `gens`;
/// returns the measured thread(s), the control, and per participant where its generator
/// sends.
fn start_sut(
    mode: Mode,
    shape: Shape,
    gens: Vec<SocketAddr>,
) -> (JoinHandle<Measured>, Control, Vec<SocketAddr>) {
    match mode {
        Mode::Bridge | Mode::Mixer => {
            let (control, signals) = Control::tokio();
            let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
            let handle = std::thread::Builder::new()
                .name(format!("{}-driver", mode.name()))
                .spawn(move || driver_thread(mode, shape, gens, addrs_tx, signals))
                .expect("spawn driver thread");
            let targets = addrs_rx.recv().expect("driver set up");
            (handle, control, targets)
        }
        Mode::FwdStd | Mode::FwdTokio => {
            assert_eq!(shape.per_room, 2, "a forwarder carries calls of two legs");
            let mut dirs = Vec::new();
            let mut targets = Vec::new();
            for call in gens.chunks(2) {
                let bind = || Arc::new(StdUdpSocket::bind(lo0()).expect("bind 127.0.0.1"));
                let (end_a, end_b) = (bind(), bind());
                targets.push(end_a.local_addr().expect("local addr"));
                targets.push(end_b.local_addr().expect("local addr"));
                dirs.push(Direction {
                    from: Arc::clone(&end_a),
                    to: Arc::clone(&end_b),
                    destination: call[1],
                });
                dirs.push(Direction {
                    from: end_b,
                    to: end_a,
                    destination: call[0],
                });
            }
            if mode == Mode::FwdTokio {
                let (control, signals) = Control::tokio();
                let handle = std::thread::Builder::new()
                    .name("fwd-tokio".into())
                    .spawn(move || tokio_forwarder_thread(dirs, signals))
                    .expect("spawn forwarder thread");
                return (handle, control, targets);
            }
            let marks = dirs
                .iter()
                .map(|d| d.from.local_addr().expect("local addr"))
                .collect();
            let threads: Vec<JoinHandle<(Window, u64)>> = dirs
                .into_iter()
                .map(|d| {
                    std::thread::Builder::new()
                        .name("fwd-std".into())
                        .stack_size(64 * 1024)
                        .spawn(move || std_forwarder_thread(&d))
                        .expect("spawn forwarder thread")
                })
                .collect();
            let handle = std::thread::spawn(move || {
                let mut windows = Vec::new();
                let mut sent_total = 0;
                for t in threads {
                    let (w, total) = t.join().expect("forwarder thread");
                    windows.push(w);
                    sent_total += total;
                }
                Measured {
                    windows,
                    sent_total,
                    notes: String::new(),
                }
            });
            let socket = StdUdpSocket::bind(lo0()).expect("bind control");
            (
                handle,
                Control::Std {
                    socket,
                    targets: marks,
                },
                targets,
            )
        }
    }
}

/// The driver's thread: a current-thread runtime running one `BridgeDriver` with every
/// room's legs; measured from inside.
fn driver_thread(
    mode: Mode,
    shape: Shape,
    gens: Vec<SocketAddr>,
    addrs: std::sync::mpsc::Sender<Vec<SocketAddr>>,
    signals: TokioSignals,
) -> Measured {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("driver runtime");
    runtime.block_on(async move {
        let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
        let event_count = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&event_count);
        tokio::spawn(async move {
            while events.recv().await.is_some() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        let (choice, technology) = match mode {
            Mode::Mixer => (TechnologyChoice::ForceMixer, Technology::Mixer),
            _ => (TechnologyChoice::Auto, Technology::Relay),
        };
        let mut targets = Vec::with_capacity(gens.len());
        let mut bridges = Vec::with_capacity(shape.rooms);
        for room in gens.chunks(shape.per_room) {
            let bridge = driver.create_bridge(choice).expect("create bridge");
            for &generator in room {
                let mut endpoint =
                    RtpEndpoint::bind(lo0(), RtcpPort::Muxed, EndpointConfig::default())
                        .await
                        .expect("bind leg");
                endpoint.set_remote(generator, generator);
                targets.push(endpoint.local_addr().expect("local addr"));
                driver
                    .add_member(bridge, SessionId::new(), endpoint.into_leg())
                    .map_err(|(e, _)| e)
                    .expect("add member");
            }
            bridges.push(bridge);
        }
        for &bridge in &bridges {
            let stats = driver.stats(bridge).expect("bridge stats");
            assert_eq!(stats.technology, technology, "{stats:?}");
        }
        addrs.send(targets).expect("hand the leg addresses over");
        let _ = signals.start.await;
        let t0 = Mark::now(driver.driver_stats().sent);
        let _ = signals.stop.await;
        let t1 = Mark::now(driver.driver_stats().sent);
        let _ = signals.exit.await;
        let ds = driver.driver_stats();
        let (mut forwarded, mut ticks, mut dropped) = (0, 0, 0);
        for &bridge in &bridges {
            if let Some(s) = driver.stats(bridge) {
                forwarded += s.forwarded;
                ticks += s.mixed_ticks;
                dropped += s.dropped;
            }
        }
        let notes = format!(
            "driver: sent {} send_dropped {} no_remote {} send_errors {} foreign {} \
             events {} (dropped {}); bridges: forwarded {forwarded} mixed_ticks {ticks} \
             dropped {dropped}",
            ds.sent,
            ds.send_dropped,
            ds.no_remote,
            ds.send_errors,
            ds.foreign,
            event_count.load(Ordering::Relaxed),
            ds.events_dropped,
        );
        drop(driver.shutdown().await);
        Measured {
            windows: vec![Window::between(t0, t1)],
            sent_total: ds.sent,
            notes,
        }
    })
}

/// One direction through a forwarder: receive on `from`, send from `to` to `destination`.
struct Direction {
    from: Arc<StdUdpSocket>,
    to: Arc<StdUdpSocket>,
    destination: SocketAddr,
}

/// The `fwd-std` floor: blocking syscalls, no runtime. Returns the window and the total.
fn std_forwarder_thread(d: &Direction) -> (Window, u64) {
    let mut buf = [0u8; MAX_PACKET];
    let mut forwarded = 0u64;
    let mut start = None;
    let mut stop = None;
    loop {
        let (len, _) = d.from.recv_from(&mut buf).expect("recv_from");
        match (len, buf[0]) {
            (0, _) => break,
            (1, MARK_START) => start = Some(Mark::now(forwarded)),
            (1, MARK_STOP) => stop = Some(Mark::now(forwarded)),
            _ => {
                d.to.send_to(&buf[..len], d.destination).expect("send_to");
                forwarded += 1;
            }
        }
    }
    let window = match (start, stop) {
        (Some(a), Some(b)) => Window::between(a, b),
        _ => Window::default(),
    };
    (window, forwarded)
}

/// The `fwd-tokio` mode: every direction a task on one current-thread runtime.
fn tokio_forwarder_thread(dirs: Vec<Direction>, signals: TokioSignals) -> Measured {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("forwarder runtime");
    runtime.block_on(async move {
        // Register every socket with this runtime once; both directions of a call share them.
        let mut registered: Vec<(SocketAddr, Arc<UdpSocket>)> = Vec::new();
        let mut tokio_socket = |std: &Arc<StdUdpSocket>| -> Arc<UdpSocket> {
            let addr = std.local_addr().expect("local addr");
            if let Some((_, s)) = registered.iter().find(|(a, _)| *a == addr) {
                return Arc::clone(s);
            }
            let dup = std.try_clone().expect("dup socket");
            dup.set_nonblocking(true).expect("nonblocking");
            let s = Arc::new(UdpSocket::from_std(dup).expect("register socket"));
            registered.push((addr, Arc::clone(&s)));
            s
        };
        let count = Arc::new(AtomicU64::new(0));
        for d in &dirs {
            tokio::spawn(tokio_forward(
                tokio_socket(&d.from),
                tokio_socket(&d.to),
                d.destination,
                Arc::clone(&count),
            ));
        }
        drop(dirs); // the runtime's dups keep the sockets open
        let _ = signals.start.await;
        let t0 = Mark::now(count.load(Ordering::Relaxed));
        let _ = signals.stop.await;
        let t1 = Mark::now(count.load(Ordering::Relaxed));
        let _ = signals.exit.await;
        Measured {
            windows: vec![Window::between(t0, t1)],
            sent_total: count.load(Ordering::Relaxed),
            notes: String::new(),
        }
    })
}

async fn tokio_forward(
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    destination: SocketAddr,
    count: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = Box::new([0u8; MAX_PACKET]);
    loop {
        let (len, _) = from.recv_from(&mut buf[..]).await?;
        to.send_to(&buf[..len], destination).await?;
        count.fetch_add(1, Ordering::Relaxed);
    }
}

// ---- the generators ----

/// What the generators sent and received.
#[derive(Debug, Default)]
struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
    received_in_window: AtomicU64,
    rtcp: AtomicU64,
    bad: AtomicU64,
}

/// What the generator thread observed.
struct Observed {
    traffic: Arc<Traffic>,
    cpu_ns: u64,
    /// |inter-arrival − 20 ms| of packets received in the window, µs.
    gaps_us: Vec<u32>,
    /// How late the generators' 20 ms interval fired in the window, µs.
    late_us: Vec<u32>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// What every generator task shares: the counters, whether the window is open, and how many
/// samples to make room for.
#[derive(Clone)]
struct Tap {
    traffic: Arc<Traffic>,
    recording: Arc<AtomicBool>,
    capacity: usize,
}

/// Sends one PCMU packet every 20 ms from `socket` to `target`, starting at `first`; returns
/// how late each tick in the window fired.
async fn generate(
    socket: Arc<UdpSocket>,
    target: SocketAddr,
    ssrc: u32,
    first: tokio::time::Instant,
    tap: Tap,
    mut stop: watch::Receiver<bool>,
) -> Vec<u32> {
    let Tap {
        traffic,
        recording,
        capacity,
    } = tap;
    let mut sender = RtpSender::new(ssrc, 0, 0);
    let mut ticks = tokio::time::interval_at(first, PTIME);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut late = Vec::with_capacity(capacity);
    loop {
        let due = tokio::select! {
            biased;
            _ = stop.changed() => break,
            due = ticks.tick() => due,
        };
        if recording.load(Ordering::Relaxed) {
            late.push(micros(
                tokio::time::Instant::now().saturating_duration_since(due),
            ));
        }
        let packet = sender.audio(0, &G711_PAYLOAD, 160).expect("build RTP");
        if socket.send_to(packet, target).await.is_ok() {
            traffic.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    late
}

/// Counts what comes back to a generator socket (a 172-byte PCMU packet: relayed or mixed),
/// and times its arrivals in the window.
async fn absorb(socket: Arc<UdpSocket>, tap: Tap, mut stop: watch::Receiver<bool>) -> Vec<u32> {
    let Tap {
        traffic,
        recording,
        capacity,
    } = tap;
    let mut buf = [0u8; MAX_PACKET];
    let mut gaps = Vec::with_capacity(capacity);
    let mut last: Option<Instant> = None;
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let Ok((len, _)) = received else { break };
        let datagram = &buf[..len];
        if is_rtcp(datagram) {
            traffic.rtcp.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let ok = len == RTP_LEN
            && parse(datagram).is_ok_and(|(h, p)| h.payload_type == 0 && p.len() == 160);
        if !ok {
            traffic.bad.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        traffic.received.fetch_add(1, Ordering::Relaxed);
        if recording.load(Ordering::Relaxed) {
            traffic.received_in_window.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            if let Some(prev) = last {
                let gap = now.saturating_duration_since(prev);
                gaps.push(micros(gap.abs_diff(PTIME)));
            }
            last = Some(now);
        } else {
            last = None;
        }
    }
    gaps
}

/// Runs the generators for one measurement, driving `control`.
fn run_generators(
    sides: Vec<(StdUdpSocket, SocketAddr, u32)>,
    seconds: Duration,
    mut control: Control,
) -> Observed {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("generator runtime");
    let traffic = Arc::new(Traffic::default());
    let recording = Arc::new(AtomicBool::new(false));
    let capacity = (seconds.as_secs_f64() * 55.0) as usize + 16;
    let (cpu_ns, gaps_us, late_us) = runtime.block_on(async {
        let n = sides.len() as u32;
        let now = tokio::time::Instant::now();
        let (stop_send, stop_send_rx) = watch::channel(false);
        let (stop_recv, stop_recv_rx) = watch::channel(false);
        let tap = Tap {
            traffic: Arc::clone(&traffic),
            recording: Arc::clone(&recording),
            capacity,
        };
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for (i, (std, target, ssrc)) in sides.into_iter().enumerate() {
            std.set_nonblocking(true).expect("nonblocking");
            let socket = Arc::new(UdpSocket::from_std(std).expect("register socket"));
            // Spread the streams evenly over the 20 ms packet interval, as real calls are.
            let first = now + PTIME * (i as u32) / n;
            senders.push(tokio::spawn(generate(
                Arc::clone(&socket),
                target,
                ssrc,
                first,
                tap.clone(),
                stop_send_rx.clone(),
            )));
            receivers.push(tokio::spawn(absorb(
                socket,
                tap.clone(),
                stop_recv_rx.clone(),
            )));
        }
        tokio::time::sleep(WARM_UP).await;
        recording.store(true, Ordering::Relaxed);
        control.signal(MARK_START);
        let cpu0 = thread_schedstat().0;
        tokio::time::sleep(seconds).await;
        let _ = stop_send.send(true);
        recording.store(false, Ordering::Relaxed);
        control.signal(MARK_STOP);
        let cpu1 = thread_schedstat().0;
        let mut late = Vec::new();
        for s in senders {
            late.extend(s.await.expect("sender task"));
        }
        tokio::time::sleep(DRAIN).await;
        let _ = stop_recv.send(true);
        let mut gaps = Vec::new();
        for r in receivers {
            gaps.extend(r.await.expect("receiver task"));
        }
        control.signal(0);
        (cpu1 - cpu0, gaps, late)
    });
    Observed {
        traffic,
        cpu_ns,
        gaps_us,
        late_us,
    }
}

// ---- one measurement ----

/// One row of the table.
struct Row {
    part: Part,
    mode: Mode,
    /// What was run.
    shape: Shape,
    /// The conference the row belongs to: its own shape, or the one it is the forwarder
    /// floor for.
    scenario: Shape,
    round: usize,
    threads: usize,
    window: Window,
    sent: u64,
    received: u64,
    received_in_window: u64,
    rtcp: u64,
    bad: u64,
    sut_sent_total: u64,
    gap: Percentiles,
    late: Percentiles,
    generator_cpu_ns: u64,
    notes: String,
}

/// p50 / p99 / max of a sample, in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<u32>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        // Nearest rank.
        let rank = |p: f64| {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            f64::from(v[i]) / 1000.0
        };
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: f64::from(v[v.len() - 1]) / 1000.0,
        }
    }
}

impl Row {
    fn core_fraction(&self) -> f64 {
        let wall = self.window.wall.as_secs_f64();
        if wall == 0.0 {
            return f64::NAN;
        }
        self.window.cpu_ns as f64 / 1e9 / wall
    }

    /// Per call (relay) or per participant (conference), in percent of a core.
    fn percent_per_unit(&self) -> f64 {
        let units = match self.part {
            Part::Relay => self.shape.rooms,
            Part::Conf | Part::Scale => self.shape.participants(),
        };
        self.core_fraction() * 100.0 / units as f64
    }

    fn per_packet(&self, x: u64) -> f64 {
        x as f64 / self.window.packets.max(1) as f64
    }

    /// Packets each participant received per second in the window (50 when nothing is lost).
    fn rx_rate(&self) -> f64 {
        self.received_in_window as f64
            / self.shape.participants() as f64
            / self.window.wall.as_secs_f64().max(1e-9)
    }
}

/// The plain forwarder carrying as many streams as `scenario` has participants (one
/// direction each; an odd count rounds up to whole calls).
fn floor_of(scenario: Shape) -> Shape {
    Shape {
        rooms: scenario.participants().div_ceil(2),
        per_room: 2,
    }
}

fn measure(part: Part, mode: Mode, scenario: Shape, round: usize, seconds: Duration) -> Row {
    let shape = match (part, mode) {
        (Part::Conf | Part::Scale, Mode::FwdStd | Mode::FwdTokio) => floor_of(scenario),
        _ => scenario,
    };
    let mut sockets = Vec::new();
    let mut gens = Vec::new();
    for _ in 0..shape.participants() {
        let s = StdUdpSocket::bind(lo0()).expect("bind generator");
        gens.push(s.local_addr().expect("local addr"));
        sockets.push(s);
    }
    let (sut, control, targets) = start_sut(mode, shape, gens);
    let threads = match mode {
        Mode::FwdStd => shape.participants(),
        _ => 1,
    };
    let sides: Vec<(StdUdpSocket, SocketAddr, u32)> = sockets
        .into_iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (s, target))| (s, target, 0x1000 + i as u32))
        .collect();
    let generators = std::thread::Builder::new()
        .name("generators".into())
        .spawn(move || run_generators(sides, seconds, control))
        .expect("spawn generators");
    let observed = generators.join().expect("generator thread");
    let measured = sut.join().expect("measured thread");
    let t = &observed.traffic;
    Row {
        part,
        mode,
        shape,
        scenario,
        round,
        threads,
        window: Window::sum(&measured.windows),
        sent: t.sent.load(Ordering::Relaxed),
        received: t.received.load(Ordering::Relaxed),
        received_in_window: t.received_in_window.load(Ordering::Relaxed),
        rtcp: t.rtcp.load(Ordering::Relaxed),
        bad: t.bad.load(Ordering::Relaxed),
        sut_sent_total: measured.sent_total,
        gap: Percentiles::of(observed.gaps_us),
        late: Percentiles::of(observed.late_us),
        generator_cpu_ns: observed.cpu_ns,
        notes: measured.notes,
    }
}

fn print_header() {
    println!(
        "| part | mode | rooms×members | round | thr | wall s | CPU ms | % core | % core/unit | pkts out | ns/pkt | runs/pkt | allocs (SUT threads) | gen sent | gen rcvd | rx/part/s | rtcp | bad | gap−20ms p50/p99/max ms | gen late p99/max ms | gen CPU % |"
    );
    println!(
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
}

fn print_row(r: &Row) {
    let wall = r.window.wall.as_secs_f64();
    let shape = if r.shape == r.scenario {
        format!("{}×{}", r.shape.rooms, r.shape.per_room)
    } else {
        format!(
            "{}×{} (floor of {}×{})",
            r.shape.rooms, r.shape.per_room, r.scenario.rooms, r.scenario.per_room
        )
    };
    println!(
        "| {} | {} | {shape} | {} | {} | {:.2} | {:.1} | {:.3} % | {:.4} % | {} | {:.0} | {:.2} | {} | {} | {} | {:.1} | {} | {} | {:.2}/{:.2}/{:.2} | {:.2}/{:.2} | {:.2} % |",
        r.part.name(),
        r.mode.name(),
        r.round,
        r.threads,
        wall,
        r.window.cpu_ns as f64 / 1e6,
        r.core_fraction() * 100.0,
        r.percent_per_unit(),
        r.window.packets,
        r.per_packet(r.window.cpu_ns),
        r.per_packet(r.window.slices),
        r.window.allocs,
        r.sent,
        r.received,
        r.rx_rate(),
        r.rtcp,
        r.bad,
        r.gap.p50,
        r.gap.p99,
        r.gap.max,
        r.late.p99,
        r.late.max,
        r.generator_cpu_ns as f64 / 1e9 / wall.max(1e-9) * 100.0,
    );
    if !r.notes.is_empty() {
        eprintln!(
            "  [{} {} {}×{} round {}: SUT sent {} in all; {}]",
            r.part.name(),
            r.mode.name(),
            r.shape.rooms,
            r.shape.per_room,
            r.round,
            r.sut_sent_total,
            r.notes
        );
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_of<'a>(rows: impl Iterator<Item = &'a Row>, f: impl Fn(&Row) -> f64) -> f64 {
    let mut v: Vec<f64> = rows.map(f).collect();
    median(&mut v)
}

// ---- memory ----

/// The memory variants, each in a child process of its own: (name, what is set up).
const MEMORY_VARIANTS: [(&str, &str); 4] = [
    (
        "pairs-mux",
        "N bridged pairs: 2 legs (rtcp-mux, 1 socket each) + an Auto bridge",
    ),
    (
        "pairs-nomux",
        "N bridged pairs: 2 legs (RTP + RTCP sockets) + an Auto bridge",
    ),
    (
        "endpoints-mux",
        "2N bound RtpEndpoints (rtcp-mux), not bridged: what the calls hold anyway",
    ),
    (
        "mixer-mux",
        "2N conference members (rtcp-mux) in rooms of 4 (ForceMixer); per pair = 2 members",
    ),
];

#[derive(Debug, Clone, Copy, Default)]
struct MemSnap {
    rss_kb: i64,
    heap: i64,
    blocks: i64,
    sunreclaim_kb: i64,
    fds: i64,
}

fn status_kb(file: &str, key: &str) -> i64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

impl MemSnap {
    fn now() -> Self {
        Self {
            rss_kb: status_kb("/proc/self/status", "VmRSS:"),
            heap: LIVE_BYTES.load(Ordering::Relaxed) as i64,
            blocks: LIVE_BLOCKS.load(Ordering::Relaxed) as i64,
            sunreclaim_kb: status_kb("/proc/meminfo", "SUnreclaim:"),
            fds: std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64),
        }
    }
}

/// The child process: sets up one variant and prints a `memory-result` line.
fn memory_child(variant: &str, pairs: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Where the legs send (RTCP, mixer silence): a socket nobody reads.
        let sink = StdUdpSocket::bind(lo0()).expect("bind sink");
        let sink_addr = sink.local_addr().expect("sink addr");
        let mux = variant != "pairs-nomux";
        let legs = 2 * pairs;
        let mut endpoints: Vec<Option<RtpEndpoint>> = Vec::with_capacity(legs);
        let mut bridges = Vec::with_capacity(pairs);
        let driver = if variant == "endpoints-mux" {
            None
        } else {
            let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            Some(driver)
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = MemSnap::now();
        let (per_room, choice) = match variant {
            "mixer-mux" => (4, TechnologyChoice::ForceMixer),
            _ => (2, TechnologyChoice::Auto),
        };
        let mut bridge = None;
        for i in 0..legs {
            let mut endpoint =
                RtpEndpoint::bind(lo0(), RtcpPort::muxed_if(mux), EndpointConfig::default())
                    .await
                    .expect("bind leg");
            endpoint.set_remote(sink_addr, sink_addr);
            let Some(driver) = &driver else {
                endpoints.push(Some(endpoint));
                continue;
            };
            if i % per_room == 0 {
                let b = driver.create_bridge(choice).expect("create bridge");
                bridges.push(b);
                bridge = Some(b);
            }
            driver
                .add_member(
                    bridge.expect("a bridge"),
                    SessionId::new(),
                    endpoint.into_leg(),
                )
                .map_err(|(e, _)| e)
                .expect("add member");
        }
        // Let every reader task run once (its buffers are allocated on first poll) and the
        // mixers tick.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = MemSnap::now();
        let members = driver
            .as_ref()
            .map_or(0, |d| d.driver_stats().engine.members);
        println!(
            "memory-result variant={variant} pairs={pairs} legs={legs} members={members} \
             bridges={} rss_kb={},{} heap={},{} blocks={},{} sunreclaim_kb={},{} fds={},{}",
            bridges.len(),
            before.rss_kb,
            after.rss_kb,
            before.heap,
            after.heap,
            before.blocks,
            after.blocks,
            before.sunreclaim_kb,
            after.sunreclaim_kb,
            before.fds,
            after.fds,
        );
        if let Some(driver) = driver {
            drop(driver.shutdown().await);
        }
        drop(endpoints);
        drop(sink);
    });
}

/// A child's `memory-result` line, parsed.
struct MemRow {
    variant: String,
    pairs: usize,
    /// (before, after) per key.
    values: Vec<(String, i64, i64)>,
}

impl MemRow {
    fn parse(line: &str) -> Option<Self> {
        let mut variant = None;
        let mut pairs = None;
        let mut values = Vec::new();
        for field in line.split_whitespace().skip(1) {
            let (key, value) = field.split_once('=')?;
            match key {
                "variant" => variant = Some(value.to_owned()),
                "pairs" => pairs = value.parse().ok(),
                _ => {
                    if let Some((a, b)) = value.split_once(',') {
                        values.push((key.to_owned(), a.parse().ok()?, b.parse().ok()?));
                    }
                }
            }
        }
        Some(Self {
            variant: variant?,
            pairs: pairs?,
            values,
        })
    }

    /// (after − before) of `key`, in bytes (kB keys scaled), per pair.
    fn per_pair(&self, key: &str) -> f64 {
        let Some((k, a, b)) = self.values.iter().find(|(k, _, _)| k == key) else {
            return f64::NAN;
        };
        let scale = if k.ends_with("_kb") { 1024.0 } else { 1.0 };
        (b - a) as f64 * scale / self.pairs as f64
    }

    fn raw(&self, key: &str) -> (i64, i64) {
        self.values
            .iter()
            .find(|(k, _, _)| k == key)
            .map_or((-1, -1), |(_, a, b)| (*a, *b))
    }
}

fn run_memory(pairs: usize) -> Vec<MemRow> {
    let exe = std::env::current_exe().expect("current exe");
    let mut rows = Vec::new();
    for (variant, _) in MEMORY_VARIANTS {
        let out = Command::new(&exe)
            .args([
                "--memory-child",
                variant,
                "--memory-pairs",
                &pairs.to_string(),
            ])
            .output()
            .expect("run the memory child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            eprintln!(
                "memory child {variant} failed: {}\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        match stdout
            .lines()
            .find(|l| l.starts_with("memory-result"))
            .and_then(MemRow::parse)
        {
            Some(row) => {
                println!("{}", stdout.trim());
                rows.push(row);
            }
            None => eprintln!("memory child {variant}: no result line\n{stdout}"),
        }
    }
    rows
}

fn print_memory(rows: &[MemRow]) {
    println!();
    println!(
        "Memory per bridged pair (after − before setting up N pairs, no traffic, each variant a fresh process; target ≤ 64 KiB for pairs-*):"
    );
    println!(
        "| variant | N pairs | RSS per pair | live heap per pair (blocks) | SUnreclaim per pair (system-wide) | fds per pair | RSS before → after (kB) | vs 64 KiB |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        let rss = r.per_pair("rss_kb");
        let (a, b) = r.raw("rss_kb");
        let verdict = if r.variant.starts_with("pairs") {
            if rss <= MEMORY_TARGET {
                format!("met ({:.2}×)", rss / MEMORY_TARGET)
            } else {
                format!("NOT met ({:.2}×)", rss / MEMORY_TARGET)
            }
        } else {
            "—".to_owned()
        };
        println!(
            "| {} | {} | {:.0} B | {:.0} B ({:.1}) | {:.0} B | {:.1} | {a} → {b} | {verdict} |",
            r.variant,
            r.pairs,
            rss,
            r.per_pair("heap"),
            r.per_pair("blocks"),
            r.per_pair("sunreclaim_kb"),
            r.per_pair("fds"),
        );
    }
    for (variant, what) in MEMORY_VARIANTS {
        println!("  {variant}: {what}");
    }
}

// ---- summaries ----

fn print_relay_summary(rows: &[Row], calls: &[usize], modes: &[Mode]) {
    println!();
    println!(
        "Relay summary (median over rounds, % of a core per call; target: bridge ≤ {RELAY_TARGET_RATIO}× fwd-std):"
    );
    let mut header = "| calls |".to_owned();
    let mut rule = "| ---: |".to_owned();
    for m in modes {
        header += &format!(
            " {} %/call | {} ns/pkt | {} runs/pkt |",
            m.name(),
            m.name(),
            m.name()
        );
        rule += " ---: | ---: | ---: |";
    }
    header += " bridge / fwd-std (median; per round) | verdict | lost (all rounds) | bridge allocs in window (max) |";
    rule += " ---: | --- | ---: | ---: |";
    println!("{header}");
    println!("{rule}");
    for &c in calls {
        let of = |m: Mode| {
            rows.iter()
                .filter(move |r| r.part == Part::Relay && r.mode == m && r.shape.rooms == c)
        };
        let mut line = format!("| {c} |");
        for &m in modes {
            line += &format!(
                " {:.4} % | {:.0} | {:.2} |",
                median_of(of(m), Row::percent_per_unit),
                median_of(of(m), |r| r.per_packet(r.window.cpu_ns)),
                median_of(of(m), |r| r.per_packet(r.window.slices)),
            );
        }
        let bridge = median_of(of(Mode::Bridge), Row::percent_per_unit);
        let floor = median_of(of(Mode::FwdStd), Row::percent_per_unit);
        let ratio = bridge / floor;
        let per_round: Vec<String> = of(Mode::Bridge)
            .filter_map(|b| {
                of(Mode::FwdStd)
                    .find(|f| f.round == b.round)
                    .map(|f| format!("{:.2}", b.percent_per_unit() / f.percent_per_unit()))
            })
            .collect();
        let verdict = if ratio.is_nan() {
            "—"
        } else if ratio <= RELAY_TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        };
        let lost: i128 = rows
            .iter()
            .filter(|r| r.part == Part::Relay && r.shape.rooms == c)
            .map(|r| i128::from(r.sent) - i128::from(r.received))
            .sum();
        let allocs = of(Mode::Bridge).map(|r| r.window.allocs).max().unwrap_or(0);
        line += &format!(
            " {ratio:.2}× ({}) | {verdict} | {lost} | {allocs} |",
            per_round.join(", ")
        );
        println!("{line}");
    }
}

fn print_conf_summary(rows: &[Row], shapes: &[Shape]) {
    println!();
    println!(
        "Conference summary (median over rounds; a participant = 50 packets/s in + 50 out; the floor is fwd-std carrying as many streams, one direction each, in the same round):"
    );
    println!(
        "| rooms×members | participants | driver CPU % core | participants per core | % core per participant | fwd-std % core per stream | mixer / floor | rx/part/s | gap−20ms p99 mixer (max over rounds) ms | gap−20ms p99 fwd-std ms | gen late p99 ms | allocs in window (max of rounds) |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &s in shapes {
        let of = move |m: Mode| {
            rows.iter()
                .filter(move |r| r.part == Part::Conf && r.scenario == s && r.mode == m)
        };
        let core = median_of(of(Mode::Mixer), Row::core_fraction);
        let per = median_of(of(Mode::Mixer), Row::percent_per_unit);
        let floor = median_of(of(Mode::FwdStd), Row::percent_per_unit);
        let worst_gap = of(Mode::Mixer).map(|r| r.gap.p99).fold(f64::NAN, f64::max);
        println!(
            "| {}×{} | {} | {:.2} % | {:.0} | {per:.4} % | {floor:.4} % | {:.2}× | {:.1} | {:.2} ({:.2}) | {:.2} | {:.2} | {} |",
            s.rooms,
            s.per_room,
            s.participants(),
            core * 100.0,
            s.participants() as f64 / core,
            per / floor,
            median_of(of(Mode::Mixer), Row::rx_rate),
            median_of(of(Mode::Mixer), |r| r.gap.p99),
            worst_gap,
            median_of(of(Mode::FwdStd), |r| r.gap.p99),
            median_of(of(Mode::Mixer), |r| r.late.p99),
            of(Mode::Mixer).map(|r| r.window.allocs).max().unwrap_or(0),
        );
    }
}

fn print_scale_summary(rows: &[Row], sizes: &[usize]) {
    println!();
    println!(
        "Cost per member in one mixing room (median over rounds; target: flat, every size within ±{:.0} % of the median of the sizes; the floor is fwd-std carrying as many streams, rounded up to whole calls, in the same round):",
        FLAT_TOLERANCE * 100.0
    );
    println!(
        "| members | driver CPU % core | % core per member | vs median of sizes | runs/pkt | fwd-std streams | fwd-std % core per stream | mixer / floor | ratio vs median | gap−20ms p99 ms | gen late p99 ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let of = |m: usize, mode: Mode| {
        rows.iter().filter(move |r| {
            r.part == Part::Scale
                && r.scenario.per_room == m
                && r.scenario.rooms == 1
                && r.mode == mode
        })
    };
    let per_member: Vec<(usize, f64, f64)> = sizes
        .iter()
        .map(|&m| {
            let mixer = median_of(of(m, Mode::Mixer), Row::percent_per_unit);
            let floor = median_of(of(m, Mode::FwdStd), Row::percent_per_unit);
            (m, mixer, mixer / floor)
        })
        .collect();
    let mut values: Vec<f64> = per_member.iter().map(|(_, v, _)| *v).collect();
    let mid = median(&mut values);
    let mut ratios: Vec<f64> = per_member.iter().map(|(_, _, r)| *r).collect();
    let mid_ratio = median(&mut ratios);
    let (mut flat, mut flat_ratio) = (true, true);
    for &(m, v, ratio) in &per_member {
        let dev = v / mid - 1.0;
        let dev_ratio = ratio / mid_ratio - 1.0;
        flat &= dev.abs() <= FLAT_TOLERANCE;
        flat_ratio &= dev_ratio.abs() <= FLAT_TOLERANCE;
        println!(
            "| {m} | {:.3} % | {v:.4} % | {:+.1} % | {:.2} | {} | {:.4} % | {ratio:.2}× | {:+.1} % | {:.2} | {:.2} |",
            median_of(of(m, Mode::Mixer), Row::core_fraction) * 100.0,
            dev * 100.0,
            median_of(of(m, Mode::Mixer), |r| r.per_packet(r.window.slices)),
            floor_of(Shape {
                rooms: 1,
                per_room: m
            })
            .participants(),
            median_of(of(m, Mode::FwdStd), Row::percent_per_unit),
            dev_ratio * 100.0,
            median_of(of(m, Mode::Mixer), |r| r.gap.p99),
            median_of(of(m, Mode::Mixer), |r| r.late.p99),
        );
    }
    if let (Some(first), Some(last)) = (per_member.first(), per_member.last()) {
        println!(
            "per member {} → {} members: {:.2}× (floor-relative {:.2}×); flat within ±{:.0} %: {} (floor-relative: {})",
            first.0,
            last.0,
            last.1 / first.1,
            last.2 / first.2,
            FLAT_TOLERANCE * 100.0,
            if flat { "met" } else { "NOT met" },
            if flat_ratio { "flat" } else { "not flat" },
        );
    }
}

// ---- main ----

fn list<T>(s: &str, f: impl Fn(&str) -> T) -> Vec<T> {
    s.split(',').filter(|x| !x.is_empty()).map(f).collect()
}

fn main() {
    let mut seconds = 3.0f64;
    let mut rounds = 2usize;
    let mut parts = vec![
        "memory".to_owned(),
        "relay".into(),
        "conf".into(),
        "scale".into(),
    ];
    let mut calls = vec![1usize, 10, 50];
    let mut modes = vec![Mode::Bridge, Mode::FwdStd];
    let mut rooms = vec![
        Shape {
            rooms: 25,
            per_room: 4,
        },
        Shape {
            rooms: 100,
            per_room: 4,
        },
    ];
    let mut room_sizes = vec![3usize, 5, 10, 20, 50];
    let mut memory_pairs = 1000usize;
    let mut memory_child_variant = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--rounds" => rounds = value().parse().expect("--rounds R"),
            "--parts" => parts = list(&value(), str::to_owned),
            "--calls" => calls = list(&value(), |c| c.parse().expect("--calls C[,C..]")),
            "--modes" => modes = list(&value(), Mode::parse),
            "--rooms" => rooms = list(&value(), Shape::parse),
            "--room-sizes" => {
                room_sizes = list(&value(), |c| c.parse().expect("--room-sizes M[,M..]"));
            }
            "--memory-pairs" => memory_pairs = value().parse().expect("--memory-pairs N"),
            "--memory-child" => memory_child_variant = Some(value()),
            "--help" | "-h" => {
                println!(
                    "bridge_cpu [--seconds 3] [--rounds 2] [--parts memory,relay,conf,scale] \
                     [--calls 1,10,50] [--modes bridge,fwd-std,fwd-tokio] [--rooms 25x4,100x4] \
                     [--room-sizes 3,5,10,20,50] [--memory-pairs 1000]"
                );
                return;
            }
            other => panic!("unknown argument {other:?}"),
        }
    }
    if let Some(variant) = memory_child_variant {
        memory_child(&variant, memory_pairs);
        return;
    }
    let has = |p: &str| parts.iter().any(|x| x == p);
    let window = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    println!(
        "bridge_cpu: {seconds} s windows (+{} s warm-up), {rounds} round(s), parts {parts:?}; \
         PCMU 172-byte packets every 20 ms per participant, 127.0.0.1; {} CPUs",
        WARM_UP.as_secs(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );

    let memory = if has("memory") {
        run_memory(memory_pairs)
    } else {
        Vec::new()
    };

    let mut rows = Vec::new();
    print_header();
    for round in 1..=rounds {
        // Alternate the order of the modes from round to round.
        let order: Vec<Mode> = if round % 2 == 1 {
            modes.clone()
        } else {
            modes.iter().rev().copied().collect()
        };
        if has("relay") {
            for &c in &calls {
                for &mode in &order {
                    let shape = Shape {
                        rooms: c,
                        per_room: 2,
                    };
                    let row = measure(Part::Relay, mode, shape, round, window);
                    print_row(&row);
                    rows.push(row);
                }
            }
        }
        // Each conference next to the plain forwarder carrying as many streams.
        let pair = if round % 2 == 1 {
            [Mode::Mixer, Mode::FwdStd]
        } else {
            [Mode::FwdStd, Mode::Mixer]
        };
        if has("conf") {
            for &shape in &rooms {
                for mode in pair {
                    let row = measure(Part::Conf, mode, shape, round, window);
                    print_row(&row);
                    rows.push(row);
                }
            }
        }
        if has("scale") {
            let sizes: Vec<usize> = if round % 2 == 1 {
                room_sizes.clone()
            } else {
                room_sizes.iter().rev().copied().collect()
            };
            for m in sizes {
                let shape = Shape {
                    rooms: 1,
                    per_room: m,
                };
                for mode in pair {
                    let row = measure(Part::Scale, mode, shape, round, window);
                    print_row(&row);
                    rows.push(row);
                }
            }
        }
    }

    if has("relay") {
        print_relay_summary(&rows, &calls, &modes);
    }
    if has("conf") {
        print_conf_summary(&rows, &rooms);
    }
    if has("scale") {
        print_scale_summary(&rows, &room_sizes);
    }
    if !memory.is_empty() {
        print_memory(&memory);
    }
    println!();
    println!("total wall {:.0} s", started.elapsed().as_secs_f64());
}
