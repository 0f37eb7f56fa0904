//! What a UAS must answer when a well-framed request is wrong (RFC 3261 §8.2, RFC 4475), and
//! which responses a UAC must drop (§8.1.3.3, §18.1.2).
//!
//! [`validate_request`] returns a [`Rejection`] (status, reason, extra headers) as a value;
//! [`Rejection::to_response`] builds the message. Malformed responses are never answered.

use std::borrow::Cow;

use bytes::Bytes;
use session_types::StatusCode;

use crate::error::Error;
use crate::header::{Header, HeaderName};
use crate::headers::{
    Auth, Contact, MediaType, NameAddr, Parameterized, RAck, check_date, parse_delta,
    parse_max_forwards, parse_token,
};
use crate::message::{Message, Request, Response, Version};
use crate::method::Method;
use crate::parse::ParseLimits;
use crate::uri::Scheme;

/// Whether the element answering is an endpoint (UAS) or forwards requests (proxy).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum Role {
    /// A user agent server: it processes the request itself.
    #[default]
    Endpoint,
    /// A proxy: it forwards the request (Max-Forwards 0 draws 483, Proxy-Require is checked).
    Proxy,
}

/// What the element supports; the default is a session endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UasPolicy {
    /// Endpoint or proxy.
    pub role: Role,
    /// Methods answered; others known to this crate get 405, extension methods 501.
    pub allowed_methods: Vec<Method>,
    /// Option tags understood (Require / Proxy-Require, RFC 3261 §8.2.2.3).
    pub supported: Vec<String>,
    /// Request-URI schemes accepted; others get 416 (§8.2.2.1).
    pub uri_schemes: Vec<Scheme>,
    /// Body types accepted for INVITE, ACK, UPDATE and PRACK (the session description);
    /// others get 415 (§8.2.3). Other methods take any body.
    pub session_body_types: Vec<(String, String)>,
}

impl Default for UasPolicy {
    fn default() -> Self {
        use Method::*;
        Self {
            role: Role::Endpoint,
            // What a user agent built on this stack answers today. Advertise only what works:
            // PRACK (RFC 3262) is answered by session-dialog's user agent, which sends
            // reliable provisional responses only once `supported` lists 100rel; SUBSCRIBE
            // joins once it is implemented. Option tags are listed by the layer that
            // implements them (session-core adds 100rel, `timer` (RFC 4028), replaces
            // (RFC 3891) …); norefersub (RFC 4488) joins once it is implemented.
            allowed_methods: vec![
                Invite, Ack, Bye, Cancel, Options, Info, Update, Refer, Notify, Message, Prack,
            ],
            supported: Vec::new(),
            uri_schemes: vec![Scheme::Sip, Scheme::Sips, Scheme::Tel],
            session_body_types: vec![("application".into(), "sdp".into())],
        }
    }
}

impl UasPolicy {
    /// The `Allow` value for this policy.
    pub fn allow_header(&self) -> String {
        let names: Vec<&str> = self.allowed_methods.iter().map(Method::as_str).collect();
        names.join(", ")
    }
}

/// Why a request is refused and what to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The status to answer with.
    pub status: StatusCode,
    /// The reason phrase to send (for 400 it names the problem, RFC 3261 §21.4.1).
    pub reason: String,
    /// Headers the response must carry (Allow, Unsupported, Accept, ...).
    pub headers: Vec<Header>,
    /// Whether the request breaks the grammar or a MUST on a value's form (RFC 4475 §3.1.2
    /// calls these invalid), as opposed to being well-formed but unacceptable.
    pub malformed: bool,
}

impl Rejection {
    fn new(status: StatusCode, malformed: bool) -> Self {
        Self {
            status,
            reason: status.reason_phrase().to_owned(),
            headers: Vec::new(),
            malformed,
        }
    }

    fn bad(detail: impl std::fmt::Display, malformed: bool) -> Self {
        let mut r = Self::new(StatusCode::BAD_REQUEST, malformed);
        r.reason = format!("Bad Request ({detail})");
        r
    }

