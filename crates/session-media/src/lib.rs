//! Media for session-core: SDP offer/answer, RTP/RTCP endpoints, G.711, DTMF (RFC 4733),
//! an adaptive jitter buffer and an N-party mixer.
//!
//! # Map
//!
//! | module | what | I/O |
//! | --- | --- | --- |
//! | [`sdp`] | SDP parser and writer (RFC 8866); [`sdp::negotiate`]: offer/answer (RFC 3264) | none |
//! | [`g711`] | µ-law / A-law, table-driven, bit-exact to the ITU reference | none |
//! | [`frame`] | [`AudioFrame`]: 20 ms of 8 kHz 16-bit mono, on the stack | none |
//! | [`dtmf`] | RFC 4733 telephone-event encoder and detector | none |
//! | [`jitter`] | adaptive jitter buffer with concealment (`push(now, ..)`, `pop(now)`) | none |
//! | [`mixer`] | mix-minus conference mixer driven by the caller's 20 ms tick | none |
//! | [`reframe`] | G.711 payloads of any packet time (10/20/30 ms) into 20 ms frames | none |
//! | [`rtp`] | RTP parse/build over `rtp-rs`, sender state (SSRC, sequence, timestamp, marker) | none |
//! | [`rtcp`] | SR/RR/SDES/BYE, reception statistics, RTT, MOS estimate | none |
//! | [`audio`] | tone, silence, WAV source/recorder (`hound`), null and channel sinks, Goertzel | files |
//! | [`endpoint`] | [`RtpEndpoint`](endpoint::RtpEndpoint): one audio stream on tokio UDP | UDP |
//! | [`relay`] | zero-copy RTP relay leg | UDP |
//!
//! Everything except `endpoint`, `relay` and the WAV file functions is sans-IO: it takes
//! time as a `now: Instant` argument and never reads a clock, spawns or blocks, so it is
//! tested with virtual time and can run on any thread (the mixer on a dedicated media thread).
//! Nothing here panics on input from the network: parsers return
//! [`Error`] values, which implement [`session_types::Classify`] — no common codec is
//! [`Error::NoCommonCodec`], classified `Incompatible`, which the session layer answers with 488.
//!
//! # A call's media, end to end
//!
//! ```no_run
//! use std::time::Duration;
//! use session_media::audio::{AudioSource, ToneSource};
//! use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
//! use session_media::sdp::{SessionDescription, negotiate::{MediaConfig, OfferAnswer}};
//!
//! # async fn call(remote_offer: &str) -> session_media::Result<()> {
//! // 1. Open the stream's sockets on a port pair leased from session-resources' pool; the
//! //    lease is released when the endpoint is dropped. Exhaustion → Err, classified 503.
//! let pool = session_resources::PortPool::new(20_000..30_000)?;
//! let ip = "192.0.2.10".parse().unwrap();
//! let mut ep = RtpEndpoint::bind_from_pool(&pool, ip, RtcpPort::NextPort, EndpointConfig::default()).await?;
//! // 2. Answer the peer's offer; no common codec gives Err(NoCommonCodec) → 488.
//! let mut sdp = OfferAnswer::new(MediaConfig::default(), ip);
//! let offer: SessionDescription = remote_offer.parse()?;
//! let answered = sdp.answer_offer(&offer, ep.local_addr()?.port())?;
//! let _body_for_200_ok = answered.answer.to_string();
//! ep.configure(&answered.media)?;
//! // 3. Media: send a tone and a digit, receive frames and digits.
//! let mut tone = ToneSource::new(425.0, 6000);
//! for _ in 0..50 {
//!     if let Some(frame) = tone.next_frame() {
//!         ep.send_frame(&frame).await?;
//!     }
//! }
//! ep.send_dtmf('1', Duration::from_millis(100)).await?;
//! while let Received::Audio { frame, .. } = ep.recv().await? {
//!     let _ = frame.energy();
//! }
//! // 4. A re-INVITE: answer it and see what changed (hold, resume, new address).
//! # let reoffer = offer.clone();
//! let again = sdp.answer_offer(&reoffer, ep.local_addr()?.port())?;
//! for change in &again.changes {
//!     tracing::info!(?change, "media changed");
//! }
//! # Ok(()) }
//! ```
//!
//! # Conference mixing on a media thread
//!
//! ```
//! use session_media::{AudioFrame, mixer::Mixer};
//!
//! let mut mixer = Mixer::new();
//! let people: Vec<_> = (0..3).map(|_| mixer.add_participant()).collect();
//! // Every 20 ms: push what each said, tick, send each its mix.
//! for (i, id) in people.iter().enumerate() {
//!     mixer.push_frame(*id, &AudioFrame::from_samples(&[1000 * i as i16; 160]));
//! }
//! mixer.tick();
//! assert_eq!(mixer.output(people[0]).unwrap().samples()[0], 3000); // 1000 + 2000
//! assert_eq!(mixer.loudest(), Some(people[2]));
//! ```
//!
//! # Decisions
//!
//! SDP is parsed by our own small parser rather than `sdp-rs`; the reasons are in
//! `crates/session-media/DECISIONS.md`.

pub mod audio;
pub mod dtmf;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod reframe;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdp;

pub use error::{Error, Result};
pub use frame::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
/// The WAV crate behind [`audio::WavSource`] and [`audio::WavRecorder`] (its errors are in
/// [`Error::Wav`], its format in [`audio::WavSource::spec`]), to write prompts of any format.
pub use hound;
