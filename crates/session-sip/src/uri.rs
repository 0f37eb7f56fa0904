//! URIs (RFC 3261 §19.1, §25.1): `sip:`/`sips:` parsed into parts, `tel:` (RFC 3966) into
//! number and parameters, and every other scheme kept as an absolute URI.
//!
//! A [`Uri`] keeps its text exactly as written (escapes included), so serializing it gives back
//! the same bytes; accessors return slices of that text, and [`Uri::user_decoded`] undoes the
//! `%HH` escapes.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};
use crate::text::{Params, Span, find_byte, percent_decode, percent_encode};

/// The scheme of a [`Uri`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Scheme {
    /// `sip:`.
    #[default]
    Sip,
    /// `sips:` (TLS all the way, RFC 3261 §19.1).
    Sips,
    /// `tel:` (RFC 3966).
    Tel,
    /// Any other scheme; the URI is kept as an opaque absolute URI.
    Other,
}

/// Offsets of the parts of a URI within its text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub(crate) struct Parts {
    scheme: Scheme,
    scheme_end: u32,
    user: Option<Span>,
    password: Option<Span>,
    host: Span,
    port: Option<u16>,
    params: Span,
    headers: Option<Span>,
}

/// A URI, kept as written plus the offsets of its parts.
///
/// Equality is textual (exact bytes); RFC 3261 §19.1.4 equivalence, which ignores case in
/// some parts and unescapes others, is [`Uri::equivalent`].
///
/// The text is shared by reference count: a clone (a request kept by a transaction, a
/// dialog's remote target) takes no allocation and copies no bytes. A `Uri` is never changed
/// in place ([`Uri::with_param`] makes a new one), so sharing is invisible.
#[derive(Clone)]
pub struct Uri {
    /// The text holding the URI: the URI alone, or (the Request-URI of a parsed request)
    /// the header section of the message, which the headers share, so that the parser makes
    /// no copy of its own for the URI.
    raw: std::sync::Arc<str>,
    /// Where the URI lies in `raw`; the offsets of `parts` are within that slice.
    at: Span,
    parts: Parts,
}

/// Equality is that of the text and the parts (where the text is kept does not count).
impl PartialEq for Uri {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() && self.parts == other.parts
    }
}

impl Eq for Uri {}

impl std::hash::Hash for Uri {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
        self.parts.hash(state);
    }
}

