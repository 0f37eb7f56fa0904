//! The `proxy-*` scenarios of `cargo xtask sipp`: calls through Kamailio, a real record-routing
//! proxy, to prove that example 20 keeps the route set (RFC 3261 §12.1, §16.12.1.1).
//!
//! A proxy that record-routes wants every later request of the dialog sent through it. The UAS
//! copies the INVITE's Record-Route into its 18x/2xx (§12.1.1), the UAC takes the route set from
//! that response in reverse order (§12.1.2), and both then send ACK, BYE, re-INVITE … with those
//! Route headers, to the first route (§12.2.1.1). A side that drops Record-Route leaves the
//! other with no route set: its ACK and BYE reach the proxy without Route and are refused.
//!
//! **The proxy.** [`Kamailio`] runs `kamailio` in the foreground on a free loopback port
//! (UDP and TCP), with a configuration generated into the scenario's directory:
//! `tm`, `sl`, `rr`, `pv`, `xlog`, `maxfwd`, and a request route that
//!
//! - for a request inside a dialog (To tag): relays it by `loose_route()` and logs
//!   `ROUTED <method> <call-id>`; without a Route to itself it relays an ACK matching a
//!   transaction (`STATEFUL`), and otherwise logs `NOROUTE <method> <call-id>` and answers
//!   `404 Not here` (an ACK only gets the log line), so a request that skips the route set fails
//!   the call;
//! - relays a CANCEL matching a transaction;
//! - for an initial request: consumes a Route to itself (a pre-loaded route), record-routes
//!   (`;lr`, one Record-Route since in and out are the same UDP socket), logs
//!   `INITIAL <method> <call-id> <the Route it came with>` and relays it to the Request-URI, or
//!   to a fixed next hop (the next proxy of a chain, or example 20 when the Request-URI names
//!   the proxy).
//!
//! A scenario passes when SIPp and example 20 succeed as in the other scenarios and every
//! proxy's log holds `ROUTED ACK` and `ROUTED BYE` for each call (counted by Call-ID, so that a
//! retransmission does not count twice) and no `NOROUTE`.
//!
//! Kamailio is `$KAMAILIO` if set, else `kamailio` on PATH or in `/usr/sbin` (where Debian's
//! package puts it: `apt-get install --no-install-recommends kamailio`). Without it the
//! scenarios are skipped, except under CI where they fail. Kamailio is stopped on every path:
//! SIGTERM, then after a bound SIGKILL to it and to its children.

