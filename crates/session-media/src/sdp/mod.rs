//! SDP (RFC 8866): a small, lenient parser and a strict writer, plus offer/answer
//! (RFC 3264) in [`negotiate`].
//!
//! We parse what real peers send — LF or CRLF line ends, a missing final line end, host names
//! in `o=` and `c=`, unknown lines and attributes — and keep every attribute we do not model,
//! so nothing is lost. We write only CRLF-terminated, valid SDP: `rtpmap` always as
//! `<pt> <name>/<rate>[/<channels>]`. Why this is our own code rather than the `sdp-rs` crate is
//! written in `crates/session-media/DECISIONS.md`.
//!
//! Parsing never panics; a body that breaks the grammar gives [`Error::MalformedSdp`] with the
//! line number. [`SessionDescriptionRef`] is the parse itself, borrowing the body's text; the
//! owned [`SessionDescription`] is copied out of it. Answering an INVITE's offer needs only the
//! view: [`negotiate::OfferAnswer::answer_offer_text`] goes from it straight to the answer's
//! text.
//!
//! ```
//! use session_media::sdp::SessionDescription;
//!
//! let body = "v=0\r\no=- 1 1 IN IP4 pbx.example.com\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!             m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000";
//! let sdp: SessionDescription = body.parse().unwrap();
//! assert_eq!(sdp.media[0].port, 4000);
//! assert_eq!(sdp.media[0].rtpmap(101).unwrap().encoding_name, "telephone-event");
//! assert!(sdp.to_string().ends_with("\r\n"));
//! ```

pub mod negotiate;
mod view;

pub use view::{SessionDescriptionRef, body_text};

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Largest SDP body we accept (a SIP body over UDP is far smaller).
const MAX_SDP_LEN: usize = 64 * 1024;

/// Address type of an `o=` or `c=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddrType {
    /// The address type of an IP address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::Ip4,
            IpAddr::V6(_) => Self::Ip6,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Ip4 => "IP4",
            Self::Ip6 => "IP6",
        }
    }
}

/// The `o=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// User name (`-` when there is none).
    pub username: String,
    /// Session id (digits, up to 64 bits in practice; kept as text to accept any peer's).
    pub session_id: String,
    /// Session version; RFC 3264 §8 requires it to grow with each changed offer or answer.
    pub session_version: u64,
    /// Address type.
    pub addr_type: AddrType,
    /// Address: an IP literal or a host name.
    pub address: String,
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Address type.
    pub addr_type: AddrType,
    /// Address: an IP literal or a host name (a multicast `/ttl` suffix is kept as written).
    pub address: String,
}

impl Connection {
    /// A connection line for an IP address.
    pub fn ip(ip: IpAddr) -> Self {
        Self {
            addr_type: AddrType::of(ip),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, when it is a literal (without a multicast suffix).
    pub fn ip_addr(&self) -> Option<IpAddr> {
        let host = self.address.split('/').next().unwrap_or_default();
        host.parse().ok()
    }

    /// True for the RFC 2543 hold address `0.0.0.0` (or `::`).
    pub fn is_unspecified(&self) -> bool {
        self.ip_addr().is_some_and(|ip| ip.is_unspecified())
    }
}

/// An `a=` line: name and optional value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// Attribute name (before `:`).
    pub name: String,
    /// Value (after the first `:`), if any.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=name`).
    pub fn flag(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: None,
        }
    }

