//! `cargo xtask sipp`: SIPp against example 20 (`examples2/examples/20_sipp_compatibility.rs`)
//! on loopback, one scenario at a time, and example 20's UAC against SIPp's UAS.
//!
//! Installs nothing: without `sipp` it prints the `apt-get` command and fails. It builds the
//! example, writes the SIPp scenarios it needs (XML) into a fresh temporary directory, and for
//! each scenario starts example 20 on a free port with the scenario's flags, waits until it
//! prints `listening on ADDR`, runs SIPp with a call count and time limits, stops the example
//! with SIGTERM and checks that it exits 0. A scenario passes when every process exits as
//! expected (SIPp 0: every call successful) and example 20's `summary:` line holds the counts
//! the flow implies. It prints PASS/FAIL per scenario and `N passed, M failed`, exits non-zero
//! if any failed (the RTP scenario needs CAP_NET_RAW for SIPp's pcap play: without it, it is
//! skipped, except under CI where it runs and fails), and keeps the directory (scenarios, SIPp traces, logs) only then (or with `--keep`).
//!
//! The `proxy-*` scenarios ([`proxy`]) put Kamailio between SIPp and example 20 to check that
//! both keep the route set a record-routing proxy asks for; without `kamailio` they are
//! skipped (failed under CI).
//!
//! The `b2bua-*` and `conference-*` scenarios ([`bridging`]) run example 20 as a B2BUA between
//! two SIPps (`--mode b2bua=URI`: 180, 486, CANCEL, BYE from either side, RTP through its
//! bridge to a SIPp echo and back) and as a conference room (`--mode conference`).
//!
//! The `prack-*` scenarios and `b2bua-prack` ([`prack`]) check reliable provisional responses
//! (RFC 3262) with SIPp in both roles: PRACKs built from the RSeq, and a 200 held until the
//! PRACK of a reliable 183 with SDP.
//!
//! Every process started here is stopped on every path (SIGTERM, then SIGKILL after a bound);
//! every wait is bounded.
//!
//! With `--load` it runs no scenario but the load search of [`load`]: the highest clean call
//! rate of example 20 (release build) next to SIPp's own UAS, in the same run. With
//! `--load --overload` it runs [`overload`] instead: example 20 offered three times the rate
//! its admission limit lets it carry, next to the same server at its clean rate; with
//! `--load --b2bua`, [`b2bua_load`]: example 20 as a B2BUA in front of SIPp's UAS, next to it
//! as a plain UAS, at the same rates; with `--load --alloc`, [`alloc`]: example 20 built with
//! glibc's malloc and with mimalloc under the same soak; with `--load --tls`, [`tls_load`]: the
//! CPU a call costs example 20 over TLS (our UAC) next to TCP (our UAC, and SIPp).
//! With `--abuse` it runs [`abuse`]: the TCP abuse cases (pipelining, a peer that never reads,
//! slowloris, descriptor exhaustion, an endless header) against example 20 while well-behaved
//! calls run alongside. A `--load` run takes the binary named by `XTASK_SIPP_EXAMPLE`, when
//! set, instead of building example 20 from this tree (to compare two builds side by side).

mod abuse;
mod alloc;
mod b2bua_load;
mod bridging;
mod load;
mod overload;
mod prack;
mod proxy;
mod tls_load;

use crate::util::{self, Outcome, free_port};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const EXAMPLE: &str = "20_sipp_compatibility";
/// Where Debian's `sip-tester` keeps the captures SIPp's `uac_pcap` scenario plays.
const PCAP_DIR: &str = "/usr/share/sip-tester";
/// A SIPp run that takes longer than this has hung.
const SIPP_LIMIT: Duration = Duration::from_secs(60);
/// How long example 20 may take to bind, and to exit after SIGTERM (its shutdown grace is 2 s).
const START_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// A scenario's result: `Ok` with example 20's summary, or why it failed or was not run.
type Verdict = Result<String, NotPassed>;

enum NotPassed {
    Failed(String),
    /// Not run here, for a reason that is a failure under CI (`CI` set).
    Skipped(String),
}

