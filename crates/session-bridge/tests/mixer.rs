//! Three or more members, or any setting, are mixed: mix-minus, mute, deaf, pair gains
//! (monitor, whisper, attenuation), DTMF reported and never mixed. Each member's peer sends a
//! tone of its own frequency, and what each peer hears is checked by frequency.

mod common;

use common::{Constant, Harness, assert_one_stream, power};
use session_bridge::{
    BridgeEvent, Codec, Gain, JoinSettings, RtpAction, Technology, TechnologyChoice,
};
use session_media::dtmf::DtmfEncoder;
use session_media::g711::G711Law;
use session_types::SessionId;

/// The frequencies of up to four talkers.
const HZ: [f64; 4] = [500.0, 1100.0, 1700.0, 2300.0];

/// Whether `samples` hold the tone at `hz`. A 6000-peak tone has a power of about 9e6; what
/// is left at a frequency nobody sends (G.711 quantisation noise and intermodulation of the
/// other tones) stays below 1e4, 30 dB down.
fn hears(samples: &[i16], hz: f64) -> bool {
    power(samples, hz) > 1e6
}

fn silent_at(samples: &[i16], hz: f64) -> bool {
    power(samples, hz) < 1e4
}

/// A mixing bridge of three members with tones: (harness, members, laws).
fn conference(laws: [G711Law; 3]) -> (Harness, [SessionId; 3]) {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let members = laws.map(|law| {
        let codec = match law {
            G711Law::Alaw => Codec::pcma(),
            _ => Codec::pcmu(),
        };
        h.join(bridge, codec)
    });
    for (i, m) in members.iter().enumerate() {
        h.tone(*m, HZ[i]);
    }
    (h, members)
}

#[test]
fn three_members_hear_the_other_two_and_not_themselves() {
    let laws = [G711Law::Ulaw, G711Law::Alaw, G711Law::Ulaw];
    let (mut h, members) = conference(laws);
    let bridge = h.engine.bridge_of(members[0]).unwrap();
    assert_eq!(h.engine.technology(bridge), Some(Technology::Mixer));
    let changes: Vec<_> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            BridgeEvent::TechnologyChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (Technology::Relay, Technology::TranscodingRelay),
            (Technology::TranscodingRelay, Technology::Mixer)
        ]
    );
    h.run_ms(1000);
    for (i, m) in members.iter().enumerate() {
        let heard = h.heard(*m, laws[i], 25);
        for (j, hz) in HZ.iter().take(3).enumerate() {
            if i == j {
                assert!(
                    silent_at(&heard, *hz),
                    "member {i} hears itself: {}",
                    power(&heard, *hz)
                );
            } else {
                assert!(hears(&heard, *hz), "member {i} does not hear member {j}");
            }
        }
        // One packet per tick on the member's own stream, in its own codec.
        assert_eq!(h.stream(*m).len(), 50);
        assert_one_stream(h.stream(*m), h.initial[m]);
        let pt = if laws[i] == G711Law::Alaw { 8 } else { 0 };
        assert!(h.stream(*m).iter().all(|o| o.header.payload_type == pt));
    }
    let stats = h.engine.stats(bridge).unwrap();
    assert_eq!((stats.mixed_ticks, stats.forwarded), (50, 0));
    let jitter = h.engine.member_stats(members[0]).unwrap().jitter;
    assert_eq!(jitter.received, 50);
    assert_eq!((jitter.lost, jitter.late), (0, 0));
}

#[test]
fn a_muted_member_is_not_heard_and_a_deaf_one_hears_nothing() {
    let laws = [G711Law::Ulaw; 3];
    let (mut h, [a, b, c]) = conference(laws);
    h.engine.set_muted(h.now, a, true).unwrap();
    h.engine.set_deaf(h.now, b, true).unwrap();
    h.run_ms(600);
    let heard_a = h.heard(a, G711Law::Ulaw, 20);
    assert!(
        hears(&heard_a, HZ[1]) && hears(&heard_a, HZ[2]),
        "muted still hears"
    );
    assert!(
        h.heard(b, G711Law::Ulaw, 20).iter().all(|&s| s == 0),
        "deaf hears silence"
    );
    let heard_c = h.heard(c, G711Law::Ulaw, 20);
    assert!(silent_at(&heard_c, HZ[0]), "nobody hears the muted member");
    assert!(hears(&heard_c, HZ[1]), "a deaf member is still heard");
    let stats = h.engine.member_stats(a).unwrap();
    assert!(stats.muted && !stats.deaf);
    // Unmuted, A is heard again; the deaf member's stream kept going all along.
    h.engine.set_muted(h.now, a, false).unwrap();
    h.run_ms(400);
    assert!(hears(&h.heard(c, G711Law::Ulaw, 10), HZ[0]));
    assert_one_stream(h.stream(b), h.initial[&b]);
}

