//! Codec benchmarks: parse (header split + typed Via/From/To/Call-ID/CSeq/Content-Length) and
//! serialize a typical INVITE with SDP, a 200 OK, an ACK and a BYE; the same bytes parsed by
//! the `rsip` crate for comparison.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use session_sip::{Message, ParseLimits};

mod support {
    pub(crate) mod inputs;
}

use support::inputs::{ACK, BYE, INVITE, OK, parse_ours, parse_rsip};

fn benches(c: &mut Criterion) {
    let limits = ParseLimits::default();
    let cases = [
        ("invite", INVITE),
        ("200ok", OK),
        ("ack", ACK),
        ("bye", BYE),
    ];
    let mut parse = c.benchmark_group("parse");
    for (name, text) in cases {
        let bytes = Bytes::from_static(text.as_bytes());
        // Both parsers must accept the message and agree on what they read.
        assert_eq!(
            parse_ours(&bytes, &limits),
            parse_rsip(text.as_bytes()),
            "{name}"
        );
        parse.throughput(Throughput::Elements(1));
        parse.bench_function(format!("{name}/session-sip"), |b| {
            b.iter(|| parse_ours(black_box(&bytes), &limits))
        });
        parse.bench_function(format!("{name}/rsip"), |b| {
            b.iter(|| parse_rsip(black_box(text.as_bytes())))
        });
    }
    parse.finish();
    let mut ser = c.benchmark_group("serialize");
    for (name, text) in cases {
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(
            &m.to_bytes()[..],
            text.as_bytes(),
            "{name} is already canonical"
        );
        ser.throughput(Throughput::Elements(1));
        ser.bench_function(format!("{name}/session-sip"), |b| {
            b.iter(|| black_box(&m).to_bytes())
        });
        let r = rsip::SipMessage::try_from(text.as_bytes()).unwrap();
        ser.bench_function(format!("{name}/rsip"), |b| {
            b.iter(|| black_box(&r).to_string())
        });
    }
    ser.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
