//! Runs the SDP work of one answered call N times (parse SIPp's offer, answer it, write the
//! answer), for instruction counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/sdp_profile N`, N = 20,000 minus 10,000.

#![allow(clippy::print_stdout)] // a measuring tool: it prints its count

use session_media::sdp::SessionDescription;
use session_media::sdp::negotiate::{MediaConfig, OfferAnswer};

/// SIPp's `uac` scenario body, as it reaches a server.
const OFFER: &[u8] = b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let config = std::sync::Arc::new(MediaConfig::default());
    let ip = "127.0.0.1".parse()?;
    let mut written = 0usize;
    for round in 0..rounds {
        let mut state = OfferAnswer::with_shared_config(config.clone(), ip, u64::from(round) + 1);
        let offer = SessionDescription::parse_bytes(std::hint::black_box(OFFER))?;
        let answered = state.answer_offer(&offer, 9)?;
        written += answered.answer.to_text().len();
    }
    println!("{rounds} answers, {written} bytes");
    Ok(())
}
