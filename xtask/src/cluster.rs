//! `cargo xtask cluster`: several example-20 instances behind Kamailio's `dispatcher`, under
//! SIPp load, with one instance killed, one drained and the killed one restarted.
//!
//! Installs nothing: without `sipp` or `kamailio` it prints the `apt-get` command and fails.
//! It builds example 20 (release; `--quick`: the debug build CI has already made), writes a
//! SIPp scenario and a Kamailio configuration into a fresh temporary directory and runs two
//! parts (kept on failure or with `--keep`, deleted otherwise).
//!
//! **The proxy** ([`config_text`]): Kamailio in the foreground on a free loopback UDP port,
//! `dispatcher` with one set of the instances (`--instances N`, default 2), each probed with
//! OPTIONS every second (`ds_ping_interval` 1, `ds_probing_mode` 1: every destination, not
//! only the failed ones; `ds_probing_threshold` and `ds_inactive_threshold` 1: one failed
//! probe takes it out, one answered probe puts it back); an initial INVITE is record-routed
//! and sent to `ds_select_dst` (round robin, or `--algorithm call-load`: the destination with
//! the fewest calls), with the other destinations kept for failover: a branch that times out
//! (tm's `fr_timer`, 1 s) or is answered 503 marks its destination inactive
//! (`ds_mark_dst("ip")`) and the INVITE is sent to the next one (`ds_next_dst`). Requests inside
//! a dialog follow the route set (`loose_route`). The `ctl` module gives `kamcmd` a socket in
//! the run's directory, through which the dispatcher's state is shown.
//!
//! **The client**: SIPp with a UAC scenario that keeps the route set (`rrs`), so that ACK and
//! BYE go through the proxy to the instance that answered (SIPp's built-in `uac` sends them
//! without Route, which a loose router cannot place).
//!
//! **Part 1, capacity** (`--no-capacity` skips it): the highest clean call rate (every call
//! successful, and SIPp's achieved rate at least 90 % of the rate asked) of one instance called directly, of one instance behind the proxy and of N
//! instances behind it: per set-up the rate doubles from `--start-rate` until a step is not
//! clean, then bisects (within 10 %, `--quick` 25 %), at most `--max-steps` steps; the three
//! searches take turns. Each step starts fresh processes and places `rate x --step-seconds`
//! calls with `-d 0`; CPU per call of the proxy (all its processes) and of the instances come
//! from `/proc`, calls per instance from each instance's `summary:` line.
//!
//! **Part 2, failover and drain**: three instances A, B, C behind the proxy (each with its own
//! `--rtp-ports` range and `--drain-grace-ms`, when example 20 has them), SIPp placing
//! `--rate` calls/s of `--call-ms` each; then A is killed (SIGKILL), B is sent SIGTERM (it
//! drains: 503 to new INVITEs and OPTIONS, calls in progress finish, exit 0) and A is started
//! again, `--phase-seconds` apart. Kamailio logs, with its own clock (`$TV(Sn)`), every
//! dispatch, failover, answer, failed in-dialog request and dispatcher state change; from that
//! log come the failover time (until the dispatcher stops choosing A), the calls lost in
//! flight (a BYE to the dead A times out), the calls B refused while draining, and when A gets
//! calls again. The targets, which make the command exit 1 when missed: A is no longer chosen
//! within two probe intervals of the kill, no new call fails after that (SIPp's failed calls
//! are only the calls lost in flight on A), no call is lost by B's drain and B exits 0, and
//! the restarted A answers calls again.
//!
//! Every process started here is stopped on every path (guards: SIGTERM, SIGKILL after a
//! bound; Kamailio's workers too); every wait is bounded.

use crate::util::{self, Outcome, children_of, free_port, load_average, tail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EXAMPLE: &str = "20_sipp_compatibility";
const KAMAILIO_INSTALL: &str = "sudo apt-get install -y --no-install-recommends kamailio";
const SIPP_INSTALL: &str = "sudo apt-get install -y sip-tester";
/// The dispatcher's probe interval (`ds_ping_interval`, whole seconds).
const PROBE_SECONDS: u64 = 1;
/// tm's `fr_timer`: how long a branch (INVITE, BYE, OPTIONS probe) waits for any response.
const FR_TIMER_MS: u64 = 1000;
/// How long an instance or Kamailio may take to start, and an instance to exit after SIGTERM
/// (a draining one waits for its calls).
const START_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(15);
/// The RTP port range of instance `i`: `RTP_BASE + i * RTP_SPAN` and the next `RTP_SPAN - 1`.
const RTP_BASE: u16 = 31_000;
const RTP_SPAN: u16 = 500;

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    RoundRobin,
    CallLoad,
}

impl Algorithm {
    /// The `ds_select_dst` algorithm number.
    fn number(self) -> u32 {
        match self {
            Self::RoundRobin => 4,
            Self::CallLoad => 10,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::CallLoad => "call-load",
        }
    }
}

struct Options {
    instances: u16,
    algorithm: Algorithm,
    quick: bool,
    capacity: bool,
    start_rate: u32,
    max_rate: u32,
    step_seconds: u32,
    max_steps: usize,
    rate: u32,
    call_ms: u64,
    phase_seconds: u64,
    keep: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let quick = args.iter().any(|a| a == "--quick" || a == "--short");
    let mut options = Options {
        instances: 2,
        algorithm: Algorithm::RoundRobin,
        quick,
        capacity: true,
        start_rate: if quick { 100 } else { 200 },
        max_rate: if quick { 1_600 } else { 8_000 },
        step_seconds: if quick { 3 } else { 5 },
        max_steps: if quick { 4 } else { 7 },
        rate: if quick { 40 } else { 80 },
        call_ms: 1_000,
        phase_seconds: if quick { 4 } else { 6 },
        keep: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u32, String> {
            let text = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            text.parse()
                .map_err(|_| format!("{name}: not a number: {text}"))
        };
        match arg.as_str() {
            "--quick" | "--short" => {}
            "--keep" => options.keep = true,
            "--no-capacity" => options.capacity = false,
            "--instances" => {
                options.instances = u16::try_from(number(arg)?.clamp(1, 16)).unwrap_or(2);
            }
            "--algorithm" => {
                options.algorithm = match args.next().map(String::as_str) {
                    Some("round-robin" | "rr") => Algorithm::RoundRobin,
                    Some("call-load") => Algorithm::CallLoad,
                    other => {
                        return Err(format!(
                            "--algorithm: round-robin or call-load, not {other:?}"
                        ));
                    }
                };
            }
            "--start-rate" => options.start_rate = number(arg)?.max(10),
            "--max-rate" => options.max_rate = number(arg)?.max(10),
            "--step-seconds" => options.step_seconds = number(arg)?.clamp(1, 60),
            "--max-steps" => options.max_steps = number(arg)?.clamp(1, 20) as usize,
            "--rate" => options.rate = number(arg)?.clamp(1, 2_000),
            "--call-ms" => options.call_ms = u64::from(number(arg)?.min(20_000)),
            "--phase-seconds" => {
                options.phase_seconds = u64::from(number(arg)?.clamp(3 * PROBE_SECONDS as u32, 60));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// What the run needs from the machine.
struct Tools {
    example: PathBuf,
    kamailio: PathBuf,
    modules: PathBuf,
    /// `kamcmd` when both it and the `ctl` module are here.
    kamcmd: Option<PathBuf>,
    /// Example 20 takes `--rtp-ports` / `--drain-grace-ms`.
    rtp_ports: bool,
    drain_grace: bool,
}

pub(crate) fn run(args: &[String]) -> i32 {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("xtask cluster: {message}");
            return 2;
        }
    };
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("xtask-cluster-{}", std::process::id()));
    let result = find_tools(&options).and_then(|tools| {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("uac.xml"), UAC_SCENARIO)
            .map_err(|e| format!("cannot write the SIPp scenario: {e}"))?;
        run_parts(&options, &tools, &dir)
    });
    let code = match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(error) => {
            eprintln!("xtask cluster: {error}");
            1
        }
    };
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    if code == 0 && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else if dir.exists() {
        println!(
            "configuration, logs and SIPp statistics kept in {}",
            dir.display()
        );
    }
    code
}