impl From<String> for NotPassed {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

struct Options {
    filters: Vec<String>,
    verbose: bool,
    keep: bool,
    /// `--load` and its settings.
    load: Option<load::LoadOptions>,
    /// `--load --floor`: the `udp_floor` example runs beside the two servers.
    floor: bool,
    /// `--load --overload` and its settings.
    overload: Option<overload::OverloadOptions>,
    /// `--load --b2bua` and its settings.
    b2bua: Option<b2bua_load::B2buaLoadOptions>,
    /// `--load --alloc` and its settings.
    alloc: Option<alloc::AllocOptions>,
    /// `--load --tls` and its settings.
    tls: Option<tls_load::TlsLoadOptions>,
    /// `--abuse` and its settings.
    abuse: Option<abuse::AbuseOptions>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        filters: Vec::new(),
        verbose: false,
        keep: false,
        load: None,
        floor: false,
        overload: None,
        b2bua: None,
        alloc: None,
        tls: None,
        abuse: None,
    };
    let mut tls = tls_load::TlsLoadOptions::default();
    let mut tls_flag = false;
    let mut alloc = alloc::AllocOptions::default();
    let mut alloc_flag = false;
    let mut abuse = abuse::AbuseOptions::default();
    let mut abuse_flag = false;
    let mut b2bua = b2bua_load::B2buaLoadOptions::default();
    let mut b2bua_flag = false;
    let mut load = load::LoadOptions::default();
    let mut load_flag = false;
    let mut floor_flag = false;
    let mut overload = overload::OverloadOptions::default();
    let mut overload_flag = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u32, String> {
            let text = args.next().ok_or_else(|| format!("{name} needs a value"))?;
            text.parse()
                .map_err(|_| format!("{name}: not a number: {text}"))
        };
        match arg.as_str() {
            "--verbose" | "-v" => options.verbose = true,
            "--keep" => options.keep = true,
            "--load" => load_flag = true,
            "--start-rate" => load.start_rate = number(arg)?.max(1),
            "--max-rate" => load.max_rate = number(arg)?.max(1),
            "--step-seconds" => load.step_seconds = number(arg)?.max(1),
            "--hold-calls" => load.hold_calls = number(arg)?,
            "--reserve-calls" => load.reserve_calls = number(arg)?,
            "--floor" => floor_flag = true,
            "--overload" => overload_flag = true,
            "--b2bua" => b2bua_flag = true,
            "--b2bua-seconds" => b2bua.seconds = number(arg)?.max(1),
            "--b2bua-rates" => {
                let text = args.next().ok_or("--b2bua-rates needs a value")?;
                b2bua.rates = text
                    .split(',')
                    .map(|r| r.trim().parse::<u32>().map(|r| r.max(1)))
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--b2bua-rates: not a list of numbers: {text}"))?;
            }
            "--overload-seconds" => overload.seconds = number(arg)?.max(5),
            "--overload-sessions" => overload.sessions = number(arg)?.max(1),
            "--overload-hold-ms" => overload.hold_ms = number(arg)?.max(1),
            "--alloc" => alloc_flag = true,
            "--alloc-rate" => alloc.rate = number(arg)?.max(1),
            "--alloc-seconds" => alloc.seconds = number(arg)?.max(1),
            "--alloc-idle" => alloc.idle = number(arg)?,
            "--alloc-rounds" => alloc.rounds = number(arg)?.max(1),
            "--tls" => tls_flag = true,
            "--tls-rate" => tls.rate = number(arg)?.max(1),
            "--tls-calls" => tls.calls = number(arg)?.max(1),
            "--tls-rounds" => tls.rounds = number(arg)?.max(1),
            "--abuse" => abuse_flag = true,
            "--abuse-seconds" => abuse.seconds = number(arg)?.clamp(5, 60),
            "--abuse-nofile" => abuse.nofile = number(arg)?.max(32),
            "--abuse-rss-mb" => abuse.rss_mb = number(arg)?,
            "--abuse-cases" => {
                let text = args.next().ok_or("--abuse-cases needs a value")?;
                abuse.cases = text.split(',').map(|c| c.trim().to_owned()).collect();
            }
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            filter => options.filters.push(filter.to_owned()),
        }
    }
    if abuse_flag {
        if load_flag || !options.filters.is_empty() {
            return Err("--abuse runs alone: drop --load and the filters".to_owned());
        }
        options.abuse = Some(abuse);
    } else if load_flag {
        if !options.filters.is_empty() {
            return Err("--load runs no scenario: drop the filters".to_owned());
        }
        if overload_flag {
            options.overload = Some(overload);
        } else if alloc_flag {
            options.alloc = Some(alloc);
        } else if b2bua_flag {
            options.b2bua = Some(b2bua);
        } else if tls_flag {
            options.tls = Some(tls);
        } else {
            options.load = Some(load);
            options.floor = floor_flag;
        }
    } else if overload_flag || b2bua_flag || alloc_flag || tls_flag || floor_flag {
        return Err(
            "--overload, --b2bua, --alloc, --tls and --floor are kinds of --load run: add --load"
                .to_owned(),
        );
    }
    Ok(options)
}

/// One scenario: a name, what it proves, and how to run it.
struct Scenario {
    name: &'static str,
    what: &'static str,
    run: fn(&Ctx) -> Verdict,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "basic-sdp",
        what: "INVITE with SDP, 200 with an SDP answer, ACK, BYE (3 calls)",
        run: basic_sdp,
    },
    Scenario {
        name: "rtp-echo",
        what: "SIPp's uac_pcap plays G.711 RTP and an RFC 4733 digit; we echo",
        run: rtp_echo,
    },
    Scenario {
        name: "cancel-ringing",
        what: "CANCEL while ringing: 200 for CANCEL, 487 for INVITE, ACK",
        run: cancel_ringing,
    },
    Scenario {
        name: "bye-from-us",
        what: "we hang up an established call; SIPp answers our BYE",
        run: bye_from_us,
    },
    Scenario {
        name: "hold-resume",
        what: "re-INVITE sendonly answered recvonly, then re-INVITE sendrecv",
        run: hold_resume,
    },
    Scenario {
        name: "options",
        what: "OPTIONS outside a call: 200 with Allow",
        run: options,
    },
    Scenario {
        name: "info-dtmf",
        what: "INFO application/dtmf-relay in a call: 200, digit reported",
        run: info_dtmf,
    },
    Scenario {
        name: "unknown-method",
        what: "a method we do not know: 501",
        run: unknown_method,
    },
    Scenario {
        name: "bye-no-dialog",
        what: "BYE matching no dialog: 481",
        run: bye_no_dialog,
    },
    Scenario {
        name: "codec-488",
        what: "an offer of G.729 only: 488, ACK",
        run: codec_488,
    },
    Scenario {
        name: "refer",
        what: "REFER in a call: 202, NOTIFY 100 then 200 (sipfrag), our call to the target",
        run: refer,
    },
    Scenario {
        name: "uac-basic",
        what: "our UAC against `sipp -sn uas` (3 calls over UDP)",
        run: uac_basic,
    },
    Scenario {
        name: "uac-tcp",
        what: "our UAC against a SIPp UAS over TCP (`-t t1`)",
        run: uac_tcp,
    },
    Scenario {
        name: "uac-486",
        what: "our UAC against a SIPp UAS answering 486: reported as busy",
        run: uac_486,
    },
    Scenario {
        name: "proxy-uas",
        what: "SIPp keeping the route set -> Kamailio -> us: ACK and BYE routed (5 calls)",
        run: proxy::proxy_uas,
    },
    Scenario {
        name: "proxy-uas-bye-from-us",
        what: "as proxy-uas, we hang up: our BYE routed by the proxy (5 calls)",
        run: proxy::proxy_uas_bye_from_us,
    },
    Scenario {
        name: "proxy-uac",
        what: "our UAC --proxy Kamailio -> SIPp copying Record-Route: ACK, BYE routed (3 calls)",
        run: proxy::proxy_uac,
    },
    Scenario {
        name: "proxy-uac-bye-from-callee",
        what: "as proxy-uac, SIPp hangs up: its BYE along the route set (3 calls)",
        run: proxy::proxy_uac_bye_from_callee,
    },
    Scenario {
        name: "proxy-two",
        what: "SIPp -> Kamailio -> Kamailio -> us: two Routes, both proxies route (5 calls)",
        run: proxy::proxy_two,
    },
    Scenario {
        name: "b2bua-basic",
        what: "SIPp -> us as B2BUA -> SIPp: 180 and 200 passed back, our SDP each way (3 calls)",
        run: bridging::b2bua_basic,
    },
    Scenario {
        name: "b2bua-486",
        what: "the B2BUA's callee answers 486: the caller gets 486 (3 calls)",
        run: bridging::b2bua_486,
    },
    Scenario {
        name: "b2bua-cancel",
        what: "the caller CANCELs after 180: the callee gets the CANCEL, 487 both ways (2 calls)",
        run: bridging::b2bua_cancel,
    },
    Scenario {
        name: "b2bua-bye-from-callee",
        what: "the B2BUA's callee hangs up: the caller gets our BYE (3 calls)",
        run: bridging::b2bua_bye_from_callee,
    },
    Scenario {
        name: "b2bua-rtp",
        what: "pcap G.711 RTP through the B2BUA's bridge to a SIPp -rtp_echo callee and back",
        run: bridging::b2bua_rtp,
    },
    Scenario {
        name: "conference-calls",
        what: "5 overlapping SIPp calls answered and joined to one conference room",
        run: bridging::conference_calls,
    },
    Scenario {
        name: "prack-uas",
        what: "SIPp requires 100rel: reliable 180 (RSeq), its PRACK answered, then 200 (2 calls)",
        run: prack::prack_uas,
    },
    Scenario {
        name: "prack-uac",
        what: "our UAC PRACKs a SIPp UAS's reliable 183 with SDP before its 200 (2 calls)",
        run: prack::prack_uac,
    },
    Scenario {
        name: "b2bua-prack",
        what: "reliable 183 with SDP both legs of the B2BUA; the A leg's 200 waits for the PRACK",
        run: prack::b2bua_prack,
    },
];

