//! Memory per call: a UAS [`SessionManager`] that answers every call and holds it, printing
//! its resident memory (VmRSS from `/proc/self/status`) and its live heap (a counting global
//! allocator) as calls pile up, and the growth per established call once `--calls` calls are
//! up. Drive it with SIPp's built-in `uac` scenario and a long call duration; `hold_calls.sh`
//! next to this file does that, and measures SIPp's own `uas` the same way for comparison.
//!
//! ```text
//! hold_calls [--rtp] [--port 5070] [--calls 20000] [--every 5] [--reserve-calls N]
//! ```
//!
//! - `--rtp`: every call gets an RTP endpoint (two UDP sockets from ports 20000–60000, i.e.
//!   20,000 pairs, and a media task); by default calls are signaling only.
//! - `--calls N`: when N calls are established, print the `result` lines and exit.
//! - `--every S`: print a `progress` line every S seconds; any line on stdin prints one now.
//! - `--reserve-calls N`: size the manager's maps for N calls up front
//!   (`SessionManagerBuilder::reserve_calls`); none by default. The reserved room is in the
//!   baseline only as far as the allocator touched it: pages are counted as calls first write
//!   to them, so a reserve much larger than `--calls` raises the growth per call.
//!
//! Output lines are `key=value` pairs, one measurement per line, so a script can grep them:
//! `baseline`, `progress`, `checkpoint` (at each quarter of N), `settled` and `result`. The
//! growth per call is (RSS at N − RSS at 0) / N, measured 35 s after the N-th call was
//! established (see `settled` in `main`); it includes one-time costs (first-use tables, buffers
//! that grew once), so the marginal cost is the slope between two runs with different N.

#![allow(unsafe_code)] // the counting allocator: a forwarding `GlobalAlloc`, nothing else
#![allow(clippy::print_stdout, clippy::print_stderr)] // a measuring tool: it prints

use session_core::{
    CallHandler, CallSession, CallStats, Limits, MediaMode, SessionManager, TerminationReason,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes and blocks live now.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
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
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Settings from the command line.
struct Args {
    rtp: bool,
    port: u16,
    calls: usize,
    every: Duration,
    reserve_calls: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rtp: false,
        port: 5070,
        calls: 20_000,
        every: Duration::from_secs(5),
        reserve_calls: 0,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = |name: &str| {
            words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match word.as_str() {
            "--rtp" => args.rtp = true,
            "--port" => {
                args.port = u16::try_from(value("--port")?).map_err(|e| e.to_string())?;
            }
            "--calls" => {
                args.calls = usize::try_from(value("--calls")?).map_err(|e| e.to_string())?;
            }
            "--every" => args.every = Duration::from_secs(value("--every")?.max(1)),
            "--reserve-calls" => {
                args.reserve_calls =
                    usize::try_from(value("--reserve-calls")?).map_err(|e| e.to_string())?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}\n\
                     usage: hold_calls [--rtp] [--port 5070] [--calls 20000] [--every 5] \
                     [--reserve-calls N]"
                ));
            }
        }
    }
    Ok(args)
}

/// Counts established and ended calls.
#[derive(Default)]
struct Counter {
    established: AtomicUsize,
    ended: AtomicUsize,
}

/// The handler: accepts every call (the default decision) and counts.
struct CountingHandler(Arc<Counter>);

