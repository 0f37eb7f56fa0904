//! A virtual-time harness around one `BridgeEngine`: the far end of every leg is a `Peer` that
//! sends 20 ms packets from an audio source, and everything the engine sends is recorded per
//! member, so a test reads like "Alice talks, Bob hears her, Bob's stream stays one stream".
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use session_bridge::{
    BridgeEngine, BridgeEvent, BridgeId, Codec, EngineConfig, Leg, RtpAction, StreamState,
    TransmitKind,
};
use session_media::audio::{AudioSource, ToneSource, goertzel_power};
use session_media::g711::G711Law;
use session_media::rtcp::NtpClock;
use session_media::rtp::{RtpHeader, RtpSender, parse};
use session_media::{AudioFrame, FRAME_SAMPLES};
use session_types::SessionId;

pub const STEP: Duration = Duration::from_millis(10);

/// A frame source of one constant sample value.
pub struct Constant(pub i16);

impl AudioSource for Constant {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        Some(AudioFrame::from_samples(&[self.0; FRAME_SAMPLES]))
    }
}

/// The far end of a leg: what it sends into the engine.
pub struct Peer {
    pub sender: RtpSender,
    pub codec: Codec,
    pub source: Option<Box<dyn AudioSource>>,
}

/// One RTP packet a member's stream carried.
#[derive(Debug, Clone)]
pub struct Out {
    pub header: RtpHeader,
    pub payload: Vec<u8>,
    pub at: Instant,
}

