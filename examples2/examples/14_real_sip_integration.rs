//! # 14 — real SIP integration
//!
//! Two session managers talk real SIP over loopback UDP, with real RTP between them, and
//! every claim is checked on the far side:
//!
//! 1. a call — Alice calls Bob; both legs are active and media has started on each;
//! 2. audio both ways — Alice plays 440 Hz, Bob 1 kHz; each side's recording is analysed by
//!    Goertzel and holds the other side's tone; then Bob plays a prompt from a 44.1 kHz stereo
//!    WAV file (resampled to 8 kHz mono), waits for it to finish, and Alice hears it at its
//!    pitch and then silence (RTP goes on: a peer that times out on missing RTP keeps the call);
//! 3. hold and resume — Alice holds (`sendonly`): Bob is told, stops sending (Alice hears
//!    silence) and still hears Alice; after resume both directions flow again;
//! 4. DTMF — RFC 4733 digits from Alice reach Bob's handler and Bob's event bus;
//! 5. transfer — Bob sends Alice to his colleague Carol, another user of Bob's manager
//!    (REFER): Alice's handler agrees, her phone calls Carol, Bob's leg ends, and Carol's 2 kHz
//!    tone reaches Alice on the new call;
//! 6. hang-up — Carol hangs up; RTP statistics, then nothing held on either side.
//!
//! Run: `cargo run -p examples2 --example 14_real_sip_integration`. Exits non-zero if a check
//! fails.

use examples2::{WAIT, check, loopback, released, section, within};
use session_core::crates::events::EventKind;
use session_core::crates::media::AudioFrame;
use session_core::crates::media::audio::{ChannelSink, ToneSource, WavSource, goertzel_power};
use session_core::crates::media::hound;
use session_core::{
    CallDecision, CallHandler, CallSession, CallState, DtmfMethod, Filter, IncomingCall,
    SessionEvent, TransferDecision, TransferRequest,
};
use std::time::Duration;
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

/// The frequencies each party plays.
const ALICE_HZ: f64 = 440.0;
const BOB_HZ: f64 = 1000.0;
const CAROL_HZ: f64 = 2000.0;
/// The pitch of Bob's prompt.
const PROMPT_HZ: f64 = 1500.0;

/// Writes a one-second prompt of `hz` as a 44.1 kHz stereo 16-bit WAV file, as a studio
/// would deliver it; the library plays it at 8 kHz mono.
fn write_prompt(hz: f64) -> Result<std::path::PathBuf, BoxError> {
    let path = std::env::temp_dir().join(format!("example-14-prompt-{}.wav", std::process::id()));
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec)?;
    for i in 0..44_100 {
        let t = f64::from(i) / 44_100.0;
        let sample = (8000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16;
        writer.write_sample(sample)?;
        writer.write_sample(sample)?;
    }
    writer.finalize()?;
    Ok(path)
}

/// What a phone's handler noticed.
#[derive(Debug)]
enum Seen {
    Incoming(CallSession),
    Established(CallSession),
    Digit(char, DtmfMethod),
    Held(bool),
    TransferAsked(String),
}

/// A phone that answers every call and agrees to every transfer, and tells the example.
struct Phone {
    seen: mpsc::UnboundedSender<Seen>,
}

impl CallHandler for Phone {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let _ = self.seen.send(Seen::Incoming(call.session.clone()));
        CallDecision::accept()
    }

    fn on_call_established(&self, call: &CallSession) {
        let _ = self.seen.send(Seen::Established(call.clone()));
    }

    fn on_dtmf(&self, _call: &CallSession, digit: char, method: DtmfMethod) {
        let _ = self.seen.send(Seen::Digit(digit, method));
    }

    fn on_remote_hold(&self, _call: &CallSession, held: bool) {
        let _ = self.seen.send(Seen::Held(held));
    }

    fn on_transfer_request(
        &self,
        _call: &CallSession,
        request: &TransferRequest,
    ) -> TransferDecision {
        let _ = self
            .seen
            .send(Seen::TransferAsked(request.target.to_string()));
        TransferDecision::Accept
    }
}

/// Waits for the next thing `seen` reports that `pick` accepts, skipping the rest.
async fn expect<T>(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    mut pick: impl FnMut(Seen) -> Option<T>,
) -> Result<T, BoxError> {
    within("the handler", async {
        while let Some(item) = seen.recv().await {
            if let Some(found) = pick(item) {
                return Ok(found);
            }
        }
        Err("the handler is gone".into())
    })
    .await
}

/// Attaches a tone of `hz` and a recorder to `call`; returns the recorder's receiving end.
async fn play_and_record(
    call: &CallSession,
    hz: f64,
) -> Result<mpsc::Receiver<AudioFrame>, BoxError> {
    let (sink, ear) = ChannelSink::new(64);
    call.attach_sink(Box::new(sink)).await?;
    call.attach_source(Box::new(ToneSource::new(hz, 8000)))
        .await?;
    Ok(ear)
}

