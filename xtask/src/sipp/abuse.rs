//! `cargo xtask sipp --abuse`: the TCP abuse cases of issue 16 against example 20 (release
//! build), each while well-behaved calls run alongside, with the server's RSS, CPU and open
//! descriptors, and a verdict against the targets.
//!
//! **Cases**, each against a fresh example 20 (`--mode auto`) on a free loopback port, each
//! abuse lasting `--abuse-seconds` (15 by default; the whole run takes about 2 minutes):
//! - *baseline*: no abuse, the well-behaved calls alone (what the other rows compare with);
//! - *pipelining*: 4 connections write OPTIONS back to back as fast as the server takes them,
//!   never waiting for an answer; a second thread per connection reads and counts the answers;
//! - *never-reading*: the same flood on 4 connections that never read: the server's send queue
//!   (`tcp_send_queue`) or write timeout must close them; each closed one is reopened;
//! - *slowloris*: 200 connections each send one byte of an INVITE per second: the message
//!   deadline (`tcp_message_timeout`, 10 s) must close them; each closed one is reopened;
//! - *fd-exhaustion*: example 20 runs with `ulimit -n` lowered to `--abuse-nofile` (128 by
//!   default) and the abuser opens that many connections plus 128 and holds them idle: the
//!   server runs out of descriptors (EMFILE) and must back off accepting, not spin;
//! - *endless-header*: 2 connections send a header line that never ends, as fast as they can;
//!   the decoder's size limit must close each (each is reopened at once, so this is also a
//!   connection-churn flood).
//!
//! All the abuse comes from 127.0.0.1, as the well-behaved clients do: the server caps
//! connections per source address at 256 (`tcp_max_connections_per_ip`), so the cases stay
//! under that cap (the standard library cannot choose a TCP source address, and the xtask has
//! no dependencies), and fd-exhaustion lowers the server's descriptor limit below it rather
//! than opening more than 256 connections from one address, which the cap alone would stop.
//!
//! **Well-behaved load** during every case: SIPp's built-in `uac` over UDP at 100 calls/s and
//! over TCP (`-t t1`, one connection, opened before the abuse starts) at 50 calls/s, both
//! `-d 0`, for as long as the abuse lasts; setup time is SIPp's `-trace_rtt` response time
//! (INVITE → 200, 1 ms clock), p99 nearest rank.
//!
//! **Figures** per case: the server's peak VmRSS and peak open descriptors (`/proc/PID`,
//! sampled every 100 ms during the abuse), its CPU (utime + stime) over the abuse as a share
//! of one core, and over the second right after the abuse stops; the good calls completed and
//! failed and their p99 setup; whether a new TCP connection from 127.0.0.1 gets an OPTIONS
//! answered within 3 s once the abuse is over (the server recovered).
//!
//! **Targets** (issue 16): peak RSS ≤ `--abuse-rss-mb` (256); every good call completes, p99
//! setup ≤ 50 ms over UDP and over TCP; CPU < 5 % of a core in the second after the abuse;
//! plus the recovery probe. The command exits 1 when any case misses one.
//!
//! Every process started is stopped on every path (guards); every loop is bounded in time and
//! in count.

use super::load::{
    Guard, clock_ticks, cpu_ticks, last_stat, load_average, percentile, response_times, status_kib,
    thousands, uac_command, wait_for_client,
};
use super::{Ctx, Example};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Good calls per second over UDP and over TCP during every case.
const UDP_RATE: u32 = 100;
const TCP_RATE: u32 = 50;
/// The good clients: transport, working directory, calls per second, SIPp's extra arguments.
const GOOD_CLIENTS: [(&str, &str, u32, &[&str]); 2] = [
    ("UDP", "udp", UDP_RATE, &[]),
    ("TCP", "tcp", TCP_RATE, &["-t", "t1"]),
];
/// The good clients start this long before the abuse, so that SIPp's TCP connection is up.
const LEAD: Duration = Duration::from_millis(500);
/// How long after the abuse the good clients may take to finish their last calls.
const CLIENT_GRACE: u64 = 10;
/// The targets: p99 setup, and CPU in the second after the abuse (% of one core).
const P99_LIMIT_MS: f64 = 50.0;
const IDLE_CPU_PERCENT: f64 = 5.0;
/// How long the recovery probe may take to connect and get its answer.
const PROBE_LIMIT: Duration = Duration::from_secs(3);
/// Connections of the flooding cases, of slowloris, of endless-header.
const FLOOD_CONNECTIONS: usize = 4;
const SLOW_CONNECTIONS: usize = 200;
const ENDLESS_CONNECTIONS: usize = 2;
/// fd-exhaustion opens the server's descriptor limit plus this many connections.
const FD_EXTRA: usize = 128;
/// The most connections one abuser opens again after the server closed one.
const MAX_RECONNECTS: u32 = 200_000;
/// How long one blocking socket call of an abuser may take before it looks at the clock.
const SOCKET_WAIT: Duration = Duration::from_millis(100);

