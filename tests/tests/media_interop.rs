//! Media interop with real SIP peers on loopback: our user agent (`session-dialog`'s driver)
//! answers their INVITEs with an SDP answer from `session-media`'s `OfferAnswer` and runs the
//! call's audio on an `RtpEndpoint` leased from a `session-resources` `PortPool`.
//!
//! - `sipp_pcap_rtp_is_received_and_echoed`: SIPp's built-in `uac_pcap` scenario sends a PCMA
//!   offer, plays `g711a.pcap` (RTP, 30 ms A-law packets) and then the RFC 4733 digit `1`
//!   (`dtmf_2833_1.pcap`) to the address in our answer, and hangs up. Proves SIPp accepts our
//!   answer, every audio packet of the capture reaches the endpoint, decodes, and is echoed back
//!   to where it came from (latching), the digit is recognised, and the call ends cleanly.
//! - `baresip_accepts_our_answer_and_media_flows_both_ways`: baresip dials us from a generated
//!   config (WAV tone source, `aubridge` null player, G.711; the harness in `support::baresip`,
//!   here without its control connection: baresip dials at start with `-e` and quits on
//!   SIGTERM). Proves baresip accepts our answer
//!   (it ACKs), its RTP reaches us (its 1 kHz tone, decoded), our RTP reaches it (its own
//!   receive counter and its decoded-audio dump hold our 600 Hz tone), it takes our RTCP
//!   report, and it answers our BYE with 200.
//!
//! Needs `sipp` (Debian `sip-tester`, with its pcap files in `/usr/share/sip-tester`) and
//! `baresip` (Debian `baresip-core`). A missing tool fails its test with the `apt-get` command,
//! unless `SESSION_CORE_ALLOW_MISSING_PEERS=1` (never under CI) lets it pass without running
//! (`session_simnet::peers`). SIPp plays pcap files through a raw socket, so its test also needs
//! `CAP_NET_RAW` (root, or `setcap cap_net_raw+ep` on sipp); without it the test fails the same
//! way (under CI it runs anyway: sipp itself may hold the capability). Every process started here is killed when its handle is dropped, and
//! every wait has a time limit. Run time: about 9.5 s (SIPp, the length of its scenario) and
//! 1.5 s (baresip).

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use bytes::Bytes;
use session_dialog::driver::{DriverConfig, SipDriver, SipHandle};
use session_dialog::transaction::TransactionId;
use session_dialog::ua::{DialogEnd, UaEvent};
use session_media::FRAME_DURATION;
use session_media::audio::{AudioSource, ToneSource};
use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
use session_media::rtcp::StreamStats;
use session_media::sdp::SessionDescription;
use session_media::sdp::negotiate::{MediaConfig, NegotiatedMedia, OfferAnswer};
use session_resources::PortPool;
use session_sip::Request;
use session_types::{DialogId, StatusCode};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::baresip::Baresip;
use support::{
    BARESIP_TONE_HZ, OUR_TONE_HZ, TempDir, sipp_counter, sipp_text, tone_ratio, tool_available,
};
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Where Debian's `sip-tester` puts the captures its `uac_pcap` scenario plays.
const SIPP_PCAP_DIR: &str = "/usr/share/sip-tester";

// ---------------------------------------------------------------------------------------------
// Helpers: the UAS, events (tools, temp dirs, SIPp's output and the baresip harness: `support`).

/// Our UAS: the driver on 127.0.0.1, UDP only, on a free port.
async fn start_uas() -> (SipHandle, Receiver<UaEvent>) {
    let config = DriverConfig {
        bind: (LOOPBACK, 0).into(),
        tcp: false,
        contact_user: "interop".into(),
        ..DriverConfig::default()
    };
    SipDriver::start(config).await.unwrap()
}

