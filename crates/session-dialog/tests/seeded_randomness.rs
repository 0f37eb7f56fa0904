//! Randomness is an input: a user agent draws every tag, Via branch, Call-ID, §14.1 glare
//! delay and §14.2 Retry-After from one generator seeded by `UaConfig::rng_seed`, and its
//! transaction endpoint (OPTIONS, CANCEL, stateless rejections) from one seeded from it. So
//! the same seed and the same script give the same bytes, a failure seen once can be replayed,
//! and different seeds still give different values.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_dialog::driver::{DriverConfig, SipDriver};
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::ua::{UaConfig, UaEvent, UserAgent};
use session_simnet::sip::ScriptedPeer;
use session_sip::{Header, HeaderName, Message, Method, Request, Response, Uri};
use session_types::{DialogId, StatusCode};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CALLER: u16 = 5060;
const CALLEE: u16 = 5061;
const PEER: u16 = 5062;

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn ua(port: u16, rng_seed: Option<u64>) -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: port,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{port}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed,
    })
}

fn parse(bytes: &Bytes) -> Message {
    Message::parse(bytes.clone()).expect("the user agent sent garbage")
}

fn to_tag(response: &Response) -> String {
    response.to().unwrap().tag().expect("a To tag").to_owned()
}

/// Everything sent, in order: where to, and the bytes.
type Wire = Vec<(SocketAddr, Bytes)>;

/// Hands everything `from` sent to `to` as if it came from `source`, writing it down.
fn deliver(wire: &mut Wire, from: &mut UserAgent, to: &mut UserAgent, source: u16, now: Instant) {
    while let Some(t) = from.poll_transmit() {
        wire.push((t.destination, t.bytes.clone()));
        to.handle_datagram(now, Protocol::Udp, at(source), &t.bytes);
    }
}

/// What a call between two seeded user agents sent, and the random values in it.
#[derive(Debug, PartialEq, Eq)]
struct CallRun {
    wire: Wire,
    invite_branch: String,
    from_tag: String,
    call_id: String,
    ringing_to_tag: String,
    ok_to_tag: String,
    /// The §14.1 delays after both sides re-INVITEd at once: the caller owns the Call-ID.
    caller_glare: Duration,
    callee_glare: Duration,
}

