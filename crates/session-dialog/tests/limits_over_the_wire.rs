//! A request over the parser limits (a line over 8 KB, more than 256 header fields), sent to
//! the driver on real loopback sockets: over UDP it gets a stateless 513 Message Too Large, and
//! over TCP the same 513 comes on the same connection, which stays usable — the message was
//! framed by its Content-Length, so only it is skipped (RFC 3261 §18.3, §21.5.7).

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_dialog::driver::{DriverConfig, SipDriver};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long to wait for anything that should come; a test that waits this long has failed.
const WAIT: Duration = Duration::from_secs(10);

/// An out-of-dialog OPTIONS (answered 200 by the endpoint itself) with `extra` header lines.
fn options(transport: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} client.invalid;branch=z9hG4bK{branch};rport\r\n\
         From: <sip:a@client.invalid>;tag=1\r\n\
         To: <sip:x@127.0.0.1>\r\n\
         Call-ID: {branch}@client.invalid\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn over_the_limits() -> [(String, &'static str); 2] {
    [
        (
            format!("Subject: {}\r\n", "s".repeat(9000)),
            "a line is longer than 8192 bytes",
        ),
        (
            (0..300).map(|i| format!("X-N{i}: {i}\r\n")).collect(),
            "more than 256 header fields",
        ),
    ]
}

/// Reads one message (header section, no body) from `stream`, as text.
async fn message(stream: &mut TcpStream, received: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let message: Vec<u8> = received.drain(..end + 4).collect();
            return String::from_utf8(message).unwrap();
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("bytes in time")
            .expect("the connection works");
        assert!(n > 0, "the connection closed");
        received.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn over_udp_a_request_over_the_limits_gets_513() {
    let (handle, _events) = SipDriver::start(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, (extra, why)) in over_the_limits().into_iter().enumerate() {
        let request = options("UDP", &format!("udp{i}"), &extra);
        udp.send_to(&request, handle.local_addr()).await.unwrap();
        let mut buf = vec![0u8; 65_535];
        let (n, _) = tokio::time::timeout(WAIT, udp.recv_from(&mut buf))
            .await
            .expect("a UDP answer in time")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        let status = answer.lines().next().unwrap();
        assert!(status.starts_with("SIP/2.0 513 "), "{answer}");
        assert!(status.contains(why), "{status}");
        assert!(
            answer.contains(&format!("branch=z9hG4bKudp{i}")),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn over_tcp_a_request_over_the_limits_gets_513_and_the_connection_stays() {
    let (handle, _events) = SipDriver::start(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..DriverConfig::default()
    })
    .await
    .unwrap();
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(handle.local_addr()))
        .await
        .expect("connected in time")
        .unwrap();
    let mut received = Vec::new();
    for (i, (extra, why)) in over_the_limits().into_iter().enumerate() {
        // The request over the limits, then a good one, in one write.
        let mut both = options("TCP", &format!("big{i}"), &extra);
        both.extend_from_slice(&options("TCP", &format!("good{i}"), ""));
        stream.write_all(&both).await.unwrap();
        let first = message(&mut stream, &mut received).await;
        let status = first.lines().next().unwrap();
        assert!(status.starts_with("SIP/2.0 513 "), "{first}");
        assert!(status.contains(why), "{status}");
        let second = message(&mut stream, &mut received).await;
        assert!(second.starts_with("SIP/2.0 200 "), "{second}");
        assert!(
            second.contains(&format!("branch=z9hG4bKgood{i}")),
            "{second}"
        );
    }
}
