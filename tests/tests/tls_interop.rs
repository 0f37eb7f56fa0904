//! SIP over TLS (RFC 3261 §26.2.1) against real TLS peers on loopback: Kamailio's `tls` module
//! (OpenSSL) as a proxy between two of our user agents, and baresip (libre, OpenSSL) called by
//! us. Certificates are made at test time (rcgen): one test CA signs a certificate for
//! `127.0.0.1` for each party, and every party trusts that CA.
//!
//! - `our_uac_calls_our_uas_through_kamailio_over_tls_with_client_certificates`: Kamailio listens
//!   only for TLS and record-routes. Our UAC calls `sips:` our UAS with Kamailio as outbound
//!   proxy: the INVITE goes UAC —TLS→ Kamailio —TLS→ UAS, the ACK along the route set, and the
//!   UAS's BYE back UAS —TLS→ Kamailio —TLS→ the UAC's TLS listener (its `;transport=tls`
//!   Contact). Every hop is mutual TLS: Kamailio requires and verifies our UAC's client
//!   certificate (`require_certificate`, `verify_certificate`), and our UAS and UAC require
//!   Kamailio's (`TlsConfig::require_client_certificates`); each client checks the server's
//!   certificate against the CA. Wire facts checked: the UAS received the INVITE with two Vias
//!   `SIP/2.0/TLS` (Kamailio's, then ours) and a `;transport=tls` Record-Route; Kamailio's own
//!   log (its script logs every request and reply it receives with `$pr`, and every request it
//!   sends with the protocol it sends over) shows INVITE, ACK and BYE received and sent over
//!   TLS, the 200s to INVITE and BYE received over TLS, and nothing over another transport.
//!   Kamailio 5.6 offers TLS 1.0 alone by default, which rustls refuses: the script sets
//!   `tls_method` to `TLSv1.2+`.
//! - `our_uac_calls_baresip_over_tls_audio_both_ways_then_baresip_hangs_up`: we call baresip's
//!   TLS listener with a `sip:…;transport=tls` URI (checking its certificate; not `sips:`, whose
//!   request makes our Contact `sips:` as RFC 3261 §8.1.1.8 requires, and baresip 1.0 then
//!   terminates the call without sending its BYE at all), it answers at once, audio flows
//!   both ways (RTP, which TLS does not cover: we hear its 1 kHz tone, it decodes our 600 Hz),
//!   and baresip hangs up: its BYE reaches our TLS listener. baresip's SIP trace shows every
//!   message of the call (INVITE, 200, ACK, BYE, 200) on a `TLS` line, none on UDP or TCP.
//!
//! Kamailio is `$KAMAILIO`, else `/usr/sbin/kamailio`, else `kamailio` on PATH, with its `tls`
//! module (Debian: `kamailio` and `kamailio-tls-modules`); baresip is Debian `baresip-core`
//! (1.0); both run through the harnesses in `support` (`kamailio`, `baresip`). A missing peer
//! fails the test (see `support::tool_available`). Every wait is bounded; Kamailio is stopped
//! with SIGTERM (its process group killed if it does not exit) and baresip asked to quit, both
//! killed on drop. Run time on loopback: about 0.5 s (Kamailio, most of it
//! its start) and about 2.1 s (baresip, 2 s of it audio), side by side.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use session_core::crates::media::audio::{ChannelSink, ToneSource};
use session_core::{
    CallOptions, CallState, IncomingCall, IncomingCalls, MediaMode, SessionManager, TlsConfig,
};
use session_sip::HeaderName;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use support::baresip::Baresip;
use support::kamailio::{self, Kamailio, READY_ROUTE};
use support::{BARESIP_TONE_HZ, OUR_TONE_HZ, assert_released, tone_ratio, tool_available};

/// A generous limit for one step of a call on loopback.
const STEP: Duration = Duration::from_secs(10);

/// Bounds `future` by [`STEP`], failing with `what`.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {STEP:?}"))
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// The test CA: every party's certificate is its, and every party trusts it.
struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// Its certificate, PEM.
    pem: String,
}