use super::{
    Ctx, Example, NotPassed, OK_TO_LAST, START_LIMIT, SippServer, Verdict, answered_invite, ensure,
    free_port, in_dialog_to, port_bound, scenario, sipp_uac, uac,
};
use crate::util::{self, Outcome, children_of, tail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long Kamailio may take to exit after SIGTERM before it and its children are killed.
const KAMAILIO_STOP: Duration = Duration::from_secs(5);

const INSTALL: &str = "apt-get install -y --no-install-recommends kamailio";

/// The modules the generated configuration loads.
const MODULES: &[&str] = &["tm", "sl", "rr", "pv", "xlog", "maxfwd"];

// ---------------------------------------------------------------------------------------------
// Kamailio
// ---------------------------------------------------------------------------------------------

/// Kamailio running in the foreground with a generated configuration: stopped on drop.
pub(super) struct Kamailio {
    child: Child,
    port: u16,
    log: PathBuf,
    /// How it ended, once stopped.
    status: Option<ExitStatus>,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Kamailio {
    /// Starts Kamailio on a free loopback port, named `name` (its files in the scenario's
    /// directory: `NAME.cfg`, `NAME.log`), relaying initial requests to loopback port
    /// `next_hop` if given, else to their Request-URI. Returns once its UDP and TCP ports are
    /// bound.
    pub(super) fn start(
        ctx: &Ctx,
        binary: &Path,
        name: &str,
        next_hop: Option<u16>,
    ) -> Result<Self, String> {
        let modules = module_dir(ctx, binary)?;
        let port = free_port()?;
        let config = ctx.work.join(format!("{name}.cfg"));
        std::fs::write(&config, config_text(port, &modules, next_hop))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log = ctx.work.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("-f")
            .arg(&config)
            // Foreground (-DD: no daemon, children still forked), log to stderr (-E), 32 MB of
            // shared and 8 MB of private memory, runtime files and working dir in `ctx.work`.
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(&ctx.work)
            .arg("-w")
            .arg(&ctx.work)
            .current_dir(&ctx.work)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut kamailio = Self {
            child,
            port,
            log,
            status: None,
        };
        let deadline = Instant::now() + START_LIMIT;
        while !(port_bound(port, false) && port_bound(port, true)) {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                kamailio.status = Some(status);
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

    pub(super) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops Kamailio (SIGTERM, then SIGKILL to it and its children after [`KAMAILIO_STOP`]);
    /// idempotent. Returns its exit status, `None` if it had to be killed.
    fn stop(&mut self) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            self.status = Some(status);
            return self.status;
        }
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + KAMAILIO_STOP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
                return self.status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The children first, while they are still recognisably the main process's.
        for child in children_of(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &child.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// What its log says about routing so far. Read once the calls are over and before
    /// example 20 stops, since a UAS that shuts down ends the calls it still holds with BYE
    /// (along its route set), which must not count as the calls' own.
    pub(super) fn routing(&self) -> Result<Routing, String> {
        let text = std::fs::read_to_string(&self.log)
            .map_err(|e| format!("cannot read {}: {e}", self.log.display()))?;
        Ok(Routing::parse(&text, &self.log))
    }

    /// Stops Kamailio, which must exit by itself after SIGTERM.
    pub(super) fn finish(mut self) -> Result<(), String> {
        ensure(self.stop().is_some(), || {
            format!("Kamailio did not exit within {KAMAILIO_STOP:?} of SIGTERM (killed)")
        })
    }
}

/// The Kamailio binary, or why the scenario is skipped (a failure under CI).
fn installed() -> Result<PathBuf, NotPassed> {
    find_kamailio().ok_or_else(|| {
        NotPassed::Skipped(format!(
            "`kamailio` is not installed (looked at $KAMAILIO, else on PATH and in /usr/sbin, \
             /usr/local/sbin): sudo {INSTALL}"
        ))
    })
}

/// `$KAMAILIO` if set, else `kamailio` on PATH or where Debian puts it (`/usr/sbin`, not on
/// every user's PATH).
fn find_kamailio() -> Option<PathBuf> {
    if let Some(binary) = std::env::var_os("KAMAILIO") {
        let binary = PathBuf::from(binary);
        return binary.is_file().then_some(binary);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("kamailio"))
        .find(|candidate| candidate.is_file())
}

/// The directory holding Kamailio's modules: the one `kamailio -h` names as its default
/// (`-L path ... (default: DIR)`) when `tm.so` is there, else the first of the usual places
/// (`/usr/lib/<multiarch>/kamailio/modules`, `/usr/lib{,64}/…`, `/usr/local/lib{,64}/…`) that
/// holds it.
fn module_dir(ctx: &Ctx, binary: &Path) -> Result<PathBuf, String> {
    let has_tm = |dir: &Path| dir.join("tm.so").is_file();
    let help = ctx.work.join("kamailio-help.log");
    let mut command = Command::new(binary);
    command.arg("-h");
    let default = match util::run_with_timeout(command, &help, Duration::from_secs(5)) {
        Ok((Outcome::Exited(_), _)) => std::fs::read_to_string(&help)
            .unwrap_or_default()
            .lines()
            .find(|line| line.trim_start().starts_with("-L "))
            .and_then(|line| line.split("(default: ").nth(1))
            .and_then(|rest| rest.split(')').next())
            .map(|dir| PathBuf::from(dir.trim())),
        _ => None,
    };
    let _ = std::fs::remove_file(&help);
    if let Some(dir) = default.filter(|dir| has_tm(dir)) {
        return Ok(dir);
    }
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
    let searched = "the directory `kamailio -h` names, /usr/lib/*/kamailio/modules, \
                    /usr/lib{,64}/kamailio/modules, /usr/local/lib{,64}/kamailio/modules";
    candidates
        .into_iter()
        .find(|dir| has_tm(dir))
        .ok_or_else(|| format!("cannot find Kamailio's modules (tm.so) in {searched}"))
}

/// The configuration of a proxy on `127.0.0.1:port`, loading modules from `modules`, relaying
/// initial requests to `127.0.0.1:next_hop` if given, else to their Request-URI.
fn config_text(port: u16, modules: &Path, next_hop: Option<u16>) -> String {
    let loads: String = MODULES
        .iter()
        .map(|module| format!("loadmodule \"{module}.so\"\n"))
        .collect();
    let next_hop = match next_hop {
        Some(next) => format!(
            "    # The next hop of every initial request (the Request-URI may name this proxy).\n    \
             $du = \"sip:127.0.0.1:{next}\";\n"
        ),
        None => String::new(),
    };
    let modules = modules.display();
    format!(
        r#"#!KAMAILIO
# Generated by `cargo xtask sipp` (xtask/src/sipp/proxy.rs): a record-routing proxy that logs
# how it routed each request. Run in the foreground: kamailio -f THIS -DD -E -m 32 -M 8.

debug=2
log_stderror=yes
children=2
tcp_children=1
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}

loadpath "{modules}"
{loads}
# Record-Route as <sip:127.0.0.1:{port};lr;ftag=...>: `;lr`, not `;lr=on` (the default).
modparam("rr", "enable_full_lr", 0)
# Two Record-Routes only when a request leaves by another socket than it came in on (the
# default); with one UDP socket each way there is one.
modparam("rr", "enable_double_rr", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # Inside a dialog: only along the route set.
    if ($tt != $null) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "ROUTED $rm $ci\n");
            if (!t_relay()) {{
                sl_reply_error();
            }}
            exit;
        }}
        # The ACK of a non-2xx final response belongs to the INVITE's transaction.
        if (method == "ACK" && t_check_trans()) {{
            xlog("L_NOTICE", "STATEFUL $rm $ci\n");
            t_relay();
            exit;
        }}
        xlog("L_NOTICE", "NOROUTE $rm $ci\n");
        if (method != "ACK") {{
            sl_send_reply("404", "Not here");
        }}
        exit;
    }}
    if (method == "CANCEL") {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    # An initial request: drop a pre-loaded Route naming this proxy, stay on the path.
    if ($hdr(Route) != $null) {{
        $var(route) = $hdr(Route);
    }} else {{
        $var(route) = "none";
    }}
    loose_route();
    record_route();
{next_hop}    xlog("L_NOTICE", "INITIAL $rm $ci $var(route)\n");
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
"#
    )
}