pub(crate) fn run(args: &[String]) -> i32 {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("xtask sipp: {message}");
            return 2;
        }
    };
    match Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(_) => {
            eprintln!(
                "xtask sipp: `sipp` is not installed (SIPp 3.6 or newer). Install it with:\n    \
                 sudo apt-get install sip-tester"
            );
            return 1;
        }
    }
    if options.load.is_some()
        || options.overload.is_some()
        || options.b2bua.is_some()
        || options.alloc.is_some()
        || options.tls.is_some()
        || options.abuse.is_some()
    {
        return run_load(&options);
    }
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| {
            options.filters.is_empty()
                || options.filters.iter().any(|f| s.name.contains(f.as_str()))
        })
        .collect();
    if selected.is_empty() {
        eprintln!("xtask sipp: no scenario matches {:?}", options.filters);
        return 1;
    }

    eprintln!("building example {EXAMPLE} ...");
    let built = util::cargo()
        .args(["build", "--package", "examples2", "--example", EXAMPLE])
        .status();
    match built {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("xtask sipp: build failed ({status})");
            return 1;
        }
        Err(error) => {
            eprintln!("xtask sipp: cannot run cargo: {error}");
            return 1;
        }
    }
    let example = util::target_dir()
        .join("debug")
        .join("examples")
        .join(EXAMPLE);
    let dir = std::env::temp_dir().join(format!("xtask-sipp-{}", std::process::id()));
    if let Err(error) = write_scenarios(&dir) {
        eprintln!(
            "xtask sipp: cannot write scenarios to {}: {error}",
            dir.display()
        );
        return 1;
    }

    let width = selected.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let started = Instant::now();
    let (mut failed, mut skipped) = (0, 0);
    for scenario in &selected {
        let work = dir.join(scenario.name);
        let ctx = Ctx {
            example: example.clone(),
            scenarios: dir.clone(),
            work,
        };
        let began = Instant::now();
        let verdict = std::fs::create_dir_all(&ctx.work)
            .map_err(|e| NotPassed::Failed(format!("cannot create {}: {e}", ctx.work.display())))
            .and_then(|()| (scenario.run)(&ctx));
        let seconds = began.elapsed().as_secs_f64();
        // A reason to skip outside CI is a failure under CI.
        let verdict = match verdict {
            Err(NotPassed::Skipped(why)) if std::env::var_os("CI").is_some() => Err(
                NotPassed::Failed(format!("{why}\n(not skipped under CI: `CI` is set)")),
            ),
            verdict => verdict,
        };
        match verdict {
            Ok(detail) => {
                println!(
                    "PASS  {:<width$} {seconds:>5.1}s  {}",
                    scenario.name, scenario.what
                );
                if options.verbose {
                    println!("      {detail}");
                }
            }
            Err(NotPassed::Skipped(why)) => {
                skipped += 1;
                println!(
                    "SKIP  {:<width$} {seconds:>5.1}s  {}",
                    scenario.name, scenario.what
                );
                println!("      {why}");
            }
            Err(NotPassed::Failed(why)) => {
                failed += 1;
                println!(
                    "FAIL  {:<width$} {seconds:>5.1}s  {}",
                    scenario.name, scenario.what
                );
                for line in why.lines() {
                    println!("      {line}");
                }
                println!("      logs: {}", ctx.work.display());
            }
        }
    }
    println!();
    let skips = if skipped > 0 {
        format!(", {skipped} skipped")
    } else {
        String::new()
    };
    println!(
        "{} passed, {failed} failed{skips} ({:.0} s)",
        selected.len() - failed - skipped,
        started.elapsed().as_secs_f64()
    );
    if failed == 0 && !options.keep {
        let _ = std::fs::remove_dir_all(&dir);
        0
    } else {
        println!("scenarios, SIPp traces and logs kept in {}", dir.display());
        i32::from(failed > 0)
    }
}

