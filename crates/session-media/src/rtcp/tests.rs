//! RTCP tests: wire round trips, statistics on simulated streams, RTT, MOS.

use super::*;

fn block() -> ReportBlock {
    ReportBlock {
        ssrc: 0xDEAD_BEEF,
        fraction_lost: 64,
        cumulative_lost: -3,
        highest_seq: 0x0001_0005,
        jitter: 77,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 65_536,
    }
}

#[test]
fn sr_rr_sdes_bye_round_trip() {
    let mut buf = Vec::new();
    let info = SenderInfo {
        ntp: NtpTime(0x0123_4567_89AB_CDEF),
        rtp_timestamp: 160_000,
        packet_count: 1000,
        octet_count: 160_000,
    };
    write_sr(&mut buf, 1, &info, &[block()]);
    write_rr(&mut buf, 2, &[block(), ReportBlock::default()]);
    write_sdes_cname(&mut buf, 1, "user@192.0.2.1");
    write_bye(&mut buf, &[1, 2], Some("hangup"));
    assert_eq!(buf.len() % 4, 0);
    let packets = parse_compound(&buf).unwrap();
    assert_eq!(
        packets,
        vec![
            RtcpPacket::SenderReport {
                ssrc: 1,
                info,
                reports: vec![block()]
            },
            RtcpPacket::ReceiverReport {
                ssrc: 2,
                reports: vec![block(), ReportBlock::default()]
            },
            RtcpPacket::SourceDescription(vec![(1, "user@192.0.2.1".to_owned())]),
            RtcpPacket::Bye {
                ssrcs: vec![1, 2],
                reason: Some("hangup".to_owned())
            },
        ]
    );
    assert!(is_rtcp(&buf));
}

#[test]
fn wire_layout_of_an_rr() {
    let mut buf = Vec::new();
    write_rr(&mut buf, 0x0102_0304, &[block()]);
    // V=2, RC=1, PT=201, length = 7 words after the first.
    assert_eq!(&buf[..8], &[0x81, 201, 0, 7, 1, 2, 3, 4]);
    // fraction 64, cumulative -3 as 24-bit two's complement.
    assert_eq!(&buf[12..16], &[64, 0xFF, 0xFF, 0xFD]);
}

#[test]
fn malformed_rtcp_is_an_error_not_a_panic() {
    let mut good = Vec::new();
    write_sr(&mut good, 1, &SenderInfo::default(), &[block()]);
    for cut in 0..good.len() {
        let _ = parse_compound(&good[..cut]);
    }
    assert!(parse_compound(&[]).is_err());
    assert!(parse_compound(&[0x40, 200, 0, 0]).is_err(), "version 1");
    assert!(
        parse_compound(&[0x81, 201, 0, 9, 0, 0, 0, 1]).is_err(),
        "length too long"
    );
    // Report count larger than the body.
    assert!(parse_compound(&[0x85, 201, 0, 1, 0, 0, 0, 1]).is_err());
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..20_000 {
        let n = rng.usize(0..80);
        let mut data: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        if let Some(b) = data.first_mut() {
            *b = 0x80 | (*b & 0x3F);
        }
        let _ = parse_compound(&data);
    }
}

#[test]
fn reception_stats_loss_jitter_and_wrap() {
    let start = Instant::now();
    let mut stats = ReceptionStats::new(8000);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut sent = 0u32;
    let mut lost = 0u32;
    // 1000 packets starting just before the sequence wrap; 10 % lost; arrival jitter 0..10 ms.
    for i in 0..1000u32 {
        sent += 1;
        if rng.u32(0..10) == 0 {
            lost += 1;
            continue;
        }
        let seq = 65_000u16.wrapping_add(i as u16);
        let ts = (u32::MAX - 50_000).wrapping_add(i * 160); // also wraps
        let at = start + Duration::from_millis(u64::from(i) * 20 + rng.u64(0..10));
        stats.on_rtp(at, 0xAB, seq, ts);
    }
    let end = start + Duration::from_secs(21);
    let b = stats.report_block(end).unwrap();
    assert_eq!(b.highest_seq, 65_000 + 999, "extended across the wrap");
    assert_eq!(b.cumulative_lost as u32, lost);
    let fraction = f64::from(b.fraction_lost) / 256.0;
    assert!(
        (fraction - f64::from(lost) / f64::from(sent)).abs() < 0.01,
        "{fraction}"
    );
    // Uniform 0..10 ms jitter: mean |D| is about 3.3 ms = 27 units; the estimator lands near.
    assert!((15..45).contains(&b.jitter), "jitter {}", b.jitter);
    // A second report with no new packets: fraction 0, cumulative unchanged.
    let again = stats.report_block(end).unwrap();
    assert_eq!(again.fraction_lost, 0);
    assert_eq!(again.cumulative_lost, b.cumulative_lost);
}

