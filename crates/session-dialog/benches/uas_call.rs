//! CPU for one complete UAS call in the sans-IO core, parse and serialize included:
//! INVITE in → 200 (with SDP) out, ACK in, BYE in → 200 out, then the timers that drain the
//! call's transactions. No sockets, virtual time.
//!
//! `cargo bench -p session-dialog --bench uas_call`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Instant;

#[path = "support/uas_call.rs"]
mod support;

fn uas_call(c: &mut Criterion) {
    let peer = support::Peer::new();
    let mut ua = support::user_agent();
    let mut now = Instant::now();
    c.bench_function("uas_call/complete_call_sans_io", |b| {
        b.iter(|| support::one_call(&mut ua, &mut now, &peer));
    });
}

criterion_group!(benches, uas_call);
criterion_main!(benches);
