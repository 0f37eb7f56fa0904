//! The `b2bua-*` and `conference-*` scenarios of `cargo xtask sipp`: example 20 as a B2BUA
//! between two SIPps (`--mode b2bua=URI`), and as a conference room (`--mode conference`).
//!
//! **B2BUA.** A SIPp UAS (the callee) is started first on a free port; example 20 runs with
//! `--mode b2bua=sip:127.0.0.1:PORT` (no user: the B leg takes the incoming Request-URI's), and
//! a SIPp UAC (the caller) calls example 20. Each scenario checks both SIPps' exit codes (0:
//! every call as its scenario says) and example 20's summary. What the scenarios prove:
//!
//! - `b2bua-basic`: the callee sees an INVITE for the caller's user with our SDP (not the
//!   caller's), its 180 rings the caller, its answer answers the caller with our SDP (not the
//!   callee's), the caller's BYE ends both legs.
//! - `b2bua-486`: the callee's 486 reaches the caller as 486 (after its 180).
//! - `b2bua-cancel`: the caller's CANCEL after the 180 reaches the callee as a CANCEL of the B
//!   leg's INVITE (same branch), which answers 200 and 487 and gets its ACK; the caller gets 200
//!   for its CANCEL and 487.
//! - `b2bua-bye-from-callee`: the callee's BYE ends the caller's leg with a BYE.
//! - `b2bua-rtp`: the caller plays G.711 (PCMA) RTP and an RFC 4733 digit from SIPp's pcap
//!   files; the callee (PCMU and telephone-event) echoes RTP (`-rtp_echo`). The callee's own
//!   count of echoed packets (read from its screen dump, triggered by SIGUSR2) shows the
//!   caller's stream went through our bridge, and the caller's media socket, which nothing in
//!   SIPp reads, filling up (its queue in `/proc/net/udp`, sampled while SIPp runs) shows the
//!   echo came back through it. Needs CAP_NET_RAW for SIPp's pcap play, as `rtp-echo` does.
//!
//! **Conference.** `conference-calls`: five SIPp calls at once (each 1.5 s long, SIPp's peak of
//! concurrent calls checked), each answered and joined to the one room.

use super::{
    ACK_FAILURE, Ctx, Example, OK_TO_LAST, PCMU, SippServer, Verdict, ack, bye, call_setup, ensure,
    free_port, invite, prepare_pcap_play, scenario, sipp_command, sipp_uac,
};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// RTP packets in SIPp's `g711a.pcap` (30 ms each, about 7 s).
const PCAP_PACKETS: u64 = 236;
/// How many of them must come back through the bridge (loopback loses none; a little room for
/// a packet that arrives before the bridge has joined a leg).
const PCAP_ECHOED_AT_LEAST: u64 = PCAP_PACKETS - 6;
/// How long SIPp may take to write its screens after SIGUSR2.
const SCREEN_LIMIT: Duration = Duration::from_secs(5);
/// Where the echoing callee dumps its screens.
const SCREENS: &str = "sipp-uas-screens.log";

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// `--mode b2bua=URI` towards SIPp's UAS on `port`.
fn b2bua_mode(port: u16) -> String {
    format!("b2bua=sip:127.0.0.1:{port}")
}

/// SIPp's UAC `caller` -> example 20 as B2BUA -> SIPp's UAS `callee`, `calls` calls; both SIPps
/// must succeed and example 20's summary hold `expected`.
pub(super) fn through_b2bua(
    ctx: &Ctx,
    caller: &str,
    callee: &str,
    calls: u32,
    expected: &[(&str, &str)],
) -> Verdict {
    let server = SippServer::start(ctx, callee, calls, false, "sipp-uas.log")?;
    let mode = b2bua_mode(server.port);
    let (uas, address) = Example::uas(ctx, &["--mode", &mode])?;
    let sipp = sipp_uac(ctx, caller, address, calls, &[]);
    // The callee is left to finish only after a clean caller: otherwise it would wait for
    // calls that will not come (and is killed on drop).
    let finished = sipp.and_then(|()| server.finish(ctx).map_err(|e| format!("callee: {e}")));
    let summary = uas.stop();
    finished?;
    let summary = summary?;
    summary.expect(expected)?;
    Ok(summary.line)
}

