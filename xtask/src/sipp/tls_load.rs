//! `cargo xtask sipp --load --tls`: what a call costs over an established TLS connection next
//! to the same call over TCP, in one run (issue 14's target: ≤ 1.5× the CPU).
//!
//! **Server.** Each step gets a fresh example 20 (release build) as UAS on free loopback ports:
//! `--mode auto --reserve-calls N --tls-cert … --tls-key …` (answers 200 with SDP at once,
//! signaling only, maps sized up front; UDP and TCP on one port, TLS on another). It is the
//! same server for every client, so the TLS listener's presence costs every step alike.
//!
//! **Clients.** `--tls-calls` calls at `--tls-rate` calls/s, each ended by the caller's BYE at
//! once, from one of:
//! - *ours over TCP*: example 20's UAC, `--call sip:load@UAS --transport tcp`;
//! - *ours over TLS*: the same UAC, `--call sips:load@UAS-TLS --tls-ca CA` (it trusts the test
//!   CA, checks the server's certificate for `127.0.0.1`, and presents none);
//! - *SIPp over TCP*: SIPp 3.6's built-in `uac` with `-t t1` (SIPp 3.6 has no TLS), the
//!   reference the issue names.
//!
//! Each of our UACs keeps one connection to the server for all its calls (connections are
//! reused per transport and peer), as SIPp's `-t t1` does: the TLS handshake happens once per
//! step, a few milliseconds of CPU against the whole step's. The steps of a round run in the
//! order TCP, TLS, SIPp, and the next round reversed, so that the machine's drift hits them
//! alike. The certificates (a test CA and a leaf for IP 127.0.0.1 it signs, P-256) are made
//! with the `openssl` command line at the start of the run.
//!
//! **Figures.** Clean: every call completed (our UAC's `summary:` line, or SIPp's counters and
//! exit code). Server CPU per call: utime + stime of the UAS (`/proc/PID/stat`) across the client
//! run, divided by the calls. Client CPU per call, for our UAC: its utime + stime when it has
//! exited (read before it is reaped), over the calls — start and shutdown included. The table
//! gives each client's mean over the rounds and the ratios TLS / TCP of the server's CPU per call:
//! against our UAC over TCP (the same client, so only the transport differs) and against SIPp
//! over TCP (the wording). The target is met when both are ≤ 1.5.
//!
//! Every process is a child of this one and is stopped on every path; every wait is bounded.

use super::load::{
    Guard, clock_ticks, cpu_ticks, last_stat, load_average, thousands, uac_command, wait_for_client,
};
use super::{Ctx, Example, Summary};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// The target: TLS costs at most this many times TCP's CPU per call.
const TARGET_RATIO: f64 = 1.5;

/// The `--tls` settings.
pub(super) struct TlsLoadOptions {
    pub(super) rate: u32,
    pub(super) calls: u32,
    pub(super) rounds: u32,
}

impl Default for TlsLoadOptions {
    fn default() -> Self {
        Self {
            rate: 500,
            calls: 5_000,
            rounds: 2,
        }
    }
}

/// Who calls the server in a step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    OursTcp,
    OursTls,
    SippTcp,
}

impl Client {
    const ALL: [Self; 3] = [Self::OursTcp, Self::OursTls, Self::SippTcp];

    fn name(self) -> &'static str {
        match self {
            Self::OursTcp => "ours TCP",
            Self::OursTls => "ours TLS",
            Self::SippTcp => "SIPp TCP",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::OursTcp => "ours-tcp",
            Self::OursTls => "ours-tls",
            Self::SippTcp => "sipp-tcp",
        }
    }
}

/// One step's figures.
struct Step {
    client: Client,
    ok: u64,
    clean: bool,
    seconds: f64,
    server_us_per_call: f64,
    /// Our UAC's CPU per call (none for SIPp).
    client_us_per_call: Option<f64>,
}

impl Step {
    fn text(&self, calls: u32) -> String {
        format!(
            "{:<8}  {:>6} of {:>6} ok  {:>5.1} s  server {:>6.1} µs/call  client {:>8}  {}",
            self.client.name(),
            thousands(self.ok),
            thousands(u64::from(calls)),
            self.seconds,
            self.server_us_per_call,
            self.client_us_per_call
                .map_or("-".to_owned(), |us| format!("{us:.1} µs/call")),
            if self.clean { "clean" } else { "NOT CLEAN" }
        )
    }
}