fn find_tools(options: &Options) -> Result<Tools, String> {
    let sipp = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if sipp.is_err() {
        return Err(format!(
            "`sipp` is not installed (SIPp 3.6 or newer). Install it with:\n    {SIPP_INSTALL}"
        ));
    }
    let kamailio = find_program("KAMAILIO", "kamailio").ok_or_else(|| {
        format!(
            "`kamailio` is not installed (looked at $KAMAILIO, on PATH, in /usr/sbin and \
             /usr/local/sbin). Install it with:\n    {KAMAILIO_INSTALL}"
        )
    })?;
    let modules = module_dir().ok_or_else(|| {
        format!(
            "cannot find Kamailio's modules (tm.so and dispatcher.so) in /usr/lib/*/kamailio/modules, \
             /usr/lib{{,64}}/kamailio/modules or /usr/local/lib{{,64}}/kamailio/modules; \
             reinstall with:\n    {KAMAILIO_INSTALL}"
        )
    })?;
    let kamcmd = find_program("KAMCMD", "kamcmd").filter(|_| modules.join("ctl.so").is_file());
    let example = build(options.quick)?;
    let help = help_text(&example);
    Ok(Tools {
        example,
        kamailio,
        modules,
        kamcmd,
        rtp_ports: help.contains("--rtp-ports"),
        drain_grace: help.contains("--drain-grace-ms"),
    })
}

/// Builds example 20 (release, or debug for `--quick`) and returns the binary.
fn build(quick: bool) -> Result<PathBuf, String> {
    let profile = if quick { "debug" } else { "release" };
    eprintln!("building example {EXAMPLE} ({profile}) ...");
    let mut command = util::cargo();
    command.args(["build", "--package", "examples2", "--example", EXAMPLE]);
    if !quick {
        command.arg("--release");
    }
    match command.status() {
        Ok(status) if status.success() => Ok(util::target_dir()
            .join(profile)
            .join("examples")
            .join(EXAMPLE)),
        Ok(status) => Err(format!("build failed ({status})")),
        Err(error) => Err(format!("cannot run cargo: {error}")),
    }
}

/// Example 20's `--help` (usage on stdout or stderr), empty if it cannot be run.
fn help_text(example: &Path) -> String {
    let log = std::env::temp_dir().join(format!("xtask-cluster-help-{}.log", std::process::id()));
    let mut command = Command::new(example);
    command.arg("--help");
    let text = match util::run_with_timeout(command, &log, Duration::from_secs(10)) {
        Ok((Outcome::Exited(_), _)) => std::fs::read_to_string(&log).unwrap_or_default(),
        _ => String::new(),
    };
    let _ = std::fs::remove_file(&log);
    text
}

/// `$VAR` if set, else `name` on PATH or in the sbin directories (not on every user's PATH).
fn find_program(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(binary) = std::env::var_os(var) {
        let binary = PathBuf::from(binary);
        return binary.is_file().then_some(binary);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The first usual place of Kamailio's modules holding `tm.so` and `dispatcher.so`: Debian's
/// multiarch directories, then the plain ones.
fn module_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("kamailio").join("modules"))
        .collect();
    candidates.sort();
    candidates.extend(
        [
            "/usr/lib/kamailio/modules",
            "/usr/lib64/kamailio/modules",
            "/usr/local/lib/kamailio/modules",
            "/usr/local/lib64/kamailio/modules",
        ]
        .map(PathBuf::from),
    );
    candidates
        .into_iter()
        .find(|dir| dir.join("tm.so").is_file() && dir.join("dispatcher.so").is_file())
}

