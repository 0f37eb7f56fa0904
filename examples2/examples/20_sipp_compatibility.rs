//! # 20 — SIPp compatibility
//!
//! A SIP server (UAS) and client (UAC) built on `session-core` that other tools — SIPp first
//! of all — drive from the command line. `cargo xtask sipp` runs SIPp's scenarios against it.
//!
//! **UAS mode** (the default when `--call` is absent and any flag is given):
//!
//! ```text
//! --bind 127.0.0.1:5060          where SIP listens (UDP and TCP; port 0 picks one)
//! --mode auto|ring|busy|reject=CODE|b2bua=URI|conference
//!                                auto: answer 200 at once; ring: 180, then 200 after
//!                                --ring-ms; busy: 486; reject=CODE: that final status;
//!                                b2bua=URI: a B2BUA — each call is carried to URI (the
//!                                incoming Request-URI's user when URI has none) by
//!                                `session_core::b2bua::connect`: 180/183 passed back, the
//!                                B leg's final status given exactly, CANCEL passed on, BYE
//!                                from either side ends both, RTP relayed through our bridge,
//!                                a leg's REFER carried out locally (`transfer_locally`);
//!                                conference: every call answered and joined to one room
//!                                (each hears all the others, not itself)
//! --ring-ms N                    how long `ring` rings (default 500)
//! --hangup-after-ms N            we send BYE N ms after a call is established (also for
//!                                calls we place as transferee)
//! --rtp-echo                     real RTP per call, every received frame sent back; without
//!                                it calls are signaling-only (SDP answered, no RTP sockets).
//!                                The summary counts frames received and RTP packets sent
//! --max-sessions N               admission limit; beyond it INVITEs get 503
//! --reserve-calls N              size the manager's maps for N concurrent calls up front
//!                                (`SessionManagerBuilder::reserve_calls`), as a server under
//!                                load should: no pause to grow them (`cargo xtask sipp --load`)
//! --tls-cert FILE --tls-key FILE also listen for SIP over TLS with this certificate chain and
//!                                key (PEM), on port 5061 when SIP is on 5060, else on a port
//!                                the system picks (`cargo xtask sipp --load --tls`)
//! --tls-ca FILE                  trust the CA certificates in FILE (PEM) for TLS
//! --rtp-ports LOW-HIGH           the RTP ports calls take (default 20000-29999), so that
//!                                several instances on one host keep apart
//! --drain-grace-ms N             how long calls in progress may go on after SIGTERM (default
//!                                30000; 0 ends them at once)
//! --metrics ADDR                 serve the manager's metrics for Prometheus at
//!                                http://ADDR/metrics (a line `metrics on ADDR` says where)
//! ```
//!
//! It prints `listening on ADDR` once bound (`listening on ADDR tls ADDR` with TLS) and runs
//! until Ctrl-C or SIGTERM. Then it drains (`SessionManager::drain`), as a server leaving a
//! cluster behind a balancer does: new INVITEs get 503 with Retry-After, out-of-dialog OPTIONS
//! get 503 (200 while it serves, with an `X-Load: ACTIVE[/MAX]` header), and the calls in
//! progress may finish within `--drain-grace-ms`. A second Ctrl-C or SIGTERM, or the end of
//! the grace, ends the calls still up (BYE, CANCEL or 503). It exits 0 after printing a
//! `summary:` line of `key=value` counts, `drain_finished` and `drain_ended` among them.
//!
//! **UAC mode** (`--call` given):
//!
//! ```text
//! --bind ADDR                    our SIP address (default 127.0.0.1:0)
//! --call sip:user@host:port      whom to call
//! --calls N                      how many calls (default 1)
//! --rate R                       calls started per second (default 10)
//! --duration-ms D                how long an answered call lasts before our BYE (default 0)
//! --transport udp|tcp            default udp
//! --proxy sip:host:port          send every call through this (loose-routing) outbound
//!                                proxy: INVITE to it with a pre-loaded Route; ACK, BYE and
//!                                the rest follow the route set the answer records
//! --expect-status CODE           the final status counted as success (default 200): e.g.
//!                                486 to check that a busy peer is reported as busy
//! --rtp-echo                     real RTP media (echoing) instead of signaling only
//! --rtp-ports LOW-HIGH           the RTP ports our calls take (with --rtp-echo)
//! --tls-ca FILE                  trust the CA certificates in FILE (PEM): needed to call a
//!                                `sips:` or `;transport=tls` URI, whose calls go over one TLS
//!                                connection (`--tls-cert`/`--tls-key` as for the UAS add our
//!                                own certificate, and a TLS listener for in-dialog requests)
//! ```
//!
//! It exits 0 only if every call succeeded: answered (or refused with `--expect-status`) and,
//! once answered, ended cleanly by either side. It prints each failure and a `summary:` line.
//!
//! **Without flags** (as `cargo xtask examples` runs it) it checks itself: its UAS and its UAC
//! call each other in every mode — auto, ring, busy, reject, hangup from the UAS, admission
//! limit, TCP, B2BUA, conference, and a drain with a call in progress — and it exits non-zero if an outcome is not the expected one. Every wait is
//! bounded; nothing sleeps to wait for an event (the only timers are the ring and call
//! durations the flags ask for).
//!
//! Run: `cargo run -p examples2 --example 20_sipp_compatibility -- --bind 127.0.0.1:5060
//! --mode auto`, then for instance `sipp -sn uac 127.0.0.1:5060 -m 10`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples2::{check, section};
use session_core::crates::media::AudioFrame;
use session_core::crates::media::audio::AudioSink;
use session_core::{
    CallDecision, CallHandler, CallOptions, CallSession, CallState, CallStats, DtmfMethod,
    FailureReason, IncomingCall, Limits, MediaMode, SessionManager, StatusCode, TerminationReason,
    TransferDecision, TransferRequest,
};

