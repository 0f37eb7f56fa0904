//! Typed views of the headers the stack uses. Each view borrows the raw value it was parsed
//! from (no copy); parse them from [`crate::Headers::values`] or through the shortcuts on
//! [`crate::Request`] and [`crate::Response`].

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};
use crate::method::Method;
use crate::text::{
    Found, Lookup, Params, Span16, Spot, check_header_params_finding, eq_ignore_case, find_byte,
    find_byte2, is_token, is_token_byte, is_ws, parse_u64, quoted_end, skip_class, skip_table,
    skip_ws, split_top_level, trim, unquote,
};
use crate::uri::{self, Parts, Uri};

/// Splits `s` at the first `;` outside quotes: (value, params starting with `;`).
fn split_params(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = b
        .get(i..)
        .and_then(|r| r.iter().position(|&c| c == b';' || c == b'"'))
    {
        let at = i + off;
        if b.get(at) == Some(&b'"') {
            match quoted_end(b, at) {
                Some(e) => i = e,
                None => return (s, ""),
            }
        } else {
            return (
                trim(s.get(..at).unwrap_or_default()),
                s.get(at..).unwrap_or_default(),
            );
        }
    }
    (s, "")
}

fn params_checked<'a>(name: &'static str, p: &'a str) -> Result<Params<'a>> {
    params_finding(name, p, Lookup::None)
}

/// [`params_checked`] noting where the parameter `key` is (see [`Params::get`]).
#[inline]
fn params_finding<'a>(name: &'static str, p: &'a str, key: Lookup) -> Result<Params<'a>> {
    let p = trim(p);
    match check_header_params_finding(p, key) {
        Some(found) => Ok(Params::with_found(p, found)),
        None => Err(Error::header(name, "bad parameters")),
    }
}

// ---------------------------------------------------------------------------------------------

/// A typed view the parser computed, kept in the header (as offsets into its value) so the
/// accessors of [`crate::Request`] and [`crate::Response`] do not parse it again. Small (the
/// offsets are 16 bits; a value longer than that keeps no view) so that a header fits in 64
/// bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Hot {
    /// Nothing cached.
    #[default]
    None,
    /// The first Via value of the line.
    Via(ViaSpans),
    /// From or To.
    Addr(AddrSpans),
    /// The CSeq number, and the place of its method in [`Method::KNOWN`] (`u8::MAX` for an
    /// extension method).
    CSeq(u32, u8),
    /// The Content-Length value.
    Length(u32),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ViaSpans {
    protocol: Span16,
    version: Span16,
    transport: Span16,
    host: Span16,
    port: Option<u16>,
    params: Span16,
    /// Where the branch parameter is within the parameters.
    branch: Spot,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AddrSpans {
    display: Option<Span16>,
    uri: Span16,
    angle: bool,
    params: Span16,
    /// Where the tag parameter is within the parameters.
    tag: Spot,
}

// ---------------------------------------------------------------------------------------------

/// One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=...`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Via<'a> {
    /// Protocol name, normally `SIP`.
    pub protocol: &'a str,
    /// Protocol version, normally `2.0`.
    pub version: &'a str,
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...).
    pub transport: &'a str,
    /// sent-by host (IPv6 references keep their brackets).
    pub host: &'a str,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// The parameters.
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma-separated list).
    pub fn parse(s: &'a str) -> Result<Self> {
        const N: &str = "Via";
        let bad = |what| Error::header(N, what);
        let s = trim(s);
        let b = s.as_bytes();
        // sent-protocol = name SLASH version SLASH transport, SLASH = SWS "/" SWS.
        let token_at = |i: usize| -> Result<(&'a str, usize)> {
            let start = skip_ws(b, i);
            let end = skip_class(b, start, is_token_byte);
            if end == start {
                return Err(bad("bad sent-protocol"));
            }
            Ok((s.get(start..end).unwrap_or_default(), end))
        };
        let slash = |i: usize| -> Result<usize> {
            let i = skip_ws(b, i);
            if b.get(i) == Some(&b'/') {
                Ok(i + 1)
            } else {
                Err(bad("bad sent-protocol"))
            }
        };
        let (protocol, i) = token_at(0)?;
        let (version, i) = token_at(slash(i)?)?;
        let (transport, i) = token_at(slash(i)?)?;
        // LWS, then sent-by = host [ SWS ":" SWS port ], in one pass: anything but SWS, then
        // the end or `;`, after it is a bad sent-by.
        let start = skip_ws(b, i);
        if start == i {
            return Err(bad("no space before sent-by"));
        }
        let host_end = if b.get(start) == Some(&b'[') {
            // An IPv6 reference: hex digits, ':' and '.' up to the first ']'.
            let close = skip_class(b, start + 1, |c| {
                c.is_ascii_hexdigit() || c == b':' || c == b'.'
            });
            if close == start + 1 || b.get(close) != Some(&b']') {
                return Err(bad("bad sent-by"));
            }
            close + 1
        } else {
            let end = skip_class(b, start, |c| VIA_HOST[usize::from(c)]);
            if end == start {
                return Err(bad("bad sent-by"));
            }
            end
        };
        let host = s.get(start..host_end).unwrap_or_default();
        let mut i = skip_ws(b, host_end);
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let digits = skip_ws(b, i + 1);
            let digits_end = skip_class(b, digits, |c| c.is_ascii_digit());
            let n = s
                .get(digits..digits_end)
                .and_then(parse_u64)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(bad("bad sent-by"))?;
            port = Some(n);
            i = skip_ws(b, digits_end);
        }
        let params = match b.get(i) {
            // The empty text at the end (not a literal `""`), so that its span is known.
            None => s.get(i..).unwrap_or_default(),
            Some(b';') => s.get(i..).unwrap_or_default(),
            Some(_) => return Err(bad("bad sent-by")),
        };
        // `s` is trimmed, so `params` is too. The check notes where the branch is, so that
        // `branch()` does not scan the parameters again.
        let Some(found) = check_header_params_finding(params, Lookup::Branch) else {
            return Err(bad("bad parameters"));
        };
        Ok(Self {
            protocol,
            version,
            transport,
            host,
            port,
            params: Params::with_found(params, found),
        })
    }

    /// The offsets of the parts within `base` (which holds them), if they fit in 16 bits.
    pub(crate) fn spans(&self, base: &str) -> Option<ViaSpans> {
        Some(ViaSpans {
            protocol: Span16::of(base, self.protocol)?,
            version: Span16::of(base, self.version)?,
            transport: Span16::of(base, self.transport)?,
            host: Span16::of(base, self.host)?,
            port: self.port,
            params: Span16::of(base, self.params.as_str())?,
            branch: self.params.found(Lookup::Branch)?,
        })
    }

    pub(crate) fn from_spans(base: &'a str, s: &ViaSpans) -> Self {
        Self {
            protocol: s.protocol.get(base),
            version: s.version.get(base),
            transport: s.transport.get(base),
            host: s.host.get(base),
            port: s.port,
            params: Params::with_found(
                s.params.get(base),
                Found::of(Lookup::Branch, Some(s.branch)),
            ),
        }
    }

    /// The `branch` parameter (transaction id, RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get_key(Lookup::Branch).flatten()
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// Whether the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    /// Formats a Via value: `SIP/2.0/{transport} {host}[:{port}];branch={branch}`.
    pub fn format(transport: &str, host: &str, port: Option<u16>, branch: &str) -> String {
        match port {
            Some(p) => format!("SIP/2.0/{transport} {host}:{p};branch={branch}"),
            None => format!("SIP/2.0/{transport} {host};branch={branch}"),
        }
    }
}

