//! Two members relayed: packets rewritten in place onto the listener's stream, transcoded
//! between µ-law and A-law, telephone events mapped, and what a relay drops.

mod common;

use common::{Harness, assert_one_stream, power};
use session_bridge::{BridgeEvent, Codec, DropReason, RtpAction, Technology, TechnologyChoice};
use session_media::dtmf::DtmfEncoder;
use session_media::g711::{self, G711Law};
use session_media::rtp::parse;
use std::time::Duration;

#[test]
fn two_pcmu_members_are_relayed_onto_each_others_stream() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice = h.join(bridge, Codec::pcmu());
    let bob = h.join(bridge, Codec::pcmu());
    assert_eq!(h.engine.technology(bridge), Some(Technology::Relay));
    h.tone(alice, 1000.0);
    h.tone(bob, 440.0);
    h.run_ms(1000);

    for (listener, talker) in [(bob, alice), (alice, bob)] {
        let out = h.stream(listener);
        let sent = &h.sent[&talker];
        assert_eq!(out.len(), 50);
        assert_eq!(sent.len(), 50);
        // One stream: the listener's SSRC, its sequence numbers from where the leg stood, its
        // timestamps one frame apart, starting at the leg's timestamp.
        let initial = h.initial[&listener];
        assert_one_stream(out, initial);
        assert_eq!(out[0].header.timestamp, initial.next_timestamp);
        assert!(out[0].header.marker, "the first packet starts a talk-spurt");
        for (o, packet) in out.iter().zip(sent) {
            let (_, payload) = parse(packet).unwrap();
            assert_eq!(o.payload, payload, "same codec: payload untouched");
            assert_eq!(o.header.payload_type, 0);
        }
    }
    let stats = h.engine.stats(bridge).unwrap();
    assert_eq!((stats.forwarded, stats.mixed_ticks), (100, 0));
    let alice_stats = h.engine.member_stats(alice).unwrap();
    assert_eq!(
        (
            alice_stats.packets_in,
            alice_stats.forwarded,
            alice_stats.packets_out
        ),
        (50, 50, 50)
    );
    assert_eq!(
        alice_stats.stream.next_sequence,
        h.initial[&alice].next_sequence.wrapping_add(50)
    );
}

#[test]
fn pcmu_and_pcma_are_transcoded_in_place() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice = h.join(bridge, Codec::pcmu());
    let bob = h.join(bridge, Codec::pcma());
    assert_eq!(
        h.engine.technology(bridge),
        Some(Technology::TranscodingRelay)
    );
    h.tone(alice, 1000.0);
    h.run_ms(500);

    let out = h.stream(bob);
    assert_eq!(out.len(), 25);
    assert_one_stream(out, h.initial[&bob]);
    for (o, packet) in out.iter().zip(&h.sent[&alice]) {
        assert_eq!(o.header.payload_type, 8, "Bob's payload type");
        let (_, sent) = parse(packet).unwrap();
        assert_eq!(
            o.payload.len(),
            sent.len(),
            "G.711 transcodes byte for byte"
        );
        for (&a, &u) in o.payload.iter().zip(sent) {
            let original = i32::from(g711::ulaw_decode(u));
            let heard = i32::from(g711::alaw_decode(a));
            let bound = (original.abs() / 16).max(16) + 8;
            assert!((heard - original).abs() <= bound, "{original} -> {heard}");
        }
    }
    let heard = h.heard(bob, G711Law::Alaw, 25);
    assert!(power(&heard, 1000.0) > 1000.0 * power(&heard, 1500.0));
}

#[test]
fn telephone_events_are_mapped_and_reported() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice_leg = h.leg(Codec::pcmu()).with_telephone_event(101);
    let alice = h.join_with(bridge, alice_leg);
    let bob_leg = h.leg(Codec::pcma()).with_telephone_event(96);
    let bob = h.join_with(bridge, bob_leg);
    h.tone(alice, 700.0);
    h.run_ms(100);
    h.hush(alice);

    // Alice's peer sends a 100 ms '5': seven packets stamped with the event's start.
    let peer = &mut h.peers.get_mut(&alice).unwrap().sender;
    let start = peer.timestamp();
    let packets: Vec<Vec<u8>> = DtmfEncoder::new('5', 800, 160)
        .unwrap()
        .map(|p| {
            peer.event(101, &p.payload, p.marker, start)
                .unwrap()
                .to_vec()
        })
        .collect();
    peer.skip(7 * 160);
    for packet in &packets {
        h.run_ms(20);
        let action = h.feed(alice, packet);
        assert_eq!(
            action,
            RtpAction::Forward {
                from: bob,
                len: packet.len()
            }
        );
    }
    h.tone(alice, 700.0);
    h.run_ms(100);

    let out = h.stream(bob);
    let events: Vec<_> = out.iter().filter(|o| o.header.payload_type == 96).collect();
    assert_eq!(events.len(), 7);
    let event_ts = events[0].header.timestamp;
    assert!(
        events.iter().all(|e| e.header.timestamp == event_ts),
        "RFC 4733 §2.5.1.2"
    );
    assert!(events[0].header.marker && !events[1].header.marker);
    for (e, packet) in events.iter().zip(&packets) {
        assert_eq!(
            e.payload,
            parse(packet).unwrap().1,
            "event payload unchanged"
        );
    }
    // The event sits on Bob's stream where the audio left off, and the audio resumes after it.
    let audio: Vec<_> = out.iter().filter(|o| o.header.payload_type == 8).collect();
    assert_eq!(event_ts, audio[4].header.timestamp.wrapping_add(160));
    assert_eq!(audio[5].header.timestamp, event_ts.wrapping_add(7 * 160));
    for w in out.windows(2) {
        assert_eq!(w[1].header.sequence, w[0].header.sequence.wrapping_add(1));
        assert_eq!(w[1].header.ssrc, h.initial[&bob].ssrc);
    }
    let digits: Vec<_> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            BridgeEvent::DtmfReceived {
                session,
                digit,
                duration,
                ..
            } => Some((session, digit, duration)),
            _ => None,
        })
        .collect();
    assert_eq!(digits, [(alice, '5', Duration::from_millis(100))]);
}

