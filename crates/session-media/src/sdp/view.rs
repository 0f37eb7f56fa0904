//! A parsed SDP body that borrows its text: [`SessionDescriptionRef`].
//!
//! Answering an offer reads a handful of fields and then drops the offer, so building the
//! owned model ([`SessionDescription`], a `String` per field and attribute) is most of what
//! parsing would cost. This view keeps `&str` pieces of the body instead, in two lists (the
//! attributes and the media sections) that hold up to 16 attributes and 2 media sections in
//! place: the usual offer is parsed without an allocation. It is also the one parser:
//! `SessionDescription::from_str` is this parse followed by [`SessionDescriptionRef::to_description`],
//! so both accept and reject the same bodies with the same errors.
//!
//! A view can also be taken of an owned description ([`SessionDescriptionRef::of`]), so the
//! offer/answer code reads one model whichever the caller holds.

use std::borrow::Cow;

use super::{
    AddrType, Attribute, Connection, Few, MAX_SDP_LEN, MediaDescription, MediaDirection, Origin,
    SessionDescription, Words, lines, malformed, parse_addr_type, split_attribute, trim, trim_end,
};
use crate::error::Result;

/// The text of a body: borrowed when it is UTF-8 (the usual case, checked at word speed),
/// else with each invalid sequence replaced by U+FFFD, exactly as `String::from_utf8_lossy`.
pub fn body_text(body: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    }
}

/// An `a=` line as name and optional value, both trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AttributeRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: Option<&'a str>,
}

impl<'a> AttributeRef<'a> {
    /// The pair the attribute queries of `sdp` read.
    pub(crate) fn pair(&self) -> (&'a str, Option<&'a str>) {
        (self.name, self.value)
    }
}

/// A `c=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionRef<'a> {
    pub(crate) addr_type: AddrType,
    pub(crate) address: &'a str,
}

impl ConnectionRef<'_> {
    /// True for the RFC 2543 hold address, as [`Connection::is_unspecified`].
    pub(crate) fn is_unspecified(&self) -> bool {
        let host = self.address.split('/').next().unwrap_or_default();
        // `0.0.0.0` and `::` are written with nothing but `0`, `.` and `:`, whatever the form.
        if host.bytes().any(|b| !matches!(b, b'0' | b'.' | b':')) {
            return false;
        }
        host.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    }

    fn to_owned(self) -> Connection {
        Connection {
            addr_type: self.addr_type,
            address: self.address.to_owned(),
        }
    }
}

/// The format list of an `m=` line: the rest of a parsed line (split at whitespace), or an
/// owned description's list as it is.
#[derive(Debug, Clone, Copy)]
enum Formats<'a> {
    Text(&'a str),
    List(&'a [String]),
}

impl Default for Formats<'_> {
    fn default() -> Self {
        Self::Text("")
    }
}

/// The formats one at a time.
pub(crate) enum FormatIter<'a> {
    Text(Words<'a>),
    List(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for FormatIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Self::Text(it) => it.next(),
            Self::List(it) => it.next().map(String::as_str),
        }
    }
}

/// One `m=` section; its attributes and `b=` lines are ranges of the description's lists.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MediaDescriptionRef<'a> {
    pub(crate) media: &'a str,
    pub(crate) port: u16,
    port_count: Option<u16>,
    pub(crate) protocol: &'a str,
    formats: Formats<'a>,
    pub(crate) connection: Option<ConnectionRef<'a>>,
    /// Start and end in the description's `bandwidths`.
    bandwidths: (usize, usize),
    /// Start and end in the description's `attributes`.
    attributes: (usize, usize),
}

impl<'a> MediaDescriptionRef<'a> {
    /// The format list, in the sender's order.
    pub(crate) fn formats(&self) -> FormatIter<'a> {
        match self.formats {
            Formats::Text(text) => FormatIter::Text(Words::new(text)),
            Formats::List(list) => FormatIter::List(list.iter()),
        }
    }

    /// The formats that are RTP payload type numbers (as [`MediaDescription::payload_types`]).
    pub(crate) fn payload_types(&self) -> impl Iterator<Item = u8> + 'a {
        self.formats().filter_map(|f| f.parse().ok())
    }
}

/// A whole SDP body, borrowed: what [`SessionDescription`] holds, as pieces of the text.
///
/// ```
/// use session_media::sdp::SessionDescriptionRef;
///
/// let body = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
///             m=audio 4000 RTP/AVP 0\r\n";
/// let sdp = SessionDescriptionRef::parse(body).unwrap();
/// assert_eq!(sdp.to_description(), body.parse().unwrap());
/// ```
#[derive(Debug, Clone)]
pub struct SessionDescriptionRef<'a> {
    username: &'a str,
    session_id: &'a str,
    session_version: u64,
    addr_type: AddrType,
    address: &'a str,
    session_name: &'a str,
    connection: Option<ConnectionRef<'a>>,
    timing: (u64, u64),
    /// Every `b=` value: the session's first, then each media section's.
    bandwidths: Vec<&'a str>,
    /// How many of `bandwidths` are the session's.
    session_bandwidths: usize,
    /// Every attribute: the session's first, then each media section's.
    attributes: Few<AttributeRef<'a>, 16>,
    /// How many of `attributes` are the session's.
    session_attributes: usize,
    media: Few<MediaDescriptionRef<'a>, 2>,
}

