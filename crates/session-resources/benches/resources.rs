//! Uncontended acquire + release of the hot-path resources: an RTP port pair, and an admission
//! permit (global only, with a user, with a user and a group). Target: at most 100 ns each.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use session_resources::{AdmissionController, AdmissionRequest, Histogram, Limits, PortPool};
use session_types::GroupId;

fn port_pool(c: &mut Criterion) {
    let pool = PortPool::new(20000..30000).unwrap();
    c.bench_function("port_pool/acquire_release", |b| {
        b.iter(|| {
            let pair = pool.acquire().unwrap();
            black_box(pair.rtp());
        });
    });
}

fn admission(c: &mut Criterion) {
    let admission = AdmissionController::new(
        Limits::default()
            .max_sessions(10_000)
            .max_per_user(10)
            .max_per_group(1_000),
    );
    // Other users and groups present, as on a busy server.
    let _background: Vec<_> = (0..1_000)
        .map(|i| {
            let user = format!("user{i}");
            let request = AdmissionRequest::for_user(&user).in_group(GroupId::from_raw(i % 50));
            admission.try_admit(&request).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("admission");
    group.bench_function("global_only", |b| {
        let request = AdmissionRequest::new();
        b.iter(|| black_box(admission.try_admit(black_box(&request)).unwrap()));
    });
    group.bench_function("with_user", |b| {
        let request = AdmissionRequest::for_user("alice@example.com");
        b.iter(|| black_box(admission.try_admit(black_box(&request)).unwrap()));
    });
    group.bench_function("with_user_already_active", |b| {
        // The user's entry exists (another call of theirs is up): no insert, no allocation.
        let request = AdmissionRequest::for_user("carol@example.com");
        let _other_call = admission.try_admit(&request).unwrap();
        b.iter(|| black_box(admission.try_admit(black_box(&request)).unwrap()));
    });
    group.bench_function("with_user_and_group", |b| {
        let request =
            AdmissionRequest::for_user("alice@example.com").in_group(GroupId::from_raw(7));
        b.iter(|| black_box(admission.try_admit(black_box(&request)).unwrap()));
    });
    group.bench_function("refused_by_user_limit", |b| {
        let full = AdmissionRequest::for_user("bob@example.com");
        let _held: Vec<_> = (0..10)
            .map(|_| admission.try_admit(&full).unwrap())
            .collect();
        b.iter(|| black_box(admission.try_admit(black_box(&full)).is_err()));
    });
    group.finish();
}

fn histogram(c: &mut Criterion) {
    let histogram = Histogram::new();
    let mut value = 1u64;
    c.bench_function("histogram/record_duration", |b| {
        b.iter(|| {
            value = value.wrapping_mul(6364136223846793005).wrapping_add(1);
            histogram.record_duration(black_box(Duration::from_nanos(value >> 34)));
        });
    });
}

criterion_group!(benches, port_pool, admission, histogram);
criterion_main!(benches);
