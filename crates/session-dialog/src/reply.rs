//! The user agent's responses, serialized straight from the request they answer.
//!
//! A response a UAS sends copies lines of its request (RFC 3261 §8.2.6: Via, From, To,
//! Call-ID, CSeq; Timestamp in a 100; Record-Route when it establishes a dialog, as
//! [`session_sip::response_copies`] says), tags the To when the request's has no tag
//! (§8.2.6.2), and adds the user agent's own lines. [`Reply`] writes those lines into one
//! buffer of the exact size, without building a [`session_sip::Response`] first (its header
//! list, its To line and its reason phrase are allocations the wire never needed).
//!
//! The bytes are the ones the `Response` built the long way would serialize to, in the same
//! order: `ua.rs`'s `reply_tests` compare both ways, and `tests/uas_wire_golden.rs` the whole
//! wire of a scripted UAS against a recording made before `Reply` existed.

use bytes::Bytes;
use session_sip::{Header, HeaderName, Request};
use session_types::StatusCode;
use std::sync::Arc;

/// One response to a received request, as the user agent sends it (see the module docs).
pub(crate) struct Reply<'a> {
    /// The request answered.
    pub(crate) request: &'a Request,
    /// The status; the reason phrase is its standard one.
    pub(crate) status: StatusCode,
    /// A tag for the request's To, which has none (§8.2.6.2); `None` copies the To as it is.
    /// Only the first To line gets it (validation lets exactly one in).
    pub(crate) tag: Option<&'a str>,
    /// Our Contact, after the copied lines.
    pub(crate) contact: Option<&'a OwnLine>,
    /// The caller's lines, after the Contact, in order; a Content-Length among them is left
    /// out (the body's own follows).
    pub(crate) headers: &'a [Header],
    /// The body and its Content-Type line.
    pub(crate) body: Option<(&'a OwnLine, &'a Bytes)>,
    /// The Content-Length line (the body's length, or 0).
    pub(crate) length: &'a OwnLine,
    /// The Server line, added last unless the caller's lines have one.
    pub(crate) server: Option<&'a OwnLine>,
}

/// A header line of our own (Contact, Server, Content-Type, Content-Length), kept with its
/// serialized form `name: value\r\n`, which a [`Reply`] writes with one copy.
#[derive(Clone, Debug)]
pub(crate) struct OwnLine {
    header: Header,
    wire: Arc<[u8]>,
}

impl OwnLine {
    pub(crate) fn new(header: Header) -> Self {
        let mut wire = Vec::with_capacity(line_len(&header));
        put_line(&mut wire, &header);
        Self {
            header,
            wire: wire.into(),
        }
    }

    /// The line as a header (for a [`session_sip::Response`] built the long way).
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }
}

/// `SIP/2.0 `.
const VERSION: &[u8] = b"SIP/2.0 ";

impl<'a> Reply<'a> {
    /// A response with the copied lines, `tag` (see [`Reply::tag`]), no body
    /// (`Content-Length: 0`, the line `zero`) and the Server line.
    pub(crate) fn plain(
        request: &'a Request,
        status: StatusCode,
        tag: Option<&'a str>,
        zero: &'a OwnLine,
        server: Option<&'a OwnLine>,
    ) -> Self {
        Self {
            request,
            status,
            tag,
            contact: None,
            headers: &[],
            body: None,
            length: zero,
            server,
        }
    }

    /// Whether request line `header` is copied into the response.
    fn copies(&self, header: &Header) -> bool {
        session_sip::response_copies(header.name(), &self.request.method, self.status)
    }

    /// Whether the Server line goes (the caller's lines have none).
    fn server(&self) -> Option<&OwnLine> {
        self.server
            .filter(|_| !self.headers.iter().any(|h| h.name() == HeaderName::Server))
    }

    /// The caller's lines that are written.
    fn callers(&self) -> impl Iterator<Item = &Header> {
        self.headers
            .iter()
            .filter(|h| h.name() != HeaderName::ContentLength)
    }

    /// Our own lines after the caller's: Content-Type, Content-Length, Server.
    fn trailer(&self) -> impl Iterator<Item = &OwnLine> {
        let content_type = self.body.map(|(content_type, _)| content_type);
        content_type
            .into_iter()
            .chain(std::iter::once(self.length))
            .chain(self.server())
    }

