//! Builders for requests and responses, and the response to a request (RFC 3261 §8.2.6).

use bytes::Bytes;
use session_types::StatusCode;

use crate::header::{Header, HeaderName, Headers};
use crate::headers::{NameAddr, Via};
use crate::message::{Request, Response, Version};
use crate::method::Method;
use crate::uri::Uri;

/// Builds a [`Request`]; [`RequestBuilder::build`] adds Content-Length.
#[derive(Clone, Debug)]
#[must_use]
pub struct RequestBuilder {
    req: Request,
}

impl Request {
    /// Starts a request. Add at least Via, From, To, Call-ID, CSeq and Max-Forwards
    /// (RFC 3261 §8.1.1).
    pub fn builder(method: Method, uri: Uri) -> RequestBuilder {
        RequestBuilder {
            req: Request {
                method,
                uri,
                version: Version::SIP_2_0,
                headers: Headers::with_capacity(12),
                body: Bytes::new(),
            },
        }
    }
}

impl RequestBuilder {
    /// Appends a header line.
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.req.headers.push(Header::new(name, value));
        self
    }

    /// Appends a prepared header (e.g. one with a name this crate does not know).
    pub fn header_line(mut self, header: Header) -> Self {
        self.req.headers.push(header);
        self
    }

    /// Appends `Via: SIP/2.0/{transport} {host}[:{port}];branch={branch}`.
    pub fn via(self, transport: &str, host: &str, port: Option<u16>, branch: &str) -> Self {
        self.header(HeaderName::Via, Via::format(transport, host, port, branch))
    }

    /// Appends From with a tag (RFC 3261 §8.1.1.3: always tagged).
    pub fn from(self, display: Option<&str>, uri: &Uri, tag: &str) -> Self {
        self.header(HeaderName::From, NameAddr::format(display, uri, Some(tag)))
    }

    /// Appends To (tagged only inside a dialog).
    pub fn to(self, display: Option<&str>, uri: &Uri, tag: Option<&str>) -> Self {
        self.header(HeaderName::To, NameAddr::format(display, uri, tag))
    }

    /// Appends Call-ID.
    pub fn call_id(self, call_id: &str) -> Self {
        self.header(HeaderName::CallId, call_id)
    }

    /// Appends CSeq with the request's method.
    pub fn cseq(self, seq: u32) -> Self {
        let v = format!("{seq} {}", self.req.method);
        self.header(HeaderName::CSeq, v)
    }

    /// Appends Max-Forwards.
    pub fn max_forwards(self, hops: u8) -> Self {
        self.header(HeaderName::MaxForwards, hops.to_string())
    }

    /// Appends `Contact: <uri>`.
    pub fn contact(self, uri: &Uri) -> Self {
        self.header(HeaderName::Contact, NameAddr::format(None, uri, None))
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.req
            .headers
            .set(Header::new(HeaderName::ContentType, content_type));
        self.req.body = body.into();
        self
    }

    /// Finishes the request, setting Content-Length to the body length.
    pub fn build(mut self) -> Request {
        self.req.headers.set(Header::new(
            HeaderName::ContentLength,
            self.req.body.len().to_string(),
        ));
        self.req
    }
}

/// Builds a [`Response`]; [`ResponseBuilder::build`] adds Content-Length.
#[derive(Clone, Debug)]
#[must_use]
pub struct ResponseBuilder {
    resp: Response,
}

impl Response {
    /// Starts a response with the standard reason phrase and no headers.
    pub fn builder(status: StatusCode) -> ResponseBuilder {
        ResponseBuilder {
            resp: Response {
                version: Version::SIP_2_0,
                status,
                reason: status.reason_phrase().to_owned(),
                headers: Headers::with_capacity(8),
                body: Bytes::new(),
            },
        }
    }

    /// The response a UAS sends to `req` (RFC 3261 §8.2.6): Via lines, From, To, Call-ID and
    /// CSeq copied, Record-Route copied in order where [`copies_record_route`] says so, a random
    /// To tag added when the To has none and the status is not 100, Content-Length 0.
    ///
    /// The tag comes from `fastrand`'s thread-local generator; [`Response::from_request_with_rng`]
    /// draws it from a generator of the caller's, so a seeded run gives the same bytes.
    pub fn from_request(req: &Request, status: StatusCode) -> Response {
        Self::from_request_with_tag(req, status, None)
    }

