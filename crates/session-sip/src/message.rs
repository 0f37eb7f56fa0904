//! Requests and responses: the start line, the ordered headers, the body; typed shortcuts for
//! the headers every layer reads; and canonical serialization.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use session_types::StatusCode;

use crate::error::{Error, Result};
use crate::header::{HeaderName, Headers};
use crate::headers::{CSeq, Hot, NameAddr, Via};
use crate::method::Method;
use crate::text::split_top_level;
use crate::uri::Uri;

/// A SIP version, `SIP/major.minor`. Everything but 2.0 draws a 505 (RFC 3261 §21.5.6).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Version {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
}

impl Version {
    /// SIP/2.0.
    pub const SIP_2_0: Self = Self { major: 2, minor: 0 };

    /// Parses `SIP/x.y` ("SIP" in any case).
    pub fn parse(s: &str) -> Result<Self> {
        if s == "SIP/2.0" {
            return Ok(Self::SIP_2_0);
        }
        let bad = Error::StartLine("bad SIP version");
        let prefix = s.get(..4).ok_or(bad.clone())?;
        if !prefix.eq_ignore_ascii_case("SIP/") {
            return Err(bad);
        }
        let (a, b) = s
            .get(4..)
            .unwrap_or_default()
            .split_once('.')
            .ok_or(bad.clone())?;
        let num = |x: &str| {
            crate::text::parse_u64(x)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(bad.clone())
        };
        Ok(Self {
            major: num(a)?,
            minor: num(b)?,
        })
    }
}

impl Default for Version {
    fn default() -> Self {
        Self::SIP_2_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/{}.{}", self.major, self.minor)
    }
}

/// A SIP request.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The version from the Request-Line.
    pub version: Version,
    /// Header fields in order.
    pub headers: Headers,
    /// The body (shares the received buffer).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Response {
    /// The version from the Status-Line.
    pub version: Version,
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase as received (may be empty or any UTF-8 text).
    pub reason: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A request or a response.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// Typed shortcuts shared by requests and responses.