#[test]
fn reordering_and_duplicates_do_not_count_as_loss() {
    let start = Instant::now();
    let mut stats = ReceptionStats::new(8000);
    for seq in [1u16, 3, 2, 4, 4, 5] {
        stats.on_rtp(start, 7, seq, u32::from(seq) * 160);
    }
    assert_eq!(stats.extended_highest(), 5);
    assert_eq!(stats.cumulative_lost(), -1, "one duplicate");
    // A new SSRC starts over.
    stats.on_rtp(start, 8, 100, 0);
    assert_eq!(stats.received(), 1);
}

#[test]
fn round_trip_from_lsr_and_dlsr() {
    let start = Instant::now();
    let clock = NtpClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000), start);
    // We send an SR at t=0; the peer holds it 250 ms, network delay 40 ms each way.
    let sr_ntp = clock.at(start);
    let mut peer = ReceptionStats::new(8000);
    peer.on_rtp(start, 1, 1, 0);
    peer.on_sender_report(start + Duration::from_millis(40), sr_ntp);
    let block = peer
        .report_block(start + Duration::from_millis(290))
        .unwrap();
    assert_eq!(block.last_sr, sr_ntp.middle32());
    let rtt = block
        .round_trip(clock.at(start + Duration::from_millis(330)))
        .unwrap();
    assert!((79..=81).contains(&rtt.as_millis()), "{rtt:?}");
    assert_eq!(ReportBlock::default().round_trip(sr_ntp), None);
}

#[test]
fn ntp_time_of_unix_epoch() {
    assert_eq!(NtpTime::from_system_time(UNIX_EPOCH).0 >> 32, 2_208_988_800);
    let half = NtpTime::from_system_time(UNIX_EPOCH + Duration::from_millis(500));
    assert_eq!(half.0 as u32, 1 << 31);
}

#[test]
fn mos_falls_with_loss_jitter_and_delay() {
    let perfect = mos_estimate(0.0, 0.0, None);
    assert!(perfect > 4.3 && perfect <= 4.5, "{perfect}");
    let lossy = mos_estimate(0.05, 0.0, None);
    let very_lossy = mos_estimate(0.20, 0.0, None);
    assert!(
        perfect > lossy && lossy > very_lossy,
        "{perfect} {lossy} {very_lossy}"
    );
    assert!(mos_estimate(0.0, 80.0, None) < perfect);
    let far = mos_estimate(0.0, 0.0, Some(Duration::from_millis(600)));
    assert!(far < 4.0, "{far}");
    assert!(mos_estimate(1.0, 500.0, Some(Duration::from_secs(5))) >= 1.0);
}

#[test]
fn a_dlsr_rounded_up_to_the_millisecond_reads_as_zero_rtt_not_as_none() {
    let start = Instant::now();
    let clock = NtpClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000), start);
    let sr_ntp = clock.at(start);
    let arrival = clock.at(start + Duration::from_micros(300));
    let at = |dlsr_ms: u32| ReportBlock {
        last_sr: sr_ntp.middle32(),
        delay_since_last_sr: dlsr_ms * 65_536 / 1_000,
        ..ReportBlock::default()
    };
    // The peer held our SR 0.2 ms and wrote 1 ms: 0.7 ms "below zero".
    assert_eq!(at(1).round_trip(arrival), Some(Duration::ZERO));
    // 50 ms below zero is a broken clock, not rounding.
    assert_eq!(at(50).round_trip(arrival), None);
    // Held 0 ms, written 0: the 0.3 ms round trip itself.
    let rtt = at(0).round_trip(arrival).unwrap();
    assert!(rtt <= Duration::from_micros(400), "{rtt:?}");
}