    /// The serialized response, in a buffer of its own.
    pub(crate) fn to_bytes(&self) -> Bytes {
        let (copied, to_at, len) = self.layout();
        let mut out = Vec::with_capacity(len);
        self.write(&copied, to_at, &mut out);
        Bytes::from(out)
    }

    /// The copied lines (read once: name as written and value, or the whole line), which of
    /// them is the To that takes the tag, and the length of the response. Inlined, so that
    /// the lines are not copied out of it on their way back (for speed).
    #[inline(always)]
    fn layout(&self) -> (Copied<'a>, usize, usize) {
        let reason = self.status.reason_phrase().as_bytes();
        let body: &[u8] = self.body.map_or(&[], |(_, bytes)| bytes);
        // The first To is rewritten with the tag as `Header::new` would write it (the
        // canonical name, `value;tag=…`).
        let mut copied = Copied::default();
        let mut tag = self.tag;
        let mut to_at = usize::MAX;
        let mut len = VERSION.len() + 4 + reason.len() + 2 + 2 + body.len();
        let request: &'a Request = self.request;
        for header in request.headers.iter() {
            if !self.copies(header) {
                continue;
            }
            let line = match tag {
                Some(t) if header.name() == HeaderName::To => {
                    tag = None;
                    to_at = copied.len;
                    len += ";tag=".len() + t.len();
                    Line::Parts(b"To", header.value_bytes())
                }
                // A parsed line written `name: value` CRLF is copied whole (one copy).
                _ => match header.whole_line() {
                    Some(whole) => Line::Whole(whole),
                    None => Line::Parts(header.name_str().as_bytes(), header.value_bytes()),
                },
            };
            len += line.len();
            copied.push(line);
        }
        len += self.contact.map_or(0, |line| line.wire.len());
        len += self.callers().map(line_len).sum::<usize>();
        len += self.trailer().map(|line| line.wire.len()).sum::<usize>();
        (copied, to_at, len)
    }