/// Builds example 20 in release mode with `extra` cargo arguments (e.g. `--features X`) and
/// returns the binary's path.
fn build_release(extra: &[&str]) -> Result<PathBuf, String> {
    let built = util::cargo()
        .args([
            "build",
            "--release",
            "--package",
            "examples2",
            "--example",
            EXAMPLE,
        ])
        .args(extra)
        .status();
    match built {
        Ok(status) if status.success() => Ok(util::target_dir()
            .join("release")
            .join("examples")
            .join(EXAMPLE)),
        Ok(status) => Err(format!("build failed ({status})")),
        Err(error) => Err(format!("cannot run cargo: {error}")),
    }
}

/// Builds session-dialog's `udp_floor` example (release) for `--load --floor`.
fn build_floor() -> Result<PathBuf, String> {
    eprintln!("building udp_floor (release) ...");
    let built = util::cargo()
        .args([
            "build",
            "--release",
            "--package",
            "session-dialog",
            "--example",
            "udp_floor",
        ])
        .status();
    match built {
        Ok(status) if status.success() => Ok(util::target_dir()
            .join("release")
            .join("examples")
            .join("udp_floor")),
        Ok(status) => Err(format!("building udp_floor failed ({status})")),
        Err(error) => Err(format!("cannot run cargo: {error}")),
    }
}

/// `--load` (and `--abuse`): builds example 20 in release mode and runs the load search (or
/// the kind of load run asked for).
fn run_load(options: &Options) -> i32 {
    let dir = std::env::temp_dir().join(format!("xtask-sipp-load-{}", std::process::id()));
    let result = if let Some(alloc) = &options.alloc {
        // It builds example 20 twice, once per allocator.
        alloc::run(alloc, &dir)
    } else {
        // A build made elsewhere (another commit, to compare side by side) instead of this
        // tree's.
        let prebuilt = std::env::var_os("XTASK_SIPP_EXAMPLE").map(PathBuf::from);
        if prebuilt.is_none() {
            eprintln!("building example {EXAMPLE} (release) ...");
        }
        let built = match prebuilt {
            Some(example) => Ok(example),
            None => build_release(&[]),
        };
        let example = match built {
            Ok(example) => example,
            Err(error) => {
                eprintln!("xtask sipp: {error}");
                return 1;
            }
        };
        match (
            &options.load,
            &options.overload,
            &options.b2bua,
            &options.abuse,
            &options.tls,
        ) {
            (_, _, _, _, Some(tls)) => tls_load::run(tls, &example, &dir),
            (_, _, _, Some(abuse), None) => abuse::run(abuse, &example, &dir),
            (_, Some(overload), _, None, None) => write_scenarios(&dir)
                .map_err(|e| format!("cannot write the scenarios: {e}"))
                .and_then(|()| overload::run(overload, &example, &dir)),
            (_, None, Some(b2bua), None, None) => b2bua_load::run(b2bua, &example, &dir),
            (Some(load), None, None, None, None) => {
                let floor = if options.floor {
                    build_floor().map(Some)
                } else {
                    Ok(None)
                };
                floor.and_then(|floor| {
                    let load = load::LoadOptions {
                        floor,
                        ..load.clone()
                    };
                    load::run(&load, example, &dir)
                })
            }
            (None, None, None, None, None) => Ok(true),
        }
    };
    let keep = options.keep;
    let code = match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(error) => {
            eprintln!("xtask sipp --load: {error}");
            2
        }
    };
    if code == 0 && !keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("SIPp logs and statistics kept in {}", dir.display());
    }
    code
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Where a scenario runs: the example binary, the scenario files, its own working directory.
struct Ctx {
    example: PathBuf,
    scenarios: PathBuf,
    work: PathBuf,
}

/// Example 20 running as UAS (or UAC): killed on drop if still running.
struct Example {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
    seen: Vec<String>,
}

impl Drop for Example {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Example {
    /// Starts example 20 with `args`; stdout is read line by line, stderr goes to `log`.
    fn spawn(ctx: &Ctx, args: &[&str], log: &str) -> Result<Self, String> {
        let stderr = std::fs::File::create(ctx.work.join(log))
            .map_err(|e| format!("cannot create {log}: {e}"))?;
        let mut child = Command::new(&ctx.example)
            .args(args)
            .current_dir(&ctx.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", ctx.example.display()))?;
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Self {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        })
    }

    /// Starts the UAS with `args` on a free loopback port and returns it once it listens.
    fn uas(ctx: &Ctx, args: &[&str]) -> Result<(Self, SocketAddr), String> {
        // SIGTERM ends the calls still up at once, as before example 20 learnt to drain (the
        // drain has its own runner: `cargo xtask cluster`).
        let mut all = vec!["--bind", "127.0.0.1:0", "--drain-grace-ms", "0"];
        all.extend_from_slice(args);
        let mut uas = Self::spawn(ctx, &all, "uas.stderr.log")?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = uas
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("example 20 did not listen within {START_LIMIT:?}"))?;
            uas.seen.push(line.clone());
            if let Some(rest) = line.strip_prefix("listening on ") {
                let address = rest.split_whitespace().next().unwrap_or_default();
                let address = address
                    .parse()
                    .map_err(|_| format!("example 20 printed an odd address: {line}"))?;
                return Ok((uas, address));
            }
        }
    }

    /// Waits (bounded) for the process to exit by itself; returns its status and output.
    fn wait(mut self, limit: Duration) -> Result<(ExitStatus, Vec<String>), String> {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!("example 20 did not exit within {limit:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(error) => return Err(format!("cannot wait for example 20: {error}")),
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut seen = std::mem::take(&mut self.seen);
        seen.extend(self.lines.try_iter());
        Ok((status, seen))
    }

    /// SIGTERM, then the exit (which must be 0) and the `summary:` counts.
    fn stop(self) -> Result<Summary, String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if !sent.is_ok_and(|s| s.success()) {
            return Err("cannot send SIGTERM to example 20".to_owned());
        }
        let (status, lines) = self.wait(STOP_LIMIT)?;
        let summary = Summary::from_lines(&lines)?;
        if !status.success() {
            return Err(format!(
                "example 20 exited with {status} after SIGTERM\n{}",
                lines.join("\n")
            ));
        }
        Ok(summary)
    }
}