/// With examples2's `mimalloc` feature, mimalloc serves every allocation instead of glibc's
/// malloc (`cargo xtask sipp --load --alloc` compares the two).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upper bound for a call's answer and for its end after BYE: longer than SIP's own 32 s
/// transaction timeout, so a hung peer shows as a failure rather than a hang.
const CALL_LIMIT: Duration = Duration::from_secs(40);

/// How long the self-check's shutdowns wait for lingering transactions.
const SELF_CHECK_GRACE: Duration = Duration::from_millis(200);

/// How long calls in progress may go on after SIGTERM, by default (`--drain-grace-ms`).
const DRAIN_GRACE: Duration = Duration::from_secs(30);

const USAGE: &str = "usage:
  20_sipp_compatibility                       self-check (UAS and UAC call each other)
  20_sipp_compatibility --bind ADDR [--mode auto|ring|busy|reject=CODE|b2bua=URI|conference]
                        [--ring-ms N]
                        [--hangup-after-ms N] [--rtp-echo] [--max-sessions N]
                        [--reserve-calls N] [--tls-cert FILE --tls-key FILE] [--tls-ca FILE]
                        [--rtp-ports LOW-HIGH] [--drain-grace-ms N] [--metrics ADDR]
                                              UAS (metrics for Prometheus at
                                              http://ADDR/metrics) until Ctrl-C/SIGTERM, then a drain of up
                                              to N ms (default 30000); a second signal ends
                                              the calls left at once
  20_sipp_compatibility --call URI [--bind ADDR] [--calls N] [--rate R] [--duration-ms D]
                        [--transport udp|tcp] [--proxy URI] [--expect-status CODE]
                        [--rtp-echo] [--rtp-ports LOW-HIGH] [--tls-ca FILE]
                        [--tls-cert FILE --tls-key FILE]
                                              UAC; exits 0 only if every call succeeded";

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// How the UAS answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Auto,
    Ring,
    Reject(StatusCode),
    /// Every call carried to this URI by a B2BUA leg, media through our bridge.
    B2bua(String),
    /// Every call answered and joined to one conference room (mix-minus).
    Conference,
}

/// SIP over TLS: `--tls-cert`, `--tls-key` (our identity; with it we also listen for TLS) and
/// `--tls-ca` (the roots we trust), all PEM files.
#[derive(Debug, Clone, Default)]
struct TlsFiles {
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
}

impl TlsFiles {
    /// The configuration the files make, or `None` when no TLS flag was given.
    fn config(&self) -> Result<Option<session_core::TlsConfig>, BoxError> {
        let mut builder = session_core::TlsConfig::builder();
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder = builder.identity_pem_files(cert, key)?,
            (None, None) => {}
            _ => return Err("--tls-cert and --tls-key go together".into()),
        }
        if let Some(ca) = &self.ca {
            builder = builder.trust_pem_file(ca)?;
        }
        if self.cert.is_none() && self.ca.is_none() {
            return Ok(None);
        }
        Ok(Some(builder.build()?))
    }
}

#[derive(Debug, Clone)]
struct UasConfig {
    bind: SocketAddr,
    mode: Mode,
    ring: Duration,
    hangup_after: Option<Duration>,
    rtp_echo: bool,
    max_sessions: Option<usize>,
    /// Concurrent calls to size the maps for at start (none if 0).
    reserve_calls: usize,
    /// How long shutdown waits for lingering transactions (the library's default if `None`).
    shutdown_grace: Option<Duration>,
    tls: TlsFiles,
    /// The RTP ports (the library's default range if `None`).
    rtp_ports: Option<RangeInclusive<u16>>,
    /// How long calls in progress may go on after the first stop request.
    drain_grace: Duration,
    /// Where `GET /metrics` is served (Prometheus text format), if anywhere.
    metrics: Option<SocketAddr>,
}

impl UasConfig {
    fn loopback(mode: Mode) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            mode,
            ring: Duration::from_millis(500),
            hangup_after: None,
            rtp_echo: false,
            max_sessions: None,
            reserve_calls: 0,
            shutdown_grace: None,
            tls: TlsFiles::default(),
            rtp_ports: None,
            drain_grace: DRAIN_GRACE,
            metrics: None,
        }
    }
}

#[derive(Debug, Clone)]
struct UacConfig {
    bind: SocketAddr,
    target: String,
    calls: u32,
    rate: f64,
    duration: Duration,
    tcp: bool,
    /// The outbound proxy every call goes through.
    proxy: Option<String>,
    expect: StatusCode,
    rtp_echo: bool,
    shutdown_grace: Option<Duration>,
    tls: TlsFiles,
    rtp_ports: Option<RangeInclusive<u16>>,
}

impl UacConfig {
    fn to(target: String) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            target,
            calls: 1,
            rate: 10.0,
            duration: Duration::ZERO,
            tcp: false,
            proxy: None,
            expect: StatusCode::OK,
            rtp_echo: false,
            shutdown_grace: None,
            tls: TlsFiles::default(),
            rtp_ports: None,
        }
    }
}

enum Run {
    SelfCheck,
    Uas(UasConfig),
    Uac(UacConfig),
    Help,
}