/// Waits up to `limit` for the first event `pick` accepts, dropping the others; `None` when
/// the time is up.
async fn try_wait_for<T>(
    events: &mut Receiver<UaEvent>,
    limit: Duration,
    mut pick: impl FnMut(UaEvent) -> Option<T>,
) -> Option<T> {
    let wait = async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(event) {
                return found;
            }
        }
        panic!("the SIP driver stopped");
    };
    tokio::time::timeout(limit, wait).await.ok()
}

/// [`try_wait_for`], failing the test when the time is up.
async fn wait_for<T>(
    events: &mut Receiver<UaEvent>,
    limit: Duration,
    what: &str,
    pick: impl FnMut(UaEvent) -> Option<T>,
) -> T {
    try_wait_for(events, limit, pick)
        .await
        .unwrap_or_else(|| panic!("no {what} within {limit:?}"))
}

async fn wait_for_invite(events: &mut Receiver<UaEvent>) -> (TransactionId, Request) {
    wait_for(events, Duration::from_secs(20), "INVITE", |e| match e {
        UaEvent::IncomingInvite { tx, request, .. } => Some((tx, request)),
        _ => None,
    })
    .await
}

async fn wait_for_ack(events: &mut Receiver<UaEvent>, dialog: &DialogId) {
    wait_for(events, Duration::from_secs(10), "ACK", |e| match e {
        UaEvent::Ack { dialog: d, .. } if d == *dialog => Some(()),
        _ => None,
    })
    .await;
}

/// A call answered with media: the endpoint is configured and the dialog exists.
struct AnsweredCall {
    dialog: DialogId,
    endpoint: RtpEndpoint,
    media: NegotiatedMedia,
}

/// Answers the INVITE's SDP offer: leases a port pair, binds the endpoint, negotiates, sends
/// 200 OK with our answer.
async fn answer_with_media(
    handle: &SipHandle,
    tx: TransactionId,
    invite: &Request,
    pool: &PortPool,
) -> AnsweredCall {
    let offer_text = std::str::from_utf8(&invite.body).expect("the offer is UTF-8");
    let offer: SessionDescription = offer_text
        .parse()
        .unwrap_or_else(|e| panic!("cannot parse the peer's offer ({e}):\n{offer_text}"));
    let mut endpoint = RtpEndpoint::bind_from_pool(
        pool,
        LOOPBACK,
        RtcpPort::NextPort,
        EndpointConfig::default(),
    )
    .await
    .unwrap();
    let mut sdp = OfferAnswer::new(MediaConfig::default(), LOOPBACK);
    let answered = sdp
        .answer_offer(&offer, endpoint.local_addr().unwrap().port())
        .unwrap_or_else(|e| panic!("no answer to the peer's offer ({e}):\n{offer_text}"));
    endpoint.configure(&answered.media).unwrap();
    let body = Bytes::from(answered.answer.to_string());
    let dialog = handle
        .with(move |ua, now| {
            ua.answer(
                now,
                tx,
                StatusCode::OK,
                Vec::new(),
                Some(("application/sdp", body)),
            )
        })
        .await
        .unwrap()
        .unwrap()
        .expect("a 200 to an INVITE makes a dialog");
    AnsweredCall {
        dialog,
        endpoint,
        media: answered.media,
    }
}

// ---------------------------------------------------------------------------------------------
// Test 1: SIPp plays a capture; we echo it.

