//! Loopback tests of the RTP endpoint: SDP negotiation, tone, DTMF, latching, RTCP,
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
//! inactivity, garbage input.

use std::time::Duration;

use session_media::audio::{AudioSource, ToneSource, goertzel_power};
use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
use session_media::rtcp::RtcpPacket;
use session_media::sdp::negotiate::{MediaConfig, OfferAnswer};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

async fn pair(mux: bool) -> (RtpEndpoint, RtpEndpoint) {
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut a = RtpEndpoint::bind(lo, RtcpPort::muxed_if(mux), EndpointConfig::default())
        .await
        .unwrap();
    let mut b = RtpEndpoint::bind(lo, RtcpPort::muxed_if(mux), EndpointConfig::default())
        .await
        .unwrap();
    let config = MediaConfig::default().rtcp_mux(mux);
    let mut oa_a = OfferAnswer::new(config.clone(), "127.0.0.1".parse().unwrap());
    let mut oa_b = OfferAnswer::new(config, "127.0.0.1".parse().unwrap());
    let offer = oa_a.create_offer(a.local_addr().unwrap().port());
    let answered = oa_b
        .answer_offer(
            &offer.to_string().parse().unwrap(),
            b.local_addr().unwrap().port(),
        )
        .unwrap();
    let agreed = oa_a
        .process_answer(&answered.answer.to_string().parse().unwrap())
        .unwrap();
    assert_eq!(agreed.media.rtcp_mux, mux);
    a.configure(&agreed.media).unwrap();
    b.configure(&answered.media).unwrap();
    (a, b)
}

