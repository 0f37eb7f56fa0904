//! Header fields: names (with compact forms), raw values kept as received, and the ordered
//! collection a message carries.
//!
//! Every header is stored raw — its name as written and its value unfolded (RFC 3261 §7.3.1)
//! — in arrival order. Typed views ([`crate::headers`]) parse the raw values on demand.

use std::fmt;
use std::sync::Arc;

use crate::headers::Hot;
use crate::text::split_top_level;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $canon:literal $(, $compact:literal)? ; list = $list:literal )*) => {
        /// A header field name. Known names are matched case-insensitively, compact forms
        /// included (`v` is Via, RFC 3261 §7.3.3); anything else is [`HeaderName::Other`].
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate does not name; the raw name is in [`Header::name_str`].
            Other,
        }

        impl HeaderName {
            /// The canonical (long) name; `""` for [`HeaderName::Other`].
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $canon, )*
                    Self::Other => "",
                }
            }

            /// The compact form, if the header has one.
            pub const fn compact(self) -> Option<char> {
                match self {
                    $( $( Self::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            /// Whether values may be combined into one line separated by commas
            /// (RFC 3261 §7.3.1), so that [`Headers::values`] splits them.
            pub const fn is_list(self) -> bool {
                match self {
                    $( Self::$variant => $list, )*
                    Self::Other => false,
                }
            }

            /// Recognizes a name as written (any case, long or compact).
            pub fn from_bytes(name: &[u8]) -> Self {
                if let Some(hot) = Self::hot(name, <[u8]>::eq_ignore_ascii_case) {
                    return hot;
                }
                Self::from_bytes_cold(name)
            }

            /// [`HeaderName::from_bytes`] for a name the parser checked is a token: the
            /// common names are compared by folding case with `| 0x20`, which is exact on
            /// token bytes (it maps only `A`–`Z` onto letters, and `_` onto DEL).
            #[inline]
            pub(crate) fn from_token(name: &[u8]) -> Self {
                if let Some(hot) = Self::hot(name, |a: &[u8], lower: &[u8]| {
                    a.len() == lower.len() && a.iter().zip(lower).all(|(x, y)| x | 0x20 == *y)
                }) {
                    return hot;
                }
                Self::from_bytes_cold(name)
            }

            fn from_bytes_cold(name: &[u8]) -> Self {
                if let [c] = name {
                    return match char::from(c.to_ascii_lowercase()) {
                        $( $( $compact => Self::$variant, )? )*
                        _ => Self::Other,
                    };
                }
                $( if name.eq_ignore_ascii_case($canon.as_bytes()) { return Self::$variant; } )*
                Self::Other
            }
        }
    };
}

header_names! {
    /// Accept.
    Accept = "Accept"; list = true
    /// Accept-Encoding.
    AcceptEncoding = "Accept-Encoding"; list = true
    /// Accept-Language.
    AcceptLanguage = "Accept-Language"; list = true
    /// Accept-Resource-Priority (RFC 4412).
    AcceptResourcePriority = "Accept-Resource-Priority"; list = true
    /// Alert-Info.
    AlertInfo = "Alert-Info"; list = true
    /// Allow.
    Allow = "Allow"; list = true
    /// Allow-Events (RFC 6665), compact `u`.
    AllowEvents = "Allow-Events", 'u'; list = true
    /// Authorization.
    Authorization = "Authorization"; list = false
    /// Call-ID, compact `i`.
    CallId = "Call-ID", 'i'; list = false
    /// Call-Info.
    CallInfo = "Call-Info"; list = true
    /// Contact, compact `m`.
    Contact = "Contact", 'm'; list = true
    /// Content-Disposition.
    ContentDisposition = "Content-Disposition"; list = false
    /// Content-Encoding, compact `e`.
    ContentEncoding = "Content-Encoding", 'e'; list = true
    /// Content-Language.
    ContentLanguage = "Content-Language"; list = true
    /// Content-Length, compact `l`.
    ContentLength = "Content-Length", 'l'; list = false
    /// Content-Type, compact `c`.
    ContentType = "Content-Type", 'c'; list = false
    /// CSeq.
    CSeq = "CSeq"; list = false
    /// Date.
    Date = "Date"; list = false
    /// Error-Info.
    ErrorInfo = "Error-Info"; list = true
    /// Event (RFC 6665), compact `o`.
    Event = "Event", 'o'; list = false
    /// Expires.
    Expires = "Expires"; list = false
    /// From, compact `f`.
    From = "From", 'f'; list = false
    /// Identity (RFC 8224), compact `y`.
    Identity = "Identity", 'y'; list = false
    /// In-Reply-To.
    InReplyTo = "In-Reply-To"; list = true
    /// Max-Forwards.
    MaxForwards = "Max-Forwards"; list = false
    /// Min-Expires.
    MinExpires = "Min-Expires"; list = false
    /// Min-SE (RFC 4028).
    MinSe = "Min-SE"; list = false
    /// Organization.
    Organization = "Organization"; list = false
    /// Priority.
    Priority = "Priority"; list = false
    /// Proxy-Authenticate.
    ProxyAuthenticate = "Proxy-Authenticate"; list = false
    /// Proxy-Authorization.
    ProxyAuthorization = "Proxy-Authorization"; list = false
    /// Proxy-Require.
    ProxyRequire = "Proxy-Require"; list = true
    /// RAck (RFC 3262).
    RAck = "RAck"; list = false
    /// Reason (RFC 3326).
    Reason = "Reason"; list = true
    /// Record-Route.
    RecordRoute = "Record-Route"; list = true
    /// Refer-To (RFC 3515), compact `r`.
    ReferTo = "Refer-To", 'r'; list = false
    /// Referred-By (RFC 3892), compact `b`.
    ReferredBy = "Referred-By", 'b'; list = false
    /// Replaces (RFC 3891).
    Replaces = "Replaces"; list = false
    /// Reply-To.
    ReplyTo = "Reply-To"; list = false
    /// Require.
    Require = "Require"; list = true
    /// Resource-Priority (RFC 4412): `namespace.priority` values.
    ResourcePriority = "Resource-Priority"; list = true
    /// Retry-After.
    RetryAfter = "Retry-After"; list = false
    /// Route.
    Route = "Route"; list = true
    /// RSeq (RFC 3262).
    RSeq = "RSeq"; list = false
    /// Server.
    Server = "Server"; list = false
    /// Session-Expires (RFC 4028), compact `x`.
    SessionExpires = "Session-Expires", 'x'; list = false
    /// Subject, compact `s`.
    Subject = "Subject", 's'; list = false
    /// Subscription-State (RFC 6665).
    SubscriptionState = "Subscription-State"; list = false
    /// Supported, compact `k`.
    Supported = "Supported", 'k'; list = true
    /// Timestamp.
    Timestamp = "Timestamp"; list = false
    /// To, compact `t`.
    To = "To", 't'; list = false
    /// Unsupported.
    Unsupported = "Unsupported"; list = true
    /// User-Agent.
    UserAgent = "User-Agent"; list = false
    /// Via, compact `v`.
    Via = "Via", 'v'; list = true
    /// Warning.
    Warning = "Warning"; list = true
    /// WWW-Authenticate.
    WwwAuthenticate = "WWW-Authenticate"; list = false
}

impl HeaderName {
    /// The headers of nearly every message, recognized without walking the whole list.
    /// `eq(name, lowercase)` compares a name with a lowercase one.
    #[inline]
    fn hot(name: &[u8], eq: impl Fn(&[u8], &[u8]) -> bool) -> Option<Self> {
        let first = name.first()? | 0x20;
        let is = |s: &[u8]| eq(name, s);
        Some(match (name.len(), first) {
            (3, b'v') if is(b"via") => Self::Via,
            (4, b'f') if is(b"from") => Self::From,
            (2, b't') if is(b"to") => Self::To,
            (7, b'c') if is(b"call-id") => Self::CallId,
            (7, b'c') if is(b"contact") => Self::Contact,
            (4, b'c') if is(b"cseq") => Self::CSeq,
            (14, b'c') if is(b"content-length") => Self::ContentLength,
            (12, b'c') if is(b"content-type") => Self::ContentType,
            (12, b'm') if is(b"max-forwards") => Self::MaxForwards,
            (5, b'r') if is(b"route") => Self::Route,
            (12, b'r') if is(b"record-route") => Self::RecordRoute,
            (5, b'a') if is(b"allow") => Self::Allow,
            (9, b's') if is(b"supported") => Self::Supported,
            (10, b'u') if is(b"user-agent") => Self::UserAgent,
            (7, b's') if is(b"subject") => Self::Subject,
            _ => return None,
        })
    }
}

/// Eight bytes of `s` from `at` (zeros past its end), little endian.
const fn word(s: &[u8], at: usize) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        if at + i < s.len() {
            w |= (s[at + i] as u64) << (8 * i);
        }
        i += 1;
    }
    w
}