/// The RTP packets in a classic pcap file (Ethernet, Linux cooked or raw IP; IPv4 UDP whose
/// payload has RTP version 2 and is not RTCP).
fn count_rtp_packets(pcap: &[u8]) -> usize {
    let magic = pcap.get(..4).expect("pcap header");
    let big_endian = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => panic!("not a classic pcap file"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = pcap[at..at + 4].try_into().unwrap();
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let link_header = match u32_at(20) {
        1 => 14,        // Ethernet (VLAN tags are not used in these captures)
        113 => 16,      // Linux cooked
        101 | 228 => 0, // raw IPv4
        other => panic!("pcap link type {other} not handled"),
    };
    let (mut at, mut count) = (24, 0);
    while at + 16 <= pcap.len() {
        let captured = u32_at(at + 8) as usize;
        let frame = &pcap[at + 16..(at + 16 + captured).min(pcap.len())];
        at += 16 + captured;
        let Some(ip) = frame.get(link_header..) else {
            continue;
        };
        let is_udp_v4 = ip.first().is_some_and(|b| b >> 4 == 4) && ip.get(9) == Some(&17);
        if !is_udp_v4 {
            continue;
        }
        let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let payload = udp.get(8..).unwrap_or_default();
        let rtp_version_2 = payload.first().is_some_and(|b| b >> 6 == 2);
        let rtcp = payload.get(1).is_some_and(|pt| (200..=204).contains(pt));
        if payload.len() >= 12 && rtp_version_2 && !rtcp {
            count += 1;
        }
    }
    count
}

/// True when this process holds `CAP_NET_RAW`, which SIPp (started by us, inheriting it)
/// needs: `play_pcap_audio` sends the capture's packets through a raw socket.
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

type SippRun = tokio::task::JoinHandle<std::io::Result<std::process::Output>>;

/// Fails the test while waiting for `what`, with SIPp's output if it has exited (it is killed
/// otherwise).
fn sipp_failed(sipp: &SippRun, what: &str, output: Option<String>) -> ! {
    sipp.abort();
    let output = output.unwrap_or_else(|| "(SIPp was still running)".into());
    let hint = if output.contains("raw IPv4 socket") {
        "\nSIPp plays pcap files through a raw socket: run as root or give sipp CAP_NET_RAW \
         (setcap cap_net_raw+ep /usr/bin/sipp)"
    } else {
        ""
    };
    panic!("no {what} from SIPp{hint}\n{output}")
}

/// Waits for SIPp's BYE to end `dialog` while watching SIPp: when SIPp exits first, its BYE
/// must follow within a second. Returns SIPp's output if it has already exited.
async fn wait_for_sipp_bye(
    events: &mut Receiver<UaEvent>,
    sipp: &mut SippRun,
    dialog: &DialogId,
) -> Option<std::process::Output> {
    let mut ended = |e| match e {
        UaEvent::DialogTerminated { dialog: d, reason } if d == *dialog => Some(reason),
        _ => None,
    };
    // The capture lasts about 7 s, then the digit, then the BYE.
    let (end, exited) = tokio::select! {
        end = try_wait_for(events, Duration::from_secs(40), &mut ended) => (end, None),
        done = &mut *sipp => {
            let output = done.unwrap().unwrap();
            (try_wait_for(events, Duration::from_secs(1), &mut ended).await, Some(output))
        }
    };
    match end {
        Some(reason) => assert_eq!(reason, DialogEnd::PeerBye),
        None => sipp_failed(sipp, "BYE", exited.as_ref().map(sipp_text)),
    }
    exited
}

/// What the echo task saw and did.
#[derive(Debug, Default)]
struct EchoReport {
    /// 20 ms frames received (the capture's 30 ms packets give 1.5 frames each).
    audio_frames: usize,
    voiced_frames: usize,
    echoed: usize,
    digits: Vec<char>,
    /// The endpoint's statistics right after the last audio packet (the DTMF capture that
    /// follows is another RTP source, which restarts the reception statistics).
    audio_stats: StreamStats,
    final_stats: StreamStats,
    latched_to: Option<std::net::SocketAddr>,
    foreign: u64,
    malformed: u64,
    unknown_payload_type: u64,
}

/// Echoes every audio packet back to its source (the endpoint latches to it) until `stop`,
/// then drains what is already queued.
async fn echo(mut endpoint: RtpEndpoint, mut stop: oneshot::Receiver<()>) -> EchoReport {
    let mut report = EchoReport::default();
    loop {
        tokio::select! {
            received = endpoint.recv() => on_echo_input(&mut endpoint, &mut report, received.unwrap()).await,
            _ = &mut stop => break,
        }
    }
    // The peer sent everything before its BYE; take what is still queued (a bounded wait for
    // datagrams already on their way, not a pause).
    while let Ok(received) = tokio::time::timeout(Duration::from_millis(200), endpoint.recv()).await
    {
        on_echo_input(&mut endpoint, &mut report, received.unwrap()).await;
    }
    let counters = endpoint.counters();
    report.final_stats = endpoint.stats();
    report.latched_to = endpoint.remote_rtp();
    report.foreign = counters.foreign;
    report.malformed = counters.malformed;
    report.unknown_payload_type = counters.unknown_payload_type;
    report
}

async fn on_echo_input(endpoint: &mut RtpEndpoint, report: &mut EchoReport, received: Received) {
    match received {
        Received::Audio { frame, .. } => {
            report.audio_frames += 1;
            report.voiced_frames += usize::from(!frame.is_silent());
            report.audio_stats = endpoint.stats();
            // Back to the latched source address, re-encoded with the negotiated law. The
            // endpoint works in 20 ms frames: the capture's 30 ms packets (240 samples) are
            // re-framed without losing a sample, so the echo is every sample received, sent
            // as 20 ms packets.
            endpoint.send_frame(&frame).await.unwrap();
            report.echoed += 1;
        }
        Received::Dtmf(digit) => report.digits.push(digit.digit),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_pcap_rtp_is_received_and_echoed() {
    if !tool_available("sipp", "-v", "sip-tester") {
        return;
    }
    // Under CI run anyway: sipp itself may have been given the capability (setcap).
    if !has_cap_net_raw() && std::env::var_os("CI").is_none() {
        session_simnet::peers::missing(
            "no CAP_NET_RAW: SIPp cannot play pcap files",
            "run as root, or `setcap cap_net_raw+ep` on sipp",
        )
        .unwrap();
        return;
    }
    let started = Instant::now();
    // The scenario plays `pcap/g711a.pcap` and `pcap/dtmf_2833_1.pcap` relative to its working
    // directory: give it a directory holding copies of the packaged captures.
    let dir = TempDir::new("sipp");
    std::fs::create_dir(dir.path().join("pcap")).unwrap();
    let mut pcap_rtp = Vec::new();
    for name in ["g711a.pcap", "dtmf_2833_1.pcap"] {
        let source = Path::new(SIPP_PCAP_DIR).join(name);
        let bytes = std::fs::read(&source)
            .unwrap_or_else(|e| panic!("{} ({e}): sip-tester is incomplete", source.display()));
        pcap_rtp.push(count_rtp_packets(&bytes));
        std::fs::write(dir.path().join("pcap").join(name), bytes).unwrap();
    }
    let (audio_in_pcap, dtmf_in_pcap) = (pcap_rtp[0], pcap_rtp[1]);
    assert!(audio_in_pcap > 0 && dtmf_in_pcap > 0, "{pcap_rtp:?}");

    let (handle, mut events) = start_uas().await;
    let pool = PortPool::new(42_000..42_100).unwrap();
    let mut command = tokio::process::Command::new("sipp");
    command
        .args(["-sn", "uac_pcap", &handle.local_addr().to_string()])
        .args(["-i", "127.0.0.1", "-m", "1"])
        .args(["-nostdin", "-timeout", "60", "-timeout_error"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Polled from the start so SIPp never blocks on a full pipe; dropping it kills SIPp.
    let mut sipp: SippRun = tokio::spawn(command.output());

    let Some((tx, invite)) = try_wait_for(&mut events, Duration::from_secs(20), |e| match e {
        UaEvent::IncomingInvite { tx, request, .. } => Some((tx, request)),
        _ => None,
    })
    .await
    else {
        sipp_failed(&sipp, "INVITE", None)
    };
    let call = answer_with_media(&handle, tx, &invite, &pool).await;
    assert_eq!(call.media.codec.name.to_ascii_uppercase(), "PCMA");
    let (stop, stopped) = oneshot::channel();
    let echo_task = tokio::spawn(echo(call.endpoint, stopped));
    wait_for_ack(&mut events, &call.dialog).await;
    let exited = wait_for_sipp_bye(&mut events, &mut sipp, &call.dialog).await;
    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), echo_task)
        .await
        .expect("the echo task ends")
        .unwrap();

    let output = match exited {
        Some(output) => output,
        None => tokio::time::timeout(Duration::from_secs(60), sipp)
            .await
            .expect("SIPp finished in time")
            .unwrap()
            .unwrap(),
    };
    let text = sipp_text(&output);
    let (ok, failed) = (
        sipp_counter(&text, "Successful call"),
        sipp_counter(&text, "Failed call"),
    );
    eprintln!(
        "SIPp echo: pcap RTP {audio_in_pcap} audio + {dtmf_in_pcap} DTMF; {report:?}; \
         SIPp {ok} ok / {failed} failed; {:?}",
        started.elapsed()
    );
    assert_eq!((ok, failed), (1, 0), "{text}");
    assert!(
        output.status.success(),
        "SIPp exit status {}\n{text}",
        output.status
    );

    // Loopback and a capture that ends two seconds before the BYE: every packet is observable,
    // so the counts are exact.
    // Every sample of the capture's 30 ms packets (240 samples each) comes out in 20 ms frames.
    assert_eq!(report.audio_frames * 160, audio_in_pcap * 240, "{report:?}");
    assert_eq!(report.echoed, report.audio_frames, "{report:?}");
    assert!(report.voiced_frames > 0, "the capture decoded to silence");
    assert_eq!(
        report.audio_stats.packets_received, audio_in_pcap as u64,
        "{report:?}"
    );
    assert_eq!(report.audio_stats.packets_lost, 0, "{report:?}");
    assert_eq!(report.final_stats.packets_sent, report.echoed as u64);
    assert_eq!(report.digits, ['1'], "the RFC 4733 capture is the digit 1");
    assert_eq!(
        (
            report.foreign,
            report.malformed,
            report.unknown_payload_type
        ),
        (0, 0, 0),
        "{report:?}"
    );
    // SIPp sends from the port it offered: latching and the offer agree.
    assert_eq!(report.latched_to, call.media.remote_rtp(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Test 2: baresip calls us.

/// What we sent and received during the call.
#[derive(Debug, Default)]
struct Exchange {
    sent: u64,
    received: u64,
    rtcp_received: u64,
    samples: Vec<i16>,
}

/// Sends `frames` frames of our tone paced at 20 ms while receiving, until both `frames`
/// were sent and `want` audio packets arrived.
async fn exchange_audio(endpoint: &mut RtpEndpoint, frames: u64, want: u64) -> Exchange {
    let mut tone = ToneSource::new(OUR_TONE_HZ, 8000);
    let mut ticker = tokio::time::interval(FRAME_DURATION);
    let mut seen = Exchange::default();
    while seen.sent < frames || seen.received < want {
        tokio::select! {
            _ = ticker.tick(), if seen.sent < frames => {
                endpoint.send_frame(&tone.next_frame().unwrap()).await.unwrap();
                seen.sent += 1;
            }
            received = endpoint.recv() => match received.unwrap() {
                Received::Audio { frame, .. } => {
                    seen.received += 1;
                    seen.samples.extend_from_slice(frame.samples());
                }
                Received::Rtcp(_) => seen.rtcp_received += 1,
                _ => {}
            },
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_accepts_our_answer_and_media_flows_both_ways() {
    if !tool_available("baresip", "-h", "baresip-core") {
        return;
    }
    let started = Instant::now();
    let (handle, mut events) = start_uas().await;
    let pool = PortPool::new(42_100..42_200).unwrap();

    // No control connection: baresip dials at start (`-e`), its RTCP summary module says
    // whether it collected our RTCP, and SIGTERM asks it to quit.
    let target = format!("/dial sip:interop@{}", handle.local_addr());
    let baresip = Baresip::builder("baresip")
        .without_control()
        .module_app("rtcpsummary.so")
        .execute(&target)
        .quit_after(Duration::from_secs(60))
        .start()
        .await;

    let (tx, invite) = wait_for_invite(&mut events).await;
    let mut call = answer_with_media(&handle, tx, &invite, &pool).await;
    // baresip confirms the call only if it took our answer.
    wait_for_ack(&mut events, &call.dialog).await;

    // 1.5 s of our tone; at least 50 packets (1 s) of baresip's.
    let seen = tokio::time::timeout(
        Duration::from_secs(15),
        exchange_audio(&mut call.endpoint, 75, 50),
    )
    .await
    .expect("RTP flowed both ways within 15 s");
    call.endpoint.send_report().await.unwrap();

    let dialog = call.dialog.clone();
    let bye = handle
        .with(move |ua, now| ua.hangup(now, &dialog))
        .await
        .unwrap()
        .unwrap();
    let bye_status = wait_for(
        &mut events,
        Duration::from_secs(10),
        "BYE response",
        |e| match e {
            UaEvent::Response { tx, response, .. }
                if tx == bye && response.status.as_u16() >= 200 =>
            {
                Some(response.status)
            }
            _ => None,
        },
    )
    .await;
    let stats = call.endpoint.stats();
    drop(call);

    // Ask baresip to quit (SIGTERM: it flushes its output and closes its WAV dumps), then
    // read what it wrote.
    let quit = baresip.quit().await;
    let (output, decoded) = (&quit.output, &quit.decoded);
    let (baresip_sent, baresip_received) = quit.stat("packets:");
    let (_, our_reported_sent) = quit.stat("pkt.report:");
    let heard_by_us = tone_ratio(&seen.samples, BARESIP_TONE_HZ, OUR_TONE_HZ);
    let heard_by_baresip = tone_ratio(decoded, OUR_TONE_HZ, BARESIP_TONE_HZ);
    eprintln!(
        "baresip: we sent {} / received {} RTP ({} RTCP), our stats {stats:?}; baresip sent {baresip_sent} \
         / received {baresip_received} (our SR said {our_reported_sent}), decoded {} samples; tone ratios {heard_by_us:.0} / \
         {heard_by_baresip:.0}; BYE {bye_status:?}; {:?}",
        seen.sent,
        seen.received,
        seen.rtcp_received,
        decoded.len(),
        started.elapsed()
    );

    assert_eq!(bye_status, StatusCode::OK, "{output}");
    assert!(seen.received >= 25, "{seen:?}\n{output}");
    assert!(
        heard_by_us > 10.0,
        "baresip's tone not found in what we received"
    );
    assert_eq!(stats.packets_lost, 0, "{stats:?}");
    // Everything we sent left before the BYE, on loopback. baresip counts RTP as it reads it
    // in the same event loop as SIP, so at most the last datagram, sent just before the BYE,
    // can be read after the BYE ended the call: allow that one.
    assert!(
        baresip_received + 1 >= seen.sent && baresip_received <= seen.sent,
        "we sent {}, baresip received {baresip_received}\n{output}",
        seen.sent
    );
    // Our RTCP sender report reached baresip and was understood.
    assert_eq!(our_reported_sent, seen.sent, "{output}");
    assert!(baresip_sent >= seen.received, "{output}");
    assert!(
        heard_by_baresip > 10.0,
        "our tone not found in what baresip decoded"
    );
    assert!(
        !output.contains("No RTCP stats collected"),
        "baresip got no RTCP from us:\n{output}"
    );
}
