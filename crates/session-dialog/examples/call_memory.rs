//! Heap cost per call in the sans-IO user agent, measured with a counting global allocator.
//!
//! ```text
//! cargo run --release -p session-dialog --example call_memory [CALLS]
//! ```
//!
//! For `CALLS` calls (20,000 by default) on each side it reports the heap bytes held per call:
//!
//! - UAS: INVITE in, 200 out, ACK in: established, with the INVITE server transaction still
//!   in Timer L; then once the timers have run (dialog only); then BYE in, 200 out: the BYE's
//!   server transaction lingering in Timer J; then after Timer J.
//! - UAC: INVITE out, 200 in, ACK out: established, with the INVITE client transaction in
//!   Timer M; then dialog only; then BYE out, 200 in: the BYE's client transaction in Timer K.
//!
//! Bytes are what the program asked the allocator for (live, not peak); the resident set adds
//! the allocator's own overhead and is printed for reference.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use bytes::Bytes;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{UaConfig, UaEvent, UserAgent};
use session_sip::{Header, HeaderName, Message, Response, Uri};
use session_types::{DialogId, StatusCode};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// adds bookkeeping, so `System`'s guarantees carry over.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4)
}

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn invite(call: usize) -> Bytes {
    Bytes::from(format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{call}-0\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag={call}SIPpTag00\r\n\
         To: service <sip:service@127.0.0.1:5060>\r\n\
         Call-ID: {call}-12345@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@127.0.0.1:5061\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ))
}

fn in_dialog(method: &str, call: usize, seq: u32, to_tag: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:service@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{call}-{seq}-{method}\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag={call}SIPpTag00\r\n\
         To: service <sip:service@127.0.0.1:5060>;tag={to_tag}\r\n\
         Call-ID: {call}-12345@127.0.0.1\r\n\
         CSeq: {seq} {method}\r\n\
         Contact: sip:sipp@127.0.0.1:5061\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

fn user_agent(port: u16) -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: port,
        contact: Uri::parse(&format!("sip:service@127.0.0.1:{port}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: None,
    })
}

fn drain(ua: &mut UserAgent) {
    while ua.poll_transmit().is_some() {}
    while ua.poll_event().is_some() {}
}

/// Prints one line: bytes held per call since `base`.
fn report(what: &str, base: usize, calls: usize) {
    let held = live().saturating_sub(base);
    println!(
        "{what:<58} {:>7} B/call  ({:>6} KiB heap, RSS {} KiB)",
        held / calls.max(1),
        held / 1024,
        rss_kib()
    );
}

fn uas(ua: &mut UserAgent, now: &mut Instant, calls: usize, round: &str) {
    let peer: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let mut dialogs: Vec<DialogId> = Vec::with_capacity(calls);
    let sdp = Bytes::from_static(SDP.as_bytes());
    let base = live();
    for call in 0..calls {
        ua.handle_datagram(*now, Protocol::Udp, peer, &invite(call));
        let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
            panic!("no INVITE")
        };
        let dialog = ua
            .answer(
                *now,
                tx,
                StatusCode::OK,
                Vec::new(),
                Some(("application/sdp", sdp.clone())),
            )
            .unwrap()
            .unwrap();
        let tag = dialog.local_tag.to_string();
        ua.handle_datagram(*now, Protocol::Udp, peer, &in_dialog("ACK", call, 1, &tag));
        drain(ua);
        dialogs.push(dialog);
    }
    assert_eq!(ua.dialog_count(), calls);
    println!("UAS, {calls} calls, {round}");
    report("  established, INVITE transaction in Timer L", base, calls);
    *now += Duration::from_secs(40);
    ua.handle_timeout(*now);
    drain(ua);
    assert_eq!(ua.transaction_count(), 0);
    report("  established, dialog only", base, calls);
    for (call, dialog) in dialogs.iter().enumerate() {
        ua.handle_datagram(
            *now,
            Protocol::Udp,
            peer,
            &in_dialog("BYE", call, 2, &dialog.local_tag),
        );
        drain(ua);
    }
    assert_eq!(ua.dialog_count(), 0);
    report(
        "  after BYE: BYE server transaction in Timer J",
        base,
        calls,
    );
    *now += Duration::from_secs(40);
    ua.handle_timeout(*now);
    drain(ua);
    assert_eq!(ua.state_count(), 0);
    report("  after Timer J: nothing live (capacity kept)", base, calls);
}