    /// Like [`Response::from_request`], with the To tag to add (all responses of one
    /// transaction must use the same tag, RFC 3261 §8.2.6.2). `None` draws a fresh one from
    /// the thread-local generator when the response needs a tag.
    pub fn from_request_with_tag(req: &Request, status: StatusCode, tag: Option<&str>) -> Response {
        Self::answering(req, status, || tag.map_or_else(new_tag, str::to_owned))
    }

    /// Like [`Response::from_request`], with the fresh To tag (when the response needs one)
    /// drawn from `rng` by [`new_tag_with`]. Nothing is drawn when the request's To already
    /// has a tag or the status is 100.
    pub fn from_request_with_rng(
        req: &Request,
        status: StatusCode,
        rng: &mut fastrand::Rng,
    ) -> Response {
        Self::answering(req, status, || new_tag_with(rng))
    }

    /// The §8.2.6 response to `req`; `tag` makes the To tag if the response needs one.
    pub(crate) fn answering(
        req: &Request,
        status: StatusCode,
        tag: impl FnOnce() -> String,
    ) -> Response {
        let mut b = Response::builder(status);
        for h in req
            .headers
            .iter()
            .filter(|h| response_copies(h.name(), &req.method, status))
        {
            b.resp.headers.push(h.clone());
        }
        add_to_tag(&mut b.resp, tag);
        b.build()
    }
}

/// Whether a response with `status` to a `method` request copies the request's `name` lines,
/// whole and in the request's order: Via, From, To, Call-ID and CSeq always (RFC 3261
/// §8.2.6.2), Timestamp into a 100 Trying (§8.2.6.1), Record-Route when
/// [`copies_record_route`] says so (several values in one line, URI and header parameters all
/// reach the peer as the proxies wrote them).
pub fn response_copies(name: HeaderName, method: &Method, status: StatusCode) -> bool {
    match name {
        HeaderName::Via
        | HeaderName::From
        | HeaderName::To
        | HeaderName::CallId
        | HeaderName::CSeq => true,
        HeaderName::Timestamp => status == StatusCode::TRYING,
        HeaderName::RecordRoute => copies_record_route(method, status),
        _ => false,
    }
}

/// Whether a response with `status` to a `method` request carries the request's Record-Route
/// values (all of them, in order, parameters included). RFC 3261 §12.1.1: a UAS copies them into
/// every response that establishes a dialog — a 2xx, or a 101–199 (which has a To tag and so
/// makes an early dialog) — to a request that can create one (INVITE; SUBSCRIBE and NOTIFY,
/// RFC 6665; REFER, whose implicit subscription is a dialog, RFC 3515). Responses to a target
/// refresh inside a dialog carry them too: the peer does not change its route set for them
/// (§12.2.1.2), and a proxy that record-routes mid-dialog sees its entries come back as on the
/// first request.
pub fn copies_record_route(method: &Method, status: StatusCode) -> bool {
    let establishing = status.as_u16() > 100 && status.as_u16() < 300;
    establishing
        && matches!(
            method,
            Method::Invite | Method::Subscribe | Method::Notify | Method::Refer
        )
}

/// Adds a tag to the To of a response unless it has one or the status is 100; `tag` is
/// called only when a tag is added.
pub(crate) fn add_to_tag(resp: &mut Response, tag: impl FnOnce() -> String) {
    if resp.status == StatusCode::TRYING {
        return;
    }
    let Some(to) = resp.headers.get_mut(HeaderName::To) else {
        return;
    };
    if NameAddr::parse(to.value()).is_ok_and(|a| a.tag().is_some()) {
        return;
    }
    let value = format!("{};tag={}", to.value(), tag());
    to.set_value(value);
}

/// A fresh random tag or branch suffix drawn from `rng`: 16 lowercase alphanumerics (RFC 3261
/// §19.3 asks for at least 32 bits of randomness). The same generator state gives the same
/// tag, so a user agent that owns a seeded generator makes the same bytes for the same input
/// (seed it from entropy in production: tags must be globally unique, §19.3).
pub fn new_tag_with(rng: &mut fastrand::Rng) -> String {
    let mut tag = String::with_capacity(TAG_LEN);
    push_tag(rng, &mut tag);
    tag
}

