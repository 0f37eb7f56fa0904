//! A leg handed over and back: `RtpEndpoint::into_leg` → `EndpointParts` →
//! `RtpEndpoint::from_parts` continues the same stream, keeps the port lease and the latching
//! and reception state. Loopback sockets, tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::time::Duration;

use session_media::AudioFrame;
use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
use session_media::rtp::{RtpHeader, RtpSender, parse};
use session_resources::PortPool;
use tokio::net::UdpSocket;
use tokio::time::{advance, timeout};

const WAIT: Duration = Duration::from_secs(5);
const FRAME: Duration = Duration::from_millis(20);

/// The next RTP header that arrives on `socket`.
async fn next_header(socket: &UdpSocket) -> RtpHeader {
    let mut buf = [0u8; 1500];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("timed out")
        .unwrap();
    parse(&buf[..len]).unwrap().0
}

#[tokio::test(start_paused = true)]
async fn a_rebuilt_endpoint_continues_the_stream_and_keeps_its_lease() {
    let pool = PortPool::new(47_400..47_500).unwrap();
    let lo = "127.0.0.1".parse().unwrap();
    let mut ep =
        RtpEndpoint::bind_from_pool(&pool, lo, RtcpPort::NextPort, EndpointConfig::default())
            .await
            .unwrap();
    let far = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let far_addr = far.local_addr().unwrap();
    ep.set_remote(far_addr, far_addr);
    let local = ep.local_addr().unwrap();
    let frame = AudioFrame::from_samples(&[1000; 160]);

    for _ in 0..5 {
        ep.send_frame(&frame).await.unwrap();
        advance(FRAME).await;
    }
    let before = ep.sender_state();
    let parts = ep.into_leg();
    assert_eq!(
        pool.in_use(),
        1,
        "the ports stay leased while the leg is away"
    );
    assert_eq!(parts.lease.as_ref().map(|l| l.rtp()), Some(local.port()));
    assert_eq!(parts.sender, before);
    assert_eq!((parts.sender.packets, parts.sender.octets), (5, 800));
    assert_eq!(parts.remote_rtp, Some(far_addr));
    assert!(parts.rtcp.is_some());

    let mut ep = RtpEndpoint::from_parts(parts);
    assert_eq!(ep.local_addr().unwrap(), local, "the same sockets");
    assert_eq!(ep.sender_state(), before, "the exact stream state");
    for _ in 0..5 {
        ep.send_frame(&frame).await.unwrap();
        advance(FRAME).await;
    }
    // A pause of one second, then one more frame: the timestamp follows the clock.
    advance(Duration::from_secs(1)).await;
    ep.send_frame(&frame).await.unwrap();

    let mut headers = Vec::new();
    for _ in 0..11 {
        headers.push(next_header(&far).await);
    }
    let first = headers[0];
    assert!(headers.iter().all(|h| h.ssrc == first.ssrc), "one SSRC");
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(
            h.sequence,
            first.sequence.wrapping_add(i as u16),
            "contiguous sequence numbers"
        );
    }
    for (i, h) in headers.iter().take(10).enumerate() {
        assert_eq!(
            h.timestamp,
            first.timestamp.wrapping_add(160 * i as u32),
            "timestamps on the sampling clock across the hand-over"
        );
        assert_eq!(h.marker, i == 0, "no talk-spurt at the hand-over");
    }
    assert_eq!(
        headers[10].timestamp.wrapping_sub(headers[9].timestamp),
        160 + 1000 * 8,
        "the pause moved the timestamp with the clock"
    );
    assert!(headers[10].marker);
    let stats = ep.stats();
    assert_eq!(
        (stats.packets_sent, stats.octets_sent),
        (11, 11 * 160),
        "the SR counts cover the SSRC's whole life"
    );
    drop(ep);
    assert_eq!(
        pool.in_use(),
        0,
        "dropping the rebuilt endpoint releases the lease"
    );
}

#[tokio::test]
async fn latching_reception_and_codec_survive_the_round_trip() {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut ep = RtpEndpoint::bind(lo, RtcpPort::Muxed, EndpointConfig::default())
        .await
        .unwrap();
    let ep_addr = ep.local_addr().unwrap();
    let peer = UdpSocket::bind(lo).await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut peer_stream = RtpSender::new(0xCAFE, 10, 0);
    for _ in 0..3 {
        let packet = peer_stream.audio(8, &[0xD5; 160], 160).unwrap();
        peer.send_to(packet, ep_addr).await.unwrap();
    }
    for _ in 0..3 {
        match timeout(WAIT, ep.recv()).await.unwrap().unwrap() {
            Received::Audio { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ep.remote_rtp(), Some(peer_addr), "latched");

    let mut parts = ep.into_leg();
    assert_eq!(parts.latched, Some(peer_addr));
    assert_eq!(
        parts.remote_rtcp,
        Some(peer_addr),
        "rtcp-mux: RTCP goes there too"
    );
    assert!(parts.rtcp.is_none());
    assert_eq!(parts.reception.received(), 3);
    assert_eq!(parts.reception.ssrc(), Some(0xCAFE));
    let intruder: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(!parts.accept_rtp_from(intruder), "foreign after latching");
    assert!(parts.accept_rtp_from(peer_addr));
    parts.counters.foreign += 1;

    let mut ep = RtpEndpoint::from_parts(parts);
    assert_eq!(ep.counters().foreign, 1);
    assert_eq!(ep.stats().packets_received, 3);
    // The rebuilt endpoint receives on the same socket and still drops foreign packets.
    let other = UdpSocket::bind(lo).await.unwrap();
    let mut other_stream = RtpSender::new(0xBAD, 0, 0);
    other
        .send_to(other_stream.audio(0, &[0xFF; 160], 160).unwrap(), ep_addr)
        .await
        .unwrap();
    let packet = peer_stream.audio(8, &[0xD5; 160], 160).unwrap();
    peer.send_to(packet, ep_addr).await.unwrap();
    match timeout(WAIT, ep.recv()).await.unwrap().unwrap() {
        Received::Audio { sequence, .. } => assert_eq!(sequence, 13),
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.counters().foreign, 2);
    assert_eq!(ep.stats().packets_received, 4);
    assert_eq!(ep.stats().packets_lost, 0);
}

#[tokio::test]
async fn unlatched_parts_latch_on_the_first_source_unless_latching_is_off() {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:4002".parse().unwrap();
    let ep = RtpEndpoint::bind(lo, RtcpPort::NextPort, EndpointConfig::default())
        .await
        .unwrap();
    let mut parts = ep.into_leg();
    assert!(parts.accept_rtp_from(a));
    assert_eq!((parts.latched, parts.remote_rtp), (Some(a), Some(a)));
    assert_eq!(
        parts.remote_rtcp, None,
        "RTCP has its own socket and address"
    );
    assert!(!parts.accept_rtp_from(b));

    let config = EndpointConfig::default().symmetric_rtp(false);
    let mut parts = RtpEndpoint::bind(lo, RtcpPort::Muxed, config)
        .await
        .unwrap()
        .into_leg();
    assert!(parts.accept_rtp_from(a));
    assert!(
        parts.accept_rtp_from(b),
        "without latching every source is the peer"
    );
    assert_eq!(parts.latched, None);
}