macro_rules! common_accessors {
    () => {
        /// The top (first) Via.
        pub fn top_via(&self) -> Result<Via<'_>> {
            let h = self
                .headers
                .get(HeaderName::Via)
                .ok_or(Error::MissingHeader("Via"))?;
            if let Hot::Via(spans) = h.hot() {
                return Ok(Via::from_spans(h.value(), &spans));
            }
            Via::parse(split_top_level(h.value(), b',').next().unwrap_or_default())
        }

        /// Every Via value, top first.
        pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>>> {
            self.headers.values(HeaderName::Via).map(Via::parse)
        }

        /// From.
        pub fn from(&self) -> Result<NameAddr<'_>> {
            self.name_addr(HeaderName::From, "From")
        }

        /// To.
        pub fn to(&self) -> Result<NameAddr<'_>> {
            self.name_addr(HeaderName::To, "To")
        }

        /// Call-ID.
        pub fn call_id(&self) -> Result<&str> {
            self.headers
                .get_str(HeaderName::CallId)
                .ok_or(Error::MissingHeader("Call-ID"))
        }

        /// CSeq.
        pub fn cseq(&self) -> Result<CSeq> {
            let h = self
                .headers
                .get(HeaderName::CSeq)
                .ok_or(Error::MissingHeader("CSeq"))?;
            if let Hot::CSeq(seq, known) = h.hot() {
                if let Some(method) = Method::from_known_index(known) {
                    return Ok(CSeq { seq, method });
                }
            }
            CSeq::parse(h.value())
        }

        /// Content-Length, if present.
        pub fn content_length(&self) -> Option<Result<usize>> {
            self.headers.get(HeaderName::ContentLength).map(|h| {
                if let Hot::Length(n) = h.hot() {
                    return Ok(n as usize);
                }
                crate::text::parse_u64(crate::text::trim(h.value()))
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(Error::ContentLength("not a number"))
            })
        }

        /// Content-Type, if present.
        pub fn content_type(&self) -> Option<Result<crate::headers::MediaType<'_>>> {
            self.headers
                .get_str(HeaderName::ContentType)
                .map(crate::headers::MediaType::parse)
        }

        /// Every Contact value.
        pub fn contacts(&self) -> impl Iterator<Item = Result<crate::headers::Contact<'_>>> {
            self.headers
                .values(HeaderName::Contact)
                .map(crate::headers::Contact::parse)
        }

        /// Every Route value, in order (each must be `<URI>`, RFC 3261 §20.34).
        pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>>> {
            self.headers
                .values(HeaderName::Route)
                .map(|v| NameAddr::parse_for("Route", v))
        }

        /// Every Record-Route value, in order.
        pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>>> {
            self.headers
                .values(HeaderName::RecordRoute)
                .map(|v| NameAddr::parse_for("Record-Route", v))
        }

        /// The option tags of Supported, Require, Proxy-Require or Unsupported (pass the
        /// header name).
        pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = Result<&str>> {
            self.headers
                .values(name)
                .filter(|v| !v.is_empty())
                .map(move |v| crate::headers::parse_token(name.as_str(), v))
        }

        /// The values of Resource-Priority (RFC 4412), each parsed.
        pub fn resource_priorities(
            &self,
        ) -> impl Iterator<Item = Result<crate::resource_priority::ResourceValue<'_>>> {
            self.headers
                .values(HeaderName::ResourcePriority)
                .map(crate::resource_priority::ResourceValue::parse)
        }

        /// The methods of Allow.
        pub fn allow(&self) -> impl Iterator<Item = Result<Method>> {
            self.headers
                .values(HeaderName::Allow)
                .filter(|v| !v.is_empty())
                .map(Method::parse)
        }

        /// Expires, in seconds (a 32-bit number, RFC 3261 §20.19).
        pub fn expires(&self) -> Option<Result<u32>> {
            self.headers
                .get_str(HeaderName::Expires)
                .map(|v| crate::headers::parse_delta("Expires", v))
        }

        /// Event (RFC 6665): package and parameters.
        pub fn event(&self) -> Option<Result<crate::headers::Parameterized<'_>>> {
            self.headers
                .get_str(HeaderName::Event)
                .map(|v| crate::headers::Parameterized::parse("Event", v))
        }

        /// Refer-To (RFC 3515).
        pub fn refer_to(&self) -> Option<Result<NameAddr<'_>>> {
            self.headers
                .get_str(HeaderName::ReferTo)
                .map(|v| NameAddr::parse_for("Refer-To", v))
        }

        /// Referred-By (RFC 3892).
        pub fn referred_by(&self) -> Option<Result<NameAddr<'_>>> {
            self.headers
                .get_str(HeaderName::ReferredBy)
                .map(|v| NameAddr::parse_for("Referred-By", v))
        }

        /// Replaces (RFC 3891): Call-ID and `to-tag`/`from-tag`/`early-only` parameters.
        pub fn replaces(&self) -> Option<Result<crate::headers::Parameterized<'_>>> {
            self.headers
                .get_str(HeaderName::Replaces)
                .map(crate::headers::Parameterized::parse_replaces)
        }

        /// Session-Expires (RFC 4028): interval in seconds and the `refresher` parameter.
        pub fn session_expires(&self) -> Option<Result<(u32, crate::Params<'_>)>> {
            self.headers.get_str(HeaderName::SessionExpires).map(|v| {
                let p = crate::headers::Parameterized::parse("Session-Expires", v)?;
                Ok((
                    crate::headers::parse_delta("Session-Expires", p.value)?,
                    p.params,
                ))
            })
        }

        /// Min-SE (RFC 4028), in seconds.
        pub fn min_se(&self) -> Option<Result<u32>> {
            self.headers.get_str(HeaderName::MinSe).map(|v| {
                let p = crate::headers::Parameterized::parse("Min-SE", v)?;
                crate::headers::parse_delta("Min-SE", p.value)
            })
        }

        /// RSeq (RFC 3262).
        pub fn rseq(&self) -> Option<Result<u32>> {
            self.headers
                .get_str(HeaderName::RSeq)
                .map(|v| crate::headers::parse_delta("RSeq", v))
        }

        /// RAck (RFC 3262).
        pub fn rack(&self) -> Option<Result<crate::headers::RAck>> {
            self.headers
                .get_str(HeaderName::RAck)
                .map(crate::headers::RAck::parse)
        }

        /// Every Reason value (RFC 3326): protocol, `cause` and `text` parameters.
        pub fn reasons(&self) -> impl Iterator<Item = Result<crate::headers::Parameterized<'_>>> {
            self.headers
                .values(HeaderName::Reason)
                .map(|v| crate::headers::Parameterized::parse("Reason", v))
        }

        /// Credentials or a challenge: pass Authorization, Proxy-Authorization,
        /// WWW-Authenticate or Proxy-Authenticate.
        pub fn auth(
            &self,
            name: HeaderName,
        ) -> impl Iterator<Item = Result<crate::headers::Auth<'_>>> {
            self.headers
                .get_all(name)
                .map(|h| crate::headers::Auth::parse(h.value()))
        }

        /// Retry-After (RFC 3261 §20.33): seconds, ignoring any comment and parameters.
        pub fn retry_after(&self) -> Option<Result<u32>> {
            self.headers.get_str(HeaderName::RetryAfter).map(|v| {
                let end = v.find(['(', ';']).unwrap_or(v.len());
                crate::headers::parse_delta("Retry-After", v.get(..end).unwrap_or_default())
            })
        }

        /// User-Agent (requests) or Server (responses) text, whichever is present.
        pub fn user_agent(&self) -> Option<&str> {
            self.headers
                .get_str(HeaderName::UserAgent)
                .or_else(|| self.headers.get_str(HeaderName::Server))
        }

        fn name_addr(&self, name: HeaderName, label: &'static str) -> Result<NameAddr<'_>> {
            let h = self.headers.get(name).ok_or(Error::MissingHeader(label))?;
            if let Hot::Addr(spans) = h.hot() {
                return Ok(NameAddr::from_spans(h.value(), &spans));
            }
            NameAddr::parse_for(label, h.value())
        }

        /// Serializes into `out`.
        pub fn write_to(&self, out: &mut BytesMut) {
            self.write_start_line(out);
            write_headers_and_body(&self.headers, &self.body, out);
        }

        /// Serializes into a new buffer.
        pub fn to_bytes(&self) -> Bytes {
            // Sized exactly, so that the buffer becomes the `Bytes` without a second
            // allocation (a `Vec` whose length is its capacity is taken over as is).
            let mut out = Vec::with_capacity(self.wire_len());
            self.write_start_line(&mut out);
            write_headers_and_body(&self.headers, &self.body, &mut out);
            Bytes::from(out)
        }

        /// The number of bytes [`Self::write_to`] writes.
        fn wire_len(&self) -> usize {
            self.start_line_len() + headers_and_body_len(&self.headers, &self.body)
        }

        /// [`Self::to_bytes`] as it was: a buffer sized by an estimate, then frozen (the
        /// oracle of the differential tests).
        #[cfg(test)]
        pub(crate) fn to_bytes_reference(&self) -> Bytes {
            let headers: usize = self.headers.iter().map(|h| h.wire_len() + 4).sum();
            let mut out = BytesMut::with_capacity(64 + headers + self.body.len());
            self.write_start_line(&mut out);
            write_headers_and_body_reference(&self.headers, &self.body, &mut out);
            out.freeze()
        }
    };
}