/// A certificate for `127.0.0.1` signed by the [`TestCa`], and its key, both PEM.
struct Issued {
    certificate: String,
    key: String,
}

impl TestCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "session-core TLS interop CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem }
    }

    /// A new key and a certificate naming `127.0.0.1` (an IP address SAN, which the TLS
    /// clients here check), good as server and client certificate alike.
    fn issue(&self) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Issued {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A configuration for one of our user agents: a certificate of its own, this CA trusted,
    /// and client certificates required or not.
    fn ours(&self, require_client_certificates: bool) -> TlsConfig {
        let issued = self.issue();
        TlsConfig::builder()
            .identity_pem(issued.certificate.as_bytes(), issued.key.as_bytes())
            .unwrap()
            .trust_pem(self.pem.as_bytes())
            .unwrap()
            .require_client_certificates(require_client_certificates)
            .build()
            .unwrap()
    }
}

/// A manager on 127.0.0.1 (UDP and TCP on one port, TLS on another) whose calls are queued
/// for the test.
async fn start_manager(tls: TlsConfig, media: MediaMode) -> (SessionManager, IncomingCalls) {
    let (handler, incoming) = IncomingCalls::channel(8);
    let manager = SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .tls(tls, None)
        .media_mode(media)
        .media_ports(47_000..=47_099)
        .shutdown_grace(Duration::from_millis(500))
        .handler(handler)
        .start()
        .await
        .expect("the manager starts");
    (manager, incoming)
}

// ---------------------------------------------------------------------------------------------
// Kamailio

/// The proxy's script: TLS only, record-routing, relaying by the Request-URI and the route
/// set, logging what it receives and sends (`IN`, `OUT`, `REPLY` lines, with the protocols).
fn kamailio_config(dir: &Path, modules: &Path, port: u16) -> String {
    let (dir, modules) = (dir.display(), modules.display());
    format!(
        r#"#!KAMAILIO
# Written by tests/tests/tls_interop.rs: a TLS-only record-routing proxy for one test.
debug=2
log_stderror=yes
children=1
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
enable_tls=yes
listen=tls:127.0.0.1:{port}

loadpath "{modules}"
loadmodule "tls.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "maxfwd.so"

modparam("tls", "certificate", "{dir}/kamailio.pem")
modparam("tls", "private_key", "{dir}/kamailio.key")
modparam("tls", "ca_list", "{dir}/ca.pem")
# As a server: a client must present a certificate, and it must chain to the CA. As a client
# (towards our UAS and, for the BYE, our UAC): the server's certificate must chain to it too,
# and the same certificate is presented when asked for one.
modparam("tls", "verify_certificate", 1)
# Kamailio 5.6's default method is TLS 1.0 alone, which rustls (1.2 and 1.3 only) refuses.
modparam("tls", "tls_method", "TLSv1.2+")
modparam("tls", "require_certificate", 1)
modparam("rr", "enable_full_lr", 0)

request_route {{
    xlog("L_NOTICE", "IN $rm $pr\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if ($tt != $null) {{
        if (loose_route() || (method == "ACK" && t_check_trans())) {{
            t_relay();
            exit;
        }}
        xlog("L_NOTICE", "NOROUTE $rm\n");
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
    loose_route();
    record_route();
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}

onreply_route {{
    xlog("L_NOTICE", "REPLY $rs $rm $pr\n");
}}

onsend_route {{
    xlog("L_NOTICE", "OUT $rm $snd(sproto) $snd(ip):$snd(port)\n");
}}
{READY_ROUTE}"#
    )
}

/// The `IN`, `OUT` and `REPLY` lines of Kamailio's log, from the word on.
fn relayed(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            ["IN ", "OUT ", "REPLY ", "NOROUTE "]
                .iter()
                .find_map(|word| line.find(&format!(": {word}")).map(|at| &line[at + 2..]))
        })
        .map(str::to_owned)
        .collect()
}