pub struct Harness {
    pub engine: BridgeEngine,
    pub t0: Instant,
    pub now: Instant,
    pub peers: HashMap<SessionId, Peer>,
    pub out: HashMap<SessionId, Vec<Out>>,
    pub rtcp: HashMap<SessionId, Vec<Vec<u8>>>,
    pub events: Vec<BridgeEvent>,
    /// What each peer sent, in order.
    pub sent: HashMap<SessionId, Vec<Vec<u8>>>,
    pub initial: HashMap<SessionId, StreamState>,
    joined: u32,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(|c| c)
    }

    pub fn with_config(tune: impl FnOnce(EngineConfig) -> EngineConfig) -> Self {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let config = tune(EngineConfig::new(NtpClock::new(wall, t0)).cname("bridge@test"));
        Self {
            engine: BridgeEngine::new(config),
            t0,
            now: t0,
            peers: HashMap::new(),
            out: HashMap::new(),
            rtcp: HashMap::new(),
            events: Vec::new(),
            sent: HashMap::new(),
            initial: HashMap::new(),
            joined: 0,
        }
    }

    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// A leg whose stream starts near the sequence and timestamp wrap, distinct per member.
    pub fn leg(&mut self, codec: Codec) -> Leg {
        self.joined += 1;
        let n = self.joined;
        let stream = StreamState::new(
            0x5000_0000 + n,
            65_500u16.wrapping_add(n as u16 * 7),
            u32::MAX - 2000 * n,
        );
        Leg::new(codec, stream)
    }

    /// A new session joins `bridge` with `leg`; its peer is silent until told to talk.
    pub fn join_with(&mut self, bridge: BridgeId, leg: Leg) -> SessionId {
        self.join_with_settings(bridge, leg, &session_bridge::JoinSettings::default())
    }

    /// The same, joining with `settings`.
    pub fn join_with_settings(
        &mut self,
        bridge: BridgeId,
        leg: Leg,
        settings: &session_bridge::JoinSettings,
    ) -> SessionId {
        let session = SessionId::new();
        let codec = leg.codec;
        let n = self.peers.len() as u32 + 1;
        self.initial.insert(session, leg.stream);
        self.engine
            .add_member_with(self.now, bridge, session, leg, settings)
            .unwrap();
        self.peers.insert(
            session,
            Peer {
                sender: RtpSender::new(0x7000_0000 + n, (n as u16) * 1000, n * 100_000),
                codec,
                source: None,
            },
        );
        self.drain();
        session
    }

    pub fn join(&mut self, bridge: BridgeId, codec: Codec) -> SessionId {
        let leg = self.leg(codec);
        self.join_with(bridge, leg)
    }

    pub fn talk(&mut self, session: SessionId, source: impl AudioSource + 'static) {
        if let Some(p) = self.peers.get_mut(&session) {
            p.source = Some(Box::new(source));
        }
    }

    pub fn tone(&mut self, session: SessionId, hz: f64) {
        self.talk(session, ToneSource::new(hz, 6000));
    }

    /// The peer sends with `codec` from now on (its side of a re-negotiation).
    pub fn switch_codec(&mut self, session: SessionId, codec: Codec) {
        if let Some(p) = self.peers.get_mut(&session) {
            p.codec = codec;
        }
    }

    pub fn hush(&mut self, session: SessionId) {
        if let Some(p) = self.peers.get_mut(&session) {
            p.source = None;
        }
    }

    /// Gives a datagram to the engine as if it arrived on `session`'s socket now.
    pub fn feed(&mut self, session: SessionId, datagram: &[u8]) -> RtpAction {
        let mut buf = [0u8; 1500];
        let len = datagram.len().min(buf.len());
        buf[..len].copy_from_slice(&datagram[..len]);
        let action = self.engine.handle_rtp(self.now, session, &mut buf, len);
        if let RtpAction::Forward { from, len } = action {
            let (header, payload) = parse(&buf[..len]).expect("a forwarded packet is RTP");
            self.out.entry(from).or_default().push(Out {
                header,
                payload: payload.to_vec(),
                at: self.now,
            });
        }
        action
    }

    /// Every talking peer sends its next packet now.
    pub fn send_all(&mut self) -> Vec<(SessionId, RtpAction)> {
        let mut talkers: Vec<SessionId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.source.is_some())
            .map(|(s, _)| *s)
            .collect();
        talkers.sort();
        let mut actions = Vec::new();
        for session in talkers {
            let Some(peer) = self.peers.get_mut(&session) else {
                continue;
            };
            let Some(frame) = peer.source.as_mut().and_then(|s| s.next_frame()) else {
                continue;
            };
            let mut payload = [0u8; FRAME_SAMPLES];
            let payload = peer.codec.law.encode_frame(&frame, &mut payload);
            let packet = peer
                .sender
                .audio_at(self.now, peer.codec.payload_type, payload, 160)
                .unwrap()
                .to_vec();
            self.sent.entry(session).or_default().push(packet.clone());
            actions.push((session, self.feed(session, &packet)));
        }
        actions
    }

    /// Runs the engine's timers at `now` and records what it sends.
    pub fn drain(&mut self) {
        self.engine.handle_timeout(self.now);
        while let Some(t) = self.engine.poll_transmit() {
            match t.kind {
                TransmitKind::Rtp => {
                    let (header, payload) = parse(t.data).expect("the engine sends RTP");
                    self.out.entry(t.from).or_default().push(Out {
                        header,
                        payload: payload.to_vec(),
                        at: self.now,
                    });
                }
                _ => self.rtcp.entry(t.from).or_default().push(t.data.to_vec()),
            }
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e);
        }
    }

    /// Lets `d` of virtual time pass in 10 ms steps; peers send on every 20 ms boundary.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            let since = self.now.duration_since(self.t0).as_millis();
            if since.is_multiple_of(20) {
                self.send_all();
            }
            self.drain();
        }
    }

    pub fn run_ms(&mut self, ms: u64) {
        self.run(Duration::from_millis(ms));
    }

    pub fn stream(&self, session: SessionId) -> &[Out] {
        self.out.get(&session).map_or(&[], Vec::as_slice)
    }

    /// The audio a member's peer heard in its last `packets` packets, decoded with its codec.
    pub fn heard(&self, session: SessionId, law: G711Law, packets: usize) -> Vec<i16> {
        let out = self.stream(session);
        let from = out.len().saturating_sub(packets);
        out[from..]
            .iter()
            .flat_map(|o| law.decode_frame(&o.payload).samples().to_vec())
            .collect()
    }

    pub fn take_events(&mut self) -> Vec<BridgeEvent> {
        std::mem::take(&mut self.events)
    }
}

/// Power at `hz` in `samples`.
pub fn power(samples: &[i16], hz: f64) -> f64 {
    goertzel_power(samples, hz)
}

/// The packets are one RTP stream: one SSRC, sequence numbers one apart, and timestamps one
/// frame apart (no pause, so no marker) — whatever carried them (relay, mixer, a move).
pub fn assert_one_stream(out: &[Out], initial: StreamState) {
    assert!(!out.is_empty(), "the stream carried nothing");
    let first = &out[0].header;
    assert_eq!(
        first.sequence, initial.next_sequence,
        "starts where the leg stood"
    );
    for (i, w) in out.windows(2).enumerate() {
        let (a, b) = (&w[0].header, &w[1].header);
        assert_eq!(b.ssrc, initial.ssrc, "packet {} changed SSRC", i + 1);
        assert_eq!(
            b.sequence,
            a.sequence.wrapping_add(1),
            "packet {}: sequence {} after {}",
            i + 1,
            b.sequence,
            a.sequence
        );
        let step = b.timestamp.wrapping_sub(a.timestamp);
        assert_eq!(step, 160, "packet {}: timestamp moved by {step}", i + 1);
        assert!(!b.marker, "packet {}: marker without a pause", i + 1);
    }
}