/// The characters of a tag: lowercase letters and digits.
const TAG_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The length of a tag.
const TAG_LEN: usize = 16;

/// A [`new_tag_with`] tag as an `Arc<str>`, for a tag that is kept and shared (a dialog's
/// local tag): written on the stack and copied into the `Arc` once (`new_tag_with(..).into()`
/// would allocate a `String` first). The same draws as [`new_tag_with`], so the same tag.
pub fn new_shared_tag_with(rng: &mut fastrand::Rng) -> std::sync::Arc<str> {
    let tag = tag_bytes(rng);
    // Tag characters are ASCII, so the bytes are always UTF-8: the empty fallback is never
    // taken.
    std::sync::Arc::from(std::str::from_utf8(&tag).unwrap_or_default())
}

/// Appends a [`new_tag_with`] tag to `out`.
fn push_tag(rng: &mut fastrand::Rng, out: &mut String) {
    out.extend(tag_bytes(rng).map(char::from));
}

/// The characters of a [`new_tag_with`] tag: four 64-bit draws, each cut into four 16-bit
/// pieces, each piece mapped onto the 36 characters by `piece * 36 >> 16` (each character
/// gets 1,820 or 1,821 of the 65,536 pieces: log2(36) ≈ 5.17 bits a character, ≈ 82.7 bits a
/// tag, against ≈ 81.8 for the 16 case-folded alphanumerics drawn one by one before).
fn tag_bytes(rng: &mut fastrand::Rng) -> [u8; TAG_LEN] {
    let mut tag = [b'0'; TAG_LEN];
    for chunk in tag.chunks_exact_mut(4) {
        let mut bits = rng.u64(..);
        for c in chunk {
            let piece = bits & 0xffff;
            bits >>= 16;
            // Below 36: `piece` < 2^16.
            let i = (piece * 36) >> 16;
            *c = usize::try_from(i)
                .ok()
                .and_then(|i| TAG_ALPHABET.get(i))
                .copied()
                .unwrap_or(b'0');
        }
    }
    tag
}

/// A fresh RFC 3261 branch drawn from `rng`: the magic cookie `z9hG4bK` and a
/// [`new_tag_with`] suffix (§8.1.1.7).
pub fn new_branch_with(rng: &mut fastrand::Rng) -> String {
    const COOKIE: &str = "z9hG4bK";
    let mut branch = String::with_capacity(COOKIE.len() + TAG_LEN);
    branch.push_str(COOKIE);
    push_tag(rng, &mut branch);
    branch
}

/// [`new_tag_with`] on a generator forked from `fastrand`'s thread-local one: for callers
/// that never need to replay a run.
pub fn new_tag() -> String {
    new_tag_with(&mut fastrand::Rng::new())
}

/// [`new_branch_with`] on a generator forked from `fastrand`'s thread-local one: for callers
/// that never need to replay a run.
pub fn new_branch() -> String {
    new_branch_with(&mut fastrand::Rng::new())
}

impl ResponseBuilder {
    /// Replaces the reason phrase (CR and LF are removed).
    pub fn reason(mut self, reason: &str) -> Self {
        self.resp.reason = reason.replace(['\r', '\n'], " ");
        self
    }

