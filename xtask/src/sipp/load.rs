//! `cargo xtask sipp --load`: the highest clean call rate of example 20 (session-core's
//! `SessionManager` as a signaling-only UAS) next to SIPp's own UAS, in the same run.
//!
//! **Servers.** Ours: example 20, release build, `--mode auto --reserve-calls N` (answers 200
//! with SDP at once, maps sized for N calls up front). Theirs: `sipp -sn uas`. Each step gets a
//! fresh server process on a free loopback port; both use the kernel's default UDP buffers.
//!
//! **Client.** SIPp's built-in `uac` over UDP: INVITE, 100/180/200 (SDP), ACK, BYE, 200, with
//! `-d 0`, `rate × --step-seconds` calls at `-r rate`, no concurrency limit below the call
//! count, `-trace_stat -fd 1` (counters) and `-trace_rtt` (one response time per call).
//!
//! **Search.** Per server, the rate doubles from `--start-rate` until a step is not clean or
//! `--max-rate` is reached, then bisects between the highest clean and the lowest unclean rate
//! until they are within 10 % (at least 100 calls/s) of each other. The two searches run in
//! turns, one step each, the order alternating, so that the machine's noise hits both alike. A
//! step is clean when SIPp exits 0 with every call successful and `FailedCall(C)` = 0. SIPp's
//! `-timeout` is the step plus 40 s, so that a call whose INVITE or BYE goes unanswered fails by
//! its own Timer B/F (32 s) before SIPp stops; a call still unfinished then counts as unclean.
//! SIPp's `Retransmissions(C)` and the system-wide UDP `RcvbufErrors` rise are shown, not judged.
//!
//! **Figures.** Calls/s: SIPp's `CallRate(C)` (calls created / run time). Setup latency: p50
//! and p99 (nearest rank) of the `-trace_rtt` response times, INVITE sent → 200 received, which
//! SIPp measures with its 1 ms clock. CPU per call: utime + stime of the server process
//! (`/proc/PID/stat`, `getconf CLK_TCK`) just before and just after the client run, / calls.
//! RSS per concurrent call: a last step per server (ours started with `--reserve-calls` equal
//! to the calls it holds) holds `--hold-calls` calls (placed at 1,000
//! calls/s, each lasting longer than the measurement) and reads the server's VmRSS before the
//! first call, when all are up, and 35 s later, once ours has dropped the INVITE transactions
//! RFC 6026 keeps for 32 s after a 2xx; per call = (VmRSS then − VmRSS before) / calls.
//!
//! **Floor** (`--floor`): a third server in the same turns, session-dialog's `udp_floor`
//! example: our driver's I/O (one-thread tokio runtime, the same reads and sends) answering
//! with canned 200s and no SIP work. Its CPU per call is the kernel's and the runtime's share,
//! the least any UAS on that I/O can use; it takes no part in the verdict.
//!
//! Every process is a child of this one and is killed on every path (guards); every wait is
//! bounded.

use super::{Ctx, Example, START_LIMIT, free_port, port_bound};
pub(super) use crate::util::{clock_ticks, cpu_ticks, load_average};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the hold step waits after the last call is up before reading RSS again: longer
/// than the 32 s an INVITE server transaction lingers after its 2xx (RFC 6026).
const SETTLE: Duration = Duration::from_secs(35);
/// The rate of the hold step.
const HOLD_RATE: u32 = 1_000;
/// The verdict's threshold: ours must be clean at ≥ this share of SIPp's clean rate.
const TARGET_SHARE: f64 = 0.9;

/// The `--load` settings.
#[derive(Clone)]
pub(super) struct LoadOptions {
    pub(super) start_rate: u32,
    pub(super) max_rate: u32,
    pub(super) step_seconds: u32,
    pub(super) hold_calls: u32,
    pub(super) reserve_calls: u32,
    /// `--floor`: run the `udp_floor` example too (its path, once built).
    pub(super) floor: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            start_rate: 1_000,
            max_rate: 12_000,
            step_seconds: 5,
            hold_calls: 10_000,
            reserve_calls: 100_000,
            floor: None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    Sipp,
    /// The `udp_floor` example (`--floor`).
    Floor,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Sipp => "sipp-uas",
            Self::Floor => "floor",
        }
    }
}