/// The `key=value` pairs of example 20's `summary:` line.
struct Summary {
    line: String,
    values: BTreeMap<String, String>,
}

impl Summary {
    fn from_lines(lines: &[String]) -> Result<Self, String> {
        let line = lines
            .iter()
            .rev()
            .find_map(|line| line.strip_prefix("summary: "))
            .ok_or_else(|| format!("example 20 printed no summary:\n{}", lines.join("\n")))?;
        let values = line
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Self {
            line: line.to_owned(),
            values,
        })
    }

    fn get(&self, key: &str) -> &str {
        self.values.get(key).map_or("", String::as_str)
    }

    fn count(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or(0)
    }

    /// Checks that each `(key, value)` is as expected.
    fn expect(&self, expected: &[(&str, &str)]) -> Result<(), String> {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(key, value)| self.get(key) != *value)
            .map(|(key, value)| format!("{key}={} (expected {value})", self.get(key)))
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "example 20's summary: {}\n  {}",
                wrong.join(", "),
                self.line
            ))
        }
    }
}

/// SIPp's own arguments for a bounded, non-interactive run with traces in the working dir.
fn sipp_command(ctx: &Ctx) -> Command {
    let mut command = Command::new("sipp");
    command
        .current_dir(&ctx.work)
        .args(["-i", "127.0.0.1", "-nostdin"])
        .args(["-timeout", "30", "-timeout_error", "-recv_timeout", "10000"])
        .args(["-trace_msg", "-trace_err"]);
    command
}

/// Runs SIPp to the end (bounded) and returns its exit code; output goes to `log`.
fn run_sipp(ctx: &Ctx, command: Command, log: &str) -> Result<i32, String> {
    let log = ctx.work.join(log);
    match util::run_with_timeout(command, &log, SIPP_LIMIT) {
        Ok((Outcome::Exited(status), _)) => Ok(status.code().unwrap_or(-1)),
        Ok((Outcome::TimedOut, _)) => Err(format!("SIPp ran past {SIPP_LIMIT:?}")),
        Err(error) => Err(format!("cannot run SIPp: {error}")),
    }
}

/// SIPp's exit code 0 means every call succeeded; anything else fails with its log's tail.
fn sipp_succeeded(ctx: &Ctx, code: i32, log: &str) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    let text = std::fs::read_to_string(ctx.work.join(log)).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(25).collect();
    let mut message = format!("SIPp exited with {code} (0 = all calls successful); {log}:");
    for line in tail.into_iter().rev() {
        message.push_str("\n  ");
        message.push_str(line);
    }
    Err(message)
}

/// SIPp as UAC, running `scenario` (a file written by [`write_scenarios`], or `-sn NAME`)
/// against `target` for `calls` calls.
fn sipp_uac(
    ctx: &Ctx,
    scenario: &str,
    target: SocketAddr,
    calls: u32,
    extra: &[&str],
) -> Result<(), String> {
    let mut command = sipp_command(ctx);
    match scenario.strip_prefix("builtin:") {
        Some(name) => command.args(["-sn", name]),
        None => command.arg("-sf").arg(ctx.scenarios.join(scenario)),
    };
    // An explicit free port: SIPp would otherwise take 5060 when it is free.
    command
        .arg(target.to_string())
        .args(["-p", &free_port()?.to_string()])
        .args(["-m", &calls.to_string(), "-r", "20"])
        .args(extra);
    let code = run_sipp(ctx, command, "sipp-uac.log")?;
    sipp_succeeded(ctx, code, "sipp-uac.log")
}

/// SIPp as UAS in the background, on a free port: stopped on drop.
struct SippServer {
    child: Child,
    port: u16,
    log: &'static str,
}

impl Drop for SippServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl SippServer {
    /// Starts `sipp` with `scenario` (`builtin:NAME` or a written file) for `calls` calls and
    /// returns once its port is bound.
    fn start(
        ctx: &Ctx,
        scenario: &str,
        calls: u32,
        tcp: bool,
        log: &'static str,
    ) -> Result<Self, String> {
        let port = free_port()?;
        let mut command = sipp_command(ctx);
        match scenario.strip_prefix("builtin:") {
            Some(name) => command.args(["-sn", name]),
            None => command.arg("-sf").arg(ctx.scenarios.join(scenario)),
        };
        command
            .args(["-p", &port.to_string(), "-m", &calls.to_string()])
            .args(if tcp { &["-t", "t1"][..] } else { &[][..] });
        Self::spawn(ctx, command, port, tcp, log)
    }

