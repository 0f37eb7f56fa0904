//! `cargo xtask sipp --load --overload`: example 20 offered three times the call rate it can
//! carry, next to the same server at its clean rate, in one run.
//!
//! **What limits the server.** On a 2-core machine SIPp's client cannot offer three times the
//! rate at which example 20 runs out of CPU (it is clean at ≥ 12,000 calls/s, see
//! docs/BENCHMARKS.md), so the limit used is the one a deployment meets first: admission.
//! Example 20 runs with `--max-sessions S` and every call lasts `H` ms, so it can carry S/H
//! calls per second; beyond that, a new INVITE is refused by the SIP layer with a stateless
//! 503 and `Retry-After` before any per-call state is made (session-dialog's shedding, set by
//! session-core at its admission limit).
//!
//! **Phases**, each against a fresh server on a free loopback port:
//! - *clean*: 90 % of S/H calls/s for `--overload-seconds` s: every call must complete;
//! - *overload*: three times that rate for `--overload-seconds` s (60 by default).
//!
//! **Client.** SIPp with a scenario of our own (`overload_uac.xml`): INVITE; on 200, ACK, a
//! pause of H ms (`-d`), BYE, 200 — a *completed* call, counted by SIPp as successful; on 503,
//! the ACK of the 503 (same branch, RFC 3261 §17.1.1.3) and the call ends as *refused*, which
//! the scenario makes SIPp count as a failed call of the `FailedTimeoutOnRecv` kind (a 1 ms
//! wait for a message that never comes; `-default_behaviors all,-bye` keeps SIPp from
//! sending the BYE it sends for an aborted call by default). Any other failure is a failure.
//!
//! **Figures.** Offered: calls SIPp placed. Admitted and completed: SIPp's successful calls.
//! Refused: its `FailedTimeoutOnRecv(C)`, of which example 20's summary (`shed=`) says how
//! many the SIP layer answered statelessly; the rest reached the manager's admission check. Other failures: `FailedCall(C)` minus refused.
//! Completed/s: completed calls over the offered period (calls / rate). RSS: the server's
//! VmRSS sampled every 250 ms (the peak) and its VmHWM at the end; server CPU from
//! `/proc/PID/stat`.
//!
//! **Verdict** (issue 11, item 3): in overload, no admitted call fails, the excess is refused
//! with 503, completed calls per second stay ≥ 90 % of the clean phase's, and the peak RSS
//! stays within 1.5× the clean phase's plus 16 MiB (bounded, not growing with the offered
//! load).

use super::load::{
    Guard, clock_ticks, cpu_ticks, last_stat, load_average, status_kib, thousands, wait_for_client,
};
use super::{Ctx, Example, free_port};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The `--overload` settings.
pub(super) struct OverloadOptions {
    /// Seconds of each phase.
    pub(super) seconds: u32,
    /// Example 20's `--max-sessions`.
    pub(super) sessions: u32,
    /// How long each answered call lasts, ms.
    pub(super) hold_ms: u32,
    /// Offered rate in overload, as a multiple of the clean rate.
    pub(super) factor: u32,
}

impl Default for OverloadOptions {
    fn default() -> Self {
        Self {
            seconds: 60,
            sessions: 500,
            hold_ms: 1_000,
            factor: 3,
        }
    }
}

/// The client scenario: completed calls succeed, refused ones fail by a 1 ms receive timeout.
pub(super) fn scenario_files() -> Vec<(&'static str, String)> {
    let body = super::invite(super::PCMU)
        + r#"  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="503" optional="true" next="1"/>
  <recv response="200" rtd="true"/>
"# + &super::ack(1)
        + r#"  <pause/>
"# + &super::in_dialog("BYE", 2, "      Content-Length: 0\n")
        + r#"  <recv response="200" crlf="true" next="2"/>
  <label id="1"/>
"# + super::ACK_FAILURE
        + r#"  <recv request="NOTIFY" timeout="1"/>
  <label id="2"/>
"#;
    vec![("overload_uac.xml", super::scenario("overload-uac", &body))]
}

/// One phase's figures.
struct Phase {
    rate: u32,
    offered: u64,
    completed: u64,
    refused: u64,
    /// Of the refused, those the SIP layer answered statelessly (example 20's `shed=`); the
    /// rest reached the manager (an INVITE transaction made, then admission's 503).
    shed: u64,
    other_failures: u64,
    unfinished: u64,
    offered_seconds: f64,
    peak_rss_kib: u64,
    hwm_kib: u64,
    cpu_seconds: f64,
    exit: i32,
}

impl Phase {
    fn completed_per_second(&self) -> f64 {
        self.completed as f64 / self.offered_seconds.max(f64::MIN_POSITIVE)
    }
}