#[test]
fn monitor_the_supervisor_hears_everyone_and_nobody_hears_the_supervisor() {
    let laws = [G711Law::Ulaw; 3];
    let (mut h, [a, b, supervisor]) = conference(laws);
    for listener in [a, b] {
        h.engine
            .set_gain(h.now, listener, supervisor, Gain::ZERO)
            .unwrap();
    }
    assert_eq!(h.engine.gain(a, supervisor), Some(Gain::ZERO));
    assert_eq!(h.engine.gain(supervisor, a), Some(Gain::UNITY));
    h.run_ms(600);
    let s = h.heard(supervisor, G711Law::Ulaw, 20);
    assert!(hears(&s, HZ[0]) && hears(&s, HZ[1]));
    for (listener, other) in [(a, HZ[1]), (b, HZ[0])] {
        let heard = h.heard(listener, G711Law::Ulaw, 20);
        assert!(hears(&heard, other), "the members hear each other");
        assert!(silent_at(&heard, HZ[2]), "nobody hears the supervisor");
    }
}

#[test]
fn whisper_only_one_member_hears_the_supervisor() {
    let laws = [G711Law::Ulaw; 3];
    let (mut h, [agent, customer, supervisor]) = conference(laws);
    h.engine
        .set_gain(h.now, customer, supervisor, Gain::ZERO)
        .unwrap();
    h.run_ms(600);
    let agent_hears = h.heard(agent, G711Law::Ulaw, 20);
    assert!(hears(&agent_hears, HZ[1]) && hears(&agent_hears, HZ[2]));
    let customer_hears = h.heard(customer, G711Law::Ulaw, 20);
    assert!(hears(&customer_hears, HZ[0]));
    assert!(
        silent_at(&customer_hears, HZ[2]),
        "the customer does not hear the whisper"
    );
    let supervisor_hears = h.heard(supervisor, G711Law::Ulaw, 20);
    assert!(hears(&supervisor_hears, HZ[0]) && hears(&supervisor_hears, HZ[1]));
}

#[test]
fn a_pair_gain_makes_two_members_mix_and_scales_one_direction() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let a = h.join(bridge, Codec::pcmu());
    let b = h.join(bridge, Codec::pcmu());
    assert_eq!(h.engine.technology(bridge), Some(Technology::Relay));
    h.take_events();
    h.engine
        .set_gain(h.now, a, b, Gain::from_ratio(0.5))
        .unwrap();
    assert_eq!(h.engine.technology(bridge), Some(Technology::Mixer));
    h.talk(a, Constant(8000));
    h.talk(b, Constant(8000));
    h.run_ms(400);
    let level = |s: &[i16]| s.iter().map(|&x| i32::from(x)).sum::<i32>() / s.len() as i32;
    let a_hears = level(&h.heard(a, G711Law::Ulaw, 5));
    let b_hears = level(&h.heard(b, G711Law::Ulaw, 5));
    // 8000 through µ-law is 7932; half of it, 3966, comes back within µ-law's error there
    // (it sits on a segment boundary, where the step is 256).
    assert_eq!(b_hears, 7932);
    assert!((a_hears - 3966).abs() <= 3966 / 16 + 8, "{a_hears}");
    // Back to unity: back to a relay.
    h.engine.set_gain(h.now, a, b, Gain::UNITY).unwrap();
    assert_eq!(h.engine.technology(bridge), Some(Technology::Relay));
    h.drain();
    let changes: Vec<_> = h
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, BridgeEvent::TechnologyChanged { .. }))
        .collect();
    assert_eq!(changes.len(), 2);
    h.run_ms(200);
    assert_one_stream(h.stream(a), h.initial[&a]);
    assert_one_stream(h.stream(b), h.initial[&b]);
}

#[test]
fn dtmf_in_a_mixer_is_reported_and_never_mixed() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let leg = h.leg(Codec::pcmu()).with_telephone_event(101);
    let a = h.join_with(bridge, leg);
    let b = h.join(bridge, Codec::pcmu());
    let c = h.join(bridge, Codec::pcma());
    h.run_ms(100);
    let peer = &mut h.peers.get_mut(&a).unwrap().sender;
    let start = peer.timestamp();
    let packets: Vec<Vec<u8>> = DtmfEncoder::new('9', 800, 160)
        .unwrap()
        .map(|p| {
            peer.event(101, &p.payload, p.marker, start)
                .unwrap()
                .to_vec()
        })
        .collect();
    for packet in &packets {
        h.run_ms(20);
        assert_eq!(h.feed(a, packet), RtpAction::Absorbed);
    }
    h.run_ms(200);
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        BridgeEvent::DtmfReceived { session, digit: '9', .. } if *session == a
    )));
    assert!(h.heard(b, G711Law::Ulaw, 20).iter().all(|&s| s == 0));
    // A-law has no code for zero: its silence decodes to ±8.
    assert!(h.heard(c, G711Law::Alaw, 20).iter().all(|&s| s.abs() <= 8));
    assert_eq!(h.engine.member_stats(a).unwrap().dtmf_digits, 1);
}

