//! `cargo xtask sipp --load --alloc`: example 20 with glibc's malloc next to example 20 with
//! mimalloc (examples2's `mimalloc` feature) under the same soak, in one run (issue 16,
//! item 10: does the other allocator give memory back, and what does it cost in CPU).
//!
//! **Builds.** Example 20 in release mode twice — `--features mimalloc` first, then the default
//! build, so that the shared `target/` is left with the usual binary — each copied aside into
//! the run's directory before the next build replaces it.
//!
//! **Soak**, per allocator and round (`--alloc-rounds`, the order alternating each round so
//! that the machine's noise hits both alike), against a fresh `--mode auto` server on a free
//! loopback port: SIPp's built-in `uac` over UDP at `--alloc-rate` calls/s (`-d 0`) for
//! `--alloc-seconds`, then `--alloc-idle` seconds of nothing. The server keeps each call's
//! INVITE and BYE transactions 32 s after their answer (RFC 3261 Timers J/L, RFC 6026), so
//! only a reading taken more than 32 s into the idle time shows whether memory comes back.
//!
//! **Figures.** VmRSS at start, its peak during the load (sampled every 250 ms) and VmHWM, at
//! the end of the load, 10 s into the idle time and at its end; CPU (utime + stime) per call
//! over the load and as a share of a core over the idle time; SIPp's failed calls and setup
//! p50/p99. No target: the figures go side by side; the run fails only if a call failed.

use super::abuse::Good;
use super::load::{
    Guard, clock_ticks, cpu_ticks, load_average, percentile, status_kib, thousands, uac_command,
    wait_for_client,
};
use super::{Ctx, Example};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `--alloc` settings.
pub(super) struct AllocOptions {
    pub(super) rate: u32,
    pub(super) seconds: u32,
    pub(super) idle: u32,
    pub(super) rounds: u32,
}

impl Default for AllocOptions {
    fn default() -> Self {
        Self {
            rate: 2_000,
            seconds: 60,
            idle: 40,
            rounds: 2,
        }
    }
}

/// The first idle reading, the "idle 10 s".
const EARLY_IDLE: Duration = Duration::from_secs(10);

/// One soak's figures.
struct Soak {
    allocator: &'static str,
    round: u32,
    calls: Good,
    rss_start_kib: u64,
    rss_peak_kib: u64,
    hwm_kib: u64,
    rss_loaded_kib: u64,
    rss_early_kib: u64,
    rss_idle_kib: u64,
    cpu_us_per_call: f64,
    idle_cpu_percent: f64,
}

pub(super) fn run(options: &AllocOptions, dir: &Path) -> Result<bool, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mimalloc = build_aside(&["--features", "mimalloc"], &dir.join("20-mimalloc"))?;
    let glibc = build_aside(&[], &dir.join("20-glibc"))?;
    println!(
        "allocators under a soak: example 20 (release, --mode auto) built with glibc malloc and \
         with mimalloc; SIPp uac over UDP at {} calls/s for {} s, then {} s idle; {} round(s)",
        options.rate, options.seconds, options.idle, options.rounds
    );
    println!(
        "machine: {} vCPU, load average {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let hz = clock_ticks();
    let mut soaks = Vec::new();
    for round in 1..=options.rounds {
        let mut order = [("glibc", &glibc), ("mimalloc", &mimalloc)];
        if round % 2 == 0 {
            order.reverse();
        }
        for (allocator, example) in order {
            let soak = run_soak(options, allocator, example, dir, round, hz)?;
            print_soak(&soak);
            soaks.push(soak);
        }
    }
    print_table(&soaks, options);
    Ok(soaks.iter().all(|soak| soak.calls.clean()))
}

/// Builds example 20 with `features` and copies the binary to `to`.
fn build_aside(features: &[&str], to: &Path) -> Result<PathBuf, String> {
    eprintln!(
        "building example {} (release {}) ...",
        super::EXAMPLE,
        features.join(" ")
    );
    let built = super::build_release(features)?;
    std::fs::copy(&built, to).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    Ok(to.to_path_buf())
}

