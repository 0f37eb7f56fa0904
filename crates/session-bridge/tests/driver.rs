//! The tokio `BridgeDriver` on real loopback sockets: "phones" are session-media
//! `RtpEndpoint`s (or raw sockets where a test reads the wire), each negotiated by SDP with a
//! far-side `RtpEndpoint` whose leg is handed to the driver with `into_leg`. Time is tokio's
//! paused clock, so the 20 ms pacing and the mixer ticks are exact; every wait is bounded by
//! `tokio::time::timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::net::SocketAddr;
use std::time::Duration;

use session_bridge::{
    BridgeDriver, BridgeEvent, DriverConfig, Error, Technology, TechnologyChoice,
};
use session_media::AudioFrame;
use session_media::audio::{AudioSource, ToneSource, goertzel_power};
use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
use session_media::rtcp::RtcpPacket;
use session_media::rtp::{RtpHeader, parse};
use session_media::sdp::negotiate::{Codec, MediaConfig, OfferAnswer};
use session_resources::PortPool;
use session_types::SessionId;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(5);
const FRAME: Duration = Duration::from_millis(20);

fn lo() -> std::net::IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// A phone and the far-side endpoint of its call, negotiated by SDP (phone offers `codec`).
/// The far side's ports come from `pool` when one is given.
async fn call(codec: Codec, rtcp_mux: bool, pool: Option<&PortPool>) -> (RtpEndpoint, RtpEndpoint) {
    let mut phone = RtpEndpoint::bind(
        SocketAddr::new(lo(), 0),
        RtcpPort::muxed_if(rtcp_mux),
        EndpointConfig::default(),
    )
    .await
    .unwrap();
    let mut leg = match pool {
        Some(pool) => RtpEndpoint::bind_from_pool(
            pool,
            lo(),
            RtcpPort::muxed_if(rtcp_mux),
            EndpointConfig::default(),
        )
        .await
        .unwrap(),
        None => RtpEndpoint::bind(
            SocketAddr::new(lo(), 0),
            RtcpPort::muxed_if(rtcp_mux),
            EndpointConfig::default(),
        )
        .await
        .unwrap(),
    };
    let config = MediaConfig::default()
        .codecs(vec![codec])
        .rtcp_mux(rtcp_mux);
    let mut phone_sdp = OfferAnswer::new(config.clone(), lo());
    let mut leg_sdp = OfferAnswer::new(config, lo());
    let offer = phone_sdp.create_offer(phone.local_addr().unwrap().port());
    let answered = leg_sdp
        .answer_offer(
            &offer.to_string().parse().unwrap(),
            leg.local_addr().unwrap().port(),
        )
        .unwrap();
    let agreed = phone_sdp
        .process_answer(&answered.answer.to_string().parse().unwrap())
        .unwrap();
    phone.configure(&agreed.media).unwrap();
    leg.configure(&answered.media).unwrap();
    (phone, leg)
}

/// A phone's side of the conversation: sends `frames` 20 ms frames of a tone (silence without
/// one) on the clock, hears everything that comes meanwhile and for ten frames after.
async fn talk(mut phone: RtpEndpoint, tone: Option<f64>, frames: usize) -> (RtpEndpoint, Vec<i16>) {
    let mut source = tone.map(|f| ToneSource::new(f, 6000));
    let mut ticker = tokio::time::interval(FRAME);
    let mut heard = Vec::new();
    let mut ticks = 0;
    while ticks < frames + 10 {
        tokio::select! {
            biased;
            _ = ticker.tick() => {
                ticks += 1;
                if ticks <= frames {
                    let frame = source
                        .as_mut()
                        .and_then(AudioSource::next_frame)
                        .unwrap_or_else(AudioFrame::silence);
                    phone.send_frame(&frame).await.unwrap();
                }
            }
            received = phone.recv() => {
                if let Ok(Received::Audio { frame, .. }) = received {
                    heard.extend_from_slice(frame.samples());
                }
            }
        }
    }
    (phone, heard)
}

/// Goertzel power of `hz` in what was heard after the first `skip` frames (the bridge's and
/// the jitter buffers' start).
fn power(heard: &[i16], skip: usize, hz: f64) -> f64 {
    let start = (skip * 160).min(heard.len());
    goertzel_power(&heard[start..], hz)
}

fn drain(events: &mut mpsc::Receiver<BridgeEvent>) -> Vec<BridgeEvent> {
    let mut all = Vec::new();
    while let Ok(event) = events.try_recv() {
        all.push(event);
    }
    all
}