    /// Runs `command` (SIPp listening on `port`) with its output in `log`, and returns once
    /// the port is bound (bounded by [`START_LIMIT`]).
    fn spawn(
        ctx: &Ctx,
        mut command: Command,
        port: u16,
        tcp: bool,
        log: &'static str,
    ) -> Result<Self, String> {
        let out = std::fs::File::create(ctx.work.join(log)).map_err(|e| format!("{log}: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("{log}: {e}"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start SIPp: {e}"))?;
        let mut server = Self { child, port, log };
        let deadline = Instant::now() + START_LIMIT;
        while !port_bound(port, tcp) {
            if let Ok(Some(status)) = server.child.try_wait() {
                let text = std::fs::read_to_string(ctx.work.join(log)).unwrap_or_default();
                return Err(format!(
                    "SIPp UAS exited ({status}) before binding:\n{text}"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "SIPp did not bind port {port} within {START_LIMIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    /// Waits (bounded) for SIPp to finish its calls; it must exit 0.
    fn finish(mut self, ctx: &Ctx) -> Result<(), String> {
        let deadline = Instant::now() + SIPP_LIMIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return sipp_succeeded(ctx, status.code().unwrap_or(-1), self.log);
                }
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!("SIPp UAS did not finish within {SIPP_LIMIT:?}"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(error) => return Err(format!("cannot wait for SIPp: {error}")),
            }
        }
    }
}

/// Whether something listens on loopback `port` (UDP, or TCP in LISTEN state), from
/// `/proc/net` so that probing does not disturb the listener.
fn port_bound(port: u16, tcp: bool) -> bool {
    let table = if tcp {
        "/proc/net/tcp"
    } else {
        "/proc/net/udp"
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return false;
    };
    let local = format!(":{port:04X}");
    text.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1).is_some_and(|addr| addr.ends_with(&local))
            && (!tcp || fields.get(3) == Some(&"0A"))
    })
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

/// Runs SIPp's UAC `scenario` against example 20 started with `flags`, stops the example and
/// checks its summary holds `expected`. The common shape of the UAS scenarios.
fn against_uas(
    ctx: &Ctx,
    flags: &[&str],
    scenario: &str,
    calls: u32,
    expected: &[(&str, &str)],
) -> Verdict {
    let (uas, address) = Example::uas(ctx, flags)?;
    let sipp = sipp_uac(ctx, scenario, address, calls, &[]);
    let summary = uas.stop();
    sipp?;
    let summary = summary?;
    summary.expect(expected)?;
    Ok(summary.line)
}

// ---------------------------------------------------------------------------------------------
// Scenarios: SIPp's UAC against our UAS
// ---------------------------------------------------------------------------------------------

fn basic_sdp(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "basic.xml",
        3,
        &[
            ("incoming", "3"),
            ("answered", "3"),
            ("hangups_peer", "3"),
            ("failed", "0"),
        ],
    )
}

/// True when this process holds CAP_NET_RAW, which SIPp (inheriting it) needs to play pcap.
fn has_cap_net_raw() -> bool {
    const CAP_NET_RAW: u32 = 13;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_RAW) != 0)
}

/// Makes SIPp's pcap play possible in `ctx`'s working directory: CAP_NET_RAW (without it the
/// scenario is skipped, except under CI, where it runs anyway: sipp itself may hold the
/// capability through setcap) and copies of the packaged captures under `pcap/`, where
/// `uac_pcap` and our scenarios look for them.
fn prepare_pcap_play(ctx: &Ctx) -> Result<(), NotPassed> {
    if !has_cap_net_raw() {
        let why = "SIPp plays pcap through a raw socket: run as root or \
                   `setcap cap_net_raw+ep $(which sipp)`"
            .to_owned();
        if std::env::var_os("CI").is_none() {
            return Err(NotPassed::Skipped(why));
        }
        eprintln!("{why}");
    }
    let pcap = ctx.work.join("pcap");
    std::fs::create_dir_all(&pcap).map_err(|e| format!("{}: {e}", pcap.display()))?;
    for name in ["g711a.pcap", "dtmf_2833_1.pcap"] {
        let source = Path::new(PCAP_DIR).join(name);
        std::fs::copy(&source, pcap.join(name))
            .map_err(|e| format!("{} ({e}): is sip-tester complete?", source.display()))?;
    }
    Ok(())
}

fn rtp_echo(ctx: &Ctx) -> Verdict {
    prepare_pcap_play(ctx)?;
    let (uas, address) = Example::uas(ctx, &["--mode", "auto", "--rtp-echo"])?;
    let sipp = sipp_uac(ctx, "builtin:uac_pcap", address, 1, &[]);
    let summary = uas.stop();
    sipp?;
    let summary = summary?;
    summary.expect(&[("answered", "1"), ("hangups_peer", "1"), ("digits", "1")])?;
    // The capture holds several seconds of 30 ms packets, received as 20 ms frames, and
    // ends two seconds before SIPp's BYE: every frame has been echoed by then.
    let (frames, sent) = (summary.count("rtp_frames"), summary.count("rtp_sent"));
    ensure(frames >= 100 && sent == frames, || {
        format!(
            "RTP in and echoed out differ (or too few): {}",
            summary.line
        )
    })?;
    Ok(summary.line)
}

fn cancel_ringing(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "ring", "--ring-ms", "5000"],
        "cancel.xml",
        1,
        &[("incoming", "1"), ("cancelled", "1"), ("answered", "0")],
    )
}

fn bye_from_us(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto", "--hangup-after-ms", "500"],
        "bye_from_uas.xml",
        1,
        &[
            ("answered", "1"),
            ("hangups_ours", "1"),
            ("hangups_peer", "0"),
        ],
    )
}

fn hold_resume(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "hold.xml",
        1,
        &[
            ("answered", "1"),
            ("holds", "1"),
            ("resumes", "1"),
            ("hangups_peer", "1"),
        ],
    )
}

fn options(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "options.xml",
        1,
        &[("incoming", "0")],
    )
}

fn info_dtmf(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "info_dtmf.xml",
        1,
        &[("answered", "1"), ("digits", "5"), ("hangups_peer", "1")],
    )
}

fn unknown_method(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "unknown_method.xml",
        1,
        &[("incoming", "0")],
    )
}

fn bye_no_dialog(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "bye_481.xml",
        1,
        &[("incoming", "0")],
    )
}

fn codec_488(ctx: &Ctx) -> Verdict {
    against_uas(
        ctx,
        &["--mode", "auto"],
        "codec_488.xml",
        1,
        &[("incoming", "1"), ("answered", "0"), ("failed", "1")],
    )
}