/// The longest value the fast paths ([`via_hot`], [`addr_hot`]) take: every offset in it then
/// fits the 16-bit spans of the cached view (longer values take the general parse).
const HOT_MAX: usize = 60_000;

/// The cached view of a usual Via value, `SIP/2.0/transport SP host[:port][;params]` (one
/// value, no IPv6 reference), checked in one pass without building a [`Via`]: what
/// `Via::parse(v)?.spans(v)` gives for it. `None` for anything else (a list, LWS around the
/// slashes, an IPv6 host, an error, ...): the caller then takes the general parse, which gives
/// the same view or the error (RFC 3261 §20.42, §25.1).
///
/// A value accepted here has no `,` or `<` outside quoted strings (neither is a byte the pass
/// steps over), so splitting it as a list would give it whole.
#[inline]
pub(crate) fn via_hot(v: &str) -> Option<ViaSpans> {
    let b = v.as_bytes();
    if b.len() > HOT_MAX || b.last().copied().is_some_and(is_ws) {
        return None;
    }
    // sent-protocol written `SIP/2.0/` (any other spelling takes the general parse).
    if b.get(..8)? != b"SIP/2.0/" {
        return None;
    }
    let transport_end = skip_class(b, 8, is_token_byte);
    // LWS, then the host: a hostname or an IPv4 address.
    let host = skip_ws(b, transport_end);
    if transport_end == 8 || host == transport_end {
        return None;
    }
    let host_end = skip_table(b, host, &VIA_HOST);
    if host_end == host {
        return None;
    }
    let mut i = skip_ws(b, host_end);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        // Up to five digits (longer ones take the general parse).
        let digits = skip_ws(b, i + 1);
        let end = skip_class(b, digits, |c| c.is_ascii_digit());
        if end == digits || end - digits > 5 {
            return None;
        }
        let n = b
            .get(digits..end)?
            .iter()
            .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
        port = Some(u16::try_from(n).ok()?);
        i = skip_ws(b, end);
    }
    let params = match b.get(i) {
        None => "",
        Some(b';') => v.get(i..)?,
        Some(_) => return None,
    };
    let found = check_header_params_finding(params, Lookup::Branch)?;
    let span = |from: usize, to: usize| {
        Some(Span16::new(
            u16::try_from(from).ok()?,
            u16::try_from(to).ok()?,
        ))
    };
    Some(ViaSpans {
        protocol: span(0, 3)?,
        version: span(4, 7)?,
        transport: span(8, transport_end)?,
        host: span(host, host_end)?,
        port,
        params: span(i.min(b.len()), b.len())?,
        branch: found.spot()?,
    })
}

/// The bytes of a display name written without quotes (`*(token LWS)`) and the LWS before
/// `<`.
pub(crate) static DISPLAY_TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = crate::text::is_token_byte_const(c) || c == b' ' || c == b'\t';
        i += 1;
    }
    t
};

/// The cached view of a From or To value in name-addr form, `[display-name] <URI>[params]`,
/// checked in one pass: what `NameAddr::parse_for(name, v)?.spans(v)` gives for it (the URI
/// is scanned, and so checked, the same way). `None` for anything else (an addr-spec without
/// `<>`, an error, ...): the caller then takes the general parse (RFC 3261 §20.10, §25.1).
#[inline]
pub(crate) fn addr_hot(v: &str) -> Option<AddrSpans> {
    let b = v.as_bytes();
    // Values come trimmed from the parser; others take the general parse (which trims them).
    if b.len() > HOT_MAX
        || b.first().copied().is_some_and(is_ws)
        || b.last().copied().is_some_and(is_ws)
    {
        return None;
    }
    let (display, lt) = if b.first() == Some(&b'"') {
        let end = quoted_end(b, 0)?;
        (Some((0, end)), skip_ws(b, end))
    } else {
        // Tokens and LWS up to the first `<` (anything else takes the general parse).
        let lt = skip_class(b, 0, |c| DISPLAY_TOKEN[usize::from(c)]);
        let mut end = lt;
        while end > 0 && b.get(end - 1).copied().is_some_and(is_ws) {
            end -= 1;
        }
        ((end > 0).then_some((0, end)), lt)
    };
    if b.get(lt) != Some(&b'<') {
        return None;
    }
    let uri_start = lt + 1;
    let gt = uri_start + find_byte(b'>', b.get(uri_start..)?)?;
    if !uri::is_valid(v.get(uri_start..gt)?) {
        return None;
    }
    // The header parameters, LWS around them trimmed (as `params_finding` does).
    let rest = v.get(gt + 1..)?;
    let params = trim(rest);
    let found = check_header_params_finding(params, Lookup::Tag)?;
    let p_start = gt + 1 + (params.as_ptr() as usize).checked_sub(rest.as_ptr() as usize)?;
    let span = |from: usize, to: usize| {
        Some(Span16::new(
            u16::try_from(from).ok()?,
            u16::try_from(to).ok()?,
        ))
    };
    Some(AddrSpans {
        display: match display {
            Some((from, to)) => Some(span(from, to)?),
            None => None,
        },
        uri: span(uri_start, gt)?,
        angle: true,
        params: span(p_start, p_start + params.len())?,
        tag: found.spot()?,
    })
}