fn parse_args(args: &[String]) -> Result<Run, String> {
    if args.is_empty() {
        return Ok(Run::SelfCheck);
    }
    let mut uas = UasConfig::loopback(Mode::Auto);
    uas.bind = SocketAddr::from(([127, 0, 0, 1], 5060));
    let mut uac = UacConfig::to(String::new());
    let mut bind = None;
    let mut call = None;
    let mut tls = TlsFiles::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Run::Help),
            "--bind" => {
                let text = value("--bind")?;
                bind = Some(
                    text.parse::<SocketAddr>()
                        .map_err(|_| format!("--bind: not an address: {text}"))?,
                );
            }
            "--mode" => uas.mode = parse_mode(&value("--mode")?)?,
            "--ring-ms" => uas.ring = millis("--ring-ms", &value("--ring-ms")?)?,
            "--hangup-after-ms" => {
                uas.hangup_after = Some(millis("--hangup-after-ms", &value("--hangup-after-ms")?)?);
            }
            "--rtp-echo" => {
                uas.rtp_echo = true;
                uac.rtp_echo = true;
            }
            "--max-sessions" => {
                uas.max_sessions = Some(number("--max-sessions", &value("--max-sessions")?)?);
            }
            "--reserve-calls" => {
                uas.reserve_calls = number("--reserve-calls", &value("--reserve-calls")?)?;
            }
            "--call" => call = Some(value("--call")?),
            "--calls" => uac.calls = number("--calls", &value("--calls")?)?,
            "--rate" => {
                let text = value("--rate")?;
                uac.rate = text
                    .parse::<f64>()
                    .ok()
                    .filter(|rate| *rate > 0.0 && rate.is_finite())
                    .ok_or_else(|| format!("--rate: not a positive number: {text}"))?;
            }
            "--duration-ms" => uac.duration = millis("--duration-ms", &value("--duration-ms")?)?,
            "--transport" => {
                uac.tcp = match value("--transport")?.to_ascii_lowercase().as_str() {
                    "udp" => false,
                    "tcp" => true,
                    other => return Err(format!("--transport: udp or tcp, not {other}")),
                }
            }
            "--proxy" => uac.proxy = Some(value("--proxy")?),
            "--expect-status" => uac.expect = status(&value("--expect-status")?)?,
            "--tls-cert" => tls.cert = Some(value("--tls-cert")?),
            "--tls-key" => tls.key = Some(value("--tls-key")?),
            "--tls-ca" => tls.ca = Some(value("--tls-ca")?),
            "--rtp-ports" => {
                let ports = port_range(&value("--rtp-ports")?)?;
                uas.rtp_ports = Some(ports.clone());
                uac.rtp_ports = Some(ports);
            }
            "--drain-grace-ms" => {
                uas.drain_grace = millis("--drain-grace-ms", &value("--drain-grace-ms")?)?;
            }
            "--metrics" => {
                let text = value("--metrics")?;
                uas.metrics = Some(
                    text.parse()
                        .map_err(|_| format!("--metrics: not an address: {text}"))?,
                );
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    uas.tls = tls.clone();
    uac.tls = tls;
    Ok(match call {
        Some(target) => {
            uac.target = target;
            if let Some(bind) = bind {
                uac.bind = bind;
            }
            Run::Uac(uac)
        }
        None => {
            if let Some(bind) = bind {
                uas.bind = bind;
            }
            Run::Uas(uas)
        }
    })
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    match text {
        "auto" => Ok(Mode::Auto),
        "ring" => Ok(Mode::Ring),
        "busy" => Ok(Mode::Reject(StatusCode::BUSY_HERE)),
        "conference" => Ok(Mode::Conference),
        _ if text.starts_with("b2bua=") => {
            let target = &text["b2bua=".len()..];
            session_core::Uri::parse(target)
                .map_err(|_| format!("--mode b2bua=URI: not a SIP URI: {target}"))?;
            Ok(Mode::B2bua(target.to_owned()))
        }
        _ => match text.strip_prefix("reject=") {
            Some(code) => {
                let code = status(code)?;
                if code.as_u16() < 300 {
                    return Err(format!("--mode reject=CODE needs 300-699, not {code}"));
                }
                Ok(Mode::Reject(code))
            }
            None => Err(format!(
                "--mode: auto, ring, busy, reject=CODE, b2bua=URI or conference, not {text}"
            )),
        },
    }
}

fn status(text: &str) -> Result<StatusCode, String> {
    text.parse::<u16>()
        .ok()
        .and_then(StatusCode::new)
        .filter(|code| code.as_u16() >= 200)
        .ok_or_else(|| format!("not a final SIP status: {text}"))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: not a number: {text}"))
}

fn millis(flag: &str, text: &str) -> Result<Duration, String> {
    number::<u64>(flag, text).map(Duration::from_millis)
}

/// `LOW-HIGH`: an RTP port range with room for at least one call (an even RTP port and the
/// RTCP port above it).
fn port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("--rtp-ports: LOW-HIGH with 1024 <= LOW < HIGH, not {text}");
    let (low, high) = text.split_once('-').ok_or_else(bad)?;
    let low = low.trim().parse::<u16>().map_err(|_| bad())?;
    let high = high.trim().parse::<u16>().map_err(|_| bad())?;
    if low < 1024 || low >= high {
        return Err(bad());
    }
    Ok(low..=high)
}

// ---------------------------------------------------------------------------------------------
// UAS
// ---------------------------------------------------------------------------------------------

