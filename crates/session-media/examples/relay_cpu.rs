//! CPU cost of relaying G.711 calls through `RelayLeg` on loopback sockets, measured on the
//! relay's thread only, side by side with plain UDP echo loops as the floor.
//!
//! ```text
//! cargo run --release -p session-media --example relay_cpu -- \
//!     [--seconds 20] [--calls 1,10] [--rounds 1] [--modes relay,echo,echo-rd,echo-std]
//! ```
//!
//! Per call there are two traffic generators (side A and side B), each sending a 172-byte
//! G.711 RTP packet every 20 ms to its relay socket and counting what comes back, so the
//! relay forwards 100 packets/s per call. The generators run on their own OS thread and
//! current-thread tokio runtime; the system under test runs on other thread(s), whose CPU
//! time is read from `/proc/thread-self/schedstat` (first field: ns on CPU) from inside the
//! thread at the start and the end of the measurement window (a warm-up second excluded).
//!
//! Modes:
//! - `relay`: per call two `RelayLeg`s (A→B, B→A) spawned on one current-thread tokio runtime
//!   (IO driver only) in a dedicated OS thread.
//! - `echo`: the same runtime and thread, each leg replaced by a task that `recv_from`s and
//!   `send_to`s the bytes unchanged (no RTP parsing, no counters beyond one atomic).
//! - `echo-rd`: as `echo`, but the sockets are registered with the runtime for readable
//!   interest only (`AsyncFd`) and sends go straight to the non-blocking socket: no write-space
//!   wakeup per sent packet (see `readable_echo`).
//! - `echo-std`: no tokio at all: one OS thread per direction blocking in `recv_from` and
//!   calling `send_to`; the CPU of all those threads is summed. This is the syscall floor.
//!
//! Modes and call counts are interleaved within a round so that machine noise hits them alike.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use session_media::relay::{RelayCounters, RelayLeg};
use session_media::rtp::{MAX_PACKET, RtpSender, parse};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const PTIME: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_secs(1);
const DRAIN: Duration = Duration::from_millis(300);
const G711_PAYLOAD: [u8; 160] = [0xFF; 160];
const RTP_LEN: usize = 172;

/// Control datagrams for the `echo-std` threads (RTP packets are 172 bytes, so a 1-byte or
/// empty datagram cannot be mistaken for one).
const MARK_START: u8 = 0xA1;
const MARK_STOP: u8 = 0xA2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Relay,
    Echo,
    EchoRead,
    EchoStd,
}

impl Mode {
    fn parse(s: &str) -> Self {
        match s {
            "relay" => Self::Relay,
            "echo" => Self::Echo,
            "echo-rd" => Self::EchoRead,
            "echo-std" => Self::EchoStd,
            other => panic!("unknown mode {other:?} (relay, echo, echo-rd, echo-std)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Echo => "echo",
            Self::EchoRead => "echo-rd",
            Self::EchoStd => "echo-std",
        }
    }
}

/// The calling thread's (ns on a CPU, times it was scheduled onto a CPU), from schedstat:
/// user + system time (softirq work done in the thread's context included, since this kernel
/// has no `CONFIG_IRQ_TIME_ACCOUNTING`), and the number of run slices, i.e. about one per
/// wakeup for a thread that sleeps between packets.
fn thread_schedstat() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux with CONFIG_SCHED_INFO)");
    let mut fields = s.split_whitespace().map(|f| f.parse::<u64>().ok());
    let on_cpu = fields.next().flatten().expect("schedstat: ns on CPU");
    let slices = fields.nth(1).flatten().expect("schedstat: run slices");
    (on_cpu, slices)
}

/// Nanoseconds the calling thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    thread_schedstat().0
}

/// A snapshot taken inside a measured thread.
#[derive(Debug, Clone, Copy)]
struct Mark {
    cpu_ns: u64,
    slices: u64,
    at: Instant,
    packets: u64,
}