/// What a proxy's log says: per kind (`INITIAL`, `ROUTED`, `STATEFUL`, `NOROUTE`) and method,
/// the Call-IDs and how many lines.
pub(super) struct Routing {
    /// `(kind, method)` → Call-ID → lines.
    seen: BTreeMap<(String, String), BTreeMap<String, usize>>,
    /// The pre-loaded Route of each initial request (`none` when it had none).
    initial_routes: Vec<String>,
    log: PathBuf,
}

impl Routing {
    fn parse(text: &str, log: &Path) -> Self {
        let mut seen: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
        let mut initial_routes = Vec::new();
        for line in text.lines() {
            let Some((_, message)) = line.split_once("<script>: ") else {
                continue;
            };
            let mut words = message.split_whitespace();
            let (Some(kind), Some(method), Some(call_id)) =
                (words.next(), words.next(), words.next())
            else {
                continue;
            };
            if kind == "INITIAL" {
                initial_routes.push(words.collect::<Vec<_>>().join(" "));
            }
            *seen
                .entry((kind.to_owned(), method.to_owned()))
                .or_default()
                .entry(call_id.to_owned())
                .or_default() += 1;
        }
        Self {
            seen,
            initial_routes,
            log: log.to_path_buf(),
        }
    }

    /// How many calls (Call-IDs) had a `kind` line for `method`.
    fn calls(&self, kind: &str, method: &str) -> usize {
        self.seen
            .get(&(kind.to_owned(), method.to_owned()))
            .map_or(0, BTreeMap::len)
    }