#[test]
fn events_sent_with_our_own_number_are_recognised_and_mapped() {
    // RFC 3264 §6.1: Alice's peer answered with telephone-event 100 while we offered 101, so
    // it sends its events with our 101 and we send ours to it with its 100.
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice_leg = h
        .leg(Codec::pcmu())
        .with_telephone_event(100)
        .with_receive_telephone_event(101);
    let alice = h.join_with(bridge, alice_leg);
    let bob_leg = h.leg(Codec::pcmu()).with_telephone_event(96);
    let bob = h.join_with(bridge, bob_leg);
    h.run_ms(20);
    let peer = &mut h.peers.get_mut(&alice).unwrap().sender;
    let start = peer.timestamp();
    let packets: Vec<Vec<u8>> = DtmfEncoder::new('7', 480, 160)
        .unwrap()
        .map(|p| {
            peer.event(101, &p.payload, p.marker, start)
                .unwrap()
                .to_vec()
        })
        .collect();
    for packet in &packets {
        h.run_ms(20);
        assert!(matches!(h.feed(alice, packet), RtpAction::Forward { from, .. } if from == bob));
    }
    let events = h
        .stream(bob)
        .iter()
        .filter(|o| o.header.payload_type == 96)
        .count();
    assert_eq!(events, packets.len(), "relayed with Bob's number");
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        BridgeEvent::DtmfReceived { session, digit: '7', .. } if *session == alice
    )));
}

#[test]
fn a_listener_without_telephone_events_gets_no_event_and_no_gap() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let carol_leg = h.leg(Codec::pcmu()).with_telephone_event(101);
    let carol = h.join_with(bridge, carol_leg);
    let dave = h.join(bridge, Codec::pcmu());
    h.tone(carol, 700.0);
    h.run_ms(100);
    h.hush(carol);
    let peer = &mut h.peers.get_mut(&carol).unwrap().sender;
    let start = peer.timestamp();
    let packets: Vec<Vec<u8>> = DtmfEncoder::new('#', 800, 160)
        .unwrap()
        .map(|p| {
            peer.event(101, &p.payload, p.marker, start)
                .unwrap()
                .to_vec()
        })
        .collect();
    peer.skip(7 * 160);
    for packet in &packets {
        h.run_ms(20);
        assert_eq!(
            h.feed(carol, packet),
            RtpAction::Dropped(DropReason::NoTelephoneEvent)
        );
    }
    h.tone(carol, 700.0);
    h.run_ms(40);
    assert!(
        h.take_events()
            .iter()
            .any(|e| matches!(e, BridgeEvent::DtmfReceived { digit: '#', .. }))
    );

    let out = h.stream(dave);
    assert_eq!(out.len(), 7);
    for w in out.windows(2) {
        assert_eq!(
            w[1].header.sequence,
            w[0].header.sequence.wrapping_add(1),
            "no gap"
        );
    }
    // Dave's stream paused while the event was dropped: the timestamp follows the clock.
    let resumed = &out[5];
    let paused = resumed
        .header
        .timestamp
        .wrapping_sub(out[4].header.timestamp);
    assert_eq!(paused, 160 * 8, "140 ms of event plus the frame itself");
    assert!(resumed.header.marker);
}