fn run_soak(
    options: &AllocOptions,
    allocator: &'static str,
    example: &Path,
    dir: &Path,
    round: u32,
    hz: f64,
) -> Result<Soak, String> {
    let work = dir.join(format!("{allocator}-{round}"));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let ctx = Ctx {
        example: example.to_path_buf(),
        scenarios: dir.to_path_buf(),
        work,
    };
    let (uas, address) = Example::uas(&ctx, &["--mode", "auto"])?;
    let pid = uas.child.id();
    let calls = options.rate.saturating_mul(options.seconds);
    let timeout = u64::from(options.seconds) + 40;
    let command = uac_command(&ctx, address.port(), options.rate, calls, 0, timeout)?;
    let rss_start_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let cpu_before = cpu_ticks(pid);
    let began = Instant::now();
    let mut client = Guard::spawn(command, &ctx.work.join("sipp-uac.log"))?;
    let label = format!("{allocator} round {round}");
    let mut rss_peak_kib = 0;
    let exit = wait_for_client(
        &mut client,
        Duration::from_secs(timeout + 15),
        &label,
        &ctx.work,
        calls,
        began,
        || rss_peak_kib = rss_peak_kib.max(status_kib(pid, "VmRSS").unwrap_or(0)),
    );
    let cpu_loaded = cpu_ticks(pid);
    let rss_loaded_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let idle_began = Instant::now();
    let idle = Duration::from_secs(u64::from(options.idle));
    std::thread::sleep(EARLY_IDLE.min(idle));
    let rss_early_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    std::thread::sleep(idle.saturating_sub(EARLY_IDLE));
    let rss_idle_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let idle_cpu_percent =
        cpu_ticks(pid).saturating_sub(cpu_loaded) as f64 / hz / idle_began.elapsed().as_secs_f64()
            * 100.0;
    let hwm_kib = status_kib(pid, "VmHWM").unwrap_or(0);
    uas.stop()?;
    Ok(Soak {
        allocator,
        round,
        calls: Good::read(&ctx.work, calls, exit),
        rss_start_kib,
        rss_peak_kib,
        hwm_kib,
        rss_loaded_kib,
        rss_early_kib,
        rss_idle_kib,
        cpu_us_per_call: cpu_loaded.saturating_sub(cpu_before) as f64 / hz * 1e6
            / f64::from(calls.max(1)),
        idle_cpu_percent,
    })
}

fn mb(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn setup(soak: &Soak) -> String {
    match (
        percentile(&soak.calls.setup_ms, 0.5),
        percentile(&soak.calls.setup_ms, 0.99),
    ) {
        (Some(p50), Some(p99)) => format!("{p50:.0}/{p99:.0}"),
        _ => "-".to_owned(),
    }
}

fn print_soak(soak: &Soak) {
    println!(
        "  {:<8} round {}  {} ok {} failed (SIPp exit {})  setup p50/p99 {} ms  CPU {:.1} µs/call  VmRSS MB: \
         start {}, peak {} (HWM {}), end of load {}, idle {} s {}, idle end {}  idle CPU {:.2} %",
        soak.allocator,
        soak.round,
        thousands(soak.calls.ok),
        soak.calls.failed,
        soak.calls.exit,
        setup(soak),
        soak.cpu_us_per_call,
        mb(soak.rss_start_kib),
        mb(soak.rss_peak_kib),
        mb(soak.hwm_kib),
        mb(soak.rss_loaded_kib),
        EARLY_IDLE.as_secs(),
        mb(soak.rss_early_kib),
        mb(soak.rss_idle_kib),
        soak.idle_cpu_percent,
    );
}

/// The runs as one Markdown table, ready for docs/BENCHMARKS.md.
fn print_table(soaks: &[Soak], options: &AllocOptions) {
    println!();
    println!(
        "| allocator | round | calls ok / failed | setup p50/p99 ms | CPU µs/call | RSS start MB \
         | RSS peak (VmHWM) MB | RSS end of load MB | RSS idle {} s MB | RSS idle {} s MB | idle CPU % |",
        EARLY_IDLE.as_secs(),
        options.idle
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for soak in soaks {
        println!(
            "| {} | {} | {} / {} | {} | {:.1} | {} | {} ({}) | {} | {} | {} | {:.2} |",
            soak.allocator,
            soak.round,
            thousands(soak.calls.ok),
            soak.calls.failed,
            setup(soak),
            soak.cpu_us_per_call,
            mb(soak.rss_start_kib),
            mb(soak.rss_peak_kib),
            mb(soak.hwm_kib),
            mb(soak.rss_loaded_kib),
            mb(soak.rss_early_kib),
            mb(soak.rss_idle_kib),
            soak.idle_cpu_percent,
        );
    }
}