    fn with(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The response to send (RFC 3261 §8.2.6), with a fresh To tag from `fastrand`'s
    /// thread-local generator ([`Rejection::to_response_with`] takes the caller's).
    pub fn to_response(&self, req: &Request) -> Response {
        self.response_tagged(req, crate::build::new_tag)
    }

    /// [`Rejection::to_response`] with the fresh To tag drawn from `rng` (see
    /// [`new_tag_with`](crate::new_tag_with)): the same generator state gives the same bytes.
    pub fn to_response_with(&self, req: &Request, rng: &mut fastrand::Rng) -> Response {
        self.response_tagged(req, || crate::build::new_tag_with(rng))
    }

    /// The response, with `tag` making the To tag if it needs one.
    fn response_tagged(&self, req: &Request, tag: impl FnOnce() -> String) -> Response {
        let mut resp = Response::answering(req, self.status, tag);
        resp.reason.clone_from(&self.reason);
        for h in &self.headers {
            resp.headers.push(h.clone());
        }
        resp
    }
}

fn malformed(e: &Error) -> Rejection {
    Rejection::bad(e, true)
}

/// Checks a parsed request the way a UAS does before processing it (RFC 3261 §8.2, in that
/// order: version, mandatory headers, header syntax, Request-URI scheme, method, extensions,
/// body). `Ok` means "process it".
pub fn validate_request(req: &Request, policy: &UasPolicy) -> Result<(), Rejection> {
    let h = &req.headers;
    if req.version != Version::SIP_2_0 {
        // RFC 4475 §3.1.2.16 counts an unknown version as invalid.
        return Err(Rejection::new(StatusCode::VERSION_NOT_SUPPORTED, true));
    }
    // §8.1.1: the mandatory header fields; RFC 4475 §3.3.1 / §3.3.8 treat missing or repeated
    // single-value headers as well-formed messages the application rejects. One pass counts
    // them all: counts (saturating at 2) of Via, then of `SINGLE` in order; and which of the
    // headers read later only when present are there (so that their absence costs no further
    // scan).
    let mut counts = [0u8; 8];
    let mut present = Present::default();
    for header in h {
        let slot = match header.name() {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            HeaderName::MaxForwards => 5,
            HeaderName::ContentType => 6,
            HeaderName::Expires => 7,
            HeaderName::Require => {
                present.require = true;
                continue;
            }
            HeaderName::ProxyRequire => {
                present.proxy_require = true;
                continue;
            }
            HeaderName::ContentEncoding => {
                present.content_encoding = true;
                continue;
            }
            HeaderName::Accept => {
                present.accept = true;
                continue;
            }
            _ => continue,
        };
        if let Some(c) = counts.get_mut(slot) {
            *c = c.saturating_add(1).min(2);
        }
    }
    if !counts_usual(counts) {
        check_counts(&counts)?;
    }
    let cseq = req.cseq().map_err(|e| malformed(&e))?;
    if cseq.method != req.method {
        return Err(cseq_mismatch(req, policy));
    }
    let content_type = check_syntax(req).map_err(|e| malformed(&e))?;

    if !policy.uri_schemes.contains(&req.uri.scheme()) {
        return Err(Rejection::new(StatusCode::UNSUPPORTED_URI_SCHEME, false));
    }
    if policy.role == Role::Proxy && matches!(req.max_forwards(), Some(Ok(0))) {
        return Err(Rejection::new(StatusCode::TOO_MANY_HOPS, false));
    }
    if !policy.allowed_methods.contains(&req.method) {
        return Err(method_not_allowed(req, policy));
    }
    let (require, required) = match policy.role {
        Role::Endpoint => (HeaderName::Require, present.require),
        Role::Proxy => (HeaderName::ProxyRequire, present.proxy_require),
    };
    // §8.2.2.3: not for CANCEL, nor ACK to a non-2xx.
    if required && !matches!(req.method, Method::Ack | Method::Cancel) {
        check_required(h, require, policy)?;
    }
    if policy.role == Role::Endpoint {
        check_body(req, policy, content_type, &present)?;
    }
    Ok(())
}

// The rejections of [`validate_request`] below are out of line (for speed: the usual
// request, which none of them concerns, runs through less code).

/// The CSeq method is not the request's (§8.1.1.5 / RFC 4475 §3.1.2.17); for an unknown
/// method 501 is preferred (§3.1.2.18).
#[cold]
fn cseq_mismatch(req: &Request, policy: &UasPolicy) -> Rejection {
    if !req.method.is_known() {
        let r = Rejection::new(StatusCode::NOT_IMPLEMENTED, true);
        return r.with(HeaderName::Allow, policy.allow_header());
    }
    Rejection::bad("CSeq method does not match the request", true)
}

/// The method is not among the policy's.
#[cold]
fn method_not_allowed(req: &Request, policy: &UasPolicy) -> Rejection {
    let status = if req.method.is_known() {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        StatusCode::NOT_IMPLEMENTED
    };
    Rejection::new(status, false).with(HeaderName::Allow, policy.allow_header())
}

/// §8.2.2.3: the option tags of `require` (Require or Proxy-Require) the policy does not
/// support.
#[inline(never)]
fn check_required(
    h: &crate::header::Headers,
    require: HeaderName,
    policy: &UasPolicy,
) -> Result<(), Rejection> {
    let unknown: Vec<&str> = h
        .values(require)
        .filter(|t| !t.is_empty() && !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !unknown.is_empty() {
        return Err(Rejection::new(StatusCode::BAD_EXTENSION, false)
            .with(HeaderName::Unsupported, unknown.join(", ")));
    }
    Ok(())
}

/// Whether the counts of [`validate_request`] are those of the usual request, all five
/// mandatory headers there and no single-valued one twice (what [`check_counts`] accepts),
/// told by two tests of the counts packed in a word (for speed: no walk of them). A count is
/// 0, 1 or 2: bit 1 of its byte is set for 2, and one of bits 0–1 for 1 or 2.
#[inline]
fn counts_usual(counts: [u8; 8]) -> bool {
    let packed = u64::from_le_bytes(counts);
    packed & 0x0202_0202_0202_0200 == 0 && (packed | packed >> 1) & 0x01_0101_0101 == 0x01_0101_0101
}

/// The header fields every request carries (§8.1.1), with their names for a rejection.
const MANDATORY: [(HeaderName, &str); 5] = [
    (HeaderName::Via, "Via"),
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
];

/// The single-valued header fields a request may carry once at most (RFC 4475 §3.3.1, §3.3.8).
const SINGLE: [HeaderName; 7] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentType,
    HeaderName::Expires,
];

/// The missing and repeated headers of [`validate_request`], from their counts (Via, then
/// the single-valued ones in the order of `SINGLE`).
#[cold]
fn check_counts(counts: &[u8; 8]) -> Result<(), Rejection> {
    for (i, (_, label)) in MANDATORY.iter().enumerate() {
        if counts.get(i) == Some(&0) {
            return Err(Rejection::bad(
                format_args!("missing {label} header"),
                false,
            ));
        }
    }
    for (i, name) in SINGLE.iter().enumerate() {
        if counts.get(i + 1).is_some_and(|&c| c > 1) {
            return Err(Rejection::bad(
                format_args!("more than one {name} header"),
                false,
            ));
        }
    }
    Ok(())
}

/// Which of the headers [`validate_request`] reads only when present are there.
#[derive(Default)]
struct Present {
    require: bool,
    proxy_require: bool,
    content_encoding: bool,
    accept: bool,
}

/// §8.2.3 and §21.4.7: body type and encoding; the Accept of an INVITE (RFC 4475 §3.3.15).
///
/// `content_type` is the Content-Type [`check_syntax`] parsed (the only one: a second was
/// refused before), so it is not parsed again.
fn check_body(
    req: &Request,
    policy: &UasPolicy,
    content_type: Option<MediaType<'_>>,
    present: &Present,
) -> Result<(), Rejection> {
    let session = matches!(
        req.method,
        Method::Invite | Method::Ack | Method::Update | Method::Prack
    );
    let accept_value = || {
        let v: Vec<String> = policy
            .session_body_types
            .iter()
            .map(|(a, b)| format!("{a}/{b}"))
            .collect();
        v.join(", ")
    };
    if !req.body.is_empty() {
        let Some(ct) = content_type else {
            return Err(Rejection::bad("body without Content-Type", false));
        };
        if session && !policy.session_body_types.iter().any(|(a, b)| ct.is(a, b)) {
            return Err(Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, false)
                .with(HeaderName::Accept, accept_value()));
        }
        if present.content_encoding
            && req
                .headers
                .values(HeaderName::ContentEncoding)
                .any(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
        {
            return Err(Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, false)
                .with(HeaderName::AcceptEncoding, "identity"));
        }
    }
    if req.method == Method::Invite && present.accept {
        let ok = req.headers.values(HeaderName::Accept).any(|v| {
            MediaType::parse(v).is_ok_and(|m| {
                policy
                    .session_body_types
                    .iter()
                    .any(|(a, b)| m.covers(a, b))
            })
        });
        if !ok {
            return Err(Rejection::new(StatusCode::NOT_ACCEPTABLE, false)
                .with(HeaderName::Accept, accept_value()));
        }
    }
    Ok(())
}

