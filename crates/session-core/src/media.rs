//! One call's media: a small task that owns the call's [`RtpEndpoint`] and moves audio between
//! it and the application's source and sink, echoes when asked, sends DTMF and RTCP, and
//! reports digits and silence to the manager.
//!
//! The receive path: RTP → the endpoint (parse, G.711 decode) → the call's adaptive
//! [`JitterBuffer`] (reordering, loss concealment, depth following the measured jitter) → one
//! frame pulled every 20 ms → the sink. Echo bypasses the buffer: it sends back what arrives,
//! when it arrives.
//!
//! The manager talks to it through [`MediaHandle`]; dropping the handle (or
//! [`MediaHandle::stop`]) ends the task, which sends RTCP BYE and drops the endpoint, giving
//! its ports back to the pool.

use crate::call::CallStats;
use session_media::audio::{AudioSink, AudioSource};
use session_media::endpoint::{EndpointParts, Received, RtpEndpoint};
use session_media::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use session_media::rtcp::StreamStats;
use session_media::sdp::negotiate::NegotiatedMedia;
use session_media::{AudioFrame, FRAME_DURATION};
use session_types::SessionId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How many silent pulls in a row (after any concealment) stop the playout clock until audio
/// comes again: a held or silent peer costs no wake-ups, and the sink hears it stop.
const SILENT_PULLS_BEFORE_STOP: u32 = 10;

/// How often RTCP reports go out (RFC 3550 §6.2 suggests 5 s for a two-party call).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// A source of audio the media task can own.
pub type BoxedSource = Box<dyn AudioSource + Send>;
/// A sink of audio the media task can own.
pub type BoxedSink = Box<dyn AudioSink + Send>;

/// What the manager asks of a media task.
pub(crate) enum MediaCommand {
    /// Offer/answer completed (again): where to send, which codec.
    Configure(Box<NegotiatedMedia>),
    /// Send audio (`true`) or stay silent (`false`, e.g. the peer holds us with `recvonly`
    /// or `inactive`).
    SetSending(bool),
    /// Play `source` (playback number `.0`), ending the one playing with `Replaced`.
    AttachSource(u64, BoxedSource),
    /// Stop the source playing (`Stopped`); silence follows.
    DetachSource,
    AttachSink(BoxedSink),
    /// Send a digit as RFC 4733 events and answer the caller when it is out.
    SendDtmf {
        digit: char,
        duration: Duration,
        reply: crate::core::Reply,
    },
    /// Add the stream's figures to `call` and answer the caller with the whole.
    Stats {
        call: Box<CallStats>,
        reply: oneshot::Sender<CallStats>,
    },
    /// The stream's figures, for the manager itself.
    #[cfg(test)]
    MediaStats(oneshot::Sender<MediaStats>),
    /// Stop and give the leg up (to a bridge): the task ends without an RTCP BYE and sends its
    /// endpoint's parts — sockets, port lease, stream state — here.
    HandOver(oneshot::Sender<EndpointParts>),
}

/// What a media task reports when asked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaStats {
    /// RTP/RTCP figures of the stream.
    pub(crate) stream: StreamStats,
    /// The receive jitter buffer's counters (played, concealed, late, lost …).
    pub(crate) playout: JitterStats,
}

/// What a media task tells the manager.
#[derive(Debug)]
pub(crate) enum MediaEvent {
    /// Playback number `playback` stopped.
    PlaybackFinished {
        playback: u64,
        end: session_events::PlaybackEnd,
    },
    /// A digit arrived as RFC 4733 events.
    Dtmf { digit: char, duration: Duration },
    /// No RTP for this long.
    Inactive(Duration),
    /// Packets so far, reported with each RTCP interval (for the tracer's audio checks).
    Counters { sent: u64, received: u64 },
}

/// Room in a media task's command queue. Commands come from the manager at the pace of
/// signalling (configure, hold, attach …), and the task takes them between 20 ms frames.
const COMMAND_QUEUE: usize = 64;

/// Events a media task holds while the manager's queue is full (digits, inactivity); beyond
/// this the oldest is dropped, with a warning. Packet counters are not held: the next
/// report supersedes them.
const HELD_EVENTS: usize = 32;

/// The manager's end of a media task.
pub(crate) struct MediaHandle {
    commands: mpsc::Sender<MediaCommand>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<MediaStats>,
}