fn uac(ua: &mut UserAgent, now: &mut Instant, calls: usize, round: &str) {
    let callee: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    let mut dialogs: Vec<DialogId> = Vec::with_capacity(calls);
    let sdp = Bytes::from_static(SDP.as_bytes());
    let base = live();
    for call in 0..calls {
        ua.invite(
            *now,
            &from,
            &to,
            callee,
            Protocol::Udp,
            Some(("application/sdp", sdp.clone())),
        )
        .unwrap();
        let sent = ua.poll_transmit().unwrap();
        let Message::Request(request) = Message::parse(sent.bytes).unwrap() else {
            panic!("not a request")
        };
        let mut ok =
            Response::from_request_with_tag(&request, StatusCode::OK, Some(&format!("b{call}")));
        ok.headers
            .push(Header::new(HeaderName::Contact, "<sip:bob@127.0.0.1:5061>"));
        ok.headers.remove_all(HeaderName::ContentLength);
        ok.headers
            .push(Header::new(HeaderName::ContentType, "application/sdp"));
        ok.headers.push(Header::new(
            HeaderName::ContentLength,
            SDP.len().to_string(),
        ));
        ok.body = sdp.clone();
        ua.handle_datagram(*now, Protocol::Udp, callee, &ok.to_bytes());
        let mut dialog = None;
        while let Some(event) = ua.poll_event() {
            if let UaEvent::Response {
                dialog: Some(d), ..
            } = event
            {
                dialog = Some(d);
            }
        }
        while ua.poll_transmit().is_some() {}
        dialogs.push(dialog.expect("answered"));
    }
    assert_eq!(ua.dialog_count(), calls);
    println!("UAC, {calls} calls, {round}");
    report("  established, INVITE transaction in Timer M", base, calls);
    *now += Duration::from_secs(40);
    ua.handle_timeout(*now);
    drain(ua);
    assert_eq!(ua.transaction_count(), 0);
    report("  established, dialog only", base, calls);
    for dialog in &dialogs {
        ua.hangup(*now, dialog).unwrap();
        let sent = ua.poll_transmit().unwrap();
        let Message::Request(bye) = Message::parse(sent.bytes).unwrap() else {
            panic!("not a request")
        };
        let ok = Response::from_request(&bye, StatusCode::OK);
        ua.handle_datagram(*now, Protocol::Udp, callee, &ok.to_bytes());
        drain(ua);
    }
    report(
        "  after BYE: BYE client transaction in Timer K",
        base,
        calls,
    );
    *now += Duration::from_secs(40);
    ua.handle_timeout(*now);
    drain(ua);
    assert_eq!(ua.state_count(), 0);
    report("  after Timer K: nothing live (capacity kept)", base, calls);
}

fn main() {
    let calls = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut now = Instant::now();
    // A first round grows every map to its peak; the second shows what a call costs in a
    // running server, whose maps are already that large.
    for round in [
        "first round (maps grow)",
        "second round (maps already grown)",
    ] {
        let mut ua = user_agent(5060);
        let base = live();
        uas(&mut ua, &mut now, calls, round);
        uas(&mut ua, &mut now, calls, "again on the same user agent");
        report("  capacity kept by the UAS user agent", base, calls);
        drop(ua);
        let mut ua = user_agent(5060);
        let base = live();
        uac(&mut ua, &mut now, calls, round);
        uac(&mut ua, &mut now, calls, "again on the same user agent");
        report("  capacity kept by the UAC user agent", base, calls);
        if round.starts_with("first") {
            break;
        }
    }
}