/// What the UAS saw, counted as it happened.
#[derive(Default)]
struct Tally {
    incoming: AtomicU64,
    answered: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
    hangups_ours: AtomicU64,
    hangups_peer: AtomicU64,
    shutdown: AtomicU64,
    holds: AtomicU64,
    resumes: AtomicU64,
    transfers: AtomicU64,
    transfers_answered: AtomicU64,
    messages: AtomicU64,
    /// Calls joined to a bridge: B2BUA calls completed, or conference members.
    bridged: AtomicU64,
    /// B2BUA mode: B legs answered.
    b_legs_answered: AtomicU64,
    rtp_frames: Arc<AtomicU64>,
    rtp_sent: AtomicU64,
    digits: Mutex<String>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Tally {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One line of `key=value` pairs, which `cargo xtask sipp` reads.
    fn summary(&self) -> String {
        let digits = self.digits.lock().map(|d| d.clone()).unwrap_or_default();
        format!(
            "summary: incoming={} answered={} rejected={} cancelled={} failed={} \
             hangups_ours={} hangups_peer={} shutdown={} holds={} resumes={} transfers={} \
             transfers_answered={} messages={} bridged={} b_legs_answered={} rtp_frames={} \
             rtp_sent={} digits={}",
            Self::get(&self.incoming),
            Self::get(&self.answered),
            Self::get(&self.rejected),
            Self::get(&self.cancelled),
            Self::get(&self.failed),
            Self::get(&self.hangups_ours),
            Self::get(&self.hangups_peer),
            Self::get(&self.shutdown),
            Self::get(&self.holds),
            Self::get(&self.resumes),
            Self::get(&self.transfers),
            Self::get(&self.transfers_answered),
            Self::get(&self.messages),
            Self::get(&self.bridged),
            Self::get(&self.b_legs_answered),
            Self::get(&self.rtp_frames),
            Self::get(&self.rtp_sent),
            if digits.is_empty() { "-" } else { &digits },
        )
    }
}

/// Takes the call's played-out audio (so that its receive path, jitter buffer included, runs)
/// and drops it.
struct Discard;

impl AudioSink for Discard {
    fn write_frame(&mut self, _frame: &AudioFrame) -> session_core::crates::media::Result<()> {
        Ok(())
    }
}

struct Uas {
    config: UasConfig,
    tally: Arc<Tally>,
    /// The manager itself and the conference room, once started (for the B2BUA and the
    /// conference, which act on the manager from its own callbacks).
    started: Arc<std::sync::OnceLock<(SessionManager, Option<session_core::BridgeId>)>>,
}

impl Uas {
    /// The B leg's target: `target`, with the incoming Request-URI's user when it has none.
    fn b_leg_target(target: &str, call: &IncomingCall) -> String {
        let uri = session_core::Uri::parse(target);
        match (uri, call.request_uri().user()) {
            (Ok(uri), Some(user)) if uri.user().is_none() => {
                let (scheme, rest) = target.split_once(':').unwrap_or(("sip", target));
                format!("{scheme}:{user}@{rest}")
            }
            _ => target.to_owned(),
        }
    }
}

impl CallHandler for Uas {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        bump(&self.tally.incoming);
        match &self.config.mode {
            Mode::Auto | Mode::Conference => CallDecision::accept(),
            Mode::Reject(status) => CallDecision::Reject(*status),
            Mode::B2bua(target) => {
                let Some((manager, _)) = self.started.get() else {
                    return CallDecision::Reject(StatusCode::SERVICE_UNAVAILABLE);
                };
                let (manager, call) = (manager.clone(), call.clone());
                let target = Self::b_leg_target(target, &call);
                let tally = self.tally.clone();
                tokio::spawn(async move {
                    let options = session_core::b2bua::B2buaOptions::default();
                    match session_core::b2bua::connect(&manager, &call, &target, options).await {
                        Ok(session_core::b2bua::B2buaOutcome::Completed) => bump(&tally.bridged),
                        Ok(_) => {}
                        Err(error) => eprintln!("b2bua: {error}"),
                    }
                });
                // The caller hears the B leg's 180/183 when it comes.
                CallDecision::DeferSilently
            }
            Mode::Ring => {
                // 180 now; the answer after the ring time unless the caller gives up first.
                let session = call.session.clone();
                let ring = self.config.ring;
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(ring) => {
                            // A call cancelled at the same moment cannot be accepted: fine.
                            let _ = session.accept().await;
                        }
                        _ = session.ended() => {}
                    }
                });
                CallDecision::Defer
            }
        }
    }

    fn on_call_established(&self, call: &CallSession) {
        let b2bua = matches!(self.config.mode, Mode::B2bua(_));
        match call.direction() {
            session_core::Direction::Inbound => bump(&self.tally.answered),
            _ if b2bua => bump(&self.tally.b_legs_answered),
            _ => bump(&self.tally.transfers_answered),
        }
        if let (Mode::Conference, Some((_, Some(room)))) = (&self.config.mode, self.started.get()) {
            let (call, room, tally) = (call.clone(), *room, self.tally.clone());
            tokio::spawn(async move {
                match call.join_bridge(room).await {
                    Ok(()) => bump(&tally.bridged),
                    Err(error) => eprintln!("conference: {error}"),
                }
            });
            return;
        }
        if b2bua {
            // Its media belongs to the bridge.
            return;
        }
        if self.config.rtp_echo {
            let call = call.clone();
            let tally = self.tally.clone();
            tokio::spawn(async move {
                let _ = call.attach_sink(Box::new(Discard)).await;
                // The figures survive the call: read the final ones. Frames received (into the
                // jitter buffer) against packets sent: the echo sends back each frame received.
                call.ended().await;
                if let Ok(stats) = call.stats().await {
                    let received = stats.playout.map_or(0, |playout| playout.received);
                    let sent = stats.rtp.map_or(0, |rtp| rtp.packets_sent);
                    tally.rtp_frames.fetch_add(received, Ordering::Relaxed);
                    tally.rtp_sent.fetch_add(sent, Ordering::Relaxed);
                }
            });
        }
        if let Some(after) = self.config.hangup_after {
            let call = call.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(after) => {
                        // The peer may have hung up at the same moment: then there is no call.
                        let _ = call.hangup().await;
                    }
                    _ = call.ended() => {}
                }
            });
        }
    }

    fn on_call_ended(&self, _call: &CallSession, reason: TerminationReason, _stats: &CallStats) {
        let counter = match reason {
            TerminationReason::LocalHangup => &self.tally.hangups_ours,
            TerminationReason::RemoteHangup => &self.tally.hangups_peer,
            TerminationReason::Cancelled => &self.tally.cancelled,
            TerminationReason::Failed(FailureReason::Rejected(_)) => &self.tally.rejected,
            TerminationReason::Shutdown => &self.tally.shutdown,
            _ => &self.tally.failed,
        };
        bump(counter);
    }

    fn on_dtmf(&self, _call: &CallSession, digit: char, _method: DtmfMethod) {
        if let Ok(mut digits) = self.tally.digits.lock() {
            digits.push(digit);
        }
    }

    fn on_transfer_request(
        &self,
        call: &CallSession,
        request: &TransferRequest,
    ) -> TransferDecision {
        bump(&self.tally.transfers);
        let (Mode::B2bua(_), Some((manager, _))) = (&self.config.mode, self.started.get()) else {
            return TransferDecision::Accept;
        };
        // A B2BUA carries its legs' transfers out itself: no REFER goes on to the other side.
        let transfer = session_core::IncomingTransfer {
            session: call.clone(),
            request: request.clone(),
        };
        let manager = manager.clone();
        tokio::spawn(async move {
            let options = session_core::b2bua::B2buaOptions::default();
            if let Err(error) =
                session_core::b2bua::transfer_locally(&manager, &transfer, options).await
            {
                eprintln!("b2bua transfer: {error}");
            }
        });
        TransferDecision::Defer
    }

    fn on_remote_hold(&self, _call: &CallSession, held: bool) {
        bump(if held {
            &self.tally.holds
        } else {
            &self.tally.resumes
        });
    }

    fn on_message(&self, _call: &CallSession, _request: &session_core::crates::sip::Request) {
        bump(&self.tally.messages);
    }
}