impl Mark {
    fn now(packets: u64) -> Self {
        let (cpu_ns, slices) = thread_schedstat();
        Self {
            cpu_ns,
            slices,
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
    wall: Duration,
    packets: u64,
}

impl Window {
    fn between(start: Mark, stop: Mark) -> Self {
        Self {
            cpu_ns: stop.cpu_ns.saturating_sub(start.cpu_ns),
            slices: stop.slices.saturating_sub(start.slices),
            wall: stop.at.saturating_duration_since(start.at),
            packets: stop.packets.saturating_sub(start.packets),
        }
    }
}

/// The four sockets of one call: the generators' ends and the relay's ends (`relay_a` faces
/// side A, `relay_b` faces side B).
struct Call {
    side_a: StdUdpSocket,
    side_b: StdUdpSocket,
    relay_a: StdUdpSocket,
    relay_b: StdUdpSocket,
}

impl Call {
    fn bind() -> Self {
        let bind = || StdUdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        Self {
            side_a: bind(),
            side_b: bind(),
            relay_a: bind(),
            relay_b: bind(),
        }
    }
}

/// One direction through the relay: receive on `from`, send from `to` to `destination`.
struct Direction {
    from: Arc<StdUdpSocket>,
    to: Arc<StdUdpSocket>,
    destination: SocketAddr,
}

fn directions(
    relay_ends: Vec<(StdUdpSocket, StdUdpSocket, SocketAddr, SocketAddr)>,
) -> Vec<Direction> {
    let mut out = Vec::new();
    for (relay_a, relay_b, side_a, side_b) in relay_ends {
        let (relay_a, relay_b) = (Arc::new(relay_a), Arc::new(relay_b));
        out.push(Direction {
            from: Arc::clone(&relay_a),
            to: Arc::clone(&relay_b),
            destination: side_b,
        });
        out.push(Direction {
            from: relay_b,
            to: relay_a,
            destination: side_a,
        });
    }
    out
}

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

/// Result of the measured side: per measured thread, the window; plus the packets forwarded
/// over the whole run (warm-up and drain included) for the loss check.
struct Measured {
    windows: Vec<Window>,
    forwarded_total: u64,
}

/// Starts the system under test; returns its thread handle and the control.
fn start_relay(mode: Mode, dirs: Vec<Direction>) -> (JoinHandle<Measured>, Control) {
    match mode {
        Mode::Relay | Mode::Echo | Mode::EchoRead => {
            let (start_tx, start_rx) = oneshot::channel();
            let (stop_tx, stop_rx) = oneshot::channel();
            let (exit_tx, exit_rx) = oneshot::channel();
            let handle = std::thread::Builder::new()
                .name(format!("{}-thread", mode.name()))
                .spawn(move || tokio_relay_thread(mode, dirs, start_rx, stop_rx, exit_rx))
                .expect("spawn relay thread");
            let control = Control::Tokio {
                start: start_tx,
                stop: stop_tx,
                exit: exit_tx,
            };
            (handle, control)
        }
        Mode::EchoStd => {
            let targets = dirs
                .iter()
                .map(|d| d.from.local_addr().expect("local addr"))
                .collect();
            let threads: Vec<JoinHandle<(Window, u64)>> = dirs
                .into_iter()
                .map(|d| {
                    std::thread::Builder::new()
                        .name("echo-std".into())
                        .spawn(move || std_echo_thread(&d))
                        .expect("spawn echo thread")
                })
                .collect();
            let handle = std::thread::spawn(move || {
                let mut windows = Vec::new();
                let mut forwarded_total = 0;
                for t in threads {
                    let (w, total) = t.join().expect("echo thread");
                    windows.push(w);
                    forwarded_total += total;
                }
                Measured {
                    windows,
                    forwarded_total,
                }
            });
            let socket = StdUdpSocket::bind("127.0.0.1:0").expect("bind control");
            (handle, Control::Std { socket, targets })
        }
    }
}

/// Total packets forwarded, whichever kind of counter the mode keeps.
enum Counting {
    Relay(Vec<Arc<RelayCounters>>),
    Echo(Vec<Arc<AtomicU64>>),
}

impl Counting {
    fn packets(&self) -> u64 {
        match self {
            Self::Relay(c) => c.iter().map(|c| c.packets()).sum(),
            Self::Echo(c) => c.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        }
    }

    fn dropped(&self) -> u64 {
        match self {
            Self::Relay(c) => c.iter().map(|c| c.dropped()).sum(),
            Self::Echo(_) => 0,
        }
    }
}

/// The `relay` and `echo` modes: every direction a task on one current-thread runtime.
fn tokio_relay_thread(
    mode: Mode,
    dirs: Vec<Direction>,
    start: oneshot::Receiver<()>,
    stop: oneshot::Receiver<()>,
    exit: oneshot::Receiver<()>,
) -> Measured {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("relay runtime");
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
        let counting = match mode {
            Mode::Relay => {
                let mut counters = Vec::new();
                for d in &dirs {
                    let leg =
                        RelayLeg::new(tokio_socket(&d.from), tokio_socket(&d.to), d.destination);
                    counters.push(leg.counters());
                    tokio::spawn(leg.run());
                }
                Counting::Relay(counters)
            }
            Mode::EchoRead => {
                let mut fds: Vec<(SocketAddr, Arc<AsyncFd<StdUdpSocket>>)> = Vec::new();
                let mut readable_fd = |std: &Arc<StdUdpSocket>| {
                    let addr = std.local_addr().expect("local addr");
                    if let Some((_, fd)) = fds.iter().find(|(a, _)| *a == addr) {
                        return Arc::clone(fd);
                    }
                    let dup = std.try_clone().expect("dup socket");
                    dup.set_nonblocking(true).expect("nonblocking");
                    // `with_interest` is deprecated because a `T: AsRawFd` that does not own
                    // its fd could be closed while registered; here the `AsyncFd` owns the
                    // socket, so the fd outlives the registration. The non-deprecated
                    // `register_with_interest` is `unsafe`, which this crate denies.
                    #[allow(deprecated)]
                    let fd = AsyncFd::with_interest(dup, Interest::READABLE).expect("register");
                    let fd = Arc::new(fd);
                    fds.push((addr, Arc::clone(&fd)));
                    fd
                };
                let mut counters = Vec::new();
                for d in &dirs {
                    let count = Arc::new(AtomicU64::new(0));
                    counters.push(Arc::clone(&count));
                    tokio::spawn(readable_echo(
                        readable_fd(&d.from),
                        readable_fd(&d.to),
                        d.destination,
                        count,
                    ));
                }
                Counting::Echo(counters)
            }
            _ => {
                let mut counters = Vec::new();
                for d in &dirs {
                    let count = Arc::new(AtomicU64::new(0));
                    counters.push(Arc::clone(&count));
                    tokio::spawn(tokio_echo(
                        tokio_socket(&d.from),
                        tokio_socket(&d.to),
                        d.destination,
                        count,
                    ));
                }
                Counting::Echo(counters)
            }
        };
        drop(dirs); // the runtime's dups keep the sockets open
        let _ = start.await;
        let t0 = Mark::now(counting.packets());
        let _ = stop.await;
        let t1 = Mark::now(counting.packets());
        let _ = exit.await;
        assert_eq!(counting.dropped(), 0, "relay dropped datagrams");
        Measured {
            windows: vec![Window::between(t0, t1)],
            forwarded_total: counting.packets(),
        }
    })
}

