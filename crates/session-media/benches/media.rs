//! Media hot paths: RTP parse+build, G.711 of a 20 ms frame, jitter buffer push+pop, mixer tick.
//! Run: `cargo bench -p session-media --bench media -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use session_media::audio::{AudioSource, ToneSource};
use session_media::g711::G711Law;
use session_media::jitter::{JitterBuffer, JitterConfig};
use session_media::mixer::Mixer;
use session_media::rtp::{RtpSender, parse};
use session_media::{AudioFrame, FRAME_SAMPLES};

fn rtp(c: &mut Criterion) {
    let mut sender = RtpSender::new(0x1234_5678, 0, 0);
    let payload = [0xD5u8; FRAME_SAMPLES];
    c.bench_function("rtp/build 172-byte packet", |b| {
        b.iter(|| black_box(sender.audio(8, black_box(&payload), 160).unwrap().len()))
    });
    let packet = sender.audio(8, &payload, 160).unwrap().to_vec();
    c.bench_function("rtp/parse 172-byte packet", |b| {
        b.iter(|| {
            let (header, body) = parse(black_box(&packet)).unwrap();
            black_box((header.sequence, body.len()))
        })
    });
    c.bench_function("rtp/build+parse 172-byte packet", |b| {
        b.iter(|| {
            let packet = sender.audio(8, black_box(&payload), 160).unwrap();
            let (header, body) = parse(black_box(packet)).unwrap();
            black_box((header.sequence, body.len()))
        })
    });
}

fn g711(c: &mut Criterion) {
    let frame = ToneSource::new(1000.0, 12_000).next_frame().unwrap();
    let mut buf = [0u8; FRAME_SAMPLES];
    for law in [G711Law::Ulaw, G711Law::Alaw] {
        c.bench_function(&format!("g711/{law:?} encode+decode 20 ms"), |b| {
            b.iter(|| {
                let payload = law.encode_frame(black_box(&frame), &mut buf);
                black_box(law.decode_frame(payload))
            })
        });
    }
}

fn jitter(c: &mut Criterion) {
    let start = Instant::now();
    let frame = AudioFrame::from_samples(&[100; FRAME_SAMPLES]);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut i: u32 = 0;
    c.bench_function("jitter/push+pop", |b| {
        b.iter(|| {
            let now = start + Duration::from_millis(u64::from(i) * 20);
            jb.push(now, i as u16, i.wrapping_mul(160), frame);
            i = i.wrapping_add(1);
            black_box(jb.pop(now))
        })
    });
}

fn mixer(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer/tick");
    for n in [10usize, 100, 1000] {
        let mut mixer = Mixer::new();
        let ids: Vec<_> = (0..n).map(|_| mixer.add_participant()).collect();
        let mut tone = ToneSource::new(440.0, 3000);
        let frames: Vec<_> = (0..n).map(|_| tone.next_frame().unwrap()).collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                for (id, f) in ids.iter().zip(&frames) {
                    mixer.push_frame(*id, f);
                }
                mixer.tick();
                black_box(mixer.loudest())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rtp, g711, jitter, mixer);
criterion_main!(benches);
