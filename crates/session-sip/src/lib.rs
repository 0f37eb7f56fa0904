//! The SIP message codec of session-core (RFC 3261): message model, zero-copy parser,
//! serializer, builders and UAS validation. No I/O, no async runtime (architecture
//! invariant 1); nothing here panics on any input (invariant 4).
//!
//! # Parsing
//!
//! [`parse_datagram`] (or [`Message::parse`] with default [`ParseLimits`]) takes one UDP
//! datagram; [`StreamDecoder`] frames messages out of a TCP/TLS byte stream. The headers share
//! one copy of the header section; the headers every layer reads (Via, From, To, Call-ID,
//! CSeq, Content-Length) are checked once while parsing, and typed views such as [`Via`] and
//! [`NameAddr`] borrow from the raw values.
//!
//! ```
//! use session_sip::{HeaderName, Message, Method};
//!
//! let bytes = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//! v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
//! Max-Forwards: 70\r\n\
//! To: Bob <sip:bob@biloxi.example.com>\r\n\
//! From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
//! CSeq: 314159 INVITE\r\n\
//! X-Anything: kept as written\r\n\
//! Content-Length: 0\r\n\r\n";
//! let Message::Request(req) = Message::parse(&bytes[..])? else { unreachable!() };
//! assert_eq!(req.method, Method::Invite);
//! assert_eq!(req.top_via()?.branch(), Some("z9hG4bK776asdhds"));
//! assert_eq!(req.from()?.tag(), Some("1928301774"));
//! assert_eq!(req.from()?.display_name().as_deref(), Some("Alice"));
//! assert_eq!(req.cseq()?.seq, 314159);
//! assert_eq!(req.headers.get_by_name("x-anything").map(|h| h.value()), Some("kept as written"));
//! // The compact `v` is Via, and keeps its name on the way out.
//! assert_eq!(req.headers.get(HeaderName::Via).unwrap().name_str(), "v");
//! // Serializing and parsing again gives the same message.
//! assert_eq!(Message::parse(req.to_bytes())?, Message::Request(req));
//! # Ok::<(), session_sip::Error>(())
//! ```
//!
//! # Building
//!
//! ```
//! use session_sip::{Method, Request, Uri, new_branch, new_tag};
//!
//! let bob = Uri::parse("sip:bob@biloxi.example.com")?;
//! let alice = Uri::parse("sip:alice@atlanta.example.com")?;
//! let invite = Request::builder(Method::Invite, bob.clone())
//!     .via("UDP", "pc33.atlanta.example.com", None, &new_branch())
//!     .max_forwards(70)
//!     .from(Some("Alice"), &alice, &new_tag())
//!     .to(Some("Bob"), &bob, None)
//!     .call_id("a84b4c76e66710@pc33.atlanta.example.com")
//!     .cseq(1)
//!     .contact(&alice)
//!     .body("application/sdp", "v=0\r\n")
//!     .build(); // adds Content-Length: 5
//! let wire = invite.to_bytes();
//! assert!(wire.starts_with(b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"));
//! # Ok::<(), session_sip::Error>(())
//! ```
//!
//! # Answering a request
//!
//! [`validate_request`] says what a UAS must answer to a request that is well framed but
//! wrong (400, 405, 415, 416, 420, 483, 501, 505 ...); [`Response::from_request`] builds any
//! response per RFC 3261 §8.2.6. A request the parser rejects still gets an answer (400 naming
//! the problem, 513 when it is over [`ParseLimits`], 414 for an over-long Request-Line) when
//! [`bad_request_for`] finds the headers to copy and a top Via to route it by; responses that
//! fail are dropped ([`validate_response`]). `INPUT_CHOICES.md`, beside this crate's
//! `Cargo.toml`, lists what each kind of malformed input gets and why.
//!
//! ```
//! use session_sip::{Message, Response, UasPolicy, bad_request_for, validate_request};
//! use session_types::StatusCode;
//!
//! let bytes = b"OPTIONS sip:user@example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\n\
//! To: <sip:user@example.com>\r\nFrom: <sip:caller@example.net>;tag=3\r\n\
//! Call-ID: x1\r\nCSeq: 8 OPTIONS\r\nMax-Forwards: 70\r\n\
//! Require: nothingSupportsThis\r\nContent-Length: 0\r\n\r\n";
//! let answer: Option<Response> = match Message::parse(&bytes[..]) {
//!     Ok(Message::Request(req)) => Some(match validate_request(&req, &UasPolicy::default()) {
//!         Ok(()) => Response::from_request(&req, StatusCode::OK),
//!         Err(rejection) => rejection.to_response(&req),
//!     }),
//!     Ok(Message::Response(_)) => None,
//!     Err(e) => bad_request_for(bytes, &e, &Default::default()),
//! };
//! let answer = answer.unwrap();
//! assert_eq!(answer.status, StatusCode::BAD_EXTENSION);
//! assert_eq!(answer.headers.get_str(session_sip::HeaderName::Unsupported), Some("nothingSupportsThis"));
//! ```
//!
//! # Design notes
//!
//! - **One copy of the header section.** The parser checks the header section as UTF-8 once
//!   and copies it once into a shared `Arc<str>`; each [`Header`] keeps a reference to it and
//!   the offsets of its name and value (64 bytes in all), so reading a value checks nothing
//!   again and the crate needs no `unsafe`. Folded values get a copy of their own (unfolded
//!   into one line, RFC 3261 §7.3.1). The body is a [`bytes::Bytes`] slice of the received
//!   buffer.
//! - **Parse once.** While splitting the headers the parser also does the typed parse of Via,
//!   From, To, Call-ID, CSeq and Content-Length, rejects malformed ones, and keeps the offsets
//!   it found inside each [`Header`]; [`Request::top_via`], [`Request::from`], [`Request::cseq`]
//!   and friends then build their views without parsing again.
//! - **Raw and ordered.** Every header keeps its name as written (compact forms included) and
//!   its place; unknown headers are kept untouched. Serializing writes
//!   `name: value` lines in order, so `parse(serialize(m)) == m` for every message the parser
//!   accepts (a property test and a fuzz target check it).
//! - **Limits.** [`ParseLimits`] bounds the message size, header count and line length;
//!   Content-Length is never trusted beyond them.
//! - **No panics.** No indexing that can fail, no `unwrap` on input; fuzzed.
//! - **Randomness is an input.** Every random value the crate makes (tags, branches, the To
//!   tag of a response) has a twin that draws from the caller's `fastrand::Rng`:
//!   [`new_tag_with`], [`new_branch_with`], [`Response::from_request_with_rng`],
//!   [`Rejection::to_response_with`], [`bad_request_for_with`], [`triage_datagram_with`]. A
//!   user agent that owns one seeded generator gives the same bytes for the same input, so a
//!   run can be replayed. The plain forms use `fastrand`'s thread-local generator.
//!
//! # Conformance
//!
//! `cargo xtask conformance` runs the RFC 4475 torture tests through the parser and
//! [`validate_request`]; the `sip-check` example prints the verdict for any message file.

mod build;
mod error;
mod header;
pub mod headers;
mod message;
mod method;
mod parse;
pub mod resource_priority;
mod stream;
mod text;
mod uri;
mod validate;

pub use build::{
    RequestBuilder, ResponseBuilder, copies_record_route, new_branch, new_branch_with,
    new_shared_tag_with, new_tag, new_tag_with, response_copies,
};
pub use error::{Error, Result};
pub use header::{Header, HeaderName, Headers};
pub use headers::{CSeq, Contact, NameAddr, Via};
pub use message::{Message, Request, Response, Version};
pub use method::Method;
pub use parse::{ParseLimits, bad_request_for, bad_request_for_with, parse_datagram};
pub use stream::StreamDecoder;
pub use text::Params;
pub use uri::{Scheme, Uri};
pub use validate::{
    Action, Discard, Rejection, Role, UasPolicy, Verdict, triage_datagram, triage_datagram_with,
    validate_request, validate_response,
};