const fn is_unreserved_class(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

const fn is_user_byte_class(b: u8) -> bool {
    is_unreserved_class(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

const fn is_password_byte_class(b: u8) -> bool {
    is_unreserved_class(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

const fn is_param_byte_class(b: u8) -> bool {
    is_unreserved_class(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

const fn is_header_byte_class(b: u8) -> bool {
    is_unreserved_class(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

const fn is_uric_class(b: u8) -> bool {
    is_unreserved_class(b)
        || matches!(
            b,
            b';' | b'/'
                | b'?'
                | b':'
                | b'@'
                | b'&'
                | b'='
                | b'+'
                | b'$'
                | b','
                | b'#'
                | b'['
                | b']'
        )
}

macro_rules! byte_class {
    ($table:ident, $name:ident, $class:ident) => {
        static $table: [bool; 256] = {
            let mut t = [false; 256];
            let mut i = 0;
            while i < 256 {
                t[i] = $class(i as u8);
                i += 1;
            }
            t
        };

        #[inline]
        #[allow(dead_code)]
        fn $name(b: u8) -> bool {
            $table[usize::from(b)]
        }
    };
}

byte_class!(USER, is_user_byte, is_user_byte_class);
byte_class!(PASSWORD, is_password_byte, is_password_byte_class);
byte_class!(PARAM, is_param_byte, is_param_byte_class);
byte_class!(HEADER, is_header_byte, is_header_byte_class);
byte_class!(URIC, is_uric, is_uric_class);
byte_class!(HOST, is_host_byte, is_host_byte_class);

const fn is_label_byte_class(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

byte_class!(LABEL, is_label_byte, is_label_byte_class);

const fn is_host_byte_class(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Whether `s[i]` starts a `%HH` escape that fits in `s`.
#[inline]
fn escape_at(s: &[u8], i: usize) -> bool {
    matches!(
        (s.get(i), s.get(i + 1), s.get(i + 2)),
        (Some(b'%'), Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
    )
}

/// From `i`, skips bytes `table` allows and `%HH` escapes; returns where that stops.
#[inline]
fn skip_escaped(s: &[u8], mut i: usize, table: &[bool; 256]) -> usize {
    while let Some(&b) = s.get(i) {
        if table[usize::from(b)] {
            i += 1;
        } else if b == b'%' && escape_at(s, i) {
            i += 3;
        } else {
            break;
        }
    }
    i
}

/// Every byte is allowed by `allowed` or starts a `%HH` escape.
fn all_escaped<F: Fn(u8) -> bool>(s: &[u8], allowed: F) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if allowed(b) {
            i += 1;
        } else if b == b'%' && escape_at(s, i) {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// A decimal number of at most 40 digits (as [`parse_u64`]).
fn parse_u64_bytes(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 40 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        if c.is_ascii_digit() {
            v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// Whether [`scan`] accepts `s`: for the checks that keep no offsets (the scan inlined here,
/// for speed: the offsets it would return are not stored).
pub(crate) fn is_valid(s: &str) -> bool {
    scan_inline(s).is_ok()
}

/// Scans `s` as a URI; no allocation.
pub(crate) fn scan(s: &str) -> Result<Parts> {
    scan_inline(s)
}

/// [`scan`], inlined into its two callers.
#[inline(always)]
fn scan_inline(s: &str) -> Result<Parts> {
    if u32::try_from(s.len()).is_err() {
        return Err(Error::Uri("too long"));
    }
    let b = s.as_bytes();
    // The schemes of nearly every URI, recognized without the generic scheme scan (both are
    // valid schemes, and their colon is the first one).
    let (kind, colon) = if b
        .get(..4)
        .is_some_and(|p| crate::text::eq_ignore_case(p, b"sip:"))
    {
        (Scheme::Sip, 3)
    } else if b
        .get(..5)
        .is_some_and(|p| crate::text::eq_ignore_case(p, b"sips:"))
    {
        (Scheme::Sips, 4)
    } else {
        scheme_of(b)?
    };
    // One call of the `sip:` scan, inlined here (for speed: its result is not copied
    // through the calls).
    if matches!(kind, Scheme::Sip | Scheme::Sips) {
        return scan_sip_uri(b, kind, colon);
    }
    let mut parts = Parts {
        scheme: kind,
        scheme_end: u32::try_from(colon).unwrap_or(u32::MAX),
        ..Parts::default()
    };
    let start = colon + 1;
    let rest = b.get(start..).unwrap_or_default();
    if kind == Scheme::Tel {
        let end = memchr::memchr(b';', rest).map_or(b.len(), |i| start + i);
        let number = b.get(start..end).unwrap_or_default();
        if number.is_empty()
            || !number.iter().all(|&c| {
                c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
            })
        {
            return Err(Error::Uri("bad tel number"));
        }
        parts.user = Some(Span::new(start, end));
        parts.host = Span::new(end, end);
        parts.params = Span::new(end, b.len());
        check_params(b.get(end..).unwrap_or_default())?;
    } else {
        if rest.is_empty() || !all_escaped(rest, is_uric) {
            return Err(Error::Uri("bad absolute URI"));
        }
        parts.host = Span::new(start, start);
        parts.params = Span::new(b.len(), b.len());
    }
    Ok(parts)
}

/// The scheme of a URI not written `sip:` or `sips:` (any case), and the index of its colon.
fn scheme_of(b: &[u8]) -> Result<(Scheme, usize)> {
    let colon = find_byte(b':', b).ok_or(Error::Uri("no scheme"))?;
    let scheme = b.get(..colon).unwrap_or_default();
    let first_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic);
    if !first_ok
        || !scheme
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err(Error::Uri("bad scheme"));
    }
    let kind = if scheme.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other
    };
    Ok((kind, colon))
}

/// A `sip:` or `sips:` URI whose scheme ends at `colon`, in one pass from left to right (the
/// errors are those of the part that is wrong first).
#[inline(always)]
fn scan_sip_uri(b: &[u8], scheme: Scheme, colon: usize) -> Result<Parts> {
    let mut parts = Parts {
        scheme,
        scheme_end: u32::try_from(colon).unwrap_or(u32::MAX),
        ..Parts::default()
    };
    let start = colon + 1;
    let rest = b.get(start..).unwrap_or_default();
    // The usual userinfo, a user part of plain user bytes then '@', is read in one run: no
    // user byte is '@', so that '@' is the first one, and the general reading below (the
    // first '@', then the user part up to it) would give the same user part. Anything else
    // (no user part, escapes, a password, an empty user) is read the general way.
    let plain_user = skip_plain(rest, &USER);
    let host_start = if plain_user > 0 && rest.get(plain_user) == Some(&b'@') {
        parts.user = Some(Span::new(start, start + plain_user));
        start + plain_user + 1
    } else {
        userinfo_end(b, &mut parts, start)?
    };
    scan_sip_hostport(b, parts, host_start)
}

/// The general reading of the userinfo of a `sip:` URI whose text after the scheme starts at
/// `start`: where the host starts, the user part and password put in `parts`.
fn userinfo_end(b: &[u8], parts: &mut Parts, start: usize) -> Result<usize> {
    let rest = b.get(start..).unwrap_or_default();
    // '@' is legal nowhere but as the userinfo delimiter, so the first one ends the userinfo.
    let host_start = match find_byte(b'@', rest) {
        Some(at) => {
            let userinfo = rest.get(..at).unwrap_or_default();
            // The user part runs to the first ':' (which is no user character).
            let user_len = skip_escaped(userinfo, 0, &USER);
            if user_len == 0 {
                return Err(Error::Uri("bad user part"));
            }
            parts.user = Some(Span::new(start, start + user_len));
            match userinfo.get(user_len) {
                None => {}
                Some(b':') => {
                    let pw = userinfo.get(user_len + 1..).unwrap_or_default();
                    if skip_escaped(pw, 0, &PASSWORD) != pw.len() {
                        return Err(Error::Uri("bad password"));
                    }
                    let pw_start = start + user_len + 1;
                    parts.password = Some(Span::new(pw_start, pw_start + pw.len()));
                }
                Some(_) => return Err(Error::Uri("bad user part")),
            }
            start + at + 1
        }
        None => start,
    };
    Ok(host_start)
}

/// The run of bytes `table` allows at the start of `s` (no escapes): its length.
#[inline]
fn skip_plain(s: &[u8], table: &[bool; 256]) -> usize {
    s.iter()
        .position(|&c| !table[usize::from(c)])
        .unwrap_or(s.len())
}

/// The rest of a `sip:` or `sips:` URI from `host_start`, its userinfo (if any) already in
/// `parts`: hostport, parameters, headers.
#[inline(always)]
fn scan_sip_hostport(b: &[u8], mut parts: Parts, host_start: usize) -> Result<Parts> {
    // hostport ends at the first ';' or '?'.
    let hp_end = if b.get(host_start) == Some(&b'[') {
        let hp = b.get(host_start..).unwrap_or_default();
        let hp_end = hp
            .iter()
            .position(|&c| c == b';' || c == b'?')
            .map_or(b.len(), |i| host_start + i);
        let hostport = b.get(host_start..hp_end).unwrap_or_default();
        let close = memchr::memchr(b']', hostport).ok_or(Error::Uri("unclosed IPv6 reference"))?;
        let inner = hostport.get(1..close).unwrap_or_default();
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(Error::Uri("bad IPv6 reference"));
        }
        parts.host = Span::new(host_start, host_start + close + 1);
        match hostport.get(close + 1..) {
            Some([]) | None => {}
            Some([b':', digits @ ..]) => parts.port = Some(port_of(digits)?),
            Some(_) => return Err(Error::Uri("junk after host")),
        }
        hp_end
    } else {
        let host_end = scan_hostname(b, host_start)?;
        parts.host = Span::new(host_start, host_end);
        if b.get(host_end) == Some(&b':') {
            // The digits are read as they are scanned; up to five (the usual port) fit a
            // `u32` whatever they are, and give what `port_of` would.
            let mut value = 0u32;
            let mut digits_end = host_end + 1;
            while let Some(&c) = b.get(digits_end).filter(|c| c.is_ascii_digit()) {
                if digits_end - host_end <= 5 {
                    value = value * 10 + u32::from(c - b'0');
                }
                digits_end += 1;
            }
            match b.get(digits_end) {
                None | Some(b';' | b'?') => {}
                Some(_) => return Err(Error::Uri("bad port")),
            }
            parts.port = Some(if (2..=6).contains(&(digits_end - host_end)) {
                u16::try_from(value).map_err(|_| Error::Uri("bad port"))?
            } else {
                port_of(b.get(host_end + 1..digits_end).unwrap_or_default())?
            });
            digits_end
        } else {
            host_end
        }
    };
    // The parameters run to the first '?' (no parameter character), where the headers start.
    let q = scan_params(b, hp_end)?;
    parts.params = Span::new(hp_end, q);
    if q < b.len() {
        let hs = b.get(q + 1..).unwrap_or_default();
        let ok = !hs.is_empty()
            && hs.split(|&c| c == b'&').all(|h| {
                let mut it = h.splitn(2, |&c| c == b'=');
                let name = it.next().unwrap_or_default();
                let value = it.next();
                !name.is_empty()
                    && all_escaped(name, is_header_byte)
                    && value.is_some_and(|v| all_escaped(v, is_header_byte))
            });
        if !ok {
            return Err(Error::Uri("bad headers"));
        }
        parts.headers = Some(Span::new(q + 1, b.len()));
    }
    Ok(parts)
}

/// A port: 1–40 digits whose value fits 16 bits.
fn port_of(digits: &[u8]) -> Result<u16> {
    // Up to five digits (the usual port) fit a `u32` whatever they are.
    if (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) {
        let value = digits
            .iter()
            .fold(0u32, |v, &c| v * 10 + u32::from(c - b'0'));
        return u16::try_from(value).map_err(|_| Error::Uri("bad port"));
    }
    parse_u64_bytes(digits)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(Error::Uri("bad port"))
}

/// Index of the first byte at or after `i` that `class` rejects.
#[cfg(test)]
fn skip_class(b: &[u8], mut i: usize, class: impl Fn(u8) -> bool) -> usize {
    while b.get(i).copied().is_some_and(&class) {
        i += 1;
    }
    i
}

/// The host of a `sip:` URI from `start` (not an IPv6 reference): the index where it ends, at
/// the end or at the ':', ';' or '?' after it, in one pass over the labels; "bad host" for any
/// byte no host holds before that, and for a host that is not
/// `hostname / IPv4address` (RFC 3261 §25.1): `hostname = *( domainlabel "." ) toplabel [ "." ]`,
/// where a label is letters, digits and inner hyphens and the top label starts with a letter
/// (RFC 1123 §2.1). A host whose top label starts with a digit must be an IPv4 address: four
/// dotted decimal octets of at most 255 (RFC 3261 writes `1*3DIGIT`; RFC 3986 §3.2.2
/// `dec-octet` bounds it), so `256.256.256.256` and `1.2.3` are neither.
fn scan_hostname(b: &[u8], start: usize) -> Result<usize> {
    // A well-formed IPv4 address (the usual numeric host) is recognized at once: the scan
    // below would accept its labels and then its octets.
    if b.get(start).is_some_and(u8::is_ascii_digit)
        && let Some(end) = ipv4_at(b, start)
    {
        return Ok(end);
    }
    let bad = Err(Error::Uri("bad host"));
    let mut i = start;
    let mut label_first;
    let end = loop {
        // A label starts with a letter or a digit …
        match b.get(i) {
            Some(&c) if c.is_ascii_alphanumeric() => label_first = c,
            _ => return bad,
        }
        i += 1;
        // … holds letters, digits and hyphens, and does not end with a hyphen.
        while b.get(i).is_some_and(|&c| LABEL[usize::from(c)]) {
            i += 1;
        }
        if b.get(i - 1) == Some(&b'-') {
            return bad;
        }
        match b.get(i) {
            Some(b'.') => {
                i += 1;
                match b.get(i) {
                    Some(c) if c.is_ascii_alphanumeric() => {}
                    // The host ends with a dot.
                    None | Some(b':' | b';' | b'?') => break i,
                    Some(_) => return bad,
                }
            }
            None | Some(b':' | b';' | b'?') => break i,
            Some(_) => return bad,
        }
    };
    if label_first.is_ascii_alphabetic() {
        return Ok(end);
    }
    // The top label starts with a digit: only an IPv4 address will do.
    check_ipv4(b.get(start..end).unwrap_or_default())?;
    Ok(end)
}

/// The end of the IPv4 address at `start` — four dotted octets of 1–3 digits, each at most
/// 255, then the end, `:`, `;` or `?` — or `None` for anything else (which
/// [`scan_hostname`] then scans in full, errors included).
fn ipv4_at(b: &[u8], start: usize) -> Option<usize> {
    let digit = |i: usize| {
        b.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|&c| u32::from(c - b'0'))
    };
    let mut i = start;
    for octet in 0..4 {
        // One to three digits, read one by one (no loop: an octet is short).
        let first = digit(i)?;
        let (value, len) = match digit(i + 1) {
            None => (first, 1),
            Some(second) => match digit(i + 2) {
                None => (first * 10 + second, 2),
                Some(third) => (first * 100 + second * 10 + third, 3),
            },
        };
        i += len;
        if value > 255 {
            return None;
        }
        match b.get(i) {
            Some(b'.') if octet < 3 => i += 1,
            None | Some(b':' | b';' | b'?') if octet == 3 => return Some(i),
            _ => return None,
        }
    }
    None
}

/// The IPv4 check of [`scan_hostname`], for a host whose labels are already known to be well
/// formed: four dotted decimal octets of at most three digits and at most 255, checked in
/// order (a trailing dot makes an empty fifth octet). One pass: each octet is judged where its
/// digits end (its length and the byte after it first, then its value), as the octet-by-octet
/// check it replaced did (kept as `check_ipv4_reference` for the tests).
fn check_ipv4(host: &[u8]) -> Result<()> {
    let bad = Err(Error::Uri("bad host"));
    let mut octets = 0;
    let mut len = 0usize;
    let mut value = 0u32;
    let mut i = 0;
    loop {
        match host.get(i) {
            Some(&c) if c.is_ascii_digit() => {
                // A run of more than three digits is refused at its end, whatever its value.
                if len < 3 {
                    value = value * 10 + u32::from(c - b'0');
                }
                len += 1;
            }
            next => {
                octets += 1;
                if len == 0 || len > 3 || next.is_some_and(|&c| c != b'.') {
                    return bad;
                }
                if value > 255 {
                    return Err(Error::Uri("IPv4 address with an octet over 255"));
                }
                if next.is_none() {
                    break;
                }
                len = 0;
                value = 0;
            }
        }
        i += 1;
    }
    if octets == 4 { Ok(()) } else { bad }
}

/// [`check_ipv4`] as it was, octet by octet (the oracle of its tests): four dotted decimal octets of at most three digits and at most 255, checked in
/// order (a trailing dot makes an empty fifth octet).
#[cfg(test)]
fn check_ipv4_reference(host: &[u8]) -> Result<()> {
    let bad = Err(Error::Uri("bad host"));
    let mut octets = 0;
    let mut i = 0;
    loop {
        let digits_end = skip_class(host, i, |c| c.is_ascii_digit());
        octets += 1;
        let len = digits_end - i;
        if len == 0 || len > 3 || host.get(digits_end).is_some_and(|&c| c != b'.') {
            return bad;
        }
        let value = host
            .get(i..digits_end)
            .unwrap_or_default()
            .iter()
            .fold(0u32, |v, &c| v * 10 + u32::from(c - b'0'));
        if value > 255 {
            return Err(Error::Uri("IPv4 address with an octet over 255"));
        }
        if digits_end >= host.len() {
            break;
        }
        i = digits_end + 1;
    }
    if octets == 4 { Ok(()) } else { bad }
}

/// URI parameters from `start` (at a ';', a '?' or the end), checked as [`check_params`] does,
/// up to the first '?' or the end: returns that index.
fn scan_params(b: &[u8], start: usize) -> Result<usize> {
    match b.get(start) {
        None | Some(b'?') => return Ok(start),
        Some(b';') => {}
        Some(_) => return Err(Error::Uri("bad parameters")),
    }
    let bad = Err(Error::Uri("bad parameter"));
    let mut i = start + 1;
    loop {
        let name_end = skip_escaped(b, i, &PARAM);
        if name_end == i {
            return bad;
        }
        i = name_end;
        if b.get(i) == Some(&b'=') {
            let value_end = skip_escaped(b, i + 1, &PARAM);
            if value_end == i + 1 {
                return bad;
            }
            i = value_end;
        }
        match b.get(i) {
            None | Some(b'?') => return Ok(i),
            Some(b';') => i += 1,
            Some(_) => return bad,
        }
    }
}

/// `*( ";" pname [ "=" pvalue ] )` with non-empty names and values, in one pass.
fn check_params(p: &[u8]) -> Result<()> {
    if p.is_empty() {
        return Ok(());
    }
    if p.first() != Some(&b';') {
        return Err(Error::Uri("bad parameters"));
    }
    let bad = Err(Error::Uri("bad parameter"));
    let mut i = 1;
    loop {
        let name_end = skip_escaped(p, i, &PARAM);
        if name_end == i {
            return bad;
        }
        i = name_end;
        if p.get(i) == Some(&b'=') {
            let value_end = skip_escaped(p, i + 1, &PARAM);
            if value_end == i + 1 {
                return bad;
            }
            i = value_end;
        }
        match p.get(i) {
            None => return Ok(()),
            Some(b';') => i += 1,
            Some(_) => return bad,
        }
    }
}

impl Uri {
    /// Parses a URI. Whitespace and angle brackets are not part of a URI.
    pub fn parse(s: &str) -> Result<Self> {
        let parts = scan(s)?;
        Ok(Self::from_scanned(s, parts))
    }

    pub(crate) fn from_scanned(s: &str, parts: Parts) -> Self {
        Self {
            raw: s.into(),
            at: Span::new(0, s.len()),
            parts,
        }
    }

    /// [`Uri::parse`] of `text.get(start..end)` (`None` when that is no slice of `text`),
    /// keeping `text` (a clone of the reference, no copy) rather than a copy of the URI: for
    /// the parser's Request-URI, which lies in the header section the headers share.
    pub(crate) fn parse_in(
        text: &std::sync::Arc<str>,
        start: usize,
        end: usize,
    ) -> Option<Result<Self>> {
        let s = text.get(start..end)?;
        Some(scan(s).map(|parts| Self {
            raw: std::sync::Arc::clone(text),
            at: Span::new(start, end),
            parts,
        }))
    }

    /// Builds `sip:[user@]host[:port]`, escaping the user part where the grammar requires.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Result<Self> {
        let mut s = String::from("sip:");
        if let Some(u) = user {
            s.push_str(&percent_encode(u, is_user_byte));
            s.push('@');
        }
        s.push_str(host);
        if let Some(p) = port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        Self::parse(&s)
    }

    /// This URI with `;name[=value]` appended to its parameters (before any `?headers`).
    /// Characters the grammar does not allow are escaped.
    pub fn with_param(&self, name: &str, value: Option<&str>) -> Result<Self> {
        let at = match self.parts.scheme {
            Scheme::Other => return Err(Error::Uri("absolute URIs have no parameters")),
            _ => self.parts.params.end(),
        };
        let raw = self.as_str();
        let mut s = String::with_capacity(raw.len() + name.len() + 8);
        s.push_str(raw.get(..at).unwrap_or_default());
        s.push(';');
        s.push_str(&percent_encode(name, is_param_byte));
        if let Some(v) = value {
            s.push('=');
            s.push_str(&percent_encode(v, is_param_byte));
        }
        s.push_str(raw.get(at..).unwrap_or_default());
        Self::parse(&s)
    }

    fn span(&self, span: Span) -> &str {
        span.get(self.as_str())
    }

    /// The whole URI as written.
    pub fn as_str(&self) -> &str {
        self.at.get(&self.raw)
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.parts.scheme
    }

    /// The scheme as written (e.g. `sip`, `SIP`, `soap.beep`).
    pub fn scheme_str(&self) -> &str {
        self.as_str()
            .get(..self.parts.scheme_end as usize)
            .unwrap_or_default()
    }

    /// Whether this is a `sip:` or `sips:` URI.
    pub fn is_sip(&self) -> bool {
        matches!(self.parts.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The user part as written (escapes kept); for `tel:` the number.
    pub fn user(&self) -> Option<&str> {
        self.parts.user.map(|s| self.span(s))
    }

    /// The user part with `%HH` escapes decoded (invalid UTF-8 replaced).
    pub fn user_decoded(&self) -> Option<Cow<'_, str>> {
        self.user().map(|u| match percent_decode(u) {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        })
    }

    /// The password, if the userinfo has one.
    pub fn password(&self) -> Option<&str> {
        self.parts.password.map(|s| self.span(s))
    }

    /// The host (empty for `tel:` and absolute URIs); IPv6 references keep their brackets.
    pub fn host(&self) -> &str {
        self.span(self.parts.host)
    }

    /// The port, if written.
    pub fn port(&self) -> Option<u16> {
        self.parts.port
    }

    /// The URI parameters (`;lr;transport=tcp`).
    pub fn params(&self) -> Params<'_> {
        Params::new(self.span(self.parts.params))
    }

    /// The value of one URI parameter; see [`Params::get`].
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params().get(name)
    }

    /// The `?headers` part without the `?`, as written.
    pub fn headers(&self) -> Option<&str> {
        self.parts.headers.map(|s| self.span(s))
    }

    /// Everything after `scheme:`.
    pub fn opaque(&self) -> &str {
        self.as_str()
            .get(self.parts.scheme_end as usize + 1..)
            .unwrap_or_default()
    }

    /// RFC 3261 §19.1.4 comparison, simplified: scheme and host case-insensitive, user and
    /// password case-sensitive after unescaping, ports and the `user`, `ttl`, `method`,
    /// `maddr` and `transport` parameters must match. Other schemes compare by text.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.parts.scheme != other.parts.scheme {
            return false;
        }
        if !self.is_sip() {
            return self.as_str().eq_ignore_ascii_case(other.as_str());
        }
        let dec = |u: Option<&str>| u.map(|u| percent_decode(u).into_owned());
        if dec(self.user()) != dec(other.user()) || dec(self.password()) != dec(other.password()) {
            return false;
        }
        if !self.host().eq_ignore_ascii_case(other.host()) || self.port() != other.port() {
            return false;
        }
        ["user", "ttl", "method", "maddr", "transport"]
            .iter()
            .all(|p| match (self.param(p), other.param(p)) {
                (None, None) => true,
                (Some(Some(a)), Some(Some(b))) => a.eq_ignore_ascii_case(b),
                (Some(None), Some(None)) => true,
                _ => false,
            })
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uri({:?})", self.as_str())
    }
}

impl std::str::FromStr for Uri {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The scanner as it was before the single-pass rewrite, kept to check the new one against
/// (same parts, same errors) on generated input.
#[cfg(test)]
pub(crate) mod reference {
    #![allow(clippy::all)]
    use super::*;
    use crate::text::{escapes_ok, parse_u64};

    /// `hostname / IPv4address` (RFC 3261 §25.1), in one pass over the bytes:
    /// `hostname = *( domainlabel "." ) toplabel [ "." ]`, where a label is letters, digits and
    /// inner hyphens and the top label starts with a letter (RFC 1123 §2.1). A host whose top label
    /// starts with a digit must be an IPv4 address: four dotted decimal octets of at most 255
    /// (RFC 3261 writes `1*3DIGIT`; RFC 3986 §3.2.2 `dec-octet` bounds it), so `256.256.256.256`
    /// and `1.2.3` are neither.
    fn check_host(host: &[u8]) -> Result<()> {
        let bad = Err(Error::Uri("bad host"));
        let body = host.strip_suffix(b".").unwrap_or(host);
        // The byte before the current one, and the first byte of the current label.
        let (mut prev, mut label_first) = (b'.', 0u8);
        for &c in body {
            if c == b'.' {
                // A label ends: it must not be empty nor end with a hyphen.
                if prev == b'.' || prev == b'-' {
                    return bad;
                }
            } else if !is_host_byte(c) || (prev == b'.' && c == b'-') {
                return bad;
            } else if prev == b'.' {
                label_first = c;
            }
            prev = c;
        }
        if prev == b'.' || prev == b'-' {
            // Empty (or only "."), an empty last label, or a trailing hyphen.
            return bad;
        }
        if label_first.is_ascii_alphabetic() {
            return Ok(());
        }
        // The top label starts with a digit: only an IPv4 address will do.
        let mut octets = 0;
        for octet in host.split(|&c| c == b'.') {
            octets += 1;
            let value = std::str::from_utf8(octet).ok().and_then(parse_u64);
            if octet.len() > 3 || value.is_none() {
                return bad;
            }
            if value.is_some_and(|v| v > 255) {
                return Err(Error::Uri("IPv4 address with an octet over 255"));
            }
        }
        if octets == 4 { Ok(()) } else { bad }
    }

    /// Every byte is allowed by `allowed` or starts a `%HH` escape.
    fn all_escaped<F: Fn(u8) -> bool>(s: &[u8], allowed: F) -> bool {
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            if allowed(b) {
                i += 1;
            } else if b == b'%'
                && escapes_ok(s.get(i..i + 3).unwrap_or_default())
                && i + 3 <= s.len()
            {
                i += 3;
            } else {
                return false;
            }
        }
        true
    }

    /// Scans `s` as a URI; no allocation.
    pub(crate) fn scan(s: &str) -> Result<Parts> {
        if u32::try_from(s.len()).is_err() {
            return Err(Error::Uri("too long"));
        }
        let b = s.as_bytes();
        let colon = b
            .iter()
            .position(|&c| c == b':')
            .ok_or(Error::Uri("no scheme"))?;
        let scheme = b.get(..colon).unwrap_or_default();
        let first_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic);
        if !first_ok
            || !scheme
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(Error::Uri("bad scheme"));
        }
        let kind = if scheme.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut parts = Parts {
            scheme: kind,
            scheme_end: u32::try_from(colon).unwrap_or(u32::MAX),
            ..Parts::default()
        };
        let start = colon + 1;
        let rest = b.get(start..).unwrap_or_default();
        match kind {
            Scheme::Sip | Scheme::Sips => scan_sip(b, start, &mut parts)?,
            Scheme::Tel => {
                let end = memchr::memchr(b';', rest).map_or(b.len(), |i| start + i);
                let number = b.get(start..end).unwrap_or_default();
                if number.is_empty()
                    || !number.iter().all(|&c| {
                        c.is_ascii_hexdigit()
                            || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
                    })
                {
                    return Err(Error::Uri("bad tel number"));
                }
                parts.user = Some(Span::new(start, end));
                parts.host = Span::new(end, end);
                parts.params = Span::new(end, b.len());
                check_params(b.get(end..).unwrap_or_default())?;
            }
            Scheme::Other => {
                if rest.is_empty() || !all_escaped(rest, is_uric) {
                    return Err(Error::Uri("bad absolute URI"));
                }
                parts.host = Span::new(start, start);
                parts.params = Span::new(b.len(), b.len());
            }
        }
        Ok(parts)
    }

    fn scan_sip(b: &[u8], start: usize, parts: &mut Parts) -> Result<()> {
        let rest = b.get(start..).unwrap_or_default();
        // '@' is legal nowhere but as the userinfo delimiter, so the first one ends the userinfo.
        let host_start = match rest.iter().position(|&c| c == b'@') {
            Some(at) => {
                let userinfo = rest.get(..at).unwrap_or_default();
                let (user, password) = match userinfo.iter().position(|&c| c == b':') {
                    Some(c) => (
                        userinfo.get(..c).unwrap_or_default(),
                        Some(userinfo.get(c + 1..).unwrap_or_default()),
                    ),
                    None => (userinfo, None),
                };
                if user.is_empty() || !all_escaped(user, is_user_byte) {
                    return Err(Error::Uri("bad user part"));
                }
                parts.user = Some(Span::new(start, start + user.len()));
                if let Some(pw) = password {
                    if !all_escaped(pw, is_password_byte) {
                        return Err(Error::Uri("bad password"));
                    }
                    let pw_start = start + user.len() + 1;
                    parts.password = Some(Span::new(pw_start, pw_start + pw.len()));
                }
                start + at + 1
            }
            None => start,
        };
        let hp = b.get(host_start..).unwrap_or_default();
        let hp_end = hp
            .iter()
            .position(|&c| c == b';' || c == b'?')
            .map_or(b.len(), |i| host_start + i);
        let hostport = b.get(host_start..hp_end).unwrap_or_default();
        let host_len = if hostport.first() == Some(&b'[') {
            let close =
                memchr::memchr(b']', hostport).ok_or(Error::Uri("unclosed IPv6 reference"))?;
            let inner = hostport.get(1..close).unwrap_or_default();
            if inner.is_empty()
                || !inner
                    .iter()
                    .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(Error::Uri("bad IPv6 reference"));
            }
            close + 1
        } else {
            let len = hostport
                .iter()
                .position(|&c| c == b':')
                .unwrap_or(hostport.len());
            check_host(hostport.get(..len).unwrap_or_default())?;
            len
        };
        parts.host = Span::new(host_start, host_start + host_len);
        match hostport.get(host_len..) {
            Some([]) | None => {}
            Some([b':', digits @ ..]) => {
                let port = std::str::from_utf8(digits)
                    .ok()
                    .and_then(parse_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(Error::Uri("bad port"))?;
                parts.port = Some(port);
            }
            Some(_) => return Err(Error::Uri("junk after host")),
        }
        let q = b
            .get(hp_end..)
            .and_then(|r| memchr::memchr(b'?', r))
            .map_or(b.len(), |i| hp_end + i);
        parts.params = Span::new(hp_end, q);
        check_params(b.get(hp_end..q).unwrap_or_default())?;
        if q < b.len() {
            let hs = b.get(q + 1..).unwrap_or_default();
            let ok = !hs.is_empty()
                && hs.split(|&c| c == b'&').all(|h| {
                    let mut it = h.splitn(2, |&c| c == b'=');
                    let name = it.next().unwrap_or_default();
                    let value = it.next();
                    !name.is_empty()
                        && all_escaped(name, is_header_byte)
                        && value.is_some_and(|v| all_escaped(v, is_header_byte))
                });
            if !ok {
                return Err(Error::Uri("bad headers"));
            }
            parts.headers = Some(Span::new(q + 1, b.len()));
        }
        Ok(())
    }

    /// `*( ";" pname [ "=" pvalue ] )` with non-empty names and values.
    fn check_params(p: &[u8]) -> Result<()> {
        if p.is_empty() {
            return Ok(());
        }
        let Some(rest) = p.strip_prefix(b";") else {
            return Err(Error::Uri("bad parameters"));
        };
        let ok = rest.split(|&c| c == b';').all(|param| {
            let mut it = param.splitn(2, |&c| c == b'=');
            let name = it.next().unwrap_or_default();
            !name.is_empty()
                && all_escaped(name, is_param_byte)
                && it
                    .next()
                    .is_none_or(|v| !v.is_empty() && all_escaped(v, is_param_byte))
        });
        if ok {
            Ok(())
        } else {
            Err(Error::Uri("bad parameter"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_parts() {
        let u = Uri::parse("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?h=v&x=y").unwrap();
        assert_eq!(u.scheme(), Scheme::Sips);
        assert_eq!(u.user(), Some("alice"));
        assert_eq!(u.password(), Some("pw"));
        assert_eq!(u.host(), "[2001:db8::1]");
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers(), Some("h=v&x=y"));
    }

    #[test]
    fn rfc4475_user_parts() {
        // §3.1.1.2: user-unreserved characters, including `;` and `?`, belong to the user.
        let u = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!(
            u.user(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host(), "example.com");
        // §3.1.1.9: the `;` is inside the user part.
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
        assert!(u.params().is_empty());
        // §3.1.1.3: escapes decode, and an escaped `@` does not end the user part.
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user_decoded().unwrap(), "sips:user@example.com");
        assert_eq!(u.host(), "example.net");
        let u = Uri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(u.user_decoded().unwrap(), "null-\0-null");
    }

    #[test]
    fn other_schemes_and_errors() {
        for s in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "http://www.example.com",
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u.scheme(), Scheme::Other);
            assert_eq!(u.as_str(), s);
        }
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(t.scheme(), Scheme::Tel);
        assert_eq!(t.user(), Some("+1-201-555-0123"));
        for bad in [
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:",
            "sip:@host",
            "sip:host:99999",
            "sip:host;;",
            "sip:ho st",
            "sip:a%2@host",
            "sip:host?",
            "1sip:host",
            "other:",
            "other:a b",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn building_escapes_the_user() {
        let u = Uri::sip(Some("I have spaces"), "example.net", Some(5070)).unwrap();
        assert_eq!(u.as_str(), "sip:I%20have%20spaces@example.net:5070");
        assert_eq!(u.user_decoded().unwrap(), "I have spaces");
        let u = u.with_param("transport", Some("tcp")).unwrap();
        assert_eq!(
            u.as_str(),
            "sip:I%20have%20spaces@example.net:5070;transport=tcp"
        );
        assert!(u.equivalent(
            &Uri::parse("SIP:I%20have%20spaces@EXAMPLE.net:5070;transport=TCP;foo").unwrap()
        ));
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;

    fn check(s: &str) {
        assert_eq!(scan(s), reference::scan(s), "{s:?}");
    }

    /// `scan_hostname` without its IPv4 shortcut: the labels, then `check_ipv4` when the top
    /// label starts with a digit.
    fn scan_hostname_labels(b: &[u8], start: usize) -> Result<usize> {
        let bad = Err(Error::Uri("bad host"));
        let mut i = start;
        let mut label_first;
        let end = loop {
            match b.get(i) {
                Some(&c) if c.is_ascii_alphanumeric() => label_first = c,
                _ => return bad,
            }
            i += 1;
            while b.get(i).is_some_and(|&c| LABEL[usize::from(c)]) {
                i += 1;
            }
            if b.get(i - 1) == Some(&b'-') {
                return bad;
            }
            match b.get(i) {
                Some(b'.') => {
                    i += 1;
                    match b.get(i) {
                        Some(c) if c.is_ascii_alphanumeric() => {}
                        None | Some(b':' | b';' | b'?') => break i,
                        Some(_) => return bad,
                    }
                }
                None | Some(b':' | b';' | b'?') => break i,
                Some(_) => return bad,
            }
        };
        if label_first.is_ascii_alphabetic() {
            return Ok(end);
        }
        check_ipv4(b.get(start..end).unwrap_or_default())?;
        Ok(end)
    }

    #[test]
    fn known_cases_match_the_reference() {
        for s in [
            "sip:bob@biloxi.example.com",
            "sip:service@127.0.0.1:5060",
            "SIP:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?h=v&x=y",
            "sips:a@b.c.;x=%41%4;y",
            "sip:1.2.3.256",
            "sip:1.2.3.4.",
            "sip:h:0000000000000000000000000000000000000000005060",
            "sip:h:5060x",
            "sip:[::1]x",
            "sip:[::1]:5",
            "sip:a%4:b@h",
            "sip:a%41:b%4@h",
            "sip:host;x=a@b",
            "sip::pw@h",
            "sip:a@",
            "sip:@",
            "sip:h;a=b=c",
            "sip:h;a=;b",
            "sip:h?",
            "sipx:h",
            "tel:+1-201;x=y",
        ] {
            check(s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn scan_matches_the_reference(
            scheme in prop::sample::select(vec!["sip:", "sips:", "SiP:", "tel:", "x:", "", "sip", "1:"]),
            body in proptest::collection::vec(prop::sample::select(
                b"ab1209.-_:;=?&@%[]<> \"\\,/+$!~*'()A.F".to_vec()), 0..24),
        ) {
            let s = format!("{scheme}{}", String::from_utf8(body).unwrap());
            check(&s);
        }

        #[test]
        fn ipv4_at_agrees_with_the_full_scan(
            octets in proptest::collection::vec(
                prop::sample::select(vec!["0", "7", "09", "127", "255", "256", "1000", "a", ""]), 1..6),
            tail in proptest::collection::vec(prop::sample::select(b"0123456789.a-:;?x".to_vec()), 0..4),
        ) {
            let mut b = format!("sip:{}", octets.join(".")).into_bytes();
            b.extend_from_slice(&tail);
            let full = scan_hostname_labels(&b, 4);
            match ipv4_at(&b, 4) {
                Some(end) => prop_assert_eq!(full, Ok(end)),
                // Not taken: `scan_hostname` is the full scan.
                None => prop_assert_eq!(scan_hostname(&b, 4), full),
            }
        }

        #[test]
        fn ipv4_hosts_check_as_before(
            host in proptest::collection::vec(prop::sample::select(b"0123456789.a-".to_vec()), 0..20),
        ) {
            prop_assert_eq!(check_ipv4(&host), check_ipv4_reference(&host));
        }

        #[test]
        fn hosts_and_ports_scan_as_before(
            octets in proptest::collection::vec(
                prop::sample::select(vec!["0", "1", "12", "127", "255", "256", "999", "0255", "1a", "a1", "b", "9-9", "", "00"]),
                1..7),
            trailing_dot in any::<bool>(),
            port in prop::sample::select(vec!["", ":", ":5060", ":65535", ":65536", ":99999", ":0000005060", ":5x", ":123456"]),
            rest in prop::sample::select(vec!["", ";lr", "?h=v", "x", ";"]),
        ) {
            let mut host = octets.join(".");
            if trailing_dot {
                host.push('.');
            }
            check(&format!("sip:u@{host}{port}{rest}"));
            check(&format!("sip:{host}{port}{rest}"));
            check(&format!("sip:[::1]{port}{rest}"));
        }

        #[test]
        fn scan_matches_the_reference_on_any_text(s in "\\PC{0,30}") {
            check(&s);
            check(&format!("sip:{s}"));
        }
    }
}
