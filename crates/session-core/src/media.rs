//! One call's media: a small task that owns the call's [`RtpEndpoint`] and moves audio between
//! it and the application's source and sink, echoes when asked, sends DTMF and RTCP, and
//! reports digits and silence to the manager.
//!
//! The manager talks to it through [`MediaHandle`]; dropping the handle (or
//! [`MediaHandle::stop`]) ends the task, which sends RTCP BYE and drops the endpoint, giving
//! its ports back to the pool.

use session_media::audio::{AudioSink, AudioSource};
use session_media::endpoint::{Received, RtpEndpoint};
use session_media::rtcp::StreamStats;
use session_media::sdp::negotiate::NegotiatedMedia;
use session_media::{AudioFrame, FRAME_DURATION};
use session_types::SessionId;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
    AttachSource(BoxedSource),
    AttachSink(BoxedSink),
    SendDtmf {
        digit: char,
        duration: Duration,
        reply: oneshot::Sender<Result<(), session_media::Error>>,
    },
    Stats(oneshot::Sender<StreamStats>),
}

/// What a media task tells the manager.
#[derive(Debug)]
pub(crate) enum MediaEvent {
    /// A digit arrived as RFC 4733 events.
    Dtmf { digit: char, duration: Duration },
    /// No RTP for this long.
    Inactive(Duration),
    /// Packets so far, reported with each RTCP interval (for the tracer's audio checks).
    Counters { sent: u64, received: u64 },
}

/// The manager's end of a media task.
pub(crate) struct MediaHandle {
    commands: mpsc::UnboundedSender<MediaCommand>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MediaHandle {
    /// Starts the task for `endpoint`. With `echo`, every received frame is sent back.
    pub(crate) fn spawn(
        session: SessionId,
        endpoint: RtpEndpoint,
        echo: bool,
        events: mpsc::UnboundedSender<(SessionId, MediaEvent)>,
    ) -> Result<Self, session_media::Error> {
        let local = endpoint.local_addr()?;
        let (commands, inbox) = mpsc::unbounded_channel();
        let task = MediaTask {
            session,
            endpoint,
            echo,
            sending: true,
            configured: false,
            source: None,
            sink: None,
            events,
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
        // The task only stops when the handle is dropped or the endpoint failed for good;
        // either way the command has nobody to act on it.
        let _ = self.commands.send(command);
    }

    /// Ends the task (RTCP BYE) and waits until it has dropped the endpoint, so its ports
    /// are back in the pool when this returns.
    pub(crate) async fn stop(self) {
        drop(self.commands);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "media task failed");
        }
    }
}

struct MediaTask {
    session: SessionId,
    endpoint: RtpEndpoint,
    echo: bool,
    sending: bool,
    configured: bool,
    source: Option<BoxedSource>,
    sink: Option<BoxedSink>,
    events: mpsc::UnboundedSender<(SessionId, MediaEvent)>,
}

impl MediaTask {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<MediaCommand>) {
        let mut frames = tokio::time::interval(FRAME_DURATION);
        frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reports = tokio::time::interval(RTCP_INTERVAL);
        reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            let playing = self.configured && self.sending && self.source.is_some();
            tokio::select! {
                biased;
                command = inbox.recv() => match command {
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
                _ = reports.tick(), if self.configured => {
                    if let Err(error) = self.endpoint.send_report().await {
                        tracing::debug!(session_id = %self.session, %error, "RTCP report failed");
                    }
                    let stats = self.endpoint.stats();
                    let counters = MediaEvent::Counters {
                        sent: stats.packets_sent,
                        received: stats.packets_received,
                    };
                    let _ = self.events.send((self.session, counters));
                }
            }
        }
        if self.configured {
            // Best effort: the peer learns the stream ended (RFC 3550 §6.6).
            let _ = self.endpoint.send_bye(None).await;
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
            MediaCommand::AttachSource(source) => {
                self.source = Some(source);
                self.endpoint.start_talkspurt();
            }
            MediaCommand::AttachSink(sink) => self.sink = Some(sink),
            MediaCommand::SendDtmf {
                digit,
                duration,
                reply,
            } => {
                let result = self.endpoint.send_dtmf(digit, duration).await;
                let _ = reply.send(result);
            }
            MediaCommand::Stats(reply) => {
                let _ = reply.send(self.endpoint.stats());
            }
        }
    }

    async fn on_received(&mut self, received: Received) {
        match received {
            Received::Audio { frame, .. } => {
                if let Some(sink) = &mut self.sink
                    && let Err(error) = sink.write_frame(&frame)
                {
                    tracing::debug!(session_id = %self.session, %error, "audio sink refused a frame; detached");
                    self.sink = None;
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
                let _ = self.events.send((self.session, event));
            }
            Received::Inactive(silent) => {
                let _ = self
                    .events
                    .send((self.session, MediaEvent::Inactive(silent)));
            }
            _ => {}
        }
    }

    async fn play_one(&mut self) {
        let Some(source) = &mut self.source else {
            return;
        };
        match source.next_frame() {
            Some(frame) => self.send(&frame).await,
            None => self.source = None,
        }
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