fn refer(ctx: &Ctx) -> Verdict {
    // The transfer target: SIPp's own UAS, which waits for our BYE; we hang up the new call
    // 1.5 s after it is answered (long after SIPp's transferor has hung up the first one).
    let target = SippServer::start(ctx, "builtin:uas", 1, false, "sipp-target.log")?;
    let (uas, address) = Example::uas(ctx, &["--mode", "auto", "--hangup-after-ms", "1500"])?;
    let refer_to = format!("sip:target@127.0.0.1:{}", target.port);
    let sipp = sipp_uac(
        ctx,
        "refer.xml",
        address,
        1,
        &["-set", "refer_to", &refer_to],
    );
    let finished = sipp.and_then(|()| target.finish(ctx));
    let summary = uas.stop();
    finished?;
    let summary = summary?;
    summary.expect(&[
        ("answered", "1"),
        ("transfers", "1"),
        ("transfers_answered", "1"),
        ("hangups_peer", "1"),
        ("hangups_ours", "1"),
    ])?;
    Ok(summary.line)
}

// ---------------------------------------------------------------------------------------------
// Scenarios: our UAC against SIPp's UAS
// ---------------------------------------------------------------------------------------------

/// Runs example 20 as UAC with `args` to completion; returns its exit status and summary.
fn uac(ctx: &Ctx, args: &[&str], log: &str) -> Result<(ExitStatus, Summary), String> {
    let example = Example::spawn(ctx, args, log)?;
    let (status, lines) = example.wait(SIPP_LIMIT)?;
    Ok((status, Summary::from_lines(&lines)?))
}

fn uac_against(ctx: &Ctx, tcp: bool, calls: u32) -> Verdict {
    // SIPp's built-in UAS ends each call with a 4 s pause for retransmissions, and over TCP
    // it counts a call as failed when the client closes the connection during that pause;
    // over TCP (reliable, nothing to absorb) the same flow without the pause is used.
    let scenario = if tcp { "uas_tcp.xml" } else { "builtin:uas" };
    let server = SippServer::start(ctx, scenario, calls, tcp, "sipp-uas.log")?;
    let target = format!("sip:service@127.0.0.1:{}", server.port);
    let calls_arg = calls.to_string();
    let mut args = vec!["--call", &target, "--calls", &calls_arg, "--rate", "20"];
    args.extend_from_slice(&["--duration-ms", "100"]);
    if tcp {
        args.extend_from_slice(&["--transport", "tcp"]);
    }
    let (status, summary) = uac(ctx, &args, "uac.stderr.log")?;
    let finished = server.finish(ctx);
    ensure(status.success(), || {
        format!("example 20 (UAC) exited with {status}: {}", summary.line)
    })?;
    finished?;
    summary.expect(&[("calls", &calls_arg), ("ok", &calls_arg)])?;
    Ok(summary.line)
}

fn uac_basic(ctx: &Ctx) -> Verdict {
    uac_against(ctx, false, 3)
}

fn uac_tcp(ctx: &Ctx) -> Verdict {
    uac_against(ctx, true, 1)
}

fn uac_486(ctx: &Ctx) -> Verdict {
    let server = SippServer::start(ctx, "uas_486.xml", 2, false, "sipp-uas.log")?;
    let target = format!("sip:busy@127.0.0.1:{}", server.port);
    // A refused call is a failed call, so the UAC exits non-zero …
    let (first, busy) = uac(ctx, &["--call", &target], "uac1.stderr.log")?;
    // … unless the refusal is what was asked for.
    let (second, expected) = uac(
        ctx,
        &["--call", &target, "--expect-status", "486"],
        "uac2.stderr.log",
    )?;
    let finished = server.finish(ctx);
    ensure(first.code() == Some(1), || {
        format!(
            "a busy call must make the UAC exit 1, not {first}: {}",
            busy.line
        )
    })?;
    busy.expect(&[("ok", "0"), ("refused", "486x1")])?;
    ensure(second.success(), || {
        format!("with --expect-status 486 the UAC must exit 0, not {second}")
    })?;
    expected.expect(&[("ok", "1"), ("refused", "486x1")])?;
    finished?;
    Ok(format!("{} / {}", busy.line, expected.line))
}

// ---------------------------------------------------------------------------------------------
// The scenario files
// ---------------------------------------------------------------------------------------------

fn write_scenarios(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let files = scenario_files()
        .into_iter()
        .chain(proxy::scenario_files())
        .chain(overload::scenario_files())
        .chain(bridging::scenario_files())
        .chain(prack::scenario_files());
    for (name, body) in files {
        std::fs::write(dir.join(name), body)?;
    }
    Ok(())
}

/// An INVITE from SIPp's UAC offering `media` (an `m=` line and its attributes), with a
/// fixed branch so that CANCEL and the ACK of a failure can reuse it (RFC 3261 §9.1, §17.1.1.3).
fn invite(media: &str) -> String {
    format!(
        r#"  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-inv
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
{media}
    ]]>
  </send>
"#
    )
}

const PCMU: &str = "      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv";

/// A request inside the dialog SIPp's INVITE created, with `cseq` and optional extra lines.
fn in_dialog(method: &str, cseq: u32, extra: &str) -> String {
    in_dialog_to(
        "sip:[service]@[remote_ip]:[remote_port]",
        method,
        cseq,
        extra,
    )
}

/// [`in_dialog`] with the Request-URI `target` (e.g. `[next_url]`, the remote target).
fn in_dialog_to(target: &str, method: &str, cseq: u32, extra: &str) -> String {
    format!(
        r#"  <send retrans="500">
    <![CDATA[
      {method} {target} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
{extra}
    ]]>
  </send>
"#
    )
}

/// The ACK of a 2xx (a transaction of its own, new branch).
fn ack(cseq: u32) -> String {
    in_dialog("ACK", cseq, "      Content-Length: 0\n").replace("<send retrans=\"500\">", "<send>")
}

/// The ACK of a non-2xx final response: part of the INVITE transaction (same branch).
const ACK_FAILURE: &str = r#"  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-inv
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"#;

/// 200 OK to the request just received.
const OK_TO_LAST: &str = r#"  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0
    ]]>
  </send>
"#;