/// The bytes of a sent-by hostname or IPv4 address.
pub(crate) static VIA_HOST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.';
        i += 1;
    }
    t
};

/// host [ SWS ":" SWS port ] with a hostname, IPv4 or `[IPv6]` host.
#[cfg(test)]
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, rest) = if s.starts_with('[') {
        let close = s.find(']')?;
        let inner = s.get(1..close)?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return None;
        }
        (s.get(..=close)?, s.get(close + 1..)?)
    } else {
        let end = skip_class(s.as_bytes(), 0, |c| {
            c.is_ascii_alphanumeric() || c == b'-' || c == b'.'
        });
        (s.get(..end)?, s.get(end..)?)
    };
    if host.is_empty() {
        return None;
    }
    let rest = trim(rest);
    if rest.is_empty() {
        return Some((host, None));
    }
    let port = trim(rest.strip_prefix(':')?);
    let port = u16::try_from(parse_u64(port)?).ok()?;
    Some((host, Some(port)))
}

// ---------------------------------------------------------------------------------------------

/// A URI error inside header `name`, said as an error of that header (so that a 400 names it).
#[cold]
fn uri_in(name: &'static str, e: Error) -> Error {
    match e {
        Error::Uri(what) => Error::header(name, what),
        other => other,
    }
}

/// A name-addr or addr-spec with header parameters (RFC 3261 §20.10, §25.1): the shape of
/// From, To, Contact, Route, Record-Route, Refer-To, Referred-By and Reply-To values.
#[derive(Clone, Copy)]
pub struct NameAddr<'a> {
    display: Option<&'a str>,
    uri: &'a str,
    /// The URI's offsets, when the view was parsed here rather than rebuilt from a header's
    /// cache (a function of `uri`, so left out of equality).
    parts: Option<Parts>,
    angle: bool,
    /// The header parameters (after the URI; `tag`, `expires`, `q`, ...).
    pub params: Params<'a>,
}

impl PartialEq for NameAddr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.display == other.display
            && self.uri == other.uri
            && self.angle == other.angle
            && self.params == other.params
    }
}

impl Eq for NameAddr<'_> {}

impl fmt::Debug for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameAddr")
            .field("display", &self.display)
            .field("uri", &self.uri)
            .field("angle", &self.angle)
            .field("params", &self.params)
            .finish()
    }
}

impl<'a> NameAddr<'a> {
    /// Parses one value; `header` names the header in errors.
    pub fn parse(s: &'a str) -> Result<Self> {
        Self::parse_for("name-addr", s)
    }

    pub(crate) fn parse_for(name: &'static str, s: &'a str) -> Result<Self> {
        let bad = |what| Error::header(name, what);
        let s = trim(s);
        let b = s.as_bytes();
        let (display, lt) = if b.first() == Some(&b'"') {
            let end = quoted_end(b, 0).ok_or(bad(
                "quoted display name unterminated or holding a control character",
            ))?;
            let lt = skip_ws(b, end);
            if b.get(lt) != Some(&b'<') {
                return Err(bad("quoted display name without <URI>"));
            }
            (s.get(..end), lt)
        } else {
            match find_byte(b'<', b) {
                Some(lt) => {
                    let before = b.get(..lt).unwrap_or_default();
                    // display-name = *(token LWS): tokens separated by whitespace
                    // (RFC 4475 §3.1.2.15: commas or other non-token characters need quotes).
                    if !before.iter().all(|&c| is_token_byte(c) || is_ws(c)) {
                        return Err(bad("display name must be quoted"));
                    }
                    let dn = trim(s.get(..lt).unwrap_or_default());
                    ((!dn.is_empty()).then_some(dn), lt)
                }
                None => (None, usize::MAX),
            }
        };
        if lt != usize::MAX {
            let inner = s.get(lt + 1..).unwrap_or_default();
            let gt = find_byte(b'>', inner.as_bytes()).ok_or(bad("missing >"))?;
            let uri_text = inner.get(..gt).unwrap_or_default();
            // No LWS inside the brackets (RFC 4475 §3.1.2.14); the URI scan rejects it.
            let parts = uri::scan(uri_text).map_err(|e| uri_in(name, e))?;
            let params =
                params_finding(name, inner.get(gt + 1..).unwrap_or_default(), Lookup::Tag)?;
            return Ok(Self {
                display,
                uri: uri_text,
                parts: Some(parts),
                angle: true,
                params,
            });
        }
        // addr-spec: the URI cannot hold `;`, `,` or `?` here (RFC 3261 §20.10), so the first
        // `;` starts the header parameters.
        let (uri_text, params) = match find_byte(b';', b) {
            Some(i) => (
                trim(s.get(..i).unwrap_or_default()),
                s.get(i..).unwrap_or_default(),
            ),
            None => (s, ""),
        };
        if find_byte2(b'?', b',', uri_text.as_bytes()).is_some() {
            return Err(bad("a URI with ? or , must be enclosed in <>"));
        }
        let parts = uri::scan(uri_text).map_err(|e| uri_in(name, e))?;
        Ok(Self {
            display: None,
            uri: uri_text,
            parts: Some(parts),
            angle: false,
            params: params_finding(name, params, Lookup::Tag)?,
        })
    }