async fn next_audio(ep: &mut RtpEndpoint) -> session_media::AudioFrame {
    loop {
        match timeout(WAIT, ep.recv()).await.expect("timed out").unwrap() {
            Received::Audio { frame, .. } => return frame,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn tone_and_dtmf_over_negotiated_stream() {
    for mux in [false, true] {
        let (mut a, mut b) = pair(mux).await;
        let mut tone = ToneSource::new(1000.0, 8000);
        for _ in 0..25 {
            a.send_frame(&tone.next_frame().unwrap()).await.unwrap();
        }
        let mut samples = Vec::new();
        for _ in 0..25 {
            samples.extend_from_slice(next_audio(&mut b).await.samples());
        }
        let p1000 = goertzel_power(&samples, 1000.0);
        assert!(
            p1000 > 100.0 * goertzel_power(&samples, 700.0),
            "tone came through"
        );

        a.send_dtmf('9', Duration::from_millis(100)).await.unwrap();
        let digit = loop {
            if let Received::Dtmf(d) = timeout(WAIT, b.recv()).await.unwrap().unwrap() {
                break d;
            }
        };
        assert_eq!((digit.digit, digit.duration, digit.ended), ('9', 800, true));

        // Audio after the event starts a new talk-spurt with a timestamp past the event.
        a.send_frame(&tone.next_frame().unwrap()).await.unwrap();
        let marker = loop {
            if let Received::Audio { marker, .. } = timeout(WAIT, b.recv()).await.unwrap().unwrap()
            {
                break marker;
            }
        };
        assert!(marker);
        assert_eq!(b.stats().packets_received, 25 + 7 + 1);
        assert_eq!(b.stats().packets_lost, 0);
    }
}

#[tokio::test]
async fn symmetric_rtp_latches_and_drops_foreign_packets() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut a = RtpEndpoint::bind(lo, RtcpPort::Muxed, EndpointConfig::default())
        .await
        .unwrap();
    let mut b = RtpEndpoint::bind(lo, RtcpPort::Muxed, EndpointConfig::default())
        .await
        .unwrap();
    // B's SDP pointed at a wrong port (a NAT rewrote it); A knows B's real address.
    let wrong = "127.0.0.1:9".parse().unwrap();
    b.set_remote(wrong, wrong);
    let b_addr = b.local_addr().unwrap();
    a.set_remote(b_addr, b_addr);
    a.send_frame(&session_media::AudioFrame::from_samples(&[1000; 160]))
        .await
        .unwrap();
    next_audio(&mut b).await;
    assert_eq!(b.remote_rtp(), Some(a.local_addr().unwrap()), "latched");
    b.send_frame(&session_media::AudioFrame::silence())
        .await
        .unwrap();
    next_audio(&mut a).await;

    // A third party is ignored after latching.
    let intruder = tokio::net::UdpSocket::bind(lo).await.unwrap();
    let mut sender = session_media::rtp::RtpSender::new(66, 0, 0);
    intruder
        .send_to(sender.audio(0, &[0xFF; 160], 160).unwrap(), b_addr)
        .await
        .unwrap();
    a.send_frame(&session_media::AudioFrame::silence())
        .await
        .unwrap();
    next_audio(&mut b).await;
    assert_eq!(b.counters().foreign, 1);
}

#[tokio::test]
async fn garbage_is_counted_and_skipped() {
    let (mut a, mut b) = pair(true).await;
    let b_addr = b.local_addr().unwrap();
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for datagram in [
        &[][..],
        &[0x80][..],
        &[0x40; 20][..],
        &[0x80, 200, 0, 50, 1][..],
    ] {
        junk.send_to(datagram, b_addr).await.unwrap();
    }
    // Garbage does not latch: the real peer's packet still gets through afterwards.
    a.send_frame(&session_media::AudioFrame::silence())
        .await
        .unwrap();
    next_audio(&mut b).await;
    assert!(b.counters().malformed >= 3, "{:?}", b.counters());
}

#[tokio::test]
async fn rtcp_reports_give_round_trip_and_quality() {
    let (mut a, mut b) = pair(false).await;
    for _ in 0..10 {
        a.send_frame(&session_media::AudioFrame::silence())
            .await
            .unwrap();
        b.send_frame(&session_media::AudioFrame::silence())
            .await
            .unwrap();
    }
    for _ in 0..10 {
        next_audio(&mut b).await;
        next_audio(&mut a).await;
    }
    a.send_report().await.unwrap();
    let packets = loop {
        if let Received::Rtcp(p) = timeout(WAIT, b.recv()).await.unwrap().unwrap() {
            break p;
        }
    };
    assert!(
        matches!(&packets[0], RtcpPacket::SenderReport { info, .. } if info.packet_count == 10)
    );
    assert!(matches!(&packets[1], RtcpPacket::SourceDescription(c) if c[0].0 == a.ssrc()));
    b.send_report().await.unwrap();
    loop {
        if let Received::Rtcp(_) = timeout(WAIT, a.recv()).await.unwrap().unwrap() {
            break;
        }
    }
    let stats = a.stats();
    let rtt = stats.rtt.expect("RTT from LSR/DLSR");
    assert!(rtt < Duration::from_millis(500), "{rtt:?}");
    assert_eq!(
        (
            stats.packets_sent,
            stats.packets_received,
            stats.packets_lost
        ),
        (10, 10, 0)
    );
    assert!(stats.mos.is_some_and(|mos| mos > 4.0), "{:?}", stats.mos);

    b.send_bye(Some("done")).await.unwrap();
    let bye = loop {
        if let Received::Rtcp(p) = timeout(WAIT, a.recv()).await.unwrap().unwrap() {
            break p;
        }
    };
    assert!(
        bye.iter()
            .any(|p| matches!(p, RtcpPacket::Bye { reason: Some(r), .. } if r == "done"))
    );
}

#[tokio::test(start_paused = true)]
async fn inactivity_is_reported() {
    let lo = "127.0.0.1:0".parse().unwrap();
    let config = EndpointConfig::default().inactivity_timeout(Duration::from_secs(2));
    let mut ep = RtpEndpoint::bind(lo, RtcpPort::Muxed, config)
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    match ep.recv().await.unwrap() {
        Received::Inactive(d) => assert_eq!(d, Duration::from_secs(2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2), "virtual time");
    // It repeats each period.
    assert!(matches!(ep.recv().await.unwrap(), Received::Inactive(_)));
}

#[tokio::test]
async fn no_quality_is_claimed_before_anything_was_received() {
    let (mut a, b) = pair(true).await;
    a.send_frame(&session_media::AudioFrame::silence())
        .await
        .unwrap();
    let stats = b.stats();
    assert_eq!(stats.packets_received, 0);
    assert_eq!(stats.mos, None, "no MOS without audio, not a perfect score");
    assert_eq!(a.stats().mos, None, "sending alone measures nothing");
}

/// The next audio packet's timestamp and marker bit.
async fn next_stamp(ep: &mut RtpEndpoint) -> (u32, bool) {
    loop {
        match timeout(WAIT, ep.recv()).await.expect("timed out").unwrap() {
            Received::Audio {
                timestamp, marker, ..
            } => return (timestamp, marker),
            _ => continue,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_timestamp_keeps_time_across_a_pause_in_sending() {
    // RFC 3550 §5.1: a held call that resumes after 2.1 s stamps its next packet 2.1 s
    // later, or the far end counts the whole pause as jitter.
    let (mut a, mut b) = pair(true).await;
    let frame = session_media::AudioFrame::silence();
    a.send_frame(&frame).await.unwrap();
    tokio::time::advance(Duration::from_millis(20)).await;
    a.send_frame(&frame).await.unwrap();
    tokio::time::advance(Duration::from_millis(2100)).await;
    a.send_frame(&frame).await.unwrap();
    let stamps = [
        next_stamp(&mut b).await,
        next_stamp(&mut b).await,
        next_stamp(&mut b).await,
    ];
    assert_eq!(stamps[1].0.wrapping_sub(stamps[0].0), 160);
    assert_eq!(
        stamps[2].0.wrapping_sub(stamps[1].0),
        2100 * 8,
        "the timestamp moved with the sampling clock"
    );
    assert_eq!(
        stamps.map(|(_, marker)| marker),
        [true, false, true],
        "the first packet after the pause starts a talk-spurt"
    );
}

#[tokio::test]
async fn ports_come_from_the_pool_and_go_back() {
    let pool = session_resources::PortPool::new(47_000..47_100).unwrap();
    let lo = "127.0.0.1".parse().unwrap();
    // Another program holds the first pair's RTP port: the endpoint moves on to the next pair.
    let squatter = std::net::UdpSocket::bind("127.0.0.1:47000");
    let a = RtpEndpoint::bind_from_pool(&pool, lo, RtcpPort::NextPort, EndpointConfig::default())
        .await
        .unwrap();
    let b = RtpEndpoint::bind_from_pool(&pool, lo, RtcpPort::Muxed, EndpointConfig::default())
        .await
        .unwrap();
    let a_port = a.local_addr().unwrap().port();
    assert_eq!(a_port % 2, 0);
    assert_eq!(a.local_rtcp_addr().unwrap().port(), a_port + 1);
    if squatter.is_ok() {
        assert_ne!(a_port, 47_000);
    }
    assert_eq!(a.lease().map(|l| l.rtp()), Some(a_port));
    assert_eq!(pool.in_use(), 2);
    drop(a);
    drop(b);
    assert_eq!(pool.in_use(), 0, "every lease released");

    let tiny = session_resources::PortPool::new(47_200..47_202).unwrap();
    let _only = RtpEndpoint::bind_from_pool(&tiny, lo, RtcpPort::Muxed, EndpointConfig::default())
        .await
        .unwrap();
    let err = RtpEndpoint::bind_from_pool(&tiny, lo, RtcpPort::Muxed, EndpointConfig::default())
        .await
        .unwrap_err();
    use session_types::Classify;
    assert_eq!(err.kind(), session_types::ErrorKind::ResourceExhausted);
}
