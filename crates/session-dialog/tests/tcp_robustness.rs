//! The driver's TCP transport against misbehaving and hostile clients, on real loopback
//! sockets: a malformed but well-framed request is answered 400 on its connection, which stays
//! usable (RFC 3261 §18.3); CRLFCRLF keep-alives get their CRLF pong (RFC 5626 §4.4.1); a
//! client that starts a message and stalls is disconnected after the message deadline; and
//! connections beyond the caps (per source IP, in total) are closed while the others go on; and
//! a client that pipelines a burst of requests and reads its answers gets every one of them.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_dialog::driver::{DriverConfig, SipDriver, SipHandle};
use session_dialog::ua::UaEvent;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc::Receiver;

/// How long to wait for anything that should come; a test that waits this long has failed.
const WAIT: Duration = Duration::from_secs(10);

async fn start(config: DriverConfig) -> (SipHandle, Receiver<UaEvent>) {
    SipDriver::start(DriverConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .unwrap()
}

/// An out-of-dialog OPTIONS (the endpoint answers it 200 itself) with CSeq `cseq`.
fn options(branch: &str, cseq: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK{branch};rport\r\n\
         From: <sip:a@client.invalid>;tag=1\r\n\
         To: <sip:x@127.0.0.1>\r\n\
         Call-ID: {branch}@client.invalid\r\n\
         CSeq: {cseq}\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A TCP client that reads whole messages.
struct Client {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Client {
    async fn connect(to: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(to))
            .await
            .expect("connected in time")
            .unwrap();
        Self {
            stream,
            received: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; fails the test on a timeout or when the connection closes.
    async fn read_more(&mut self) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("bytes in time")
            .expect("the connection works");
        assert!(n > 0, "the connection closed");
        self.received.extend_from_slice(&buf[..n]);
    }

    /// Exactly `len` bytes.
    async fn bytes(&mut self, len: usize) -> Vec<u8> {
        while self.received.len() < len {
            self.read_more().await;
        }
        self.received.drain(..len).collect()
    }

    /// The next whole message (header section and Content-Length body), as text.
    async fn message(&mut self) -> String {
        loop {
            if let Some(end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.received[..end + 4].to_vec()).unwrap();
                let body = head
                    .lines()
                    .find_map(|line| line.strip_prefix("Content-Length:"))
                    .map(|n| n.trim().parse::<usize>().unwrap())
                    .unwrap_or(0);
                if self.received.len() >= end + 4 + body {
                    let message = self.received.drain(..end + 4 + body).collect();
                    return String::from_utf8(message).unwrap();
                }
            }
            self.read_more().await;
        }
    }

    /// The status line of the next message.
    async fn status_line(&mut self) -> String {
        let message = self.message().await;
        message.lines().next().unwrap_or_default().to_owned()
    }

    /// Sends a valid OPTIONS and expects its 200 on this connection.
    async fn options_answered(&mut self, branch: &str) {
        self.send(&options(branch, "1 OPTIONS")).await;
        let status = self.status_line().await;
        assert!(status.starts_with("SIP/2.0 200 "), "{status}");
    }

    /// Waits for the driver to close the connection, having sent nothing more.
    async fn closed(&mut self) {
        let mut buf = [0u8; 512];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("closed in time");
        match read {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!(
                "got bytes, not a close: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }
}

#[tokio::test]
async fn a_malformed_request_on_tcp_is_answered_400_and_the_connection_stays() {
    let (handle, _events) = start(DriverConfig::default()).await;
    // Well framed (Content-Length is fine), but the CSeq number is not a number.
    let malformed = options("bad", "abc OPTIONS");

    // Over UDP these bytes get a stateless 400 ...
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(&malformed, handle.local_addr()).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(WAIT, udp.recv_from(&mut buf))
        .await
        .expect("a UDP answer in time")
        .unwrap();
    let udp_answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(udp_answer.starts_with("SIP/2.0 400 "), "{udp_answer}");

    // ... and over TCP the same answer comes on the same connection, which stays usable.
    let mut client = Client::connect(handle.local_addr()).await;
    client.send(&malformed).await;
    let answer = client.message().await;
    let status = answer.lines().next().unwrap();
    assert!(status.starts_with("SIP/2.0 400 "), "{answer}");
    assert!(status.contains("not a number"), "{status}");
    let via = answer.lines().find(|l| l.starts_with("Via:")).unwrap();
    assert!(
        via.contains(";received=127.0.0.1;rport="),
        "RFC 3581 on TCP too: {via}"
    );
    client.options_answered("good1").await;

    // Pipelined in one write: each gets its answer, in order.
    let mut both = options("bad2", "abc OPTIONS");
    both.extend_from_slice(&options("good2", "2 OPTIONS"));
    client.send(&both).await;
    let first = client.status_line().await;
    assert!(first.starts_with("SIP/2.0 400 "), "{first}");
    let second = client.status_line().await;
    assert!(second.starts_with("SIP/2.0 200 "), "{second}");
}

#[tokio::test]
async fn a_crlf_keepalive_gets_a_crlf_pong() {
    let (handle, _events) = start(DriverConfig::default()).await;
    let mut client = Client::connect(handle.local_addr()).await;
    client.send(b"\r\n\r\n").await;
    assert_eq!(client.bytes(2).await, b"\r\n", "one CRLF per ping");
    // Two pings in one write: two pongs.
    client.send(b"\r\n\r\n\r\n\r\n").await;
    assert_eq!(client.bytes(4).await, b"\r\n\r\n");
    // The connection carries messages as before, and nothing else came.
    client.options_answered("after-pings").await;
    assert!(client.received.is_empty());
}

#[tokio::test]
async fn a_client_that_stalls_mid_message_is_disconnected_after_the_deadline() {
    let message_timeout = Duration::from_millis(300);
    let (handle, _events) = start(DriverConfig {
        tcp_message_timeout: message_timeout,
        ..DriverConfig::default()
    })
    .await;
    // A well-behaved client: a whole message, then only a lone CRLF (keep-alive line ends
    // are not a message, so they start no deadline).
    let mut polite = Client::connect(handle.local_addr()).await;
    polite.options_answered("polite1").await;
    polite.send(b"\r\n").await;

    // The slowloris: half a request, then nothing.
    let mut stalled = Client::connect(handle.local_addr()).await;
    let request = options("stall", "1 OPTIONS");
    let started = Instant::now();
    stalled.send(&request[..request.len() / 2]).await;
    stalled.closed().await;
    assert!(
        started.elapsed() >= message_timeout,
        "closed before its deadline: {:?}",
        started.elapsed()
    );

    // The other connection, idle for longer than the deadline, still works.
    polite.options_answered("polite2").await;
}

/// Connections up to the cap work; the next one is closed at once; the first ones still
/// work after that.
async fn connections_beyond_the_cap_are_closed(config: DriverConfig, cap: usize) {
    let (handle, _events) = start(config).await;
    let mut clients = Vec::new();
    for n in 0..cap {
        let mut client = Client::connect(handle.local_addr()).await;
        // Answered, so the driver has accepted it before the next one comes.
        client.options_answered(&format!("first{n}")).await;
        clients.push(client);
    }
    let mut one_too_many = Client::connect(handle.local_addr()).await;
    one_too_many.closed().await;
    for (n, client) in clients.iter_mut().enumerate() {
        client.options_answered(&format!("again{n}")).await;
    }
}

#[tokio::test]
async fn connections_from_one_ip_beyond_its_cap_are_closed() {
    let config = DriverConfig {
        tcp_max_connections_per_ip: 3,
        ..DriverConfig::default()
    };
    connections_beyond_the_cap_are_closed(config, 3).await;
}

#[tokio::test]
async fn connections_beyond_the_total_cap_are_closed() {
    let config = DriverConfig {
        tcp_max_connections: 2,
        ..DriverConfig::default()
    };
    connections_beyond_the_cap_are_closed(config, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelining_client_that_reads_gets_every_answer() {
    // More requests in one write than the send queue holds: the connection must keep writing
    // answers while it waits for room to hand over what it read.
    const BURST: usize = 2_000;
    let (handle, _events) = start(DriverConfig {
        tcp_send_queue: 64,
        tcp_in_flight: 8,
        ..DriverConfig::default()
    })
    .await;
    let client = Client::connect(handle.local_addr()).await;
    let (mut reader, mut writer) = client.stream.into_split();
    let burst: Vec<u8> = (0..BURST)
        .flat_map(|n| options(&format!("burst{n}"), &format!("{} OPTIONS", n + 1)))
        .collect();
    let writing = tokio::spawn(async move {
        writer.write_all(&burst).await.unwrap();
        writer
    });
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let answers = |bytes: &[u8]| {
        bytes
            .windows(b"SIP/2.0 200 ".len())
            .filter(|w| *w == b"SIP/2.0 200 ")
            .count()
    };
    while answers(&received) < BURST {
        let n = tokio::time::timeout(WAIT, reader.read(&mut buf))
            .await
            .expect("answers keep coming")
            .unwrap();
        assert!(n > 0, "closed after {} answers", answers(&received));
        received.extend_from_slice(&buf[..n]);
    }
    let _writer = writing.await.unwrap();
    assert_eq!(answers(&received), BURST);
}