/// `0x20` where `s` has a lowercase letter, among its eight bytes from `at`: the bits that may
/// differ between `s` and a byte-for-byte case-insensitive match of it.
const fn fold_mask(s: &[u8], at: usize) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        if at + i < s.len() && s[at + i].is_ascii_lowercase() {
            w |= 0x20 << (8 * i);
        }
        i += 1;
    }
    w
}

/// A common header name (lowercase, at most 16 bytes) as [`HeaderName::known_at`] compares
/// it: its first eight bytes and (when longer) its last eight, with the bits its letters may
/// differ in.
struct Known {
    kind: HeaderName,
    len: usize,
    word0: u64,
    fold0: u64,
    /// The bytes of the first word that belong to the name.
    keep: u64,
    word1: u64,
    fold1: u64,
}

impl Known {
    const fn new(name: &[u8], kind: HeaderName) -> Self {
        let len = name.len();
        let last = len.saturating_sub(8);
        Self {
            kind,
            len,
            word0: word(name, 0),
            fold0: fold_mask(name, 0),
            keep: if len >= 8 {
                u64::MAX
            } else {
                (1u64 << (8 * len)) - 1
            },
            word1: word(name, last),
            fold1: fold_mask(name, last),
        }
    }
}

const KNOWN_VIA: Known = Known::new(b"via", HeaderName::Via);
const KNOWN_FROM: Known = Known::new(b"from", HeaderName::From);
const KNOWN_TO: Known = Known::new(b"to", HeaderName::To);
const KNOWN_CALL_ID: Known = Known::new(b"call-id", HeaderName::CallId);
const KNOWN_CSEQ: Known = Known::new(b"cseq", HeaderName::CSeq);
const KNOWN_CONTACT: Known = Known::new(b"contact", HeaderName::Contact);
const KNOWN_CONTENT_LENGTH: Known = Known::new(b"content-length", HeaderName::ContentLength);
const KNOWN_CONTENT_TYPE: Known = Known::new(b"content-type", HeaderName::ContentType);
const KNOWN_MAX_FORWARDS: Known = Known::new(b"max-forwards", HeaderName::MaxForwards);
const KNOWN_ROUTE: Known = Known::new(b"route", HeaderName::Route);
const KNOWN_RECORD_ROUTE: Known = Known::new(b"record-route", HeaderName::RecordRoute);
const KNOWN_ALLOW: Known = Known::new(b"allow", HeaderName::Allow);
const KNOWN_SUPPORTED: Known = Known::new(b"supported", HeaderName::Supported);
const KNOWN_SUBJECT: Known = Known::new(b"subject", HeaderName::Subject);
const KNOWN_USER_AGENT: Known = Known::new(b"user-agent", HeaderName::UserAgent);