/// Syntax of the typed headers beyond the ones the parser checks; returns the Content-Type,
/// parsed (for [`check_body`]).
///
/// The errors are those of checking every single-valued header in order, then each list
/// header (in the order of `LISTS`) value by value: the first pass checks the former and notes
/// which lists are there, how many lines each has and whether the first is empty; the
/// second walks only the lists present. A line of tokens (Allow, Require, Supported ...) with
/// no quote or `<` is checked in one scan instead of being split (same verdict, same error).
fn check_syntax(req: &Request) -> Result<Option<MediaType<'_>>, Error> {
    let h = &req.headers;
    // Which of `LISTS` are present, by index; which have more than one line; which have an
    // empty first line.
    let (mut lists, mut multi, mut first_empty) = (0u16, 0u16, 0u16);
    let mut content_type = None;
    for header in h {
        let name = header.name();
        let v = || header.value();
        let list_bit: u16 = match name {
            HeaderName::Contact => 1,
            HeaderName::Route => 1 << 1,
            HeaderName::RecordRoute => 1 << 2,
            HeaderName::Require => 1 << 3,
            HeaderName::ProxyRequire => 1 << 4,
            HeaderName::Supported => 1 << 5,
            HeaderName::Unsupported => 1 << 6,
            HeaderName::Allow => 1 << 7,
            HeaderName::Accept => 1 << 8,
            _ => 0,
        };
        if list_bit != 0 {
            if lists & list_bit != 0 {
                multi |= list_bit;
            } else if header.value_bytes().is_empty() {
                first_empty |= list_bit;
            }
            lists |= list_bit;
            continue;
        }
        match name {
            HeaderName::MaxForwards => {
                parse_max_forwards(v())?;
            }
            HeaderName::Expires | HeaderName::MinExpires | HeaderName::MinSe | HeaderName::RSeq => {
                parse_delta(header_label(name), v())?;
            }
            HeaderName::Date => check_date(v())?,
            HeaderName::ContentType => {
                let t = MediaType::parse(v())?;
                content_type.get_or_insert(t);
            }
            HeaderName::RAck => {
                RAck::parse(v())?;
            }
            HeaderName::Replaces => {
                Parameterized::parse_replaces(v())?;
            }
            HeaderName::Event | HeaderName::SessionExpires | HeaderName::SubscriptionState => {
                Parameterized::parse(header_label(name), v())?;
            }
            HeaderName::ReferTo | HeaderName::ReferredBy | HeaderName::ReplyTo => {
                NameAddr::parse_for(header_label(name), v())?;
            }
            HeaderName::Authorization | HeaderName::ProxyAuthorization => {
                Auth::parse(v())?;
            }
            _ => {}
        }
    }
    if lists == 0 {
        return Ok(content_type);
    }
    const LISTS: [HeaderName; 9] = [
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Supported,
        HeaderName::Unsupported,
        HeaderName::Allow,
        HeaderName::Accept,
    ];
    // The lists present, by their bits (for speed: not a test of all nine).
    let mut left = lists;
    while left != 0 {
        let i = left.trailing_zeros() as usize;
        let bit = 1u16 << i;
        left &= !bit;
        let Some(&name) = LISTS.get(i) else {
            break;
        };
        let label = header_label(name);
        // An empty Accept/Allow/Supported is legal (it lists nothing).
        let single_empty = first_empty & bit != 0 && multi & bit == 0;
        if single_empty
            && !matches!(
                name,
                HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute
            )
        {
            continue;
        }
        let mut stars = 0;
        let mut total = 0;
        for line in h.get_all(name) {
            let v = line.value();
            let token_list_error = match name {
                HeaderName::Allow => Some("not a method"),
                HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Supported
                | HeaderName::Unsupported => Some("not a token"),
                _ => None,
            };
            if let Some(what) = token_list_error {
                match token_list_ok(v.as_bytes()) {
                    Some(true) => continue,
                    Some(false) => return Err(Error::header(label, what)),
                    None => {}
                }
            }
            // The usual Contact line, one address without header parameters, is checked
            // without the split and the general parse (for speed: every request has one).
            if name == HeaderName::Contact && usual_contact(v) {
                total += 1;
                continue;
            }
            for v in crate::text::split_top_level(v, b',') {
                total += 1;
                match name {
                    HeaderName::Contact => {
                        if Contact::parse(v)? == Contact::Star {
                            stars += 1;
                        }
                    }
                    HeaderName::Route | HeaderName::RecordRoute => {
                        let a = NameAddr::parse_for(label, v)?;
                        if !a.has_angle_brackets() {
                            return Err(Error::header(label, "must be <URI>"));
                        }
                    }
                    HeaderName::Accept => {
                        MediaType::parse(v)?;
                    }
                    HeaderName::Allow => {
                        Method::parse(crate::text::trim(v))
                            .map_err(|_| Error::header(label, "not a method"))?;
                    }
                    _ => {
                        parse_token(label, v)?;
                    }
                }
            }
        }
        // §20.10: `*` stands alone.
        if stars > 0 && total > 1 {
            return Err(Error::header("Contact", "* mixed with addresses"));
        }
    }
    Ok(content_type)
}