/// The `--abuse` settings.
pub(super) struct AbuseOptions {
    /// Seconds of abuse per case.
    pub(super) seconds: u32,
    /// Run only the cases whose name contains one of these (all when empty).
    pub(super) cases: Vec<String>,
    /// fd-exhaustion's `ulimit -n` for example 20.
    pub(super) nofile: u32,
    /// The RSS target, MB.
    pub(super) rss_mb: u32,
}

impl Default for AbuseOptions {
    fn default() -> Self {
        Self {
            seconds: 15,
            cases: Vec::new(),
            nofile: 128,
            rss_mb: 256,
        }
    }
}

/// One abuse case: what it does, and the abuser, which runs until `target.until` and says
/// what it did.
struct Case {
    name: &'static str,
    what: &'static str,
    /// Whether example 20 runs with its descriptor limit lowered to `--abuse-nofile`.
    limit_fds: bool,
    attack: fn(&Target) -> String,
}

const CASES: &[Case] = &[
    Case {
        name: "baseline",
        what: "no abuse: the well-behaved calls alone",
        limit_fds: false,
        attack: idle,
    },
    Case {
        name: "pipelining",
        what: "4 connections write OPTIONS back to back, answers read by another thread",
        limit_fds: false,
        attack: pipelining,
    },
    Case {
        name: "never-reading",
        what: "4 connections write OPTIONS back to back and never read",
        limit_fds: false,
        attack: never_reading,
    },
    Case {
        name: "slowloris",
        what: "200 connections send one byte of an INVITE per second",
        limit_fds: false,
        attack: slowloris,
    },
    Case {
        name: "fd-exhaustion",
        what: "server at `ulimit -n N`: N + 128 connections opened and held idle",
        limit_fds: true,
        attack: fd_exhaustion,
    },
    Case {
        name: "endless-header",
        what: "2 connections send a header line that never ends, reopened when closed",
        limit_fds: false,
        attack: endless_header,
    },
];

/// What an abuser attacks, and until when.
struct Target {
    addr: SocketAddr,
    until: Instant,
    /// The server's descriptor limit in fd-exhaustion.
    nofile: u32,
}

impl Target {
    fn over(&self) -> bool {
        Instant::now() >= self.until
    }
}

/// The calls of one SIPp client run: what its `stat.csv` and `*_rtt.csv` files say.
pub(super) struct Good {
    pub(super) calls: u32,
    pub(super) ok: u64,
    pub(super) failed: u64,
    /// SIPp's response times (ms), sorted.
    pub(super) setup_ms: Vec<f64>,
    pub(super) exit: i32,
}