/// The next RTP header on a raw socket (RTCP skipped).
async fn next_rtp(socket: &UdpSocket) -> RtpHeader {
    let mut buf = [0u8; 1500];
    loop {
        let (len, _) = timeout(WAIT, socket.recv_from(&mut buf))
            .await
            .expect("timed out")
            .unwrap();
        if session_media::rtcp::is_rtcp(&buf[..len]) {
            continue;
        }
        return parse(&buf[..len]).unwrap().0;
    }
}

#[tokio::test(start_paused = true)]
async fn two_phones_hear_each_other_through_a_transcoding_relay() {
    two_phones().await;
}

/// The same on a multi-threaded runtime in real time: reader tasks and the ticker on
/// different threads, the lock never held across an `.await`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phones_on_a_multi_threaded_runtime() {
    two_phones().await;
}

async fn two_phones() {
    let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
    let mut probe = driver.probe();
    let (phone_a, leg_a) = call(Codec::pcmu(), true, None).await;
    let (phone_b, leg_b) = call(Codec::pcma(), false, None).await;
    let (a, b) = (SessionId::new(), SessionId::new());
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    driver.add_member(bridge, a, leg_a.into_leg()).unwrap();
    driver.add_member(bridge, b, leg_b.into_leg()).unwrap();
    assert_eq!(
        driver.stats(bridge).unwrap().technology,
        Technology::TranscodingRelay,
        "PCMU ↔ PCMA"
    );
    assert_eq!(driver.bridge_of(a), Some(bridge));
    assert_eq!(probe.tasks(), 3, "the ticker and one reader per leg");

    let talk_a = tokio::spawn(talk(phone_a, Some(700.0), 50));
    let talk_b = tokio::spawn(talk(phone_b, Some(1300.0), 50));
    let (_, heard_by_a) = timeout(WAIT, talk_a).await.unwrap().unwrap();
    let (_, heard_by_b) = timeout(WAIT, talk_b).await.unwrap().unwrap();

    assert!(
        heard_by_a.len() >= 40 * 160,
        "A heard {} samples",
        heard_by_a.len()
    );
    assert!(
        heard_by_b.len() >= 40 * 160,
        "B heard {} samples",
        heard_by_b.len()
    );
    let (a_hears_b, a_hears_self) = (power(&heard_by_a, 5, 1300.0), power(&heard_by_a, 5, 700.0));
    let (b_hears_a, b_hears_self) = (power(&heard_by_b, 5, 700.0), power(&heard_by_b, 5, 1300.0));
    assert!(a_hears_b > 1e6, "A hears B's tone: {a_hears_b}");
    assert!(b_hears_a > 1e6, "B hears A's tone: {b_hears_a}");
    assert!(a_hears_b > 1000.0 * a_hears_self);
    assert!(b_hears_a > 1000.0 * b_hears_self);
    let stats = driver.stats(bridge).unwrap();
    assert!(stats.forwarded >= 90, "{stats:?}");
    let ds = driver.driver_stats();
    assert_eq!(
        (ds.send_dropped, ds.no_remote, ds.foreign),
        (0, 0, 0),
        "{ds:?}"
    );

    let events = drain(&mut events);
    assert!(events.contains(&BridgeEvent::MemberJoined { bridge, session: a }));
    assert!(events.contains(&BridgeEvent::TechnologyChanged {
        bridge,
        from: Technology::Relay,
        to: Technology::TranscodingRelay
    }));

    let legs = driver.shutdown().await;
    assert_eq!(legs.len(), 2);
    assert_eq!(probe.tasks(), 0);
    timeout(WAIT, probe.stopped()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn three_phones_in_a_conference_hear_the_others_and_not_themselves() {
    let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
    let tones = [500.0, 1100.0, 1700.0];
    let codecs = [Codec::pcmu(), Codec::pcma(), Codec::pcmu()];
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    let mut phones = Vec::new();
    let mut sessions = Vec::new();
    for codec in codecs {
        let (phone, leg) = call(codec, false, None).await;
        let session = SessionId::new();
        driver.add_member(bridge, session, leg.into_leg()).unwrap();
        phones.push(phone);
        sessions.push(session);
    }
    assert_eq!(driver.stats(bridge).unwrap().technology, Technology::Mixer);

    let talking: Vec<_> = phones
        .into_iter()
        .zip(tones)
        .map(|(phone, tone)| tokio::spawn(talk(phone, Some(tone), 60)))
        .collect();
    let mut heard = Vec::new();
    for t in talking {
        heard.push(timeout(WAIT, t).await.unwrap().unwrap().1);
    }
    for (i, heard) in heard.iter().enumerate() {
        assert!(
            heard.len() >= 50 * 160,
            "phone {i} heard {} samples",
            heard.len()
        );
        let own = power(heard, 15, tones[i]);
        for (j, tone) in tones.iter().enumerate() {
            if i == j {
                continue;
            }
            let other = power(heard, 15, *tone);
            assert!(other > 1e6, "phone {i} hears phone {j}: {other}");
            assert!(
                other > 1000.0 * own,
                "phone {i} does not hear itself: {own} vs {other}"
            );
        }
    }
    let stats = driver.stats(bridge).unwrap();
    assert!(stats.mixed_ticks >= 60, "{stats:?}");
    let member = driver.member_stats(sessions[0]).unwrap();
    assert!(member.mixed >= 60 && member.packets_in == 60, "{member:?}");
    assert!(drain(&mut events).iter().any(|e| matches!(
        e,
        BridgeEvent::TechnologyChanged { bridge: b, to: Technology::Mixer, .. } if *b == bridge
    )));
    assert_eq!(driver.shutdown().await.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_removed_leg_continues_its_stream_as_an_endpoint_again() {
    let (driver, _events) = BridgeDriver::start(DriverConfig::new());
    let mut probe = driver.probe();
    let (phone_a, leg_a) = call(Codec::pcmu(), true, None).await;
    // B's far end is a raw socket, so the test reads B's stream as it is on the wire.
    let far = UdpSocket::bind(SocketAddr::new(lo(), 0)).await.unwrap();
    let far_addr = far.local_addr().unwrap();
    let mut leg_b = RtpEndpoint::bind(
        SocketAddr::new(lo(), 0),
        RtcpPort::Muxed,
        EndpointConfig::default(),
    )
    .await
    .unwrap();
    leg_b.set_remote(far_addr, far_addr);
    let ssrc = leg_b.ssrc();
    let started = Instant::now();

    // B's call stands alone: five frames on the clock.
    let mut ticker = tokio::time::interval(FRAME);
    for _ in 0..5 {
        ticker.tick().await;
        leg_b.send_frame(&AudioFrame::silence()).await.unwrap();
    }
    // Bridged with A: A's audio goes out on B's stream.
    let (a, b) = (SessionId::new(), SessionId::new());
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    ticker.tick().await;
    driver.add_member(bridge, a, leg_a.into_leg()).unwrap();
    driver.add_member(bridge, b, leg_b.into_leg()).unwrap();
    let (_, _) = timeout(WAIT, talk(phone_a, Some(900.0), 25)).await.unwrap();
    let relayed = driver.member_stats(b).unwrap().packets_out;
    assert!(relayed >= 20, "{relayed}");

    // B leaves: its endpoint is rebuilt from the parts and goes on.
    let parts = driver.remove_member(b).await.unwrap();
    assert_eq!(driver.bridge_of(b), None);
    assert_eq!(probe.tasks(), 2, "B's reader stopped");
    assert_eq!(parts.sender.ssrc, ssrc);
    assert_eq!(parts.sender.packets, 5 + relayed);
    let mut leg_b = RtpEndpoint::from_parts(parts);
    let mut ticker = tokio::time::interval(FRAME);
    for _ in 0..5 {
        ticker.tick().await;
        leg_b.send_frame(&AudioFrame::silence()).await.unwrap();
    }
    let elapsed = Instant::now() - started;

    let total = 5 + relayed as usize + 5;
    let mut headers = Vec::new();
    for _ in 0..total {
        headers.push(next_rtp(&far).await);
    }
    assert!(
        headers.iter().all(|h| h.ssrc == ssrc),
        "one SSRC throughout"
    );
    for pair in headers.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "contiguous sequence numbers"
        );
        let step = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
        assert!(
            step > 0 && step % 160 == 0,
            "timestamps on the clock: {step}"
        );
        assert!(
            step == 160 || pair[1].marker,
            "a jump carries the marker bit"
        );
    }
    let span = headers[total - 1]
        .timestamp
        .wrapping_sub(headers[0].timestamp);
    let clock = (elapsed.as_millis() * 8) as u32;
    assert!(
        span.abs_diff(clock) <= 3 * 160,
        "the stream's timestamps span the time it lasted: {span} vs {clock}"
    );
    assert_eq!(leg_b.stats().packets_sent, total as u64, "SR counts go on");
    driver.shutdown().await;
    timeout(WAIT, probe.stopped()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_every_leg_and_no_task_is_left() {
    let pool = PortPool::new(48_600..48_700).unwrap();
    let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
    let probe = driver.probe();
    let relay = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    let alone = driver.create_bridge(TechnologyChoice::ForceMixer).unwrap();
    let mut phones = Vec::new();
    let mut sessions = Vec::new();
    for (i, bridge) in [relay, relay, alone].into_iter().enumerate() {
        let (phone, leg) = call(Codec::pcmu(), i == 0, Some(&pool)).await;
        let session = SessionId::new();
        driver.add_member(bridge, session, leg.into_leg()).unwrap();
        phones.push(phone);
        sessions.push(session);
    }
    assert_eq!(pool.in_use(), 3);
    assert_eq!(probe.tasks(), 4);
    let talking: Vec<_> = phones
        .into_iter()
        .map(|phone| tokio::spawn(talk(phone, Some(800.0), 10)))
        .collect();
    for t in talking {
        timeout(WAIT, t).await.unwrap().unwrap();
    }

    let legs = driver.shutdown().await;
    assert_eq!(
        probe.tasks(),
        0,
        "every task stopped before shutdown returned"
    );
    let mut returned: Vec<_> = legs.iter().map(|(s, _)| *s).collect();
    returned.sort();
    sessions.sort();
    assert_eq!(returned, sessions, "every leg came back");
    assert_eq!(pool.in_use(), 3, "the legs still hold their ports");
    let ds = driver.driver_stats();
    assert_eq!((ds.legs, ds.tasks), (0, 0));
    assert_eq!(
        (ds.engine.bridges, ds.engine.members, ds.engine.timers),
        (0, 0, 0)
    );

    // The event channel ends after the last events.
    let mut left = 0;
    while let Some(event) = timeout(WAIT, events.recv()).await.unwrap() {
        if matches!(event, BridgeEvent::MemberLeft { .. }) {
            left += 1;
        }
    }
    assert_eq!(left, 3);

    // The driver refuses work now and gives a leg back untouched.
    assert!(matches!(
        driver.create_bridge(TechnologyChoice::Auto),
        Err(Error::DriverClosed)
    ));
    let (_, spare) = call(Codec::pcmu(), true, None).await;
    let (error, spare) = driver
        .add_member(relay, SessionId::new(), spare.into_leg())
        .unwrap_err();
    assert!(matches!(error, Error::DriverClosed));
    drop(spare);
    assert!(driver.shutdown().await.is_empty());

    // Each leg becomes an endpoint again; dropping them gives the ports back.
    let endpoints: Vec<_> = legs
        .into_iter()
        .map(|(_, parts)| RtpEndpoint::from_parts(parts))
        .collect();
    assert!(endpoints.iter().all(|e| e.stats().packets_sent > 0));
    drop(endpoints);
    assert_eq!(pool.in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_stops_every_task_and_releases_the_legs() {
    let pool = PortPool::new(48_800..48_900).unwrap();
    let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
    let mut probe = driver.probe();
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    let mut phones = Vec::new();
    for _ in 0..2 {
        let (phone, leg) = call(Codec::pcma(), false, Some(&pool)).await;
        driver
            .add_member(bridge, SessionId::new(), leg.into_leg())
            .unwrap();
        phones.push(phone);
    }
    let other_handle = driver.clone();
    assert_eq!(probe.tasks(), 3);
    drop(driver);
    assert_eq!(probe.tasks(), 3, "a handle is still alive");
    drop(other_handle);
    timeout(WAIT, probe.stopped()).await.unwrap();
    assert_eq!(
        pool.in_use(),
        0,
        "the legs inside were dropped: ports given back"
    );
    drain(&mut events);
    assert!(
        timeout(WAIT, events.recv()).await.unwrap().is_none(),
        "channel closed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leg_latches_to_its_phone_and_drops_foreign_packets() {
    let (driver, _events) = BridgeDriver::start(DriverConfig::new());
    let (phone_a, mut leg_a) = call(Codec::pcmu(), true, None).await;
    let (phone_b, leg_b) = call(Codec::pcmu(), true, None).await;
    // A's SDP address is wrong (a NAT): only latching finds the phone.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    leg_a.set_remote(nowhere, nowhere);
    let leg_a_addr = leg_a.local_addr().unwrap();
    let (a, b) = (SessionId::new(), SessionId::new());
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    driver.add_member(bridge, a, leg_a.into_leg()).unwrap();
    driver.add_member(bridge, b, leg_b.into_leg()).unwrap();

    // A talks first (latching A's leg), then an intruder sends to A's leg, then B talks.
    let (phone_a, _) = timeout(WAIT, talk(phone_a, Some(600.0), 5)).await.unwrap();
    let intruder = UdpSocket::bind(SocketAddr::new(lo(), 0)).await.unwrap();
    let mut stream = session_media::rtp::RtpSender::new(0xBAD, 0, 0);
    intruder
        .send_to(stream.audio(0, &[0xFF; 160], 160).unwrap(), leg_a_addr)
        .await
        .unwrap();
    let talk_a = tokio::spawn(talk(phone_a, None, 30));
    let (_, heard_by_b) = timeout(WAIT, talk(phone_b, Some(1500.0), 30))
        .await
        .unwrap();
    let (_, heard_by_a) = timeout(WAIT, talk_a).await.unwrap().unwrap();
    assert!(
        power(&heard_by_a, 5, 1500.0) > 1e6,
        "B reached A at its real address"
    );
    assert!(heard_by_b.len() >= 20 * 160, "B heard A's packets");

    assert_eq!(driver.driver_stats().foreign, 1);
    let parts = driver.remove_member(a).await.unwrap();
    assert_eq!(parts.counters.foreign, 1, "the leg's own counter too");
    assert!(parts.latched.is_some_and(|addr| addr != nowhere));
    assert_eq!(parts.remote_rtp, parts.latched);
    driver.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_digit_crosses_the_bridge_and_is_reported() {
    let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
    let (mut phone_a, leg_a) = call(Codec::pcmu(), true, None).await;
    let (mut phone_b, leg_b) = call(Codec::pcma(), false, None).await;
    let (a, b) = (SessionId::new(), SessionId::new());
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    driver.add_member(bridge, a, leg_a.into_leg()).unwrap();
    driver.add_member(bridge, b, leg_b.into_leg()).unwrap();
    let listening = tokio::spawn(async move {
        loop {
            if let Received::Dtmf(digit) = phone_b.recv().await.unwrap() {
                return digit;
            }
        }
    });
    phone_a.send_frame(&AudioFrame::silence()).await.unwrap();
    phone_a
        .send_dtmf('5', Duration::from_millis(100))
        .await
        .unwrap();
    let digit = timeout(WAIT, listening).await.unwrap().unwrap();
    assert_eq!((digit.digit, digit.duration, digit.ended), ('5', 800, true));
    let reported = loop {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            BridgeEvent::DtmfReceived { session, digit, .. } => break (session, digit),
            _ => continue,
        }
    };
    assert_eq!(reported, (a, '5'));
    driver.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn operations_reach_the_engine_and_a_switch_wakes_the_ticker() {
    let (driver, _events) = BridgeDriver::start(DriverConfig::new());
    let (phone_a, leg_a) = call(Codec::pcmu(), true, None).await;
    let (phone_b, leg_b) = call(Codec::pcmu(), true, None).await;
    let (_phone_c, leg_c) = call(Codec::pcma(), false, None).await;
    let (a, b, c) = (SessionId::new(), SessionId::new(), SessionId::new());
    let first = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    let second = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    driver.add_member(first, a, leg_a.into_leg()).unwrap();
    driver.add_member(first, b, leg_b.into_leg()).unwrap();
    driver.add_member(second, c, leg_c.into_leg()).unwrap();
    assert_eq!(driver.stats(first).unwrap().technology, Technology::Relay);

    // A relay first: the ticker has nothing to do but the first RTCP reports, 5 s away.
    let talk_a = tokio::spawn(talk(phone_a, Some(700.0), 10));
    let (phone_b, _) = timeout(WAIT, talk(phone_b, Some(1300.0), 10))
        .await
        .unwrap();
    let (phone_a, _) = timeout(WAIT, talk_a).await.unwrap().unwrap();
    assert!(driver.stats(first).unwrap().forwarded >= 20);
    assert_eq!(driver.stats(first).unwrap().mixed_ticks, 0);

    // Muting A makes the bridge mix: the sleeping ticker must start ticking at once.
    driver.set_muted(a, true).unwrap();
    assert_eq!(driver.stats(first).unwrap().technology, Technology::Mixer);
    let talk_a = tokio::spawn(talk(phone_a, Some(700.0), 40));
    let (_, heard_by_b) = timeout(WAIT, talk(phone_b, Some(1300.0), 40))
        .await
        .unwrap();
    let (_, heard_by_a) = timeout(WAIT, talk_a).await.unwrap().unwrap();
    assert!(driver.stats(first).unwrap().mixed_ticks >= 40);
    assert!(power(&heard_by_a, 10, 1300.0) > 1e6, "A hears B");
    assert!(power(&heard_by_b, 10, 700.0) < 1e3, "nobody hears muted A");
    driver.set_muted(a, false).unwrap();
    assert_eq!(driver.stats(first).unwrap().technology, Technology::Relay);

    driver.merge(second, first).unwrap();
    assert_eq!(driver.bridge_of(c), Some(first));
    assert_eq!(driver.members(first).map(|m| m.len()), Some(3));
    assert_eq!(driver.stats(first).unwrap().technology, Technology::Mixer);
    assert!(driver.stats(second).is_none());
    driver.set_gain(a, c, session_bridge::Gain::ZERO).unwrap();
    driver.set_deaf(b, true).unwrap();
    assert!(driver.member_stats(b).unwrap().deaf);
    let third = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    driver.move_member(c, third).unwrap();
    assert_eq!(driver.bridge_of(c), Some(third));
    assert!(matches!(
        driver.set_gain(a, c, session_bridge::Gain::UNITY),
        Err(Error::NotInSameBridge { .. })
    ));
    let stranger = SessionId::new();
    assert!(matches!(
        driver.set_deaf(stranger, true),
        Err(Error::NotBridged(_))
    ));
    assert!(matches!(
        driver.remove_member(stranger).await,
        Err(Error::NotBridged(_))
    ));
    let legs = driver.destroy_bridge(third).await.unwrap();
    assert_eq!(legs.len(), 1);
    assert_eq!(legs[0].0, c);
    assert!(matches!(
        driver.destroy_bridge(third).await,
        Err(Error::UnknownBridge(_))
    ));
    assert_eq!(driver.driver_stats().tasks, 3, "C's reader stopped");
    assert_eq!(driver.shutdown().await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn rtcp_is_terminated_per_leg_on_both_kinds_of_socket() {
    let (driver, _events) = BridgeDriver::start(DriverConfig::new());
    let (mut phone_a, leg_a) = call(Codec::pcmu(), true, None).await;
    let (mut phone_b, leg_b) = call(Codec::pcmu(), false, None).await;
    let b_stream = leg_b.ssrc();
    let (a, b) = (SessionId::new(), SessionId::new());
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    driver.add_member(bridge, a, leg_a.into_leg()).unwrap();
    driver.add_member(bridge, b, leg_b.into_leg()).unwrap();

    // Phone A's report (rtcp-mux) is taken in by A's leg and goes no further; the audio after
    // it on the same socket reaches B, so by then the report was handled.
    phone_a.send_report().await.unwrap();
    phone_a.send_frame(&AudioFrame::silence()).await.unwrap();
    loop {
        match timeout(WAIT, phone_b.recv()).await.unwrap().unwrap() {
            Received::Audio { .. } => break,
            Received::Rtcp(_) => panic!("A's report crossed the bridge"),
            _ => continue,
        }
    }
    assert_eq!(driver.member_stats(a).unwrap().rtcp_received, 1);

    // B's leg reports on its own stream, from its RTCP socket, within the 5 s interval.
    let packets = loop {
        match timeout(Duration::from_secs(10), phone_b.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Received::Rtcp(packets) => break packets,
            _ => continue,
        }
    };
    assert!(
        packets.iter().any(|p| matches!(
            p,
            RtcpPacket::SenderReport { ssrc, info, .. }
                if *ssrc == b_stream && info.packet_count == 1
        )),
        "{packets:?}"
    );
    assert_eq!(driver.member_stats(b).unwrap().rtcp_sent, 1);
    driver.shutdown().await;
}

/// The handle and the futures of its async operations can move between threads (a call's
/// task may own them).
#[test]
fn the_handle_and_its_futures_are_send() {
    fn send<T: Send + 'static>(_: &T) {}
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<BridgeDriver>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (driver, events) = BridgeDriver::start(DriverConfig::new());
    send(&events);
    let session = SessionId::new();
    let d = driver.clone();
    send(&async move { d.remove_member(session).await });
    let d = driver.clone();
    send(&async move { d.shutdown().await });
    let d = driver.clone();
    let bridge = driver.create_bridge(TechnologyChoice::Auto).unwrap();
    send(&async move { d.destroy_bridge(bridge).await });
}
