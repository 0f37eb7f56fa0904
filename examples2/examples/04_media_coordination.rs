//! # 04 — media coordination
//!
//! Two media endpoints on loopback, the way two calls' media would meet:
//!
//! 1. SDP offer/answer — Alice offers PCMU, PCMA and telephone-event; Bob answers;
//! 2. a tone — Alice plays 1 kHz for one second; Bob records it to a WAV file and checks, by
//!    Goertzel on the recording, that 1 kHz is what arrived;
//! 3. DTMF — Alice sends `1`, `#`, `5` as RFC 4733 events; Bob's detector reports each once;
//! 4. hold — Alice re-offers `sendonly`; Bob's side reports that it is held and answers
//!    `recvonly`;
//! 5. RTCP — reports both ways give loss, jitter, round-trip time and a MOS estimate.
//!
//! Run: `cargo run -p examples2 --example 04_media_coordination`. Exits non-zero if a check
//! fails. Nothing sleeps to wait: every wait is an await with a timeout.

use std::time::Duration;

use examples2::{check, section};
use session_media::audio::{
    AudioSink, AudioSource, ToneSource, WavRecorder, WavSource, goertzel_power,
};
use session_media::endpoint::{EndpointConfig, Received, RtcpPort, RtpEndpoint};
use session_media::sdp::MediaDirection;
use session_media::sdp::negotiate::{MediaChange, MediaConfig, OfferAnswer};
use session_media::{FRAME_DURATION, rtcp::RtcpPacket};
use tokio::time::timeout;

/// Upper bound for any wait; on loopback everything takes milliseconds.
const WAIT: Duration = Duration::from_secs(5);
const TONE_FRAMES: usize = 50; // one second

