//! RTCP is terminated per leg: each leg reports on its own stream and what it received, every
//! 5 s, and reports from the far end are consumed, never forwarded.

mod common;

use std::time::Duration;

use common::Harness;
use session_bridge::{Codec, DropReason, Error, RtpAction, TechnologyChoice};
use session_media::rtcp::{self, NtpTime, ReportBlock, RtcpPacket};
use session_types::{Classify, ErrorKind};

#[allow(clippy::unwrap_used)] // a test helper: a report that does not parse fails the test
fn reports(h: &Harness, session: session_types::SessionId) -> Vec<Vec<RtcpPacket>> {
    h.rtcp
        .get(&session)
        .map(|all| {
            all.iter()
                .map(|d| rtcp::parse_compound(d).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_leg_reports_on_its_own_stream_every_five_seconds() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice_leg = h.leg(Codec::pcmu()).with_cname("alice@example.com");
    let alice = h.join_with(bridge, alice_leg);
    // Bob's stream was in use before the bridge: its SR counts go on from there.
    let mut bob_leg = h.leg(Codec::pcmu());
    bob_leg.stream.packets = 1000;
    bob_leg.stream.octets = 160_000;
    let bob = h.join_with(bridge, bob_leg);
    h.tone(alice, 500.0);
    h.run_ms(5000);
    assert_eq!(
        reports(&h, alice).len(),
        1,
        "the first report 5 s after joining"
    );
    h.run_ms(5000);

    // Bob's stream carried Alice's packets: an SR with Bob's SSRC and Bob's counts.
    let bob_reports = reports(&h, bob);
    assert_eq!(bob_reports.len(), 2, "one every 5 s");
    let bob_ssrc = h.initial[&bob].ssrc;
    match &bob_reports[1][..] {
        [
            RtcpPacket::SenderReport {
                ssrc,
                info,
                reports,
            },
            RtcpPacket::SourceDescription(cnames),
        ] => {
            assert_eq!(*ssrc, bob_ssrc);
            assert_eq!(info.packet_count, 1000 + 500);
            assert_eq!(info.octet_count, 160_000 + 500 * 160);
            // The SR's timestamp stands for the report's instant on Bob's sampling clock.
            let stream = h.engine.member_stats(bob).unwrap().stream;
            assert_eq!(info.rtp_timestamp, stream.timestamp_at(h.at(10_000)));
            assert!(reports.is_empty(), "Bob's peer sent nothing");
            assert_eq!(cnames, &[(bob_ssrc, "bridge@test".to_owned())]);
        }
        other => panic!("{other:?}"),
    }
    // Alice's stream carried nothing: an RR, on what Alice's peer sent.
    let alice_reports = reports(&h, alice);
    assert_eq!(alice_reports.len(), 2);
    match &alice_reports[1][..] {
        [
            RtcpPacket::ReceiverReport { ssrc, reports },
            RtcpPacket::SourceDescription(cnames),
        ] => {
            assert_eq!(*ssrc, h.initial[&alice].ssrc);
            let peer_ssrc = h.peers[&alice].sender.ssrc();
            assert_eq!(reports.len(), 1);
            assert_eq!(reports[0].ssrc, peer_ssrc);
            assert_eq!(reports[0].cumulative_lost, 0);
            assert_eq!(
                reports[0].highest_seq,
                u32::from(h.peers[&alice].sender.next_sequence()) - 1
            );
            assert_eq!(cnames[0].1, "alice@example.com");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.engine.member_stats(alice).unwrap().rtcp_sent, 2);
}

#[test]
fn reports_from_the_far_end_update_the_leg_and_go_no_further() {
    let mut h = Harness::new();
    let bridge = h.engine.create_bridge(TechnologyChoice::Auto);
    let alice = h.join(bridge, Codec::pcmu());
    let bob = h.join(bridge, Codec::pcmu());
    h.tone(alice, 500.0);
    h.run_ms(5000);
    // Bob's SR went out at 5 s; Bob's peer answers 100 ms later with an RR on Bob's stream,
    // 25 % lost, having held the SR for 50 ms.
    let sr = reports(&h, bob).pop().unwrap();
    let RtcpPacket::SenderReport { info, .. } = &sr[0] else {
        panic!("{sr:?}");
    };
    h.run_ms(100);
    let block = ReportBlock {
        ssrc: h.initial[&bob].ssrc,
        fraction_lost: 64,
        last_sr: info.ntp.middle32(),
        delay_since_last_sr: 65_536 / 20,
        ..ReportBlock::default()
    };
    let mut rr = Vec::new();
    rtcp::write_rr(&mut rr, 0xB0B0_B0B0, &[block]);
    rtcp::write_sdes_cname(&mut rr, 0xB0B0_B0B0, "bob-phone");
    let forwarded_before = h.stream(alice).len() + h.stream(bob).len();
    // With rtcp-mux it arrives on the RTP socket: absorbed, nothing to send.
    assert_eq!(h.feed(bob, &rr), RtpAction::Absorbed);
    assert!(h.engine.poll_transmit().is_none());
    assert_eq!(
        h.stream(alice).len() + h.stream(bob).len(),
        forwarded_before
    );
    let stats = h.engine.member_stats(bob).unwrap();
    assert_eq!(stats.remote_fraction_lost, Some(0.25));
    let rtt = stats.rtt.unwrap();
    assert!(
        rtt.abs_diff(Duration::from_millis(50)) <= Duration::from_millis(1),
        "{rtt:?}"
    );
    assert_eq!(stats.rtcp_received, 1);
    // An SR from the far end is remembered for our next report block (LSR/DLSR).
    let mut sr = Vec::new();
    let peer_ntp = NtpTime(0x1234_5678_9ABC_DEF0);
    let info = rtcp::SenderInfo {
        ntp: peer_ntp,
        ..Default::default()
    };
    rtcp::write_sr(&mut sr, h.peers[&alice].sender.ssrc(), &info, &[]);
    h.engine.handle_rtcp(h.now, alice, &sr).unwrap();
    h.run_ms(5000);
    let last = reports(&h, alice).pop().unwrap();
    match &last[0] {
        RtcpPacket::ReceiverReport { reports, .. } | RtcpPacket::SenderReport { reports, .. } => {
            assert_eq!(reports[0].last_sr, peer_ntp.middle32());
            assert!(reports[0].delay_since_last_sr > 0);
        }
        other => panic!("{other:?}"),
    }
    // Garbage on the RTCP socket is an error classified as malformed input.
    let err = h
        .engine
        .handle_rtcp(h.now, alice, &[0x80, 200, 0, 9])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedInput);
    assert!(matches!(
        h.engine
            .handle_rtcp(h.now, session_types::SessionId::new(), &rr),
        Err(Error::NotBridged(_))
    ));
    let mut short = rr.clone();
    short.truncate(10);
    assert_eq!(
        h.feed(bob, &short),
        RtpAction::Dropped(DropReason::Malformed)
    );
}
