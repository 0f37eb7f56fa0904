//! Runs the SDP work of one answered call N times (parse SIPp's offer, answer it, write the
//! answer), for instruction counts under callgrind:
//! `valgrind --tool=callgrind target/release/examples/sdp_profile N`, N = 20,000 minus 10,000.
//!
//! By default the way session-core answers an INVITE: the borrowed view and
//! `answer_offer_text`. With a second argument `owned`, the owned model: `parse_bytes`,
//! `answer_offer` and `to_text`.

#![allow(clippy::print_stdout)] // a measuring tool: it prints its count

use session_media::sdp::negotiate::{MediaConfig, OfferAnswer};
use session_media::sdp::{SessionDescription, SessionDescriptionRef, body_text};

/// SIPp's `uac` scenario body, as it reaches a server.
const OFFER: &[u8] = b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let owned = args.next().as_deref() == Some("owned");
    let config = std::sync::Arc::new(MediaConfig::default());
    let ip = "127.0.0.1".parse()?;
    let mut written = 0usize;
    for round in 0..rounds {
        let mut state = OfferAnswer::with_shared_config(config.clone(), ip, u64::from(round) + 1);
        let body = std::hint::black_box(OFFER);
        if owned {
            let offer = SessionDescription::parse_bytes(body)?;
            let answered = state.answer_offer(&offer, 9)?;
            written += answered.answer.to_text().len();
        } else {
            let text = body_text(body);
            let offer = SessionDescriptionRef::parse(&text)?;
            written += state.answer_offer_text(&offer, 9)?.text.len();
        }
    }
    println!("{rounds} answers, {written} bytes");
    Ok(())
}