/// Forgets what `ear` has buffered, then returns the next 200 ms of audio.
async fn listen(ear: &mut mpsc::Receiver<AudioFrame>) -> Result<Vec<i16>, BoxError> {
    while ear.try_recv().is_ok() {}
    let mut samples = Vec::new();
    for _ in 0..10 {
        let frame = within("audio", ear.recv()).await.ok_or("no more audio")?;
        samples.extend_from_slice(frame.samples());
    }
    Ok(samples)
}

/// Whether `samples` hold `tone` and none of the `others` (at least 20 dB above each), and by
/// how much, in words.
fn hears(samples: &[i16], tone: f64, others: &[f64]) -> (bool, String) {
    let power = goertzel_power(samples, tone);
    let loudest_other = others
        .iter()
        .map(|f| goertzel_power(samples, *f))
        .fold(1e-9, f64::max);
    let db = 10.0 * (power / loudest_other).log10();
    // A pure tone through G.711 leaves the other bins all but empty: past 60 dB, say so.
    let margin = if db > 60.0 {
        "more than 60 dB".to_owned()
    } else {
        format!("{db:.0} dB")
    };
    (db >= 20.0, margin)
}

/// Waits until `ear` has been quiet for 300 ms (frames already in flight may still arrive
/// first); whether that happened within [`WAIT`].
async fn goes_quiet(ear: &mut mpsc::Receiver<AudioFrame>) -> bool {
    let quiet = async {
        while tokio::time::timeout(Duration::from_millis(300), ear.recv())
            .await
            .is_ok()
        {}
    };
    tokio::time::timeout(WAIT, quiet).await.is_ok()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (alice_saw, mut at_alice) = mpsc::unbounded_channel();
    let (bob_saw, mut at_bob) = mpsc::unbounded_channel();
    let alice = loopback(44_400..=44_499)
        .handler(Phone { seen: alice_saw })
        .start()
        .await?;
    let bob = loopback(44_500..=44_599)
        .handler(Phone { seen: bob_saw })
        .start()
        .await?;
    let mut bob_digits = bob
        .events()
        .subscribe(Filter::kind(EventKind::DtmfReceived));
    let mut alice_media = alice
        .events()
        .subscribe(Filter::kind(EventKind::MediaStarted));

    section("1. a real call over loopback");
    println!(
        "       alice at {}, bob at {}",
        alice.local_addr(),
        bob.local_addr()
    );
    let call = alice.call(&format!("sip:bob@{}", bob.local_addr())).await?;
    within("bob's answer", call.answered()).await?;
    let bobs_leg = expect(&mut at_bob, |seen| match seen {
        Seen::Incoming(leg) => Some(leg),
        _ => None,
    })
    .await?;
    within("bob's side", bobs_leg.wait_for(CallState::is_established)).await;
    let started = within("media", alice_media.recv()).await?;
    if let SessionEvent::MediaStarted {
        codec,
        local,
        remote,
        ..
    } = &*started
    {
        println!("       alice's RTP {local} ⇄ bob's RTP {remote}, {codec}");
    }
    check(
        call.state() == CallState::Active && bobs_leg.state() == CallState::Active,
        "both legs are active",
    );
    check(
        alice.ports().in_use() == 1 && bob.ports().in_use() == 1,
        "each side has one RTP port pair",
    );

    section("2. audio both ways");
    let mut alice_ear = play_and_record(&call, ALICE_HZ).await?;
    let mut bob_ear = play_and_record(&bobs_leg, BOB_HZ).await?;
    let (ok, db) = hears(&listen(&mut bob_ear).await?, ALICE_HZ, &[BOB_HZ, CAROL_HZ]);
    check(
        ok,
        format!("bob hears alice's 440 Hz ({db} above the other tones)"),
    );
    let (ok, db) = hears(
        &listen(&mut alice_ear).await?,
        BOB_HZ,
        &[ALICE_HZ, CAROL_HZ],
    );
    check(
        ok,
        format!("alice hears bob's 1 kHz ({db} above the other tones)"),
    );

    let prompt = write_prompt(PROMPT_HZ)?;
    within(
        "bob plays the prompt",
        bobs_leg.attach_source(Box::new(WavSource::open(&prompt)?)),
    )
    .await?;
    // The first 200 ms may still carry the tone it replaced (in flight, in the jitter buffer).
    listen(&mut alice_ear).await?;
    let (ok, db) = hears(
        &listen(&mut alice_ear).await?,
        PROMPT_HZ,
        &[BOB_HZ, ALICE_HZ],
    );
    check(
        ok,
        format!("alice hears bob's 44.1 kHz stereo prompt at its pitch, 1.5 kHz ({db} above)"),
    );
    within("the prompt's end", bobs_leg.playback_finished()).await;
    let after = listen(&mut alice_ear).await?;
    let tail = &after[after.len() / 2..];
    check(
        tail.iter().all(|s| s.unsigned_abs() < 100),
        "bob's playback_finished returned, and alice then hears silence, still as RTP",
    );
    std::fs::remove_file(&prompt)?;
    within(
        "bob's tone again",
        bobs_leg.attach_source(Box::new(ToneSource::new(BOB_HZ, 8000))),
    )
    .await?;

    section("3. hold and resume");
    within("hold", call.hold()).await?;
    let held = expect(&mut at_bob, |seen| match seen {
        Seen::Held(held) => Some(held),
        _ => None,
    })
    .await?;
    check(
        held && call.state() == CallState::OnHold && bobs_leg.is_remote_hold(),
        "alice holds; bob's handler is told, and bob's leg knows it is held",
    );
    check(
        goes_quiet(&mut alice_ear).await,
        "bob stops sending (answered recvonly): alice hears nothing",
    );
    let (ok, _) = hears(&listen(&mut bob_ear).await?, ALICE_HZ, &[BOB_HZ]);
    check(ok, "bob still hears alice (she only sends while holding)");
    within("resume", call.resume()).await?;
    let held = expect(&mut at_bob, |seen| match seen {
        Seen::Held(held) => Some(held),
        _ => None,
    })
    .await?;
    check(
        !held && call.state() == CallState::Active,
        "alice resumes; bob is told",
    );
    let (ok, db) = hears(&listen(&mut alice_ear).await?, BOB_HZ, &[ALICE_HZ]);
    check(ok, format!("alice hears bob again ({db} above the others)"));

    section("4. DTMF over RTP (RFC 4733)");
    within("DTMF", call.send_dtmf("159#", DtmfMethod::Rfc4733)).await?;
    let mut by_handler = String::new();
    while by_handler.len() < 4 {
        by_handler.push(
            expect(&mut at_bob, |seen| match seen {
                Seen::Digit(digit, DtmfMethod::Rfc4733) => Some(digit),
                _ => None,
            })
            .await?,
        );
    }
    let mut on_bus = String::new();
    while on_bus.len() < 4 {
        if let SessionEvent::DtmfReceived {
            digit, session_id, ..
        } = *within("bob's bus", bob_digits.recv()).await?
            && session_id == bobs_leg.id()
        {
            on_bus.push(digit);
        }
    }
    check(
        by_handler == "159#" && on_bus == "159#",
        "bob's handler and bob's event bus both got 1, 5, 9, # in order",
    );

    section("5. transfer: bob sends alice to carol");
    let carol_uri = format!("sip:carol@{}", bob.local_addr());
    within("the transfer", bobs_leg.transfer(&carol_uri)).await?;
    let asked = expect(&mut at_alice, |seen| match seen {
        Seen::TransferAsked(target) => Some(target),
        _ => None,
    })
    .await?;
    check(
        asked == carol_uri,
        format!("alice's handler was asked to call {asked} and agreed"),
    );
    let carols_leg = expect(&mut at_bob, |seen| match seen {
        Seen::Incoming(leg) if leg.local_uri().contains("carol") => Some(leg),
        _ => None,
    })
    .await?;
    within(
        "carol's side",
        carols_leg.wait_for(CallState::is_established),
    )
    .await;
    check(
        within("bob's old leg", bobs_leg.ended()).await == CallState::Terminated
            && within("alice's old leg", call.ended()).await == CallState::Terminated,
        "the transfer succeeded: the first call ended on both sides",
    );
    let new_leg = call
        .transferred_to()
        .ok_or("the first call does not know its successor")?;
    let to_carol = expect(&mut at_alice, |seen| match seen {
        Seen::Established(leg) if leg.id() == new_leg => Some(leg),
        _ => None,
    })
    .await?;
    check(
        to_carol.state() == CallState::Active && to_carol.remote_uri() == carol_uri,
        "alice's new call to carol is active",
    );
    let mut alice_ear = play_and_record(&to_carol, ALICE_HZ).await?;
    let mut carol_ear = play_and_record(&carols_leg, CAROL_HZ).await?;
    let (ok, db) = hears(
        &listen(&mut alice_ear).await?,
        CAROL_HZ,
        &[ALICE_HZ, BOB_HZ],
    );
    check(
        ok,
        format!("alice hears carol's 2 kHz on the new call ({db} above the others)"),
    );
    let (ok, _) = hears(
        &listen(&mut carol_ear).await?,
        ALICE_HZ,
        &[CAROL_HZ, BOB_HZ],
    );
    check(ok, "and carol hears alice");

    section("6. hang-up");
    let stats = within("statistics", to_carol.stats()).await?;
    let rtp = stats.rtp.ok_or("no RTP statistics")?;
    println!(
        "       alice → carol: {} RTP packets sent, {} received, {} lost, jitter {:.1} ms",
        rtp.packets_sent, rtp.packets_received, rtp.packets_lost, rtp.jitter_ms
    );
    check(
        rtp.packets_sent >= 10 && rtp.packets_received >= 10 && rtp.packets_lost == 0,
        "RTP flowed both ways without loss",
    );
    within("carol hangs up", carols_leg.hangup()).await?;
    check(
        within("alice's side", to_carol.ended()).await == CallState::Terminated,
        "carol hangs up; alice's call ends",
    );
    check(
        released(&alice).await && released(&bob).await,
        "nothing is held on either side: no call, no admission slot, no RTP port",
    );
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(())
}