pub(super) fn b2bua_basic(ctx: &Ctx) -> Verdict {
    through_b2bua(
        ctx,
        "b2bua_uac.xml",
        "b2bua_uas.xml",
        3,
        &[
            ("incoming", "3"),
            ("answered", "3"),
            ("b_legs_answered", "3"),
            ("bridged", "3"),
            // The A legs hung up by SIPp's BYE, the B legs by ours.
            ("hangups_peer", "3"),
            ("hangups_ours", "3"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn b2bua_486(ctx: &Ctx) -> Verdict {
    through_b2bua(
        ctx,
        "b2bua_uac_486.xml",
        "b2bua_uas_486.xml",
        3,
        &[
            ("incoming", "3"),
            ("answered", "0"),
            ("b_legs_answered", "0"),
            ("bridged", "0"),
            // Each call twice: the B leg refused to us, the A leg refused by us.
            ("rejected", "6"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn b2bua_cancel(ctx: &Ctx) -> Verdict {
    through_b2bua(
        ctx,
        "cancel.xml",
        "b2bua_uas_ring.xml",
        2,
        &[
            ("incoming", "2"),
            ("answered", "0"),
            ("b_legs_answered", "0"),
            ("bridged", "0"),
            // Each call twice: the A leg cancelled by SIPp, the B leg by us.
            ("cancelled", "4"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn b2bua_bye_from_callee(ctx: &Ctx) -> Verdict {
    through_b2bua(
        ctx,
        "bye_from_uas.xml",
        "b2bua_uas_bye.xml",
        3,
        &[
            ("incoming", "3"),
            ("answered", "3"),
            ("b_legs_answered", "3"),
            ("bridged", "3"),
            // The B legs hung up by SIPp's BYE, the A legs by ours.
            ("hangups_peer", "3"),
            ("hangups_ours", "3"),
            ("failed", "0"),
        ],
    )
}

pub(super) fn b2bua_rtp(ctx: &Ctx) -> Verdict {
    prepare_pcap_play(ctx)?;
    // The callee echoes what reaches its media port (and that port + 2: both must be free).
    let echo_port = free_media_port()?.to_string();
    let server = start_callee(ctx, "b2bua_uas_echo.xml", &["-rtp_echo", "-mp", &echo_port])?;
    let mode = b2bua_mode(server.port);
    let (uas, address) = Example::uas(ctx, &["--mode", &mode])?;
    // The caller's media port: its SDP's and the source of its pcap play, never read by SIPp.
    let media_port = free_media_port()?;
    let watch = QueueWatch::start(media_port);
    let sipp = sipp_uac(
        ctx,
        "b2bua_uac_pcap.xml",
        address,
        1,
        &["-mp", &media_port.to_string()],
    );
    let back = watch.stop();
    // The callee is in its closing pause (or still in the call): its echo count is final.
    let echoed = sipp.and_then(|()| echo_count(ctx, &server));
    let finished = echoed.and_then(|echoed| {
        server
            .finish(ctx)
            .map_err(|e| format!("callee: {e}"))
            .map(|()| echoed)
    });
    let summary = uas.stop();
    let echoed = finished?;
    let summary = summary?;
    summary.expect(&[
        ("incoming", "1"),
        ("answered", "1"),
        ("b_legs_answered", "1"),
        ("bridged", "1"),
        ("hangups_peer", "1"),
        ("hangups_ours", "1"),
        ("failed", "0"),
        // The caller's RFC 4733 digit as the bridge saw it on the A leg, then its echo on the
        // B leg (relayed to the callee, which answered telephone-event).
        ("digits", "11"),
    ])?;
    let figures = format!(
        "callee echoed {echoed} RTP packets (the capture holds {PCAP_PACKETS} and a digit); \
         caller's media port 127.0.0.1:{media_port}: up to {} bytes queued, {} dropped",
        back.queued, back.dropped
    );
    ensure(echoed >= PCAP_ECHOED_AT_LEAST, || {
        format!(
            "the caller's RTP did not reach the callee through the bridge \
             (at least {PCAP_ECHOED_AT_LEAST} expected): {figures}"
        )
    })?;
    ensure(back.queued > 0 || back.dropped > 0, || {
        format!("the callee's echo did not come back to the caller: {figures}")
    })?;
    Ok(format!("{}; {figures}", summary.line))
}

pub(super) fn conference_calls(ctx: &Ctx) -> Verdict {
    const CALLS: u32 = 5;
    let calls = CALLS.to_string();
    let (uas, address) = Example::uas(ctx, &["--mode", "conference"])?;
    let sipp = sipp_uac(ctx, "conference_uac.xml", address, CALLS, &[]);
    let summary = uas.stop();
    sipp?;
    let summary = summary?;
    summary.expect(&[
        ("incoming", &calls),
        ("answered", &calls),
        ("bridged", &calls),
        ("hangups_peer", &calls),
        ("failed", "0"),
    ])?;
    // The calls overlapped: all five were in the room at once.
    let log = std::fs::read_to_string(ctx.work.join("sipp-uac.log")).unwrap_or_default();
    let peak = log
        .rfind("Peak was ")
        .and_then(|at| log[at + "Peak was ".len()..].split_whitespace().next())
        .unwrap_or("?");
    ensure(peak == calls, || {
        format!(
            "SIPp's peak of concurrent calls was {peak}, not {CALLS}: the calls did not overlap"
        )
    })?;
    Ok(format!("{}; SIPp's peak {peak} calls", summary.line))
}

// ---------------------------------------------------------------------------------------------
// Processes and figures
// ---------------------------------------------------------------------------------------------

/// As [`SippServer::start`] for one call over UDP, with `extra` arguments, and its screens
/// dumped to [`SCREENS`] (in the scenario's directory) when it gets SIGUSR2 and when it exits.
fn start_callee(ctx: &Ctx, scenario: &str, extra: &[&str]) -> Result<SippServer, String> {
    const LOG: &str = "sipp-uas.log";
    let port = free_port()?;
    let mut command = sipp_command(ctx);
    command
        .arg("-sf")
        .arg(ctx.scenarios.join(scenario))
        .args(["-p", &port.to_string(), "-m", "1"])
        .args(["-trace_screen", "-screen_file", SCREENS])
        .args(extra);
    SippServer::spawn(ctx, command, port, false, LOG)
}

/// A loopback UDP port free together with the port 2 above it (SIPp binds both for media:
/// audio and video).
fn free_media_port() -> Result<u16, String> {
    for _ in 0..50 {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
        let port = socket
            .local_addr()
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        if port < u16::MAX - 2 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return Ok(port);
        }
    }
    Err("no pair of free UDP ports (N, N + 2)".to_owned())
}

/// SIPp's count of RTP packets its `-rtp_echo` sent back: SIGUSR2 makes it dump its screens
/// (`-screen_file`), whose header then reads `N Total echo RTP pckts 1st stream` (the dump
/// SIPp writes as it exits leaves that line out).
fn echo_count(ctx: &Ctx, server: &SippServer) -> Result<u64, String> {
    let screens = ctx.work.join(SCREENS);
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-USR2", &pid]).status();
    if !sent.is_ok_and(|s| s.success()) {
        return Err("cannot send SIGUSR2 to SIPp's UAS (has it exited already?)".to_owned());
    }
    let deadline = Instant::now() + SCREEN_LIMIT;
    loop {
        let text = std::fs::read_to_string(&screens).unwrap_or_default();
        let count = text.lines().find_map(|line| {
            let (count, rest) = line.trim_start().split_once(' ')?;
            rest.starts_with("Total echo RTP pckts 1st stream")
                .then(|| count.parse::<u64>().ok())
                .flatten()
        });
        if let Some(count) = count {
            return Ok(count);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "SIPp's UAS wrote no RTP echo count to {} within {SCREEN_LIMIT:?} of SIGUSR2",
                screens.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What reached a UDP socket nobody reads: the most bytes its receive queue held, and how many
/// datagrams the kernel dropped once it was full.
#[derive(Default)]
struct Received {
    queued: u64,
    dropped: u64,
}

/// Samples a loopback UDP socket's queue in `/proc/net/udp` every 20 ms until stopped.
struct QueueWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Received>,
}

impl QueueWatch {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Received::default();
            while !flag.load(Ordering::Relaxed) {
                if let Some((queued, dropped)) = udp_queue(port) {
                    seen.queued = seen.queued.max(queued);
                    seen.dropped = seen.dropped.max(dropped);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        Self { stop, thread }
    }

    fn stop(self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The receive queue (bytes) and drop count of the UDP socket bound to `127.0.0.1:port`.
fn udp_queue(port: u16) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    // `sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer
    // drops`, addresses as hex `ADDR:PORT` (127.0.0.1 in host byte order).
    let local = format!("{:08X}:{port:04X}", u32::from_ne_bytes([127, 0, 0, 1]));
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) {
            return None;
        }
        let queued = fields.get(4)?.split_once(':')?.1;
        let queued = u64::from_str_radix(queued, 16).ok()?;
        let dropped = fields.last()?.parse().ok()?;
        Some((queued, dropped))
    })
}

// ---------------------------------------------------------------------------------------------
// The scenario files
// ---------------------------------------------------------------------------------------------

/// The headers of the callee's responses to the INVITE (its To tag).
pub(super) const CALLEE_LINES: &str = "      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>";

/// The callee receives the B leg's INVITE: for the caller's user (the B2BUA's target names
/// none), with an SDP offer that is ours, not the caller's (`o=sipp`). `attributes` go on the
/// `recv`, `more` are further actions.
pub(super) fn b_leg_invite(attributes: &str, more: &str) -> String {
    format!(
        r#"  <recv request="INVITE" crlf="true"{attributes}>
    <action>
      <ereg regexp="^INVITE sip:service@" search_in="msg" check_it="true" assign_to="b_user"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="b_offer"/>
      <ereg regexp="o=sipp " search_in="body" check_it_inverse="true" assign_to="a_offer_leaked"/>
{more}    </action>
  </recv>
"#
    )
}

/// The callee's `code reason`, no body.
fn callee_response(code: u16, reason: &str) -> String {
    format!(
        r#"  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
{CALLEE_LINES}
      Content-Length: 0
    ]]>
  </send>
"#
    )
}

/// The callee's 200 with its SDP answer (`o=callee`: the caller must never see it), PCMU and
/// telephone-event, then the ACK.
fn callee_answer() -> String {
    format!(
        r#"  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
{CALLEE_LINES}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=callee 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
"#
    )
}

/// The caller's 200: an SDP answer with `codec` first, ours (not the callee's `o=callee`).
fn a_leg_answer(codec: u8) -> String {
    format!(
        r#"  <recv response="100" optional="true"/>
  <recv response="180"/>
  <recv response="200" rtd="true">
    <action>
      <ereg regexp="application/sdp" search_in="hdr" header="Content-Type:" check_it="true" assign_to="sdp_type"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP {codec}" search_in="body" check_it="true" assign_to="sdp_answer"/>
      <ereg regexp="o=callee " search_in="body" check_it_inverse="true" assign_to="b_answer_leaked"/>
    </action>
  </recv>
"#
    )
}

const PCMA: &str = "      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv";

pub(super) fn scenario_files() -> Vec<(&'static str, String)> {
    // The INVITE's From and To, for the BYE the callee sends (From and To swapped).
    let remember = r#"      <ereg regexp="[^ ].*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp="[^ ].*" search_in="hdr" header="To:" assign_to="callee"/>
"#;
    vec![
        // Callers.
        (
            "b2bua_uac.xml",
            scenario(
                "caller: 180 and 200 through the B2BUA, BYE",
                &(invite(PCMU)
                    + &a_leg_answer(0)
                    + &ack(1)
                    + "  <pause milliseconds=\"100\"/>\n"
                    + &bye(2)),
            ),
        ),
        (
            "b2bua_uac_486.xml",
            scenario(
                "caller: 180, then the callee's 486",
                &(invite(PCMU)
                    + r#"  <recv response="100" optional="true"/>
  <recv response="180"/>
  <recv response="486"/>
"# + ACK_FAILURE),
            ),
        ),
        (
            "b2bua_uac_pcap.xml",
            scenario(
                "caller: PCMA RTP and an RFC 4733 digit from pcap",
                &(invite(PCMA)
                    + &a_leg_answer(8)
                    + &ack(1)
                    + r#"  <nop>
    <action>
      <exec play_pcap_audio="pcap/g711a.pcap"/>
    </action>
  </nop>
  <pause milliseconds="8000"/>
  <nop>
    <action>
      <exec play_pcap_audio="pcap/dtmf_2833_1.pcap"/>
    </action>
  </nop>
  <pause milliseconds="1000"/>
"# + &bye(2)),
            ),
        ),
        (
            "conference_uac.xml",
            scenario(
                "conference member for 1.5 s",
                &(call_setup() + "  <pause milliseconds=\"1500\"/>\n" + &bye(2)),
            ),
        ),
        // Callees.
        (
            "b2bua_uas.xml",
            scenario(
                "callee: 180, 200, BYE from the caller's side",
                &(b_leg_invite("", "")
                    + &callee_response(180, "Ringing")
                    + &callee_answer()
                    + "  <recv request=\"BYE\"/>\n"
                    + OK_TO_LAST),
            ),
        ),
        (
            "b2bua_uas_486.xml",
            scenario(
                "callee: 180, then 486",
                &(b_leg_invite("", "")
                    + &callee_response(180, "Ringing")
                    + &callee_response(486, "Busy Here")
                    + "  <recv request=\"ACK\"/>\n"),
            ),
        ),
        (
            // The 487 carries the CANCEL's Via: it answers the B leg's INVITE only if the
            // CANCEL repeated the INVITE's branch (RFC 3261 §9.1), else the ACK never comes.
            "b2bua_uas_ring.xml",
            scenario(
                "callee: 180, then the CANCEL: 200, 487, ACK",
                &(b_leg_invite("", "")
                    + &callee_response(180, "Ringing")
                    + r#"  <recv request="CANCEL">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/>
    </action>
  </recv>
"# + OK_TO_LAST
                    .replace(
                        "      [last_To:]\n",
                        "      [last_To:];tag=[pid]SIPpTag01[call_number]\n",
                    )
                    .as_str()
                    + r#"  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq] INVITE
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
"#),
            ),
        ),
        (
            "b2bua_uas_bye.xml",
            scenario(
                "callee: 180, 200, then its BYE",
                &(b_leg_invite(" rrs=\"true\"", remember)
                    + &callee_response(180, "Ringing")
                    + &callee_answer()
                    + r#"  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$callee];tag=[pid]SIPpTag01[call_number]
      To: [$caller]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
"#),
            ),
        ),
        (
            "b2bua_uas_echo.xml",
            scenario(
                "callee echoing RTP (-rtp_echo) until the caller's BYE, then 3 s for its screens",
                &(b_leg_invite("", "")
                    + &callee_response(180, "Ringing")
                    + &callee_answer()
                    // The caller's BYE comes 9 s after its ACK: past SIPp's -recv_timeout.
                    + "  <recv request=\"BYE\" timeout=\"30000\"/>\n"
                    + OK_TO_LAST
                    + "  <pause milliseconds=\"3000\"/>\n"),
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn scenario_files_do_not_clash() {
        // All scenario files are written into one directory.
        let mut names: Vec<&str> = super::scenario_files()
            .into_iter()
            .chain(super::super::scenario_files())
            .chain(super::super::proxy::scenario_files())
            .chain(super::super::prack::scenario_files())
            .map(|(name, _)| name)
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "two scenario files share a name");
    }
}
