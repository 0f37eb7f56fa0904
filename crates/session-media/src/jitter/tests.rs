//! Jitter buffer tests on seeded simulated traces with virtual time.

use super::*;
use std::time::Duration;

/// A frame that carries its sequence index in its first sample, so tests can see what played.
fn tagged(index: u32) -> AudioFrame {
    let mut f = AudioFrame::from_samples(&[1000; FRAME_SAMPLES]);
    f.samples_mut()[0] = (index % 30_000) as i16;
    f
}

fn tag(f: &AudioFrame) -> u32 {
    f.samples()[0] as u32
}

struct Trace {
    /// (arrival ms, seq, timestamp, index)
    packets: Vec<(u64, u16, u32, u32)>,
    lost: usize,
}

/// `n` packets sent every 20 ms (scaled by `skew`: 1.01 = sender clock 1 % slow), arriving
/// after 40 ms plus uniform jitter in `0..jitter_ms`, each lost with probability `loss`.
fn trace(seed: u64, n: u32, jitter_ms: u64, loss: f64, seq0: u16, ts0: u32, skew: f64) -> Trace {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut packets = Vec::new();
    let mut lost = 0;
    for i in 0..n {
        if rng.f64() < loss {
            lost += 1;
            continue;
        }
        let sent = (f64::from(i) * 20.0 * skew) as u64;
        let arrival = sent
            + 40
            + if jitter_ms > 0 {
                rng.u64(0..jitter_ms)
            } else {
                0
            };
        packets.push((
            arrival,
            seq0.wrapping_add(i as u16),
            ts0.wrapping_add(i * FRAME_SAMPLES as u32),
            i,
        ));
    }
    packets.sort_by_key(|p| p.0); // arrival order: jitter reorders packets
    Trace { packets, lost }
}

/// Plays a trace with a 20 ms pull; returns what came out.
fn play(jb: &mut JitterBuffer, t: &Trace, duration_ms: u64) -> Vec<(Playout, u32)> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut next_packet = 0;
    let mut now_ms = 0;
    while now_ms < duration_ms {
        while let Some(&(arrival, seq, ts, index)) = t.packets.get(next_packet) {
            if arrival > now_ms {
                break;
            }
            jb.push(
                start + Duration::from_millis(arrival),
                seq,
                ts,
                tagged(index),
            );
            next_packet += 1;
        }
        let (frame, kind) = jb.pop(start + Duration::from_millis(now_ms));
        out.push((kind, tag(&frame)));
        now_ms += 20;
    }
    out
}

fn played(out: &[(Playout, u32)]) -> Vec<u32> {
    out.iter()
        .filter(|(k, _)| *k == Playout::Played)
        .map(|&(_, t)| t)
        .collect()
}

#[test]
fn clean_stream_plays_everything_in_order() {
    let t = trace(1, 200, 0, 0.0, 100, 5000, 1.0);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = play(&mut jb, &t, 200 * 20 + 500);
    assert_eq!(played(&out), (0..200).collect::<Vec<_>>());
    // Only the end of the stream is concealed (three frames, then silence).
    assert_eq!(jb.stats().concealed, 3);
    assert_eq!(jb.stats().late, 0);
}

#[test]
fn jitter_loss_and_reordering_over_many_seeds() {
    for seed in 0..30 {
        let t = trace(
            seed,
            500,
            60,
            0.05,
            seed as u16 * 2000,
            seed as u32 * 7,
            1.0,
        );
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = play(&mut jb, &t, 500 * 20 + 1000);
        let p = played(&out);
        // Strictly increasing: never out of order, never twice.
        assert!(p.windows(2).all(|w| w[0] < w[1]), "seed {seed}: order");
        let stats = jb.stats();
        // The buffer adapted to the jitter: almost nothing arrived too late.
        let delivered = 500 - t.lost;
        assert!(p.len() + stats.late as usize + stats.dropped as usize >= delivered);
        assert!(stats.late <= 10, "seed {seed}: {} late", stats.late);
        assert!(
            p.len() >= delivered - 15,
            "seed {seed}: played {} of {delivered}",
            p.len()
        );
        // Every loss inside the stream was concealed (or silenced after a long run).
        assert!(
            stats.concealed + stats.silence >= t.lost as u64 / 2,
            "seed {seed}"
        );
        assert!(
            jb.target_depth() >= 3,
            "seed {seed}: depth {} for 60 ms jitter",
            jb.target_depth()
        );
    }
}

#[test]
fn duplicates_are_dropped() {
    let mut t = trace(3, 50, 0, 0.0, 0, 0, 1.0);
    let copies = t.packets.clone();
    t.packets
        .extend(copies.into_iter().map(|(a, s, ts, i)| (a + 5, s, ts, i)));
    t.packets.sort_by_key(|p| p.0);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = play(&mut jb, &t, 50 * 20 + 400);
    assert_eq!(played(&out), (0..50).collect::<Vec<_>>());
    assert!(jb.stats().duplicates + jb.stats().late >= 50);
}