    /// The offsets of the parts within `base` (which holds them), if they fit in 16 bits. The
    /// URI's own offsets are not kept: [`NameAddr::uri`] scans it again.
    pub(crate) fn spans(&self, base: &str) -> Option<AddrSpans> {
        Some(AddrSpans {
            display: match self.display {
                Some(d) => Some(Span16::of(base, d)?),
                None => None,
            },
            uri: Span16::of(base, self.uri)?,
            angle: self.angle,
            params: Span16::of(base, self.params.as_str())?,
            tag: self.params.found(Lookup::Tag)?,
        })
    }

    pub(crate) fn from_spans(base: &'a str, s: &AddrSpans) -> Self {
        Self {
            display: s.display.map(|d| d.get(base)),
            uri: s.uri.get(base),
            parts: None,
            angle: s.angle,
            params: Params::with_found(s.params.get(base), Found::of(Lookup::Tag, Some(s.tag))),
        }
    }

    /// The display name as written (quotes kept), if any.
    pub fn display_name_raw(&self) -> Option<&'a str> {
        self.display
    }

    /// The display name with quotes and quoted-pairs removed.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    /// The URI text.
    pub fn uri_str(&self) -> &'a str {
        self.uri
    }

    /// The URI (an owned copy). For the From or To view of a parsed message, which keeps no
    /// URI offsets, the URI is scanned again (it was checked when the message was parsed).
    pub fn uri(&self) -> Uri {
        match self.parts {
            Some(parts) => Uri::from_scanned(self.uri, parts),
            // A view the parser kept: the URI was checked then, so the scan cannot fail.
            None => match uri::scan(self.uri) {
                Ok(parts) => Uri::from_scanned(self.uri, parts),
                Err(_) => Uri::from_scanned(self.uri, Parts::default()),
            },
        }
    }

    /// Whether the value was written in name-addr form (`<...>`).
    pub fn has_angle_brackets(&self) -> bool {
        self.angle
    }

    /// The `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get_key(Lookup::Tag).flatten()
    }

    /// The `expires` parameter of a Contact; `Err` when it is not a number of seconds that
    /// fits 32 bits.
    pub fn expires(&self) -> Option<Result<u32>> {
        self.params.get("expires").map(|v| {
            v.and_then(parse_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(Error::header("Contact", "bad expires parameter"))
        })
    }

    /// The `q` parameter of a Contact (0.0–1.0).
    pub fn q(&self) -> Option<f32> {
        self.params
            .get("q")
            .flatten()
            .and_then(|v| v.parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
    }

    /// Formats `["display" ]<uri>[;tag=tag]`.
    pub fn format(display: Option<&str>, uri: &Uri, tag: Option<&str>) -> String {
        let mut s = String::new();
        if let Some(d) = display {
            s.push_str(&crate::text::quote(d));
            s.push(' ');
        }
        s.push('<');
        s.push_str(uri.as_str());
        s.push('>');
        if let Some(t) = tag {
            s.push_str(";tag=");
            s.push_str(t);
        }
        s
    }
}

/// One Contact value: `*` or an address (RFC 3261 §20.10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Contact<'a> {
    /// `Contact: *` (REGISTER removal of all bindings).
    Star,
    /// An address with its parameters.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact value.
    pub fn parse(s: &'a str) -> Result<Self> {
        if trim(s) == "*" {
            return Ok(Self::Star);
        }
        let a = NameAddr::parse_for("Contact", s)?;
        if let Some(Err(e)) = a.expires() {
            return Err(e);
        }
        Ok(Self::Addr(a))
    }
}

// ---------------------------------------------------------------------------------------------