impl MediaHandle {
    /// Starts the task for `endpoint`. With `echo`, every received frame is sent back.
    pub(crate) fn spawn(
        session: SessionId,
        endpoint: RtpEndpoint,
        echo: bool,
        idle: crate::config::IdleAudio,
        events: mpsc::Sender<(SessionId, MediaEvent)>,
    ) -> Result<Self, session_media::Error> {
        let local = endpoint.local_addr()?;
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let task = MediaTask {
            session,
            endpoint,
            echo,
            idle,
            sending: true,
            configured: false,
            source: None,
            sink: None,
            jitter: JitterBuffer::new(JitterConfig::default()),
            playout_stats: JitterStats::default(),
            receiving: false,
            silent_pulls: 0,
            events,
            held: VecDeque::new(),
        };
        let task = tokio::spawn(task.run(inbox));
        Ok(Self {
            commands,
            local,
            task,
        })
    }

    /// Our RTP address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends a command; a stopped task ignores it.
    pub(crate) fn send(&self, command: MediaCommand) {
        match self.commands.try_send(command) {
            Ok(()) => {}
            // The task only stops when the handle is dropped or the endpoint failed for good;
            // either way the command has nobody to act on it.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("media task not keeping up with its commands: one dropped");
            }
        }
    }

    /// Ends the task without a BYE and takes its leg: the endpoint's parts, for a bridge.
    /// `None` if the task had already stopped (its endpoint failed for good).
    pub(crate) async fn hand_over(self) -> Option<EndpointParts> {
        let (reply, parts) = oneshot::channel();
        let _ = self.commands.send(MediaCommand::HandOver(reply)).await;
        let parts = parts.await.ok();
        let _ = self.task.await;
        parts
    }

    /// Ends the task (RTCP BYE) and waits until it has dropped the endpoint, so its ports
    /// are back in the pool when this returns. Returns the stream's final figures.
    pub(crate) async fn stop(self) -> Option<MediaStats> {
        drop(self.commands);
        match self.task.await {
            Ok(stats) => Some(stats),
            Err(error) => {
                tracing::warn!(%error, "media task failed");
                None
            }
        }
    }
}

struct MediaTask {
    session: SessionId,
    endpoint: RtpEndpoint,
    echo: bool,
    /// What goes out while no source plays (not in echo mode).
    idle: crate::config::IdleAudio,
    sending: bool,
    configured: bool,
    /// The source playing and its playback number; without one, silence is sent (so a peer
    /// with an RTP timeout keeps the call) unless `idle` says nothing, or in echo mode.
    source: Option<(u64, BoxedSource)>,
    sink: Option<BoxedSink>,
    /// Received audio on its way to the sink.
    jitter: JitterBuffer,
    /// Counters of the buffers replaced so far (a new sink starts a new buffer).
    playout_stats: JitterStats,
    /// Audio arrived since the sink was attached: the playout clock runs.
    receiving: bool,
    /// Silent pulls in a row with nothing buffered.
    silent_pulls: u32,
    events: mpsc::Sender<(SessionId, MediaEvent)>,
    /// Events the manager's full queue could not take yet (at most [`HELD_EVENTS`]).
    held: VecDeque<MediaEvent>,
}

impl MediaTask {
    async fn run(mut self, mut inbox: mpsc::Receiver<MediaCommand>) -> MediaStats {
        let mut frames = tokio::time::interval(FRAME_DURATION);
        frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reports = tokio::time::interval(RTCP_INTERVAL);
        reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The playout clock: one frame to the sink every 20 ms once audio arrives. Missed
        // ticks are caught up (Burst) so the sink gets as many frames as time passed.
        let mut playout = tokio::time::interval(FRAME_DURATION);
        playout.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut playout_running = false;
        let mut failures = 0u32;
        let mut handing_over = None;
        loop {
            // RTP flows whenever we may send: the source's audio, or silence without one
            // (RFC 3550 leaves silence to the application; peers that time out on RTP need
            // it). An echo sends what it receives instead.
            let silence_when_idle = !self.echo && self.idle == crate::config::IdleAudio::Silence;
            let playing =
                self.configured && self.sending && (self.source.is_some() || silence_when_idle);
            // The playout clock starts (again) one frame after audio (re)appears, never with a
            // burst of the ticks it missed while stopped.
            if self.receiving && !playout_running {
                playout.reset();
            }
            playout_running = self.receiving;
            self.hand_over_held();
            tokio::select! {
                biased;
                command = inbox.recv() => match command {
                    Some(MediaCommand::HandOver(reply)) => {
                        handing_over = Some(reply);
                        break;
                    }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                received = self.endpoint.recv() => match received {
                    Ok(received) => {
                        failures = 0;
                        self.on_received(received).await;
                    }
                    Err(error) => {
                        // A socket error (e.g. ICMP port unreachable reported on the next
                        // read) is not fatal; a socket that keeps failing is.
                        failures += 1;
                        tracing::debug!(session_id = %self.session, %error, "RTP receive failed");
                        if failures > 100 {
                            break;
                        }
                    }
                },
                _ = frames.tick(), if playing => self.play_one().await,
                _ = playout.tick(), if self.receiving => self.play_out(),
                _ = reports.tick(), if self.configured => {
                    if let Err(error) = self.endpoint.send_report().await {
                        tracing::debug!(session_id = %self.session, %error, "RTCP report failed");
                    }
                    let stats = self.endpoint.stats();
                    let counters = MediaEvent::Counters {
                        sent: stats.packets_sent,
                        received: stats.packets_received,
                    };
                    self.report(counters);
                }
            }
        }
        let stats = MediaStats {
            stream: self.endpoint.stats(),
            playout: self.playout_stats(),
        };
        if let Some(reply) = handing_over {
            // The stream goes on elsewhere: no BYE, the parts move on as they are.
            let _ = reply.send(self.endpoint.into_leg());
            return stats;
        }
        if self.configured {
            // Best effort: the peer learns the stream ended (RFC 3550 §6.6).
            let _ = self.endpoint.send_bye(None).await;
        }
        stats
    }

    /// Tells the manager, without ever waiting for it: when its queue is full the event is
    /// held (in order, behind any held before) and handed over on a later turn; packet
    /// counters are dropped instead, as the next report supersedes them.
    fn report(&mut self, event: MediaEvent) {
        self.hand_over_held();
        if !self.held.is_empty() {
            self.hold(event);
            return;
        }
        match self.events.try_send((self.session, event)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full((_, event))) => self.hold(event),
        }
    }