impl CallHandler for CountingHandler {
    fn on_call_established(&self, _call: &CallSession) {
        self.0.established.fetch_add(1, Ordering::Relaxed);
    }
    fn on_call_ended(&self, _call: &CallSession, _reason: TerminationReason, _stats: &CallStats) {
        self.0.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// A field of `/proc/self/status` in KiB (e.g. `VmRSS`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One measurement.
#[derive(Clone, Copy)]
struct Sample {
    established: usize,
    rss_kib: u64,
    heap_bytes: usize,
    heap_blocks: usize,
}

impl Sample {
    fn now(established: usize) -> Self {
        Self {
            established,
            rss_kib: status_kib("VmRSS").unwrap_or(0),
            heap_bytes: LIVE_BYTES.load(Ordering::Relaxed),
            heap_blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
        }
    }

    fn print(&self, label: &str, manager: &SessionManager, started: Instant) {
        println!(
            "{label} t={:.1}s established={} active={} ports_in_use={} rss_kib={} \
             heap_bytes={} heap_blocks={} threads={}",
            started.elapsed().as_secs_f64(),
            self.established,
            manager.active_calls(),
            manager.ports().in_use(),
            self.rss_kib,
            self.heap_bytes,
            self.heap_blocks,
            status_kib("Threads").unwrap_or(0),
        );
    }

    /// Growth per call from `base` to `self`: (RSS bytes, heap bytes, heap blocks).
    fn per_call_since(&self, base: &Sample) -> (f64, f64, f64) {
        let calls = self.established.saturating_sub(base.established).max(1) as f64;
        (
            (self.rss_kib as f64 - base.rss_kib as f64) * 1024.0 / calls,
            (self.heap_bytes as f64 - base.heap_bytes as f64) / calls,
            (self.heap_blocks as f64 - base.heap_blocks as f64) / calls,
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let need_files = if args.rtp { 2 * args.calls + 200 } else { 200 };
    let files = open_files_limit();
    println!(
        "config mode={} calls={} port={} reserve_calls={} open_files_limit={files:?} \
         open_files_needed={need_files}",
        if args.rtp { "rtp" } else { "signaling" },
        args.calls,
        args.port,
        args.reserve_calls,
    );
    if files.is_some_and(|limit| limit < need_files as u64) {
        eprintln!(
            "warning: the open-files limit is below what {} RTP calls need; \
             raise it first (ulimit -n 65536) or ask for fewer calls",
            args.calls
        );
    }

    let counter = Arc::new(Counter::default());
    let mode = if args.rtp {
        MediaMode::Rtp { echo: false }
    } else {
        MediaMode::SignalingOnly
    };
    let manager = match SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
        .transports(session_core::Transports::Udp)
        .socket_buffer(8 << 20)
        .limits(Limits::default().max_sessions(args.calls + 1_000))
        .media_ports(20_000..=60_000)
        .media_mode(mode)
        .reserve_calls(args.reserve_calls)
        .handler(CountingHandler(counter.clone()))
        .start()
        .await
    {
        Ok(manager) => manager,
        Err(error) => {
            eprintln!("cannot start the manager: {error}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let baseline = Sample::now(0);
    baseline.print("baseline", &manager, started);
    println!("listening sip={}", manager.local_addr());

    let mut ticker = tokio::time::interval(args.every);
    // Any line on stdin asks for a measurement now (a thread: stdin reads block).
    let (asked, mut asks) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lines().map_while(Result::ok) {
            if asked.send(()).is_err() {
                break;
            }
        }
    });
    let mut stdin_open = true;
    let mut next_quarter = 1;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            ask = asks.recv(), if stdin_open => {
                if ask.is_none() {
                    stdin_open = false;
                    continue;
                }
            }
        }
        let established = counter
            .established
            .load(Ordering::Relaxed)
            .saturating_sub(counter.ended.load(Ordering::Relaxed));
        let sample = Sample::now(established);
        sample.print("progress", &manager, started);
        while next_quarter <= 4 && established >= args.calls * next_quarter / 4 {
            sample.print("checkpoint", &manager, started);
            next_quarter += 1;
        }
        if next_quarter > 4 {
            break;
        }
    }

    // A deliberate pause, not a wait for an event: the INVITE server transaction of each call
    // lingers for 64·T1 = 32 s after its 2xx (RFC 6026 "Accepted"), which is not part of a
    // held call's steady cost. Measure again once the last ones are gone.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let established = counter
        .established
        .load(Ordering::Relaxed)
        .saturating_sub(counter.ended.load(Ordering::Relaxed));
    let last = Sample::now(established);
    last.print("settled", &manager, started);
    let (rss, heap, blocks) = last.per_call_since(&baseline);
    println!(
        "result calls={} rss_per_call_bytes={rss:.0} heap_per_call_bytes={heap:.0} \
         heap_blocks_per_call={blocks:.1}",
        last.established
    );
    std::process::exit(0);
}