/// CSeq (RFC 3261 §20.16): sequence number and method.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CSeq {
    /// The sequence number, below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<Self> {
        // The usual form in one scan: 1–9 digits (below 2^31 then), LWS, a token to the end.
        // What the general parse below gives for it, with nothing to trim.
        let b = s.as_bytes();
        let digits = skip_class(b, 0, |c| c.is_ascii_digit());
        if (1..=9).contains(&digits) {
            let m = skip_ws(b, digits);
            let end = skip_class(b, m, is_token_byte);
            if m > digits && end > m && end == b.len() {
                let seq = b
                    .get(..digits)
                    .unwrap_or_default()
                    .iter()
                    .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
                if let Ok(method) = Method::parse(s.get(m..).unwrap_or_default()) {
                    return Ok(Self { seq, method });
                }
            }
        }
        let bad = |what| Error::header("CSeq", what);
        let s = trim(s);
        let split = s.bytes().position(is_ws).ok_or(bad("no method"))?;
        let num = s.get(..split).unwrap_or_default();
        let method = trim(s.get(split..).unwrap_or_default());
        let seq = match parse_u64(num) {
            Some(n) if n < 1 << 31 => n,
            // All digits, but too many for a u64 or not below 2^31.
            _ if !num.is_empty() && num.bytes().all(|c| c.is_ascii_digit()) => {
                return Err(bad("sequence number not below 2^31"));
            }
            _ => return Err(bad("sequence number is not a number")),
        };
        let method = Method::parse(method).map_err(|_| bad("bad method"))?;
        Ok(Self {
            seq: u32::try_from(seq).map_err(|_| bad("sequence number overflow"))?,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

const fn is_call_id_word_class(c: u8) -> bool {
    crate::text::is_token_byte_const(c)
        || matches!(
            c,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

pub(crate) static CALL_ID_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_call_id_word_class(i as u8);
        i += 1;
    }
    t
};

/// Checks a Call-ID: `word [ "@" word ]` (RFC 3261 §25.1), in one pass.
#[inline]
pub(crate) fn check_call_id(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |i: usize| skip_table(b, i, &CALL_ID_WORD);
    let first = word(0);
    if first == 0 {
        return false;
    }
    match b.get(first) {
        None => true,
        Some(b'@') => {
            let end = word(first + 1);
            end > first + 1 && end == b.len()
        }
        Some(_) => false,
    }
}

/// A number of seconds or a counter: `1*DIGIT` that fits in 32 bits (Expires, Min-SE, RSeq,
/// Min-Expires, Retry-After without its comment).
pub fn parse_delta(name: &'static str, s: &str) -> Result<u32> {
    parse_u64(trim(s))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(Error::header(name, "not a 32-bit number"))
}

/// Max-Forwards (RFC 3261 §20.22): 0–255.
pub fn parse_max_forwards(s: &str) -> Result<u8> {
    // The usual value, one to three digits and nothing to trim, read at once (for speed: every
    // request has one); what the general reading below gives for it.
    let b = s.as_bytes();
    if let [first, rest @ ..] = b
        && rest.len() < 3
        && b.iter().all(u8::is_ascii_digit)
    {
        let n = rest.iter().fold(u32::from(first - b'0'), |n, &c| {
            n * 10 + u32::from(c - b'0')
        });
        return u8::try_from(n).map_err(|_| Error::header("Max-Forwards", "not a number in 0-255"));
    }
    parse_max_forwards_general(s)
}

/// [`parse_max_forwards`] of any text (and the oracle of its fast path).
fn parse_max_forwards_general(s: &str) -> Result<u8> {
    parse_u64(trim(s))
        .and_then(|n| u8::try_from(n).ok())
        .ok_or(Error::header("Max-Forwards", "not a number in 0-255"))
}

/// A media type (Content-Type, Accept element): `type/subtype;params`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MediaType<'a> {
    /// Top-level type (`application`, or `*` in Accept).
    pub kind: &'a str,
    /// Subtype (`sdp`, or `*` in Accept).
    pub subtype: &'a str,
    /// The parameters (`;charset=...`, `;boundary=...`).
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    /// Parses `type "/" subtype *(;param)` with optional LWS around `/`.
    pub fn parse(s: &'a str) -> Result<Self> {
        // The usual form, `type/subtype` written without LWS, up to the end or a `;`: the
        // split below would give the same parts (the first `;` is outside any quote, and
        // nothing is trimmed).
        let b = s.as_bytes();
        let slash = skip_class(b, 0, is_token_byte);
        if slash > 0 && b.get(slash) == Some(&b'/') {
            let end = skip_class(b, slash + 1, is_token_byte);
            if end > slash + 1 && matches!(b.get(end), None | Some(b';')) {
                return Ok(Self {
                    kind: s.get(..slash).unwrap_or_default(),
                    subtype: s.get(slash + 1..end).unwrap_or_default(),
                    params: params_checked("Content-Type", s.get(end..).unwrap_or_default())?,
                });
            }
        }
        let bad = |what| Error::header("Content-Type", what);
        let (essence, params) = split_params(trim(s));
        let (kind, subtype) = essence.split_once('/').ok_or(bad("no /"))?;
        let (kind, subtype) = (trim(kind), trim(subtype));
        if !is_token(kind) || !is_token(subtype) {
            return Err(bad("type or subtype is not a token"));
        }
        Ok(Self {
            kind,
            subtype,
            params: params_checked("Content-Type", params)?,
        })
    }

    /// Whether this is `kind/subtype` (case-insensitive).
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        // `eq_ignore_case` is `eq_ignore_ascii_case`, cheaper when the bytes are equal.
        eq_ignore_case(self.kind.as_bytes(), kind.as_bytes())
            && eq_ignore_case(self.subtype.as_bytes(), subtype.as_bytes())
    }

    /// Whether this (as an Accept media-range, wildcards allowed) covers `kind/subtype`.
    pub fn covers(&self, kind: &str, subtype: &str) -> bool {
        (self.kind == "*" || eq_ignore_case(self.kind.as_bytes(), kind.as_bytes()))
            && (self.subtype == "*" || eq_ignore_case(self.subtype.as_bytes(), subtype.as_bytes()))
    }
}

/// Parses an option-tag (Require, Supported, Unsupported, Proxy-Require) or other token list
/// value: one token.
pub fn parse_token<'a>(name: &'static str, s: &'a str) -> Result<&'a str> {
    let t = trim(s);
    if is_token(t) {
        Ok(t)
    } else {
        Err(Error::header(name, "not a token"))
    }
}

/// A value with a token (or Call-ID) head and parameters: Event (`package;id=..`), Replaces
/// (`call-id;to-tag=..;from-tag=..`), Session-Expires (`delta;refresher=..`), Reason
/// (`SIP;cause=..;text=".."`), Subscription-State.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Parameterized<'a> {
    /// The part before the first `;`.
    pub value: &'a str,
    /// The parameters.
    pub params: Params<'a>,
}

impl<'a> Parameterized<'a> {
    /// Parses `value *(;param)`, where the value must be a token.
    pub fn parse(name: &'static str, s: &'a str) -> Result<Self> {
        let (value, params) = split_params(trim(s));
        if !is_token(value) {
            return Err(Error::header(name, "value is not a token"));
        }
        Ok(Self {
            value,
            params: params_checked(name, params)?,
        })
    }

    /// Parses a Replaces value (RFC 3891), whose head is a Call-ID.
    pub fn parse_replaces(s: &'a str) -> Result<Self> {
        let (value, params) = split_params(trim(s));
        if !check_call_id(value) {
            return Err(Error::header("Replaces", "bad call-id"));
        }
        Ok(Self {
            value,
            params: params_checked("Replaces", params)?,
        })
    }
}

/// RAck (RFC 3262 §7.2): `response-num CSeq-num Method`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RAck {
    /// The RSeq being acknowledged.
    pub rseq: u32,
    /// The CSeq of the acknowledged response.
    pub cseq: CSeq,
}

