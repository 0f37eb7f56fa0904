//! The parses of `benches/codec.rs` (parse + the typed reads a dialog layer does, by
//! session-sip or by rsip) in a plain loop, for profilers and for CPU time on a shared machine:
//!
//! ```text
//! cargo build --release -p session-sip --example parse_profile
//! valgrind --tool=callgrind --dump-instr=no target/release/examples/parse_profile 20000
//! time target/release/examples/parse_profile 1000000 ours invite   # user time / 1e6
//! time target/release/examples/parse_profile 200000 rsip invite
//! ```
//!
//! Arguments: the number of parses (1,000,000), what to run and which message (`invite`,
//! `200ok`, `ack`, `bye`). What to run: `ours` or `rsip` (the parse + typed reads of the
//! bench), `triage` (session-sip's parse, then `validate_request` or `validate_response`, as a
//! user agent does with each message it receives; no typed reads) or `validate` (the message
//! parsed once, then only validated N times). The instruction count of one parse is the
//! difference of two callgrind runs (e.g. 20,000 and 10,000 parses) divided by their
//! difference; the user CPU time (`time`) divided by the count is steadier than wall-clock time
//! when other work shares the cores.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use session_sip::{Message, ParseLimits, UasPolicy, validate_request, validate_response};

#[path = "../benches/support/inputs.rs"]
mod inputs;

use inputs::{ACK, BYE, INVITE, OK, parse_ours, parse_rsip};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let who = args.next().unwrap_or_default();
    let rsip = who == "rsip";
    let text = match args.next().as_deref() {
        Some("200ok") => OK,
        Some("ack") => ACK,
        Some("bye") => BYE,
        _ => INVITE,
    };
    let bytes = Bytes::from_static(text.as_bytes());
    let limits = ParseLimits::default();
    assert_eq!(parse_ours(&bytes, &limits), parse_rsip(text.as_bytes()));
    let policy = UasPolicy::default();
    let validate = |m: &Message| match m {
        Message::Request(r) => usize::from(validate_request(r, &policy).is_ok()),
        Message::Response(r) => usize::from(validate_response(r).is_ok()),
    };
    let started = Instant::now();
    let mut sum = 0usize;
    match who.as_str() {
        "validate" => {
            let m = session_sip::parse_datagram(&bytes, &limits).unwrap();
            assert_eq!(validate(&m), 1);
            for _ in 0..n {
                sum = sum.wrapping_add(validate(black_box(&m)));
            }
        }
        "triage" => {
            for _ in 0..n {
                let m = session_sip::parse_datagram(black_box(&bytes), &limits).unwrap();
                sum = sum.wrapping_add(validate(&m));
            }
        }
        _ => {
            for _ in 0..n {
                sum = sum.wrapping_add(if rsip {
                    parse_rsip(black_box(text.as_bytes()))
                } else {
                    parse_ours(black_box(&bytes), &limits)
                });
            }
        }
    }
    let per = started.elapsed() / n.max(1);
    println!("{n} parses, {per:?} per parse (checksum {sum})");
}