/// Whether the Contact line `v` is one address that [`Contact::parse`] accepts, in one of
/// the usual forms: `addr-spec` or `<addr-spec>` alone (no display name, no header
/// parameters, no comma). Then splitting the line gives `v` alone, and `Contact::parse` of it
/// gives an address without parameters, after scanning the same URI text as here. `false`
/// when it is not (or not such a line): the caller then splits and parses it.
fn usual_contact(v: &str) -> bool {
    let b = v.as_bytes();
    // The bytes that make a line unusual, by a table (one load a byte, for speed): bit 1 in
    // any form, bit 2 in an addr-spec (they would start parameters or headers of the value).
    const SPECIAL: [u8; 256] = {
        let mut t = [0u8; 256];
        t[b',' as usize] = 1;
        t[b'"' as usize] = 1;
        t[b'<' as usize] = 1;
        t[b'>' as usize] = 1;
        t[b';' as usize] = 2;
        t[b'?' as usize] = 2;
        t
    };
    let (uri, mask) = match b {
        // name-addr: `Contact::parse` scans the text up to the first `>` (the last here).
        [b'<', inner @ .., b'>'] => (inner, 1),
        // addr-spec: the URI runs to the end, as no `;` starts parameters.
        _ => (b, 1 | 2),
    };
    let ends_ok = match (uri.first(), uri.last()) {
        (Some(&first), Some(&last)) => !crate::text::is_ws(first) && !crate::text::is_ws(last),
        _ => false,
    };
    if !ends_ok || uri.iter().any(|&c| SPECIAL[usize::from(c)] & mask != 0) {
        return false;
    }
    // `uri` is `v` or `v` without its first and last bytes (ASCII): a char boundary.
    let text = match b.first() {
        Some(b'<') => v.get(1..v.len() - 1),
        _ => Some(v),
    };
    text.is_some_and(crate::uri::is_valid)
}

/// Whether every element of a comma-separated line is a token (SP and HTAB around it), as
/// splitting it and checking each trimmed element would say; `None` when the line holds a
/// `"` or `<`, which the split treats apart (the caller splits it then).
fn token_list_ok(b: &[u8]) -> Option<bool> {
    use crate::text::{is_token_byte, is_ws};
    let mut i = 0;
    let mut ok = true;
    loop {
        while b.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        let start = i;
        while b.get(i).copied().is_some_and(is_token_byte) {
            i += 1;
        }
        ok &= i > start;
        while b.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        match b.get(i) {
            None => return Some(ok),
            Some(b',') => i += 1,
            Some(_) => {
                // Not a token list: unless a `"` or `<` follows (then the split decides).
                return match b.get(i..)?.iter().any(|&c| c == b'"' || c == b'<') {
                    true => None,
                    false => Some(false),
                };
            }
        }
    }
}

fn header_label(name: HeaderName) -> &'static str {
    name.as_str()
}

/// Why a response must be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discard {
    /// What is wrong, in words.
    pub reason: String,
    /// Whether the response breaks the grammar (as opposed to being unusable here).
    pub malformed: bool,
}

/// Checks a parsed response the way a UAC does (RFC 3261 §8.1.3.3, §18.1.2): it must be
/// SIP/2.0, carry Via, From, To, Call-ID and CSeq once each, and exactly one Via. `Err` means
/// "drop it silently"; responses are never answered.
pub fn validate_response(resp: &Response) -> Result<(), Discard> {
    let drop = |reason: String, malformed| Err(Discard { reason, malformed });
    if resp.version != Version::SIP_2_0 {
        return drop("not SIP/2.0".into(), true);
    }
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if resp.headers.get(name).is_none() {
            return drop(format!("missing {name} header"), false);
        }
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if resp.headers.count(name) > 1 {
            return drop(format!("more than one {name} header"), false);
        }
    }
    // §8.1.3.3: more than one Via means the response was misrouted (RFC 4475 §3.3.10).
    if resp.headers.values(HeaderName::Via).count() != 1 {
        return drop("more than one Via: not for this UAC".into(), false);
    }
    Ok(())
}

