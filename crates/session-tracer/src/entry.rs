//! What a timeline holds: [`TraceEntry`] (one thing that happened to a session), the
//! [`SipSummary`] of a SIP message, and the small enums they use ([`Flow`], [`DtmfMethod`],
//! [`StartLine`]).
//!
//! Every type here displays as the text of one timeline line (without its time offset), e.g.
//! `→ INVITE sip:bob@biloxi.example.com (CSeq 1, SDP)` or `state ringing → active`.

use session_sip::{CSeq, HeaderName, Message, Method, Request, Response};
use session_types::{CallState, StatusCode};
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest text (in bytes) a [`SipSummary`] keeps of a URI, reason phrase or Call-ID taken from
/// a message; longer text is cut at a character boundary and ends in `…`. Keeps each entry small
/// whatever a peer sends.
pub const MAX_SUMMARY_TEXT: usize = 120;

/// Which way something went, seen from this side of the session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Flow {
    /// It came from the peer.
    Received,
    /// We sent it.
    Sent,
}

impl Flow {
    /// The other way.
    pub const fn opposite(self) -> Self {
        match self {
            Self::Received => Self::Sent,
            Self::Sent => Self::Received,
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Received => "received",
            Self::Sent => "sent",
        })
    }
}

/// How a DTMF digit travelled.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DtmfMethod {
    /// RTP telephone-event (RFC 4733).
    Rfc4733,
    /// SIP INFO (RFC 6086, `application/dtmf-relay` or `application/dtmf`).
    SipInfo,
    /// Tones inside the audio itself.
    Inband,
    /// The reporter did not say.
    Unknown,
}

impl fmt::Display for DtmfMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rfc4733 => "rfc4733",
            Self::SipInfo => "sip-info",
            Self::Inband => "inband",
            Self::Unknown => "unknown method",
        })
    }
}

/// One thing that happened to a session, as recorded with [`crate::SessionTracer::record`].
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TraceEntry {
    /// We sent a SIP message.
    SipOut(SipSummary),
    /// We received a SIP message.
    SipIn(SipSummary),
    /// The call state changed. A change into a final state marks the session finished.
    State {
        /// The state before.
        from: CallState,
        /// The state after.
        to: CallState,
    },
    /// Media began to flow (offer/answer done, RTP endpoint open). Starts the audio checks.
    MediaStarted {
        /// The negotiated codec (e.g. `PCMU`).
        codec: Arc<str>,
        /// Our RTP address.
        local: SocketAddr,
        /// The peer's RTP address.
        remote: SocketAddr,
    },
    /// Media stopped. Ends the audio checks until media starts again.
    MediaStopped,
    /// Periodic media statistics: RTP packets sent and received since media started. Feeds the
    /// audio checks; consecutive reports share one timeline line (the latest).
    RtpCounters {
        /// Packets sent so far.
        sent: u64,
        /// Packets received so far.
        received: u64,
    },
    /// A DTMF digit.
    Dtmf {
        /// The digit: `0`–`9`, `*`, `#` or `A`–`D`.
        digit: char,
        /// How it travelled.
        method: DtmfMethod,
        /// Whether the peer sent it to us or we sent it.
        flow: Flow,
    },
    /// The call was put on hold (by either side). Starts the long-hold check and pauses the
    /// audio checks.
    Hold,
    /// The call was taken off hold.
    Resume,
    /// Free text from the application.
    Note(Cow<'static, str>),
}

impl TraceEntry {
    /// A note; a `&'static str` costs no allocation.
    pub fn note(text: impl Into<Cow<'static, str>>) -> Self {
        Self::Note(text.into())
    }

    /// A summary of `message` we sent.
    pub fn sip_out(message: &Message) -> Self {
        Self::SipOut(SipSummary::of(message))
    }

    /// A summary of `message` we received.
    pub fn sip_in(message: &Message) -> Self {
        Self::SipIn(SipSummary::of(message))
    }
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SipOut(sip) => write!(f, "→ {sip}"),
            Self::SipIn(sip) => write!(f, "← {sip}"),
            Self::State { from, to } => write!(f, "state {from} → {to}"),
            Self::MediaStarted {
                codec,
                local,
                remote,
            } => write!(f, "media started {codec} {local} ⇄ {remote}"),
            Self::MediaStopped => f.write_str("media stopped"),
            Self::RtpCounters { sent, received } => {
                write!(f, "rtp packets sent {sent}, received {received}")
            }
            Self::Dtmf {
                digit,
                method,
                flow,
            } => write!(f, "dtmf {flow} '{digit}' ({method})"),
            Self::Hold => f.write_str("hold"),
            Self::Resume => f.write_str("resume"),
            Self::Note(text) => write!(f, "note: {text}"),
        }
    }
}

/// The first line of a summarized SIP message.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StartLine {
    /// A request.
    Request {
        /// Its method.
        method: Method,
        /// Its Request-URI (at most [`MAX_SUMMARY_TEXT`] bytes).
        uri: Box<str>,
    },
    /// A response.
    Response {
        /// Its status code.
        status: StatusCode,
        /// Its reason phrase as sent (at most [`MAX_SUMMARY_TEXT`] bytes).
        reason: Box<str>,
    },
}

/// What a timeline keeps of a SIP message: the start line, CSeq, Call-ID, whether it carried
/// SDP, and an optional note. Built with [`SipSummary::of`] from a parsed or built message.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct SipSummary {
    /// Method and Request-URI, or status and reason.
    pub start: StartLine,
    /// The CSeq, when the message has a valid one.
    pub cseq: Option<CSeq>,
    /// The Call-ID, when present (at most [`MAX_SUMMARY_TEXT`] bytes).
    pub call_id: Option<Box<str>>,
    /// Whether the body is an SDP description (`Content-Type: application/sdp`, non-empty).
    pub has_sdp: bool,
    /// A short remark from the recorder, e.g. `retransmission`.
    pub note: Option<Cow<'static, str>>,
}