#[test]
fn what_a_relay_drops() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice = h.join(bridge, Codec::pcmu());
    let mut sender = session_media::rtp::RtpSender::new(9, 0, 0);
    let audio = sender.audio(0, &[0xFF; 160], 160).unwrap().to_vec();
    assert_eq!(
        h.feed(alice, &audio),
        RtpAction::Dropped(DropReason::NoListener)
    );
    let bob = h.join(bridge, Codec::pcmu());
    let noise = sender.audio(13, &[0x40], 160).unwrap().to_vec();
    assert_eq!(
        h.feed(alice, &noise),
        RtpAction::Dropped(DropReason::UnknownPayloadType(13))
    );
    assert_eq!(
        h.feed(alice, &[0x80, 0, 1]),
        RtpAction::Dropped(DropReason::Malformed)
    );
    let stranger = session_types::SessionId::new();
    assert_eq!(
        h.feed(stranger, &audio),
        RtpAction::Dropped(DropReason::UnknownSession)
    );
    let mut buf = [0u8; 16];
    assert_eq!(
        h.engine.handle_rtp(h.now, alice, &mut buf, 17),
        RtpAction::Dropped(DropReason::Malformed),
        "len beyond the buffer"
    );
    // The static number of the other law is accepted (and transcoded) on a PCMU leg.
    let alaw = sender.audio(8, &[0xD5; 160], 160).unwrap().to_vec();
    assert_eq!(
        h.feed(alice, &alaw),
        RtpAction::Forward {
            from: bob,
            len: alaw.len()
        }
    );
    let out = h.stream(bob);
    assert_eq!(out[0].header.payload_type, 0);
    assert!(
        out[0]
            .payload
            .iter()
            .all(|&b| b == g711::ulaw_encode(g711::alaw_decode(0xD5)))
    );
    assert_eq!(h.engine.member_stats(alice).unwrap().dropped, 3);
}

#[test]
fn a_forced_relay_drops_a_muted_talker_and_resumes_on_the_clock() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::ForceRelay);
    let alice = h.join(bridge, Codec::pcmu());
    let bob = h.join(bridge, Codec::pcmu());
    h.tone(alice, 700.0);
    h.run_ms(200);
    h.engine.set_muted(h.now, alice, true).unwrap();
    assert_eq!(
        h.engine.technology(bridge),
        Some(Technology::Relay),
        "forced"
    );
    h.run_ms(200);
    assert_eq!(
        h.engine.member_stats(alice).unwrap().dropped,
        10,
        "muted: dropped"
    );
    h.engine.set_muted(h.now, alice, false).unwrap();
    h.run_ms(100);
    let out = h.stream(bob);
    assert_eq!(out.len(), 15);
    for w in out.windows(2) {
        assert_eq!(w[1].header.sequence, w[0].header.sequence.wrapping_add(1));
    }
    let gap = out[10]
        .header
        .timestamp
        .wrapping_sub(out[9].header.timestamp);
    assert_eq!(gap, 11 * 160, "the 200 ms pause is time, not loss");
    assert!(out[10].header.marker);
}

/// A peer that holds the call (we answered `recvonly`) gets nothing — not even silence —
/// while the other side still hears it; when it resumes, its stream goes on on the clock.
#[test]
fn a_member_whose_peer_holds_is_sent_nothing_and_still_heard() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice = h.join(bridge, Codec::pcmu());
    let bob = h.join(bridge, Codec::pcmu());
    h.tone(alice, 700.0);
    h.tone(bob, 1300.0);
    h.run_ms(200);
    h.engine.set_sending(alice, false).unwrap();
    let to_alice = h.stream(alice).len();
    let to_bob = h.stream(bob).len();
    h.run_ms(200);
    assert_eq!(
        h.stream(alice).len(),
        to_alice,
        "nothing sent to the holding peer"
    );
    assert_eq!(h.stream(bob).len(), to_bob + 10, "bob still hears alice");
    assert_eq!(
        h.engine.technology(bridge),
        Some(Technology::Relay),
        "holding is not a setting that makes the bridge mix"
    );
    assert!(!h.engine.member_stats(alice).unwrap().sending);
    h.engine.set_sending(alice, true).unwrap();
    h.run_ms(100);
    let out = h.stream(alice);
    assert_eq!(out.len(), to_alice + 5);
    let resumed = &out[to_alice].header;
    let before = &out[to_alice - 1].header;
    assert_eq!(resumed.sequence, before.sequence.wrapping_add(1));
    assert_eq!(resumed.timestamp.wrapping_sub(before.timestamp), 11 * 160);
    assert!(resumed.marker, "a new talk-spurt after the pause");
}

/// A re-INVITE moved one peer from PCMU to PCMA: the relay turns into a transcoding relay
/// and each side still hears the other, on the same streams.
#[test]
fn a_leg_whose_codec_changes_is_transcoded_from_then_on() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice = h.join(bridge, Codec::pcmu());
    let bob = h.join(bridge, Codec::pcmu());
    assert_eq!(h.engine.technology(bridge), Some(Technology::Relay));
    h.engine
        .update_leg(h.now, bob, Codec::pcma(), None, None)
        .unwrap();
    assert_eq!(
        h.engine.technology(bridge),
        Some(Technology::TranscodingRelay)
    );
    h.switch_codec(bob, Codec::pcma());
    h.tone(alice, 700.0);
    h.tone(bob, 1300.0);
    h.run_ms(400);
    assert!(
        power(&h.heard(bob, G711Law::Alaw, 10), 700.0) > 1e6,
        "bob hears alice in PCMA"
    );
    assert!(
        h.stream(bob)
            .iter()
            .rev()
            .take(10)
            .all(|o| o.header.payload_type == 8)
    );
    assert!(
        power(&h.heard(alice, G711Law::Ulaw, 10), 1300.0) > 1e6,
        "alice hears bob"
    );
    assert_one_stream(h.stream(bob), h.initial[&bob]);
}
