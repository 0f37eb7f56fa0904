//! Misuse is an error that hands the leg back; no datagram, however malformed, panics.

mod common;

use common::Harness;
use proptest::prelude::*;
use session_bridge::{Codec, Error, Gain, RtpAction, TechnologyChoice};
use session_types::{Classify, ErrorKind, SessionId};

#[test]
fn misuse_is_refused_and_the_leg_comes_back() {
    let mut h = Harness::new();
    let relay = h.engine.create_bridge(TechnologyChoice::ForceRelay);
    let other = h.engine.create_bridge(TechnologyChoice::Auto);
    let a = h.join(relay, Codec::pcmu());
    let b = h.join(relay, Codec::pcma());

    // Already bridged: refused, the leg handed back unchanged.
    let leg = h.leg(Codec::pcmu());
    let ssrc = leg.stream.ssrc;
    let refused = h.engine.add_member(h.now, other, a, leg).unwrap_err();
    assert!(
        matches!(refused.error, Error::AlreadyBridged { session, bridge } if session == a && bridge == relay)
    );
    assert_eq!(refused.leg.stream.ssrc, ssrc);
    assert_eq!(refused.kind(), ErrorKind::ApiMisuse);
    // A forced relay carries two members, no more.
    let leg = h.leg(Codec::pcmu());
    let refused = h
        .engine
        .add_member(h.now, relay, SessionId::new(), leg)
        .unwrap_err();
    assert!(matches!(refused.error, Error::RelayFull(_)));
    let c = h.join(other, Codec::pcmu());
    assert!(matches!(
        h.engine.move_member(h.now, c, relay),
        Err(Error::RelayFull(_))
    ));
    assert!(matches!(
        h.engine.merge(h.now, other, relay),
        Err(Error::RelayFull(_))
    ));
    assert_eq!(
        h.engine.bridge_of(c),
        Some(other),
        "a refused move changes nothing"
    );
    // Unknown bridge, invalid leg.
    let gone = h.engine.create_bridge(TechnologyChoice::Auto);
    h.engine.destroy_bridge(h.now, gone).unwrap();
    let leg = h.leg(Codec::pcmu());
    assert!(matches!(
        h.engine.add_member(h.now, gone, SessionId::new(), leg).unwrap_err().error,
        Error::UnknownBridge(id) if id == gone
    ));
    let bad = h.leg(Codec::pcmu()).with_telephone_event(0);
    assert!(matches!(
        h.engine
            .add_member(h.now, other, SessionId::new(), bad)
            .unwrap_err()
            .error,
        Error::InvalidLeg(_)
    ));
    // Settings on strangers and across bridges.
    let stranger = SessionId::new();
    assert!(matches!(
        h.engine.set_muted(h.now, stranger, true),
        Err(Error::NotBridged(_))
    ));
    assert!(matches!(
        h.engine.set_deaf(h.now, stranger, true),
        Err(Error::NotBridged(_))
    ));
    assert!(matches!(
        h.engine.set_gain(h.now, a, c, Gain::ZERO),
        Err(Error::NotInSameBridge { .. })
    ));
    assert!(matches!(
        h.engine.set_gain(h.now, a, a, Gain::ZERO),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        h.engine.remove_member(h.now, stranger),
        Err(Error::NotBridged(_))
    ));
    assert!(h.engine.stats(gone).is_none() && h.engine.member_stats(stranger).is_none());
    for e in [Error::NotBridged(stranger), Error::RelayFull(relay)] {
        assert_eq!(e.kind(), ErrorKind::ApiMisuse);
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(h.engine.members(relay).map(<[_]>::len), Some(2));
    let _ = b;
}

#[test]
fn a_dtmf_flood_cannot_grow_the_event_queue_of_a_caller_that_does_not_drain() {
    let mut h = Harness::with_config(|mut c| {
        c.max_queued_events = 8;
        c
    });
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let leg = h.leg(Codec::pcmu()).with_telephone_event(101);
    let a = h.join_with(bridge, leg);
    let _b = h.join(bridge, Codec::pcmu());
    let mut sender = session_media::rtp::RtpSender::new(1, 0, 0);
    for i in 0..500u32 {
        // An end packet of a new event each time: every one is a digit.
        let packet = sender
            .event(101, &[1, 0x80, 0, 160], true, i * 1000)
            .unwrap()
            .to_vec();
        let _ = h.feed(a, &packet);
    }
    assert_eq!(h.engine.resources().queued_events, 8);
    assert_eq!(h.engine.member_stats(a).unwrap().dtmf_digits, 500);
}

#[test]
fn the_engine_can_move_to_a_driver_thread() {
    fn send<T: Send + 'static>() {}
    send::<session_bridge::BridgeEngine>();
    send::<session_bridge::Leg>();
    send::<session_bridge::Refused>();
}

/// A relay bridge (A, B), a mixer bridge (C, D, E) and a forced mixer with one member (F).
fn engine_with_every_kind_of_bridge() -> (Harness, Vec<SessionId>) {
    let mut h = Harness::new();
    let relay = h.engine.create_bridge(TechnologyChoice::Auto);
    let mixer = h.engine.create_bridge(TechnologyChoice::Auto);
    let lonely = h.engine.create_bridge(TechnologyChoice::ForceMixer);
    let te = |h: &mut Harness, codec| h.leg(codec).with_telephone_event(101);
    let mut members = Vec::new();
    for (bridge, codec) in [
        (relay, Codec::pcmu()),
        (relay, Codec::pcma()),
        (mixer, Codec::pcmu()),
        (mixer, Codec::pcma()),
        (mixer, Codec::pcmu()),
        (lonely, Codec::pcmu()),
    ] {
        let leg = te(&mut h, codec);
        members.push(h.join_with(bridge, leg));
    }
    (h, members)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random bytes, RTP-looking bytes (version 2, any flags) and RTCP-looking bytes into every
    /// member, with random lengths (also beyond the buffer), and time passing: no panic, and
    /// a forwarded packet always fits the buffer.
    #[test]
    fn no_datagram_panics(
        datagrams in proptest::collection::vec(
            (0usize..6, 0u8..3, proptest::collection::vec(any::<u8>(), 0..300), 0usize..320),
            1..60,
        ),
    ) {
        let (mut h, members) = engine_with_every_kind_of_bridge();
        for (who, shape, mut bytes, len) in datagrams {
            match (shape, bytes.first_mut()) {
                (1, Some(b)) => *b = 0x80 | (*b & 0x3F),
                (2, Some(b)) => {
                    *b = 0x80 | (*b & 0x3F);
                    if let Some(pt) = bytes.get_mut(1) {
                        *pt = 200 + (*pt % 5);
                    }
                }
                _ => {}
            }
            let session = members[who];
            let mut buf = bytes.clone();
            let action = h.engine.handle_rtp(h.now, session, &mut buf, len.min(bytes.len() + 8));
            if let RtpAction::Forward { len, .. } = action {
                prop_assert!(len <= buf.len());
            }
            let _ = h.engine.handle_rtcp(h.now, session, &bytes);
            h.now += std::time::Duration::from_millis(7);
            h.drain();
        }
        for m in &members {
            prop_assert!(h.engine.member_stats(*m).is_some());
        }
    }
}