    /// Writes the response: the status line, the `copied` lines (the one at `to_at` tagged),
    /// ours, the caller's, and the body.
    fn write(&self, copied: &Copied<'_>, to_at: usize, out: &mut Vec<u8>) {
        let reason = self.status.reason_phrase().as_bytes();
        let body: &[u8] = self.body.map_or(&[], |(_, bytes)| bytes);
        // `SIP/2.0 NNN ` in one piece (for speed: one copy rather than three).
        let mut start = *b"SIP/2.0 000 ";
        let code = self.status.as_u16();
        // A StatusCode is always 100-699: three digits.
        for (slot, digit) in
            start
                .iter_mut()
                .skip(VERSION.len())
                .zip([code / 100, code / 10 % 10, code % 10])
        {
            *slot = b'0' + (digit % 10) as u8;
        }
        out.extend_from_slice(&start);
        out.extend_from_slice(reason);
        out.extend_from_slice(b"\r\n");
        for (at, line) in copied.iter().enumerate() {
            let (name, value) = match *line {
                Line::Whole(whole) => {
                    out.extend_from_slice(whole);
                    continue;
                }
                Line::Parts(name, value) => (name, value),
            };
            if name.is_empty() {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            if at == to_at
                && let Some(t) = self.tag
            {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(t.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        if let Some(contact) = self.contact {
            out.extend_from_slice(&contact.wire);
        }
        for header in self.callers() {
            put_line(out, header);
        }
        for line in self.trailer() {
            out.extend_from_slice(&line.wire);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    /// [`Reply::to_bytes`] as it was, each copied line in four parts (the oracle of
    /// `ua.rs`'s `reply_tests`).
    #[cfg(test)]
    pub(crate) fn to_bytes_reference(&self) -> Bytes {
        let reason = self.status.reason_phrase().as_bytes();
        let body: &[u8] = self.body.map_or(&[], |(_, bytes)| bytes);
        // The copied lines, read once: (name as written, value). The first To is rewritten
        // with the tag as `Header::new` would write it (the canonical name, `value;tag=…`).
        let mut copied = CopiedReference::default();
        let mut tag = self.tag;
        let mut to_at = usize::MAX;
        let mut len = VERSION.len() + 4 + reason.len() + 2 + 2 + body.len();
        for header in self.request.headers.iter() {
            if !self.copies(header) {
                continue;
            }
            let value = header.value_bytes();
            let name: &[u8] = match tag {
                Some(t) if header.name() == HeaderName::To => {
                    tag = None;
                    to_at = copied.len;
                    len += ";tag=".len() + t.len();
                    b"To"
                }
                _ => header.name_str().as_bytes(),
            };
            if !name.is_empty() {
                len += name.len() + 2 + value.len() + 2;
            }
            copied.push((name, value));
        }
        len += self.contact.map_or(0, |line| line.wire.len());
        len += self.callers().map(line_len).sum::<usize>();
        len += self.trailer().map(|line| line.wire.len()).sum::<usize>();

        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(VERSION);
        let code = self.status.as_u16();
        // A StatusCode is always 100-699: three digits.
        for digit in [code / 100, code / 10 % 10, code % 10] {
            out.push(b'0' + (digit % 10) as u8);
        }
        out.push(b' ');
        out.extend_from_slice(reason);
        out.extend_from_slice(b"\r\n");
        for (at, (name, value)) in copied.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            if at == to_at
                && let Some(t) = self.tag
            {
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(t.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        if let Some(contact) = self.contact {
            out.extend_from_slice(&contact.wire);
        }
        for header in self.callers() {
            put_line(&mut out, header);
        }
        for line in self.trailer() {
            out.extend_from_slice(&line.wire);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        Bytes::from(out)
    }
}

/// A copied line: whole as the request holds it (`name: value` CRLF, see
/// [`Header::whole_line`]), or as its name and value (written with `: ` and CRLF between and
/// after them; nothing for an empty name).
#[derive(Clone, Copy)]
enum Line<'a> {
    Whole(&'a [u8]),
    Parts(&'a [u8], &'a [u8]),
}

impl Line<'_> {
    /// The bytes the line takes in the response (without a To tag).
    fn len(&self) -> usize {
        match *self {
            Line::Whole(whole) => whole.len(),
            Line::Parts([], _) => 0,
            Line::Parts(name, value) => name.len() + 2 + value.len() + 2,
        }
    }
}

/// The lines a response copies: the first [`Copied::INLINE`] in place (a response copies five
/// or six), the rest (many Via or Record-Route lines) in a vector.
struct Copied<'a> {
    inline: [Line<'a>; Copied::INLINE],
    more: Vec<Line<'a>>,
    len: usize,
}

impl Default for Copied<'_> {
    fn default() -> Self {
        Self {
            inline: [Line::Whole(&[]); Copied::INLINE],
            more: Vec::new(),
            len: 0,
        }
    }
}

impl<'a> Copied<'a> {
    const INLINE: usize = 12;

    fn push(&mut self, line: Line<'a>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = line,
            None => self.more.push(line),
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &Line<'a>> {
        let inline = self.inline.get(..self.len).unwrap_or(&self.inline);
        inline.iter().chain(&self.more)
    }
}

/// [`Copied`] as it was (for [`Reply::to_bytes_reference`]): the lines a response copies,
/// as (name, value), the first [`CopiedReference::INLINE`] in place.
#[cfg(test)]
#[derive(Default)]
struct CopiedReference<'a> {
    inline: [(&'a [u8], &'a [u8]); CopiedReference::INLINE],
    more: Vec<(&'a [u8], &'a [u8])>,
    len: usize,
}

#[cfg(test)]
impl<'a> CopiedReference<'a> {
    const INLINE: usize = 12;

    fn push(&mut self, line: (&'a [u8], &'a [u8])) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = line,
            None => self.more.push(line),
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &(&'a [u8], &'a [u8])> {
        let inline = self.inline.get(..self.len).unwrap_or(&self.inline);
        inline.iter().chain(&self.more)
    }
}

/// The length of `name: value\r\n` (0 for a header without a name, which is not written).
fn line_len(header: &Header) -> usize {
    match header.name_str().len() {
        0 => 0,
        name => name + 2 + header.value_bytes().len() + 2,
    }
}

/// Writes `name: value\r\n` (nothing for a header without a name).
fn put_line(out: &mut Vec<u8>, header: &Header) {
    let name = header.name_str().as_bytes();
    if name.is_empty() {
        return;
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(header.value_bytes());
    out.extend_from_slice(b"\r\n");
}