async fn start_uas(config: UasConfig) -> Result<(SessionManager, Arc<Tally>), BoxError> {
    let tally = Arc::new(Tally::default());
    let bridging = matches!(config.mode, Mode::B2bua(_) | Mode::Conference);
    let mut builder = SessionManager::builder()
        .bind(config.bind)
        .media_mode(if bridging {
            // Bridged calls need our media: the bridge relays or mixes it.
            MediaMode::Rtp { echo: false }
        } else if config.rtp_echo {
            MediaMode::Rtp { echo: true }
        } else {
            MediaMode::SignalingOnly
        });
    if let Some(max) = config.max_sessions {
        builder = builder.limits(Limits::default().max_sessions(max));
    }
    if let Some(ports) = config.rtp_ports.clone() {
        builder = builder.media_ports(ports);
    }
    if let Some(grace) = config.shutdown_grace {
        builder = builder.shutdown_grace(grace);
    }
    if config.reserve_calls > 0 {
        builder = builder.reserve_calls(config.reserve_calls);
    }
    if let Some(address) = config.metrics {
        builder = builder.metrics_address(address);
    }
    if let Some(tls) = config.tls.config()? {
        builder = builder.tls(tls, None);
    }
    let started = Arc::new(std::sync::OnceLock::new());
    let conference = config.mode == Mode::Conference;
    let manager = builder
        .handler(Uas {
            config,
            tally: tally.clone(),
            started: started.clone(),
        })
        .start()
        .await?;
    let room = if conference {
        Some(manager.create_bridge(session_core::TechnologyChoice::ForceMixer)?)
    } else {
        None
    };
    let _ = started.set((manager.clone(), room));
    Ok((manager, tally))
}

/// Ctrl-C and SIGTERM, listened for from the start: a signal that comes while the server
/// drains is not lost (nor does it kill the process) before the second wait begins.
struct StopRequests {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopRequests {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// Resolves on the next Ctrl-C or SIGTERM.
    async fn next(&mut self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                result = tokio::signal::ctrl_c() => result,
                _ = self.term.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await
        }
    }
}