type BoxError = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let lo = "127.0.0.1".parse()?;

    section("1. SDP offer/answer");
    let mut alice = RtpEndpoint::bind(
        "127.0.0.1:0".parse()?,
        RtcpPort::NextPort,
        EndpointConfig::default(),
    )
    .await?;
    let mut bob = RtpEndpoint::bind(
        "127.0.0.1:0".parse()?,
        RtcpPort::NextPort,
        EndpointConfig::default(),
    )
    .await?;
    let mut alice_sdp = OfferAnswer::new(MediaConfig::default(), lo);
    let mut bob_sdp = OfferAnswer::new(MediaConfig::default(), lo);
    let offer = alice_sdp
        .create_offer(alice.local_addr()?.port())
        .to_string();
    println!("{offer}");
    let answered = bob_sdp.answer_offer(&offer.parse()?, bob.local_addr()?.port())?;
    let answer = answered.answer.to_string();
    println!("{answer}");
    let agreed = alice_sdp.process_answer(&answer.parse()?)?;
    check(
        agreed.media.codec.name == "PCMU",
        "PCMU agreed (first in the offerer's order)",
    );
    check(
        agreed.media.telephone_event == Some(101),
        "telephone-event agreed on payload type 101",
    );
    check(answer.contains("a=sendrecv"), "answer is sendrecv");
    alice.configure(&agreed.media)?;
    bob.configure(&answered.media)?;

    section("2. a 1 kHz tone, recorded to WAV by Bob");
    let wav = std::env::temp_dir().join(format!("session-media-04-{}.wav", std::process::id()));
    let mut recorder = WavRecorder::create(&wav)?;
    let send = async {
        let mut tone = ToneSource::new(1000.0, 8000);
        let mut pace = tokio::time::interval(FRAME_DURATION);
        for _ in 0..TONE_FRAMES {
            pace.tick().await;
            if let Some(frame) = tone.next_frame() {
                alice.send_frame(&frame).await?;
            }
        }
        Ok::<_, session_media::Error>(())
    };
    let receive = async {
        let mut frames = 0;
        while frames < TONE_FRAMES {
            if let Received::Audio { frame, .. } = timeout(WAIT, bob.recv()).await?? {
                recorder.write_frame(&frame)?;
                frames += 1;
            }
        }
        Ok::<_, BoxError>(frames)
    };
    let (sent, received) = tokio::join!(send, receive);
    sent?;
    let frames = received?;
    recorder.finalize()?;
    check(
        frames == TONE_FRAMES,
        format!("Bob received {frames} frames"),
    );
    let mut samples = Vec::new();
    let mut source = WavSource::open(&wav)?;
    while let Some(frame) = source.next_frame() {
        samples.extend_from_slice(frame.samples());
    }
    std::fs::remove_file(&wav)?;
    let at_1k = goertzel_power(&samples, 1000.0);
    let strongest_other = [440.0, 697.0, 1209.0, 1500.0, 2000.0]
        .into_iter()
        .map(|f| goertzel_power(&samples, f))
        .fold(0.0, f64::max);
    check(
        samples.len() == TONE_FRAMES * 160,
        "the recording holds one second of audio",
    );
    check(
        at_1k > 100.0 * strongest_other,
        format!(
            "the recording is a 1 kHz tone ({:.0} dB above any other probed frequency)",
            10.0 * (at_1k / strongest_other.max(1e-9)).log10()
        ),
    );

    section("3. DTMF as RFC 4733 events");
    let mut detected = String::new();
    for digit in ['1', '#', '5'] {
        alice.send_dtmf(digit, Duration::from_millis(100)).await?;
        loop {
            match timeout(WAIT, bob.recv()).await?? {
                Received::Dtmf(d) => {
                    check(
                        d.ended && d.duration == 800,
                        format!("digit {} lasted 800 samples (100 ms)", d.digit),
                    );
                    detected.push(d.digit);
                    break;
                }
                _ => continue,
            }
        }
    }
    check(
        detected == "1#5",
        format!("Bob detected {detected:?}, each digit once"),
    );

    section("4. hold and resume by re-offer");
    alice_sdp.set_local_direction(MediaDirection::SendOnly);
    let hold = alice_sdp.create_offer(alice.local_addr()?.port());
    let bob_side = bob_sdp.answer_offer(&hold.to_string().parse()?, bob.local_addr()?.port())?;
    check(
        bob_side.changes.contains(&MediaChange::HeldByRemote),
        "Bob's side sees it is held",
    );
    check(
        bob_side.media.direction == MediaDirection::RecvOnly,
        "Bob answers recvonly",
    );
    let alice_side = alice_sdp.process_answer(&bob_side.answer.to_string().parse()?)?;
    check(
        alice_side.media.direction == MediaDirection::SendOnly,
        "Alice now only sends",
    );
    alice_sdp.set_local_direction(MediaDirection::SendRecv);
    let resume = alice_sdp.create_offer(alice.local_addr()?.port());
    let bob_side = bob_sdp.answer_offer(&resume, bob.local_addr()?.port())?;
    check(
        bob_side.changes.contains(&MediaChange::ResumedByRemote),
        "Bob's side sees the resume",
    );
    alice_sdp.process_answer(&bob_side.answer)?;

    section("5. RTCP statistics");
    for _ in 0..5 {
        bob.send_frame(&session_media::AudioFrame::silence())
            .await?;
    }
    alice.send_report().await?;
    loop {
        if let Received::Rtcp(p) = timeout(WAIT, bob.recv()).await?? {
            check(
                matches!(p.first(), Some(RtcpPacket::SenderReport { .. })),
                "Bob got Alice's SR",
            );
            break;
        }
    }
    bob.send_report().await?;
    loop {
        if let Received::Rtcp(_) = timeout(WAIT, alice.recv()).await?? {
            break;
        }
    }
    let stats = alice.stats();
    println!("  Alice: {stats:?}");
    check(stats.rtt.is_some(), "round-trip time from LSR/DLSR");
    check(
        stats.packets_lost == 0 && stats.mos.is_some_and(|mos| mos > 4.0),
        format!("no loss, MOS {:.2}", stats.mos.unwrap_or_default()),
    );
    let bob_stats = bob.stats();
    check(
        bob_stats.packets_received as usize >= TONE_FRAMES + 3 * 7,
        "Bob counted every packet",
    );
    Ok(())
}