#[test]
fn sequence_and_timestamp_wrap() {
    // Start just before both wrap points.
    let t = trace(4, 300, 30, 0.0, 65_500, u32::MAX - 160 * 40, 1.0);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = play(&mut jb, &t, 300 * 20 + 600);
    let p = played(&out);
    assert!(p.windows(2).all(|w| w[0] < w[1]));
    assert!(p.len() >= 295, "played {}", p.len());
    assert_eq!(jb.stats().lost, 0, "the u16 wrap is not a gap");
}

#[test]
fn concealment_repeats_attenuated_then_silence() {
    let start = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig {
        min_depth: 1,
        ..JitterConfig::default()
    });
    let at = |ms| start + Duration::from_millis(ms);
    for i in 0..3u32 {
        jb.push(at(u64::from(i) * 20), i as u16, i * 160, tagged(i));
    }
    let mut kinds = Vec::new();
    let mut peaks = Vec::new();
    for k in 0..10u64 {
        let (f, kind) = jb.pop(at(60 + k * 20));
        kinds.push(kind);
        peaks.push(f.peak());
    }
    use Playout::*;
    assert_eq!(&kinds[..3], &[Played, Played, Played]);
    assert_eq!(&kinds[3..6], &[Concealed, Concealed, Concealed]);
    assert!(peaks[3] < 1000 && peaks[4] < peaks[3] && peaks[5] < peaks[4]);
    assert!(kinds[6..].iter().all(|k| *k == Silence));
    // A new talk-spurt after the gap plays again.
    for i in 20..25u32 {
        jb.push(at(u64::from(i) * 20 + 60), i as u16, i * 160, tagged(i));
    }
    let resumed: Vec<_> = (0..6)
        .map(|k| jb.pop(at(600 + k * 20)).0)
        .map(|f| tag(&f))
        .collect();
    assert!(
        resumed.contains(&20) && resumed.contains(&21),
        "{resumed:?}"
    );
}

#[test]
fn clock_skew_keeps_depth_bounded() {
    // Sender 2 % fast: frames arrive faster than we pull them.
    let t = trace(5, 3000, 10, 0.0, 0, 0, 0.98);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = play(&mut jb, &t, 3000 * 20);
    assert!(jb.stats().dropped >= 30, "dropped {}", jb.stats().dropped);
    assert!(jb.depth() <= jb.target_depth() + 4, "depth {}", jb.depth());
    let p = played(&out);
    assert!(p.windows(2).all(|w| w[0] < w[1]));

    // Sender 2 % slow: the buffer drains; concealment fills in, nothing is lost for good.
    let t = trace(6, 3000, 10, 0.0, 0, 0, 1.02);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let out = play(&mut jb, &t, 3000 * 20 * 102 / 100 + 400);
    let p = played(&out);
    assert!(p.len() >= 2990, "played {}", p.len());
    assert!(jb.stats().concealed + jb.stats().silence >= 30);
}

#[test]
fn far_jump_resets() {
    let start = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for i in 0..5u32 {
        jb.push(
            start + Duration::from_millis(u64::from(i) * 20),
            i as u16,
            i * 160,
            tagged(i),
        );
    }
    for k in 0..3 {
        jb.pop(start + Duration::from_millis(100 + k * 20));
    }
    // The peer restarts with a random timestamp.
    for i in 0..5u32 {
        let ts = 1_000_000_000 + i * 160;
        jb.push(
            start + Duration::from_millis(200 + u64::from(i) * 20),
            9000 + i as u16,
            ts,
            tagged(100 + i),
        );
    }
    let tags: Vec<_> = (0..5)
        .map(|k| tag(&jb.pop(start + Duration::from_millis(300 + k * 20)).0))
        .collect();
    assert!(tags.contains(&100), "{tags:?}");
}

proptest::proptest! {
    /// Any sequence of pushes (near, far, old, wrapped timestamps) and pulls: no panic, the
    /// depth stays within the ring, and played frames never go backwards within a stream epoch.
    #[test]
    fn arbitrary_input_never_panics(
        ops in proptest::collection::vec((0u8..4, proptest::num::u16::ANY, -300i64..300, 0u64..200), 0..300)
    ) {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut now_ms = 0u64;
        let mut ts: u32 = 4_000_000_000;
        for (op, seq, jump, dt) in ops {
            now_ms += dt;
            let now = start + Duration::from_millis(now_ms);
            match op {
                0 => ts = ts.wrapping_add((jump * 160) as u32),
                1 => ts = ts.wrapping_add(u32::from(seq) << 16),
                _ => {}
            }
            if op == 3 {
                let (_, _) = jb.pop(now);
            } else {
                jb.push(now, seq, ts, tagged(seq.into()));
            }
            proptest::prop_assert!(jb.depth() <= CAPACITY);
        }
    }
}