    /// E.g. `INITIAL INVITE 5, ROUTED ACK 5, ROUTED BYE 5 (6 lines)`: calls, and lines where
    /// more.
    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .seen
            .iter()
            .map(|((kind, method), calls)| {
                let lines: usize = calls.values().sum();
                if lines == calls.len() {
                    format!("{kind} {method} {}", calls.len())
                } else {
                    format!("{kind} {method} {} ({lines} lines)", calls.len())
                }
            })
            .collect();
        if parts.is_empty() {
            "nothing logged".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Checks that ACK and BYE of each of `calls` calls went along the route set, and that
    /// nothing was refused for the lack of one.
    fn expect(&self, calls: usize) -> Result<(), String> {
        let refused: Vec<String> = self
            .seen
            .iter()
            .filter(|((kind, _), _)| kind == "NOROUTE")
            .flat_map(|((_, method), ids)| ids.keys().map(move |id| format!("{method} {id}")))
            .collect();
        let wrong = !refused.is_empty()
            || self.calls("ROUTED", "ACK") != calls
            || self.calls("ROUTED", "BYE") != calls;
        if !wrong {
            return Ok(());
        }
        let mut message = format!(
            "{}: expected ROUTED ACK {calls}, ROUTED BYE {calls}, no NOROUTE; got {}",
            self.log.display(),
            self.describe()
        );
        if !refused.is_empty() {
            message.push_str(&format!(
                "\n  without a Route to the proxy (404 / ACK dropped): {}",
                refused.join(", ")
            ));
        }
        Err(message)
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// SIPp's UAC `scenario` through one Kamailio (or two, `chain`) to example 20 with `flags`, for
/// `calls` calls; example 20's summary must hold `expected` and every proxy must have routed
/// each call's ACK and BYE.
fn sipp_to_example(
    ctx: &Ctx,
    flags: &[&str],
    scenario: &str,
    calls: u32,
    chain: bool,
    expected: &[(&str, &str)],
) -> Verdict {
    let kamailio = installed()?;
    let (uas, address) = Example::uas(ctx, flags)?;
    // Started from the UAS back: each proxy needs its next hop's port.
    let last = if chain { "kamailio-2" } else { "kamailio" };
    let mut proxies = vec![Kamailio::start(ctx, &kamailio, last, Some(address.port()))?];
    if chain {
        let next = proxies[0].port;
        proxies.insert(
            0,
            Kamailio::start(ctx, &kamailio, "kamailio-1", Some(next))?,
        );
    }
    let sipp = sipp_uac(ctx, scenario, proxies[0].addr(), calls, &[]);
    let routing: Vec<Result<Routing, String>> = proxies.iter().map(Kamailio::routing).collect();
    let routes = describe_all(&routing);
    let summary = uas.stop();
    let stopped: Result<Vec<()>, String> = proxies.into_iter().map(Kamailio::finish).collect();
    sipp.map_err(|e| format!("{e}\n{routes}"))?;
    let summary = summary?;
    summary
        .expect(expected)
        .map_err(|e| format!("{e}\n{routes}"))?;
    for proxy in routing {
        proxy?.expect(calls as usize)?;
    }
    stopped?;
    Ok(format!("{}; {routes}", summary.line))
}

/// One line per proxy: what it logged.
fn describe_all(routing: &[Result<Routing, String>]) -> String {
    routing
        .iter()
        .map(|proxy| match proxy {
            Ok(routing) => format!(
                "{}: {}",
                routing
                    .log
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                routing.describe()
            ),
            Err(error) => error.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn proxy_uas(ctx: &Ctx) -> Verdict {
    sipp_to_example(
        ctx,
        &["--mode", "auto"],
        "proxy_uac.xml",
        5,
        false,
        &[
            ("incoming", "5"),
            ("answered", "5"),
            ("hangups_peer", "5"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn proxy_uas_bye_from_us(ctx: &Ctx) -> Verdict {
    sipp_to_example(
        ctx,
        &["--mode", "auto", "--hangup-after-ms", "200"],
        "proxy_uac_wait_bye.xml",
        5,
        false,
        &[
            ("incoming", "5"),
            ("answered", "5"),
            ("hangups_ours", "5"),
            ("hangups_peer", "0"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn proxy_two(ctx: &Ctx) -> Verdict {
    sipp_to_example(
        ctx,
        &["--mode", "auto"],
        "proxy_uac.xml",
        5,
        true,
        &[
            ("incoming", "5"),
            ("answered", "5"),
            ("hangups_peer", "5"),
            ("failed", "0"),
        ],
    )
}

/// Example 20 as UAC, `--proxy` Kamailio, to SIPp's UAS `scenario` (which copies
/// Record-Route), for 3 calls lasting `duration_ms` unless SIPp hangs up first.
fn example_to_sipp(ctx: &Ctx, scenario: &str, duration_ms: &str) -> Verdict {
    const CALLS: u32 = 3;
    let kamailio = installed()?;
    let server = SippServer::start(ctx, scenario, CALLS, false, "sipp-uas.log")?;
    let proxy = Kamailio::start(ctx, &kamailio, "kamailio", None)?;
    let target = format!("sip:service@127.0.0.1:{}", server.port);
    let address = proxy.addr();
    let via = format!("sip:{address}");
    let calls = CALLS.to_string();
    let args = [
        "--call",
        &target,
        "--proxy",
        &via,
        "--calls",
        &calls,
        "--rate",
        "20",
        "--duration-ms",
        duration_ms,
    ];
    let ran = uac(ctx, &args, "uac.stderr.log");
    let routing = proxy.routing();
    let routes = describe_all(std::slice::from_ref(&routing));
    // SIPp's UAS is left to finish only after a clean run of ours: otherwise it would wait for
    // calls that will not come (and is killed on drop).
    let (status, summary) = ran.map_err(|e| format!("{e}\n{routes}"))?;
    ensure(status.success(), || {
        format!(
            "example 20 (UAC) exited with {status}: {}\n{routes}",
            summary.line
        )
    })?;
    let finished = server.finish(ctx);
    let stopped = proxy.finish();
    finished.map_err(|e| format!("{e}\n{routes}"))?;
    summary.expect(&[("calls", &calls), ("ok", &calls)])?;
    let routing = routing?;
    routing.expect(CALLS as usize)?;
    stopped?;
    // `--proxy` pre-loads a Route to the proxy on the INVITE (which the proxy consumed).
    let port = address.to_string();
    ensure(
        routing.initial_routes.len() == CALLS as usize
            && routing.initial_routes.iter().all(|r| r.contains(&port)),
        || {
            format!(
                "each INVITE should come with a Route to {port} (--proxy); the proxy saw: {:?}",
                routing.initial_routes
            )
        },
    )?;
    Ok(format!("{}; {routes}", summary.line))
}

pub(super) fn proxy_uac(ctx: &Ctx) -> Verdict {
    example_to_sipp(ctx, "proxy_uas.xml", "100")
}

pub(super) fn proxy_uac_bye_from_callee(ctx: &Ctx) -> Verdict {
    // Longer than SIPp's wait before its BYE: the callee hangs up first.
    example_to_sipp(ctx, "proxy_uas_bye.xml", "5000")
}

// ---------------------------------------------------------------------------------------------
// The scenario files
// ---------------------------------------------------------------------------------------------

/// A request inside the dialog, to the remote target along the route set SIPp kept
/// (`rrs="true"`).
fn routed(method: &str, cseq: u32) -> String {
    in_dialog_to(
        "[next_url]",
        method,
        cseq,
        "      [routes]\n      Content-Length: 0\n",
    )
}

/// 18x/2xx lines of SIPp's UAS: the INVITE's Via, From, To (tagged), Call-ID, CSeq and
/// Record-Route (§12.1.1).
const UAS_DIALOG_LINES: &str = "      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>";

/// SIPp's UAS: INVITE (with `attributes` on its `recv`), 180 and 200 copying Record-Route, ACK.
fn uas_answer(attributes: &str, action: &str) -> String {
    format!(
        r#"  <recv request="INVITE" crlf="true"{attributes}>{action}</recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
{UAS_DIALOG_LINES}
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
{UAS_DIALOG_LINES}
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
  <recv request="ACK" crlf="true"/>
"#
    )
}

pub(super) fn scenario_files() -> Vec<(&'static str, String)> {
    let setup = answered_invite(" rrs=\"true\"")
        + &routed("ACK", 1).replace("<send retrans=\"500\">", "<send>");
    // The INVITE's From and To, for the BYE the UAS sends (From and To swapped).
    let remember = r#"
    <action>
      <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="callee"/>
    </action>
  "#;
    vec![
        (
            "proxy_uac.xml",
            scenario(
                "UAC keeping the route set; BYE from SIPp",
                &(setup.clone()
                    + "  <pause milliseconds=\"100\"/>\n"
                    + &routed("BYE", 2)
                    + "  <recv response=\"200\" crlf=\"true\"/>\n"),
            ),
        ),
        (
            "proxy_uac_wait_bye.xml",
            scenario(
                "UAC keeping the route set; BYE from the UAS",
                &(setup + "  <recv request=\"BYE\"/>\n" + OK_TO_LAST),
            ),
        ),
        (
            "proxy_uas.xml",
            scenario(
                "UAS copying Record-Route; BYE from the UAC",
                &(uas_answer("", "") + "  <recv request=\"BYE\"/>\n" + OK_TO_LAST),
            ),
        ),
        (
            "proxy_uas_bye.xml",
            scenario(
                "UAS copying Record-Route and sending the BYE along the route set",
                &(uas_answer(" rrs=\"true\"", remember)
                    + r#"  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$callee];tag=[pid]SIPpTag01[call_number]
      To: [$caller]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"#),
            ),
        ),
    ]
}