    fn hold(&mut self, event: MediaEvent) {
        if matches!(event, MediaEvent::Counters { .. }) {
            return;
        }
        if self.held.len() >= HELD_EVENTS {
            self.held.pop_front();
            tracing::warn!(session_id = %self.session, "manager not keeping up with media events: one dropped");
        }
        self.held.push_back(event);
    }

    /// Hands held events over while the manager's queue has room.
    fn hand_over_held(&mut self) {
        while let Some(event) = self.held.pop_front() {
            match self.events.try_send((self.session, event)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full((_, event))) => {
                    self.held.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.held.clear();
                    return;
                }
            }
        }
    }

    async fn on_command(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Configure(media) => match self.endpoint.configure(&media) {
                Ok(()) => self.configured = true,
                Err(error) => {
                    tracing::warn!(session_id = %self.session, %error, "cannot configure media");
                }
            },
            MediaCommand::SetSending(on) => {
                if on && !self.sending {
                    self.endpoint.start_talkspurt();
                }
                self.sending = on;
            }
            MediaCommand::AttachSource(playback, source) => {
                if let Some((replaced, _)) = self.source.replace((playback, source)) {
                    self.finished(replaced, session_events::PlaybackEnd::Replaced);
                }
                self.endpoint.start_talkspurt();
            }
            MediaCommand::DetachSource => {
                if let Some((stopped, _)) = self.source.take() {
                    self.finished(stopped, session_events::PlaybackEnd::Stopped);
                }
            }
            MediaCommand::AttachSink(sink) => {
                self.sink = Some(sink);
                self.restart_playout();
            }
            MediaCommand::SendDtmf {
                digit,
                duration,
                reply,
            } => {
                let result = self.endpoint.send_dtmf(digit, duration).await;
                let _ = reply.send(result.map_err(crate::error::SessionError::Media));
            }
            MediaCommand::Stats { mut call, reply } => {
                call.rtp = Some(self.endpoint.stats());
                call.playout = Some(self.playout_stats());
                let _ = reply.send(*call);
            }
            // Handled by the loop.
            MediaCommand::HandOver(_) => {}
            #[cfg(test)]
            MediaCommand::MediaStats(reply) => {
                let _ = reply.send(MediaStats {
                    stream: self.endpoint.stats(),
                    playout: self.playout_stats(),
                });
            }
        }
    }

    async fn on_received(&mut self, received: Received) {
        match received {
            Received::Audio {
                frame,
                sequence,
                timestamp,
                ..
            } => {
                if self.sink.is_some() {
                    // The arrival time is an input of the buffer; tokio's clock, so that tests
                    // can run it in virtual time.
                    let now = tokio::time::Instant::now().into_std();
                    self.jitter.push(now, sequence, timestamp, frame);
                    self.receiving = true;
                }
                if self.echo && self.sending {
                    self.send(&frame).await;
                }
            }
            Received::Dtmf(digit) => {
                let duration = Duration::from_millis(u64::from(digit.duration) / 8);
                let event = MediaEvent::Dtmf {
                    digit: digit.digit,
                    duration,
                };
                self.report(event);
            }
            Received::Inactive(silent) => self.report(MediaEvent::Inactive(silent)),
            _ => {}
        }
    }

    /// One 20 ms frame from the jitter buffer to the sink: played, concealed or silence.
    fn play_out(&mut self) {
        let Some(sink) = &mut self.sink else {
            self.receiving = false;
            return;
        };
        let (frame, kind) = self.jitter.pop(tokio::time::Instant::now().into_std());
        if kind == Playout::Silence && self.jitter.depth() == 0 {
            self.silent_pulls += 1;
            if self.silent_pulls >= SILENT_PULLS_BEFORE_STOP {
                // The peer stopped sending (hold, recvonly, silence suppression): the clock
                // stops; the next packet starts it again and the buffer re-buffers.
                self.receiving = false;
                self.silent_pulls = 0;
            }
        } else {
            self.silent_pulls = 0;
        }
        if let Err(error) = sink.write_frame(&frame) {
            tracing::debug!(session_id = %self.session, %error, "audio sink refused a frame; detached");
            self.sink = None;
            self.restart_playout();
        }
    }

    /// A new (or no) sink: a fresh buffer, whose predecessor's counters are kept.
    fn restart_playout(&mut self) {
        let old = std::mem::replace(&mut self.jitter, JitterBuffer::new(JitterConfig::default()));
        self.playout_stats = add_jitter_stats(self.playout_stats, old.stats());
        self.receiving = false;
    }

    /// The playout counters of the whole call so far.
    fn playout_stats(&self) -> JitterStats {
        add_jitter_stats(self.playout_stats, self.jitter.stats())
    }

    /// One 20 ms frame out: the source's next, or silence (also for the tick on which the
    /// source ends, so the stream has no gap).
    async fn play_one(&mut self) {
        let frame = match &mut self.source {
            Some((playback, source)) => match source.next_frame() {
                Some(frame) => frame,
                None => {
                    let playback = *playback;
                    self.source = None;
                    self.finished(playback, session_events::PlaybackEnd::Completed);
                    AudioFrame::silence()
                }
            },
            None => AudioFrame::silence(),
        };
        self.send(&frame).await;
    }

    fn finished(&mut self, playback: u64, end: session_events::PlaybackEnd) {
        self.report(MediaEvent::PlaybackFinished { playback, end });
    }

    async fn send(&mut self, frame: &AudioFrame) {
        if !self.configured {
            return;
        }
        if let Err(error) = self.endpoint.send_frame(frame).await {
            tracing::debug!(session_id = %self.session, %error, "RTP send failed");
        }
    }
}