async fn run_uas(config: UasConfig) -> Result<ExitCode, BoxError> {
    let mode = config.mode.clone();
    let grace = config.drain_grace;
    let mut stops = StopRequests::new()?;
    let (manager, tally) = start_uas(config).await?;
    let tls = manager
        .tls_addr()
        .map(|tls| format!(" tls {tls}"))
        .unwrap_or_default();
    println!("listening on {}{tls} (mode {mode:?})", manager.local_addr());
    if let Some(metrics) = manager.metrics_addr() {
        println!("metrics on {metrics}");
    }
    stops.next().await?;
    // Out of service: new calls refused (and OPTIONS 503, so a balancer stops sending), the
    // calls in progress given the grace to finish.
    println!(
        "draining: {} call(s) in progress, up to {} ms",
        manager.active_calls(),
        grace.as_millis()
    );
    let mut drain = tokio::spawn({
        let manager = manager.clone();
        async move { manager.drain(grace).await }
    });
    let report = tokio::select! {
        report = &mut drain => report?,
        stopped = stops.next() => {
            stopped?;
            println!("stopping: ending {} live call(s)", manager.active_calls());
            // Cuts the drain short; it reports the calls it had left as ended.
            manager.shutdown().await;
            drain.await?
        }
    };
    println!(
        "drained: {} call(s) finished, {} ended",
        report.finished, report.ended
    );
    // Refused before any state was made (overload, admission limit or drain): never
    // `incoming`.
    println!(
        "{} shed={} drain_finished={} drain_ended={}",
        tally.summary(),
        manager.shed_calls(),
        report.finished,
        report.ended
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// UAC
// ---------------------------------------------------------------------------------------------

/// How one call went.
#[derive(Debug)]
enum Outcome {
    /// Answered (after this setup time) and ended cleanly, by us or by the peer.
    Completed { setup: Duration },
    /// Refused with this final status.
    Refused(StatusCode),
    /// Anything else, described.
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Completed { setup } => write!(f, "completed (set up in {setup:?})"),
            Self::Refused(status) => write!(f, "refused with {status}"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// All calls of a UAC run.
#[derive(Debug, Default)]
struct UacReport {
    outcomes: Vec<Outcome>,
    expected: Option<StatusCode>,
}

impl UacReport {
    fn succeeded(&self, outcome: &Outcome) -> bool {
        match (outcome, self.expected) {
            (Outcome::Completed { .. }, None) => true,
            (Outcome::Refused(status), Some(expected)) => *status == expected,
            _ => false,
        }
    }

    fn ok(&self) -> usize {
        self.outcomes.iter().filter(|o| self.succeeded(o)).count()
    }

    fn all_ok(&self) -> bool {
        self.ok() == self.outcomes.len()
    }

    fn refused(&self) -> BTreeMap<u16, usize> {
        let mut refused = BTreeMap::new();
        for outcome in &self.outcomes {
            if let Outcome::Refused(status) = outcome {
                *refused.entry(status.as_u16()).or_insert(0) += 1;
            }
        }
        refused
    }

    fn setup_times(&self) -> Vec<Duration> {
        let mut times: Vec<Duration> = self
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Completed { setup } => Some(*setup),
                _ => None,
            })
            .collect();
        times.sort();
        times
    }

    fn summary(&self) -> String {
        let times = self.setup_times();
        let percentile = |p: f64| {
            // Nearest rank; `times` is sorted and checked non-empty by the caller.
            let rank = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len());
            times[rank - 1].as_secs_f64() * 1000.0
        };
        let refused = self
            .refused()
            .iter()
            .map(|(code, n)| format!("{code}x{n}"))
            .collect::<Vec<_>>()
            .join(",");
        let failed = self
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed(_)))
            .count();
        let setup = if times.is_empty() {
            "setup_p50_ms=- setup_p99_ms=-".to_owned()
        } else {
            format!(
                "setup_p50_ms={:.1} setup_p99_ms={:.1}",
                percentile(0.50),
                percentile(0.99)
            )
        };
        format!(
            "summary: calls={} ok={} answered={} refused={} failed={} {setup}",
            self.outcomes.len(),
            self.ok(),
            times.len(),
            if refused.is_empty() { "-" } else { &refused },
            failed,
        )
    }
}

async fn one_call(manager: SessionManager, config: Arc<UacConfig>) -> Outcome {
    let started = Instant::now();
    let mut options = CallOptions::default();
    if config.tcp {
        options = options.tcp();
    }
    if let Some(proxy) = &config.proxy {
        options = options.proxy(proxy);
    }
    let call = match manager.call_with(&config.target, options).await {
        Ok(call) => call,
        Err(error) => return Outcome::Failed(format!("not placed: {error}")),
    };
    match tokio::time::timeout(CALL_LIMIT, call.answered()).await {
        Err(_) => {
            let _ = call.hangup().await;
            return Outcome::Failed(format!("no answer in {CALL_LIMIT:?}"));
        }
        Ok(Err(error)) => {
            return match error.status() {
                Some(status)
                    if matches!(call.state(), CallState::Failed(FailureReason::Rejected(_))) =>
                {
                    Outcome::Refused(status)
                }
                _ => Outcome::Failed(format!("not answered: {error}")),
            };
        }
        Ok(Ok(())) => {}
    }
    let setup = started.elapsed();
    // Talk for the call's duration unless the peer hangs up first; either ending is clean.
    let ended_by_peer = tokio::select! {
        () = tokio::time::sleep(config.duration) => false,
        _ = call.ended() => true,
    };
    if !ended_by_peer && let Err(error) = call.hangup().await {
        // The peer's BYE may have crossed ours: only a call still up is a failure.
        if !call.state().is_final() {
            return Outcome::Failed(format!("hangup failed: {error}"));
        }
    }
    match tokio::time::timeout(CALL_LIMIT, call.ended()).await {
        Ok(CallState::Terminated) => Outcome::Completed { setup },
        Ok(other) => Outcome::Failed(format!("ended as {other:?}")),
        Err(_) => Outcome::Failed(format!("BYE not answered in {CALL_LIMIT:?}")),
    }
}

/// Places the calls at the configured rate, all concurrently, and waits for every one.
async fn uac_calls(config: UacConfig) -> Result<UacReport, BoxError> {
    let mut builder = SessionManager::builder()
        .bind(config.bind)
        .media_mode(if config.rtp_echo {
            MediaMode::Rtp { echo: true }
        } else {
            MediaMode::SignalingOnly
        });
    if let Some(grace) = config.shutdown_grace {
        builder = builder.shutdown_grace(grace);
    }
    if let Some(ports) = config.rtp_ports.clone() {
        builder = builder.media_ports(ports);
    }
    if let Some(tls) = config.tls.config()? {
        builder = builder.tls(tls, None);
    }
    let manager = builder.start().await?;
    let expected = (config.expect != StatusCode::OK).then_some(config.expect);
    let config = Arc::new(config);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / config.rate));
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..config.calls {
        pace.tick().await;
        let (manager, config) = (manager.clone(), config.clone());
        calls.spawn(async move { (index, one_call(manager, config).await) });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = calls.join_next().await {
        outcomes.push(done?);
    }
    outcomes.sort_by_key(|(index, _)| *index);
    manager.shutdown().await;
    Ok(UacReport {
        outcomes: outcomes.into_iter().map(|(_, outcome)| outcome).collect(),
        expected,
    })
}