impl<'a> SessionDescriptionRef<'a> {
    /// Parses a body (RFC 8866, leniently: see the module `sdp`). Use [`body_text`] for bytes.
    pub fn parse(body: &'a str) -> Result<Self> {
        if body.len() > MAX_SDP_LEN {
            return Err(malformed(0, "body too large"));
        }
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut timing = None;
        let mut bandwidths = Vec::new();
        let mut attributes = Few::new();
        let mut media: Few<MediaDescriptionRef<'a>, 2> = Few::new();
        let mut saw_version = false;

        for (index, raw) in lines(body).enumerate() {
            let number = index + 1;
            let line = trim_end(raw.strip_suffix('\r').unwrap_or(raw));
            if line.is_empty() {
                continue;
            }
            let (kind, value) = match line.split_at_checked(2) {
                Some((k, v)) if k.len() == 2 && k.as_bytes().get(1) == Some(&b'=') => (k, v),
                _ => return Err(malformed(number, "line is not `<type>=<value>`")),
            };
            if !saw_version {
                if kind != "v=" || trim(value) != "0" {
                    return Err(malformed(number, "the first line must be v=0"));
                }
                saw_version = true;
                continue;
            }
            match (kind, media.last_mut()) {
                ("m=", _) => {
                    let mut words = Words::new(value);
                    let (Some(kind), Some(port), Some(proto)) =
                        (words.next(), words.next(), words.next())
                    else {
                        return Err(malformed(number, "m= needs media, port, proto and formats"));
                    };
                    let (port, port_count) = match port.split_once('/') {
                        Some((p, n)) => (p, Some(n)),
                        None => (port, None),
                    };
                    let port = port.parse().map_err(|_| malformed(number, "bad m= port"))?;
                    let port_count = port_count
                        .map(|n| {
                            n.parse()
                                .map_err(|_| malformed(number, "bad m= port count"))
                        })
                        .transpose()?;
                    let formats = words.rest();
                    if Words::new(formats).next().is_none() {
                        return Err(malformed(number, "m= without formats"));
                    }
                    media.push(MediaDescriptionRef {
                        media: kind,
                        port,
                        port_count,
                        protocol: proto,
                        formats: Formats::Text(formats),
                        connection: None,
                        bandwidths: (bandwidths.len(), bandwidths.len()),
                        attributes: (attributes.len(), attributes.len()),
                    });
                }
                ("o=", None) => {
                    let mut it = Words::new(value);
                    let (Some(user), Some(id), Some(version), Some("IN"), Some(at), Some(addr)) = (
                        it.next(),
                        it.next(),
                        it.next(),
                        it.next(),
                        it.next(),
                        it.next(),
                    ) else {
                        return Err(malformed(number, "o= needs six fields"));
                    };
                    let version = version
                        .parse()
                        .map_err(|_| malformed(number, "bad o= session version"))?;
                    origin = Some((user, id, version, parse_addr_type(at, number)?, addr));
                }
                ("s=", None) => session_name = Some(value),
                ("c=", None) => connection = Some(parse_connection(value, number)?),
                ("c=", Some(m)) => m.connection = Some(parse_connection(value, number)?),
                ("b=", None) => bandwidths.push(value),
                ("b=", Some(m)) => {
                    bandwidths.push(value);
                    m.bandwidths.1 = bandwidths.len();
                }
                ("t=", None) => {
                    let mut it = Words::new(value).map(str::parse::<u64>);
                    let (Some(Ok(start)), Some(Ok(stop))) = (it.next(), it.next()) else {
                        return Err(malformed(number, "t= needs two numbers"));
                    };
                    // Only the first t= matters to us; repeated ones are legal.
                    timing.get_or_insert((start, stop));
                }
                ("a=", None) => attributes.push(parse_attribute(value)),
                ("a=", Some(m)) => {
                    attributes.push(parse_attribute(value));
                    m.attributes.1 = attributes.len();
                }
                // i=, u=, e=, p=, r=, z=, k= and unknown types: ignored (RFC 8866 §5 tells
                // parsers to ignore unknown types).
                _ => {}
            }
        }
        if !saw_version {
            return Err(malformed(0, "empty body"));
        }
        let (username, session_id, session_version, addr_type, address) =
            origin.ok_or(malformed(0, "missing o="))?;
        let first = media.as_slice().first();
        let session_bandwidths = first.map_or(bandwidths.len(), |m| m.bandwidths.0);
        let session_attributes = first.map_or(attributes.len(), |m| m.attributes.0);
        Ok(Self {
            username,
            session_id,
            session_version,
            addr_type,
            address,
            // Some peers omit s= or t=; they are mandatory, but harmless to default.
            session_name: session_name.unwrap_or("-"),
            connection,
            timing: timing.unwrap_or((0, 0)),
            bandwidths,
            session_bandwidths,
            attributes,
            session_attributes,
            media,
        })
    }