impl Good {
    /// Reads the files SIPp wrote in `work` for a run of `calls` calls that exited with `exit`.
    pub(super) fn read(work: &Path, calls: u32, exit: i32) -> Self {
        let stat = last_stat(&work.join("stat.csv"));
        let count = |name: &str| {
            stat.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Self {
            calls,
            ok: count("SuccessfulCall(C)"),
            failed: count("FailedCall(C)"),
            setup_ms: response_times(work),
            exit,
        }
    }

    fn p99(&self) -> Option<f64> {
        percentile(&self.setup_ms, 0.99)
    }

    /// Every call completed.
    pub(super) fn clean(&self) -> bool {
        self.exit == 0 && self.failed == 0 && self.ok == u64::from(self.calls)
    }

    fn met(&self) -> bool {
        self.clean() && self.p99().is_some_and(|p99| p99 <= P99_LIMIT_MS)
    }

    fn text(&self) -> String {
        let p99 = self.p99().map_or("-".to_owned(), |p| format!("{p:.0}"));
        let unfinished = u64::from(self.calls).saturating_sub(self.ok + self.failed);
        let unfinished = match unfinished {
            0 => String::new(),
            n => format!(" +{n} unfinished"),
        };
        format!(
            "{}/{}{unfinished} p99 {p99} ms",
            thousands(self.ok),
            self.failed
        )
    }
}

/// One case's figures.
struct Outcome {
    name: &'static str,
    detail: String,
    rss_start_kib: u64,
    rss_peak_kib: u64,
    fds_peak: usize,
    cpu_during: f64,
    cpu_after: f64,
    /// The good calls, in the order of [`GOOD_CLIENTS`].
    good: Vec<Good>,
    probe: Result<Duration, String>,
    /// Example 20's clean exit after SIGTERM (`Err` with why not).
    stopped: Result<(), String>,
}

impl Outcome {
    /// The targets missed, as text (none: the case passed).
    fn missed(&self, options: &AbuseOptions) -> Vec<String> {
        let mut missed = Vec::new();
        if self.rss_peak_kib > u64::from(options.rss_mb) * 1024 {
            missed.push(format!(
                "peak RSS {} KiB > {} MB",
                thousands(self.rss_peak_kib),
                options.rss_mb
            ));
        }
        for ((transport, ..), good) in GOOD_CLIENTS.iter().zip(&self.good) {
            if !good.met() {
                missed.push(format!(
                    "{transport} calls: {} (every call completed, p99 ≤ {P99_LIMIT_MS} ms; SIPp \
                     exit {})",
                    good.text(),
                    good.exit
                ));
            }
        }
        if self.cpu_after >= IDLE_CPU_PERCENT {
            missed.push(format!(
                "CPU {:.1} % in the second after the abuse (≥ {IDLE_CPU_PERCENT} %)",
                self.cpu_after
            ));
        }
        if let Err(why) = &self.probe {
            missed.push(format!("new TCP connection after the abuse: {why}"));
        }
        if let Err(why) = &self.stopped {
            missed.push(format!("example 20 after SIGTERM: {why}"));
        }
        missed
    }
}

/// Runs the selected cases and prints their table; `Ok(true)` when every target is met.
pub(super) fn run(options: &AbuseOptions, example: &Path, dir: &Path) -> Result<bool, String> {
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|c| options.cases.is_empty() || options.cases.iter().any(|f| c.name.contains(f)))
        .collect();
    if selected.is_empty() {
        return Err(format!("no abuse case matches {:?}", options.cases));
    }
    println!(
        "TCP abuse against example 20 (release, --mode auto), {} s per case, while SIPp places \
         {UDP_RATE} calls/s over UDP and {TCP_RATE} calls/s over TCP; targets: peak RSS ≤ {} MB, \
         every good call completed with p99 setup ≤ {P99_LIMIT_MS} ms, CPU < {IDLE_CPU_PERCENT} % \
         in the second after the abuse, a new TCP connection answered after it",
        options.seconds, options.rss_mb
    );
    println!(
        "machine: {} vCPU, load average {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let hz = clock_ticks();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for case in selected {
        eprintln!("  {}: {} ...", case.name, case.what);
        let outcome = run_case(case, options, example, dir, hz)?;
        let missed = outcome.missed(options);
        println!(
            "  {:<15} {}  RSS peak {} KiB  fds peak {}  CPU {:.1} % / {:.1} % after  UDP {}  \
             TCP {}  {}",
            case.name,
            outcome.detail,
            thousands(outcome.rss_peak_kib),
            outcome.fds_peak,
            outcome.cpu_during,
            outcome.cpu_after,
            good_text(&outcome.good, 0),
            good_text(&outcome.good, 1),
            if missed.is_empty() { "PASS" } else { "FAIL" }
        );
        outcomes.push(outcome);
    }
    let met = print_table(&outcomes, options);
    println!(
        "({:.0} s; load average now {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(met)
}

fn run_case(
    case: &Case,
    options: &AbuseOptions,
    example: &Path,
    dir: &Path,
    hz: f64,
) -> Result<Outcome, String> {
    let work = dir.join(case.name);
    for (_, sub, ..) in GOOD_CLIENTS {
        let path = work.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let program = if case.limit_fds {
        fd_limited(&work, example, options.nofile)?
    } else {
        example.to_path_buf()
    };
    let ctx = Ctx {
        example: program,
        scenarios: dir.to_path_buf(),
        work: work.clone(),
    };
    let (uas, address) = Example::uas(&ctx, &["--mode", "auto"])?;
    let pid = uas.child.id();
    let rss_start_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let mut detail = String::new();
    if case.limit_fds {
        detail = format!("(server limit {} files) ", open_files_limit(pid));
    }

    let seconds = options.seconds;
    let timeout = u64::from(seconds) + CLIENT_GRACE;
    let mut clients = Vec::new();
    for (_, sub, rate, extra) in GOOD_CLIENTS {
        let client_ctx = Ctx {
            example: PathBuf::new(),
            scenarios: dir.to_path_buf(),
            work: work.join(sub),
        };
        let calls = rate * seconds;
        let mut command = uac_command(&client_ctx, address.port(), rate, calls, 0, timeout)?;
        // One response time written per call (the default batch of 1,000 would drop the last).
        command.args(["-rtt_freq", "1"]).args(extra);
        let guard = Guard::spawn(command, &client_ctx.work.join("sipp-uac.log"))?;
        clients.push((client_ctx.work, calls, guard));
    }
    let began = Instant::now();
    std::thread::sleep(LEAD);

    let target = Target {
        addr: address,
        until: Instant::now() + Duration::from_secs(u64::from(seconds)),
        nofile: options.nofile,
    };
    let cpu_start = cpu_ticks(pid);
    let attack_began = Instant::now();
    let (what, rss_peak_kib, fds_peak) = std::thread::scope(|scope| {
        let attack = scope.spawn(|| (case.attack)(&target));
        let (mut rss, mut fds) = (0, 0);
        // The abusers stop at `target.until`; each of their socket calls waits 1 s at most.
        while !attack.is_finished() {
            rss = rss.max(status_kib(pid, "VmRSS").unwrap_or(0));
            fds = fds.max(open_fds(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        let what = attack
            .join()
            .unwrap_or_else(|_| "the abuser panicked".to_owned());
        (what, rss, fds)
    });
    detail.push_str(&what);
    let stopped_at = Instant::now();
    let cpu_stop = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu_after =
        cpu_ticks(pid).saturating_sub(cpu_stop) as f64 / hz / stopped_at.elapsed().as_secs_f64()
            * 100.0;
    let cpu_during = cpu_stop.saturating_sub(cpu_start) as f64
        / hz
        / stopped_at
            .duration_since(attack_began)
            .as_secs_f64()
            .max(1e-3)
        * 100.0;
    let probe = probe(address);

    let limit = Duration::from_secs(timeout + 5);
    let good = clients
        .iter_mut()
        .map(|(work, calls, guard)| {
            let exit = wait_for_client(guard, limit, "good calls", work, *calls, began, || {});
            Good::read(work, *calls, exit)
        })
        .collect();
    let stopped = uas.stop().map(drop);
    Ok(Outcome {
        name: case.name,
        detail,
        rss_start_kib,
        rss_peak_kib,
        fds_peak,
        cpu_during,
        cpu_after,
        good,
        probe,
        stopped,
    })
}

/// The `index`th good client's calls, as text.
fn good_text(good: &[Good], index: usize) -> String {
    good.get(index).map_or("-".to_owned(), Good::text)
}

/// Prints the table of every case and the targets each missed; returns whether all were met.
fn print_table(outcomes: &[Outcome], options: &AbuseOptions) -> bool {
    println!();
    println!(
        "| case | abuse | RSS start → peak (MB) | fds peak | CPU % during | CPU % 1 s after | \
         UDP ok/failed, p99 | TCP ok/failed, p99 | new TCP conn after | verdict |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |");
    let mut met = true;
    for outcome in outcomes {
        let missed = outcome.missed(options);
        met &= missed.is_empty();
        let probe = match &outcome.probe {
            Ok(took) => format!("answered in {:.0} ms", took.as_secs_f64() * 1000.0),
            Err(why) => format!("**{why}**"),
        };
        println!(
            "| {} | {} | {:.1} → {:.1} | {} | {:.1} | {:.1} | {} | {} | {probe} | {} |",
            outcome.name,
            outcome.detail,
            outcome.rss_start_kib as f64 / 1024.0,
            outcome.rss_peak_kib as f64 / 1024.0,
            outcome.fds_peak,
            outcome.cpu_during,
            outcome.cpu_after,
            good_text(&outcome.good, 0),
            good_text(&outcome.good, 1),
            if missed.is_empty() {
                "met".to_owned()
            } else {
                format!("**missed**: {}", missed.join("; "))
            }
        );
    }
    println!(
        "verdict: {}",
        if met {
            "every target met in every case"
        } else {
            "targets MISSED (see the rows marked missed)"
        }
    );
    met
}

// ---------------------------------------------------------------------------------------------
// The abusers
// ---------------------------------------------------------------------------------------------

fn idle(target: &Target) -> String {
    while !target.over() {
        std::thread::sleep(Duration::from_millis(50));
    }
    "-".to_owned()
}

fn pipelining(target: &Target) -> String {
    let began = Instant::now();
    let answered = AtomicU64::new(0);
    // Per connection the server closed: the answers read on it.
    let mut closed = reconnecting(target, FLOOD_CONNECTIONS, |id, mut stream| {
        let reader = stream.try_clone().ok();
        std::thread::scope(|inner| {
            let answered = &answered;
            let reader = reader
                .map(|reader| inner.spawn(move || count_answers(reader, target.until, answered)));
            let by_server = Flood::new(target.addr, id).run(&mut stream, target.until);
            // Ends the reader's `read` as well.
            let _ = stream.shutdown(Shutdown::Both);
            let read = reader.and_then(|r| r.join().ok()).unwrap_or(0);
            by_server.then_some(read as f64)
        })
    });
    let answered = answered.load(Ordering::Relaxed);
    format!(
        "{} OPTIONS answered ({}/s); {}",
        thousands(answered),
        thousands((answered as f64 / began.elapsed().as_secs_f64()) as u64),
        closed_after(&mut closed, 0, "answers read")
    )
}

fn never_reading(target: &Target) -> String {
    let mut lifetimes = reconnecting(target, FLOOD_CONNECTIONS, |id, mut stream| {
        let opened = Instant::now();
        Flood::new(target.addr, id)
            .run(&mut stream, target.until)
            .then(|| opened.elapsed().as_secs_f64())
    });
    closed_after(&mut lifetimes, 1, "s")
}

fn slowloris(target: &Target) -> String {
    /// One slow connection: when it sent its first byte and how many it has sent.
    struct Slow {
        stream: TcpStream,
        opened: Instant,
        sent: usize,
    }
    const REQUEST: &[u8] = b"INVITE sip:abuse@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-slowloris\r\nMax-Forwards: 70\r\n";
    let open = |addr: SocketAddr| -> Option<Slow> {
        let mut stream = connect(addr)?;
        stream.write_all(&REQUEST[..1]).ok()?;
        stream.set_nonblocking(true).ok()?;
        Some(Slow {
            stream,
            opened: Instant::now(),
            sent: 1,
        })
    };
    let mut slots: Vec<Option<Slow>> = (0..SLOW_CONNECTIONS).map(|_| open(target.addr)).collect();
    let mut lifetimes = Vec::new();
    let mut reopened = 0;
    let mut last_byte = Instant::now();
    while !target.over() {
        let byte_due = last_byte.elapsed() >= Duration::from_secs(1);
        if byte_due {
            last_byte = Instant::now();
        }
        for slot in &mut slots {
            if let Some(slow) = slot {
                let alive = !closed_by_peer(&slow.stream)
                    && (!byte_due || {
                        let byte = REQUEST[slow.sent % REQUEST.len()];
                        slow.sent += 1;
                        (&slow.stream).write(&[byte]).is_ok()
                    });
                if !alive {
                    lifetimes.push(slow.opened.elapsed().as_secs_f64());
                    *slot = None;
                }
            }
            if slot.is_none() && reopened < MAX_RECONNECTS && !target.over() {
                *slot = open(target.addr);
                reopened += 1;
            }
        }
        std::thread::sleep(SOCKET_WAIT);
    }
    let held = slots.iter().flatten().count();
    format!(
        "{SLOW_CONNECTIONS} connections at 1 byte/s; {}; {held} open at the end",
        closed_after(&mut lifetimes, 1, "s")
    )
}

fn fd_exhaustion(target: &Target) -> String {
    let wanted = target.nofile as usize + FD_EXTRA;
    let began = Instant::now();
    let mut open = Vec::new();
    let mut failed = 0;
    for _ in 0..wanted {
        if target.over() {
            break;
        }
        match connect(target.addr) {
            Some(stream) if stream.set_nonblocking(true).is_ok() => open.push(stream),
            _ => failed += 1,
        }
    }
    let opening = began.elapsed().as_secs_f64();
    let mut closed = vec![false; open.len()];
    while !target.over() {
        for (stream, closed) in open.iter().zip(closed.iter_mut()) {
            if !*closed && closed_by_peer(stream) {
                *closed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    format!(
        "{} connections opened in {opening:.1} s ({failed} failed to connect), held idle; {} \
         closed by the server",
        open.len(),
        closed.iter().filter(|c| **c).count()
    )
}

fn endless_header(target: &Target) -> String {
    const START: &[u8] = b"OPTIONS sip:abuse@127.0.0.1 SIP/2.0\r\nX-Endless: ";
    let began = Instant::now();
    let chunk = vec![b'a'; 16 * 1024];
    // Per connection the server closed: the KiB written on it.
    let mut accepted = reconnecting(target, ENDLESS_CONNECTIONS, |_, mut stream| {
        let mut bytes = 0u64;
        let mut closed = stream.write_all(START).is_err();
        while !closed && !target.over() {
            match stream.write(&chunk) {
                Ok(0) => closed = true,
                Ok(n) => bytes += n as u64,
                Err(e) if waiting(&e) => {}
                Err(_) => closed = true,
            }
        }
        closed.then_some(bytes as f64 / 1024.0)
    });
    format!(
        "{} ({} connections/s)",
        closed_after(&mut accepted, 0, "KiB written"),
        thousands((accepted.len() as f64 / began.elapsed().as_secs_f64()) as u64)
    )
}

/// Runs `connections` abusers side by side until `target.until`. Each opens a connection and
/// hands it with a serial number to `abuse`, which returns a value when the server closed it
/// (and `None` when the time is up), then opens another. Returns the values.
fn reconnecting<F>(target: &Target, connections: usize, abuse: F) -> Vec<f64>
where
    F: Fn(u64, TcpStream) -> Option<f64> + Sync,
{
    let serial = AtomicU64::new(0);
    let values = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..connections {
            scope.spawn(|| {
                for _ in 0..MAX_RECONNECTS {
                    if target.over() {
                        break;
                    }
                    let Some(stream) = connect(target.addr) else {
                        continue;
                    };
                    if let Some(value) = abuse(serial.fetch_add(1, Ordering::Relaxed), stream) {
                        let mut values = values
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        values.push(value);
                    }
                }
            });
        }
    });
    values
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------------------------

/// A connection to `addr` (1 s to connect at most), its blocking calls bounded by
/// [`SOCKET_WAIT`]; `None` (after a short pause, so that a refusing server is not spun on)
/// when it cannot be had.
fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .and_then(|stream| {
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(SOCKET_WAIT))?;
            stream.set_write_timeout(Some(SOCKET_WAIT))?;
            Ok(stream)
        })
        .ok();
    if stream.is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    stream
}

/// Whether a socket call's error only means "not now" (a timeout, a signal).
fn waiting(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Whether the server has closed (or reset) a non-blocking connection; reads and drops
/// whatever it sent.
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut buf = [0; 1024];
    match (&*stream).read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !waiting(&e),
    }
}

/// Reads until the connection ends (or 1 s after `until`), adding the responses it counts to
/// `answered`; returns how many it counted.
fn count_answers(mut stream: TcpStream, until: Instant, answered: &AtomicU64) -> u64 {
    const START: &[u8] = b"SIP/2.0 ";
    let mut buf = vec![0; 64 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let end = until + Duration::from_secs(1);
    let mut counted = 0;
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                carry.extend_from_slice(&buf[..n]);
                let found = carry.windows(START.len()).filter(|w| *w == START).count();
                answered.fetch_add(found as u64, Ordering::Relaxed);
                counted += found as u64;
                // Keep what could be the start of a status line cut by this read.
                let keep = carry.len().saturating_sub(START.len() - 1);
                carry.drain(..keep);
            }
            Err(e) if waiting(&e) => {}
            Err(_) => break,
        }
    }
    counted
}

/// Back-to-back OPTIONS of one length (fixed-width numbers in the branch and Call-ID), so
/// that a write that stops mid-message is continued where it stopped and the stream stays
/// framed.
struct Flood {
    addr: SocketAddr,
    /// The connection's serial number, in the branch and Call-ID.
    connection: u64,
    next: u64,
    batch: Vec<u8>,
    pos: usize,
}

impl Flood {
    const BATCH: u64 = 64;

    fn new(addr: SocketAddr, connection: u64) -> Self {
        Self {
            addr,
            connection,
            next: 0,
            batch: Vec::new(),
            pos: 0,
        }
    }

    fn message(addr: SocketAddr, connection: u64, n: u64) -> String {
        let id = format!("{connection:08}-{n:012}");
        format!(
            "OPTIONS sip:abuse@{addr} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-abuse-{id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:abuse@127.0.0.1>;tag=abuse\r\n\
             To: <sip:abuse@{addr}>\r\n\
             Call-ID: abuse-{id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// Writes until `until` (`false`) or until the server closes the connection (`true`).
    fn run(mut self, stream: &mut TcpStream, until: Instant) -> bool {
        while Instant::now() < until {
            if self.pos >= self.batch.len() {
                self.batch.clear();
                for n in self.next..self.next + Self::BATCH {
                    self.batch
                        .extend_from_slice(Self::message(self.addr, self.connection, n).as_bytes());
                }
                self.next += Self::BATCH;
                self.pos = 0;
            }
            match stream.write(&self.batch[self.pos..]) {
                Ok(0) => return true,
                Ok(n) => self.pos += n,
                Err(e) if waiting(&e) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// "N connections closed by the server after p50 X UNIT (min–max)", from the values (sorted
/// here), shown with `decimals`.
fn closed_after(values: &mut [f64], decimals: usize, unit: &str) -> String {
    if values.is_empty() {
        return "no connection closed by the server".to_owned();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "{} connections closed by the server after p50 {:.decimals$} {unit} \
         ({:.decimals$}–{:.decimals$})",
        thousands(values.len() as u64),
        percentile(values, 0.5).unwrap_or(0.0),
        values[0],
        values[values.len() - 1]
    )
}

/// A new connection from 127.0.0.1 sends an OPTIONS; `Ok` with the time to its answer.
fn probe(addr: SocketAddr) -> Result<Duration, String> {
    let began = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_LIMIT)
        .map_err(|e| format!("cannot connect ({e})"))?;
    let _ = stream.set_read_timeout(Some(SOCKET_WAIT));
    stream
        .write_all(Flood::message(addr, 99_999_999, 0).as_bytes())
        .map_err(|e| format!("cannot write ({e})"))?;
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    while began.elapsed() < PROBE_LIMIT {
        match stream.read(&mut buf) {
            Ok(0) => return Err("closed without an answer".to_owned()),
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(11).any(|w| w == b"SIP/2.0 200") {
                    return Ok(began.elapsed());
                }
            }
            Err(e) if waiting(&e) => {}
            Err(e) => return Err(format!("read failed ({e})")),
        }
    }
    Err(format!("no answer within {PROBE_LIMIT:?}"))
}

// ---------------------------------------------------------------------------------------------
// The server's process
// ---------------------------------------------------------------------------------------------

/// A script that runs `example` with at most `nofile` open files (`exec`: same process).
fn fd_limited(work: &Path, example: &Path, nofile: u32) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let program = example.display().to_string();
    if program.contains('\'') {
        return Err(format!("cannot quote {program} for sh"));
    }
    let script = work.join("example-fd-limited.sh");
    let text = format!("#!/bin/sh\nulimit -n {nofile} || exit 97\nexec '{program}' \"$@\"\n");
    std::fs::write(&script, text)
        .and_then(|()| std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("{}: {e}", script.display()))?;
    Ok(script)
}

/// How many descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The soft "Max open files" of `pid` (`/proc/PID/limits`), as text.
fn open_files_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_messages_have_one_length_so_partial_writes_keep_the_framing() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 5060));
        let len = Flood::message(addr, 0, 0).len();
        for (connection, n) in [(1, 9), (12_345, 64), (99_999_999, 999_999_999_999)] {
            assert_eq!(Flood::message(addr, connection, n).len(), len);
        }
        assert!(Flood::message(addr, 3, 7).ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn closed_after_summarises_sorted_values() {
        assert_eq!(
            closed_after(&mut [], 1, "s"),
            "no connection closed by the server"
        );
        assert_eq!(
            closed_after(&mut [10.2, 9.8, 10.0], 1, "s"),
            "3 connections closed by the server after p50 10.0 s (9.8–10.2)"
        );
    }
}