async fn run_uac(config: UacConfig) -> Result<ExitCode, BoxError> {
    let tls = config.target.starts_with("sips:")
        || config
            .target
            .to_ascii_lowercase()
            .contains(";transport=tls");
    println!(
        "calling {} {} time(s) at {}/s over {}",
        config.target,
        config.calls,
        config.rate,
        match (tls, config.tcp) {
            (true, _) => "TLS",
            (false, true) => "TCP",
            (false, false) => "UDP",
        }
    );
    let report = uac_calls(config).await?;
    for (index, outcome) in report.outcomes.iter().enumerate() {
        if !report.succeeded(outcome) {
            println!("call {}: {outcome}", index + 1);
        }
    }
    println!("{}", report.summary());
    Ok(if report.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------------
// Self-check
// ---------------------------------------------------------------------------------------------

/// Starts a UAS in `config`'s mode, runs the UAC against it, shuts the UAS down, and returns
/// both sides' accounts.
///
/// Shutdown waits at most [`SELF_CHECK_GRACE`] for transactions still absorbing retransmissions
/// (the library waits up to 2 s): on loopback every response has long arrived by then.
async fn exchange(
    mut uas: UasConfig,
    uac: impl FnOnce(String) -> UacConfig,
) -> Result<(UacReport, Arc<Tally>), BoxError> {
    uas.shutdown_grace = Some(SELF_CHECK_GRACE);
    let (manager, tally) = start_uas(uas).await?;
    let target = format!("sip:sipp@{}", manager.local_addr());
    let mut uac = uac(target);
    uac.shutdown_grace = Some(SELF_CHECK_GRACE);
    let report = uac_calls(uac).await;
    manager.shutdown().await;
    let report = report?;
    println!("  UAC {}", report.summary());
    println!("  UAS {}", tally.summary());
    Ok((report, tally))
}

/// Starts a UAS, has a UAC place one call that lasts a second, drains the UAS (with a grace
/// longer than that) once the call is up, and places a second call meanwhile. Returns the
/// second call's account, the drain's report and the UAS's tally, after checking that the
/// first call completed.
async fn drain_exchange() -> Result<(UacReport, session_core::DrainReport, Arc<Tally>), BoxError> {
    let uas = UasConfig {
        shutdown_grace: Some(SELF_CHECK_GRACE),
        ..UasConfig::loopback(Mode::Auto)
    };
    let (manager, tally) = start_uas(uas).await?;
    let target = format!("sip:sipp@{}", manager.local_addr());
    let uac = |expect| UacConfig {
        duration: Duration::from_secs(1),
        expect,
        shutdown_grace: Some(SELF_CHECK_GRACE),
        ..UacConfig::to(target.clone())
    };
    let mut states = manager.events().subscribe(session_core::Filter::kind(
        session_core::EventKind::StateChanged,
    ));
    let first = tokio::spawn(uac_calls(uac(StatusCode::OK)));
    // The first call is up at the UAS (its ACK came) before the drain begins.
    tokio::time::timeout(CALL_LIMIT, async {
        while let Ok(event) = states.recv().await {
            if let session_core::SessionEvent::StateChanged { new, .. } = *event
                && new.is_established()
            {
                return;
            }
        }
    })
    .await?;
    let drain = manager.drain(Duration::from_secs(10));
    tokio::pin!(drain);
    // Polled first, so the drain has begun when the second call goes out.
    let second = tokio::select! {
        biased;
        report = &mut drain => {
            return Err(format!("the drain ended with a call up: {report:?}").into());
        }
        second = uac_calls(uac(StatusCode::SERVICE_UNAVAILABLE)) => second?,
    };
    let drained = tokio::time::timeout(CALL_LIMIT, drain).await?;
    let first = first.await??;
    println!("  UAC {}", first.summary());
    println!("  UAC {}", second.summary());
    println!("  UAS {}", tally.summary());
    check(first.all_ok(), "the call in progress completed");
    Ok((second, drained, tally))
}

async fn self_check() -> Result<ExitCode, BoxError> {
    let get = Tally::get;

    section("1. auto: three calls answered at once, each hung up by the UAC after 100 ms");
    let (report, uas) = exchange(UasConfig::loopback(Mode::Auto), |target| UacConfig {
        calls: 3,
        rate: 50.0,
        duration: Duration::from_millis(100),
        ..UacConfig::to(target)
    })
    .await?;
    check(
        report.all_ok() && report.ok() == 3,
        "the UAC completed 3 calls",
    );
    check(
        get(&uas.answered) == 3 && get(&uas.hangups_peer) == 3,
        "the UAS answered 3 and saw 3 BYEs",
    );

    section("2. busy: 486 Busy Here is a failure, unless it is the status expected");
    let (report, uas) = exchange(
        UasConfig::loopback(Mode::Reject(StatusCode::BUSY_HERE)),
        UacConfig::to,
    )
    .await?;
    check(!report.all_ok(), "a refused call is not a success");
    check(
        matches!(
            report.outcomes[..],
            [Outcome::Refused(StatusCode::BUSY_HERE)]
        ),
        "the UAC saw 486",
    );
    check(get(&uas.rejected) == 1, "the UAS counted one rejection");
    let (report, _) = exchange(
        UasConfig::loopback(Mode::Reject(StatusCode::BUSY_HERE)),
        |target| UacConfig {
            expect: StatusCode::BUSY_HERE,
            ..UacConfig::to(target)
        },
    )
    .await?;
    check(
        report.all_ok(),
        "with --expect-status 486 the refusal is the success",
    );

    section("3. reject=603");
    let (report, _) = exchange(
        UasConfig::loopback(Mode::Reject(StatusCode::DECLINE)),
        |target| UacConfig {
            expect: StatusCode::DECLINE,
            ..UacConfig::to(target)
        },
    )
    .await?;
    check(report.all_ok(), "the UAC saw 603 Decline");

    section("4. ring: 180, then 200 after 300 ms");
    let ring = Duration::from_millis(300);
    let (report, uas) = exchange(
        UasConfig {
            ring,
            ..UasConfig::loopback(Mode::Ring)
        },
        UacConfig::to,
    )
    .await?;
    check(report.all_ok(), "the call was answered");
    check(
        report
            .setup_times()
            .first()
            .is_some_and(|setup| *setup >= ring),
        "not before the ring time",
    );
    check(get(&uas.answered) == 1, "the UAS answered it");

    section("5. --hangup-after-ms 200: the UAS hangs up; for the UAC that is a clean end");
    let (report, uas) = exchange(
        UasConfig {
            hangup_after: Some(Duration::from_millis(200)),
            ..UasConfig::loopback(Mode::Auto)
        },
        |target| UacConfig {
            duration: Duration::from_secs(20),
            ..UacConfig::to(target)
        },
    )
    .await?;
    check(report.all_ok(), "the call completed");
    check(get(&uas.hangups_ours) == 1, "the UAS sent the BYE");

    section("6. --max-sessions 1: a second concurrent call gets 503");
    let (report, uas) = exchange(
        UasConfig {
            ring: Duration::from_millis(300),
            max_sessions: Some(1),
            ..UasConfig::loopback(Mode::Ring)
        },
        |target| UacConfig {
            calls: 2,
            rate: 100.0,
            ..UacConfig::to(target)
        },
    )
    .await?;
    check(
        matches!(
            report.outcomes[..],
            [
                Outcome::Completed { .. },
                Outcome::Refused(StatusCode::SERVICE_UNAVAILABLE)
            ]
        ),
        "first answered, second refused with 503",
    );
    check(
        get(&uas.incoming) == 1,
        "the refused call never reached the handler",
    );

    section("7. TCP, with RTP echo on the UAS");
    let (report, uas) = exchange(
        UasConfig {
            rtp_echo: true,
            ..UasConfig::loopback(Mode::Auto)
        },
        |target| UacConfig {
            tcp: true,
            duration: Duration::from_millis(100),
            ..UacConfig::to(target)
        },
    )
    .await?;
    check(report.all_ok(), "the call over TCP completed");
    check(get(&uas.answered) == 1, "the UAS answered it");

    section("8. b2bua=URI: calls carried to another UAS through our bridge");
    for (far_mode, expect) in [
        (Mode::Auto, None),
        (
            Mode::Reject(StatusCode::BUSY_HERE),
            Some(StatusCode::BUSY_HERE),
        ),
    ] {
        let far = UasConfig {
            shutdown_grace: Some(SELF_CHECK_GRACE),
            ..UasConfig::loopback(far_mode)
        };
        let (far_manager, far_tally) = start_uas(far).await?;
        // No user in the URI: the B leg takes the incoming Request-URI's.
        let target = format!("sip:{}", far_manager.local_addr());
        let (report, b2bua) = exchange(UasConfig::loopback(Mode::B2bua(target)), |target| {
            UacConfig {
                calls: 2,
                duration: Duration::from_millis(100),
                expect: expect.unwrap_or(StatusCode::OK),
                ..UacConfig::to(target)
            }
        })
        .await?;
        far_manager.shutdown().await;
        println!("  far UAS {}", far_tally.summary());
        match expect {
            None => {
                check(report.all_ok(), "both calls completed through the B2BUA");
                check(
                    get(&b2bua.bridged) == 2
                        && get(&b2bua.b_legs_answered) == 2
                        && get(&far_tally.answered) == 2
                        && get(&far_tally.hangups_peer) == 2,
                    "two B legs answered, bridged, and ended by the A side's BYE",
                );
            }
            Some(status) => check(
                report.all_ok() && get(&far_tally.rejected) == 2,
                format!("the far end's {status} reached the caller unchanged"),
            ),
        }
    }

    section("9. conference: every call answered and joined to one room");
    let (report, uas) = exchange(UasConfig::loopback(Mode::Conference), |target| UacConfig {
        calls: 3,
        rate: 50.0,
        duration: Duration::from_millis(300),
        rtp_echo: true,
        ..UacConfig::to(target)
    })
    .await?;
    check(report.all_ok(), "three calls completed");
    check(
        get(&uas.answered) == 3 && get(&uas.bridged) == 3,
        "all three joined the room",
    );

    section("10. drain: the call in progress finishes, a new one gets 503, then the UAS stops");
    let (report, drained, uas) = drain_exchange().await?;
    check(
        matches!(
            report.outcomes[..],
            [Outcome::Refused(StatusCode::SERVICE_UNAVAILABLE)]
        ),
        "the call placed during the drain got 503",
    );
    check(
        get(&uas.incoming) == 1,
        "it never reached the handler (refused by the SIP layer)",
    );
    check(
        drained.finished == 1 && drained.ended == 0,
        format!("the call in progress finished by itself ({drained:?})"),
    );

    println!("\nall checks passed");
    Ok(ExitCode::SUCCESS)
}

// One thread: the SIP driver task and the manager task hand every call back and forth, and on
// a multi-thread runtime each handoff is a cross-thread wakeup. Measured side by side with
// `cargo xtask sipp --load --start-rate 4000 --max-rate 4000 --hold-calls 0`: 70 µs of CPU per
// call on the default runtime, 46 µs on this one (docs/BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse_args(&args) {
        Ok(Run::SelfCheck) => self_check().await,
        Ok(Run::Uas(config)) => run_uas(config).await,
        Ok(Run::Uac(config)) => run_uac(config).await,
        Ok(Run::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