/// What to do with a received datagram, as a UAS endpoint or a UAC.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Process it (hand it to the transaction layer).
    Accept,
    /// Answer with this response and do not process it.
    Answer(Box<Response>),
    /// Discard it silently.
    Drop,
}

/// The outcome of [`triage_datagram`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Verdict {
    /// The parsed message, when the parser accepted it.
    pub message: Option<Message>,
    /// Whether the message is well formed: parsed, and not rejected for its form (see
    /// [`Rejection::malformed`]).
    pub well_formed: bool,
    /// What to do with it.
    pub action: Action,
    /// Why, in words (borrowed from a constant for an accepted message: no allocation).
    pub reason: Cow<'static, str>,
}

/// Parses a datagram and decides what to do with it: the parser, then [`validate_request`]
/// or [`validate_response`]; a request the parser rejects is answered (400, 414 or 513) when
/// [`bad_request_for`](crate::bad_request_for) can build one, and dropped otherwise.
///
/// The To tag of an answer comes from `fastrand`'s thread-local generator;
/// [`triage_datagram_with`] draws it from the caller's.
pub fn triage_datagram(buf: &Bytes, limits: &ParseLimits, policy: &UasPolicy) -> Verdict {
    triage(buf, limits, policy, crate::build::new_tag)
}

/// [`triage_datagram`] with the To tag of an answer drawn from `rng` (see
/// [`new_tag_with`](crate::new_tag_with)): the same datagram and generator state give the same
/// verdict, byte for byte. Nothing is drawn for a datagram that is not answered.
pub fn triage_datagram_with(
    buf: &Bytes,
    limits: &ParseLimits,
    policy: &UasPolicy,
    rng: &mut fastrand::Rng,
) -> Verdict {
    triage(buf, limits, policy, || crate::build::new_tag_with(rng))
}