    /// A value attribute (`a=name:value`).
    pub fn value(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value.into()),
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1, §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediaDirection {
    /// Send and receive (the default when no attribute is present).
    #[default]
    SendRecv,
    /// Send only (the sender puts the other side on hold).
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl MediaDirection {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn from_attr(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// Whether this side sends media.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether this side receives media.
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// Builds a direction from send/receive flags.
    pub fn from_flags(sends: bool, receives: bool) -> Self {
        match (sends, receives) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }

    /// The direction seen from the other side (sendonly ↔ recvonly).
    pub fn reversed(self) -> Self {
        Self::from_flags(self.receives(), self.sends())
    }

    /// The answer to an offer with direction `self`, given what we want locally
    /// (RFC 3264 §6.1): we may send only if the offerer receives, and receive only if it sends.
    pub fn answer(self, local: Self) -> Self {
        let offer_for_us = self.reversed();
        Self::from_flags(
            offer_for_us.sends() && local.sends(),
            offer_for_us.receives() && local.receives(),
        )
    }
}

/// A parsed `a=rtpmap` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written (`PCMU`, `opus`, `telephone-event`).
    pub encoding_name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels (audio), 1 when not written.
    pub channels: u8,
}

impl RtpMap {
    /// Parses `"<pt> <name>/<rate>[/<channels>]"`; tolerates `"<name>/<rate> <channels>"`
    /// (the broken form some libraries write).
    pub fn parse(value: &str) -> Option<Self> {
        RtpMapRef::parse(value).map(Self::from)
    }
}

/// An `rtpmap` value parsed in place: [`RtpMap`] without the owned name, for reading and
/// re-writing without an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct RtpMapRef<'a> {
    payload_type: u8,
    encoding_name: &'a str,
    clock_rate: u32,
    channels: u8,
}

impl<'a> RtpMapRef<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let (pt, rest) = split_at_byte(trim(value), b' ')?;
        let payload_type = pt.parse().ok()?;
        let rest = trim(rest);
        let (encoding, broken_channels) = match split_at_byte(rest, b' ') {
            Some((e, c)) => (e, Some(trim(c))),
            None => (rest, None),
        };
        let (encoding_name, rate) = split_at_byte(encoding, b'/')?;
        if encoding_name.is_empty() {
            return None;
        }
        // `<rate>[/<channels>[/anything]]`: what follows a second `/` is not read.
        let (clock_rate, channels) = match split_at_byte(rate, b'/') {
            Some((rate, channels)) => {
                let channels = match split_at_byte(channels, b'/') {
                    Some((channels, _)) => channels,
                    None => channels,
                };
                (rate, Some(channels))
            }
            None => (rate, broken_channels),
        };
        let clock_rate = clock_rate.parse().ok()?;
        let channels = match channels {
            Some(c) => c.parse().ok()?,
            None => 1,
        };
        Some(Self {
            payload_type,
            encoding_name,
            clock_rate,
            channels,
        })
    }
}

/// Splits at the first `byte` (ASCII, so both sides are character boundaries).
fn split_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == byte)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

impl From<RtpMapRef<'_>> for RtpMap {
    fn from(map: RtpMapRef<'_>) -> Self {
        Self {
            payload_type: map.payload_type,
            encoding_name: map.encoding_name.to_owned(),
            clock_rate: map.clock_rate,
            channels: map.channels,
        }
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding_name, self.clock_rate
        )?;
        if self.channels > 1 {
            write!(f, "/{}", self.channels)?;
        }
        Ok(())
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaDescription {
    /// Media type: `audio`, `video`, `application`, …
    pub media: String,
    /// Transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// Number of ports (`m=audio 4000/2 …`), when written.
    pub port_count: Option<u16>,
    /// Transport protocol: `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, …
    pub protocol: String,
    /// Format list (payload type numbers for RTP), in the sender's order of preference.
    pub formats: Vec<String>,
    /// Media-level `c=`.
    pub connection: Option<Connection>,
    /// `b=` lines, kept as written (`AS:64`).
    pub bandwidths: Vec<String>,
    /// Media-level attributes in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// The attributes as the queries shared with the borrowed model read them.
    fn pairs(&self) -> impl Iterator<Item = Pair<'_>> + '_ {
        self.attributes
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref()))
    }

    /// The values of all attributes named `name`.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        values_named(self.pairs(), name)
    }

    /// Whether a property attribute is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }

    /// The formats that are RTP payload type numbers.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse().ok())
    }

    /// The `rtpmap` of a payload type, if present.
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        rtpmap_in(self.pairs(), payload_type).map(RtpMap::from)
    }

    /// The `fmtp` parameters of a payload type, if present.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        fmtp_in(self.pairs(), payload_type)
    }

    /// The `ptime` in milliseconds, if present.
    pub fn ptime(&self) -> Option<u32> {
        ptime_in(self.pairs())
    }

    /// The media-level direction attribute, if present.
    pub fn direction_attr(&self) -> Option<MediaDirection> {
        direction_attr(self.pairs())
    }

    /// Whether `a=rtcp-mux` (RFC 5761) is present.
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }

    /// The `a=mid` value (RFC 5888), if present.
    pub fn mid(&self) -> Option<&str> {
        self.attribute_values("mid").next()
    }

    /// The `a=rtcp` port (RFC 3605), if present.
    pub fn rtcp_port(&self) -> Option<u16> {
        rtcp_port_in(self.pairs())
    }
}

