//! `cargo xtask sipp --load --b2bua`: example 20 as a B2BUA under SIPp load (SIPp UAC → ours
//! → SIPp UAS), next to example 20 as a plain UAS at the same rates, in one run.
//!
//! **Servers.** Each step gets a fresh example 20 (release build) on a free loopback port:
//! - *UAS*: `--mode auto --reserve-calls N` (answers at once; signaling only, as in `--load`);
//! - *UAS+RTP*: the same with `--rtp-echo`: an RTP endpoint and a media task per call, the
//!   per-call media cost a B2BUA pays twice;
//! - *B2BUA*: `--mode b2bua=sip:127.0.0.1:PORT --reserve-calls N` in front of `sipp -sn uas` on
//!   PORT: every call is carried to SIPp's UAS as a B leg (INVITE, 200, ACK), the two legs'
//!   RTP endpoints are joined in a bridge, and the caller's BYE ends both legs. Each bridged
//!   call has four RTP sockets (no rtcp-mux offered by SIPp).
//!
//! **Client.** SIPp's built-in `uac` (UDP, `-d 0`), `rate × --b2bua-seconds` calls at each
//! rate, as `--load` runs it. The steps alternate UAS, B2BUA at each rate, rates ascending.
//!
//! **Figures.** Clean: SIPp exits 0, every call successful, none failed. CPU per call: utime +
//! stime of example 20 (`/proc/PID/stat`) across the client run, divided by the calls — the
//! B2BUA's figure covers both legs and the bridge of a call. The ratio B2BUA / UAS is the
//! issue's measure (aim ≤ 2×).

use super::load::{
    Guard, clock_ticks, cpu_ticks, last_stat, load_average, start_sipp_uas, thousands, uac_command,
    wait_for_client,
};
use super::{Ctx, Example};
use std::path::Path;
use std::time::{Duration, Instant};

/// The `--b2bua` settings.
pub(super) struct B2buaLoadOptions {
    pub(super) rates: Vec<u32>,
    pub(super) seconds: u32,
}

impl Default for B2buaLoadOptions {
    fn default() -> Self {
        Self {
            rates: vec![250, 500, 1_000, 2_000],
            seconds: 10,
        }
    }
}

/// One step's figures.
struct Step {
    calls: u32,
    ok: u64,
    failed: u64,
    exit: i32,
    achieved: f64,
    cpu_us_per_call: f64,
}

impl Step {
    fn clean(&self) -> bool {
        self.exit == 0 && self.failed == 0 && self.ok == u64::from(self.calls)
    }

    fn text(&self) -> String {
        format!(
            "{:>6} ok {:>4} failed {:>6.0}/s  {:>5.1} µs/call  {}",
            thousands(self.ok),
            self.failed,
            self.achieved,
            self.cpu_us_per_call,
            if self.clean() { "clean" } else { "NOT CLEAN" }
        )
    }
}