/// One step's measurements.
struct Step {
    rate: u32,
    calls: u32,
    ok: u64,
    failed: u64,
    retrans: u64,
    drops: u64,
    achieved: f64,
    /// SIPp's response times in ms, sorted.
    setup_ms: Vec<f64>,
    cpu_us_per_call: f64,
    hwm_kib: u64,
    seconds: f64,
    exit: i32,
}

impl Step {
    fn clean(&self) -> bool {
        self.exit == 0 && self.failed == 0 && self.ok == u64::from(self.calls)
    }

    fn setup(&self, share: f64) -> Option<f64> {
        percentile(&self.setup_ms, share)
    }

    fn setup_text(&self) -> String {
        match (self.setup(0.5), self.setup(0.99)) {
            (Some(p50), Some(p99)) => format!("{p50:.0}/{p99:.0} ms"),
            _ => "-".to_owned(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub(super) fn percentile(sorted: &[f64], share: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (share * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// One server's rate search: doubling, then bisection.
struct Search {
    server: Server,
    start: u32,
    max: u32,
    clean: Option<u32>,
    unclean: Option<u32>,
    steps: Vec<Step>,
    hold: Option<Hold>,
}

/// Rounds a rate to 50 calls/s (100 above 2,000).
fn round_rate(rate: u32) -> u32 {
    let unit = if rate > 2_000 { 100 } else { 50 };
    ((rate + unit / 2) / unit * unit).max(unit)
}

impl Search {
    fn new(server: Server, options: &LoadOptions) -> Self {
        Self {
            server,
            start: options.start_rate.min(options.max_rate),
            max: options.max_rate,
            clean: None,
            unclean: None,
            steps: Vec::new(),
            hold: None,
        }
    }

    /// The next rate to try, or `None` when the search is over.
    fn next(&self) -> Option<u32> {
        let next = match (self.clean, self.unclean) {
            (None, None) => return Some(self.start),
            (Some(clean), None) if clean >= self.max => return None,
            (Some(clean), None) => clean.saturating_mul(2).min(self.max),
            (None, Some(unclean)) if unclean <= 100 => return None,
            (None, Some(unclean)) => round_rate(unclean / 2),
            (Some(clean), Some(unclean)) => {
                if unclean - clean <= (clean / 10).max(100) {
                    return None;
                }
                round_rate(clean + (unclean - clean) / 2)
            }
        };
        let tried = self.steps.iter().any(|s| s.rate == next);
        (!tried).then_some(next)
    }

    fn record(&mut self, step: Step) {
        let rate = step.rate;
        if step.clean() {
            self.clean = Some(self.clean.map_or(rate, |c| c.max(rate)));
        } else {
            self.unclean = Some(self.unclean.map_or(rate, |u| u.min(rate)));
        }
        self.steps.push(step);
    }

    /// The step at the highest clean rate.
    fn best_step(&self) -> Option<&Step> {
        self.step_at(self.clean?)
    }

    fn step_at(&self, rate: u32) -> Option<&Step> {
        self.steps.iter().find(|s| s.rate == rate)
    }

    /// The best clean rate, as text: `≥` when the search stopped at `--max-rate`.
    fn clean_text(&self) -> String {
        match self.clean {
            None => format!("< {}", self.start),
            Some(rate) if rate >= self.max => format!("≥ {}", thousands(u64::from(rate))),
            Some(rate) => thousands(u64::from(rate)),
        }
    }
}

/// The hold step's result.
struct Hold {
    calls: u64,
    rss_before_kib: u64,
    rss_up_kib: u64,
    rss_settled_kib: u64,
}

impl Hold {
    fn per_call(&self, kib: u64) -> f64 {
        (kib as f64 - self.rss_before_kib as f64) * 1024.0 / self.calls.max(1) as f64
    }
}

pub(super) fn run(options: &LoadOptions, example: PathBuf, dir: &Path) -> Result<bool, String> {
    let hz = clock_ticks();
    let load_dir = dir.join("load");
    std::fs::create_dir_all(&load_dir).map_err(|e| format!("{}: {e}", load_dir.display()))?;
    println!(
        "session-core under SIPp load: SIPp's `uac` (UDP, loopback, -d 0) against example 20 \
         (--mode auto --reserve-calls {}) and `sipp -sn uas`",
        options.reserve_calls
    );
    println!(
        "rates {}..{} calls/s, {} s per step; machine: {} vCPU, load average {}",
        options.start_rate,
        options.max_rate,
        options.step_seconds,
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let started = Instant::now();
    let mut searches = vec![
        Search::new(Server::Ours, options),
        Search::new(Server::Sipp, options),
    ];
    if options.floor.is_some() {
        searches.push(Search::new(Server::Floor, options));
    }
    let count = searches.len();
    let mut round = 0;
    loop {
        // Each round starts with the next server, so that the machine's noise hits all alike.
        let order: Vec<usize> = (0..count).map(|i| (i + round) % count).collect();
        round += 1;
        let mut any = false;
        for index in order {
            let search = &mut searches[index];
            let Some(rate) = search.next() else {
                continue;
            };
            any = true;
            let ctx = step_ctx(&example, &load_dir, search.server, &rate.to_string())?;
            let step = run_step(&ctx, search.server, rate, options, hz)?;
            print_step(search.server, &step);
            search.record(step);
        }
        if !any {
            break;
        }
    }
    if options.hold_calls > 0 {
        // The floor keeps no call, so it has nothing to hold.
        for search in searches.iter_mut().filter(|s| s.server != Server::Floor) {
            let ctx = step_ctx(&example, &load_dir, search.server, "hold")?;
            let hold = run_hold(&ctx, search.server, options)?;
            println!(
                "  {:<8} hold {} calls: VmRSS {} → {} KiB with all up ({:.0} B/call), {} KiB \
                 {} s later ({:.0} B/call)",
                search.server.name(),
                thousands(hold.calls),
                thousands(hold.rss_before_kib),
                thousands(hold.rss_up_kib),
                hold.per_call(hold.rss_up_kib),
                thousands(hold.rss_settled_kib),
                SETTLE.as_secs(),
                hold.per_call(hold.rss_settled_kib),
            );
            search.hold = Some(hold);
        }
    }
    let met = print_table(&searches[0], &searches[1], options);
    if let Some(floor) = searches.get(2) {
        print_floor(&searches[0], &searches[1], floor);
    }
    println!(
        "({:.0} s; load average now {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(met)
}

fn step_ctx(example: &Path, load_dir: &Path, server: Server, what: &str) -> Result<Ctx, String> {
    let work = load_dir.join(format!("{}-{what}", server.name()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    Ok(Ctx {
        example: example.to_path_buf(),
        scenarios: load_dir.to_path_buf(),
        work,
    })
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A server under test, stopped on drop.
enum Running {
    Ours(Option<Example>),
    Sipp(Guard),
    Floor(Guard),
}

impl Running {
    fn start(
        ctx: &Ctx,
        server: Server,
        reserve_calls: u32,
        floor: Option<&Path>,
    ) -> Result<(Self, u16), String> {
        match server {
            Server::Ours => {
                let reserve = reserve_calls.to_string();
                let (uas, address) =
                    Example::uas(ctx, &["--mode", "auto", "--reserve-calls", &reserve])?;
                Ok((Self::Ours(Some(uas)), address.port()))
            }
            Server::Sipp => {
                let (guard, port) = start_sipp_uas(ctx)?;
                Ok((Self::Sipp(guard), port))
            }
            Server::Floor => {
                let (guard, port) = start_floor(ctx, floor)?;
                Ok((Self::Floor(guard), port))
            }
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Self::Ours(uas) => uas.as_ref().map_or(0, |uas| uas.child.id()),
            Self::Sipp(guard) | Self::Floor(guard) => guard.child.id(),
        }
    }

    /// Stops the server: ours with SIGTERM and a clean exit; SIPp's with SIGTERM, SIGKILL
    /// after a bound.
    fn stop(mut self) -> Result<(), String> {
        match &mut self {
            Self::Ours(uas) => match uas.take() {
                Some(uas) => uas.stop().map(drop),
                None => Ok(()),
            },
            Self::Sipp(guard) | Self::Floor(guard) => {
                guard.terminate();
                Ok(())
            }
        }
    }
}

/// SIPp's built-in UAS on a free loopback port, running until dropped; returns once it has
/// bound, with its port.
pub(super) fn start_sipp_uas(ctx: &Ctx) -> Result<(Guard, u16), String> {
    let port = free_port()?;
    let mut command = Command::new("sipp");
    command
        .current_dir(&ctx.work)
        .args(["-sn", "uas", "-i", "127.0.0.1", "-nostdin"])
        .args(["-p", &port.to_string()]);
    let mut guard = Guard::spawn(command, &ctx.work.join("sipp-uas.log"))?;
    let deadline = Instant::now() + START_LIMIT;
    while !port_bound(port, false) {
        if guard.exited() {
            return Err("SIPp's UAS exited before binding".to_owned());
        }
        if Instant::now() >= deadline {
            return Err(format!("SIPp's UAS did not bind within {START_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((guard, port))
}

/// Starts the `udp_floor` example on a free loopback port.
fn start_floor(ctx: &Ctx, floor: Option<&Path>) -> Result<(Guard, u16), String> {
    let floor = floor.ok_or("the floor was not built")?;
    let port = free_port()?;
    let mut command = Command::new(floor);
    command
        .current_dir(&ctx.work)
        .arg(format!("127.0.0.1:{port}"));
    let mut guard = Guard::spawn(command, &ctx.work.join("floor.log"))?;
    let deadline = Instant::now() + START_LIMIT;
    while !port_bound(port, false) {
        if guard.exited() {
            return Err("udp_floor exited before binding".to_owned());
        }
        if Instant::now() >= deadline {
            return Err(format!("udp_floor did not bind within {START_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((guard, port))
}

/// Waits for SIPp's client to exit (killing it at `limit` after `began`), showing its progress
/// and calling `each_tick` every 250 ms; returns its exit code (−1 when killed).
pub(super) fn wait_for_client(
    client: &mut Guard,
    limit: Duration,
    label: &str,
    work: &Path,
    calls: u32,
    began: Instant,
    mut each_tick: impl FnMut(),
) -> i32 {
    let exit = loop {
        each_tick();
        if let Ok(Some(status)) = client.child.try_wait() {
            break status.code().unwrap_or(-1);
        }
        if began.elapsed() >= limit {
            client.terminate();
            break -1;
        }
        live_progress(label, work, calls, began);
        std::thread::sleep(Duration::from_millis(250));
    };
    clear_progress();
    exit
}

/// A child process killed on drop (SIGTERM, then SIGKILL after 5 s).
pub(super) struct Guard {
    pub(super) child: Child,
}

impl Guard {
    pub(super) fn spawn(mut command: Command, log: &Path) -> Result<Self, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
        Ok(Self { child })
    }

    pub(super) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    pub(super) fn terminate(&mut self) {
        if self.exited() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// SIPp's `uac` against `port`: `calls` calls at `rate`, each lasting `hold_ms`.
pub(super) fn uac_command(
    ctx: &Ctx,
    port: u16,
    rate: u32,
    calls: u32,
    hold_ms: u64,
    timeout: u64,
) -> Result<Command, String> {
    let mut command = Command::new("sipp");
    command
        .current_dir(&ctx.work)
        .args(["-sn", "uac", &format!("127.0.0.1:{port}")])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port()?.to_string(),
            "-nostdin",
        ])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-l", &calls.to_string(), "-d", &hold_ms.to_string()])
        .args(["-timeout", &timeout.to_string(), "-timeout_error"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .args(["-trace_rtt", "-rtt_freq", "1000"]);
    Ok(command)
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

fn run_step(
    ctx: &Ctx,
    server: Server,
    rate: u32,
    options: &LoadOptions,
    hz: f64,
) -> Result<Step, String> {
    let calls = rate.saturating_mul(options.step_seconds);
    let (running, port) =
        Running::start(ctx, server, options.reserve_calls, options.floor.as_deref())?;
    let pid = running.pid();
    let timeout = u64::from(options.step_seconds) + 40;
    let command = uac_command(ctx, port, rate, calls, 0, timeout)?;
    let drops_before = rcvbuf_errors();
    let cpu_before = cpu_ticks(pid);
    let began = Instant::now();
    let mut client = Guard::spawn(command, &ctx.work.join("sipp-uac.log"))?;
    let limit = Duration::from_secs(timeout + 15);
    let label = format!("{} {rate}/s", server.name());
    let exit = wait_for_client(&mut client, limit, &label, &ctx.work, calls, began, || {});
    let seconds = began.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks(pid);
    let drops = rcvbuf_errors().saturating_sub(drops_before);
    let hwm_kib = status_kib(pid, "VmHWM").unwrap_or(0);
    clear_progress();
    running.stop()?;
    let stat = last_stat(&ctx.work.join("stat.csv"));
    let counter = |name: &str| {
        stat.iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
            .to_owned()
    };
    let count = |name: &str| counter(name).trim().parse::<u64>().unwrap_or(0);
    let cpu = cpu_after.saturating_sub(cpu_before) as f64 / hz;
    Ok(Step {
        rate,
        calls,
        ok: count("SuccessfulCall(C)"),
        failed: count("FailedCall(C)"),
        retrans: count("Retransmissions(C)"),
        drops,
        achieved: counter("CallRate(C)").trim().parse().unwrap_or(0.0),
        setup_ms: response_times(&ctx.work),
        cpu_us_per_call: cpu * 1e6 / f64::from(calls.max(1)),
        hwm_kib,
        seconds,
        exit,
    })
}

fn print_step(server: Server, step: &Step) {
    println!(
        "  {:<8} {:>6}/s  calls {:>6}  ok {:>6}  failed {:>4}{}  retrans {:>5}  drops {:>5}  \
         {:>6.0} calls/s  setup p50/p99 {:>10}  CPU {:>4.0} µs/call  VmHWM {:>4} MB  {:>4.1} s  {}",
        server.name(),
        step.rate,
        step.calls,
        step.ok,
        step.failed,
        match u64::from(step.calls).saturating_sub(step.ok + step.failed) {
            0 => String::new(),
            unfinished => format!(" (+{unfinished} unfinished)"),
        },
        step.retrans,
        step.drops,
        step.achieved,
        step.setup_text(),
        step.cpu_us_per_call,
        step.hwm_kib / 1000,
        step.seconds,
        if step.clean() { "clean" } else { "NOT CLEAN" },
    );
}

fn run_hold(ctx: &Ctx, server: Server, options: &LoadOptions) -> Result<Hold, String> {
    let calls = options.hold_calls;
    // Sized for the calls it holds: a table reserved for many more would spread these calls
    // over pages that a smaller server never touches (see docs/BENCHMARKS.md).
    let (running, port) = Running::start(ctx, server, calls, None)?;
    let pid = running.pid();
    let ramp = Duration::from_secs(u64::from(calls / HOLD_RATE) + 1);
    // Every call lasts past the ramp, the settling time and a margin: none ends before the
    // second reading.
    let hold_ms = (ramp + SETTLE).as_millis() as u64 + 30_000;
    let timeout = hold_ms / 1000 + 60;
    let command = uac_command(ctx, port, HOLD_RATE, calls, hold_ms, timeout)?;
    let rss_before_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let began = Instant::now();
    let mut client = Guard::spawn(command, &ctx.work.join("sipp-uac.log"))?;
    let label = format!("{} hold", server.name());
    // All calls up: SIPp's client has created all of them and has as many open.
    let deadline = began + ramp + Duration::from_secs(30);
    loop {
        let stat = last_stat(&ctx.work.join("stat.csv"));
        let value = |name: &str| {
            stat.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if value("CurrentCall") >= u64::from(calls) && value("FailedCall(C)") == 0 {
            break;
        }
        if client.exited() || Instant::now() >= deadline || value("FailedCall(C)") > 0 {
            clear_progress();
            return Err(format!(
                "{}: the {calls} calls did not all come up (see {})",
                server.name(),
                ctx.work.display()
            ));
        }
        live_progress(&label, &ctx.work, calls, began);
        std::thread::sleep(Duration::from_millis(250));
    }
    // The stat file is written once a second: let the last calls' 200/ACK pass.
    std::thread::sleep(Duration::from_secs(2));
    let rss_up_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let settled_at = Instant::now() + SETTLE;
    while Instant::now() < settled_at {
        if std::io::stderr().is_terminal() {
            let left = settled_at
                .saturating_duration_since(Instant::now())
                .as_secs();
            eprint!("\r  {label}: all {calls} up, settling {left:>2} s   ");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss_settled_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    clear_progress();
    client.terminate();
    drop(client);
    running.stop()?;
    Ok(Hold {
        calls: u64::from(calls),
        rss_before_kib,
        rss_up_kib,
        rss_settled_kib,
    })
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// Prints the floor's CPU per call next to ours and SIPp's at each rate all three ran.
fn print_floor(ours: &Search, sipp: &Search, floor: &Search) {
    println!(
        "floor (udp_floor: our driver's I/O, canned answers, no SIP work): CPU per call, the \
         kernel's and the runtime's share"
    );
    for step in &floor.steps {
        let cpu_of = |search: &Search| {
            search
                .step_at(step.rate)
                .map_or_else(|| "-".to_owned(), |s| format!("{:.0}", s.cpu_us_per_call))
        };
        println!(
            "  {:>6}/s  floor {:>4.0} µs  ours {:>4} µs  sipp-uas {:>4} µs{}",
            step.rate,
            step.cpu_us_per_call,
            cpu_of(ours),
            cpu_of(sipp),
            if step.clean() {
                ""
            } else {
                "  (floor NOT CLEAN)"
            },
        );
    }
}

/// Prints the side-by-side table and the verdict; returns whether the target is met.
fn print_table(ours: &Search, sipp: &Search, options: &LoadOptions) -> bool {
    let mut out = String::new();
    let row = |out: &mut String, what: &str, a: String, b: String, ratio: String| {
        let _ = writeln!(out, "{what:<44} {a:>14} {b:>14} {ratio:>12}");
    };
    let ratio = |a: f64, b: f64| {
        if a > 0.0 && b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".to_owned()
        }
    };
    let _ = writeln!(out);
    row(
        &mut out,
        "",
        "ours".into(),
        "SIPp uas".into(),
        "ours / SIPp".into(),
    );
    row(
        &mut out,
        "highest clean rate (calls/s offered)",
        ours.clean_text(),
        sipp.clean_text(),
        {
            // Ours stopped at --max-rate: the ratio is a lower bound.
            let bound = ours.clean.is_some_and(|rate| rate >= ours.max)
                && sipp.clean.is_some_and(|rate| rate < sipp.max);
            let value = ratio(
                f64::from(ours.clean.unwrap_or(0)),
                f64::from(sipp.clean.unwrap_or(0)),
            );
            if bound { format!("≥ {value}") } else { value }
        },
    );
    let (a, b) = (ours.best_step(), sipp.best_step());
    let achieved = |step: Option<&Step>| step.map_or(0.0, |s| s.achieved);
    row(
        &mut out,
        "  calls/s achieved at that rate",
        format!("{:.0}", achieved(a)),
        format!("{:.0}", achieved(b)),
        ratio(achieved(a), achieved(b)),
    );
    let setup = |step: Option<&Step>| step.map_or("-".to_owned(), Step::setup_text);
    row(
        &mut out,
        "  setup latency p50/p99 at that rate",
        setup(a),
        setup(b),
        String::new(),
    );
    let cpu = |step: Option<&Step>| step.map_or(0.0, |s| s.cpu_us_per_call);
    row(
        &mut out,
        "  server CPU per call at that rate (µs)",
        format!("{:.0}", cpu(a)),
        format!("{:.0}", cpu(b)),
        ratio(cpu(a), cpu(b)),
    );
    // The highest rate both were clean at: per-call figures at the same load.
    let common = ours
        .steps
        .iter()
        .filter(|s| s.clean())
        .filter(|s| sipp.step_at(s.rate).is_some_and(Step::clean))
        .map(|s| s.rate)
        .max();
    if let Some(rate) = common {
        let (a, b) = (ours.step_at(rate), sipp.step_at(rate));
        row(
            &mut out,
            &format!(
                "at {} calls/s (highest clean for both):",
                thousands(u64::from(rate))
            ),
            String::new(),
            String::new(),
            String::new(),
        );
        row(
            &mut out,
            "  setup latency p50/p99",
            setup(a),
            setup(b),
            String::new(),
        );
        row(
            &mut out,
            "  server CPU per call (µs)",
            format!("{:.0}", cpu(a)),
            format!("{:.0}", cpu(b)),
            ratio(cpu(a), cpu(b)),
        );
    }
    if let (Some(a), Some(b)) = (&ours.hold, &sipp.hold) {
        let (up_a, up_b) = (a.per_call(a.rss_up_kib), b.per_call(b.rss_up_kib));
        let (set_a, set_b) = (a.per_call(a.rss_settled_kib), b.per_call(b.rss_settled_kib));
        row(
            &mut out,
            &format!("RSS per call, {} held, all up (B)", thousands(a.calls)),
            format!("{up_a:.0}"),
            format!("{up_b:.0}"),
            ratio(up_a, up_b),
        );
        row(
            &mut out,
            &format!(
                "RSS per call, {} held, {} s later (B)",
                thousands(a.calls),
                SETTLE.as_secs()
            ),
            format!("{set_a:.0}"),
            format!("{set_b:.0}"),
            ratio(set_a, set_b),
        );
    }
    print!("{out}");
    match (ours.clean, sipp.clean) {
        (_, None) => {
            println!(
                "verdict: none: SIPp's UAS was not clean even at {} calls/s",
                sipp.start
            );
            true
        }
        (None, Some(theirs)) => {
            println!(
                "verdict: target NOT met: ours was not clean at {} calls/s, SIPp's UAS at {theirs}",
                ours.start
            );
            false
        }
        (Some(mine), Some(theirs)) => {
            let met = f64::from(mine) >= TARGET_SHARE * f64::from(theirs);
            let both_at_max = mine >= options.max_rate && theirs >= options.max_rate;
            println!(
                "verdict: target (clean rate ≥ {TARGET_SHARE} × SIPp's UAS) {}: ours {} vs SIPp {} calls/s{}",
                if met { "met" } else { "NOT met" },
                ours.clean_text(),
                sipp.clean_text(),
                if both_at_max {
                    " (both clean at --max-rate: raise it to find either limit)"
                } else {
                    ""
                }
            );
            met
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading SIPp's files and /proc
// ---------------------------------------------------------------------------------------------

/// The last line of SIPp's `-trace_stat` file as (column, value) pairs.
pub(super) fn last_stat(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let Some(last) = lines.next_back() else {
        return Vec::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every response time (ms) in the `*_rtt.csv` files SIPp wrote in `dir`, sorted.
pub(super) fn response_times(dir: &Path) -> Vec<f64> {
    let mut times = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return times;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with("_rtt.csv") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // `Date_ms;response_time_ms;rtd_no`, one line per call and response-time measure.
        times.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| line.split(';').nth(1)?.trim().parse::<f64>().ok()),
        );
    }
    times.sort_by(f64::total_cmp);
    times
}

/// While a step runs, on a terminal: one line, rewritten, with SIPp's counts so far.
pub(super) fn live_progress(label: &str, work: &Path, calls: u32, began: Instant) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let stat = last_stat(&work.join("stat.csv"));
    let value = |name: &str| {
        stat.iter()
            .find(|(k, _)| k == name)
            .map_or("0", |(_, v)| v.trim())
            .to_owned()
    };
    eprint!(
        "\r  {label}: {:>4.1} s, {} of {calls} calls placed, {} ok, {} failed, {} up   ",
        began.elapsed().as_secs_f64(),
        value("OutgoingCall(C)"),
        value("SuccessfulCall(C)"),
        value("FailedCall(C)"),
        value("CurrentCall"),
    );
    let _ = std::io::stderr().flush();
}

pub(super) fn clear_progress() {
    if std::io::stderr().is_terminal() {
        eprint!("\r{:100}\r", "");
    }
}

/// A field of `/proc/PID/status` in KiB (e.g. `VmRSS`).
pub(super) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// The system-wide UDP `RcvbufErrors` counter (`/proc/net/snmp`).
pub(super) fn rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// 12345 → "12,345".
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: u32, clean: bool) -> Step {
        Step {
            rate,
            calls: rate,
            ok: u64::from(rate),
            failed: u64::from(!clean),
            retrans: 0,
            drops: 0,
            achieved: f64::from(rate),
            setup_ms: Vec::new(),
            cpu_us_per_call: 0.0,
            hwm_kib: 0,
            seconds: 0.0,
            exit: 0,
        }
    }

    /// Runs a search against a server that is clean up to `limit`; returns the rates tried.
    fn search(limit: u32, options: &LoadOptions) -> (Vec<u32>, Option<u32>) {
        let mut search = Search::new(Server::Ours, options);
        let mut tried = Vec::new();
        while let Some(rate) = search.next() {
            assert!(tried.len() < 20, "the search does not end: {tried:?}");
            tried.push(rate);
            search.record(step(rate, rate <= limit));
        }
        (tried, search.clean)
    }

    #[test]
    fn search_doubles_then_bisects_to_within_ten_percent() {
        let options = LoadOptions::default();
        let (tried, clean) = search(5_300, &options);
        assert_eq!(tried[..4], [1_000, 2_000, 4_000, 8_000]);
        let clean = clean.unwrap_or(0);
        assert!((4_800..=5_300).contains(&clean), "{tried:?} → {clean}");
        assert!(tried.len() <= 8, "{tried:?}");
    }

    #[test]
    fn search_stops_at_the_maximum_and_goes_below_the_start() {
        let options = LoadOptions::default();
        let (tried, clean) = search(u32::MAX, &options);
        assert_eq!(tried, [1_000, 2_000, 4_000, 8_000, 12_000]);
        assert_eq!(clean, Some(12_000));
        let (tried, clean) = search(300, &options);
        assert_eq!(tried[..3], [1_000, 500, 250]);
        assert!(clean.is_some_and(|c| (250..=300).contains(&c)), "{tried:?}");
    }

    #[test]
    fn percentiles_and_counts() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