/// A call from `caller_seed` to `callee_seed`: INVITE, 180, 200, ACK; both sides re-INVITE at
/// the same moment and each answers the other's with 491; the caller hangs up. Every datagram
/// arrives at once, and the clock never moves: only the seeds decide the bytes.
fn call(caller_seed: u64, callee_seed: u64) -> CallRun {
    let t0 = Instant::now();
    let mut wire = Wire::new();
    let mut caller = ua(CALLER, Some(caller_seed));
    let mut callee = ua(CALLEE, Some(callee_seed));
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    caller
        .invite(t0, &from, &to, at(CALLEE), Protocol::Udp, None)
        .unwrap();
    deliver(&mut wire, &mut caller, &mut callee, CALLER, t0);
    let Some(UaEvent::IncomingInvite { tx, .. }) = callee.poll_event() else {
        panic!("no INVITE")
    };
    callee
        .answer(t0, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    let callee_dialog: DialogId = callee
        .answer(t0, tx, StatusCode::OK, Vec::new(), None)
        .unwrap()
        .expect("the 200 makes a dialog");
    deliver(&mut wire, &mut callee, &mut caller, CALLEE, t0);
    deliver(&mut wire, &mut caller, &mut callee, CALLER, t0);
    let caller_dialog = callee_dialog.peer_view();
    while caller.poll_event().is_some() {}
    while callee.poll_event().is_some() {}
    // §14: both re-INVITE at once; each answers the other's with 491.
    for (ua, dialog) in [(&mut caller, &caller_dialog), (&mut callee, &callee_dialog)] {
        ua.request_in_dialog(t0, dialog, Method::Invite, Vec::new(), None)
            .unwrap();
    }
    deliver(&mut wire, &mut caller, &mut callee, CALLER, t0);
    deliver(&mut wire, &mut callee, &mut caller, CALLEE, t0);
    deliver(&mut wire, &mut caller, &mut callee, CALLER, t0);
    deliver(&mut wire, &mut callee, &mut caller, CALLEE, t0);
    let glare = |ua: &mut UserAgent| {
        std::iter::from_fn(|| ua.poll_event())
            .find_map(|e| match e {
                UaEvent::ReInviteGlare { retry_after, .. } => Some(retry_after),
                _ => None,
            })
            .expect("491 reported as glare")
    };
    let caller_glare = glare(&mut caller);
    let callee_glare = glare(&mut callee);
    caller.hangup(t0, &caller_dialog).unwrap();
    deliver(&mut wire, &mut caller, &mut callee, CALLER, t0);
    deliver(&mut wire, &mut callee, &mut caller, CALLEE, t0);

    let messages: Vec<Message> = wire.iter().map(|(_, bytes)| parse(bytes)).collect();
    let Message::Request(invite) = &messages[0] else {
        panic!("the INVITE goes first")
    };
    let response = |status: StatusCode| {
        messages
            .iter()
            .find_map(|m| match m {
                Message::Response(r)
                    if r.status == status && r.cseq().unwrap().method == Method::Invite =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .expect("the callee answered")
    };
    CallRun {
        invite_branch: invite.top_via().unwrap().branch().unwrap().to_owned(),
        from_tag: invite.from().unwrap().tag().unwrap().to_owned(),
        call_id: invite.call_id().unwrap().to_owned(),
        ringing_to_tag: to_tag(&response(StatusCode::RINGING)),
        ok_to_tag: to_tag(&response(StatusCode::OK)),
        caller_glare,
        callee_glare,
        wire,
    }
}

/// What a seeded user agent answered to a scripted peer, and the random values in it.
#[derive(Debug, PartialEq, Eq)]
struct UasRun {
    wire: Wire,
    /// The transaction endpoint's own answers.
    options_tag: String,
    bad_extension_tag: String,
    bad_request_tag: String,
    cancel_ok_tag: String,
    terminated_tag: String,
    /// The user agent's.
    ok_to_tag: String,
    retry_after: u32,
}

/// What the user agent sent in answer to `request` (one response).
fn answer_to(ua: &mut UserAgent, wire: &mut Wire, request: &Request, now: Instant) -> Response {
    ua.handle_datagram(now, Protocol::Udp, at(PEER), &request.to_bytes());
    next_response(ua, wire)
}

fn next_response(ua: &mut UserAgent, wire: &mut Wire) -> Response {
    let t = ua.poll_transmit().expect("the user agent answered");
    wire.push((t.destination, t.bytes.clone()));
    match parse(&t.bytes) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method.as_str()),
    }
}

/// A scripted peer talks to the user agent seeded with `seed`: an out-of-dialog OPTIONS (the
/// endpoint answers 200), an OPTIONS requiring an unknown extension (420) and one whose
/// Content-Length does not parse (400 from the parser), an INVITE cancelled before any answer
/// (200 to the CANCEL, 487), then a call answered with 180 and 200, and two re-INVITEs in it,
/// the second before the first is answered (500 with Retry-After, §14.2).
fn answer_peer(seed: u64) -> UasRun {
    let t0 = Instant::now();
    let mut wire = Wire::new();
    let mut ua = ua(CALLEE, Some(seed));
    let mut peer = ScriptedPeer::new(
        "alice",
        at(PEER),
        Uri::parse(&format!("sip:ua@127.0.0.1:{CALLEE}")).unwrap(),
    );

    let options = peer.request(Method::Options);
    let options_ok = answer_to(&mut ua, &mut wire, &options, t0);
    assert_eq!(options_ok.status, StatusCode::OK);

    let mut exotic = peer.request(Method::Options);
    exotic.headers.push(Header::new(HeaderName::Require, "foo"));
    let bad_extension = answer_to(&mut ua, &mut wire, &exotic, t0);
    assert_eq!(bad_extension.status, StatusCode::BAD_EXTENSION);

    let broken = String::from_utf8(peer.request(Method::Options).to_bytes().to_vec())
        .unwrap()
        .replacen("Content-Length: 0", "Content-Length: x", 1);
    let broken = Bytes::from(broken);
    let limits = session_sip::ParseLimits::default();
    assert!(session_sip::parse_datagram(&broken, &limits).is_err());
    ua.handle_datagram(t0, Protocol::Udp, at(PEER), &broken);
    let bad_request = next_response(&mut ua, &mut wire);
    assert_eq!(bad_request.status, StatusCode::BAD_REQUEST);

    let invite = peer.invite();
    ua.handle_datagram(t0, Protocol::Udp, at(PEER), &invite.to_bytes());
    assert!(ua.poll_transmit().is_none(), "no answer yet");
    let cancel_ok = answer_to(&mut ua, &mut wire, &peer.cancel(), t0);
    assert_eq!(cancel_ok.status, StatusCode::OK);
    let terminated = next_response(&mut ua, &mut wire);
    assert_eq!(terminated.status, StatusCode::REQUEST_TERMINATED);
    ua.handle_datagram(
        t0,
        Protocol::Udp,
        at(PEER),
        &peer.ack_failure(&terminated).to_bytes(),
    );
    while ua.poll_event().is_some() {}

    peer.new_call();
    let invite = peer.invite();
    ua.handle_datagram(t0, Protocol::Udp, at(PEER), &invite.to_bytes());
    let tx = std::iter::from_fn(|| ua.poll_event())
        .find_map(|e| match e {
            UaEvent::IncomingInvite { tx, .. } => Some(tx),
            _ => None,
        })
        .expect("the second INVITE reaches the user agent");
    ua.answer(t0, tx, StatusCode::RINGING, Vec::new(), None)
        .unwrap();
    peer.expect_response(
        Some(next_response(&mut ua, &mut wire).to_bytes()),
        StatusCode::RINGING,
    )
    .unwrap();
    ua.answer(t0, tx, StatusCode::OK, Vec::new(), None).unwrap();
    let ok = next_response(&mut ua, &mut wire);
    peer.expect_response(Some(ok.to_bytes()), StatusCode::OK)
        .unwrap();
    ua.handle_datagram(t0, Protocol::Udp, at(PEER), &peer.ack().to_bytes());

    // §14.2: a re-INVITE before the previous one was answered gets 500 with Retry-After.
    let first = peer.invite();
    ua.handle_datagram(t0, Protocol::Udp, at(PEER), &first.to_bytes());
    let overlapping = answer_to(&mut ua, &mut wire, &peer.invite(), t0);
    assert_eq!(overlapping.status, StatusCode::SERVER_INTERNAL_ERROR);
    let retry_after = overlapping
        .headers
        .get_str(HeaderName::RetryAfter)
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(ua.poll_transmit().is_none());

    UasRun {
        wire,
        options_tag: to_tag(&options_ok),
        bad_extension_tag: to_tag(&bad_extension),
        bad_request_tag: to_tag(&bad_request),
        cancel_ok_tag: to_tag(&cancel_ok),
        terminated_tag: to_tag(&terminated),
        ok_to_tag: to_tag(&ok),
        retry_after,
    }
}

#[test]
fn the_same_seed_and_script_give_byte_identical_messages() {
    let first = call(1, 2);
    let again = call(1, 2);
    // INVITE, 180, 200, ACK, two re-INVITEs, two 491s, two ACKs, BYE, 200.
    assert_eq!(first.wire.len(), 12, "{:#?}", first.wire);
    assert_eq!(first, again);
    assert_eq!(
        first.ringing_to_tag, first.ok_to_tag,
        "one To tag for every response of the transaction (§8.2.6.2)"
    );

    let first = answer_peer(7);
    let again = answer_peer(7);
    // 200 (OPTIONS), 420, 400, 200 (CANCEL), 487, 180, 200, 500.
    assert_eq!(first.wire.len(), 8, "{:#?}", first.wire);
    assert_eq!(first, again);
    assert_eq!(
        first.cancel_ok_tag, first.terminated_tag,
        "the 487 carries the tag the CANCEL's 200 got"
    );
}

#[test]
fn different_seeds_give_different_values() {
    let a = call(1, 2);
    let b = call(3, 4);
    assert_ne!(a.invite_branch, b.invite_branch);
    assert_ne!(a.from_tag, b.from_tag);
    assert_ne!(a.call_id, b.call_id);
    assert_ne!(a.ok_to_tag, b.ok_to_tag);
    // Within one run every value is fresh too.
    assert_ne!(a.from_tag, a.ok_to_tag);

    let a = answer_peer(7);
    let b = answer_peer(8);
    assert_ne!(a.options_tag, b.options_tag);
    assert_ne!(a.bad_extension_tag, b.bad_extension_tag);
    assert_ne!(a.bad_request_tag, b.bad_request_tag);
    assert_ne!(a.cancel_ok_tag, b.cancel_ok_tag);
    assert_ne!(a.ok_to_tag, b.ok_to_tag);
    let tags = BTreeSet::from([
        &a.options_tag,
        &a.bad_extension_tag,
        &a.bad_request_tag,
        &a.cancel_ok_tag,
        &a.ok_to_tag,
    ]);
    assert_eq!(tags.len(), 5, "every tag of one run is a new draw");

    // Small ranges repeat now and then, but not across a handful of seeds.
    let caller_delays: BTreeSet<Duration> =
        (0..16).map(|s| call(s, s + 100).caller_glare).collect();
    let callee_delays: BTreeSet<Duration> =
        (0..16).map(|s| call(s, s + 100).callee_glare).collect();
    let retry_afters: BTreeSet<u32> = (0..16).map(|s| answer_peer(s).retry_after).collect();
    assert!(caller_delays.len() > 8, "{caller_delays:?}");
    assert!(callee_delays.len() > 8, "{callee_delays:?}");
    assert!(retry_afters.len() > 3, "{retry_afters:?}");
}

#[test]
fn glare_delays_stay_within_section_14_1_over_many_seeds() {
    let ms = Duration::from_millis;
    let mut owner = BTreeSet::new();
    let mut other = BTreeSet::new();
    for seed in 0..400 {
        let run = call(seed, seed + 1_000_000);
        for wait in [run.caller_glare, run.callee_glare] {
            assert_eq!(
                wait.as_nanos() % ms(10).as_nanos(),
                0,
                "10 ms steps: {wait:?}"
            );
        }
        // The owner of the Call-ID (the caller) waits 2.1–4 s, the other side 0–2 s.
        assert!(
            (ms(2100)..=ms(4000)).contains(&run.caller_glare),
            "seed {seed}: {:?}",
            run.caller_glare
        );
        assert!(
            run.callee_glare <= ms(2000),
            "seed {seed}: {:?}",
            run.callee_glare
        );
        owner.insert(run.caller_glare);
        other.insert(run.callee_glare);
    }
    // The whole of each range is used, not a corner of it.
    let spread = |set: &BTreeSet<Duration>| (*set.first().unwrap(), *set.last().unwrap());
    let (low, high) = spread(&owner);
    assert!(low < ms(2200) && high > ms(3900), "{low:?}..{high:?}");
    let (low, high) = spread(&other);
    assert!(low < ms(100) && high > ms(1900), "{low:?}..{high:?}");
    assert!(owner.len() > 100 && other.len() > 100);
}

#[test]
fn retry_after_of_an_overlapping_reinvite_stays_within_ten_seconds() {
    let seen: BTreeSet<u32> = (0..200).map(|seed| answer_peer(seed).retry_after).collect();
    assert_eq!(seen, (0..=10).collect(), "0–10 s, each value reachable");
}

#[test]
fn an_unseeded_user_agent_tells_its_seed_so_the_run_can_be_replayed() {
    let t0 = Instant::now();
    let from = Uri::parse("sip:alice@127.0.0.1:5060").unwrap();
    let to = Uri::parse("sip:bob@127.0.0.1:5061").unwrap();
    let invite = |ua: &mut UserAgent| {
        ua.invite(t0, &from, &to, at(CALLEE), Protocol::Udp, None)
            .unwrap();
        ua.poll_transmit().unwrap().bytes
    };
    let mut unseeded = ua(CALLER, None);
    let seen_once = invite(&mut unseeded);
    let mut replay = ua(CALLER, Some(unseeded.rng_seed()));
    assert_eq!(replay.rng_seed(), unseeded.rng_seed());
    assert_eq!(invite(&mut replay), seen_once);
    // Two unseeded user agents draw their own seeds.
    assert_ne!(ua(CALLER, None).rng_seed(), ua(CALLER, None).rng_seed());
}

#[tokio::test]
async fn the_driver_passes_its_seed_to_the_user_agent() {
    let start = |rng_seed| {
        SipDriver::start(DriverConfig {
            tcp: false,
            rng_seed,
            ..DriverConfig::default()
        })
    };
    let (seeded, _events) = start(Some(42)).await.unwrap();
    assert_eq!(seeded.with(|ua, _| ua.rng_seed()).await.unwrap(), 42);
    assert_eq!(DriverConfig::default().rng_seed, None, "entropy by default");
}
