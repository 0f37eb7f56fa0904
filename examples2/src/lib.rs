//! Helpers shared by the numbered examples in `examples2/examples/`: each example checks its
//! own outcome with [`check`] and exits non-zero when an expectation does not hold.

use std::fmt::Display;

/// Prints a passing check, or prints the failure and exits the process with status 1.
pub fn check(condition: bool, what: impl Display) {
    if condition {
        println!("  ok   {what}");
    } else {
        eprintln!("  FAIL {what}");
        std::process::exit(1);
    }
}

/// Prints a section heading.
pub fn section(title: impl Display) {
    println!("\n== {title}");
}

// ---- helpers for the examples that run real calls on loopback ----

use session_core::{SessionManager, SessionManagerBuilder};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Upper bound for any wait of a call on loopback, where everything takes milliseconds.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `future` for at most [`WAIT`]; when it takes longer, prints what was awaited and exits
/// the process with status 1.
pub async fn within<F: Future>(what: impl Display, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => {
            eprintln!("  FAIL {what}: no outcome within {WAIT:?}");
            std::process::exit(1);
        }
    }
}

/// A manager builder for loopback: SIP on `127.0.0.1` with a port the system picks, RTP from
/// `media_ports` (give each manager of each example its own range), and a short shutdown grace.
pub fn loopback(media_ports: RangeInclusive<u16>) -> SessionManagerBuilder {
    SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .media_ports(media_ports)
        .shutdown_grace(Duration::from_millis(500))
}