impl Request {
    /// Parses one request from a datagram (see [`crate::parse_datagram`]).
    pub fn parse(buf: impl Into<Bytes>) -> Result<Self> {
        match crate::parse::parse_datagram(&buf.into(), &crate::ParseLimits::default())? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(Error::StartLine("expected a request")),
        }
    }

    common_accessors!();

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<Result<u8>> {
        self.headers
            .get_str(HeaderName::MaxForwards)
            .map(crate::headers::parse_max_forwards)
    }

    fn start_line_len(&self) -> usize {
        self.method.as_str().len() + self.uri.as_str().len() + version_len(self.version) + 4
    }

    fn write_start_line(&self, out: &mut impl BufMut) {
        out.put_slice(self.method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.uri.as_str().as_bytes());
        out.put_u8(b' ');
        put_version(self.version, out);
        out.put_slice(b"\r\n");
    }
}

impl Response {
    /// Parses one response from a datagram (see [`crate::parse_datagram`]).
    pub fn parse(buf: impl Into<Bytes>) -> Result<Self> {
        match crate::parse::parse_datagram(&buf.into(), &crate::ParseLimits::default())? {
            Message::Response(r) => Ok(r),
            Message::Request(_) => Err(Error::StartLine("expected a response")),
        }
    }

    common_accessors!();

    fn start_line_len(&self) -> usize {
        // `SIP/2.0 200 OK\r\n`: a CR or LF of the reason is written as one space.
        version_len(self.version) + 5 + self.reason.len() + 2
    }