fn run_parts(options: &Options, tools: &Tools, dir: &Path) -> Result<bool, String> {
    println!(
        "cluster: example 20 ({}) behind Kamailio's dispatcher ({}, OPTIONS probe every {PROBE_SECONDS} s, \
         fr_timer {FR_TIMER_MS} ms), SIPp UAC keeping the route set, UDP on loopback",
        if options.quick { "debug" } else { "release" },
        options.algorithm.name(),
    );
    println!(
        "machine: {} vCPU, load average {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    if !tools.rtp_ports || !tools.drain_grace {
        println!(
            "note: example 20 takes no {}: run without it",
            [
                (!tools.rtp_ports).then_some("--rtp-ports"),
                (!tools.drain_grace).then_some("--drain-grace-ms"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ")
        );
    }
    if tools.kamcmd.is_none() {
        println!("note: no kamcmd or no ctl module: the dispatcher's state is not shown");
    }
    if options.capacity {
        capacity(options, tools, &dir.join("capacity"))?;
    }
    resilience(options, tools, &dir.join("resilience"))
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// One example-20 instance (UAS), killed on drop if still running.
struct Instance {
    name: String,
    port: u16,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    status: Option<ExitStatus>,
    /// Where its stdout is written once it has stopped (`NAME.stdout.log`).
    stdout_log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What an instance is started with, apart from its address.
struct InstanceFlags<'a> {
    tools: &'a Tools,
    /// Its index, which picks its RTP port range.
    index: u16,
    rtp_echo: bool,
    drain_grace_ms: Option<u64>,
}

impl Instance {
    /// Starts example 20 as UAS on `127.0.0.1:port`, stdout read line by line, stderr into
    /// `work/NAME.stderr.log`; returns once it prints `listening on`.
    fn start(work: &Path, name: &str, port: u16, flags: &InstanceFlags) -> Result<Self, String> {
        let mut args = vec![
            "--bind".to_owned(),
            format!("127.0.0.1:{port}"),
            "--mode".to_owned(),
            "auto".to_owned(),
        ];
        if flags.tools.rtp_ports {
            let low = RTP_BASE + flags.index * RTP_SPAN;
            args.extend([
                "--rtp-ports".to_owned(),
                format!("{low}-{}", low + RTP_SPAN - 1),
            ]);
        }
        if let (Some(grace), true) = (flags.drain_grace_ms, flags.tools.drain_grace) {
            args.extend(["--drain-grace-ms".to_owned(), grace.to_string()]);
        }
        if flags.rtp_echo {
            args.push("--rtp-echo".to_owned());
        }
        let log = work.join(format!("{name}.stderr.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(&flags.tools.example)
            .args(&args)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", flags.tools.example.display()))?;
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take();
        std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        let mut instance = Self {
            name: name.to_owned(),
            port,
            child,
            lines,
            seen: Vec::new(),
            status: None,
            stdout_log: work.join(format!("{name}.stdout.log")),
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match instance.lines.recv_timeout(left) {
                Ok(line) => {
                    let listening = line.starts_with("listening on ");
                    instance.seen.push(line);
                    if listening {
                        return Ok(instance);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "instance {name} (port {port}) did not listen within {START_LIMIT:?}: {}",
                        tail(&log, 5)
                    ));
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
    }

    /// Sends SIGTERM (the instance drains, or shuts down) without waiting.
    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Its exit status once it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.status = Some(status);
        }
        self.status
    }

    /// SIGTERM (unless sent already), the exit within [`STOP_LIMIT`] (SIGKILL after) and its
    /// `summary:` line's counts; an error unless it exits 0 with a summary.
    fn stop(&mut self, already_sent: bool) -> Result<Summary, String> {
        if self.exited().is_none() && !already_sent {
            self.terminate();
        }
        let deadline = Instant::now() + STOP_LIMIT;
        while self.exited().is_none() {
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "instance {} did not exit within {STOP_LIMIT:?} of SIGTERM (killed)",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The reader thread ends at end of file: collect what is left.
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        let Some(status) = self.status else {
            return Err(format!("instance {} did not exit", self.name));
        };
        let mut text = self.seen.join("\n");
        text.push('\n');
        let _ = std::fs::write(&self.stdout_log, text);
        let summary = Summary::from_lines(&self.seen);
        if !status.success() {
            return Err(format!(
                "instance {} exited with {status} after SIGTERM: {}",
                self.name,
                summary.map_or_else(|| "no summary".to_owned(), |s| s.line)
            ));
        }
        summary.ok_or_else(|| format!("instance {} printed no summary", self.name))
    }
}

/// The `key=value` pairs of example 20's `summary:` line.
struct Summary {
    line: String,
    values: BTreeMap<String, String>,
}

impl Summary {
    fn from_lines(lines: &[String]) -> Option<Self> {
        let line = lines
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix("summary: "))?;
        let values = line
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Self {
            line: line.to_owned(),
            values,
        })
    }

    fn count(&self, key: &str) -> u64 {
        self.values
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Kamailio in the foreground with a generated configuration; stopped on drop (SIGTERM, then
/// SIGKILL to it and its workers).
struct Kamailio {
    child: Child,
    port: u16,
    log: PathBuf,
    ctl: PathBuf,
    kamcmd: Option<PathBuf>,
    stopped: bool,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Kamailio {
    /// Writes `kamailio.cfg` and `dispatcher.list` (the instances on `ports`) into `work`,
    /// starts Kamailio on a free port and returns once it has bound it.
    fn start(
        tools: &Tools,
        work: &Path,
        ports: &[u16],
        algorithm: Algorithm,
        log_calls: bool,
    ) -> Result<Self, String> {
        let port = free_port()?;
        let list = work.join("dispatcher.list");
        let ctl = work.join("kamailio_ctl");
        std::fs::write(&list, dispatcher_list(ports))
            .map_err(|e| format!("{}: {e}", list.display()))?;
        let config = work.join("kamailio.cfg");
        let settings = Settings {
            port,
            modules: &tools.modules,
            list: &list,
            ctl: tools.kamcmd.is_some().then_some(ctl.as_path()),
            algorithm,
            log_calls,
        };
        std::fs::write(&config, config_text(&settings))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let log = work.join("kamailio.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(&tools.kamailio)
            .arg("-f")
            .arg(&config)
            // Foreground (-DD: no daemon, workers still forked), log to stderr (-E), 1 GB of
            // shared and 8 MB of private memory, runtime files in `work`.
            .args(["-DD", "-E", "-m", "1024", "-M", "8"])
            .arg("-Y")
            .arg(work)
            .arg("-w")
            .arg(work)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", tools.kamailio.display()))?;
        let mut kamailio = Self {
            child,
            port,
            log,
            ctl,
            kamcmd: tools.kamcmd.clone(),
            stopped: false,
        };
        let deadline = Instant::now() + START_LIMIT;
        while !port_bound(port) {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                kamailio.stopped = true;
                return Err(format!(
                    "Kamailio exited ({status}) before binding:\n{}",
                    tail(&kamailio.log, 20)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "Kamailio did not bind port {port} within {START_LIMIT:?}:\n{}",
                    tail(&kamailio.log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(kamailio)
    }

    /// Its processes: the main one and the workers it forked.
    fn pids(&self) -> Vec<u32> {
        let main = self.child.id();
        let mut pids = vec![main];
        pids.extend(children_of(main));
        pids
    }

    /// `kamcmd dispatcher.list`, condensed to `URI FLAGS` per destination.
    fn dispatcher_state(&self) -> Option<String> {
        let kamcmd = self.kamcmd.as_ref()?;
        let output = Command::new(kamcmd)
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .arg("dispatcher.list")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut parts = Vec::new();
        let mut uri = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(value) = line.strip_prefix("URI:") {
                uri = Some(value.trim().to_owned());
            } else if let (Some(value), Some(uri)) = (line.strip_prefix("FLAGS:"), uri.take()) {
                parts.push(format!("{uri} {}", value.trim()));
            }
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// SIGTERM, then after 5 s SIGKILL to its workers and to it; idempotent.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for child in children_of(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &child.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp client, killed on drop if still running.
struct Sipp {
    child: Child,
    status: Option<ExitStatus>,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Sipp {
    /// SIPp's UAC (our scenario) against `127.0.0.1:port`: `calls` calls at `rate`, each
    /// lasting `call_ms`; statistics in `work/stat.csv`, output in `work/sipp.log`.
    fn start(
        scenario: &Path,
        work: &Path,
        port: u16,
        rate: u32,
        calls: u32,
        call_ms: u64,
        timeout: u64,
    ) -> Result<Self, String> {
        let log = work.join("sipp.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("sipp")
            .current_dir(work)
            .arg(format!("127.0.0.1:{port}"))
            .arg("-sf")
            .arg(scenario)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &free_port()?.to_string(),
                "-nostdin",
            ])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            .args(["-l", &calls.to_string(), "-d", &call_ms.to_string()])
            .args(["-timeout", &timeout.to_string(), "-timeout_error"])
            .args(["-recv_timeout", "8000"])
            // A call that fails is not hung up with a BYE of SIPp's own.
            .args(["-default_behaviors", "all,-bye"])
            .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
            .args(["-trace_err"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start SIPp: {e}"))?;
        Ok(Self {
            child,
            status: None,
        })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.status = Some(status);
        }
        self.status
    }

    /// Waits until it exits, up to `limit` (then kills it); its exit code, −1 when killed.
    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.status = self.child.try_wait().ok().flatten();
                return -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIPp's counters from the last line of its `-trace_stat` file.
struct SippStats {
    values: Vec<(String, String)>,
}

impl SippStats {
    fn read(work: &Path) -> Self {
        let text = std::fs::read_to_string(work.join("stat.csv")).unwrap_or_default();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let values = match (lines.next(), lines.next_back()) {
            (Some(header), Some(last)) => header
                .split(';')
                .zip(last.split(';'))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect(),
            _ => Vec::new(),
        };
        Self { values }
    }

    fn text(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> u64 {
        self.text(name).parse().unwrap_or(0)
    }

    fn rate(&self) -> f64 {
        self.text("CallRate(C)").parse().unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: capacity
// ---------------------------------------------------------------------------------------------

/// Who answers the calls of a capacity step.
#[derive(Clone, Copy)]
enum Setup {
    Direct,
    Proxy(u16),
}

impl Setup {
    fn label(self) -> String {
        match self {
            Self::Direct => "1 instance, direct".to_owned(),
            Self::Proxy(1) => "1 instance via proxy".to_owned(),
            Self::Proxy(n) => format!("{n} instances via proxy"),
        }
    }

    fn slug(self) -> String {
        match self {
            Self::Direct => "direct".to_owned(),
            Self::Proxy(n) => format!("proxy{n}"),
        }
    }
}

struct Step {
    rate: u32,
    calls: u32,
    ok: u64,
    failed: u64,
    achieved: f64,
    exit: i32,
    /// CPU per call in µs: the proxy (all processes), the instances together.
    proxy_us: Option<f64>,
    instances_us: f64,
    /// Calls answered per instance (their summaries).
    answered: Vec<u64>,
    /// An instance that did not stop cleanly.
    problem: Option<String>,
}

impl Step {
    /// Every call successful, at (nearly) the rate asked: SIPp starved of CPU places its
    /// calls late, and then the step did not show that rate.
    fn clean(&self) -> bool {
        self.exit == 0
            && self.problem.is_none()
            && self.failed == 0
            && self.ok == u64::from(self.calls)
            && self.achieved >= 0.9 * f64::from(self.rate)
    }
}

struct Search {
    setup: Setup,
    clean: Option<u32>,
    unclean: Option<u32>,
    steps: Vec<Step>,
}

impl Search {
    fn next(&self, options: &Options) -> Option<u32> {
        if self.steps.len() >= options.max_steps {
            return None;
        }
        let tolerance = if options.quick { 4 } else { 10 };
        let next = match (self.clean, self.unclean) {
            (None, None) => options.start_rate.min(options.max_rate),
            (Some(clean), None) if clean >= options.max_rate => return None,
            (Some(clean), None) => clean.saturating_mul(2).min(options.max_rate),
            (None, Some(unclean)) if unclean <= 20 => return None,
            (None, Some(unclean)) => round_rate(unclean / 2),
            (Some(clean), Some(unclean)) => {
                if unclean - clean <= (clean / tolerance).max(20) {
                    return None;
                }
                round_rate(clean + (unclean - clean) / 2)
            }
        };
        (!self.steps.iter().any(|s| s.rate == next)).then_some(next)
    }

    fn record(&mut self, step: Step) {
        if step.clean() {
            self.clean = Some(self.clean.map_or(step.rate, |c| c.max(step.rate)));
        } else {
            self.unclean = Some(self.unclean.map_or(step.rate, |u| u.min(step.rate)));
        }
        self.steps.push(step);
    }

    fn best(&self) -> Option<&Step> {
        let clean = self.clean?;
        self.steps.iter().find(|s| s.rate == clean)
    }
}

/// Rounds a rate to 10 calls/s (50 above 1,000).
fn round_rate(rate: u32) -> u32 {
    let unit = if rate > 1_000 { 50 } else { 10 };
    ((rate + unit / 2) / unit * unit).max(unit)
}

fn capacity(options: &Options, tools: &Tools, dir: &Path) -> Result<(), String> {
    println!();
    println!(
        "part 1: capacity, the highest clean rate (every call successful) per set-up; steps of \
         {} s from {}/s, at most {} per set-up, -d 0",
        options.step_seconds, options.start_rate, options.max_steps
    );
    let mut searches: Vec<Search> = [
        Setup::Direct,
        Setup::Proxy(1),
        Setup::Proxy(options.instances),
    ]
    .into_iter()
    .map(|setup| Search {
        setup,
        clean: None,
        unclean: None,
        steps: Vec::new(),
    })
    .collect();
    let hz = util::clock_ticks();
    let mut round = 0;
    loop {
        let mut any = false;
        let count = searches.len();
        for turn in 0..count {
            let search = &mut searches[(turn + round) % count];
            let Some(rate) = search.next(options) else {
                continue;
            };
            any = true;
            let work = dir.join(format!("{}-{rate}", search.setup.slug()));
            std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
            let step = capacity_step(options, tools, dir, &work, search.setup, rate, hz)?;
            println!(
                "  {:<24} {:>5}/s  ok {:>6}  failed {:>4}  {:>6.0} calls/s  proxy {:>5}  \
                 instances {:>5.0} µs/call  answered {:<16} {}",
                search.setup.label(),
                step.rate,
                step.ok,
                step.failed,
                step.achieved,
                step.proxy_us
                    .map_or_else(|| "-".to_owned(), |us| format!("{us:.0} µs")),
                step.instances_us,
                step.answered
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("+"),
                if step.clean() { "clean" } else { "NOT CLEAN" },
            );
            if let Some(problem) = &step.problem {
                println!("      {problem}");
            }
            search.record(step);
        }
        round += 1;
        if !any {
            break;
        }
    }
    println!();
    println!(
        "  {:<24} {:>11} {:>10} {:>15} {:>18}  calls per instance",
        "set-up", "clean rate", "achieved", "proxy CPU", "instances' CPU"
    );
    for search in &searches {
        match search.best() {
            Some(step) => println!(
                "  {:<24} {:>9}/s {:>8.0}/s {:>15} {:>10.0} µs/call  {}",
                search.setup.label(),
                step.rate,
                step.achieved,
                step.proxy_us
                    .map_or_else(|| "-".to_owned(), |us| format!("{us:.0} µs/call")),
                step.instances_us,
                step.answered
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            None => println!(
                "  {:<24} {:>11}",
                search.setup.label(),
                format!("< {}/s", options.start_rate)
            ),
        }
    }
    Ok(())
}

fn capacity_step(
    options: &Options,
    tools: &Tools,
    dir: &Path,
    work: &Path,
    setup: Setup,
    rate: u32,
    hz: f64,
) -> Result<Step, String> {
    let count = match setup {
        Setup::Direct => 1,
        Setup::Proxy(n) => n,
    };
    let mut instances = Vec::new();
    for index in 0..count {
        let flags = InstanceFlags {
            tools,
            index,
            rtp_echo: false,
            // A step's calls are over when SIPp is: no drain to wait for.
            drain_grace_ms: Some(0),
        };
        let name = format!("i{}", index + 1);
        instances.push(Instance::start(work, &name, free_port()?, &flags)?);
    }
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let mut proxy = match setup {
        Setup::Direct => None,
        Setup::Proxy(_) => Some(Kamailio::start(
            tools,
            work,
            &ports,
            options.algorithm,
            false,
        )?),
    };
    let target = proxy.as_ref().map_or(ports[0], |p| p.port);
    let calls = rate.saturating_mul(options.step_seconds);
    let timeout = u64::from(options.step_seconds) + 20;
    let instance_pids: Vec<u32> = instances.iter().map(Instance::pid).collect();
    let proxy_pids = proxy.as_ref().map(Kamailio::pids).unwrap_or_default();
    let cpu = |pids: &[u32]| pids.iter().map(|&pid| util::cpu_ticks(pid)).sum::<u64>();
    let (instances_before, proxy_before) = (cpu(&instance_pids), cpu(&proxy_pids));
    let began = Instant::now();
    let scenario = dir.parent().unwrap_or(dir).join("uac.xml");
    let mut sipp = Sipp::start(&scenario, work, target, rate, calls, 0, timeout)?;
    let label = format!("{} {rate}/s", setup.label());
    let exit = loop {
        if let Some(status) = sipp.exited() {
            break status.code().unwrap_or(-1);
        }
        if began.elapsed() >= Duration::from_secs(timeout + 10) {
            break sipp.wait(Duration::ZERO);
        }
        progress(&label, work, calls, began);
        std::thread::sleep(Duration::from_millis(250));
    };
    clear_progress();
    let (instances_after, proxy_after) = (cpu(&instance_pids), cpu(&proxy_pids));
    if let Some(proxy) = &mut proxy {
        proxy.stop();
    }
    let mut answered = Vec::new();
    let mut problem = None;
    for instance in &mut instances {
        match instance.stop(false) {
            Ok(summary) => answered.push(summary.count("answered")),
            Err(error) => problem = Some(error),
        }
    }
    let stats = SippStats::read(work);
    let per_call = |ticks: u64| ticks as f64 / hz * 1e6 / f64::from(calls.max(1));
    Ok(Step {
        rate,
        calls,
        ok: stats.count("SuccessfulCall(C)"),
        failed: stats.count("FailedCall(C)"),
        achieved: stats.rate(),
        exit,
        proxy_us: proxy
            .is_some()
            .then(|| per_call(proxy_after.saturating_sub(proxy_before))),
        instances_us: per_call(instances_after.saturating_sub(instances_before)),
        answered,
        problem,
    })
}

// ---------------------------------------------------------------------------------------------
// Part 2: failover, drain, restart
// ---------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch, the clock of Kamailio's `$TV(Sn)`.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// When each event of the run happened (Unix seconds).
struct Timeline {
    start: f64,
    kill: f64,
    drain: f64,
    drained: Option<f64>,
    restart: f64,
    end: f64,
}

fn resilience(options: &Options, tools: &Tools, work: &Path) -> Result<bool, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let phase = Duration::from_secs(options.phase_seconds);
    let grace_ms = (options.call_ms * 3).max(5_000);
    println!();
    println!(
        "part 2: failover and drain: instances A, B, C behind the proxy, {} calls/s of {} ms; \
         A killed (SIGKILL) after {} s, B sent SIGTERM {} s later (drain grace {grace_ms} ms), \
         A started again {} s later, calls for {} s more",
        options.rate,
        options.call_ms,
        options.phase_seconds,
        options.phase_seconds,
        options.phase_seconds,
        options.phase_seconds
    );
    let names = ["A", "B", "C"];
    let mut ports = Vec::new();
    for _ in 0..20 {
        let port = free_port()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
        if ports.len() == names.len() {
            break;
        }
    }
    if ports.len() < names.len() {
        return Err("no three distinct free ports".to_owned());
    }
    let flags = |index: u16| InstanceFlags {
        tools,
        index,
        rtp_echo: true,
        drain_grace_ms: Some(grace_ms),
    };
    let mut instances: Vec<Instance> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let index = index as u16;
        instances.push(Instance::start(
            work,
            name,
            ports[usize::from(index)],
            &flags(index),
        )?);
    }
    let mut proxy = Kamailio::start(tools, work, &ports, options.algorithm, true)?;
    let total = options.phase_seconds * 4;
    let calls = options.rate.saturating_mul(total as u32);
    let timeout = total + options.call_ms / 1000 + 30;
    let began = Instant::now();
    let start = now();
    let scenario = work.parent().unwrap_or(work).join("uac.xml");
    let mut sipp = Sipp::start(
        &scenario,
        work,
        proxy.port,
        options.rate,
        calls,
        options.call_ms,
        timeout,
    )?;
    let mut states = Vec::new();
    let wait_until = |at: Duration, sipp: &mut Sipp| -> Result<(), String> {
        while began.elapsed() < at {
            if let Some(status) = sipp.exited() {
                return Err(format!(
                    "SIPp exited early ({status}): {}",
                    tail(&work.join("sipp.log"), 10)
                ));
            }
            progress("failover run", work, calls, began);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    let state_after = |proxy: &Kamailio, what: &str, states: &mut Vec<String>| {
        if let Some(state) = proxy.dispatcher_state() {
            states.push(format!("{what}: {state}"));
        }
    };
    // Warm: all three take calls.
    wait_until(phase, &mut sipp)?;
    state_after(&proxy, "before the kill", &mut states);
    instances[0].kill();
    let kill = now();
    wait_until(
        phase + Duration::from_secs(2 * PROBE_SECONDS) + Duration::from_millis(200),
        &mut sipp,
    )?;
    state_after(&proxy, "2 probe intervals after the kill", &mut states);
    wait_until(phase * 2, &mut sipp)?;
    instances[1].terminate();
    let drain = now();
    let mut drained = None;
    let restart_at = phase * 3;
    while began.elapsed() < restart_at {
        if drained.is_none() && instances[1].exited().is_some() {
            drained = Some(now());
        }
        wait_until(began.elapsed() + Duration::from_millis(20), &mut sipp)?;
    }
    state_after(&proxy, "before the restart", &mut states);
    let restarted = Instance::start(work, "A-restarted", ports[0], &flags(0))?;
    let restart = now();
    instances.push(restarted);
    wait_until(
        phase * 3 + Duration::from_secs(2 * PROBE_SECONDS) + Duration::from_millis(200),
        &mut sipp,
    )?;
    state_after(&proxy, "2 probe intervals after the restart", &mut states);
    while sipp.exited().is_none() && began.elapsed() < Duration::from_secs(timeout + 10) {
        if drained.is_none() && instances[1].exited().is_some() {
            drained = Some(now());
        }
        progress("failover run", work, calls, began);
        std::thread::sleep(Duration::from_millis(20));
    }
    clear_progress();
    let sipp_exit = sipp.wait(Duration::from_secs(1));
    let end = now();
    if drained.is_none() && instances[1].exited().is_some() {
        drained = Some(now());
    }
    // B first (SIGTERM already sent), then C and the restarted A.
    let b = instances[1].stop(true);
    let c = instances[2].stop(false);
    let a2 = instances[3].stop(false);
    proxy.stop();
    let stats = SippStats::read(work);
    let log =
        std::fs::read_to_string(&proxy.log).map_err(|e| format!("{}: {e}", proxy.log.display()))?;
    let timeline = Timeline {
        start,
        kill,
        drain,
        drained,
        restart,
        end,
    };
    let ports = Ports {
        a: ports[0],
        b: ports[1],
        c: ports[2],
    };
    let report = Report::new(&parse_log(&log), &ports);
    for state in &states {
        println!("  dispatcher ({state})");
    }
    let summaries = [("B", &b), ("C", &c), ("A restarted", &a2)];
    Ok(report.print(&stats, sipp_exit, &timeline, &summaries))
}

struct Ports {
    a: u16,
    b: u16,
    c: u16,
}

/// One line the proxy logged: what, when (Unix seconds), the Call-ID and the rest.
struct Logged {
    kind: String,
    at: f64,
    rest: Vec<String>,
}

fn parse_log(text: &str) -> Vec<Logged> {
    text.lines()
        .filter_map(|line| {
            let (_, message) = line.split_once("<script>: ")?;
            let mut words = message.split_whitespace();
            let kind = words.next()?.to_owned();
            let at = words.next()?.parse::<f64>().ok()?;
            Some(Logged {
                kind,
                at,
                rest: words.map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// The loopback port in a SIP URI or `IP:PORT` (the last `127.0.0.1:` in `text`).
fn port_in(text: &str) -> Option<u16> {
    let (_, rest) = text.rsplit_once("127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// One call as the proxy saw it.
#[derive(Default)]
struct CallSeen {
    /// When its INVITE was first dispatched, and to which port.
    first: Option<(f64, u16)>,
    /// The destination currently tried.
    current: Option<u16>,
    /// (time, port, status) of each failed branch.
    failed: Vec<(f64, u16, String)>,
    answered: Option<(f64, u16)>,
    gave_up: Option<(f64, String)>,
    /// A request inside the dialog that failed: (time, port, method, status).
    lost: Option<(f64, u16, String, String)>,
}

struct Report {
    calls: BTreeMap<String, CallSeen>,
    /// (time, port) of each dispatcher state change.
    down: Vec<(f64, u16)>,
    up: Vec<(f64, u16)>,
    /// (time, port) of each first choice and retry.
    chosen: Vec<(f64, u16)>,
    ports: [u16; 3],
}

impl Report {
    fn new(logged: &[Logged], ports: &Ports) -> Self {
        let mut calls: BTreeMap<String, CallSeen> = BTreeMap::new();
        let (mut down, mut up, mut chosen) = (Vec::new(), Vec::new(), Vec::new());
        for line in logged {
            let word = |i: usize| line.rest.get(i).map_or("", String::as_str);
            match line.kind.as_str() {
                "DSTDOWN" | "DSTUP" => {
                    // `$ru $du`: the destination is `$du` when set (a request's failure marked
                    // it), else `$ru` (a probe's answer did).
                    if let Some(port) = line.rest.iter().rev().find_map(|w| port_in(w)) {
                        if line.kind == "DSTDOWN" {
                            down.push((line.at, port));
                        } else {
                            up.push((line.at, port));
                        }
                    }
                }
                "DISPATCH" | "RETRY" => {
                    let Some(port) = port_in(word(1)) else {
                        continue;
                    };
                    let call = calls.entry(word(0).to_owned()).or_default();
                    if call.first.is_none() {
                        call.first = Some((line.at, port));
                    }
                    call.current = Some(port);
                    chosen.push((line.at, port));
                }
                "FAILED" => {
                    let call = calls.entry(word(0).to_owned()).or_default();
                    if let Some(port) = call.current {
                        call.failed.push((line.at, port, word(1).to_owned()));
                    }
                }
                "GIVEUP" => {
                    let call = calls.entry(word(0).to_owned()).or_default();
                    call.gave_up.get_or_insert((line.at, word(1).to_owned()));
                }
                "ANSWER" => {
                    let Some(port) = port_in(word(1)) else {
                        continue;
                    };
                    let call = calls.entry(word(0).to_owned()).or_default();
                    call.answered.get_or_insert((line.at, port));
                }
                "LOST" => {
                    let Some(port) = port_in(word(3)) else {
                        continue;
                    };
                    let call = calls.entry(word(0).to_owned()).or_default();
                    call.lost.get_or_insert((
                        line.at,
                        port,
                        word(1).to_owned(),
                        word(2).to_owned(),
                    ));
                }
                _ => {}
            }
        }
        Self {
            calls,
            down,
            up,
            chosen,
            ports: [ports.a, ports.b, ports.c],
        }
    }

    /// Prints the report; true when every target is met.
    fn print(
        &self,
        stats: &SippStats,
        sipp_exit: i32,
        t: &Timeline,
        summaries: &[(&str, &Result<Summary, String>)],
    ) -> bool {
        let [a, b, c] = self.ports;
        let ms = |from: f64, to: f64| ((to - from) * 1000.0).round() as i64;
        let window = 2.0 * PROBE_SECONDS as f64;
        let mut met = true;
        let mut verdict = |ok: bool, text: String| {
            met &= ok;
            println!("  {}  {text}", if ok { "ok  " } else { "MISS" });
        };

        // Calls per instance and window.
        let windows = [
            ("before the kill", t.start, t.kill),
            ("A killed", t.kill, t.drain),
            ("B draining", t.drain, t.restart),
            ("A restarted", t.restart, t.end + 60.0),
        ];
        println!(
            "  SIPp: {} calls placed, {} successful, {} failed (exit {sipp_exit}); {:.0} calls/s",
            stats.count("OutgoingCall(C)"),
            stats.count("SuccessfulCall(C)"),
            stats.count("FailedCall(C)"),
            stats.rate()
        );
        println!("  calls answered per instance (proxy's log, by the 200's source), per window:");
        println!("    {:<18} {:>6} {:>6} {:>6}", "window", "A", "B", "C");
        for (name, from, to) in windows {
            let count = |port: u16| {
                self.calls
                    .values()
                    .filter_map(|call| call.answered)
                    .filter(|&(at, p)| p == port && at >= from && at < to)
                    .count()
            };
            println!(
                "    {name:<18} {:>6} {:>6} {:>6}",
                count(a),
                count(b),
                count(c)
            );
        }
        for (name, summary) in summaries {
            match summary {
                Ok(summary) => println!("    {name}'s summary: {}", summary.line),
                Err(error) => println!("    {name}: {error}"),
            }
        }

        // The kill.
        let down_a = self
            .down
            .iter()
            .find(|&&(at, port)| port == a && at >= t.kill && at < t.restart)
            .map(|&(at, _)| ms(t.kill, at));
        let last_a = self
            .chosen
            .iter()
            .filter(|&&(at, port)| port == a && at >= t.kill && at < t.restart)
            .map(|&(at, _)| at)
            .fold(None, |last: Option<f64>, at| {
                Some(last.map_or(at, |l| l.max(at)))
            });
        let retried_a = self
            .calls
            .values()
            .filter(|call| {
                call.failed
                    .iter()
                    .any(|&(at, port, _)| port == a && at >= t.kill && at < t.restart)
            })
            .count();
        let lost_a: Vec<&CallSeen> = self
            .calls
            .values()
            .filter(|call| {
                call.lost
                    .as_ref()
                    .is_some_and(|(at, port, ..)| *port == a && *at >= t.kill && *at < t.restart)
            })
            .collect();
        // Calls A had taken but not yet answered when it died (it sent a provisional response,
        // so no failover): they end by SIPp's own timeout.
        let lost_setup_a = self
            .calls
            .values()
            .filter(|call| {
                call.current == Some(a)
                    && call.first.is_some_and(|(at, _)| at < t.kill)
                    && call.answered.is_none()
                    && call.gave_up.is_none()
            })
            .count();
        let gave_up: Vec<(f64, &str)> = self
            .calls
            .values()
            .filter_map(|call| {
                let (at, code) = call.gave_up.as_ref()?;
                Some((call.first.map_or(*at, |(first, _)| first), code.as_str()))
            })
            .collect();
        let late_failures = gave_up
            .iter()
            .filter(|(first, _)| *first >= t.kill + window)
            .count();
        println!("  A killed (SIGKILL) at +{} ms:", ms(t.start, t.kill));
        println!(
            "    dispatcher marked A down {} after the kill; last new call sent to A {} after it",
            down_a.map_or_else(|| "never".to_owned(), |d| format!("+{d} ms")),
            last_a.map_or_else(|| "none".to_owned(), |l| format!("+{} ms", ms(t.kill, l)))
        );
        println!(
            "    {retried_a} INVITEs sent to the dead A were retried on another instance (each \
             after fr_timer {FR_TIMER_MS} ms); {} calls lost in flight (established on A: their \
             BYE timed out){}",
            lost_a.len(),
            if lost_setup_a > 0 {
                format!(", and {lost_setup_a} A had taken but not answered")
            } else {
                String::new()
            }
        );
        // Out of rotation: marked down, and no new call sent to it after that.
        let limit_ms = (window * 1000.0) as i64;
        let failover_ms = down_a.map(|d| d.max(last_a.map_or(0, |l| ms(t.kill, l))));
        verdict(
            failover_ms.is_some_and(|f| f <= limit_ms),
            format!(
                "failover: A out of rotation within 2 probe intervals ({limit_ms} ms) of the \
                 kill: {}",
                failover_ms.map_or_else(|| "never marked down".to_owned(), |f| format!("{f} ms"))
            ),
        );
        verdict(
            late_failures == 0,
            format!(
                "new calls after 2 probe intervals all succeed: {late_failures} failed ({} \
                 failed in all, {} of them within 2 intervals of the kill)",
                gave_up.len(),
                gave_up.len() - late_failures
            ),
        );

        // The drain.
        let lost_b = self
            .calls
            .values()
            .filter(|call| call.lost.as_ref().is_some_and(|(_, port, ..)| *port == b))
            .count();
        let refused_b = self
            .calls
            .values()
            .filter(|call| {
                call.failed
                    .iter()
                    .any(|(at, port, code)| *port == b && *at >= t.drain && code == "503")
            })
            .count();
        let down_b = self
            .down
            .iter()
            .find(|&&(at, port)| port == b && at >= t.drain)
            .map(|&(at, _)| ms(t.drain, at));
        let last_b = self
            .calls
            .values()
            .filter_map(|call| call.answered)
            .filter(|&(at, port)| port == b && at >= t.drain)
            .map(|(at, _)| ms(t.drain, at))
            .max();
        println!("  B sent SIGTERM at +{} ms:", ms(t.start, t.drain));
        println!(
            "    B exited {} after SIGTERM; dispatcher marked B down {}; {refused_b} INVITEs \
             refused by B with 503 and retried on another instance; last call answered by B \
             {}",
            t.drained.map_or_else(
                || "(not seen)".to_owned(),
                |d| format!("{} ms", ms(t.drain, d))
            ),
            down_b.map_or_else(|| "never".to_owned(), |d| format!("+{d} ms")),
            last_b.map_or_else(|| "before SIGTERM".to_owned(), |l| format!("+{l} ms"))
        );
        let b_summary = summaries
            .first()
            .and_then(|(_, summary)| summary.as_ref().ok());
        // Calls the drain's grace ran out on (example 20's `drain_ended`).
        let ended_b = b_summary.map_or(0, |s| s.count("drain_ended"));
        verdict(
            lost_b == 0 && ended_b == 0 && b_summary.is_some(),
            format!(
                "drain: no call lost ({lost_b} in-dialog requests failed, {ended_b} calls ended \
                 by the grace), B {}",
                if b_summary.is_some() {
                    "exited 0"
                } else {
                    "did not exit 0 with a summary"
                }
            ),
        );

        // The restart.
        let up_a = self
            .up
            .iter()
            .find(|&&(at, port)| port == a && at >= t.restart - 0.5)
            .map(|&(at, _)| ms(t.restart, at));
        let back: Vec<f64> = self
            .calls
            .values()
            .filter_map(|call| call.answered)
            .filter(|&(at, port)| port == a && at >= t.restart)
            .map(|(at, _)| at)
            .collect();
        let first_back = back.iter().copied().fold(None, |first: Option<f64>, at| {
            Some(first.map_or(at, |f| f.min(at)))
        });
        println!("  A started again at +{} ms:", ms(t.start, t.restart));
        println!(
            "    dispatcher marked A up {}; first call answered by A {}; {} calls answered by A since",
            up_a.map_or_else(|| "never".to_owned(), |u| format!("+{u} ms")),
            first_back.map_or_else(
                || "never".to_owned(),
                |f| format!("+{} ms", ms(t.restart, f))
            ),
            back.len()
        );
        verdict(
            !back.is_empty(),
            format!("restart: A gets calls again ({} answered)", back.len()),
        );

        // Every failed call accounted for.
        let failed = stats.count("FailedCall(C)");
        let explained = (lost_a.len() + lost_setup_a + gave_up.len() - late_failures) as u64;
        verdict(
            failed <= explained && sipp_exit >= 0,
            format!(
                "SIPp's failed calls ({failed}) are only calls lost in flight on A and new calls \
                 within 2 intervals of the kill ({explained})"
            ),
        );
        met
    }
}

// ---------------------------------------------------------------------------------------------
// Kamailio's configuration
// ---------------------------------------------------------------------------------------------

/// One destination per instance, set 1, no flags (active; probed, since `ds_probing_mode` is 1),
/// priority 0, and a `duid` for the call-load algorithm.
fn dispatcher_list(ports: &[u16]) -> String {
    let mut text = String::from("# setid destination flags priority attributes\n");
    for (index, port) in ports.iter().enumerate() {
        text.push_str(&format!("1 sip:127.0.0.1:{port} 0 0 duid=i{}\n", index + 1));
    }
    text
}

struct Settings<'a> {
    port: u16,
    modules: &'a Path,
    list: &'a Path,
    /// Where the `ctl` module listens for `kamcmd`, when it is loaded.
    ctl: Option<&'a Path>,
    algorithm: Algorithm,
    /// Log every dispatch, failover, answer and lost in-dialog request (part 2).
    log_calls: bool,
}

/// The proxy's configuration (see the module's documentation and docs/DEPLOYMENT.md).
fn config_text(s: &Settings) -> String {
    let port = s.port;
    let modules = s.modules.display();
    let list = s.list.display();
    let algorithm = s.algorithm.number();
    let call_load = s.algorithm == Algorithm::CallLoad;
    let log = |text: &str| {
        if s.log_calls {
            format!("xlog(\"L_NOTICE\", \"{text}\\n\");")
        } else {
            String::new()
        }
    };
    let (ctl_load, ctl_param) = match s.ctl {
        Some(path) => (
            "loadmodule \"ctl.so\"\n".to_owned(),
            format!(
                "# kamcmd -s unix:{0} dispatcher.list\nmodparam(\"ctl\", \"binrpc\", \"unix:{0}\")\n",
                path.display()
            ),
        ),
        None => (String::new(), String::new()),
    };
    let load_params = if call_load {
        "# Call-load distribution (algorithm 10): calls per destination, by Call-ID.\n\
         modparam(\"dispatcher\", \"ds_hash_size\", 10)\n"
    } else {
        ""
    };
    let load_bye = if call_load {
        "            if (method == \"BYE\") {\n                ds_load_update();\n            }\n"
    } else {
        ""
    };
    let load_reply = if call_load {
        "    if (status =~ \"^2\") {\n        ds_load_update();\n    } else if (status =~ \"^[3-6]\") {\n        ds_load_unset();\n    }\n"
    } else {
        ""
    };
    let dispatch = log("DISPATCH $TV(Sn) $ci $du");
    let retry = log("RETRY $TV(Sn) $ci $du");
    let failed = log("FAILED $TV(Sn) $ci $T_reply_code");
    let giveup = log("GIVEUP $TV(Sn) $ci $T_reply_code");
    let answer = if s.log_calls {
        format!(
            "    if ($rm == \"INVITE\" && status =~ \"^2\") {{\n        {}\n    }}\n",
            log("ANSWER $TV(Sn) $ci $si:$sp")
        )
    } else {
        String::new()
    };
    // Replies to INVITEs: logged, and counted by the call-load algorithm (an empty route is a
    // syntax error: none then).
    let (reply_route, (arm_reply, arm_retry)) = if answer.is_empty() && load_reply.is_empty() {
        (String::new(), ("", ""))
    } else {
        (
            format!("\nonreply_route[REPLY] {{\n{answer}{load_reply}}}\n"),
            (
                "    t_on_reply(\"REPLY\");\n",
                "            t_on_reply(\"REPLY\");\n",
            ),
        )
    };
    let lost = if s.log_calls {
        log("LOST $TV(Sn) $ci $rm $T_reply_code $ru")
    } else {
        // Not logging: nothing to do (an empty block is a syntax error).
        "return;".to_owned()
    };
    let events = if s.log_calls {
        format!(
            "\nevent_route[dispatcher:dst-down] {{\n    {}\n}}\n\n\
             event_route[dispatcher:dst-up] {{\n    {}\n}}\n",
            log("DSTDOWN $TV(Sn) $ru $du"),
            log("DSTUP $TV(Sn) $ru $du")
        )
    } else {
        String::new()
    };
    format!(
        r#"#!KAMAILIO
# Generated by `cargo xtask cluster` (xtask/src/cluster.rs): a load balancer in front of
# example-20 instances. Run in the foreground: kamailio -f THIS -DD -E -m 1024 -M 8.

debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
listen=udp:127.0.0.1:{port}

loadpath "{modules}"
loadmodule "tm.so"
# $T_reply_code
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "maxfwd.so"
loadmodule "dispatcher.so"
{ctl_load}
# A branch with no response at all within 1 s has failed (a dead instance): the INVITE goes
# to the next instance, the BYE is answered 408, the OPTIONS probe counts as failed.
modparam("tm", "fr_timer", {FR_TIMER_MS})
# Record-Route as <sip:127.0.0.1:{port};lr;...>.
modparam("rr", "enable_full_lr", 0)

# The instances: set 1 of this file.
modparam("dispatcher", "list_file", "{list}")
# Bit 2: keep the other destinations of the set for failover (ds_next_dst).
modparam("dispatcher", "flags", 2)
# OPTIONS to every destination (mode 1) every second; one failure (no answer within fr_timer,
# or any answer but 200, e.g. 503 while draining) marks it inactive, one 200 active again.
modparam("dispatcher", "ds_ping_interval", {PROBE_SECONDS})
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_from", "sip:dispatcher@127.0.0.1:{port}")
{load_params}{ctl_param}
request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # Inside a dialog: along the route set the instance's answer recorded.
    if ($tt != $null) {{
        if (loose_route()) {{
{load_bye}            if (method == "BYE") {{
                t_on_failure("IN_DIALOG");
            }}
            if (!t_relay()) {{
                sl_reply_error();
            }}
            exit;
        }}
        if (method == "ACK" && t_check_trans()) {{
            t_relay();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (method == "CANCEL") {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    # An ACK without a To tag belongs to no call.
    if (method == "ACK") {{
        exit;
    }}
    # A retransmission of an INVITE already dispatched goes to the same branch.
    if (t_check_trans()) {{
        exit;
    }}
    # An initial request: stay on the path, pick an instance.
    record_route();
    if (!ds_select_dst("1", "{algorithm}")) {{
        sl_send_reply("503", "No instance available");
        exit;
    }}
    {dispatch}
    t_on_failure("FAILOVER");
{arm_reply}    if (!t_relay()) {{
        sl_reply_error();
    }}
}}

{reply_route}
# The instance did not answer in time, or refused with 503 (draining, or at its limit): mark
# it inactive (probed until it answers 200 again) and try the next one.
failure_route[FAILOVER] {{
    if (t_is_canceled()) {{
        exit;
    }}
    {failed}
    if (t_branch_timeout() || t_check_status("503")) {{
        ds_mark_dst("ip");
        if (ds_next_dst()) {{
            {retry}
            t_on_failure("FAILOVER");
{arm_retry}            t_relay();
            exit;
        }}
    }}
    {giveup}
}}

# A BYE the instance never answered: the call was lost with the instance.
failure_route[IN_DIALOG] {{
    {lost}
}}
{events}"#
    )
}

/// A UAC that keeps the route set (`rrs`): ACK and BYE go to the proxy (SIPp's remote address)
/// with the recorded Route, towards the answering instance's Contact (`[next_url]`).
const UAC_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="UAC through a record-routing load balancer">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      [routes]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"#;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Whether something listens on loopback UDP `port`, from `/proc/net/udp`.
fn port_bound(port: u16) -> bool {
    let local = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|addr| addr.ends_with(&local))
        })
}

/// On a terminal: one line, rewritten, with SIPp's counts so far.
fn progress(label: &str, work: &Path, calls: u32, began: Instant) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let stats = SippStats::read(work);
    eprint!(
        "\r  {label}: {:>4.1} s, {} of {calls} calls placed, {} ok, {} failed   ",
        began.elapsed().as_secs_f64(),
        stats.count("OutgoingCall(C)"),
        stats.count("SuccessfulCall(C)"),
        stats.count("FailedCall(C)"),
    );
    let _ = std::io::stderr().flush();
}

fn clear_progress() {
    if std::io::stderr().is_terminal() {
        eprint!("\r{:100}\r", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_uris_and_addresses() {
        assert_eq!(port_in("sip:127.0.0.1:5071"), Some(5071));
        assert_eq!(port_in("sip:x@127.0.0.1:40000;transport=udp"), Some(40000));
        assert_eq!(port_in("127.0.0.1:6000"), Some(6000));
        assert_eq!(port_in("<null>"), None);
    }

    #[test]
    fn the_log_is_read_per_call() {
        let log = " 5(123) NOTICE: <script>: DISPATCH 100.5 c1 sip:127.0.0.1:7001\n\
                   5(123) NOTICE: <script>: FAILED 101.5 c1 408\n\
                   5(123) NOTICE: <script>: RETRY 101.5 c1 sip:127.0.0.1:7002\n\
                   5(123) NOTICE: <script>: ANSWER 101.6 c1 127.0.0.1:7002\n\
                   6(124) NOTICE: <script>: DSTDOWN 101.5 sip:x@127.0.0.1:5060 sip:127.0.0.1:7001\n\
                   6(124) NOTICE: <script>: DSTUP 109.5 sip:127.0.0.1:7001 <null>\n";
        let ports = Ports {
            a: 7001,
            b: 7002,
            c: 7003,
        };
        let report = Report::new(&parse_log(log), &ports);
        let call = &report.calls["c1"];
        assert_eq!(call.first, Some((100.5, 7001)));
        assert_eq!(call.failed, vec![(101.5, 7001, "408".to_owned())]);
        assert_eq!(call.answered, Some((101.6, 7002)));
        assert_eq!(report.down, vec![(101.5, 7001)]);
        assert_eq!(report.up, vec![(109.5, 7001)]);
    }

    /// With `XTASK_CLUSTER_CONFIGS=DIR`, writes the four configurations there (for
    /// `kamailio -c -f DIR/NAME.cfg`).
    #[test]
    fn configurations_are_written() {
        let dir = std::env::var_os("XTASK_CLUSTER_CONFIGS").map(PathBuf::from);
        for algorithm in [Algorithm::RoundRobin, Algorithm::CallLoad] {
            for log_calls in [false, true] {
                let settings = Settings {
                    port: 5060,
                    modules: Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules"),
                    list: Path::new("/tmp/dispatcher.list"),
                    ctl: Some(Path::new("/tmp/kamailio_ctl")),
                    algorithm,
                    log_calls,
                };
                let text = config_text(&settings);
                assert!(
                    text.contains(&format!("ds_select_dst(\"1\", \"{}\")", algorithm.number()))
                );
                assert_eq!(text.contains("DISPATCH"), log_calls);
                if let Some(dir) = &dir {
                    let name = format!("{}-{log_calls}.cfg", algorithm.name());
                    std::fs::write(dir.join(name), text).unwrap();
                }
            }
        }
    }

    #[test]
    fn ci_runs_the_quick_cluster_run_after_the_sipp_scenarios() {
        let ci = std::fs::read_to_string(util::workspace_root().join(".ci/run")).unwrap();
        let sipp = ci
            .find("cargo xtask sipp")
            .expect("CI runs `cargo xtask sipp`");
        let cluster = ci
            .find("cargo xtask cluster --quick")
            .expect("CI runs `cargo xtask cluster --quick`");
        // Both need kamailio, which the install step adds; the cluster run reuses the debug
        // build of example 20 that the SIPp scenarios made.
        assert!(cluster > sipp && ci.contains("packages+=(kamailio)"));
    }

    #[test]
    fn the_search_doubles_then_bisects() {
        let options = parse_options(&[]).unwrap();
        let mut search = Search {
            setup: Setup::Direct,
            clean: None,
            unclean: None,
            steps: Vec::new(),
        };
        let mut rates = Vec::new();
        while let Some(rate) = search.next(&options) {
            rates.push(rate);
            search.record(Step {
                rate,
                calls: 1,
                ok: u64::from(rate <= 1_000),
                failed: 0,
                achieved: f64::from(rate),
                exit: 0,
                proxy_us: None,
                instances_us: 0.0,
                answered: Vec::new(),
                problem: None,
            });
        }
        assert_eq!(rates[..4], [200, 400, 800, 1_600]);
        assert!(search.clean.unwrap() >= 800);
    }
}