/// The PEM files of a run: the CA, and the server's certificate and key.
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Runs the rounds and prints the table; `Ok(true)` when every step was clean and TLS costs
/// the server at most [`TARGET_RATIO`] × TCP's CPU per call, against both TCP clients.
pub(super) fn run(options: &TlsLoadOptions, example: &Path, dir: &Path) -> Result<bool, String> {
    let hz = clock_ticks();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let certificates = make_certificates(dir)?;
    println!(
        "TLS against TCP: example 20 --mode auto (UAS) called {} times at {}/s per step by our \
         UAC over TCP, our UAC over TLS and SIPp over TCP (-t t1), {} round(s); machine: {} \
         vCPU, load average {}",
        thousands(u64::from(options.calls)),
        options.rate,
        options.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let started = Instant::now();
    let mut steps = Vec::new();
    for round in 0..options.rounds {
        let mut order = Client::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        for client in order {
            let step = step(example, dir, &certificates, client, round, options, hz)?;
            println!("  round {}  {}", round + 1, step.text(options.calls));
            steps.push(step);
        }
    }
    let mean = |client: Client, pick: fn(&Step) -> Option<f64>| {
        let values: Vec<f64> = steps
            .iter()
            .filter(|s| s.client == client)
            .filter_map(pick)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let server = |client| mean(client, |s| Some(s.server_us_per_call)).unwrap_or(0.0);
    let all_clean = steps.iter().all(|s| s.clean);
    println!();
    println!("  client     server µs/call   client µs/call   all clean");
    for client in Client::ALL {
        println!(
            "  {:<9}  {:>14.1}   {:>14}   {}",
            client.name(),
            server(client),
            mean(client, |s| s.client_us_per_call).map_or("-".to_owned(), |us| format!("{us:.1}")),
            if steps.iter().filter(|s| s.client == client).all(|s| s.clean) {
                "yes"
            } else {
                "no"
            }
        );
    }
    let tls = server(Client::OursTls);
    let ratio = |tcp: f64| tls / tcp.max(f64::MIN_POSITIVE);
    let (same_client, sipp) = (
        ratio(server(Client::OursTcp)),
        ratio(server(Client::SippTcp)),
    );
    let met = all_clean && same_client <= TARGET_RATIO && sipp <= TARGET_RATIO;
    println!(
        "  server CPU per call over TLS / over TCP: {same_client:.2}× (both from our UAC), \
         {sipp:.2}× (TCP from SIPp)"
    );
    println!(
        "  [{}] a call over an established TLS connection costs ≤ {TARGET_RATIO}× the CPU of \
         the same call over TCP{}",
        if met { "met" } else { "MISSED" },
        if all_clean {
            ""
        } else {
            " (not every step was clean)"
        }
    );
    println!(
        "({:.0} s; load average now {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(met)
}

/// Makes a test CA and a certificate for IP 127.0.0.1 it signs, with `openssl`, in `dir`.
fn make_certificates(dir: &Path) -> Result<Certificates, String> {
    let path = |name: &str| dir.join(name);
    let certificates = Certificates {
        ca: path("ca.pem"),
        cert: path("server.pem"),
        key: path("server.key"),
    };
    let (ca_key, csr, extensions) = (path("ca.key"), path("server.csr"), path("server.ext"));
    std::fs::write(&extensions, "subjectAltName=IP:127.0.0.1\n")
        .map_err(|e| format!("{}: {e}", extensions.display()))?;
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = Command::new("openssl");
    ca.args([
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=xtask TLS load CA",
    ])
    .args(new_key)
    .arg("-keyout")
    .arg(&ca_key)
    .arg("-out")
    .arg(&certificates.ca);
    let mut request = Command::new("openssl");
    request
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(new_key)
        .arg("-keyout")
        .arg(&certificates.key)
        .arg("-out")
        .arg(&csr);
    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&certificates.ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&extensions)
        .arg("-out")
        .arg(&certificates.cert);
    for mut command in [ca, request, sign] {
        let output = command
            .current_dir(dir)
            .output()
            .map_err(|e| format!("cannot run openssl ({e}): sudo apt-get install openssl"))?;
        if !output.status.success() {
            return Err(format!(
                "openssl failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(certificates)
}

/// One client run against a fresh example 20.
fn step(
    example: &Path,
    dir: &Path,
    certificates: &Certificates,
    client: Client,
    round: u32,
    options: &TlsLoadOptions,
    hz: f64,
) -> Result<Step, String> {
    let work = dir.join(format!("{}-{}", client.dir(), round + 1));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let ctx = Ctx {
        example: example.to_path_buf(),
        scenarios: dir.to_path_buf(),
        work,
    };
    let (cert, key, ca) = (
        certificates.cert.display().to_string(),
        certificates.key.display().to_string(),
        certificates.ca.display().to_string(),
    );
    let reserve = options.calls.min(100_000).to_string();
    let (server, address) = Example::uas(
        &ctx,
        &[
            "--mode",
            "auto",
            "--reserve-calls",
            &reserve,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )?;
    let tls_address = server
        .seen
        .iter()
        .find_map(|line| line.strip_prefix("listening on ")?.split(" tls ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("example 20 printed no TLS address")?
        .to_owned();
    let pid = server.child.id();
    let limit = Duration::from_secs(u64::from(options.calls / options.rate.max(1)) + 60);
    let (calls, rate) = (options.calls.to_string(), options.rate.to_string());
    let cpu_before = cpu_ticks(pid);
    let began = Instant::now();
    let (ok, clean, client_ticks) = match client {
        Client::OursTcp | Client::OursTls => {
            let target = match client {
                Client::OursTls => format!("sips:load@{tls_address}"),
                _ => format!("sip:load@{address}"),
            };
            let mut args = vec!["--call", &target, "--calls", &calls, "--rate", &rate];
            match client {
                Client::OursTls => args.extend(["--tls-ca", &ca]),
                _ => args.extend(["--transport", "tcp"]),
            }
            let uac = Example::spawn(&ctx, &args, "uac.stderr.log")?;
            let (ticks, status, summary) = run_our_uac(uac, limit)?;
            let ok = summary.count("ok");
            (ok, status && ok == u64::from(options.calls), Some(ticks))
        }
        Client::SippTcp => {
            let timeout = limit.as_secs();
            let mut command = uac_command(
                &ctx,
                address.port(),
                options.rate,
                options.calls,
                0,
                timeout,
            )?;
            command.args(["-t", "t1"]);
            let mut sipp = Guard::spawn(command, &ctx.work.join("sipp-uac.log"))?;
            let label = format!("{} round {}", client.name(), round + 1);
            let exit = wait_for_client(
                &mut sipp,
                limit + Duration::from_secs(15),
                &label,
                &ctx.work,
                options.calls,
                began,
                || {},
            );
            let stat = last_stat(&ctx.work.join("stat.csv"));
            let count = |name: &str| {
                stat.iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let ok = count("SuccessfulCall(C)");
            let clean = exit == 0 && count("FailedCall(C)") == 0 && ok == u64::from(options.calls);
            (ok, clean, None)
        }
    };
    let seconds = began.elapsed().as_secs_f64();
    let server_cpu = cpu_ticks(pid).saturating_sub(cpu_before) as f64 / hz;
    server.stop()?;
    let per_call = |seconds: f64| seconds * 1e6 / f64::from(options.calls.max(1));
    Ok(Step {
        client,
        ok,
        clean,
        seconds,
        server_us_per_call: per_call(server_cpu),
        client_us_per_call: client_ticks.map(|ticks| per_call(ticks as f64 / hz)),
    })
}

/// Waits (at most `limit`) for our UAC to close its output, reads its CPU time while it is a
/// zombie (`/proc/PID/stat` still holds the whole process's figures until it is reaped), then
/// reaps it. Returns its CPU ticks, whether it exited 0, and its summary.
fn run_our_uac(mut uac: Example, limit: Duration) -> Result<(u64, bool, Summary), String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match uac.lines.recv_timeout(left) {
            Ok(line) => uac.seen.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("example 20's UAC did not finish within {limit:?}"));
            }
        }
    }
    let ticks = cpu_ticks(uac.child.id());
    let (status, lines) = uac.wait(Duration::from_secs(10))?;
    Ok((ticks, status.success(), Summary::from_lines(&lines)?))
}
