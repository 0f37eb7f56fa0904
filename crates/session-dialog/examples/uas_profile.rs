//! The UAS call of `benches/uas_call.rs` in a plain loop, for profilers:
//!
//! ```text
//! cargo build --release -p session-dialog --example uas_profile
//! valgrind --tool=callgrind /path/to/target/release/examples/uas_profile 20000
//! perf record -g /path/to/target/release/examples/uas_profile 500000
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::time::Instant;

#[path = "../benches/support/uas_call.rs"]
mod support;

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let peer = support::Peer::new();
    let mut ua = support::user_agent();
    let mut now = Instant::now();
    let started = Instant::now();
    for _ in 0..calls {
        support::one_call(&mut ua, &mut now, &peer);
    }
    let per_call = started.elapsed() / calls.max(1);
    println!("{calls} calls, {per_call:?} per call");
}