/// The values of every `name` header of `call`'s INVITE, one per comma-separated entry.
fn header_entries(call: &IncomingCall, name: HeaderName) -> Vec<String> {
    call.request
        .headers
        .values(name)
        .flat_map(|value| value.split(','))
        .map(|entry| entry.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_uac_calls_our_uas_through_kamailio_over_tls_with_client_certificates() {
    let Some(installed) = kamailio::installed(&["tls"], "kamailio kamailio-tls-modules") else {
        return;
    };
    let started = Instant::now();
    let ca = TestCa::new();
    let issued = ca.issue();
    let files = [
        ("kamailio.pem", issued.certificate.as_str()),
        ("kamailio.key", issued.key.as_str()),
        ("ca.pem", ca.pem.as_str()),
    ];
    let mut kamailio = Kamailio::start("kamailio-tls", &installed, &files, kamailio_config).await;
    let proxy = kamailio.addr();
    let (uas, mut incoming) = start_manager(ca.ours(true), MediaMode::SignalingOnly).await;
    let (uac, _) = start_manager(ca.ours(true), MediaMode::SignalingOnly).await;
    let uas_tls = uas.tls_addr().expect("the UAS listens for TLS");
    let uac_tls = uac.tls_addr().expect("the UAC listens for TLS");

    let options = CallOptions::default().proxy(&format!("sip:{proxy};transport=tls"));
    let call = uac
        .call_with(&format!("sips:bob@{uas_tls}"), options)
        .await
        .unwrap();
    let log_so_far = || kamailio.log();
    let invite = tokio::time::timeout(STEP, incoming.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no INVITE through Kamailio within {STEP:?} (the call: {:?}):\n{}",
                call.state(),
                log_so_far()
            )
        })
        .expect("the UAS is running");
    let vias = header_entries(&invite, HeaderName::Via);
    assert!(
        vias.len() == 2
            && vias[0].starts_with(&format!("SIP/2.0/TLS {proxy};"))
            && vias[1].starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{};", uac_tls.port())),
        "the INVITE came over TLS from Kamailio, which had it over TLS from our UAC: {vias:?}\n{}",
        log_so_far()
    );
    let record_route = header_entries(&invite, HeaderName::RecordRoute);
    assert!(
        record_route.len() == 1 && record_route[0].contains("transport=tls"),
        "Kamailio record-routes over TLS: {record_route:?}"
    );
    invite.session.accept().await.unwrap();
    within("the answer", call.answered())
        .await
        .unwrap_or_else(|e| panic!("not answered: {e}\n{}", log_so_far()));
    within(
        "the UAS's call up",
        invite.session.wait_for(CallState::is_established),
    )
    .await;
    // The UAS hangs up: its BYE goes to Kamailio, which opens TLS to the UAC's listener.
    invite.session.hangup().await.unwrap();
    assert_eq!(
        within("the UAC's end of the call", call.ended()).await,
        CallState::Terminated,
        "{}",
        log_so_far()
    );
    within("the UAS's end of the call", invite.session.ended()).await;
    for manager in [&uac, &uas] {
        within("every resource back", manager.idle()).await;
        assert_released(manager);
    }
    let log = kamailio.stop().await;
    let lines = relayed(&log);
    eprintln!("Kamailio: {lines:?}");
    let uas_hop = format!("tls {uas_tls}");
    let uac_hop = format!("tls {uac_tls}");
    for expected in [
        "IN INVITE tls".to_owned(),
        format!("OUT INVITE {uas_hop}"),
        "REPLY 200 INVITE tls".to_owned(),
        "IN ACK tls".to_owned(),
        format!("OUT ACK {uas_hop}"),
        "IN BYE tls".to_owned(),
        format!("OUT BYE {uac_hop}"),
        "REPLY 200 BYE tls".to_owned(),
    ] {
        assert!(
            lines.contains(&expected),
            "Kamailio did not log {expected:?}: {lines:#?}\n{log}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|line| !line.starts_with("NOROUTE") && line.contains(" tls")),
        "every message Kamailio handled went over TLS along the route set: {lines:#?}"
    );
    uac.shutdown().await;
    uas.shutdown().await;
    eprintln!("UAC → Kamailio → UAS over TLS: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// baresip

/// The SIP messages of baresip's trace (`-s`): the transport of each (`UDP`, `TCP`, `TLS`: the
/// word of its `PROTO a -> b` line) and the message's first line.
fn sip_trace(output: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = output.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let (transport, route) = pair[0].split_once(' ')?;
            let is_trace = ["UDP", "TCP", "TLS"].contains(&transport) && route.contains(" -> ");
            is_trace.then(|| (transport.to_owned(), pair[1].to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_uac_calls_baresip_over_tls_audio_both_ways_then_baresip_hangs_up() {
    if !tool_available("baresip", "-h", "baresip-core") {
        return;
    }
    let started = Instant::now();
    let ca = TestCa::new();
    let (manager, _) = start_manager(ca.ours(false), MediaMode::Rtp { echo: false }).await;
    let issued = ca.issue();
    let mut baresip = Baresip::builder("tls")
        .auto_answer()
        .tls(&issued.certificate, &issued.key, &ca.pem)
        .start()
        .await;
    let call = manager
        .call(&format!("sip:baresip@{};transport=tls", baresip.tls_sip()))
        .await
        .unwrap();
    within("baresip's answer", call.answered())
        .await
        .unwrap_or_else(|e| panic!("baresip did not answer: {e}\n{}", baresip.output()));
    baresip.event("CALL_ESTABLISHED").await;

    // Two seconds of audio each way (100 frames of 20 ms received), the first ones skipped.
    let (sink, mut frames) = ChannelSink::new(1024);
    call.attach_sink(Box::new(sink)).await.unwrap();
    call.attach_source(Box::new(ToneSource::new(OUR_TONE_HZ, 8000)))
        .await
        .unwrap();
    let mut heard = Vec::new();
    within("two seconds of baresip's audio", async {
        for count in 0..100 {
            let frame = frames.recv().await.expect("the media task is running");
            if count >= 5 {
                heard.extend_from_slice(frame.samples());
            }
        }
    })
    .await;

    // baresip hangs up: its BYE comes to our TLS listener (our Contact).
    baresip.command("hangup", "").await;
    assert_eq!(
        within("the end of the call", call.ended()).await,
        CallState::Terminated,
        "{}",
        baresip.output()
    );
    baresip.event("CALL_CLOSED").await;
    within("every resource back", manager.idle()).await;
    assert_released(&manager);
    let quit = baresip.quit().await;
    let output = &quit.output;
    let trace = sip_trace(output);
    eprintln!("baresip's trace: {trace:?}");
    for first in ["INVITE sip:", "SIP/2.0 200", "ACK ", "BYE "] {
        assert!(
            trace.iter().any(|(_, line)| line.starts_with(first)),
            "no {first:?} in baresip's SIP trace:\n{output}"
        );
    }
    assert!(
        trace.iter().all(|(transport, _)| transport == "TLS"),
        "every SIP message went over TLS: {trace:#?}"
    );
    let heard_by_us = tone_ratio(&heard, BARESIP_TONE_HZ, OUR_TONE_HZ);
    let heard_by_baresip = tone_ratio(&quit.decoded, OUR_TONE_HZ, BARESIP_TONE_HZ);
    assert!(
        heard_by_us > 10.0,
        "baresip's tone not found in what we received (ratio {heard_by_us})"
    );
    assert!(
        quit.decoded.len() > 8000 && heard_by_baresip > 10.0,
        "our tone not found in what baresip decoded ({} samples, ratio {heard_by_baresip})",
        quit.decoded.len()
    );
    manager.shutdown().await;
    eprintln!("our UAC → baresip over TLS: {:?}", started.elapsed());
}