/// An attribute as the queries below read it, from either model: name and optional value.
type Pair<'a> = (&'a str, Option<&'a str>);

/// The values of the attributes named `name` (a property attribute has none).
fn values_named<'a>(
    attributes: impl Iterator<Item = Pair<'a>>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    attributes.filter_map(move |(n, v)| if n == name { v } else { None })
}

/// The first `rtpmap` that parses and names `payload_type`.
fn rtpmap_in<'a>(
    attributes: impl Iterator<Item = Pair<'a>>,
    payload_type: u8,
) -> Option<RtpMapRef<'a>> {
    values_named(attributes, "rtpmap")
        .filter_map(RtpMapRef::parse)
        .find(|m| m.payload_type == payload_type)
}

/// The parameters of the first `fmtp` naming `payload_type`.
fn fmtp_in<'a>(attributes: impl Iterator<Item = Pair<'a>>, payload_type: u8) -> Option<&'a str> {
    values_named(attributes, "fmtp").find_map(|v| {
        let (pt, params) = v.split_once(' ')?;
        (trim(pt).parse::<u8>().ok()? == payload_type).then_some(trim(params))
    })
}

/// The first `ptime` that is a number, if it is a sane one, in whole milliseconds.
fn ptime_in<'a>(attributes: impl Iterator<Item = Pair<'a>>) -> Option<u32> {
    values_named(attributes, "ptime")
        .find_map(|v| trim(v).parse::<f32>().ok())
        .filter(|p| p.is_finite() && *p > 0.0 && *p < 10_000.0)
        .map(|p| p as u32)
}

/// The first direction attribute.
fn direction_attr<'a>(mut attributes: impl Iterator<Item = Pair<'a>>) -> Option<MediaDirection> {
    attributes.find_map(|(name, _)| MediaDirection::from_attr(name))
}

/// The port of the first `rtcp` attribute that starts with one.
fn rtcp_port_in<'a>(attributes: impl Iterator<Item = Pair<'a>>) -> Option<u16> {
    values_named(attributes, "rtcp").find_map(|v| Words::new(v).next()?.parse().ok())
}

/// A whole SDP body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionDescription {
    /// `o=`.
    pub origin: Origin,
    /// `s=` (a single space or `-` when the sender had nothing to say).
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines, as written.
    pub bandwidths: Vec<String>,
    /// `t=` start and stop (0 0 for an unbounded session).
    pub timing: (u64, u64),
    /// Session-level attributes.
    pub attributes: Vec<Attribute>,
    /// The media sections in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// The effective connection of a media section: its own `c=` or the session's.
    pub fn connection_for<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// The effective direction of a media section: media-level, then session-level, then
    /// sendrecv (RFC 3264 §5.1).
    pub fn direction_for(&self, media: &MediaDescription) -> MediaDirection {
        media
            .direction_attr()
            .or_else(|| {
                direction_attr(
                    self.attributes
                        .iter()
                        .map(|a| (a.name.as_str(), a.value.as_deref())),
                )
            })
            .unwrap_or_default()
    }

    /// Parses a body (same as `str::parse`); accepts bytes that are not UTF-8 only where the
    /// grammar allows free text, which we then replace lossily.
    pub fn parse_bytes(body: &[u8]) -> Result<Self> {
        body_text(body).parse()
    }
}

