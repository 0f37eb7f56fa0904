//! A tiny auto-answering UAS on the driver, shared by the SIPp tests and the `responder`
//! example: INVITE → 180 then 200 with a placeholder SDP answer; any other request → 200
//! (OPTIONS and BYE are answered by the user agent itself).

use bytes::Bytes;
use session_dialog::driver::SipHandle;
use session_dialog::ua::UaEvent;
use session_sip::Method;
use session_types::StatusCode;
use tokio::sync::mpsc::Receiver;

/// A placeholder SDP answer (PCMU on a port nobody listens on).
pub(crate) const SDP_ANSWER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Answers everything until the driver stops; returns how many INVITEs it answered.
pub(crate) async fn serve(handle: &SipHandle, events: &mut Receiver<UaEvent>) -> usize {
    let mut answered = 0;
    while let Some(event) = events.recv().await {
        let job = match event {
            UaEvent::IncomingInvite { tx, .. } => {
                answered += 1;
                Some((tx, true))
            }
            UaEvent::IncomingRequest { tx, request, .. } => {
                Some((tx, request.method == Method::Invite))
            }
            _ => None,
        };
        if let Some((tx, with_sdp)) = job {
            let result = handle
                .with(move |ua, now| {
                    if with_sdp {
                        ua.answer(now, tx, StatusCode::RINGING, Vec::new(), None)?;
                        ua.answer(
                            now,
                            tx,
                            StatusCode::OK,
                            Vec::new(),
                            Some(("application/sdp", Bytes::from_static(SDP_ANSWER))),
                        )
                    } else {
                        ua.answer(now, tx, StatusCode::OK, Vec::new(), None)
                    }
                })
                .await;
            if result.is_err() {
                break;
            }
        }
    }
    answered
}