    /// Appends a header line.
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.resp.headers.push(Header::new(name, value));
        self
    }

    /// Appends a prepared header.
    pub fn header_line(mut self, header: Header) -> Self {
        self.resp.headers.push(header);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.resp
            .headers
            .set(Header::new(HeaderName::ContentType, content_type));
        self.resp.body = body.into();
        self
    }

    /// Finishes the response, setting Content-Length to the body length.
    pub fn build(mut self) -> Response {
        self.resp.headers.set(Header::new(
            HeaderName::ContentLength,
            self.resp.body.len().to_string(),
        ));
        self.resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn invite() -> Request {
        let bob = Uri::parse("sip:bob@biloxi.example.com").unwrap();
        let alice = Uri::parse("sip:alice@atlanta.example.com").unwrap();
        Request::builder(Method::Invite, bob.clone())
            .via("UDP", "pc33.atlanta.example.com", Some(5060), &new_branch())
            .max_forwards(70)
            .to(Some("Bob"), &bob, None)
            .from(Some("Alice"), &alice, "1928301774")
            .call_id("a84b4c76e66710@pc33.atlanta.example.com")
            .cseq(314159)
            .contact(&alice)
            .body("application/sdp", &b"v=0\r\n"[..])
            .build()
    }

    #[test]
    fn a_response_copies_what_8_2_6_names_in_request_order() {
        let mut req = invite();
        req.headers
            .push(Header::new(HeaderName::Timestamp, "54".to_owned()));
        req.headers.push(Header::new(
            HeaderName::RecordRoute,
            "<sip:p1.example.com;lr>".to_owned(),
        ));
        let names = |resp: &Response| -> Vec<HeaderName> {
            resp.headers
                .iter()
                .map(Header::name)
                .filter(|n| *n != HeaderName::ContentLength)
                .collect()
        };
        let copied = [
            HeaderName::Via,
            HeaderName::To,
            HeaderName::From,
            HeaderName::CallId,
            HeaderName::CSeq,
        ];
        // A 100 Trying copies Timestamp (§8.2.6.1) but no Record-Route (it makes no dialog).
        let trying = Response::from_request(&req, StatusCode::TRYING);
        let mut expected = copied.to_vec();
        expected.push(HeaderName::Timestamp);
        assert_eq!(names(&trying), expected);
        // A 180 makes an early dialog: Record-Route, no Timestamp (§12.1.1).
        let ringing = Response::from_request(&req, StatusCode::RINGING);
        let mut expected = copied.to_vec();
        expected.push(HeaderName::RecordRoute);
        assert_eq!(names(&ringing), expected);
        // A 486 neither.
        let busy = Response::from_request(&req, StatusCode::BUSY_HERE);
        assert_eq!(names(&busy), copied.to_vec());
        assert!(!response_copies(
            HeaderName::Contact,
            &Method::Invite,
            StatusCode::OK
        ));
        assert!(!response_copies(
            HeaderName::MaxForwards,
            &Method::Bye,
            StatusCode::OK
        ));
        assert!(!response_copies(
            HeaderName::RecordRoute,
            &Method::Bye,
            StatusCode::OK
        ));
    }

    #[test]
    fn built_request_round_trips() {
        let req = invite();
        let bytes = req.to_bytes();
        let back = Message::parse(bytes).unwrap();
        assert_eq!(back, Message::Request(req.clone()));
        assert_eq!(req.content_length().unwrap().unwrap(), 5);
        assert!(req.top_via().unwrap().is_rfc3261_branch());
    }

    #[test]
    fn response_from_request_copies_and_tags() {
        let req = invite();
        let ok = Response::from_request(&req, StatusCode::OK);
        assert_eq!(ok.call_id().unwrap(), req.call_id().unwrap());
        assert_eq!(ok.cseq().unwrap(), req.cseq().unwrap());
        assert_eq!(ok.top_via().unwrap(), req.top_via().unwrap());
        assert_eq!(ok.to().unwrap().tag().unwrap().len(), 16);
        let trying = Response::from_request(&req, StatusCode::TRYING);
        assert_eq!(trying.to().unwrap().tag(), None);
        let ringing = Response::from_request_with_tag(&req, StatusCode::RINGING, Some("abc"));
        assert_eq!(ringing.to().unwrap().tag(), Some("abc"));
        let back = Message::parse(ringing.to_bytes()).unwrap();
        assert_eq!(back, Message::Response(ringing));
    }

    #[test]
    fn seeded_tags_branches_and_responses_replay() {
        let run = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            let tag = new_tag_with(&mut rng);
            let branch = new_branch_with(&mut rng);
            let ok = Response::from_request_with_rng(&invite(), StatusCode::OK, &mut rng);
            (tag, branch, ok.to().unwrap().tag().unwrap().to_owned())
        };
        let (tag, branch, to_tag) = run(1);
        assert_eq!(run(1), (tag.clone(), branch.clone(), to_tag.clone()));
        let other = run(2);
        assert!(tag != other.0 && branch != other.1 && to_tag != other.2);
        assert_eq!(tag.len(), 16);
        assert!(
            tag.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert!(branch.starts_with("z9hG4bK") && branch.len() == 23);
        assert_ne!(tag, to_tag, "each draw moves the generator on");
        // No tag is drawn when none is added: the generator is left where it was.
        let mut rng = fastrand::Rng::with_seed(3);
        let trying = Response::from_request_with_rng(&invite(), StatusCode::TRYING, &mut rng);
        assert_eq!(trying.to().unwrap().tag(), None);
        assert_eq!(rng.get_seed(), fastrand::Rng::with_seed(3).get_seed());
    }

    #[test]
    fn seeded_stateless_answers_replay() {
        let limits = crate::ParseLimits::default();
        let policy = crate::UasPolicy::default();
        let head = "sip:u@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    From: <sip:a@b>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: c1\r\n";
        // A 420 from validation and a 400 from the parser (a CSeq that is not a number).
        let unsupported = Bytes::from(format!(
            "OPTIONS {head}CSeq: 1 OPTIONS\r\nRequire: foo\r\nContent-Length: 0\r\n\r\n"
        ));
        let broken = Bytes::from(format!(
            "OPTIONS {head}CSeq: x OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ));
        let answer = |bytes: &Bytes, seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            match crate::triage_datagram_with(bytes, &limits, &policy, &mut rng).action {
                crate::Action::Answer(response) => response.to_bytes(),
                other => panic!("{other:?}"),
            }
        };
        assert!(crate::parse_datagram(&broken, &limits).is_err());
        for (bytes, status) in [(&unsupported, "420"), (&broken, "400")] {
            let first = answer(bytes, 5);
            assert!(first.starts_with(format!("SIP/2.0 {status}").as_bytes()));
            assert_eq!(
                first,
                answer(bytes, 5),
                "the same seed gives the same bytes"
            );
            assert_ne!(first, answer(bytes, 6), "another seed, another To tag");
        }
        let Ok(Message::Request(request)) = Message::parse(unsupported.clone()) else {
            panic!("the 420 case parses")
        };
        let rejection = crate::validate_request(&request, &policy).unwrap_err();
        let response = rejection.to_response_with(&request, &mut fastrand::Rng::with_seed(5));
        assert_eq!(response.to_bytes(), answer(&unsupported, 5));
    }

    #[test]
    fn typed_accessors_for_the_headers_the_stack_uses() {
        let uri = Uri::parse("sip:bob@example.com").unwrap();
        let req = Request::builder(Method::Refer, uri)
            .header(
                HeaderName::Route,
                "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
            )
            .header(HeaderName::RecordRoute, "<sip:rr.example.com;lr>")
            .header(HeaderName::Supported, "replaces, timer")
            .header(HeaderName::Require, "100rel")
            .header(HeaderName::Allow, "INVITE, ACK, BYE")
            .header(HeaderName::Expires, "3600")
            .header(HeaderName::Event, "refer;id=7")
            .header(
                HeaderName::ReferTo,
                "<sip:carol@example.com?Replaces=abc%40h%3Bto-tag%3D1>",
            )
            .header(HeaderName::ReferredBy, "<sip:alice@example.com>")
            .header(HeaderName::Replaces, "abc@h;to-tag=1;from-tag=2;early-only")
            .header(HeaderName::SessionExpires, "1800;refresher=uac")
            .header(HeaderName::MinSe, "90")
            .header(HeaderName::RSeq, "988789")
            .header(HeaderName::RAck, "988789 1 INVITE")
            .header(
                HeaderName::Reason,
                "SIP;cause=200;text=\"Call completed elsewhere\"",
            )
            .header(
                HeaderName::Authorization,
                "Digest username=\"bob\", realm=\"example.com\"",
            )
            .header(HeaderName::UserAgent, "session-core/0.1")
            .header(
                HeaderName::RetryAfter,
                "120 (I'm in a meeting);duration=3600",
            )
            .build();
        assert_eq!(req.routes().count(), 2);
        assert_eq!(
            req.routes().next().unwrap().unwrap().uri().param("lr"),
            Some(None)
        );
        assert_eq!(req.record_routes().count(), 1);
        let sup: Vec<_> = req
            .option_tags(HeaderName::Supported)
            .map(Result::unwrap)
            .collect();
        assert_eq!(sup, ["replaces", "timer"]);
        assert_eq!(req.option_tags(HeaderName::Require).count(), 1);
        assert_eq!(req.allow().count(), 3);
        assert_eq!(req.expires().unwrap().unwrap(), 3600);
        assert_eq!(
            req.event().unwrap().unwrap().params.get("id"),
            Some(Some("7"))
        );
        assert!(req.refer_to().unwrap().unwrap().uri().headers().is_some());
        assert!(req.referred_by().unwrap().is_ok());
        assert_eq!(req.replaces().unwrap().unwrap().value, "abc@h");
        let (se, p) = req.session_expires().unwrap().unwrap();
        assert_eq!((se, p.get("refresher")), (1800, Some(Some("uac"))));
        assert_eq!(req.min_se().unwrap().unwrap(), 90);
        assert_eq!(req.rseq().unwrap().unwrap(), 988789);
        assert_eq!(req.rack().unwrap().unwrap().cseq.method, Method::Invite);
        assert_eq!(
            req.reasons().next().unwrap().unwrap().params.get("cause"),
            Some(Some("200"))
        );
        let auth = req.auth(HeaderName::Authorization).next().unwrap().unwrap();
        assert_eq!(auth.param("realm").unwrap(), "example.com");
        assert_eq!(req.user_agent(), Some("session-core/0.1"));
        assert_eq!(req.retry_after().unwrap().unwrap(), 120);
        let back = Message::parse(req.to_bytes()).unwrap();
        assert_eq!(back, Message::Request(req));
    }
}

#[cfg(test)]
mod tag_differential {
    use super::*;
    use proptest::prelude::*;

    /// `new_tag_with` as it was: 16 alphanumerics drawn one by one, lowercased.
    fn reference(rng: &mut fastrand::Rng) -> String {
        (0..16)
            .map(|_| rng.alphanumeric().to_ascii_lowercase())
            .collect()
    }

    /// `new_branch_with` as it was.
    fn reference_branch(rng: &mut fastrand::Rng) -> String {
        format!("z9hG4bK{}", reference(rng))
    }

    fn shape(tag: &str) -> (usize, bool) {
        (
            tag.len(),
            tag.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
        )
    }

    proptest! {
        /// The text differs from the old generator's, but the shape does not, and the same
        /// seed gives the same tag and branch.
        #[test]
        fn tags_keep_their_shape_and_are_deterministic(seed in any::<u64>()) {
            let tag = new_tag_with(&mut fastrand::Rng::with_seed(seed));
            prop_assert_eq!(shape(&tag), shape(&reference(&mut fastrand::Rng::with_seed(seed))));
            prop_assert_eq!(shape(&tag), (16, true));
            prop_assert_eq!(&tag, &new_tag_with(&mut fastrand::Rng::with_seed(seed)));
            let shared = new_shared_tag_with(&mut fastrand::Rng::with_seed(seed));
            prop_assert_eq!(&*shared, tag.as_str());
            let branch = new_branch_with(&mut fastrand::Rng::with_seed(seed));
            let old = reference_branch(&mut fastrand::Rng::with_seed(seed));
            prop_assert_eq!(branch.len(), old.len());
            prop_assert!(branch.starts_with("z9hG4bK"));
            prop_assert_eq!(shape(&branch[7..]), (16, true));
            prop_assert_eq!(&branch[7..], tag.as_str());
        }
    }

    /// Every character of the alphabet comes up about as often (36 × 1,000 expected draws
    /// each: a bias of a few per cent would show).
    #[test]
    fn characters_are_uniform() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0u32; 36];
        for _ in 0..36_000 / 16 * 16 {
            for c in new_tag_with(&mut rng).bytes() {
                let i = TAG_ALPHABET.iter().position(|&a| a == c).unwrap();
                counts[i] += 1;
            }
        }
        let expected = 16_000.0;
        for (i, &n) in counts.iter().enumerate() {
            let dev = (f64::from(n) - expected).abs() / expected;
            assert!(
                dev < 0.05,
                "{} drawn {n} times",
                char::from(TAG_ALPHABET[i])
            );
        }
    }

    /// Two draws in a row differ (the generator advances).
    #[test]
    fn consecutive_tags_differ() {
        let mut rng = fastrand::Rng::with_seed(9);
        let a = new_tag_with(&mut rng);
        let b = new_tag_with(&mut rng);
        assert_ne!(a, b);
    }
}