#[test]
fn pair_gains_go_with_the_members() {
    let (mut h, [a, b, c]) = conference([G711Law::Ulaw; 3]);
    h.engine.set_gain(h.now, a, c, Gain::ZERO).unwrap();
    h.engine.set_gain(h.now, c, a, Gain::from_db(-6.0)).unwrap();
    let _ = h.engine.remove_member(h.now, c).unwrap();
    assert_eq!(h.engine.gain(a, c), None);
    let leg = h.leg(Codec::pcmu());
    let session = h.join_with(h.engine.bridge_of(a).unwrap(), leg);
    assert_eq!(h.engine.gain(a, session), Some(Gain::UNITY));
    assert_eq!(h.engine.gain(a, b), Some(Gain::UNITY));
    assert!(h.engine.set_gain(h.now, a, a, Gain::ZERO).is_err());
}

#[test]
fn a_conference_member_whose_peer_holds_gets_no_packets_and_is_still_heard() {
    let laws = [G711Law::Ulaw; 3];
    let (mut h, [a, b, c]) = conference(laws);
    h.run_ms(200);
    h.engine.set_sending(b, false).unwrap();
    let to_b = h.stream(b).len();
    h.run_ms(400);
    assert_eq!(h.stream(b).len(), to_b, "no mix sent to the holding peer");
    assert!(
        hears(&h.heard(c, G711Law::Ulaw, 10), HZ[1]),
        "b is still heard"
    );
    assert!(hears(&h.heard(a, G711Law::Ulaw, 10), HZ[1]));
    h.engine.set_sending(b, true).unwrap();
    h.run_ms(200);
    assert!(h.stream(b).len() >= to_b + 9, "the mix resumes");
    assert!(hears(&h.heard(b, G711Law::Ulaw, 5), HZ[0]));
}

/// Settings given at the join are in force from the first mixed tick: a monitor is never in
/// anyone's mix, a whisperer only in its listener's.
#[test]
fn members_joining_with_settings_are_never_heard_where_they_should_not_be() {
    let laws = [G711Law::Ulaw; 3];
    let (mut h, [a, b, c]) = conference(laws);
    let bridge = h.engine.bridge_of(a).unwrap();
    h.run_ms(200);
    let start = [a, b, c].map(|m| h.stream(m).len());
    let leg = h.leg(Codec::pcmu());
    let monitor = h.join_with_settings(bridge, leg, &JoinSettings::monitor());
    h.tone(monitor, HZ[3]);
    let leg = h.leg(Codec::pcmu());
    let coach = h.join_with_settings(bridge, leg, &JoinSettings::whisper_to(c));
    h.tone(coach, 3100.0);
    h.run_ms(600);
    // Every packet each old member got since the joins, from the very first.
    let since = |m: SessionId, i: usize| h.heard(m, G711Law::Ulaw, h.stream(m).len() - start[i]);
    for (i, m) in [a, b].into_iter().enumerate() {
        let heard = since(m, i);
        assert!(silent_at(&heard, HZ[3]), "member {i} heard the monitor");
        assert!(silent_at(&heard, 3100.0), "member {i} heard the coach");
    }
    let at_c = since(c, 2);
    assert!(silent_at(&at_c, HZ[3]), "c heard the monitor");
    assert!(hears(&at_c, 3100.0), "c hears the coach");
    let at_monitor = h.heard(monitor, G711Law::Ulaw, 20);
    assert!(
        hears(&at_monitor, HZ[0]) && hears(&at_monitor, HZ[2]),
        "the monitor hears the room"
    );
    assert!(
        silent_at(&at_monitor, 3100.0),
        "and not the coach, who whispers to c only"
    );
    // A setting naming a member of no bridge refuses the join; the leg comes back.
    let leg = h.leg(Codec::pcmu());
    let refused = h.engine.add_member_with(
        h.now,
        bridge,
        SessionId::new(),
        leg,
        &JoinSettings::whisper_to(SessionId::new()),
    );
    assert!(refused.is_err());
}
