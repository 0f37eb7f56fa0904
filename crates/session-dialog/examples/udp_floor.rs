//! The floor under a UAS's CPU per call on this machine: a UDP server with the same I/O as our
//! driver (a one-thread tokio runtime, `recv_from` then `try_recv_from` until the socket is
//! empty, `try_send_to`) that does no SIP work at all. It answers SIPp's `uac` scenario with
//! canned text: a 200 to an INVITE and to a BYE, built by copying the request's Via, From, To,
//! Call-ID and CSeq lines (RFC 3261 §8.2.6.2), nothing to an ACK. No parse, no validation, no
//! transaction or dialog, no timers, no SDP.
//!
//! Not a SIP server (it answers anything that looks like an INVITE or a BYE): a yardstick. The
//! CPU it uses per call is the kernel's and the runtime's share, which no SIP stack on the same
//! I/O can go below:
//!
//! ```text
//! cargo build --release -p session-dialog --example udp_floor
//! target/release/examples/udp_floor 127.0.0.1:5070 &
//! sipp -sn uac 127.0.0.1:5070 -m 30000 -r 2000 -l 30000 -d 0
//! # CPU of the server: utime + stime in /proc/PID/stat before and after
//! ```

#![allow(clippy::print_stdout)] // a measuring tool: it says where it listens

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Header names whose lines a response copies (long and compact forms).
const COPIED: [&[u8]; 9] = [
    b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq",
];

/// Appends the canned 200 OK answering `request` to `out`; `false` when no answer is due (an
/// ACK, or something that is not an INVITE or a BYE).
fn answer(request: &[u8], out: &mut Vec<u8>) -> bool {
    let invite = request.starts_with(b"INVITE ");
    if !invite && !request.starts_with(b"BYE ") {
        return false;
    }
    out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(request.len());
    let head = request.get(..head_end).unwrap_or_default();
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if !COPIED.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            continue;
        }
        out.extend_from_slice(line);
        // The 200 to an INVITE makes the dialog: its To gets our tag.
        if invite && (name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t")) {
            out.extend_from_slice(b";tag=floor");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Contact: <sip:floor@127.0.0.1>\r\nContent-Length: 0\r\n\r\n");
    true
}

fn main() -> std::io::Result<()> {
    let bind: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5070)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let socket = UdpSocket::bind(bind).await?;
        println!("listening on {}", socket.local_addr()?);
        let mut buf = vec![0u8; 65_535];
        let mut out = Vec::with_capacity(1_024);
        loop {
            let (len, source) = socket.recv_from(&mut buf).await?;
            let mut next = Some((len, source));
            while let Some((len, source)) = next {
                out.clear();
                if answer(buf.get(..len).unwrap_or_default(), &mut out) {
                    // A full socket buffer drops the answer, as a lost datagram would.
                    let _ = socket.try_send_to(&out, source);
                }
                next = socket.try_recv_from(&mut buf).ok();
            }
        }
    })
}
