//! The parts of a request that digest authentication covers: method, Request-URI and body
//! (RFC 7616 §3.4.3: `A2 = Method ":" request-uri [":" H(entity-body)]`).
//!
//! ```
//! use session_auth::DigestRequest;
//!
//! let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
//! assert_eq!(req.method, "REGISTER");
//!
//! // Or straight from a session-sip request.
//! let sip = session_sip::Message::parse(
//!     &b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
//!        To: <sip:bob@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\n\
//!        CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"[..],
//! )?;
//! let session_sip::Message::Request(sip) = sip else { unreachable!() };
//! let req = DigestRequest::from_sip(&sip);
//! assert_eq!((req.method, req.uri), ("OPTIONS", "sip:bob@example.com"));
//! # Ok::<(), session_sip::Error>(())
//! ```

/// Method, Request-URI and body of the request being authenticated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DigestRequest<'a> {
    /// The method as written on the Request-Line (`INVITE`, `REGISTER`, ...).
    pub method: &'a str,
    /// The Request-URI as written.
    pub uri: &'a str,
    /// The body; only `auth-int` covers it.
    pub body: &'a [u8],
}

impl<'a> DigestRequest<'a> {
    /// From its parts.
    pub fn new(method: &'a str, uri: &'a str, body: &'a [u8]) -> Self {
        Self { method, uri, body }
    }

    /// From a session-sip request.
    pub fn from_sip(request: &'a session_sip::Request) -> Self {
        Self {
            method: request.method.as_str(),
            uri: request.uri.as_str(),
            body: &request.body,
        }
    }
}