/// The sum of two buffers' counters.
fn add_jitter_stats(a: JitterStats, b: JitterStats) -> JitterStats {
    JitterStats {
        received: a.received + b.received,
        played: a.played + b.played,
        concealed: a.concealed + b.concealed,
        silence: a.silence + b.silence,
        late: a.late + b.late,
        duplicates: a.duplicates + b.duplicates,
        dropped: a.dropped + b.dropped,
        rebuffers: a.rebuffers + b.rebuffers,
        lost: a.lost + b.lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_media::audio::{ChannelSink, ToneSource, goertzel_power};
    use session_media::endpoint::{EndpointConfig, RtcpPort};
    use session_media::g711::G711Law;
    use session_media::rtp::RtpSender;
    use session_media::sdp::negotiate::{MediaConfig, OfferAnswer};
    use session_simnet::{Impairments, NodeId, SimNetwork};
    use std::time::Duration;
    use tokio::time::Instant;

    const PACKETS: u32 = 500;

    /// The call's media task, negotiated with a peer at `peer` (PCMU, rtcp-mux), playing what
    /// it receives into a channel.
    async fn call_media(
        peer: std::net::SocketAddr,
    ) -> (MediaHandle, tokio::sync::mpsc::Receiver<AudioFrame>) {
        let lo = "127.0.0.1:0".parse().unwrap();
        let endpoint = RtpEndpoint::bind(lo, RtcpPort::Muxed, EndpointConfig::default())
            .await
            .unwrap();
        let config = MediaConfig::default().rtcp_mux(true);
        let ip = "127.0.0.1".parse().unwrap();
        let mut ours = OfferAnswer::new(config.clone(), ip);
        let mut theirs = OfferAnswer::new(config, ip);
        let offer = ours.create_offer(endpoint.local_addr().unwrap().port());
        let answered = theirs
            .answer_offer(&offer.to_string().parse().unwrap(), peer.port())
            .unwrap();
        let agreed = ours
            .process_answer(&answered.answer.to_string().parse().unwrap())
            .unwrap();
        let (events, _) = mpsc::channel(8);
        let media = MediaHandle::spawn(
            SessionId::new(),
            endpoint,
            false,
            crate::config::IdleAudio::Silence,
            events,
        )
        .unwrap();
        media.send(MediaCommand::Configure(Box::new(agreed.media)));
        let (sink, frames) = ChannelSink::new(4 * PACKETS as usize);
        media.send(MediaCommand::AttachSink(Box::new(sink)));
        (media, frames)
    }

    /// Sends every datagram the network delivers up to `until`, at its delivery time.
    async fn deliver(
        net: &mut SimNetwork<Vec<u8>>,
        socket: &tokio::net::UdpSocket,
        to: std::net::SocketAddr,
        until: std::time::Instant,
    ) -> u64 {
        let mut sent = 0;
        while let Some(at) = net.next_delivery_at().filter(|at| *at <= until) {
            let now = Instant::now().into_std();
            if at > now {
                tokio::time::advance(at - now).await;
            }
            while let Some(delivery) = net.poll_delivery(Instant::now().into_std()) {
                socket.send_to(&delivery.payload, to).await.unwrap();
                sent += 1;
            }
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn received_audio_plays_out_through_the_jitter_buffer_despite_jitter_reordering_and_loss()
    {
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (media, mut frames) = call_media(peer.local_addr().unwrap()).await;
        let to = media.local_addr();
        // 30 ms of jitter on 20 ms of latency, 5 % loss, and some packets held back 50 ms.
        let mut net = SimNetwork::new(
            7,
            Impairments {
                latency: Duration::from_millis(20),
                jitter: Duration::from_millis(30),
                loss: 0.05,
                reorder: 0.05,
                ..Impairments::perfect()
            },
        );
        let mut tone = ToneSource::new(1000.0, 8000);
        let mut sender = RtpSender::new(0x5eed, 65_000, 1_000);
        let start = Instant::now().into_std();
        let mut delivered = 0;
        for i in 0..PACKETS {
            let at = start + FRAME_DURATION * i;
            delivered += deliver(&mut net, &peer, to, at).await;
            let mut payload = [0u8; 160];
            let frame = tone.next_frame().unwrap();
            G711Law::Ulaw.encode_frame(&frame, &mut payload);
            let packet = sender.audio(0, &payload, 160).unwrap().to_vec();
            net.send(at, NodeId(0), NodeId(1), packet);
        }
        delivered += deliver(&mut net, &peer, to, start + Duration::from_secs(60)).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        // The task reads the last datagrams in its own time: ask until it has them all (or
        // give up after a second of virtual time and let the assertions say what is missing).
        let mut stats = None;
        for _ in 0..50 {
            let (reply, answer) = oneshot::channel();
            media.send(MediaCommand::MediaStats(reply));
            let answer = answer.await.unwrap();
            let complete = answer.stream.packets_received == delivered;
            stats = Some(answer);
            if complete {
                break;
            }
            tokio::time::advance(FRAME_DURATION).await;
        }
        let stats = stats.unwrap();
        let playout = stats.playout;
        assert_eq!(stats.stream.packets_received, delivered);
        assert_eq!(
            playout.received, delivered,
            "every packet went into the buffer"
        );
        let lost = u64::from(PACKETS) - delivered;
        assert!((10..=45).contains(&lost), "about 5 % lost: {lost}");
        assert!(playout.lost > 0, "{playout:?}");
        assert!(playout.concealed > 0, "losses are concealed: {playout:?}");
        assert!(
            playout.played >= delivered * 95 / 100,
            "reordered and jittered packets still play: {playout:?}"
        );
        // The sink got a continuous 20 ms stream: one frame per tick since the first arrival,
        // the 1 kHz tone in the played ones.
        let mut received = Vec::new();
        while let Ok(frame) = frames.try_recv() {
            received.push(frame);
        }
        assert!(
            received.len() as u64 >= u64::from(PACKETS) - 5,
            "{} frames reached the sink",
            received.len()
        );
        assert!(
            received.len() as u64 <= u64::from(PACKETS) + 20,
            "the playout clock stops once the stream has: {} frames",
            received.len()
        );
        let with_tone = received
            .iter()
            .filter(|f| {
                let tone = goertzel_power(f.samples(), 1000.0);
                tone > 1000.0 && tone > 100.0 * goertzel_power(f.samples(), 600.0)
            })
            .count() as u64;
        assert!(
            with_tone >= playout.played,
            "{with_tone} frames carry the tone"
        );
        media.stop().await;
    }
}