/// Runs every rate for both servers and prints the table; `Ok(true)` when the B2BUA's CPU per
/// call is within 2× the UAS's at every rate both were clean.
pub(super) fn run(options: &B2buaLoadOptions, example: &Path, dir: &Path) -> Result<bool, String> {
    let hz = clock_ticks();
    println!(
        "B2BUA under SIPp load: SIPp uac → example 20 --mode b2bua → SIPp uas, next to example 20 \
         --mode auto (UAS), {} s per step; machine: {} vCPU, load average {}",
        options.seconds,
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let mut met = true;
    let mut rows = Vec::new();
    for &rate in &options.rates {
        let uas = step(example, dir, rate, options.seconds, Server::Uas, hz)?;
        println!("  {rate:>5}/s  UAS      {}", uas.text());
        let rtp = step(example, dir, rate, options.seconds, Server::UasRtp, hz)?;
        println!("  {rate:>5}/s  UAS+RTP  {}", rtp.text());
        let b2bua = {
            let ctx = ctx_for(example, dir, &format!("b2bua-callee-{rate}"))?;
            let callee = start_sipp_uas(&ctx)?;
            let result = step(
                example,
                dir,
                rate,
                options.seconds,
                Server::B2bua(callee.1),
                hz,
            );
            drop(callee);
            result?
        };
        println!("  {rate:>5}/s  B2BUA    {}", b2bua.text());
        rows.push((rate, uas, b2bua, rtp));
    }
    println!();
    println!(
        "  rate/s   UAS µs/call   UAS+RTP µs/call   B2BUA µs/call   B2BUA/UAS   B2BUA/UAS+RTP   all clean"
    );
    for (rate, uas, b2bua, rtp) in &rows {
        let ratio = b2bua.cpu_us_per_call / uas.cpu_us_per_call.max(f64::MIN_POSITIVE);
        let ratio_rtp = b2bua.cpu_us_per_call / rtp.cpu_us_per_call.max(f64::MIN_POSITIVE);
        let all = uas.clean() && b2bua.clean() && rtp.clean();
        if uas.clean() && b2bua.clean() {
            met &= ratio <= 2.0;
        }
        println!(
            "  {rate:>6}   {:>11.1}   {:>15.1}   {:>13.1}   {ratio:>8.2}×   {ratio_rtp:>12.2}×   {}",
            uas.cpu_us_per_call,
            rtp.cpu_us_per_call,
            b2bua.cpu_us_per_call,
            if all { "yes" } else { "no" }
        );
    }
    let highest = |pick: fn(&(u32, Step, Step, Step)) -> &Step| {
        rows.iter()
            .filter(|row| pick(row).clean())
            .map(|row| row.0)
            .max()
            .map_or("none".to_owned(), |r| format!("{r}/s"))
    };
    println!(
        "  highest clean rate tried: UAS {}, B2BUA {}",
        highest(|row| &row.1),
        highest(|row| &row.2)
    );
    println!(
        "  [{}] B2BUA CPU per call ≤ 2× the UAS's at every rate both were clean",
        if met { "met" } else { "MISSED" }
    );
    Ok(met)
}

fn ctx_for(example: &Path, dir: &Path, name: &str) -> Result<Ctx, String> {
    let work = dir.join(name);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    Ok(Ctx {
        example: example.to_path_buf(),
        scenarios: dir.to_path_buf(),
        work,
    })
}

/// Which example 20 a step runs.
#[derive(Clone, Copy)]
enum Server {
    Uas,
    UasRtp,
    /// In front of SIPp's UAS on this port.
    B2bua(u16),
}

/// One client run against a fresh example 20.
fn step(
    example: &Path,
    dir: &Path,
    rate: u32,
    seconds: u32,
    server: Server,
    hz: f64,
) -> Result<Step, String> {
    let (name, mode) = match server {
        Server::Uas => (format!("uas-{rate}"), "auto".to_owned()),
        Server::UasRtp => (format!("uas-rtp-{rate}"), "auto".to_owned()),
        Server::B2bua(port) => (
            format!("b2bua-{rate}"),
            format!("b2bua=sip:127.0.0.1:{port}"),
        ),
    };
    let ctx = ctx_for(example, dir, &name)?;
    let calls = rate.saturating_mul(seconds);
    let reserve = calls.min(100_000).to_string();
    let mut args = vec!["--mode", &mode, "--reserve-calls", &reserve];
    if matches!(server, Server::UasRtp) {
        args.push("--rtp-echo");
    }
    let (server, address) = Example::uas(&ctx, &args)?;
    let pid = server.child.id();
    let timeout = u64::from(seconds) + 40;
    let command = uac_command(&ctx, address.port(), rate, calls, 0, timeout)?;
    let cpu_before = cpu_ticks(pid);
    let began = Instant::now();
    let mut client = Guard::spawn(command, &ctx.work.join("sipp-uac.log"))?;
    let limit = Duration::from_secs(timeout + 15);
    let exit = wait_for_client(&mut client, limit, &name, &ctx.work, calls, began, || {});
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / hz;
    server.stop()?;
    let stat = last_stat(&ctx.work.join("stat.csv"));
    let value = |name: &str| {
        stat.iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
            .trim()
            .to_owned()
    };
    Ok(Step {
        calls,
        ok: value("SuccessfulCall(C)").parse().unwrap_or(0),
        failed: value("FailedCall(C)").parse().unwrap_or(0),
        exit,
        achieved: value("CallRate(C)").parse().unwrap_or(0.0),
        cpu_us_per_call: cpu * 1e6 / f64::from(calls.max(1)),
    })
}