impl RAck {
    /// Parses a RAck value.
    pub fn parse(s: &str) -> Result<Self> {
        let s = trim(s);
        let (n, rest) = s
            .split_once([' ', '\t'])
            .ok_or(Error::header("RAck", "missing CSeq"))?;
        Ok(Self {
            rseq: parse_delta("RAck", n)?,
            cseq: CSeq::parse(rest).map_err(|_| Error::header("RAck", "bad CSeq part"))?,
        })
    }
}

/// Credentials or a challenge (Authorization, Proxy-Authorization, WWW-Authenticate,
/// Proxy-Authenticate; RFC 3261 §20.7, §22.4): a scheme and its comma-separated parameters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Auth<'a> {
    /// The scheme (`Digest`, or anything else, kept as written).
    pub scheme: &'a str,
    /// Everything after the scheme.
    pub params: &'a str,
}

impl<'a> Auth<'a> {
    /// Parses `scheme LWS params`.
    pub fn parse(s: &'a str) -> Result<Self> {
        let s = trim(s);
        let (scheme, params) = match s.split_once([' ', '\t']) {
            Some((a, b)) => (a, trim(b)),
            None => (s, ""),
        };
        if !is_token(scheme) {
            return Err(Error::header("Authorization", "scheme is not a token"));
        }
        Ok(Self { scheme, params })
    }

    /// One auth-param, quotes removed (`realm`, `nonce`, `response`, ...).
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        split_top_level(self.params, b',').find_map(|p| {
            let (n, v) = p.split_once('=')?;
            trim(n).eq_ignore_ascii_case(name).then(|| unquote(trim(v)))
        })
    }
}

/// Checks an RFC 1123 date as SIP allows it (RFC 3261 §20.17): `Sat, 13 Nov 2010 23:29:00 GMT`;
/// only `GMT` is a legal zone (RFC 4475 §3.1.2.12).
pub fn check_date(s: &str) -> Result<()> {
    let bad = Error::header("Date", "not an RFC 1123 date in GMT");
    let p: Vec<&str> = trim(s).split(' ').collect();
    let [wkday, day, month, year, time, zone] = p.as_slice() else {
        return Err(bad);
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_digit());
    let ok = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"].contains(wkday)
        && digits(day, 2)
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(month)
        && digits(year, 4)
        && *zone == "GMT"
        && {
            let t: Vec<&str> = time.split(':').collect();
            t.len() == 3 && t.iter().all(|x| digits(x, 2))
        };
    if ok { Ok(()) } else { Err(bad) }
}

/// The header parsers as they were before the single-pass rewrites, kept to check the new ones
/// against (same views, same errors) on generated input.
#[cfg(test)]
pub(crate) mod reference {
    #![allow(clippy::all)]
    use super::*;