/// Waits (at most [`WAIT`]) until `manager` holds nothing: no call, no admission slot, no RTP
/// port. Returns whether it got there. A call's state turns final before its media task has
/// given its ports back, so this is what to wait for before counting resources.
pub async fn released(manager: &SessionManager) -> bool {
    let idle = || {
        manager.active_calls() == 0
            && manager.admission().active() == 0
            && manager.ports().in_use() == 0
    };
    let wait = async {
        while !idle() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.is_ok()
}

// ---- helpers for the examples that bridge calls and check who hears whom, by tone ----

use session_core::crates::media::AudioFrame;
use session_core::crates::media::audio::{ChannelSink, ToneSource, goertzel_power};
use session_core::{CallSession, CallState, IncomingCalls};
use tokio::sync::mpsc;

/// What a party hears: the receiving end of a recorder attached to its call.
pub type Ear = mpsc::Receiver<AudioFrame>;

/// Peak amplitude of every party's tone: four of them mixed together stay clear of clipping.
pub const TONE_AMPLITUDE: i16 = 4000;

/// Calls `user` at `switch` from `caller` and lets the switch answer the call that arrives on
/// `incoming` (the switch's [`IncomingCalls`]). Returns the caller's leg and the switch's, both
/// established.
pub async fn connect(
    caller: &SessionManager,
    switch: &SessionManager,
    incoming: &mut IncomingCalls,
    user: &str,
) -> Result<(CallSession, CallSession), Box<dyn std::error::Error>> {
    let call = caller
        .call(&format!("sip:{user}@{}", switch.local_addr()))
        .await?;
    let arrived = within("the switch's incoming call", incoming.next())
        .await
        .ok_or("the switch has stopped")?;
    within("the answer", arrived.session.accept()).await?;
    within("the caller's side", call.answered()).await?;
    within(
        "the switch's side",
        arrived.session.wait_for(CallState::is_established),
    )
    .await;
    Ok((call, arrived.session))
}

/// Waits (at most [`WAIT`]) until `call` has ended and given back what it held, its place in a
/// bridge and its RTP ports included. [`CallSession::ended`] returns as the state turns final,
/// a moment before that; the final figures are published once it is done.
pub async fn gone(call: &CallSession) {
    within("the end of the call", async {
        call.ended().await;
        while call.final_stats().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Plays an endless tone of `hz` into `call`, as the call's own source.
pub async fn play(call: &CallSession, hz: f64) -> session_core::Result<()> {
    call.attach_source(Box::new(ToneSource::new(hz, TONE_AMPLITUDE)))
        .await
}

/// Plays a tone of `hz` into `call` and records what it receives.
pub async fn play_and_record(call: &CallSession, hz: f64) -> session_core::Result<Ear> {
    let (sink, ear) = ChannelSink::new(64);
    call.attach_sink(Box::new(sink)).await?;
    play(call, hz).await?;
    Ok(ear)
}

/// One ear and what it should hear: every tone of `present`, each 20 dB above every tone of
/// `absent` (see [`hears`]).
pub struct Expect<'a> {
    ear: &'a mut Ear,
    present: &'a [f64],
    absent: &'a [f64],
}

/// `ear` should hear the tones of `present` and none of `absent`.
pub fn expect<'a>(ear: &'a mut Ear, present: &'a [f64], absent: &'a [f64]) -> Expect<'a> {
    Expect {
        ear,
        present,
        absent,
    }
}

/// Listens to every ear after a change and judges what each hears by [`hears`]: forgets what
/// they buffered, lets 300 ms play (the jitter buffers on the way still hold audio from before
/// the change), then takes each one's next 200 ms — side by side, so several ears take no longer
/// than one. A busy machine can starve a jitter buffer for a moment, so when a judgement fails
/// the ears get up to two more 200 ms windows (a call that hears the wrong party fails all
/// three). Returns each ear's verdict and margin. Exits the process with status 1 if an ear
/// stays silent for [`WAIT`].
pub async fn hear(expected: &mut [Expect<'_>]) -> Vec<(bool, String)> {
    let mut settle = 15;
    let mut tries = 1;
    loop {
        for one in expected.iter_mut() {
            while one.ear.try_recv().is_ok() {}
        }
        let mut verdicts = Vec::with_capacity(expected.len());
        for one in expected.iter_mut() {
            let samples = record(one.ear, settle).await;
            verdicts.push(hears(&samples, one.present, one.absent));
        }
        if tries == 3 || verdicts.iter().all(|(ok, _)| *ok) {
            return verdicts;
        }
        println!("       (the audio was disturbed: listening again)");
        (settle, tries) = (0, tries + 1);
    }
}

/// Prints a passing [`hear`] verdict with its margin, or the failure, and then exits the
/// process with status 1 (as [`check`]).
pub fn check_heard(verdict: &(bool, String), what: impl Display) {
    check(verdict.0, format!("{what} ({} clear)", verdict.1));
}

/// `ear`'s next 200 ms after `skip` frames of 20 ms.
async fn record(ear: &mut Ear, skip: usize) -> Vec<i16> {
    let mut samples = Vec::with_capacity(1600);
    for frame in 0..skip + 10 {
        let Some(audio) = within("audio", ear.recv()).await else {
            eprintln!("  FAIL the recorder stopped");
            std::process::exit(1);
        };
        if frame >= skip {
            samples.extend_from_slice(audio.samples());
        }
    }
    samples
}

/// Whether `samples` hold every tone of `present`, each at least 20 dB above every tone of
/// `absent`, and the smallest such margin in words.
pub fn hears(samples: &[i16], present: &[f64], absent: &[f64]) -> (bool, String) {
    // A tone of a tenth of `TONE_AMPLITUDE` would still pass; silence does not.
    let audible = (f64::from(TONE_AMPLITUDE) / 20.0).powi(2);
    let weakest = present
        .iter()
        .map(|hz| goertzel_power(samples, *hz))
        .fold(f64::INFINITY, f64::min);
    let loudest_absent = absent
        .iter()
        .map(|hz| goertzel_power(samples, *hz))
        .fold(1.0, f64::max);
    let db = 10.0 * (weakest / loudest_absent).log10();
    // A pure tone through G.711 leaves the other bins all but empty: past 60 dB, say so.
    let margin = if db > 60.0 {
        "more than 60 dB".to_owned()
    } else {
        format!("{db:.0} dB")
    };
    (weakest >= audible && db >= 20.0, margin)
}