fn triage(
    buf: &Bytes,
    limits: &ParseLimits,
    policy: &UasPolicy,
    tag: impl FnOnce() -> String,
) -> Verdict {
    let message = match crate::parse::parse_datagram(buf, limits) {
        Ok(m) => m,
        Err(e) => {
            let action = match crate::parse::bad_request_tagged(buf, &e, limits, tag) {
                Some(r) => Action::Answer(Box::new(r)),
                None => Action::Drop,
            };
            return Verdict {
                message: None,
                well_formed: false,
                action,
                reason: Cow::Owned(e.to_string()),
            };
        }
    };
    let (well_formed, action, reason) = match &message {
        Message::Request(req) => match validate_request(req, policy) {
            Ok(()) => (true, Action::Accept, Cow::Borrowed("well-formed request")),
            // An ACK is never answered (RFC 3261 §17.2.1): drop it instead.
            Err(r) if req.method == Method::Ack => (!r.malformed, Action::Drop, r.reason.into()),
            // Without a Via the answer has nowhere to go (§18.2.2), and a client would discard
            // a response without one (§18.1.2). (A Via that is there was read by the parser.)
            Err(r) if req.headers.get(HeaderName::Via).is_none() => {
                (!r.malformed, Action::Drop, r.reason.into())
            }
            Err(r) => {
                let resp = r.response_tagged(req, tag);
                (
                    !r.malformed,
                    Action::Answer(Box::new(resp)),
                    r.reason.into(),
                )
            }
        },
        Message::Response(resp) => match validate_response(resp) {
            Ok(()) => (true, Action::Accept, Cow::Borrowed("well-formed response")),
            Err(d) => (!d.malformed, Action::Drop, d.reason.into()),
        },
    };
    Verdict {
        message: Some(message),
        well_formed,
        action,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str, method: &str, cseq_method: &str) -> Request {
        let s = format!(
            "{method} sip:u@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:u@example.com>\r\nCall-ID: c1\r\nCSeq: 1 {cseq_method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match Message::parse(s).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn status(r: &Request) -> Option<u16> {
        validate_request(r, &UasPolicy::default())
            .err()
            .map(|r| r.status.as_u16())
    }

    #[test]
    fn answers() {
        assert_eq!(status(&req("", "OPTIONS", "OPTIONS")), None);
        assert_eq!(status(&req("", "OPTIONS", "INVITE")), Some(400));
        assert_eq!(status(&req("", "FOO", "FOO")), Some(501));
        assert_eq!(status(&req("", "REGISTER", "REGISTER")), Some(405));
        assert_eq!(
            status(&req("Require: foo, 100rel\r\n", "OPTIONS", "OPTIONS")),
            Some(420)
        );
        // 100rel (RFC 3262) is not implemented: requiring it gets 420, as any unknown tag.
        assert_eq!(
            status(&req("Require: 100rel\r\n", "OPTIONS", "OPTIONS")),
            Some(420)
        );
        let with_timer = UasPolicy {
            supported: vec!["timer".to_owned()],
            ..UasPolicy::default()
        };
        let timer = req("Require: timer\r\n", "OPTIONS", "OPTIONS");
        assert!(
            validate_request(&timer, &with_timer).is_ok(),
            "a tag the layer supports"
        );
        assert_eq!(status(&req("", "SUBSCRIBE", "SUBSCRIBE")), Some(405));
        assert_eq!(
            status(&req("Expires: 4294967296\r\n", "OPTIONS", "OPTIONS")),
            Some(400)
        );
        assert_eq!(
            status(&req("Contact: *, <sip:a@b>\r\n", "OPTIONS", "OPTIONS")),
            Some(400)
        );
        assert_eq!(
            status(&req("Accept: text/plain\r\n", "INVITE", "INVITE")),
            Some(406)
        );
        assert_eq!(
            status(&req("Accept: application/*\r\n", "INVITE", "INVITE")),
            None
        );
        assert_eq!(status(&req("Accept:\r\n", "OPTIONS", "OPTIONS")), None);
        assert_eq!(
            status(&req("Route: sip:p@x\r\n", "OPTIONS", "OPTIONS")),
            Some(400)
        );
        let r = req("Require: foo\r\n", "OPTIONS", "OPTIONS");
        let rej = validate_request(&r, &UasPolicy::default()).unwrap_err();
        let resp = rej.to_response(&r);
        assert_eq!(resp.headers.get_str(HeaderName::Unsupported), Some("foo"));
        assert!(resp.to().unwrap().tag().is_some());
        let proxy = UasPolicy {
            role: Role::Proxy,
            ..UasPolicy::default()
        };
        let mut zero = req("", "OPTIONS", "OPTIONS");
        zero.headers.set(Header::new(HeaderName::MaxForwards, "0"));
        assert_eq!(validate_request(&zero, &UasPolicy::default()), Ok(()));
        assert_eq!(
            validate_request(&zero, &proxy).unwrap_err().status,
            StatusCode::TOO_MANY_HOPS
        );
    }
}

#[cfg(test)]
/// The validation as it was before the single-pass rewrite (reading each list header with
/// `values`, `count` and `get_str`, Content-Type parsed twice), kept as the oracle of the
/// differential tests below.
mod reference {
    use super::*;

    /// Checks a parsed request the way a UAS does before processing it (RFC 3261 §8.2, in that
    /// order: version, mandatory headers, header syntax, Request-URI scheme, method, extensions,
    /// body). `Ok` means "process it".
    pub(super) fn validate_request(req: &Request, policy: &UasPolicy) -> Result<(), Rejection> {
        let h = &req.headers;
        if req.version != Version::SIP_2_0 {
            // RFC 4475 §3.1.2.16 counts an unknown version as invalid.
            return Err(Rejection::new(StatusCode::VERSION_NOT_SUPPORTED, true));
        }
        // §8.1.1: the mandatory header fields; RFC 4475 §3.3.1 / §3.3.8 treat missing or repeated
        // single-value headers as well-formed messages the application rejects. One pass counts
        // them all.
        // Counts (saturating at 2) of Via, then of SINGLE in order.
        let mut counts = [0u8; 8];
        for header in h {
            let slot = match header.name() {
                HeaderName::Via => 0,
                HeaderName::From => 1,
                HeaderName::To => 2,
                HeaderName::CallId => 3,
                HeaderName::CSeq => 4,
                HeaderName::MaxForwards => 5,
                HeaderName::ContentType => 6,
                HeaderName::Expires => 7,
                _ => continue,
            };
            if let Some(c) = counts.get_mut(slot) {
                *c = c.saturating_add(1).min(2);
            }
        }
        for (i, (_, label)) in MANDATORY.iter().enumerate() {
            if counts.get(i) == Some(&0) {
                return Err(Rejection::bad(
                    format_args!("missing {label} header"),
                    false,
                ));
            }
        }
        for (i, name) in SINGLE.iter().enumerate() {
            if counts.get(i + 1).is_some_and(|&c| c > 1) {
                return Err(Rejection::bad(
                    format_args!("more than one {name} header"),
                    false,
                ));
            }
        }
        let cseq = req.cseq().map_err(|e| malformed(&e))?;
        if cseq.method != req.method {
            // §8.1.1.5 / RFC 4475 §3.1.2.17; for an unknown method 501 is preferred (§3.1.2.18).
            if !req.method.is_known() {
                let mut r = Rejection::new(StatusCode::NOT_IMPLEMENTED, true);
                r = r.with(HeaderName::Allow, policy.allow_header());
                return Err(r);
            }
            return Err(Rejection::bad(
                "CSeq method does not match the request",
                true,
            ));
        }
        check_syntax(req).map_err(|e| malformed(&e))?;

        if !policy.uri_schemes.contains(&req.uri.scheme()) {
            return Err(Rejection::new(StatusCode::UNSUPPORTED_URI_SCHEME, false));
        }
        if policy.role == Role::Proxy && matches!(req.max_forwards(), Some(Ok(0))) {
            return Err(Rejection::new(StatusCode::TOO_MANY_HOPS, false));
        }
        if !policy.allowed_methods.contains(&req.method) {
            let status = if req.method.is_known() {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::NOT_IMPLEMENTED
            };
            return Err(
                Rejection::new(status, false).with(HeaderName::Allow, policy.allow_header())
            );
        }
        let require = match policy.role {
            Role::Endpoint => HeaderName::Require,
            Role::Proxy => HeaderName::ProxyRequire,
        };
        // §8.2.2.3: not for CANCEL, nor ACK to a non-2xx.
        if !matches!(req.method, Method::Ack | Method::Cancel) {
            let unknown: Vec<&str> = h
                .values(require)
                .filter(|t| {
                    !t.is_empty() && !policy.supported.iter().any(|s| s.eq_ignore_ascii_case(t))
                })
                .collect();
            if !unknown.is_empty() {
                return Err(Rejection::new(StatusCode::BAD_EXTENSION, false)
                    .with(HeaderName::Unsupported, unknown.join(", ")));
            }
        }
        if policy.role == Role::Endpoint {
            check_body(req, policy)?;
        }
        Ok(())
    }

    /// §8.2.3 and §21.4.7: body type and encoding; the Accept of an INVITE (RFC 4475 §3.3.15).
    fn check_body(req: &Request, policy: &UasPolicy) -> Result<(), Rejection> {
        let session = matches!(
            req.method,
            Method::Invite | Method::Ack | Method::Update | Method::Prack
        );
        let accept_value = || {
            let v: Vec<String> = policy
                .session_body_types
                .iter()
                .map(|(a, b)| format!("{a}/{b}"))
                .collect();
            v.join(", ")
        };
        if !req.body.is_empty() {
            let Some(ct) = req.content_type() else {
                return Err(Rejection::bad("body without Content-Type", false));
            };
            let ct = ct.map_err(|e| malformed(&e))?;
            if session && !policy.session_body_types.iter().any(|(a, b)| ct.is(a, b)) {
                return Err(Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, false)
                    .with(HeaderName::Accept, accept_value()));
            }
            if req
                .headers
                .values(HeaderName::ContentEncoding)
                .any(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
            {
                return Err(Rejection::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, false)
                    .with(HeaderName::AcceptEncoding, "identity"));
            }
        }
        if req.method == Method::Invite && req.headers.get(HeaderName::Accept).is_some() {
            let ok = req.headers.values(HeaderName::Accept).any(|v| {
                MediaType::parse(v).is_ok_and(|m| {
                    policy
                        .session_body_types
                        .iter()
                        .any(|(a, b)| m.covers(a, b))
                })
            });
            if !ok {
                return Err(Rejection::new(StatusCode::NOT_ACCEPTABLE, false)
                    .with(HeaderName::Accept, accept_value()));
            }
        }
        Ok(())
    }

    /// Syntax of the typed headers beyond the ones the parser checks.
    fn check_syntax(req: &Request) -> Result<(), Error> {
        let h = &req.headers;
        // Which of `list_headers` (below) are present, by index.
        let mut lists = 0u16;
        for header in h {
            let name = header.name();
            let v = || header.value();
            let list_bit = match name {
                HeaderName::Contact => 1,
                HeaderName::Route => 1 << 1,
                HeaderName::RecordRoute => 1 << 2,
                HeaderName::Require => 1 << 3,
                HeaderName::ProxyRequire => 1 << 4,
                HeaderName::Supported => 1 << 5,
                HeaderName::Unsupported => 1 << 6,
                HeaderName::Allow => 1 << 7,
                HeaderName::Accept => 1 << 8,
                _ => 0,
            };
            lists |= list_bit;
            if list_bit != 0 {
                continue;
            }
            match name {
                HeaderName::MaxForwards => {
                    parse_max_forwards(v())?;
                }
                HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::MinSe
                | HeaderName::RSeq => {
                    parse_delta(header_label(name), v())?;
                }
                HeaderName::Date => check_date(v())?,
                HeaderName::ContentType => {
                    MediaType::parse(v())?;
                }
                HeaderName::RAck => {
                    RAck::parse(v())?;
                }
                HeaderName::Replaces => {
                    Parameterized::parse_replaces(v())?;
                }
                HeaderName::Event | HeaderName::SessionExpires | HeaderName::SubscriptionState => {
                    Parameterized::parse(header_label(name), v())?;
                }
                HeaderName::ReferTo | HeaderName::ReferredBy | HeaderName::ReplyTo => {
                    NameAddr::parse_for(header_label(name), v())?;
                }
                HeaderName::Authorization | HeaderName::ProxyAuthorization => {
                    Auth::parse(v())?;
                }
                _ => {}
            }
        }
        let list_headers = [
            HeaderName::Contact,
            HeaderName::Route,
            HeaderName::RecordRoute,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::Supported,
            HeaderName::Unsupported,
            HeaderName::Allow,
            HeaderName::Accept,
        ];
        for (i, name) in list_headers.into_iter().enumerate() {
            if lists & (1 << i) == 0 {
                continue;
            }
            let values = h.values(name);
            // An empty Accept/Allow/Supported is legal (it lists nothing).
            let single_empty = h.count(name) == 1 && h.get_str(name) == Some("");
            if single_empty
                && !matches!(
                    name,
                    HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute
                )
            {
                continue;
            }
            let mut stars = 0;
            let mut total = 0;
            for v in values {
                total += 1;
                let label = header_label(name);
                match name {
                    HeaderName::Contact => {
                        if Contact::parse(v)? == Contact::Star {
                            stars += 1;
                        }
                    }
                    HeaderName::Route | HeaderName::RecordRoute => {
                        let a = NameAddr::parse_for(label, v)?;
                        if !a.has_angle_brackets() {
                            return Err(Error::header(label, "must be <URI>"));
                        }
                    }
                    HeaderName::Accept => {
                        MediaType::parse(v)?;
                    }
                    HeaderName::Allow => {
                        Method::parse(crate::text::trim(v))
                            .map_err(|_| Error::header(label, "not a method"))?;
                    }
                    _ => {
                        parse_token(label, v)?;
                    }
                }
            }
            // §20.10: `*` stands alone.
            if stars > 0 && total > 1 {
                return Err(Error::header("Contact", "* mixed with addresses"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;

    const SEEDS: [&[u8]; 4] = [
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>;expires=60\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, PRACK\r\n\
Supported: replaces, timer, 100rel\r\n\
Require: timer\r\n\
Accept: application/sdp, text/plain;q=0.5\r\n\
Content-Encoding: identity\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\no=x\r\n",
        b"OPTIONS sip:x@y SIP/2.0\r\n\
Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: sip:x@y\r\nCall-ID: c\r\nCSeq: 2 OPTIONS\r\n\
Route: <sip:p1@example.com;lr>, <sip:p2@example.com;lr>\r\n\
Record-Route: <sip:r@example.com;lr>\r\n\
Proxy-Require: foo\r\nUnsupported: bar\r\nAllow:\r\nSupported:\r\n\
Contact: *\r\nm: \"A, b\" <sip:c@d>\r\nExpires: 10\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
Max-Forwards: 0\r\n\r\n",
        b"BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds10\r\n\
Max-Forwards: 70\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
To: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 231 BYE\r\n\
Allow: INVITE,BYE , \"x\"\r\nRequire: a, <b>\r\nAccept:\r\nContent-Encoding: gzip\r\n\
Content-Type: text/plain\r\n\
Content-Length: 2\r\n\
\r\nhi",
        b"ACK sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n\
To: service <sip:service@127.0.0.1:5060>;tag=x\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 ACK\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Contact: <sip:a@[::1]:5;transport=tcp?h=v>\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
    ];

    fn policies() -> [UasPolicy; 3] {
        [
            UasPolicy::default(),
            UasPolicy {
                role: Role::Proxy,
                supported: vec!["foo".into()],
                ..UasPolicy::default()
            },
            UasPolicy {
                supported: vec!["timer".into(), "TIMER".into()],
                allowed_methods: vec![Method::Invite, Method::Bye],
                ..UasPolicy::default()
            },
        ]
    }

    fn check(bytes: &[u8]) {
        let Ok(Message::Request(req)) = Message::parse(bytes.to_vec()) else {
            return;
        };
        for p in &policies() {
            assert_eq!(
                validate_request(&req, p),
                reference::validate_request(&req, p),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn seeds_validate_as_before() {
        for seed in SEEDS {
            check(seed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn mutated_requests_validate_as_before(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                b" \t,;<>\"*=/0aZ:".to_vec())), 0..5),
            inserts in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                vec![&b"Allow: FOO, bar\r\n"[..], b"Supported:\r\n", b"Require: x,\r\n", b"Contact: *\r\n",
                     b"Accept: */*\r\n", b"Content-Type: a/b\r\n", b"Route: sip:x@y\r\n", b"Allow: \r\n",
                     b", \"q\"", b", <sip:z@w>", b",,", b" x y",
                     b"Contact: <sip:q@r:1>\r\n", b"Contact: sip:q@[::1]\r\n"])), 0..3),
        ) {
            let mut bytes = SEEDS[seed].to_vec();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            for (at, s) in inserts {
                let i = at.index(bytes.len() + 1);
                bytes.splice(i..i, s.iter().copied());
            }
            check(&bytes);
        }

        #[test]
        fn usual_contacts_are_judged_as_by_the_parse(
            v in "<?(sips?:|SIP:|tel:|mailto:|\\*)?[a-zA-Z0-9@.:;?=&<>\",*%\\[\\] \t-]{0,24}>?"
        ) {
            check_usual_contact(&v)?;
        }

        #[test]
        fn usual_looking_contacts_are_judged_as_by_the_parse(
            v in "[ ]?<?(sips?|SIP|tel|mailto|x)[:]([a-z0-9%-]{0,4}(:[a-z]{0,2})?@)?[a-z0-9.\\[\\]:-]{0,12}[;?=&<>\",* \t]{0,2}[a-z0-9=]{0,4}>?[ ;]?"
        ) {
            check_usual_contact(&v)?;
        }
    }

    fn check_usual_contact(v: &str) -> Result<(), TestCaseError> {
        {
            // Accepted by the fast check: the split gives one address that parses.
            if usual_contact(v) {
                let all: Vec<&str> = crate::text::split_top_level(v, b',').collect();
                prop_assert_eq!(all.len(), 1);
                prop_assert!(matches!(Contact::parse(all[0]), Ok(Contact::Addr(_))));
            }
        }
        Ok(())
    }

    #[test]
    fn usual_counts_are_those_check_counts_accepts() {
        // Every count of 0, 1 or 2 for each of the eight headers.
        for n in 0..3u32.pow(8) {
            let mut counts = [0u8; 8];
            let mut k = n;
            for c in &mut counts {
                *c = (k % 3) as u8;
                k /= 3;
            }
            assert_eq!(
                counts_usual(counts),
                check_counts(&counts).is_ok(),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn usual_contacts() {
        for v in [
            "sip:sipp@127.0.0.1:5061",
            "<sip:a@b;transport=tcp>",
            "<sip:a@[::1]:5?h=v>",
            "sips:b.example.com",
            "tel:+1-555",
        ] {
            assert!(usual_contact(v), "{v}");
            assert!(matches!(Contact::parse(v), Ok(Contact::Addr(_))), "{v}");
        }
        for v in [
            "*",
            "",
            "<>",
            "sip:a@b;expires=1",
            "<sip:a@b>;q=1",
            "A <sip:a@b>",
            "sip:a@b, sip:c@d",
            " sip:a@b",
            "<sip:a@b >",
            "sip:a@b?x=y",
            "sip:a@b:99999",
        ] {
            assert!(!usual_contact(v), "{v}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn token_lines_are_judged_as_by_the_split(v in "[a-zA-Z0-9 \t,\"<>.!~@;-]{0,24}") {
            let by_split = crate::text::split_top_level(&v, b',')
                .all(|e| crate::text::is_token(crate::text::trim(e)));
            match token_list_ok(v.as_bytes()) {
                Some(ok) => prop_assert_eq!(ok, by_split),
                None => prop_assert!(v.contains(['"', '<'])),
            }
        }
    }
}