    fn write_start_line(&self, out: &mut impl BufMut) {
        put_version(self.version, out);
        out.put_u8(b' ');
        let code = self.status.as_u16();
        // A StatusCode is always 100-699: three digits.
        for d in [code / 100, code / 10 % 10, code % 10] {
            out.put_u8(b'0' + (d % 10) as u8);
        }
        out.put_u8(b' ');
        // The field is public: never let a CR or LF in it break the framing.
        if self.reason.contains(['\r', '\n']) {
            out.put_slice(self.reason.replace(['\r', '\n'], " ").as_bytes());
        } else {
            out.put_slice(self.reason.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}

fn version_len(v: Version) -> usize {
    if v == Version::SIP_2_0 {
        "SIP/2.0".len()
    } else {
        v.to_string().len()
    }
}

fn put_version(v: Version, out: &mut impl BufMut) {
    if v == Version::SIP_2_0 {
        out.put_slice(b"SIP/2.0");
    } else {
        out.put_slice(v.to_string().as_bytes());
    }
}

/// The number of bytes [`write_headers_and_body`] writes.
/// (From the headers' offsets, which are always within their text: were one not, the bytes
/// written would still be right, in a buffer of another size.)
fn headers_and_body_len(headers: &Headers, body: &Bytes) -> usize {
    let lines: usize = headers.iter().map(crate::header::Header::line_len).sum();
    lines + 2 + body.len()
}

/// [`write_headers_and_body`] as it was, each line in four parts (the oracle of the
/// differential tests).
#[cfg(test)]
fn write_headers_and_body_reference(headers: &Headers, body: &Bytes, out: &mut BytesMut) {
    for h in headers.iter().filter(|h| !h.name_bytes().is_empty()) {
        out.put_slice(h.name_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

fn write_headers_and_body(headers: &Headers, body: &Bytes, out: &mut impl BufMut) {
    // A header made with `HeaderName::Other` through `Header::new` has no name: skip it.
    for h in headers.iter() {
        if let Some(line) = h.whole_line() {
            out.put_slice(line);
            continue;
        }
        if h.name_bytes().is_empty() {
            continue;
        }
        out.put_slice(h.name_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

impl Message {
    /// Parses one message from a datagram with default limits (see [`crate::parse_datagram`]).
    pub fn parse(buf: impl Into<Bytes>) -> Result<Self> {
        crate::parse::parse_datagram(&buf.into(), &crate::ParseLimits::default())
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Self::Request(r) => &r.headers,
            Self::Response(r) => &r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Self::Request(r) => &r.body,
            Self::Response(r) => &r.body,
        }
    }

    /// Serializes into a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::Request(r) => r.to_bytes(),
            Self::Response(r) => r.to_bytes(),
        }
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Self::Request(r) => Some(r),
            Self::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Self::Response(r) => Some(r),
            Self::Request(_) => None,
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Self::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Self::Response(r)
    }
}

/// Writes the canonical wire form (lossy if the body is not UTF-8).
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod to_bytes_differential {
    use super::*;
    use crate::header::Header;
    use proptest::prelude::*;

    fn request(version: Version, extra: &[Header], body: &'static [u8]) -> Request {
        let uri = Uri::parse("sip:bob@biloxi.example.com").unwrap();
        let mut r = Request::builder(Method::Invite, uri)
            .via("UDP", "h.example.com", Some(5060), "z9hG4bK1")
            .call_id("c")
            .build();
        r.version = version;
        for h in extra {
            r.headers.push(h.clone());
        }
        r.body = Bytes::from_static(body);
        r
    }

    proptest! {
        /// Exactly the bytes of the old serialization, in a buffer of exactly that size,
        /// whatever the reason phrase (CR and LF in it), the version, and headers without a
        /// name (not written).
        #[test]
        fn serialized_as_before(
            reason in "[ a-zA-Z\r\n\u{e9}]{0,12}",
            major in prop::sample::select(vec![2u16, 1, 10]),
            minor in prop::sample::select(vec![0u16, 3, 65535]),
            values in proptest::collection::vec("[ a-z:;\r\n\u{e9}]{0,10}", 0..4),
            nameless in any::<bool>(),
            body in prop::sample::select(vec![&b""[..], b"v=0\r\n", b"\xff\x00"]),
        ) {
            let version = Version { major, minor };
            let mut extra: Vec<Header> = values
                .iter()
                .map(|v| Header::new(HeaderName::Subject, v.as_str()))
                .collect();
            if nameless {
                extra.push(Header::new(HeaderName::Other, "dropped"));
            }
            if let Some(h) = values.first().and_then(|v| Header::other("X-Odd", v.as_str())) {
                extra.push(h);
            }
            let req = request(version, &extra, body);
            let bytes = req.to_bytes();
            prop_assert_eq!(&bytes, &req.to_bytes_reference());
            let mut into = BytesMut::new();
            req.write_to(&mut into);
            prop_assert_eq!(&into[..], &bytes[..]);
            prop_assert_eq!(bytes.len(), req.wire_len());
            let mut resp = Response::from_request_with_rng(
                &req,
                StatusCode::OK,
                &mut fastrand::Rng::with_seed(1),
            );
            resp.version = version;
            resp.reason = reason;
            for h in &extra {
                resp.headers.push(h.clone());
            }
            resp.body = Bytes::from_static(body);
            let bytes = resp.to_bytes();
            prop_assert_eq!(&bytes, &resp.to_bytes_reference());
            prop_assert_eq!(bytes.len(), resp.wire_len());
            prop_assert_eq!(Message::Response(resp).to_bytes(), bytes);
        }
    }
}