fn malformed(line: usize, reason: &'static str) -> Error {
    Error::MalformedSdp { line, reason }
}

fn parse_addr_type(s: &str, line: usize) -> Result<AddrType> {
    match s {
        "IP4" => Ok(AddrType::Ip4),
        "IP6" => Ok(AddrType::Ip6),
        _ => Err(malformed(line, "unknown address type")),
    }
}

/// A list that keeps up to `N` items in place and moves them all to the heap beyond that, so
/// the usual offer is parsed without an allocation and every list is still one slice.
#[derive(Debug, Clone)]
pub(crate) struct Few<T, const N: usize> {
    inline: [T; N],
    len: usize,
    /// Every item once there are more than `N`, else empty.
    heap: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Few<T, N> {
    pub(crate) fn new() -> Self {
        Self {
            inline: [T::default(); N],
            len: 0,
            heap: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.heap.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = item;
                self.len += 1;
                return;
            }
            self.heap.reserve(2 * N + 1);
            self.heap.extend_from_slice(&self.inline);
        }
        self.heap.push(item);
        self.len = self.heap.len();
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        if self.heap.is_empty() {
            self.inline.get(..self.len).unwrap_or_default()
        } else {
            &self.heap
        }
    }

    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        if self.heap.is_empty() {
            self.inline.get_mut(..self.len)?.last_mut()
        } else {
            self.heap.last_mut()
        }
    }
}