impl HeaderName {
    /// The common name `b` starts with at `pos`, in any case, and its length, compared eight
    /// bytes at a time: only letters are matched in either case, so a match is a token (the
    /// caller checks the byte after it ends the token). `None` for any other start, and
    /// when fewer than eight bytes are left.
    #[inline]
    pub(crate) fn known_at(b: &[u8], pos: usize) -> Option<(Self, usize)> {
        /// Eight bytes of `b` from `at`.
        #[inline(always)]
        fn load(b: &[u8], at: usize) -> Option<u64> {
            Some(u64::from_le_bytes(*b.get(at..)?.first_chunk::<8>()?))
        }
        /// `k` at the start of `head`, the eight bytes at `pos`; for a name longer than eight
        /// bytes, `b` holds the rest.
        #[inline(always)]
        fn is(b: &[u8], pos: usize, head: u64, k: &Known) -> Option<(HeaderName, usize)> {
            let hit = if k.len <= 8 {
                (head | k.fold0) & k.keep == k.word0
            } else {
                head | k.fold0 == k.word0
                    && match load(b, pos + k.len - 8) {
                        Some(w) => w | k.fold1 == k.word1,
                        None => false,
                    }
            };
            hit.then_some((k.kind, k.len))
        }
        let head = load(b, pos)?;
        match b.get(pos)? | 0x20 {
            b'v' => is(b, pos, head, &KNOWN_VIA),
            b'f' => is(b, pos, head, &KNOWN_FROM),
            b't' => is(b, pos, head, &KNOWN_TO),
            b'c' => is(b, pos, head, &KNOWN_CALL_ID)
                .or_else(|| is(b, pos, head, &KNOWN_CSEQ))
                .or_else(|| is(b, pos, head, &KNOWN_CONTACT))
                .or_else(|| is(b, pos, head, &KNOWN_CONTENT_LENGTH))
                .or_else(|| is(b, pos, head, &KNOWN_CONTENT_TYPE)),
            b'm' => is(b, pos, head, &KNOWN_MAX_FORWARDS),
            b'r' => {
                is(b, pos, head, &KNOWN_ROUTE).or_else(|| is(b, pos, head, &KNOWN_RECORD_ROUTE))
            }
            b'a' => is(b, pos, head, &KNOWN_ALLOW),
            b's' => is(b, pos, head, &KNOWN_SUPPORTED).or_else(|| is(b, pos, head, &KNOWN_SUBJECT)),
            b'u' => is(b, pos, head, &KNOWN_USER_AGENT),
            _ => None,
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field: its name as written and its unfolded value.
///
/// Values are UTF-8 (RFC 3261 §7.3.1 TEXT-UTF8); the parser rejects anything else and the
/// constructors take `&str`. The headers of a parsed message share one copy of its header
/// section (checked as UTF-8 once), each keeping the offsets of its name and value, so a
/// header costs one reference count and its value is read without checking it again.
#[derive(Clone)]
pub struct Header {
    /// The text holding the name and the value: the header section of a parsed message,
    /// `name: value` for a header built with its name, or the value alone for one built with
    /// [`Header::new`] (an empty name range: the name is the canonical one). `None` only while
    /// the parser fills it in.
    text: Option<Arc<str>>,
    /// `text[start..name_end]` is the name as written, `text[value_start..end]` the value.
    start: u32,
    name_end: u32,
    value_start: u32,
    end: u32,
    kind: HeaderName,
    /// What the parser already parsed out of the value (never out of date: the value only
    /// changes through `set_value`, which clears it).
    hot: Hot,
}

/// Equality and hashing look at the name as written and the value, not the cache.
impl PartialEq for Header {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.name_bytes() == other.name_bytes()
            && self.value_bytes() == other.value_bytes()
    }
}

impl Eq for Header {}

impl std::hash::Hash for Header {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name_bytes().hash(state);
        self.value_bytes().hash(state);
    }
}

/// An offset within a header's text; texts over 4 GiB are not kept whole (see
/// [`Header::from_line`]).
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Header {
    /// A header with a known name, written in its canonical long form. For other names use
    /// [`Header::other`] (a `HeaderName::Other` header made here has no name and is not
    /// serialized).
    pub fn new(name: HeaderName, value: impl Into<String>) -> Self {
        Self::canonical(name, sanitize(value.into()))
    }

    /// A header written with the canonical name of `kind`: its text is the value alone (one
    /// copy of it), and the name comes from `kind`.
    fn canonical(kind: HeaderName, value: String) -> Self {
        let end = offset(value.len());
        Self {
            text: Some(Arc::from(value)),
            start: 0,
            name_end: 0,
            value_start: 0,
            end,
            kind,
            hot: Hot::None,
        }
    }

    /// A header with any name (`name` must be a token; a known name is recognized).
    /// Returns `None` when the name is not a token.
    pub fn other(name: &str, value: impl Into<String>) -> Option<Self> {
        if !crate::text::is_token(name) {
            return None;
        }
        let kind = HeaderName::from_bytes(name.as_bytes());
        Some(Self::build(kind, name, &sanitize(value.into())))
    }

    fn build(kind: HeaderName, name: &str, value: &str) -> Self {
        Self::from_line(kind, name, value, Hot::None)
    }

    /// A header with a text of its own, `name: value`.
    pub(crate) fn from_line(kind: HeaderName, name: &str, value: &str, hot: Hot) -> Self {
        let mut line = String::with_capacity(name.len() + 2 + value.len());
        line.push_str(name);
        line.push_str(": ");
        line.push_str(value);
        let n = offset(name.len());
        Self {
            text: Some(Arc::from(line)),
            start: 0,
            name_end: n,
            value_start: n.saturating_add(2),
            end: offset(name.len() + 2 + value.len()),
            kind,
            hot,
        }
    }

    /// Built by the parser: the name and the value are at these offsets of the header
    /// section, all below 4 GiB; the text is set by [`Header::set_text`] once the section is
    /// known.
    #[inline(always)]
    pub(crate) fn pending(
        kind: HeaderName,
        start: u32,
        name_end: u32,
        value_start: u32,
        end: u32,
        hot: Hot,
    ) -> Self {
        Self {
            text: None,
            start,
            name_end,
            value_start,
            end,
            kind,
            hot,
        }
    }

    /// Sets the text of a header made by [`Header::pending`].
    #[inline]
    pub(crate) fn set_text(&mut self, text: &Arc<str>) {
        if self.text.is_none() {
            self.text = Some(Arc::clone(text));
        }
    }

    pub(crate) fn hot(&self) -> Hot {
        self.hot
    }

    /// The recognized name.
    pub fn name(&self) -> HeaderName {
        self.kind
    }

    #[inline]
    fn slice(&self, from: u32, to: u32) -> &str {
        self.text
            .as_deref()
            .and_then(|t| t.get(from as usize..to as usize))
            .unwrap_or_default()
    }

    /// `text[from..to]` as bytes (no char boundary to check: serializing and comparing).
    #[inline]
    fn bytes(&self, from: u32, to: u32) -> &[u8] {
        self.text
            .as_deref()
            .map(str::as_bytes)
            .and_then(|t| t.get(from as usize..to as usize))
            .unwrap_or_default()
    }

    /// The length of the name and the value (for a buffer's capacity), from the offsets.
    #[cfg(test)]
    pub(crate) fn wire_len(&self) -> usize {
        let name = if self.name_end == self.start {
            self.kind.as_str().len()
        } else {
            self.name_end.saturating_sub(self.start) as usize
        };
        name + self.end.saturating_sub(self.value_start) as usize
    }

    /// The length of the line `name: value\r\n` as serialized, from the offsets (0 for a
    /// header without a name, which is not serialized).
    #[inline]
    pub(crate) fn line_len(&self) -> usize {
        let name = if self.name_end == self.start {
            self.kind.as_str().len()
        } else {
            self.name_end.saturating_sub(self.start) as usize
        };
        if name == 0 {
            return 0;
        }
        name + self.end.saturating_sub(self.value_start) as usize + 4
    }

    /// The line `name: value\r\n` as serialized, when the header's text holds it whole (a
    /// parsed header written `name: value` and ended by CRLF, as most are): one copy instead
    /// of four. `None` otherwise: write [`Header::name_str`], `: `, [`Header::value_bytes`]
    /// and CRLF (a header without a name is not serialized).
    ///
    /// The bytes are those [`crate::Message::to_bytes`] writes for the line; a layer that
    /// writes chosen lines of a request into a response of its own uses this to copy each
    /// line at once.
    #[inline]
    pub fn whole_line(&self) -> Option<&[u8]> {
        // The name is not empty, `: ` is right after it and the value right after that:
        // then `text[start..end + 2]` is the name, `: `, the value and what follows it.
        if self.name_end <= self.start
            || self.value_start != self.name_end.checked_add(2)?
            || self.end < self.value_start
        {
            return None;
        }
        let text = self.text.as_deref()?.as_bytes();
        let (name_end, end) = (self.name_end as usize, self.end as usize);
        let line_end = end.checked_add(2)?;
        if text.get(name_end..name_end + 2)? != b": " || text.get(end..line_end)? != b"\r\n" {
            return None;
        }
        text.get(self.start as usize..line_end)
    }

    /// The name as written, as bytes.
    #[inline]
    pub(crate) fn name_bytes(&self) -> &[u8] {
        if self.name_end == self.start {
            return self.kind.as_str().as_bytes();
        }
        self.bytes(self.start, self.name_end)
    }

    /// The name as written (e.g. `v`, `VIA`, `X-Custom`).
    pub fn name_str(&self) -> &str {
        if self.name_end == self.start {
            // Made by `Header::new`: the canonical name (none for `HeaderName::Other`).
            return self.kind.as_str();
        }
        self.slice(self.start, self.name_end)
    }

    /// The value (unfolded, trimmed).
    #[inline]
    pub fn value(&self) -> &str {
        self.slice(self.value_start, self.end)
    }

    /// Replaces the value, keeping the name as written.
    pub fn set_value(&mut self, value: impl Into<String>) {
        let value = sanitize(value.into());
        *self = if self.name_end == self.start {
            Self::canonical(self.kind, value)
        } else {
            let name = self.name_str().to_owned();
            Self::build(self.kind, &name, &value)
        };
    }

    /// The value as bytes.
    #[inline]
    pub fn value_bytes(&self) -> &[u8] {
        self.bytes(self.value_start, self.end)
    }
}

/// Header values cannot hold CR or LF (they would end the line); they become spaces.
fn sanitize(mut s: String) -> String {
    // A byte search (CR and LF are never inside a multi-byte character), not a `char` one.
    if crate::text::find_byte2(b'\r', b'\n', s.as_bytes()).is_some() {
        s = s.replace(['\r', '\n'], " ");
    }
    let t = crate::text::trim(&s);
    if t.len() != s.len() {
        s = t.to_owned();
    }
    s
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name_str(), self.value())
    }
}

