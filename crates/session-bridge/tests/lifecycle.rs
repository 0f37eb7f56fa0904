//! Membership over time: relay ↔ mixer switches, moves between bridges, merges, removal and
//! destruction. Every member's outgoing stream stays one stream through all of it, and every
//! resource comes back.

mod common;

use std::time::Duration;

use common::{Harness, assert_one_stream, power};
use session_bridge::{BridgeEvent, Codec, Resources, Technology, TechnologyChoice};
use session_media::g711::G711Law;
use session_media::rtp::parse;

fn technology_changes(events: &[BridgeEvent]) -> Vec<(Technology, Technology)> {
    events
        .iter()
        .filter_map(|e| match e {
            BridgeEvent::TechnologyChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn relay_to_mixer_and_back_keeps_every_stream_continuous() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let a = h.join(bridge, Codec::pcmu());
    let b = h.join(bridge, Codec::pcma());
    h.tone(a, 500.0);
    h.tone(b, 1100.0);
    h.run_ms(500);
    assert_eq!(
        h.engine.technology(bridge),
        Some(Technology::TranscodingRelay)
    );
    // A third member turns the relay into a mixer …
    let c = h.join(bridge, Codec::pcmu());
    h.tone(c, 1700.0);
    h.run_ms(200);
    // A pauses while mixed: its packets and B's stream no longer advance together, so the
    // relay afterwards must not reuse its old mapping.
    h.hush(a);
    h.run_ms(200);
    h.tone(a, 500.0);
    h.run_ms(100);
    assert_eq!(h.engine.technology(bridge), Some(Technology::Mixer));
    assert!(
        power(&h.heard(a, G711Law::Ulaw, 10), 1700.0) > 1e6,
        "A hears C"
    );
    // … and its leaving turns it back.
    let _ = h.engine.remove_member(h.now, c).unwrap();
    h.hush(c);
    h.run_ms(500);
    assert_eq!(
        h.engine.technology(bridge),
        Some(Technology::TranscodingRelay)
    );
    assert_eq!(
        technology_changes(&h.events),
        [
            (Technology::Relay, Technology::TranscodingRelay),
            (Technology::TranscodingRelay, Technology::Mixer),
            (Technology::Mixer, Technology::TranscodingRelay),
        ]
    );
    for member in [a, b] {
        let out = h.stream(member);
        // 25 relayed, 25 mixed, 25 relayed: one SSRC, no sequence gap, no timestamp jump.
        assert_eq!(out.len(), 75);
        assert_one_stream(out, h.initial[&member]);
    }
    // After the switch back, B hears A's packets relayed again (transcoded to A-law).
    let last = h.stream(b).last().unwrap();
    let (_, sent) = parse(h.sent[&a].last().unwrap()).unwrap();
    assert_eq!(last.payload.len(), sent.len());
    assert_eq!(last.header.payload_type, 8);
    assert_eq!(
        h.engine.resources().jitter_buffers,
        0,
        "relay members hold no jitter buffer"
    );
}

#[test]
fn a_member_moves_between_bridges_make_before_break() {
    let mut h = Harness::new();
    let x = h.engine.create_bridge(TechnologyChoice::Auto);
    let a = h.join(x, Codec::pcmu());
    let b = h.join(x, Codec::pcmu());
    h.tone(a, 500.0);
    h.tone(b, 1100.0);
    // Bridge Y mixes on another phase: its ticks fall 10 ms off X's packets.
    h.run_ms(10);
    let y = h.engine.create_bridge(TechnologyChoice::ForceMixer);
    let c = h.join(y, Codec::pcma());
    let d = h.join(y, Codec::pcmu());
    h.tone(c, 1700.0);
    h.tone(d, 2300.0);
    h.run_ms(500);
    h.engine.move_member(h.now, b, y).unwrap();
    h.drain();
    h.run_ms(500);

    assert_eq!(h.engine.bridge_of(b), Some(y));
    assert_eq!(h.engine.members(x), Some(&[a][..]));
    assert!(h.events.contains(&BridgeEvent::MemberMoved {
        session: b,
        from: x,
        to: y
    }));
    assert_eq!(h.engine.technology(x), Some(Technology::Relay));
    // B's stream: relayed from A, then mixed in Y, as one stream with no gap over 40 ms.
    let out = h.stream(b);
    assert_one_stream(out, h.initial[&b]);
    let moved = out.iter().position(|o| o.at > h.at(510)).unwrap();
    let wall = out[moved].at.duration_since(out[moved - 1].at);
    assert!(
        wall <= Duration::from_millis(40),
        "{wall:?} between the last relayed and first mixed packet"
    );
    let heard = h.heard(b, G711Law::Ulaw, 15);
    assert!(
        power(&heard, 1700.0) > 1e6 && power(&heard, 2300.0) > 1e6,
        "B hears Y"
    );
    assert!(power(&heard, 500.0) < 1e4, "B no longer hears A");
    let c_heard = h.heard(c, G711Law::Alaw, 15);
    assert!(power(&c_heard, 1100.0) > 1e6, "Y hears B");
    // A, alone now, is sent nothing more.
    assert_eq!(h.stream(a).len(), 25);
    // Moving to the bridge one is in changes nothing; to an unknown bridge fails.
    h.engine.move_member(h.now, b, y).unwrap();
    assert!(h.engine.destroy_bridge(h.now, x).is_ok());
    assert!(h.engine.move_member(h.now, b, x).is_err());
}

#[test]
fn merging_two_bridges_mixes_everyone() {
    let mut h = Harness::new();
    let x = h.engine.create_bridge(TechnologyChoice::Auto);
    let y = h.engine.create_bridge(TechnologyChoice::Auto);
    let members = [
        h.join(x, Codec::pcmu()),
        h.join(x, Codec::pcmu()),
        h.join(y, Codec::pcma()),
        h.join(y, Codec::pcmu()),
    ];
    let hz = [500.0, 1100.0, 1700.0, 2300.0];
    for (m, f) in members.iter().zip(hz) {
        h.tone(*m, f);
    }
    h.run_ms(500);
    h.engine.merge(h.now, y, x).unwrap();
    h.drain();
    h.run_ms(500);
    assert_eq!(h.engine.technology(x), Some(Technology::Mixer));
    assert_eq!(h.engine.technology(y), None, "the merged bridge is gone");
    assert_eq!(h.engine.resources().bridges, 1);
    let moved: Vec<_> = h
        .events
        .iter()
        .filter(
            |e| matches!(e, BridgeEvent::MemberMoved { from, to, .. } if *from == y && *to == x),
        )
        .collect();
    assert_eq!(moved.len(), 2);
    assert!(
        h.events
            .contains(&BridgeEvent::BridgeDestroyed { bridge: y })
    );
    let laws = [G711Law::Ulaw, G711Law::Ulaw, G711Law::Alaw, G711Law::Ulaw];
    for (i, m) in members.iter().enumerate() {
        assert_eq!(h.engine.bridge_of(*m), Some(x));
        let heard = h.heard(*m, laws[i], 15);
        for (j, f) in hz.iter().enumerate() {
            if i == j {
                assert!(power(&heard, *f) < 1e4, "member {i} hears itself");
            } else {
                assert!(
                    power(&heard, *f) > 1e6,
                    "member {i} does not hear member {j}"
                );
            }
        }
        assert_one_stream(h.stream(*m), h.initial[m]);
    }
    assert!(h.engine.merge(h.now, x, x).is_err());
    assert!(h.engine.merge(h.now, y, x).is_err());
}

#[test]
fn removal_hands_the_leg_back_with_its_stream_advanced() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let a = h.join(bridge, Codec::pcmu());
    let b = h.join(bridge, Codec::pcmu());
    h.tone(a, 500.0);
    h.run_ms(200);
    h.hush(a);
    let initial = h.initial[&b];
    // Removed right after the last packet: the stream continues from it.
    let now = h.now;
    let leg = h.engine.remove_member(now, b).unwrap();
    assert_eq!(leg.stream.ssrc, initial.ssrc);
    assert_eq!(
        leg.stream.next_sequence,
        initial.next_sequence.wrapping_add(10)
    );
    assert_eq!(
        leg.stream.next_timestamp,
        initial.next_timestamp.wrapping_add(1600)
    );
    assert_eq!((leg.stream.packets, leg.stream.octets), (10, 1600));
    assert!(!leg.stream.marker_pending);
    assert_eq!(h.engine.bridge_of(b), None);
    // The call's own sender picks the stream up.
    let mut sender = leg.stream.to_sender();
    let (next, _) = parse(sender.audio(0, &[0xFF; 160], 160).unwrap()).unwrap();
    assert_eq!(
        (next.ssrc, next.sequence),
        (initial.ssrc, initial.next_sequence.wrapping_add(10))
    );
    assert_eq!(next.timestamp, initial.next_timestamp.wrapping_add(1600));

    // Removed a second after the last packet: the timestamp has followed the clock.
    let c = h.join(bridge, Codec::pcmu());
    h.tone(a, 500.0);
    h.run_ms(200);
    h.hush(a);
    h.run_ms(1000);
    let before = h.engine.member_stats(c).unwrap().stream;
    let leg = h.engine.remove_member(h.now, c).unwrap();
    assert_eq!(leg.stream.next_sequence, before.next_sequence);
    assert_eq!(
        leg.stream.next_timestamp,
        before.next_timestamp.wrapping_add(49 * 160),
        "980 ms past the packet that was due"
    );
    assert_eq!(leg.stream.next_due, Some(h.now));
    assert!(
        leg.stream.marker_pending,
        "the next packet starts a talk-spurt"
    );
    h.drain();
    assert!(
        h.events
            .contains(&BridgeEvent::MemberLeft { bridge, session: c })
    );
    assert!(h.engine.remove_member(h.now, c).is_err());
}

#[test]
fn destroying_every_bridge_releases_everything() {
    let mut h = Harness::new();
    let relay = h.engine.create_bridge(TechnologyChoice::Auto);
    let mixer = h.engine.create_bridge(TechnologyChoice::Auto);
    let lonely = h.engine.create_bridge(TechnologyChoice::ForceMixer);
    let empty = h.engine.create_bridge(TechnologyChoice::ForceRelay);
    let mut everyone = vec![h.join(relay, Codec::pcmu()), h.join(relay, Codec::pcma())];
    for _ in 0..3 {
        everyone.push(h.join(mixer, Codec::pcmu()));
    }
    everyone.push(h.join(lonely, Codec::pcma()));
    for (i, m) in everyone.iter().enumerate() {
        h.tone(*m, 400.0 + 300.0 * i as f64);
    }
    h.run_ms(6000);
    let held = h.engine.resources();
    assert_eq!((held.bridges, held.members, held.jitter_buffers), (4, 6, 4));
    assert!(
        held.timers >= 6 + 2,
        "RTCP and stall per member, ticks per mixer"
    );

    let mut legs = Vec::new();
    for bridge in [relay, mixer, lonely, empty] {
        legs.extend(h.engine.destroy_bridge(h.now, bridge).unwrap());
    }
    assert_eq!(legs.len(), 6);
    for (session, leg) in &legs {
        assert_eq!(leg.stream.ssrc, h.initial[session].ssrc);
        assert!(leg.stream.packets > 0);
        assert!(
            leg.reception.received() > 0,
            "the reception statistics come back too"
        );
    }
    h.drain();
    let left = h
        .events
        .iter()
        .filter(|e| matches!(e, BridgeEvent::MemberLeft { .. }))
        .count();
    let destroyed = h
        .events
        .iter()
        .filter(|e| matches!(e, BridgeEvent::BridgeDestroyed { .. }))
        .count();
    assert_eq!((left, destroyed), (6, 4));
    // Packets still arriving for the departed are dropped; time passing changes nothing.
    h.run_ms(11_000);
    assert_eq!(h.engine.resources(), Resources::default());
    assert_eq!(h.engine.poll_timeout(), None);
    assert!(h.engine.destroy_bridge(h.now, relay).is_err());
}

#[test]
fn a_stall_is_reported_once_and_never_for_a_member_that_never_sent() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let quiet = h.join(bridge, Codec::pcmu());
    let talker = h.join(bridge, Codec::pcmu());
    h.tone(talker, 500.0);
    h.run_ms(1000);
    h.hush(talker);
    h.run_ms(30_000);
    let stalls: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            BridgeEvent::MediaStalled {
                session,
                silent_for,
                ..
            } => Some((*session, *silent_for)),
            _ => None,
        })
        .collect();
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    assert_eq!(stalls[0].0, talker);
    let silent = stalls[0].1;
    assert!(
        silent >= Duration::from_secs(10) && silent <= Duration::from_millis(10_020),
        "{silent:?}"
    );
    // Media again, then silence again: reported again, once.
    h.talk(talker, session_media::audio::SilenceSource);
    h.run_ms(200);
    h.hush(talker);
    h.run_ms(15_000);
    let stalls = h
        .events
        .iter()
        .filter(|e| matches!(e, BridgeEvent::MediaStalled { .. }))
        .count();
    assert_eq!(stalls, 2);
    assert!(h.engine.bridge_of(quiet).is_some(), "nobody is evicted");
}