/// The pieces between `\n`s, as `str::split('\n')` gives them (a scan eight bytes at a time:
/// shorter than a line's worth of searcher set-up).
fn lines(body: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        match find_byte(text.as_bytes(), b'\n') {
            Some(at) => {
                // `\n` is one byte, so both sides of it are character boundaries.
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The index of the first `byte` in `bytes`: a word at a time (a word holds the byte when
/// `(w ^ b…b) - 0x01…01 & !(w ^ b…b) & 0x80…80` is not zero; the lowest set bit marks the
/// first one), then byte by byte for the tail.
fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let pattern = LOW * u64::from(byte);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        let found = x.wrapping_sub(LOW) & !x & HIGH;
        if found != 0 {
            // Borrows only run upwards, so the lowest flagged byte is a true match.
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|i| at + i)
}

/// Splits an attribute's value at its first `:` into trimmed name and value (RFC 8866 §5.13:
/// `a=<name>` or `a=<name>:<value>`).
fn split_attribute(value: &str) -> (&str, Option<&str>) {
    let colon = value.bytes().position(|b| b == b':');
    // `:` is one byte, so both sides of it are character boundaries.
    match colon.and_then(|at| Some((value.get(..at)?, value.get(at + 1..)?))) {
        Some((name, v)) => (trim(name), Some(trim(v))),
        None => (trim(value), None),
    }
}

/// An owned attribute from an `a=` line's value.
#[cfg(test)]
fn parse_attribute(value: &str) -> Attribute {
    let (name, value) = split_attribute(value);
    Attribute {
        name: name.to_owned(),
        value: value.map(str::to_owned),
    }
}

impl FromStr for SessionDescription {
    type Err = Error;

    /// Parses with [`SessionDescriptionRef::parse`] and copies the pieces out.
    fn from_str(body: &str) -> Result<Self> {
        SessionDescriptionRef::parse(body).map(|sdp| sdp.to_description())
    }
}

/// Appends `text` with anything that could break a line (CR, LF, other controls) replaced by
/// a space.
fn push_clean(out: &mut String, text: &str) {
    if !has_control(text.as_bytes()) {
        out.push_str(text);
        return;
    }
    out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
}

/// Appends a token field (no spaces allowed): controls and spaces become `-`, empty becomes
/// `-`.
fn push_token(out: &mut String, text: &str) {
    if text.is_empty() {
        out.push('-');
    } else if !has_control(text.as_bytes()) && !text.as_bytes().contains(&b' ') {
        out.push_str(text);
    } else {
        out.extend(
            text.chars()
                .map(|c| if c.is_control() || c == ' ' { '-' } else { c }),
        );
    }
}

/// Whether UTF-8 text may hold a control character (`char::is_control`: U+0000–U+001F and
/// U+007F–U+009F; the C1 range is encoded as `C2 80`–`C2 9F`). A `C2` byte sends the text to
/// the exact, char-by-char path.
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == 0xc2)
}

/// `000` to `999`, three digits each: a number is written in groups of three from it.
const THOUSAND: &str = {
    const BYTES: [u8; 3000] = {
        let mut bytes = [0u8; 3000];
        let mut n = 0;
        while n < 1000 {
            bytes[3 * n] = b'0' + (n / 100) as u8;
            bytes[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
            bytes[3 * n + 2] = b'0' + (n % 10) as u8;
            n += 1;
        }
        bytes
    };
    match std::str::from_utf8(&BYTES) {
        Ok(text) => text,
        // Only ASCII digits are written above.
        Err(_) => "",
    }
};

/// Appends a number in decimal without the formatting machinery.
pub(crate) fn push_number(out: &mut String, value: u64) {
    if value >= 1000 {
        push_number(out, value / 1000);
        push_group(out, (value % 1000) as usize, 0);
    } else {
        let skip = match value {
            0..10 => 2,
            10..100 => 1,
            _ => 0,
        };
        push_group(out, value as usize, skip);
    }
}

/// Appends the three digits of `group` (below 1000) but the first `skip`.
fn push_group(out: &mut String, group: usize, skip: usize) {
    // Byte by byte: for three bytes, cheaper than a copy call.
    let digits = THOUSAND.as_bytes().get(3 * group + skip..3 * group + 3);
    for &digit in digits.unwrap_or_default() {
        out.push(char::from(digit));
    }
}

/// A number's decimal digits, on the stack.
pub(crate) struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    pub(crate) fn of(value: u64) -> Self {
        // u64::MAX has 20 digits, so `start` never goes below 0.
        let mut bytes = [b'0'; 20];
        let mut start = bytes.len();
        let mut rest = value;
        loop {
            start -= 1;
            // `rest % 10` is below 10, so the digit is ASCII.
            bytes[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        Self { bytes, start }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits are written, from `start` on.
        self.bytes
            .get(self.start..)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .unwrap_or_default()
    }
}

/// Whether an ASCII byte is whitespace as `char::is_whitespace` sees it (TAB, LF, VT, FF, CR,
/// space; `u8::is_ascii_whitespace` leaves VT out).
fn is_ascii_space(byte: u8) -> bool {
    matches!(byte, b'\t'..=b'\r' | b' ')
}

/// `str::trim`, without its two character searches when the ends are plain ASCII (as in
/// nearly every SDP value).
fn trim(text: &str) -> &str {
    match (text.as_bytes().first(), text.as_bytes().last()) {
        (Some(&first), Some(&last))
            if first < 0x80 && last < 0x80 && !is_ascii_space(first) && !is_ascii_space(last) =>
        {
            text
        }
        (None, _) | (_, None) => text,
        _ => text.trim(),
    }
}

/// `str::trim_end`, as [`trim`].
fn trim_end(text: &str) -> &str {
    match text.as_bytes().last() {
        Some(&last) if last < 0x80 && !is_ascii_space(last) => text,
        None => text,
        _ => text.trim_end(),
    }
}

/// The whitespace-separated words of a text, as `str::split_whitespace` gives them, and the
/// text after the words taken so far ([`Words::rest`]). An ASCII text (nearly every SDP line)
/// is cut byte by byte; any other as `char::is_whitespace` says.
#[derive(Debug, Clone)]
pub(crate) struct Words<'a> {
    rest: &'a str,
    ascii: bool,
}

impl<'a> Words<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            rest: text,
            ascii: text.is_ascii(),
        }
    }

    /// What follows the last word taken.
    pub(crate) fn rest(&self) -> &'a str {
        self.rest
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.rest;
        let (start, end) = if self.ascii {
            let bytes = text.as_bytes();
            let mut start = 0;
            while start < bytes.len() && is_ascii_space(bytes[start]) {
                start += 1;
            }
            let mut end = start;
            while end < bytes.len() && !is_ascii_space(bytes[end]) {
                end += 1;
            }
            (start, end)
        } else {
            let start = text.len() - text.trim_start().len();
            let word = text.get(start..).unwrap_or_default();
            let len = word.find(char::is_whitespace);
            (start, len.map_or(text.len(), |len| start + len))
        };
        // Both ends are character boundaries: ASCII text, or where whitespace starts or ends.
        let (head, rest) = text.split_at_checked(end)?;
        self.rest = rest;
        head.get(start..).filter(|word| !word.is_empty())
    }
}