    /// `MediaType::parse` before its fast path for `type/subtype` without LWS.
    pub(crate) fn media_type<'a>(s: &'a str) -> Result<MediaType<'a>> {
        let bad = |what| Error::header("Content-Type", what);
        let (essence, params) = split_params(trim(s));
        let (kind, subtype) = essence.split_once('/').ok_or(bad("no /"))?;
        let (kind, subtype) = (trim(kind), trim(subtype));
        if !is_token(kind) || !is_token(subtype) {
            return Err(bad("type or subtype is not a token"));
        }
        Ok(MediaType {
            kind,
            subtype,
            params: params_checked("Content-Type", params)?,
        })
    }

    /// Parses one Via value (not a comma-separated list).
    pub(crate) fn via<'a>(s: &'a str) -> Result<Via<'a>> {
        const N: &str = "Via";
        let bad = |what| Error::header(N, what);
        let s = trim(s);
        let b = s.as_bytes();
        // sent-protocol = name SLASH version SLASH transport, SLASH = SWS "/" SWS.
        let token_at = |i: usize| -> Result<(&'a str, usize)> {
            let start = skip_ws(b, i);
            let end = skip_class(b, start, is_token_byte);
            if end == start {
                return Err(bad("bad sent-protocol"));
            }
            Ok((s.get(start..end).unwrap_or_default(), end))
        };
        let slash = |i: usize| -> Result<usize> {
            let i = skip_ws(b, i);
            if b.get(i) == Some(&b'/') {
                Ok(i + 1)
            } else {
                Err(bad("bad sent-protocol"))
            }
        };
        let (protocol, i) = token_at(0)?;
        let (version, i) = token_at(slash(i)?)?;
        let (transport, i) = token_at(slash(i)?)?;
        // LWS, then sent-by.
        let start = skip_ws(b, i);
        if start == i {
            return Err(bad("no space before sent-by"));
        }
        let (hostport, params) = split_params(s.get(start..).unwrap_or_default());
        let (host, port) = split_host_port(trim(hostport)).ok_or(bad("bad sent-by"))?;
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            params: params_checked(N, params)?,
        })
    }

    pub(crate) fn name_addr<'a>(name: &'static str, s: &'a str) -> Result<NameAddr<'a>> {
        let bad = |what| Error::header(name, what);
        let s = trim(s);
        let b = s.as_bytes();
        let (display, lt) = if b.first() == Some(&b'"') {
            let end = quoted_end(b, 0).ok_or(bad(
                "quoted display name unterminated or holding a control character",
            ))?;
            let rest = s.get(end..).unwrap_or_default();
            let skipped = rest.trim_start_matches([' ', '\t']);
            if !skipped.starts_with('<') {
                return Err(bad("quoted display name without <URI>"));
            }
            (s.get(..end), end + (rest.len() - skipped.len()))
        } else {
            match b.iter().position(|&c| c == b'<') {
                Some(lt) => {
                    let dn = trim(s.get(..lt).unwrap_or_default());
                    // display-name = *(token LWS): tokens separated by whitespace
                    // (RFC 4475 §3.1.2.15: commas or other non-token characters need quotes).
                    if !dn
                        .split([' ', '\t'])
                        .filter(|t| !t.is_empty())
                        .all(is_token)
                    {
                        return Err(bad("display name must be quoted"));
                    }
                    ((!dn.is_empty()).then_some(dn), lt)
                }
                None => (None, usize::MAX),
            }
        };
        if lt != usize::MAX {
            let inner = s.get(lt + 1..).unwrap_or_default();
            let gt = inner
                .bytes()
                .position(|c| c == b'>')
                .ok_or(bad("missing >"))?;
            let uri_text = inner.get(..gt).unwrap_or_default();
            // No LWS inside the brackets (RFC 4475 §3.1.2.14); the URI scan rejects it.
            let parts = uri::scan(uri_text).map_err(|e| uri_in(name, e))?;
            let params = params_checked(name, inner.get(gt + 1..).unwrap_or_default())?;
            return Ok(NameAddr {
                display,
                uri: uri_text,
                parts: Some(parts),
                angle: true,
                params,
            });
        }
        // addr-spec: the URI cannot hold `;`, `,` or `?` here (RFC 3261 §20.10), so the first
        // `;` starts the header parameters.
        let (uri_text, params) = match s.find(';') {
            Some(i) => (
                trim(s.get(..i).unwrap_or_default()),
                s.get(i..).unwrap_or_default(),
            ),
            None => (s, ""),
        };
        if uri_text.contains(['?', ',']) {
            return Err(bad("a URI with ? or , must be enclosed in <>"));
        }
        let parts = uri::scan(uri_text).map_err(|e| uri_in(name, e))?;
        Ok(NameAddr {
            display: None,
            uri: uri_text,
            parts: Some(parts),
            angle: false,
            params: params_checked(name, params)?,
        })
    }

    /// Checks a Call-ID: `word [ "@" word ]` (RFC 3261 §25.1).
    pub(crate) fn call_id(s: &str) -> bool {
        let word = |w: &str| {
            !w.is_empty()
                && w.bytes().all(|c| {
                    is_token_byte(c)
                        || matches!(
                            c,
                            b'(' | b')'
                                | b'<'
                                | b'>'
                                | b':'
                                | b'\\'
                                | b'"'
                                | b'/'
                                | b'['
                                | b']'
                                | b'?'
                                | b'{'
                                | b'}'
                        )
                })
        };
        match s.split_once('@') {
            Some((a, b)) => word(a) && word(b),
            None => word(s),
        }
    }

    /// Parses a CSeq value.
    pub(crate) fn cseq(s: &str) -> Result<CSeq> {
        let bad = |what| Error::header("CSeq", what);
        let s = trim(s);
        let split = s.find([' ', '\t']).ok_or(bad("no method"))?;
        let num = s.get(..split).unwrap_or_default();
        let method = trim(s.get(split..).unwrap_or_default());
        let seq = match parse_u64(num) {
            Some(n) if n < 1 << 31 => n,
            // All digits, but too many for a u64 or not below 2^31.
            _ if !num.is_empty() && num.bytes().all(|c| c.is_ascii_digit()) => {
                return Err(bad("sequence number not below 2^31"));
            }
            _ => return Err(bad("sequence number is not a number")),
        };
        let method = Method::parse(method).map_err(|_| bad("bad method"))?;
        Ok(CSeq {
            seq: u32::try_from(seq).map_err(|_| bad("sequence number overflow"))?,
            method,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_forwards_as_the_general_reading() {
        let bytes = [b'0', b'1', b'2', b'5', b'6', b'9', b' ', b'a', b'-'];
        let mut texts = vec![String::new()];
        for len in 1..=5u32 {
            for n in 0..bytes.len().pow(len) {
                let mut k = n;
                let mut t = String::new();
                for _ in 0..len {
                    t.push(char::from(bytes[k % bytes.len()]));
                    k /= bytes.len();
                }
                texts.push(t);
            }
        }
        for t in texts {
            assert_eq!(
                parse_max_forwards(&t),
                parse_max_forwards_general(&t),
                "{t:?}"
            );
        }
    }

    #[test]
    fn via_with_lws_everywhere() {
        // RFC 4475 §3.1.1.1 after unfolding.
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.host, "spindle.example.com");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.is_rfc3261_branch());
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;received=2001:db8::1;rport=7").unwrap();
        assert_eq!(v.host, "[2001:db8::9]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received(), Some("2001:db8::1"));
        assert_eq!(v.rport(), Some(Some(7)));
        let v = Via::parse("SIP/2.0/UDP h;rport").unwrap();
        assert_eq!(v.rport(), Some(None));
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0 UDP h",
            "SIP/2.0/UDP h;;",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDPh",
            "",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display_name().unwrap(), r#"J Rosenberg \""#);
        assert_eq!(a.tag(), Some("98asjd8"));
        assert_eq!(a.uri().host(), "example.com");
        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display_name().unwrap(), "caller");
        let a = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(
            a.uri().params().is_empty(),
            "a header param, not a URI param"
        );
        assert_eq!(a.params.get("unknownparam"), Some(None));
        let a = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert_eq!(a.uri().param("unknownparam"), Some(None));
        assert!(a.params.is_empty());
        let a = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x")
            .unwrap();
        assert_eq!(a.display_name_raw(), Some("token1~` token2'+_ token3*%!.-"));
        let a = NameAddr::parse("\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:x@example.com>").unwrap();
        assert_eq!(a.display_name().unwrap(), "BEL:\x07 NUL:\0 DEL:\x7f");
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:x@y",
            "\"a\" sip:x@y",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            NameAddr::format(Some("A \"B\""), &Uri::parse("sip:a@b").unwrap(), Some("t1")),
            r#""A \"B\"" <sip:a@b>;tag=t1"#
        );
    }

    #[test]
    fn contact_star_expires_q() {
        assert_eq!(Contact::parse(" * ").unwrap(), Contact::Star);
        let Contact::Addr(c) = Contact::parse("<sip:a@b>;expires=60;q=0.5").unwrap() else {
            panic!()
        };
        assert_eq!(c.expires().unwrap().unwrap(), 60);
        assert_eq!(c.q(), Some(0.5));
        assert!(Contact::parse("<sip:user@host129.example.com>;expires=280297596632815").is_err());
    }

    #[test]
    fn cseq_errors_name_the_problem() {
        let what = |s: &str| match CSeq::parse(s) {
            Err(Error::Header { name: "CSeq", what }) => what,
            other => panic!("{s:?} gave {other:?}"),
        };
        assert_eq!(what("abc INVITE"), "sequence number is not a number");
        assert_eq!(what("-1 INVITE"), "sequence number is not a number");
        assert_eq!(what("1a INVITE"), "sequence number is not a number");
        assert_eq!(what("2147483648 INVITE"), "sequence number not below 2^31");
        assert_eq!(
            what("36893488147419103232 REGISTER"),
            "sequence number not below 2^31"
        );
    }

    #[test]
    fn scalars() {
        let c = CSeq::parse("0009 INVITE").unwrap();
        assert_eq!((c.seq, c.method.clone()), (9, Method::Invite));
        assert_eq!(c.to_string(), "9 INVITE");
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("2147483647 INVITE").is_ok());
        assert!(CSeq::parse("1").is_err());
        assert_eq!(parse_max_forwards("0068").unwrap(), 68);
        assert!(parse_max_forwards("300").is_err());
        assert!(parse_delta("Expires", "10000000000000000000000").is_err());
        assert!(check_call_id(
            "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
        ));
        assert!(!check_call_id("a b"));
        assert!(!check_call_id(""));
        let r = RAck::parse("776656 1 INVITE").unwrap();
        assert_eq!(r.rseq, 776656);
    }

    #[test]
    fn media_auth_date_params() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("MULTIPART", "mixed"));
        assert_eq!(m.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
        assert!(
            MediaType::parse("*/*")
                .unwrap()
                .covers("application", "sdp")
        );
        assert!(MediaType::parse("sdp").is_err());
        let a = Auth::parse(r#"Digest username="bob", realm="b.com", nonce="x,y""#).unwrap();
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.param("nonce").unwrap(), "x,y");
        assert!(Auth::parse("NoOneKnowsThisScheme opaque-data=here").is_ok());
        assert!(check_date("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        let e = Parameterized::parse("Event", "refer;id=93809824").unwrap();
        assert_eq!(
            (e.value, e.params.get("id")),
            ("refer", Some(Some("93809824")))
        );
        let r =
            Parameterized::parse_replaces("425928@bobster.example.org;to-tag=7743;from-tag=6472")
                .unwrap();
        assert_eq!(r.params.get("to-tag"), Some(Some("7743")));
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;

    fn check(s: &str) {
        assert_eq!(Via::parse(s), reference::via(s), "Via {s:?}");
        assert_eq!(
            NameAddr::parse_for("From", s),
            reference::name_addr("From", s),
            "NameAddr {s:?}"
        );
        assert_eq!(check_call_id(s), reference::call_id(s), "Call-ID {s:?}");
        assert_eq!(CSeq::parse(s), reference::cseq(s), "CSeq {s:?}");
        let (new, old) = (MediaType::parse(s), reference::media_type(s));
        assert_eq!(new, old, "MediaType {s:?}");
        if let (Ok(n), Ok(o)) = (new, old) {
            // The parts themselves, not only equal text (same slices of `s`).
            assert_eq!(n.kind.as_ptr(), o.kind.as_ptr());
            if !o.params.is_empty() {
                assert_eq!(n.params.as_str().as_ptr(), o.params.as_str().as_ptr());
            }
            for (k, t) in [
                ("application", "sdp"),
                ("APPLICATION", "SDP"),
                ("text", "plain"),
            ] {
                assert_eq!(
                    n.is(k, t),
                    o.kind.eq_ignore_ascii_case(k) && o.subtype.eq_ignore_ascii_case(t)
                );
                assert_eq!(
                    n.covers(k, t),
                    (o.kind == "*" || o.kind.eq_ignore_ascii_case(k))
                        && (o.subtype == "*" || o.subtype.eq_ignore_ascii_case(t))
                );
            }
        }
    }

    #[test]
    fn known_cases_match_the_reference() {
        for s in [
            "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport",
            "SIP / 2.0 / UDP [2001:db8::9] : 5070 ; received=1",
            "SIP/2.0/UDP [::1;x]",
            "SIP/2.0/UDP h:",
            "SIP/2.0/UDP h:50 60",
            "SIP/2.0/UDP h \"x;y\"",
            "\"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774",
            "Bob <sip:bob@biloxi.example.com>",
            "a b\tc <sip:x@y>",
            "a,b <sip:x@y>",
            "sip:a@b;tag=1",
            "1-12345@127.0.0.1",
            "a@b@c",
            "@b",
            "a@",
            "314159 INVITE",
            "1\tACK",
            "2147483648 BYE",
        ] {
            check(s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn parsers_match_the_reference(
            prefix in prop::sample::select(vec![
                "SIP/2.0/UDP ", "SIP / 2.0/TCP", "\"A\" ", "A b ", "<sip:", "sip:", "12 ", "",
                "application/sdp", "text/", "a/b;", "Application/SDP ;x=\"", "*/*;q=0.5",
                "999999999 ", "2147483647\t", "0 ", "1 INVITE", "12\t\t", "000000001 ",
            ]),
            body in proptest::collection::vec(prop::sample::select(
                b"ab1209.-_:;=?&@%[]<> \t\"\\,/+$!~*'(){}A.FE".to_vec()), 0..28),
        ) {
            let s = format!("{prefix}{}", String::from_utf8(body).unwrap());
            check(&s);
        }

        #[test]
        fn parsers_match_the_reference_on_any_text(s in "\\PC{0,30}") {
            check(&s);
        }
    }
}
