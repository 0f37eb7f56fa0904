//! The full SIP message trace: with the `sip_wire` target enabled at TRACE, every message the
//! driver receives and sends is logged whole, SDP included; with it off, nothing is.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_dialog::driver::{DriverConfig, SipDriver, WIRE_TRACE_TARGET};
use std::sync::Arc;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keeps the message text and the `direction` field of every wire-trace event.
#[derive(Default, Clone)]
struct Collector {
    lines: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    wire_enabled: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    direction: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "direction" {
            self.direction = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "direction" => self.direction = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Subscriber for Collector {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.wire_enabled && metadata.target() == WIRE_TRACE_TARGET
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.lines
            .lock()
            .unwrap()
            .push((fields.direction, fields.message));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// An OPTIONS from a raw socket to a driver, answered by the driver itself; returns what the
/// collector saw.
fn exchange(wire_enabled: bool) -> Vec<(String, String)> {
    let collector = Collector {
        wire_enabled,
        ..Collector::default()
    };
    let lines = collector.lines.clone();
    // A one-thread runtime: the driver task runs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(collector);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (driver, _events) = SipDriver::start(DriverConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..DriverConfig::default()
        })
        .await
        .unwrap();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = peer.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:user@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-wire-1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=p1\r\nTo: <sip:user@{to}>\r\n\
             Call-ID: wire-trace-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            to = driver.local_addr()
        );
        peer.send_to(options.as_bytes(), driver.local_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
    });
    lines.lock().unwrap().clone()
}

#[test]
fn every_message_in_and_out_is_traced_whole() {
    let seen = exchange(true);
    let incoming = seen
        .iter()
        .find(|(direction, _)| direction == "in")
        .expect("the OPTIONS is traced");
    assert!(incoming.1.contains("OPTIONS sip:user@"), "{incoming:?}");
    assert!(
        incoming.1.contains("Call-ID: wire-trace-1"),
        "whole: {incoming:?}"
    );
    let outgoing = seen
        .iter()
        .find(|(direction, _)| direction == "out")
        .expect("the 200 is traced");
    assert!(outgoing.1.contains("SIP/2.0 200 OK"), "{outgoing:?}");
    assert!(outgoing.1.contains("Allow:"), "whole: {outgoing:?}");
}

#[test]
fn nothing_is_traced_when_the_target_is_off() {
    assert!(exchange(false).is_empty());
}