/// Appends `<pt> <name>/<rate>[/<channels>]`, the one form of `rtpmap` we write.
fn push_rtpmap(out: &mut String, payload_type: u8, name: &str, rate: u32, channels: u8) {
    push_number(out, payload_type.into());
    out.push(' ');
    push_token(out, name);
    out.push('/');
    push_number(out, rate.into());
    if channels > 1 {
        out.push('/');
        push_number(out, channels.into());
    }
}

fn push_attribute(out: &mut String, a: &Attribute) {
    // rtpmap is re-serialised from its parsed form so it is always valid on the wire.
    if a.name == "rtpmap"
        && let Some(map) = a.value.as_deref().and_then(RtpMapRef::parse)
    {
        out.push_str("a=rtpmap:");
        push_rtpmap(
            out,
            map.payload_type,
            map.encoding_name,
            map.clock_rate,
            map.channels,
        );
        out.push_str("\r\n");
        return;
    }
    out.push_str("a=");
    push_token(out, &a.name);
    if let Some(v) = &a.value {
        out.push(':');
        push_clean(out, v);
    }
    out.push_str("\r\n");
}

fn push_connection(out: &mut String, c: &Connection) {
    out.push_str("c=IN ");
    out.push_str(c.addr_type.as_str());
    out.push(' ');
    push_token(out, &c.address);
    out.push_str("\r\n");
}

impl SessionDescription {
    /// The body as we send it: CRLF line ends, every field cleaned so no value can break a line
    /// (what `Display` writes, built straight into one `String`).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_into(&mut out);
        out
    }

    fn write_into(&self, out: &mut String) {
        let o = &self.origin;
        out.push_str("v=0\r\no=");
        push_token(out, &o.username);
        out.push(' ');
        push_token(out, &o.session_id);
        out.push(' ');
        push_number(out, o.session_version);
        out.push_str(" IN ");
        out.push_str(o.addr_type.as_str());
        out.push(' ');
        push_token(out, &o.address);
        out.push_str("\r\ns=");
        let name = if self.session_name.trim().is_empty() {
            "-"
        } else {
            &self.session_name
        };
        push_clean(out, name);
        out.push_str("\r\n");
        if let Some(c) = &self.connection {
            push_connection(out, c);
        }
        for b in &self.bandwidths {
            out.push_str("b=");
            push_token(out, b);
            out.push_str("\r\n");
        }
        out.push_str("t=");
        push_number(out, self.timing.0);
        out.push(' ');
        push_number(out, self.timing.1);
        out.push_str("\r\n");
        for a in &self.attributes {
            push_attribute(out, a);
        }
        for m in &self.media {
            out.push_str("m=");
            push_token(out, &m.media);
            out.push(' ');
            push_number(out, m.port.into());
            if let Some(n) = m.port_count {
                out.push('/');
                push_number(out, n.into());
            }
            out.push(' ');
            push_token(out, &m.protocol);
            if m.formats.is_empty() {
                // A format list is mandatory; 0 is the conventional filler for a rejected line.
                out.push_str(" 0");
            }
            for format in &m.formats {
                out.push(' ');
                push_token(out, format);
            }
            out.push_str("\r\n");
            if let Some(c) = &m.connection {
                push_connection(out, c);
            }
            for b in &m.bandwidths {
                out.push_str("b=");
                push_token(out, b);
                out.push_str("\r\n");
            }
            for a in &m.attributes {
                push_attribute(out, a);
            }
        }
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;