/// Runs both phases and prints them; `Ok(true)` when the verdict is met.
pub(super) fn run(options: &OverloadOptions, example: &Path, dir: &Path) -> Result<bool, String> {
    let capacity = f64::from(options.sessions) * 1000.0 / f64::from(options.hold_ms.max(1));
    let clean_rate = ((capacity * 0.9) as u32).max(1);
    let overload_rate = clean_rate.saturating_mul(options.factor);
    println!(
        "session-core overload: example 20 (--mode auto --max-sessions {}), calls of {} ms, so \
         {capacity:.0} calls/s at most; SIPp offers {clean_rate}/s (clean) then {overload_rate}/s \
         ({}×) for {} s",
        options.sessions, options.hold_ms, options.factor, options.seconds
    );
    println!(
        "machine: {} vCPU, load average {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let hz = clock_ticks();
    let clean = run_phase(
        options,
        example,
        dir,
        "clean",
        clean_rate,
        options.seconds,
        hz,
    )?;
    print_phase("clean", &clean);
    let overload = run_phase(
        options,
        example,
        dir,
        "overload",
        overload_rate,
        options.seconds,
        hz,
    )?;
    print_phase("overload", &overload);

    let share = overload.completed_per_second() / clean.completed_per_second().max(1e-9);
    let rss_bound = clean.peak_rss_kib * 3 / 2 + 16 * 1024;
    let checks = [
        (
            clean.other_failures == 0 && clean.refused == 0 && clean.unfinished == 0,
            "clean phase: every call completed".to_owned(),
        ),
        (
            overload.other_failures == 0 && overload.unfinished == 0,
            format!(
                "overload: no admitted call failed ({} other failures, {} unfinished)",
                overload.other_failures, overload.unfinished
            ),
        ),
        (
            overload.refused > 0,
            format!(
                "overload: the excess refused with 503 ({})",
                thousands(overload.refused)
            ),
        ),
        (
            share >= 0.9,
            format!(
                "overload: completed calls/s {:.0} = {:.0} % of the clean phase's {:.0} (≥ 90 %)",
                overload.completed_per_second(),
                share * 100.0,
                clean.completed_per_second()
            ),
        ),
        (
            overload.peak_rss_kib <= rss_bound,
            format!(
                "overload: peak RSS {} KiB ≤ 1.5 × clean {} KiB + 16 MiB",
                thousands(overload.peak_rss_kib),
                thousands(clean.peak_rss_kib)
            ),
        ),
    ];
    let mut met = true;
    for (ok, what) in &checks {
        println!("  [{}] {what}", if *ok { "met" } else { "MISSED" });
        met &= ok;
    }
    Ok(met)
}

fn run_phase(
    options: &OverloadOptions,
    example: &Path,
    dir: &Path,
    name: &str,
    rate: u32,
    seconds: u32,
    hz: f64,
) -> Result<Phase, String> {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let ctx = Ctx {
        example: example.to_path_buf(),
        scenarios: dir.to_path_buf(),
        work,
    };
    let sessions = options.sessions.to_string();
    let (uas, address) = Example::uas(
        &ctx,
        &[
            "--mode",
            "auto",
            "--max-sessions",
            &sessions,
            "--reserve-calls",
            &sessions,
        ],
    )?;
    let pid = uas.child.id();
    let calls = rate.saturating_mul(seconds);
    // A call lasts its hold plus a few round trips; SIPp's own timers end anything stuck.
    let timeout = u64::from(seconds) + u64::from(options.hold_ms / 1000) + 40;
    let mut command = Command::new("sipp");
    command
        .current_dir(&ctx.work)
        .args(["-sf", &dir.join("overload_uac.xml").to_string_lossy()])
        .arg(address.to_string())
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port()?.to_string(),
            "-nostdin",
        ])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-l", &calls.to_string(), "-d", &options.hold_ms.to_string()])
        .args(["-timeout", &timeout.to_string(), "-timeout_error"])
        // A refused call ends by an expected receive timeout; SIPp's default on an aborted
        // call is to send BYE, which no caller does after a 503 (and which our UA would
        // answer 481 from a server transaction kept 32 s, RFC 3261 §17.2.2).
        .args(["-default_behaviors", "all,-bye"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"]);
    let cpu_before = cpu_ticks(pid);
    let began = Instant::now();
    let mut client = Guard::spawn(command, &ctx.work.join("sipp-uac.log"))?;
    let limit = Duration::from_secs(timeout + 15);
    let label = format!("{name} {rate}/s");
    let mut peak_rss_kib = 0;
    let exit = wait_for_client(&mut client, limit, &label, &ctx.work, calls, began, || {
        peak_rss_kib = peak_rss_kib.max(status_kib(pid, "VmRSS").unwrap_or(0));
    });
    let cpu_seconds = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / hz;
    let hwm_kib = status_kib(pid, "VmHWM").unwrap_or(0);
    let summary = uas.stop()?;
    let stat = last_stat(&ctx.work.join("stat.csv"));
    let count = |name: &str| {
        stat.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let offered = count("OutgoingCall(C)");
    let completed = count("SuccessfulCall(C)");
    let failed = count("FailedCall(C)");
    let refused = count("FailedTimeoutOnRecv(C)");
    Ok(Phase {
        rate,
        shed: summary.count("shed"),
        offered,
        completed,
        refused,
        other_failures: failed.saturating_sub(refused),
        unfinished: offered.saturating_sub(completed + failed),
        offered_seconds: f64::from(calls) / f64::from(rate.max(1)),
        peak_rss_kib,
        hwm_kib,
        cpu_seconds,
        exit,
    })
}

fn print_phase(name: &str, phase: &Phase) {
    println!(
        "  {name:<8} {:>5}/s  offered {:>7}  completed {:>7}  refused (503) {:>7} (stateless \
         {}, by the manager {})  other failures {:>4}  unfinished {:>4}  completed {:>5.0}/s  peak VmRSS {:>7} KiB  VmHWM {:>7} \
         KiB  server CPU {:.1} s  (SIPp exit {})",
        phase.rate,
        thousands(phase.offered),
        thousands(phase.completed),
        thousands(phase.refused),
        thousands(phase.shed),
        thousands(phase.refused.saturating_sub(phase.shed)),
        phase.other_failures,
        phase.unfinished,
        phase.completed_per_second(),
        thousands(phase.peak_rss_kib),
        thousands(phase.hwm_kib),
        phase.cpu_seconds,
        phase.exit,
    );
}