impl SipSummary {
    /// Summarizes a request or a response.
    pub fn of(message: &Message) -> Self {
        match message {
            Message::Request(request) => Self::of_request(request),
            Message::Response(response) => Self::of_response(response),
        }
    }

    /// Summarizes a request.
    pub fn of_request(request: &Request) -> Self {
        let has_sdp = !request.body.is_empty()
            && request
                .content_type()
                .is_some_and(|t| t.is_ok_and(|t| t.is("application", "sdp")));
        Self {
            start: StartLine::Request {
                method: request.method.clone(),
                uri: capped(&request.uri.to_string()),
            },
            cseq: request.cseq().ok(),
            call_id: request.headers.get_str(HeaderName::CallId).map(capped),
            has_sdp,
            note: None,
        }
    }

    /// Summarizes a response.
    pub fn of_response(response: &Response) -> Self {
        let has_sdp = !response.body.is_empty()
            && response
                .content_type()
                .is_some_and(|t| t.is_ok_and(|t| t.is("application", "sdp")));
        Self {
            start: StartLine::Response {
                status: response.status,
                reason: capped(&response.reason),
            },
            cseq: response.cseq().ok(),
            call_id: response.headers.get_str(HeaderName::CallId).map(capped),
            has_sdp,
            note: None,
        }
    }

    /// A summary of a request known by its parts (a message built elsewhere, e.g. inside the
    /// SIP stack, that the recorder did not see whole), without SDP unless
    /// [`SipSummary::with_sdp`] says so.
    pub fn request(method: Method, uri: &str, cseq: u32, call_id: &str) -> Self {
        Self {
            cseq: Some(CSeq {
                seq: cseq,
                method: method.clone(),
            }),
            start: StartLine::Request {
                method,
                uri: capped(uri),
            },
            call_id: Some(capped(call_id)),
            has_sdp: false,
            note: None,
        }
    }

    /// A summary of a response known by its parts: its status (with the standard reason
    /// phrase) and the CSeq of the request it answers; without SDP unless
    /// [`SipSummary::with_sdp`] says so.
    pub fn response(status: StatusCode, cseq: CSeq, call_id: &str) -> Self {
        Self {
            start: StartLine::Response {
                status,
                reason: status.reason_phrase().into(),
            },
            cseq: Some(cseq),
            call_id: Some(capped(call_id)),
            has_sdp: false,
            note: None,
        }
    }

    /// The same summary, saying whether the message carried an SDP body.
    pub fn with_sdp(mut self, has_sdp: bool) -> Self {
        self.has_sdp = has_sdp;
        self
    }

    /// The same summary with a note attached.
    pub fn with_note(mut self, note: impl Into<Cow<'static, str>>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The request method, for a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.start {
            StartLine::Request { .. } => None,
            StartLine::Response { status, .. } => Some(*status),
        }
    }
}

impl fmt::Display for SipSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.start {
            StartLine::Request { method, uri } => {
                write!(f, "{method} {uri}")?;
                match &self.cseq {
                    Some(cseq) => write!(f, " (CSeq {}", cseq.seq)?,
                    None => f.write_str(" (no CSeq")?,
                }
            }
            StartLine::Response { status, reason } => {
                write!(f, "{} {reason}", status.as_u16())?;
                match &self.cseq {
                    Some(cseq) => write!(f, " (CSeq {cseq}")?,
                    None => f.write_str(" (no CSeq")?,
                }
            }
        }
        if self.has_sdp {
            f.write_str(", SDP")?;
        }
        f.write_str(")")?;
        if let Some(note) = &self.note {
            write!(f, " — {note}")?;
        }
        Ok(())
    }
}

/// `text`, cut to at most [`MAX_SUMMARY_TEXT`] bytes (at a character boundary, ending in `…`).
fn capped(text: &str) -> Box<str> {
    if text.len() <= MAX_SUMMARY_TEXT {
        return text.into();
    }
    let ellipsis = '…';
    let mut end = MAX_SUMMARY_TEXT - ellipsis.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + ellipsis.len_utf8());
    out.push_str(text.get(..end).unwrap_or_default());
    out.push(ellipsis);
    out.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_capped_at_a_char_boundary() {
        let short = "sip:bob@example.com";
        assert_eq!(&*capped(short), short);
        let exact = "a".repeat(MAX_SUMMARY_TEXT);
        assert_eq!(&*capped(&exact), exact);
        // Multi-byte characters straddling the cut must not split.
        let long = "é".repeat(MAX_SUMMARY_TEXT);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_SUMMARY_TEXT, "{} bytes", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }

    #[test]
    fn entries_display_as_one_line() {
        let state = TraceEntry::State {
            from: CallState::Ringing,
            to: CallState::Active,
        };
        assert_eq!(state.to_string(), "state ringing → active");
        let dtmf = TraceEntry::Dtmf {
            digit: '5',
            method: DtmfMethod::Rfc4733,
            flow: Flow::Received,
        };
        assert_eq!(dtmf.to_string(), "dtmf received '5' (rfc4733)");
        assert_eq!(TraceEntry::note("hello").to_string(), "note: hello");
        assert_eq!(
            TraceEntry::RtpCounters {
                sent: 3,
                received: 2
            }
            .to_string(),
            "rtp packets sent 3, received 2"
        );
    }
}