    /// A view of an owned description (for code that reads both models).
    pub fn of(sdp: &'a SessionDescription) -> Self {
        let connection = |c: &'a Connection| ConnectionRef {
            addr_type: c.addr_type,
            address: &c.address,
        };
        let attribute = |a: &'a Attribute| AttributeRef {
            name: &a.name,
            value: a.value.as_deref(),
        };
        let mut bandwidths: Vec<&'a str> = sdp.bandwidths.iter().map(String::as_str).collect();
        let mut attributes = Few::new();
        for a in &sdp.attributes {
            attributes.push(attribute(a));
        }
        let mut media = Few::new();
        for m in &sdp.media {
            let b = bandwidths.len();
            bandwidths.extend(m.bandwidths.iter().map(String::as_str));
            let a = attributes.len();
            for attr in &m.attributes {
                attributes.push(attribute(attr));
            }
            media.push(MediaDescriptionRef {
                media: &m.media,
                port: m.port,
                port_count: m.port_count,
                protocol: &m.protocol,
                formats: Formats::List(&m.formats),
                connection: m.connection.as_ref().map(connection),
                bandwidths: (b, bandwidths.len()),
                attributes: (a, attributes.len()),
            });
        }
        let o = &sdp.origin;
        Self {
            username: &o.username,
            session_id: &o.session_id,
            session_version: o.session_version,
            addr_type: o.addr_type,
            address: &o.address,
            session_name: &sdp.session_name,
            connection: sdp.connection.as_ref().map(connection),
            timing: sdp.timing,
            session_bandwidths: sdp.bandwidths.len(),
            bandwidths,
            session_attributes: sdp.attributes.len(),
            attributes,
            media,
        }
    }

    /// The owned description (what `str::parse` gives).
    pub fn to_description(&self) -> SessionDescription {
        let attributes = |(start, end): (usize, usize)| -> Vec<Attribute> {
            self.attributes
                .as_slice()
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .map(|a| Attribute {
                    name: a.name.to_owned(),
                    value: a.value.map(str::to_owned),
                })
                .collect()
        };
        let bandwidths = |(start, end): (usize, usize)| -> Vec<String> {
            self.bandwidths
                .get(start..end)
                .unwrap_or_default()
                .iter()
                .map(|b| (*b).to_owned())
                .collect()
        };
        SessionDescription {
            origin: Origin {
                username: self.username.to_owned(),
                session_id: self.session_id.to_owned(),
                session_version: self.session_version,
                addr_type: self.addr_type,
                address: self.address.to_owned(),
            },
            session_name: self.session_name.to_owned(),
            connection: self.connection.map(ConnectionRef::to_owned),
            bandwidths: bandwidths((0, self.session_bandwidths)),
            timing: self.timing,
            attributes: attributes((0, self.session_attributes)),
            media: self
                .media
                .as_slice()
                .iter()
                .map(|m| MediaDescription {
                    media: m.media.to_owned(),
                    port: m.port,
                    port_count: m.port_count,
                    protocol: m.protocol.to_owned(),
                    formats: m.formats().map(str::to_owned).collect(),
                    connection: m.connection.map(ConnectionRef::to_owned),
                    bandwidths: bandwidths(m.bandwidths),
                    attributes: attributes(m.attributes),
                })
                .collect(),
        }
    }

    /// The media sections in order.
    pub(crate) fn media(&self) -> &[MediaDescriptionRef<'a>] {
        self.media.as_slice()
    }

    /// Number of media sections.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// The attributes of a media section of this description.
    pub(crate) fn attributes_of(&self, m: &MediaDescriptionRef<'a>) -> &[AttributeRef<'a>] {
        let (start, end) = m.attributes;
        self.attributes
            .as_slice()
            .get(start..end)
            .unwrap_or_default()
    }

    /// The session-level attributes.
    fn session_attributes(&self) -> &[AttributeRef<'a>] {
        self.attributes
            .as_slice()
            .get(..self.session_attributes)
            .unwrap_or_default()
    }

    /// The effective connection of a media section: its own `c=` or the session's.
    pub(crate) fn connection_for(&self, m: &MediaDescriptionRef<'a>) -> Option<ConnectionRef<'a>> {
        m.connection.or(self.connection)
    }

    /// The effective direction of a media section, as [`SessionDescription::direction_for`].
    pub(crate) fn direction_for(&self, m: &MediaDescriptionRef<'a>) -> MediaDirection {
        super::direction_attr(self.attributes_of(m).iter().map(AttributeRef::pair))
            .or_else(|| {
                super::direction_attr(self.session_attributes().iter().map(AttributeRef::pair))
            })
            .unwrap_or_default()
    }
}

fn parse_connection(value: &str, line: usize) -> Result<ConnectionRef<'_>> {
    let mut it = Words::new(value);
    let (Some("IN"), Some(at), Some(address), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed(line, "c= must be `IN <addrtype> <address>`"));
    };
    Ok(ConnectionRef {
        addr_type: parse_addr_type(at, line)?,
        address,
    })
}

fn parse_attribute(value: &str) -> AttributeRef<'_> {
    let (name, value) = split_attribute(value);
    AttributeRef { name, value }
}