/// The header fields of a message, in order.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty collection with room for `n` lines.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            list: Vec::with_capacity(n),
        }
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All header lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    /// The first line with this name.
    pub fn get(&self, name: HeaderName) -> Option<&Header> {
        self.list.iter().find(|h| h.kind == name)
    }

    /// The first line with this name, to change it in place.
    pub fn get_mut(&mut self, name: HeaderName) -> Option<&mut Header> {
        self.list.iter_mut().find(|h| h.kind == name)
    }

    /// The value of the first line with this name.
    pub fn get_str(&self, name: HeaderName) -> Option<&str> {
        self.get(name).map(Header::value)
    }

    /// The first line whose name equals `name` case-insensitively (for unknown headers).
    pub fn get_by_name(&self, name: &str) -> Option<&Header> {
        let kind = HeaderName::from_bytes(name.as_bytes());
        if kind == HeaderName::Other {
            self.list.iter().find(|h| {
                h.kind == HeaderName::Other && h.name_bytes().eq_ignore_ascii_case(name.as_bytes())
            })
        } else {
            self.get(kind)
        }
    }

    /// Every line with this name.
    pub fn get_all(&self, name: HeaderName) -> impl Iterator<Item = &Header> {
        self.list.iter().filter(move |h| h.kind == name)
    }

    /// How many lines have this name.
    pub fn count(&self, name: HeaderName) -> usize {
        self.get_all(name).count()
    }

    /// Every value of this header: lines in order, and for list headers
    /// ([`HeaderName::is_list`]) each line split on top-level commas (not inside quotes or
    /// `<>`). Empty elements are yielded so that typed parsers can reject them.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        let list = name.is_list();
        self.get_all(name).flat_map(move |h| {
            let v = h.value();
            let (whole, split) = if list {
                (None, Some(split_top_level(v, b',')))
            } else {
                (Some(v), None)
            };
            whole.into_iter().chain(split.into_iter().flatten())
        })
    }

    /// Gives the headers the parser made with [`Header::pending`] their text.
    pub(crate) fn set_pending_text(&mut self, text: &Arc<str>) {
        for h in &mut self.list {
            h.set_text(text);
        }
    }

    /// Appends a header line.
    #[inline]
    pub fn push(&mut self, header: Header) {
        self.list.push(header);
    }

    /// Inserts a header line at the front (e.g. a new top Via).
    pub fn push_front(&mut self, header: Header) {
        self.list.insert(0, header);
    }

    /// Keeps the lines for which `keep` is true, in order (one pass, however many names go).
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.list.retain(keep);
    }

    /// Removes every line with this name; returns how many were removed.
    pub fn remove_all(&mut self, name: HeaderName) -> usize {
        let before = self.list.len();
        self.list.retain(|h| h.kind != name);
        before - self.list.len()
    }

    /// Replaces every line with this name by one line (placed where the first one was, or at
    /// the end).
    pub fn set(&mut self, header: Header) {
        let name = header.kind;
        match self.list.iter().position(|h| h.kind == name) {
            Some(i) => {
                self.list.retain(|h| h.kind != name);
                let i = i.min(self.list.len());
                self.list.insert(i, header);
            }
            None => self.list.push(header),
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_map_to_the_same_header() {
        let pairs = [
            ("v", HeaderName::Via),
            ("i", HeaderName::CallId),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("y", HeaderName::Identity),
        ];
        for (c, name) in pairs {
            assert_eq!(HeaderName::from_bytes(c.as_bytes()), name);
            assert_eq!(HeaderName::from_bytes(c.to_uppercase().as_bytes()), name);
            assert_eq!(HeaderName::from_bytes(name.as_str().as_bytes()), name);
            assert_eq!(name.compact(), c.chars().next());
        }
        assert_eq!(HeaderName::from_bytes(b"cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"z"), HeaderName::Other);
    }

    #[test]
    fn values_split_list_headers_only() {
        let mut h = Headers::new();
        h.push(Header::new(
            HeaderName::Contact,
            r#""a, b" <sip:x@y;p=1,2>, <sip:z@w>"#,
        ));
        h.push(Header::new(
            HeaderName::Date,
            "Sat, 13 Nov 2010 23:29:00 GMT",
        ));
        let c: Vec<_> = h.values(HeaderName::Contact).collect();
        assert_eq!(c, [r#""a, b" <sip:x@y;p=1,2>"#, "<sip:z@w>"]);
        assert_eq!(h.values(HeaderName::Date).count(), 1);
        h.set(Header::new(HeaderName::Contact, "*"));
        assert_eq!(h.get_str(HeaderName::Contact), Some("*"));
        assert_eq!(h.len(), 2);
        assert!(Header::other("bad name", "x").is_none());
        assert_eq!(Header::new(HeaderName::Subject, " a\r\nb ").value(), "a  b");
        let mut h = Header::new(HeaderName::CallId, "x");
        assert_eq!((h.name_str(), h.value()), ("Call-ID", "x"));
        h.set_value("y");
        assert_eq!((h.name_str(), h.value()), ("Call-ID", "y"));
        let mut h = Header::other("i", "x").unwrap();
        h.set_value("z");
        assert_eq!(
            (h.name(), h.name_str(), h.value()),
            (HeaderName::CallId, "i", "z")
        );
        assert_eq!(Header::new(HeaderName::Other, "x").name_str(), "");
        let mut h = Headers::with_capacity(4);
        for (name, v) in [
            (HeaderName::Via, "a"),
            (HeaderName::Subject, "b"),
            (HeaderName::Via, "c"),
            (HeaderName::CallId, "d"),
        ] {
            h.push(Header::new(name, v));
        }
        h.retain(|h| h.name() != HeaderName::Subject && h.value() != "d");
        let kept: Vec<_> = h.iter().map(Header::value).collect();
        assert_eq!(kept, ["a", "c"]);
        assert_eq!(
            Header::new(HeaderName::CallId, "x"),
            Header::other("Call-ID", "x").unwrap()
        );
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_names_are_recognized_as_by_from_bytes() {
        let names = [
            "Via",
            "VIA",
            "via",
            "v",
            "From",
            "f",
            "TO",
            "t",
            "Call-ID",
            "CALL-id",
            "i",
            "CSeq",
            "Contact",
            "m",
            "Content-Length",
            "l",
            "Content-Type",
            "c",
            "Max-Forwards",
            "Route",
            "Record-Route",
            "Allow",
            "Supported",
            "k",
            "User-Agent",
            "Subject",
            "s",
            "WWW-Authenticate",
            "X-Custom",
            "Via_",
            "Fro_",
            "Call_ID",
            "Content_Length",
        ];
        for n in names {
            assert_eq!(
                HeaderName::from_token(n.as_bytes()),
                HeaderName::from_bytes(n.as_bytes()),
                "{n}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn known_names_are_found_as_by_the_token_scan(
            n in prop::sample::select(vec![
                "Via", "VIA", "via", "v", "From", "fRoM", "To", "tO", "Call-ID", "Contact", "CSeq",
                "Content-Length", "content-LENGTH", "Content-Type", "Max-Forwards", "Route",
                "Record-Route", "Allow", "Supported", "User-Agent", "Subject", "Content_Length",
                "Via_", "X-Custom", "i", "l", "Supported_", "user-agenT", "Record_Route", "Call\rID",
                "Call\x0dID", "Max\rForwards", "Toe", "Fromage", "Routes", "CallXID", "Call-I",
            ]),
            after in prop::sample::select(vec!["", ":", ": x\r\n", ":                 ", "x: 1", "\r\n", "-x:"]),
        ) {
            let line = format!("{n}{after}");
            let b = line.as_bytes();
            let end = crate::text::skip_class(b, 0, crate::text::is_token_byte);
            let fast = HeaderName::known_at(b, 0)
                .filter(|&(_, len)| !b.get(len).is_some_and(|&c| crate::text::is_token_byte(c)));
            if let Some((kind, len)) = fast {
                prop_assert_eq!(len, end);
                prop_assert_eq!(kind, HeaderName::from_token(&b[..end]));
            }
        }

        #[test]
        fn any_token_is_recognized_as_by_from_bytes(
            n in "[a-zA-Z_.!%*+`'~-]{1,16}",
        ) {
            prop_assert_eq!(HeaderName::from_token(n.as_bytes()), HeaderName::from_bytes(n.as_bytes()));
        }
    }
}

#[cfg(test)]
mod sanitize_differential {
    use proptest::prelude::*;

    /// `sanitize` as it was, with a `char` search.
    fn reference(mut s: String) -> String {
        if s.contains(['\r', '\n']) {
            s = s.replace(['\r', '\n'], " ");
        }
        let t = crate::text::trim(&s);
        if t.len() != s.len() {
            s = t.to_owned();
        }
        s
    }

    proptest! {
        #[test]
        fn values_are_sanitized_as_before(s in "[ \t\r\na\u{e9}\u{2028}<>:;]{0,24}") {
            prop_assert_eq!(super::sanitize(s.clone()), reference(s));
        }
    }
}

#[cfg(test)]
mod size {
    /// A header stays within 64 bytes, so that the 16 a parse reserves fit the allocator's
    /// per-thread cache (1 KiB).
    #[test]
    fn a_header_is_at_most_64_bytes() {
        assert!(
            std::mem::size_of::<super::Header>() <= 64,
            "{}",
            std::mem::size_of::<super::Header>()
        );
    }
}