/// The `echo` floor: what `RelayLeg::forward_one` does minus the RTP check.
async fn tokio_echo(
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

/// The `echo-rd` experiment: as `echo`, but each socket is registered with the runtime for
/// readable interest only, and sends go straight to the (non-blocking) socket. Tokio's
/// `UdpSocket` registers readable + writable interest, edge-triggered, so the kernel's
/// write-space callback when a sent datagram is consumed wakes the relay thread once more per
/// packet for nothing; this mode shows what that wakeup costs.
async fn readable_echo(
    from: Arc<AsyncFd<StdUdpSocket>>,
    to: Arc<AsyncFd<StdUdpSocket>>,
    destination: SocketAddr,
    count: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = Box::new([0u8; MAX_PACKET]);
    loop {
        let mut guard = from.readable().await?;
        loop {
            match from.get_ref().recv_from(&mut buf[..]) {
                Ok((len, _)) => {
                    // A full send buffer (not seen on loopback at this rate) drops the packet;
                    // the generators' loss count would show it.
                    if to.get_ref().send_to(&buf[..len], destination).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The `echo-std` floor: blocking syscalls, no runtime. Returns the window and the total.
fn std_echo_thread(d: &Direction) -> (Window, u64) {
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

/// What the generators sent and received.
#[derive(Debug, Default)]
struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
    bad: AtomicU64,
}

/// Sends one G.711 packet every 20 ms from `socket` to `relay`, starting at `first`.
async fn generate(
    socket: Arc<UdpSocket>,
    relay: SocketAddr,
    ssrc: u32,
    first: tokio::time::Instant,
    traffic: Arc<Traffic>,
) {
    let mut sender = RtpSender::new(ssrc, 0, 0);
    let mut ticks = tokio::time::interval_at(first, PTIME);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        ticks.tick().await;
        let packet = sender.audio(0, &G711_PAYLOAD, 160).expect("build RTP");
        if socket.send_to(packet, relay).await.is_ok() {
            traffic.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts what comes back to a generator socket, checking it is the peer's packet unchanged.
async fn absorb(socket: Arc<UdpSocket>, peer_ssrc: u32, traffic: Arc<Traffic>) {
    let mut buf = [0u8; MAX_PACKET];
    while let Ok((len, _)) = socket.recv_from(&mut buf).await {
        let ok = len == RTP_LEN
            && parse(&buf[..len]).is_ok_and(|(h, p)| h.ssrc == peer_ssrc && p.len() == 160);
        let counter = if ok { &traffic.received } else { &traffic.bad };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the generators for one measurement, driving `control`; returns the traffic and the
/// generator thread's own CPU over the window.
fn run_generators(
    sides: Vec<(StdUdpSocket, SocketAddr, u32, u32)>,
    seconds: Duration,
    mut control: Control,
) -> (Arc<Traffic>, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("generator runtime");
    let traffic = Arc::new(Traffic::default());
    let cpu = runtime.block_on(async {
        let n = sides.len() as u32;
        let now = tokio::time::Instant::now();
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for (i, (std, relay, ssrc, peer_ssrc)) in sides.into_iter().enumerate() {
            std.set_nonblocking(true).expect("nonblocking");
            let socket = Arc::new(UdpSocket::from_std(std).expect("register socket"));
            // Spread the streams evenly over the 20 ms packet interval, as real calls are.
            let first = now + PTIME * (i as u32) / n;
            senders.push(tokio::spawn(generate(
                Arc::clone(&socket),
                relay,
                ssrc,
                first,
                Arc::clone(&traffic),
            )));
            receivers.push(tokio::spawn(absorb(
                socket,
                peer_ssrc,
                Arc::clone(&traffic),
            )));
        }
        tokio::time::sleep(WARM_UP).await;
        control.signal(MARK_START);
        let cpu0 = thread_cpu_ns();
        tokio::time::sleep(seconds).await;
        for s in &senders {
            s.abort();
        }
        control.signal(MARK_STOP);
        let cpu1 = thread_cpu_ns();
        tokio::time::sleep(DRAIN).await;
        for r in &receivers {
            r.abort();
        }
        control.signal(0);
        cpu1 - cpu0
    });
    (traffic, cpu)
}

/// One row of the table.
struct Row {
    mode: Mode,
    calls: usize,
    round: usize,
    window: Window,
    relay_threads: usize,
    sent: u64,
    received: u64,
    forwarded_total: u64,
    bad: u64,
    generator_cpu_ns: u64,
}

impl Row {
    /// CPU of the measured thread(s) as a fraction of one core, per call, in percent.
    fn percent_core_per_call(&self) -> f64 {
        let wall = self.window.wall.as_secs_f64();
        if wall == 0.0 {
            return f64::NAN;
        }
        self.window.cpu_ns as f64 / 1e9 / wall / self.calls as f64 * 100.0
    }

    fn ns_per_packet(&self) -> f64 {
        self.window.cpu_ns as f64 / self.window.packets.max(1) as f64
    }

    /// Times the measured thread(s) went onto a CPU per packet forwarded (≈ wakeups).
    fn runs_per_packet(&self) -> f64 {
        self.window.slices as f64 / self.window.packets.max(1) as f64
    }

    fn lost(&self) -> i128 {
        i128::from(self.sent) - i128::from(self.received)
    }
}

fn measure(mode: Mode, calls: usize, round: usize, seconds: Duration) -> Row {
    let mut relay_ends = Vec::new();
    let mut sides = Vec::new();
    for c in 0..calls {
        let call = Call::bind();
        let addr = |s: &StdUdpSocket| s.local_addr().expect("local addr");
        let (side_a, side_b) = (addr(&call.side_a), addr(&call.side_b));
        let (relay_a, relay_b) = (addr(&call.relay_a), addr(&call.relay_b));
        let (ssrc_a, ssrc_b) = (0x1000 + 2 * c as u32, 0x1001 + 2 * c as u32);
        sides.push((call.side_a, relay_a, ssrc_a, ssrc_b));
        sides.push((call.side_b, relay_b, ssrc_b, ssrc_a));
        relay_ends.push((call.relay_a, call.relay_b, side_a, side_b));
    }
    let dirs = directions(relay_ends);
    let relay_threads = if mode == Mode::EchoStd { dirs.len() } else { 1 };
    let (relay, control) = start_relay(mode, dirs);
    let generators = std::thread::Builder::new()
        .name("generators".into())
        .spawn(move || run_generators(sides, seconds, control))
        .expect("spawn generators");
    let (traffic, generator_cpu_ns) = generators.join().expect("generator thread");
    let measured = relay.join().expect("relay thread");
    // Sum the CPU of the measured threads; the wall is the mean of their windows (they share
    // the same start and stop signals).
    let n = measured.windows.len().max(1) as u32;
    let window = Window {
        cpu_ns: measured.windows.iter().map(|w| w.cpu_ns).sum(),
        slices: measured.windows.iter().map(|w| w.slices).sum(),
        wall: measured.windows.iter().map(|w| w.wall).sum::<Duration>() / n,
        packets: measured.windows.iter().map(|w| w.packets).sum(),
    };
    Row {
        mode,
        calls,
        round,
        window,
        relay_threads,
        sent: traffic.sent.load(Ordering::Relaxed),
        received: traffic.received.load(Ordering::Relaxed),
        forwarded_total: measured.forwarded_total,
        bad: traffic.bad.load(Ordering::Relaxed),
        generator_cpu_ns,
    }
}

fn print_header() {
    println!(
        "| mode | calls | round | thr | packets fwd (window) | wall s | CPU ns (relay side) | % core/call | ns/packet | runs/packet | sent | fwd total | received | lost | gen CPU % core |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
}

fn print_row(r: &Row) {
    let wall = r.window.wall.as_secs_f64();
    println!(
        "| {} | {} | {} | {} | {} | {:.2} | {} | {:.4} % | {:.0} | {:.2} | {} | {} | {} | {}{} | {:.3} % |",
        r.mode.name(),
        r.calls,
        r.round,
        r.relay_threads,
        r.window.packets,
        wall,
        r.window.cpu_ns,
        r.percent_core_per_call(),
        r.ns_per_packet(),
        r.runs_per_packet(),
        r.sent,
        r.forwarded_total,
        r.received,
        r.lost(),
        if r.bad > 0 {
            format!(" ({} bad)", r.bad)
        } else {
            String::new()
        },
        r.generator_cpu_ns as f64 / 1e9 / wall.max(1e-9) * 100.0,
    );
}

fn main() {
    let mut seconds = 20.0f64;
    let mut calls = vec![1usize];
    let mut rounds = 1usize;
    let mut modes = vec![Mode::Relay, Mode::Echo, Mode::EchoRead, Mode::EchoStd];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--calls" => {
                calls = value()
                    .split(',')
                    .map(|c| c.parse().expect("--calls C[,C..]"))
                    .collect();
            }
            "--rounds" => rounds = value().parse().expect("--rounds R"),
            "--modes" => modes = value().split(',').map(Mode::parse).collect(),
            "--help" | "-h" => {
                println!(
                    "relay_cpu [--seconds N] [--calls C[,C..]] [--rounds R] [--modes relay,echo,echo-rd,echo-std]"
                );
                return;
            }
            other => panic!("unknown argument {other:?}"),
        }
    }
    let window = Duration::from_secs_f64(seconds);
    println!(
        "relay_cpu: {seconds} s window (+{} s warm-up), calls {calls:?}, {rounds} round(s), \
         G.711 20 ms = 100 packets/s per call through the relay, 127.0.0.1",
        WARM_UP.as_secs()
    );
    let mut rows = Vec::new();
    print_header();
    for round in 1..=rounds {
        for &c in &calls {
            for &mode in &modes {
                let row = measure(mode, c, round, window);
                print_row(&row);
                rows.push(row);
            }
        }
    }
    println!();
    println!("Summary (median over rounds; target: relay ≤ 0.03 % of a core per call):");
    println!(
        "| mode | calls | % core/call (median) | ns/packet (median) | runs/packet (median) | vs 0.03 % | lost (all rounds) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &c in &calls {
        for &mode in &modes {
            let these: Vec<&Row> = rows
                .iter()
                .filter(|r| r.mode == mode && r.calls == c)
                .collect();
            let mut pct: Vec<f64> = these.iter().map(|r| r.percent_core_per_call()).collect();
            let mut ns: Vec<f64> = these.iter().map(|r| r.ns_per_packet()).collect();
            let mut runs: Vec<f64> = these.iter().map(|r| r.runs_per_packet()).collect();
            let lost: i128 = these.iter().map(|r| r.lost()).sum();
            let (p, n, w) = (median(&mut pct), median(&mut ns), median(&mut runs));
            println!(
                "| {} | {c} | {p:.4} % | {n:.0} | {w:.2} | {:.1}× | {lost} |",
                mode.name(),
                p / 0.03
            );
        }
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