/// INVITE, optional 100/180, 200 (with an SDP answer: checked), ACK.
fn call_setup() -> String {
    answered_invite("") + &ack(1)
}

/// INVITE, optional 100/180, 200 (with an SDP answer: checked); `attributes` go on the 200's
/// `recv` (e.g. ` rrs="true"` to keep its Record-Route as the route set).
fn answered_invite(attributes: &str) -> String {
    invite(PCMU)
        + &format!(
            r#"  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"{attributes}>
    <action>
      <ereg regexp="application/sdp" search_in="hdr" header="Content-Type:" check_it="true" assign_to="sdp_type"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 0" search_in="body" check_it="true" assign_to="sdp_answer"/>
    </action>
  </recv>
"#
        )
}

/// BYE from SIPp and its 200.
fn bye(cseq: u32) -> String {
    in_dialog("BYE", cseq, "      Content-Length: 0\n")
        + r#"  <recv response="200" crlf="true"/>
"#
}

/// A scenario file around `body`. Variables that only `check_it` a match are declared used
/// (`<Reference>`): SIPp refuses a scenario whose variables are assigned and never read.
fn scenario(name: &str, body: &str) -> String {
    let checked: Vec<&str> = body
        .split("assign_to=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let reference = if checked.is_empty() {
        String::new()
    } else {
        format!("  <Reference variables=\"{}\"/>\n", checked.join(","))
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n\
         <scenario name=\"{name}\">\n{body}{reference}</scenario>\n"
    )
}

fn scenario_files() -> Vec<(&'static str, String)> {
    let sdp_offer = |cseq: u32, version: u32, direction: &str| {
        let extra = format!(
            "      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a={direction}"
        );
        in_dialog("INVITE", cseq, &extra)
    };
    let out_of_dialog = |method: &str, extra: &str| {
        format!(
            r#"  <send retrans="500">
    <![CDATA[
      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{extra}
      Call-ID: [call_id]
      CSeq: 1 {method}
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"#
        )
    };
    vec![
        (
            "basic.xml",
            scenario(
                "basic call with SDP",
                &(call_setup() + "  <pause milliseconds=\"100\"/>\n" + &bye(2)),
            ),
        ),
        (
            "cancel.xml",
            scenario(
                "CANCEL while ringing",
                &(invite(PCMU)
                    + r#"  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send>
    <![CDATA[
      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[pid]-[call_number]-inv
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
"# + ACK_FAILURE),
            ),
        ),
        (
            "bye_from_uas.xml",
            scenario(
                "BYE from the UAS",
                &(call_setup()
                    + r#"  <recv request="BYE"/>
"# + OK_TO_LAST),
            ),
        ),
        (
            "hold.xml",
            scenario(
                "hold and resume by re-INVITE",
                &(call_setup()
                    + &sdp_offer(2, 2, "sendonly")
                    + r#"  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="a=recvonly" search_in="body" check_it="true" assign_to="held"/>
    </action>
  </recv>
"# + &ack(2) + &sdp_offer(3, 3, "sendrecv")
                    + r#"  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="a=sendrecv" search_in="body" check_it="true" assign_to="resumed"/>
    </action>
  </recv>
"# + &ack(3) + &bye(4)),
            ),
        ),
        (
            "options.xml",
            scenario(
                "OPTIONS",
                &(out_of_dialog("OPTIONS", "")
                    + r#"  <recv response="200">
    <action>
      <ereg regexp="INVITE" search_in="hdr" header="Allow:" check_it="true" assign_to="allow"/>
    </action>
  </recv>
"#),
            ),
        ),
        (
            "info_dtmf.xml",
            scenario(
                "INFO DTMF",
                &(call_setup()
                    + &in_dialog(
                        "INFO",
                        2,
                        "      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=5
      Duration=160",
                    )
                    + "  <recv response=\"200\"/>\n"
                    + &bye(3)),
            ),
        ),
        (
            "unknown_method.xml",
            scenario(
                "unknown method",
                &(out_of_dialog("FOO", "") + "  <recv response=\"501\"/>\n"),
            ),
        ),
        (
            "bye_481.xml",
            scenario(
                "BYE for no dialog",
                &(out_of_dialog("BYE", ";tag=no-such-dialog") + "  <recv response=\"481\"/>\n"),
            ),
        ),
        (
            "codec_488.xml",
            scenario(
                "G.729-only offer",
                &(invite(
                    "      m=audio [media_port] RTP/AVP 18
      a=rtpmap:18 G729/8000
      a=sendrecv",
                ) + r#"  <recv response="100" optional="true"/>
  <recv response="488"/>
"# + ACK_FAILURE),
            ),
        ),
        (
            "refer.xml",
            scenario(
                "REFER",
                &("  <Global variables=\"refer_to\"/>\n".to_owned()
                    + &call_setup()
                    + &in_dialog(
                        "REFER",
                        2,
                        "      Refer-To: <[$refer_to]>
      Referred-By: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0",
                    )
                    + r#"  <recv response="202"/>
  <recv request="NOTIFY">
    <action>
      <ereg regexp="refer" search_in="hdr" header="Event:" check_it="true" assign_to="event1"/>
      <ereg regexp="SIP/2.0 100" search_in="body" check_it="true" assign_to="trying"/>
    </action>
  </recv>
"# + OK_TO_LAST + r#"  <recv request="NOTIFY">
    <action>
      <ereg regexp="SIP/2.0 200" search_in="body" check_it="true" assign_to="reached"/>
      <ereg regexp="terminated" search_in="hdr" header="Subscription-State:" check_it="true" assign_to="done"/>
    </action>
  </recv>
"# + OK_TO_LAST + &bye(3)),
            ),
        ),
        (
            "uas_tcp.xml",
            scenario(
                "UAS as SIPp's built-in one, without the closing pause",
                r#"  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"#,
            ),
        ),
        (
            "uas_486.xml",
            scenario(
                "UAS answering 486",
                r#"  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
"#,
            ),
        ),
    ]
}
