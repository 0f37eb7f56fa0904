//! The parser: datagram framing (RFC 3261 §18.3), the start line, header lines with folding,
//! limits, and the cheap typed check of the headers every message needs (Via, From, To,
//! Call-ID, CSeq, Content-Length).
//!
//! The header section is checked as UTF-8 once and copied once; the headers share that copy
//! (one reference count each) and keep the offsets of their names and values, so a value is
//! read without checking it again. A folded value gets a text of its own (unfolded), and so
//! does a value outside the checked text. The body is a slice of the received buffer
//! ([`bytes::Bytes`]).

use std::sync::Arc;

use bytes::Bytes;
use session_types::StatusCode;

use crate::error::{Error, Result};
use crate::header::{Header, HeaderName, Headers};
use crate::headers::{CSeq, Hot, NameAddr, Via, check_call_id};
use crate::message::{Message, Request, Response, Version};
use crate::method::Method;
use crate::text::{find_byte, is_token_byte, is_ws, parse_u64, skip_class, split_top_level};
use crate::uri::Uri;

/// Hard limits applied while parsing. The defaults suit UDP and TCP signalling.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseLimits {
    /// Largest message (start line + headers + body), in bytes. Default 65,535.
    pub max_message_size: usize,
    /// Most header lines (after unfolding). Default 256.
    pub max_headers: usize,
    /// Longest physical line, in bytes. Default 8,192.
    pub max_line_length: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_message_size: 65_535,
            max_headers: 256,
            max_line_length: 8_192,
        }
    }
}

impl ParseLimits {
    /// Sets [`ParseLimits::max_message_size`].
    pub fn max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }

    /// Sets [`ParseLimits::max_headers`].
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// Sets [`ParseLimits::max_line_length`].
    pub fn max_line_length(mut self, n: usize) -> Self {
        self.max_line_length = n;
        self
    }
}

/// Parses one message received as a datagram (UDP).
///
/// The body is exactly Content-Length bytes and anything after it is ignored; without
/// Content-Length the body is the rest of the datagram (RFC 3261 §18.3). CRLFs before the
/// start line are skipped (§7.5). Never panics, whatever the input.
pub fn parse_datagram(buf: &Bytes, limits: &ParseLimits) -> Result<Message> {
    if buf.len() > limits.max_message_size {
        return Err(Error::TooLarge {
            limit: limits.max_message_size,
        });
    }
    let head = parse_head(buf, limits, false)?;
    let available = buf.len() - head.body_start;
    let body = match head.content_length {
        Some(n) if n > available => {
            return Err(Error::BodyTruncated {
                declared: n,
                available,
            });
        }
        Some(n) => buf.slice(head.body_start..head.body_start + n),
        None => buf.slice(head.body_start..),
    };
    build(buf, head, body)
}

/// Parses a message framed by a stream transport: `buf` holds exactly one message whose body
/// is Content-Length bytes.
pub(crate) fn parse_framed(buf: &Bytes, limits: &ParseLimits) -> Result<Message> {
    let head = parse_head(buf, limits, false)?;
    let body = buf.slice(head.body_start..);
    if head.content_length != Some(body.len()) {
        return Err(Error::ContentLength("does not match the framed body"));
    }
    build(buf, head, body)
}

pub(crate) struct Head<'a> {
    start: (usize, usize),
    /// The start line, when it lies in the text checked as UTF-8.
    start_text: Option<&'a str>,
    /// The text the headers share (from the start of the buffer), when there is one.
    shared: Option<Arc<str>>,
    headers: Headers,
    body_start: usize,
    content_length: Option<usize>,
}

/// The first CR or LF.
#[inline]
fn find_cr_or_lf(b: &[u8]) -> Option<usize> {
    crate::text::find_byte2(b'\r', b'\n', b)
}

/// Finds the end of the line starting at `pos`: (end of content, start of next line).
#[inline]
fn line_end(b: &[u8], pos: usize, limits: &ParseLimits) -> Result<(usize, usize)> {
    line_end_from(b, pos, pos, limits)
}

/// [`line_end`] when the line has no CR or LF before `from`: the search starts there.
#[inline]
fn line_end_from(
    b: &[u8],
    pos: usize,
    from: usize,
    limits: &ParseLimits,
) -> Result<(usize, usize)> {
    let found = b
        .get(from..)
        .and_then(find_cr_or_lf)
        .map(|k| from - pos + k);
    match found {
        Some(i) if i > limits.max_line_length => Err(Error::LineTooLong {
            limit: limits.max_line_length,
        }),
        Some(i) => match (b.get(pos + i), b.get(pos + i + 1)) {
            (Some(b'\r'), Some(b'\n')) => Ok((pos + i, pos + i + 2)),
            (Some(b'\r'), None) => Err(Error::Incomplete),
            _ => Err(Error::NotText),
        },
        None if b.len().saturating_sub(pos) > limits.max_line_length => Err(Error::LineTooLong {
            limit: limits.max_line_length,
        }),
        None => Err(Error::Incomplete),
    }
}

/// The usual header line at `pos`, `token SWS ":" SWS value`, split before its end is known:
/// the name, where it ends and where the value starts. CR and LF are neither token
/// characters nor whitespace, so this stays within the line, and gives what
/// [`split_line`] gives once the end is known; `None` where [`split_line`] fails.
#[inline]
fn split_name(b: &[u8], pos: usize) -> Option<(HeaderName, usize, usize)> {
    // A common name is matched whole, when the token ends after it; any other is scanned.
    let (kind, name_end) = match HeaderName::known_at(b, pos) {
        Some((kind, len)) if !b.get(pos + len).copied().is_some_and(is_token_byte) => {
            (Some(kind), pos + len)
        }
        _ => (None, skip_class(b, pos, is_token_byte)),
    };
    let colon = crate::text::skip_ws(b, name_end);
    if name_end == pos || b.get(colon) != Some(&b':') {
        return None;
    }
    Some((
        kind.unwrap_or_else(|| HeaderName::from_token(b.get(pos..name_end).unwrap_or_default())),
        name_end,
        crate::text::skip_ws(b, colon + 1),
    ))
}

/// Splits the header line `b[pos..end]` into its name and the start of its value.
#[inline]
fn split_line(b: &[u8], pos: usize, end: usize) -> Result<Pending> {
    let line = b.get(pos..end).unwrap_or_default();
    // The usual line, `token SWS ":"`, in one pass; anything else is told apart below.
    let name_end = skip_class(line, 0, is_token_byte);
    let colon = crate::text::skip_ws(line, name_end);
    if line.get(colon) != Some(&b':') || name_end == 0 {
        return Err(if line.contains(&b':') {
            // NUL, bytes over 0x7F (UTF-8 or not) and separators have no place in a field name.
            Error::header("(unknown)", "name is not a token")
        } else {
            Error::header("(unknown)", "line without a colon")
        });
    }
    let name = line.get(..name_end).unwrap_or_default();
    let vstart = crate::text::skip_ws(line, colon + 1);
    Ok(Pending {
        kind: HeaderName::from_token(name),
        name: (pos, pos + name_end),
        value: (pos + vstart, end),
        folded: false,
    })
}

/// A header line being collected (it may continue on folded lines).
#[derive(Clone, Copy)]
struct Pending {
    kind: HeaderName,
    name: (usize, usize),
    value: (usize, usize),
    folded: bool,
}

/// The text of the datagram checked as UTF-8 once, rather than value by value: a datagram of
/// common size whole (the body too: cheaper than finding the end of the headers first), a
/// larger one up to its first empty line. It is the part that is valid (possibly empty);
/// values outside it are checked one by one.
fn checked_text(b: &[u8], pos: usize) -> &str {
    if b.len() <= 4096 {
        match std::str::from_utf8(b) {
            Ok(t) => t,
            Err(e) => b
                .get(..e.valid_up_to())
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or_default(),
        }
    } else {
        crate::text::find_blank_line(b.get(pos..).unwrap_or_default())
            .and_then(|i| std::str::from_utf8(b.get(..pos + i + 4)?).ok())
            .unwrap_or_default()
    }
}

/// What the header lines build up.
struct Collected {
    headers: Headers,
    content_length: Option<usize>,
    /// Where the last header made with [`Header::pending`] ends: the header section they
    /// share is the checked text up to there.
    shared_end: usize,
}

/// Parses the start line position and the header section. With `lenient`, it only splits
/// (for answering a malformed request): no typed checks, Content-Length errors ignored, a
/// missing end of headers tolerated, header lines that cannot be split (no colon, a name that
/// is not a token, a continuation with nothing to continue) skipped, and values that are not
/// UTF-8 kept with U+FFFD in place of the bad bytes.
///
/// The headers share one copy of the header section (its text checked once), made at the
/// end; a header whose value is not in the checked text (after bytes that are not UTF-8), or
/// was folded, gets a text of its own.
pub(crate) fn parse_head<'a>(
    buf: &'a Bytes,
    limits: &ParseLimits,
    lenient: bool,
) -> Result<Head<'a>> {
    let b: &[u8] = buf;
    let mut pos = 0;
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    while b.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    }
    let text = checked_text(b, pos);
    let (end, next) = line_end(b, pos, limits)?;
    let start = (pos, end);
    if start.0 == start.1 {
        return Err(Error::Incomplete);
    }
    pos = next;
    let mut acc = Collected {
        headers: Headers::with_capacity(16),
        content_length: None,
        shared_end: 0,
    };
    let mut pending: Option<Pending> = None;
    let body_start = loop {
        // A header line is split first, so that its end is searched for from its value on
        // (what that finds, and the errors, are those of the line from its start).
        let first = b.get(pos).copied().unwrap_or_default();
        let header = match first {
            b'\r' | b'\n' | b' ' | b'\t' => None,
            _ => split_name(b, pos),
        };
        let from = header.map_or(pos, |h| h.2);
        let (end, next) = match line_end_from(b, pos, from, limits) {
            Ok(x) => x,
            Err(Error::Incomplete) if lenient => (b.len(), b.len()),
            Err(e) => return Err(e),
        };
        if end == pos {
            if let Some(p) = pending.take() {
                finish(b, text, p, &mut acc, limits, lenient)?;
            }
            break next;
        }
        if is_ws(first) {
            // Folded continuation (RFC 3261 §7.3.1).
            match pending.as_mut() {
                Some(p) => {
                    p.value.1 = end;
                    p.folded = true;
                }
                // The continuation of a line that was skipped, or of nothing.
                None if lenient => {}
                None => return Err(Error::header("(first)", "starts with whitespace")),
            }
        } else {
            if let Some(p) = pending.take() {
                finish(b, text, p, &mut acc, limits, lenient)?;
            }
            let split = match header {
                // The usual line: the next one does not continue it (RFC 3261 §7.3.1), so it
                // is a whole header, finished now rather than when the next line is split.
                // Its errors still come after those of the next line's end, as before.
                Some((kind, name_end, value)) if !b.get(next).copied().is_some_and(is_ws) => {
                    let p = Pending {
                        kind,
                        name: (pos, name_end),
                        value: (value, end),
                        folded: false,
                    };
                    if let Err(e) = finish_hot(b, text, p, &mut acc, limits, lenient) {
                        return Err(after_next_line(b, next, limits, lenient, e));
                    }
                    if next >= b.len() && lenient {
                        break b.len();
                    }
                    pos = next;
                    continue;
                }
                Some((kind, name_end, value)) => Ok(Pending {
                    kind,
                    name: (pos, name_end),
                    value: (value, end),
                    folded: false,
                }),
                // The error of the line (or what `split_name` does not handle).
                None => split_line(b, pos, end),
            };
            match split {
                Ok(p) => pending = Some(p),
                // Skipped: the answer to a malformed request needs only the headers it copies.
                Err(_) if lenient => {}
                Err(e) => return Err(e),
            }
        }
        if next >= b.len() && lenient {
            if let Some(p) = pending.take() {
                finish(b, text, p, &mut acc, limits, lenient)?;
            }
            break b.len();
        }
        pos = next;
    };
    let mut headers = acc.headers;
    let shared = (acc.shared_end > 0).then(|| {
        let shared: Arc<str> = Arc::from(text.get(..acc.shared_end).unwrap_or_default());
        headers.set_pending_text(&shared);
        shared
    });
    Ok(Head {
        start,
        start_text: text.get(start.0..start.1),
        shared,
        headers,
        body_start,
        content_length: acc.content_length,
    })
}

/// The error to give when finishing the header that ends at `next` failed with `e`: the error
/// of the next line's end comes first (the header used to be finished only once that line was
/// found whole), then `e`.
#[cold]
#[inline(never)]
fn after_next_line(b: &[u8], next: usize, limits: &ParseLimits, lenient: bool, e: Error) -> Error {
    match line_end(b, next, limits) {
        Err(Error::Incomplete) if lenient => e,
        Err(first) => first,
        Ok(_) => e,
    }
}

/// Adds the header `p` once its last line is known (out of line: folded headers, the last one).
#[inline(never)]
fn finish(
    b: &[u8],
    text: &str,
    p: Pending,
    acc: &mut Collected,
    limits: &ParseLimits,
    lenient: bool,
) -> Result<()> {
    finish_hot(b, text, p, acc, limits, lenient)
}

/// [`finish`] inlined into the loop, for the usual header line.
#[inline(always)]
fn finish_hot(
    b: &[u8],
    text: &str,
    p: Pending,
    acc: &mut Collected,
    limits: &ParseLimits,
    lenient: bool,
) -> Result<()> {
    if acc.headers.len() >= limits.max_headers {
        return Err(Error::TooManyHeaders {
            limit: limits.max_headers,
        });
    }
    if p.folded {
        let name = b.get(p.name.0..p.name.1).unwrap_or_default();
        let value = unfold(b.get(p.value.0..p.value.1).unwrap_or_default());
        return finish_own(p.kind, name, &value, acc, limits, lenient);
    }
    let mut end = p.value.1;
    while end > p.value.0 && b.get(end - 1).copied().is_some_and(is_ws) {
        end -= 1;
    }
    // The usual header: its value lies in the checked text (and below 4 GiB). Both ends of
    // the value are next to ASCII bytes (`:` or whitespace before it, whitespace or CR after
    // it), so they are char boundaries of the text: only the typed check needs the slice.
    if let (true, Ok(end32)) = (end <= text.len(), u32::try_from(end)) {
        let hot = if lenient || !has_typed_check(p.kind) {
            Hot::None
        } else {
            let value = text.get(p.value.0..end).unwrap_or_default();
            check_hot(p.kind, value, &mut acc.content_length, limits)?
        };
        // All three are at most `end`, which fits 32 bits: the casts are exact.
        let at = |x: usize| x as u32;
        acc.headers.push(Header::pending(
            p.kind,
            at(p.name.0),
            at(p.name.1),
            at(p.value.0),
            end32,
            hot,
        ));
        acc.shared_end = end;
        return Ok(());
    }
    let name = b.get(p.name.0..p.name.1).unwrap_or_default();
    finish_own(
        p.kind,
        name,
        b.get(p.value.0..end).unwrap_or_default(),
        acc,
        limits,
        lenient,
    )
}

/// [`finish`] for a header that gets a text of its own: `value` is checked here.
#[cold]
#[inline(never)]
fn finish_own(
    kind: HeaderName,
    name: &[u8],
    value: &[u8],
    acc: &mut Collected,
    limits: &ParseLimits,
    lenient: bool,
) -> Result<()> {
    // The name is a token: ASCII.
    let name = std::str::from_utf8(name).unwrap_or_default();
    match std::str::from_utf8(value) {
        Ok(text) => {
            let hot = if lenient {
                Hot::None
            } else {
                check_hot(kind, text, &mut acc.content_length, limits)?
            };
            acc.headers.push(Header::from_line(kind, name, text, hot));
            Ok(())
        }
        // Keep the header, readable: an answer copies From, To, Call-ID and CSeq.
        Err(_) if lenient => {
            let text = String::from_utf8_lossy(value);
            acc.headers
                .push(Header::from_line(kind, name, &text, Hot::None));
            Ok(())
        }
        Err(_) => Err(not_utf8(kind)),
    }
}

/// The error for a header value that is not UTF-8 (RFC 3261 §7.3.1: TEXT-UTF8), naming the
/// header so that the 400 says which one (§21.4.1).
#[cold]
fn not_utf8(kind: HeaderName) -> Error {
    let name = match kind {
        HeaderName::Other => "extension",
        known => known.as_str(),
    };
    Error::header(name, "value is not UTF-8")
}

/// Joins folded lines: each CRLF and the whitespace after it become one SP; ends trimmed.
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            // LWS = [*WSP CRLF] 1*WSP becomes one SP.
            while out.last().copied().is_some_and(is_ws) {
                out.pop();
            }
            i += 2;
            while raw.get(i).copied().is_some_and(is_ws) {
                i += 1;
            }
            if !out.is_empty() {
                out.push(b' ');
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    while out.last().copied().is_some_and(is_ws) {
        out.pop();
    }
    out
}

/// Whether [`check_hot`] does anything with a header of this name.
#[inline]
fn has_typed_check(kind: HeaderName) -> bool {
    matches!(
        kind,
        HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::ContentLength
    )
}

/// The typed parse of the headers every layer reads, done once: the result is kept in the
/// header so the accessors need not parse again. The usual values are read by the one-pass
/// checks; anything else (and every error) by the general parses of [`check_hot_slow`].
fn check_hot(
    kind: HeaderName,
    v: &str,
    content_length: &mut Option<usize>,
    limits: &ParseLimits,
) -> Result<Hot> {
    let fast = match kind {
        HeaderName::Via => crate::headers::via_hot(v).map(Hot::Via),
        HeaderName::From | HeaderName::To => crate::headers::addr_hot(v).map(Hot::Addr),
        HeaderName::CSeq => cseq_hot(v),
        HeaderName::CallId => check_call_id(v).then_some(Hot::None),
        HeaderName::ContentLength => {
            // The usual value, 1–9 digits and nothing else, is read at once.
            let n = match short_number(v) {
                Some(n) if n <= limits.max_message_size => n,
                _ => content_length_value(v, limits)?,
            };
            match *content_length {
                Some(old) if old != n => {
                    return Err(Error::ContentLength("given twice with different values"));
                }
                _ => *content_length = Some(n),
            }
            Some(u32::try_from(n).map_or(Hot::None, Hot::Length))
        }
        _ => Some(Hot::None),
    };
    match fast {
        Some(hot) => Ok(hot),
        None => check_hot_slow(kind, v),
    }
}

/// [`check_hot`] for the values its one-pass checks leave: Via lists and unusual spellings,
/// From and To without `<>`, unusual CSeq values, and the errors.
#[cold]
#[inline(never)]
fn check_hot_slow(kind: HeaderName, v: &str) -> Result<Hot> {
    Ok(match kind {
        HeaderName::Via => {
            // One value (nothing to split on, no quoted string or bracket): parsed whole, as
            // the split would give it.
            if crate::text::find_byte3(b',', b'"', b'<', v.as_bytes()).is_none() {
                return Ok(Via::parse(v)?.spans(v).map_or(Hot::None, Hot::Via));
            }
            let mut hot = Hot::None;
            for (i, one) in split_top_level(v, b',').enumerate() {
                let via = Via::parse(one)?;
                if i == 0 {
                    hot = via.spans(v).map_or(Hot::None, Hot::Via);
                }
            }
            hot
        }
        HeaderName::From => NameAddr::parse_for("From", v)?
            .spans(v)
            .map_or(Hot::None, Hot::Addr),
        HeaderName::To => NameAddr::parse_for("To", v)?
            .spans(v)
            .map_or(Hot::None, Hot::Addr),
        HeaderName::CSeq => {
            let c = CSeq::parse(v)?;
            Hot::CSeq(c.seq, c.method.known_index().unwrap_or(u8::MAX))
        }
        HeaderName::CallId if !check_call_id(v) => {
            return Err(Error::header("Call-ID", "not a word[@word]"));
        }
        _ => Hot::None,
    })
}

/// `v` when it is 1–9 ASCII digits and nothing else (what [`content_length_value`] reads
/// it as, when within the limit).
#[inline]
fn short_number(v: &str) -> Option<usize> {
    let b = v.as_bytes();
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0usize, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + usize::from(c - b'0'))
    })
}

/// The cached CSeq of the usual value, `1*9DIGIT LWS Method` (below 2^31 then, RFC 3261
/// §8.1.1.5), read in one pass: what [`CSeq::parse`] gives for it. `None` for anything else
/// (the general parse then gives the same, or the error).
#[inline]
fn cseq_hot(v: &str) -> Option<Hot> {
    let b = v.as_bytes();
    let mut seq = 0u32;
    let mut digits = 0;
    while let Some(&c) = b.get(digits).filter(|c| c.is_ascii_digit()) {
        if digits == 9 {
            return None;
        }
        seq = seq * 10 + u32::from(c - b'0');
        digits += 1;
    }
    let m = crate::text::skip_ws(b, digits);
    let end = skip_class(b, m, is_token_byte);
    if digits == 0 || m == digits || end == m || end != b.len() {
        return None;
    }
    let method = Method::parse(v.get(m..)?).ok()?;
    Some(Hot::CSeq(seq, method.known_index().unwrap_or(u8::MAX)))
}

/// [`check_hot`] as it was before the fast paths for Via, From, To ([`via_hot`],
/// [`addr_hot`]) and CSeq ([`cseq_hot`]) and the split into fast and slow paths: the general
/// parses only, kept to check the new one against.
///
/// [`via_hot`]: crate::headers::via_hot
/// [`addr_hot`]: crate::headers::addr_hot
#[cfg(test)]
fn check_hot_general(
    kind: HeaderName,
    v: &str,
    content_length: &mut Option<usize>,
    limits: &ParseLimits,
) -> Result<Hot> {
    Ok(match kind {
        HeaderName::Via => {
            if crate::text::find_byte3(b',', b'"', b'<', v.as_bytes()).is_none() {
                return Ok(Via::parse(v)?.spans(v).map_or(Hot::None, Hot::Via));
            }
            let mut hot = Hot::None;
            for (i, one) in split_top_level(v, b',').enumerate() {
                let via = Via::parse(one)?;
                if i == 0 {
                    hot = via.spans(v).map_or(Hot::None, Hot::Via);
                }
            }
            hot
        }
        HeaderName::From => NameAddr::parse_for("From", v)?
            .spans(v)
            .map_or(Hot::None, Hot::Addr),
        HeaderName::To => NameAddr::parse_for("To", v)?
            .spans(v)
            .map_or(Hot::None, Hot::Addr),
        HeaderName::CSeq => {
            let c = CSeq::parse(v)?;
            Hot::CSeq(c.seq, c.method.known_index().unwrap_or(u8::MAX))
        }
        HeaderName::CallId if !check_call_id(v) => {
            return Err(Error::header("Call-ID", "not a word[@word]"));
        }
        HeaderName::ContentLength => {
            let n = content_length_value(v, limits)?;
            match *content_length {
                Some(old) if old != n => {
                    return Err(Error::ContentLength("given twice with different values"));
                }
                _ => *content_length = Some(n),
            }
            u32::try_from(n).map_or(Hot::None, Hot::Length)
        }
        _ => Hot::None,
    })
}

/// Parses a Content-Length value; negative, non-numeric and over-limit values are framing
/// errors (RFC 4475 §3.1.2.3: never use a negative conversion as a length).
pub(crate) fn content_length_value(v: &str, limits: &ParseLimits) -> Result<usize> {
    let v = crate::text::trim(v);
    if v.starts_with('-') {
        return Err(Error::ContentLength("negative"));
    }
    let n = parse_u64(v).ok_or(Error::ContentLength("not a number"))?;
    match usize::try_from(n) {
        Ok(n) if n <= limits.max_message_size => Ok(n),
        _ => Err(Error::ContentLength("larger than the message size limit")),
    }
}

fn build(buf: &Bytes, head: Head<'_>, body: Bytes) -> Result<Message> {
    let line = match head.start_text {
        Some(line) => line,
        None => {
            let line = buf.get(head.start.0..head.start.1).unwrap_or_default();
            std::str::from_utf8(line).map_err(|_| Error::StartLine("not UTF-8 text"))?
        }
    };
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| crate::text::eq_ignore_case(p.as_bytes(), b"SIP/"))
    {
        let (version, status, reason) = parse_status_line(line)?;
        Ok(Message::Response(Response {
            version,
            status,
            reason: reason.to_owned(),
            headers: head.headers,
            body,
        }))
    } else {
        // The shared text begins where the buffer does, so the line lies at `start.0` in it.
        let shared = head
            .start_text
            .and(head.shared.as_ref())
            .map(|t| (t, head.start.0));
        let (method, uri, version) = parse_request_line(line, shared)?;
        Ok(Message::Request(Request {
            method,
            uri,
            version,
            headers: head.headers,
            body,
        }))
    }
}

/// Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between elements
/// (RFC 4475 §3.1.2.9, §3.1.2.10), no LWS or brackets in the URI (§3.1.2.7, §3.1.2.8).
///
/// With `shared`, a text holding the line at an offset, the URI keeps that text rather than a
/// copy of its own.
fn parse_request_line(
    line: &str,
    shared: Option<(&Arc<str>, usize)>,
) -> Result<(Method, Uri, Version)> {
    let b = line.as_bytes();
    let sp1 = find_byte(b' ', b);
    let sp2 = sp1.and_then(|a| Some(a + 1 + find_byte(b' ', b.get(a + 1..)?)?));
    let (Some(sp1), Some(sp2)) = (sp1, sp2) else {
        return Err(Error::StartLine(
            "not exactly Method SP Request-URI SP SIP-Version",
        ));
    };
    let (Some(m), Some(u), Some(v)) =
        (line.get(..sp1), line.get(sp1 + 1..sp2), line.get(sp2 + 1..))
    else {
        return Err(Error::StartLine(
            "not exactly Method SP Request-URI SP SIP-Version",
        ));
    };
    if find_byte(b' ', v.as_bytes()).is_some() {
        return Err(Error::StartLine(
            "not exactly Method SP Request-URI SP SIP-Version",
        ));
    }
    let method = Method::parse(m)?;
    // The Request-URI shares the header section rather than taking a copy (for speed: one
    // allocation less per request); the same scan of the same text either way.
    let uri = match shared.and_then(|(text, at)| Uri::parse_in(text, at + sp1 + 1, at + sp2)) {
        Some(uri) => uri?,
        None => Uri::parse(u)?,
    };
    // RFC 3261 §19.1.1 (table): headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
    if uri.headers().is_some() {
        return Err(Error::StartLine("the Request-URI carries ?headers"));
    }
    Ok((method, uri, Version::parse(v)?))
}

/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (the phrase may be empty).
fn parse_status_line(line: &str) -> Result<(Version, StatusCode, &str)> {
    let (v, rest) = line
        .split_once(' ')
        .ok_or(Error::StartLine("no status code"))?;
    let version = Version::parse(v)?;
    let (code, reason) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if code.len() != 3 {
        return Err(Error::StartLine("status code is not three digits"));
    }
    let status = parse_u64(code)
        .and_then(|n| u16::try_from(n).ok())
        .and_then(StatusCode::new)
        .ok_or(Error::StartLine("status code out of range"))?;
    if reason.bytes().any(|c| c < 0x20 && c != b'\t' || c == 0x7F) {
        return Err(Error::StartLine("control character in reason phrase"));
    }
    Ok((version, status, reason))
}

/// For a request the parser rejected: the response to send back statelessly, when the bytes
/// are enough to build one — the Via, From, To, Call-ID and CSeq lines are present and the top
/// Via can be read, so the response can be routed (RFC 3261 §8.2.6, §18.2.2). Responses, ACKs
/// and hopeless input give `None`: drop them silently (§8.1.3.3 / §18.1.2, §17.2.1).
///
/// The status follows the error (`crates/session-sip/INPUT_CHOICES.md` lists every case):
/// 513 Message Too Large for a message, a line or a header count over [`ParseLimits`]
/// (§21.5.7), 414 Request-URI Too Long when the over-long line is the Request-Line
/// (§21.4.12), and 400 Bad Request naming the problem otherwise (§21.4.1). Header lines the
/// parser could not split are left out, and values that are not UTF-8 are copied with U+FFFD
/// in place of the bad bytes.
///
/// Its To tag comes from `fastrand`'s thread-local generator; [`bad_request_for_with`] draws
/// it from the caller's.
pub fn bad_request_for(buf: &[u8], error: &Error, limits: &ParseLimits) -> Option<Response> {
    bad_request_tagged(buf, error, limits, crate::build::new_tag)
}

/// [`bad_request_for`] with the To tag drawn from `rng` (see
/// [`new_tag_with`](crate::new_tag_with)): the same generator state gives the same bytes.
pub fn bad_request_for_with(
    buf: &[u8],
    error: &Error,
    limits: &ParseLimits,
    rng: &mut fastrand::Rng,
) -> Option<Response> {
    bad_request_tagged(buf, error, limits, || crate::build::new_tag_with(rng))
}

/// [`bad_request_for`] with `tag` making the To tag.
pub(crate) fn bad_request_tagged(
    buf: &[u8],
    error: &Error,
    limits: &ParseLimits,
    tag: impl FnOnce() -> String,
) -> Option<Response> {
    let buf = Bytes::copy_from_slice(buf.get(..limits.max_message_size.min(buf.len()))?);
    // The lines and headers are split without their limits: the request may be here because
    // it broke one, and the work stays bounded by the message size limit applied above.
    let relaxed = ParseLimits {
        max_message_size: limits.max_message_size,
        max_headers: usize::MAX,
        max_line_length: usize::MAX,
    };
    let head = parse_head(&buf, &relaxed, true).ok()?;
    let line = buf.get(head.start.0..head.start.1)?;
    // Responses are dropped, and so is an ACK (it is never answered, RFC 3261 §17.2.1).
    if line.len() < 4 || line.get(..4)?.eq_ignore_ascii_case(b"SIP/") || line.starts_with(b"ACK ") {
        return None;
    }
    let h = &head.headers;
    let needed = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ];
    if needed.iter().any(|&n| h.get(n).is_none()) {
        return None;
    }
    // §18.2.2: the response goes where the top Via says; no readable Via, nowhere to send it.
    let top_via = h.get(HeaderName::Via)?.value();
    Via::parse(split_top_level(top_via, b',').next()?).ok()?;
    let (status, reason) = match error {
        Error::LineTooLong { .. } if line.len() > limits.max_line_length => (
            StatusCode::REQUEST_URI_TOO_LONG,
            format!("Request-URI Too Long ({error})"),
        ),
        Error::TooLarge { .. } | Error::TooManyHeaders { .. } | Error::LineTooLong { .. } => (
            StatusCode::MESSAGE_TOO_LARGE,
            format!("Message Too Large ({error})"),
        ),
        // RFC 3261 §21.4.1: the phrase should name the problem.
        _ => (StatusCode::BAD_REQUEST, format!("Bad Request ({error})")),
    };
    let mut headers = Headers::new();
    for hd in h.iter().filter(|hd| needed.contains(&hd.name())) {
        headers.push(hd.clone());
    }
    let mut resp = Response {
        version: Version::SIP_2_0,
        status,
        reason,
        headers,
        body: Bytes::new(),
    };
    crate::build::add_to_tag(&mut resp, tag);
    resp.headers
        .push(Header::new(HeaderName::ContentLength, "0"));
    Some(resp)
}

/// [`parse_head`] as it was before a header line was finished as soon as the next line
/// shows it is not folded (it was finished when the next line was split), kept to check the
/// new loop against.
#[cfg(test)]
fn parse_head_before<'a>(buf: &'a Bytes, limits: &ParseLimits, lenient: bool) -> Result<Head<'a>> {
    let b: &[u8] = buf;
    let mut pos = 0;
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    while b.get(pos..pos + 2) == Some(b"\r\n") {
        pos += 2;
    }
    let text = checked_text(b, pos);
    let (end, next) = line_end(b, pos, limits)?;
    let start = (pos, end);
    if start.0 == start.1 {
        return Err(Error::Incomplete);
    }
    pos = next;
    let mut acc = Collected {
        headers: Headers::with_capacity(16),
        content_length: None,
        shared_end: 0,
    };
    let mut pending: Option<Pending> = None;
    let body_start = loop {
        // A header line is split first, so that its end is searched for from its value on
        // (what that finds, and the errors, are those of the line from its start).
        let first = b.get(pos).copied().unwrap_or_default();
        let header = match first {
            b'\r' | b'\n' | b' ' | b'\t' => None,
            _ => split_name(b, pos),
        };
        let from = header.map_or(pos, |h| h.2);
        let (end, next) = match line_end_from(b, pos, from, limits) {
            Ok(x) => x,
            Err(Error::Incomplete) if lenient => (b.len(), b.len()),
            Err(e) => return Err(e),
        };
        if end == pos {
            if let Some(p) = pending.take() {
                finish(b, text, p, &mut acc, limits, lenient)?;
            }
            break next;
        }
        if is_ws(first) {
            // Folded continuation (RFC 3261 §7.3.1).
            match pending.as_mut() {
                Some(p) => {
                    p.value.1 = end;
                    p.folded = true;
                }
                // The continuation of a line that was skipped, or of nothing.
                None if lenient => {}
                None => return Err(Error::header("(first)", "starts with whitespace")),
            }
        } else {
            if let Some(p) = pending.take() {
                finish(b, text, p, &mut acc, limits, lenient)?;
            }
            let split = match header {
                Some((kind, name_end, value)) => Ok(Pending {
                    kind,
                    name: (pos, name_end),
                    value: (value, end),
                    folded: false,
                }),
                // The error of the line (or what `split_name` does not handle).
                None => split_line(b, pos, end),
            };
            match split {
                Ok(p) => pending = Some(p),
                // Skipped: the answer to a malformed request needs only the headers it copies.
                Err(_) if lenient => {}
                Err(e) => return Err(e),
            }
        }
        if next >= b.len() && lenient {
            if let Some(p) = pending.take() {
                finish(b, text, p, &mut acc, limits, lenient)?;
            }
            break b.len();
        }
        pos = next;
    };
    let mut headers = acc.headers;
    let shared = (acc.shared_end > 0).then(|| {
        let shared: Arc<str> = Arc::from(text.get(..acc.shared_end).unwrap_or_default());
        headers.set_pending_text(&shared);
        shared
    });
    Ok(Head {
        start,
        start_text: text.get(start.0..start.1),
        shared,
        headers,
        body_start,
        content_length: acc.content_length,
    })
}

/// The header section parse as it was before the headers shared one checked copy of it (each
/// header then held a slice of the received buffer), kept to check the new one against: same
/// messages, same errors, same typed reads, on generated input.
#[cfg(test)]
pub(crate) mod reference {
    #![allow(clippy::all)]
    use super::*;

    pub(crate) struct Head {
        pub(super) start: (usize, usize),
        pub(super) headers: Headers,
        pub(super) body_start: usize,
        pub(super) content_length: Option<usize>,
    }

    /// Finds the end of the line starting at `pos`: (end of content, start of next line).
    fn line_end(b: &[u8], pos: usize, limits: &ParseLimits) -> Result<(usize, usize)> {
        let rest = b.get(pos..).unwrap_or_default();
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) if i > limits.max_line_length => Err(Error::LineTooLong {
                limit: limits.max_line_length,
            }),
            Some(i) => match (rest.get(i), rest.get(i + 1)) {
                (Some(b'\r'), Some(b'\n')) => Ok((pos + i, pos + i + 2)),
                (Some(b'\r'), None) => Err(Error::Incomplete),
                _ => Err(Error::NotText),
            },
            None if rest.len() > limits.max_line_length => Err(Error::LineTooLong {
                limit: limits.max_line_length,
            }),
            None => Err(Error::Incomplete),
        }
    }

    /// Splits the header line `b[pos..end]` into its name and the start of its value.
    #[inline]
    fn split_line(b: &[u8], pos: usize, end: usize) -> Result<Pending> {
        let line = b.get(pos..end).unwrap_or_default();
        // The usual line, `token SWS ":"`, in one pass; anything else is told apart below.
        let name_end = skip_class(line, 0, is_token_byte);
        let colon = crate::text::skip_ws(line, name_end);
        if line.get(colon) != Some(&b':') || name_end == 0 {
            return Err(if line.contains(&b':') {
                // NUL, bytes over 0x7F (UTF-8 or not) and separators have no place in a field name.
                Error::header("(unknown)", "name is not a token")
            } else {
                Error::header("(unknown)", "line without a colon")
            });
        }
        let name = line.get(..name_end).unwrap_or_default();
        let vstart = crate::text::skip_ws(line, colon + 1);
        Ok(Pending {
            kind: HeaderName::from_token(name),
            name: (pos, pos + name_end),
            value: (pos + vstart, end),
            folded: false,
        })
    }

    /// A header line being collected (it may continue on folded lines).
    #[derive(Clone, Copy)]
    struct Pending {
        kind: HeaderName,
        name: (usize, usize),
        value: (usize, usize),
        folded: bool,
    }

    /// Parses the start line position and the header section. With `lenient`, it only splits
    /// (for answering a malformed request): no typed checks, Content-Length errors ignored, a
    /// missing end of headers tolerated, header lines that cannot be split (no colon, a name that
    /// is not a token, a continuation with nothing to continue) skipped, and values that are not
    /// UTF-8 kept with U+FFFD in place of the bad bytes.
    pub(crate) fn parse_head(buf: &Bytes, limits: &ParseLimits, lenient: bool) -> Result<Head> {
        let b: &[u8] = buf;
        let mut pos = 0;
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        while b.get(pos..pos + 2) == Some(b"\r\n") {
            pos += 2;
        }
        // Check the header section is UTF-8 once, rather than value by value. A datagram of
        // common size is checked whole (the body too: cheaper than finding the end of the
        // headers first); the text is the part that is valid, and values outside it are checked
        // one by one.
        let head_text = if b.len() <= 4096 {
            match std::str::from_utf8(b) {
                Ok(t) => Some(t),
                Err(e) => b
                    .get(..e.valid_up_to())
                    .and_then(|v| std::str::from_utf8(v).ok()),
            }
        } else {
            crate::text::find_blank_line(b.get(pos..).unwrap_or_default())
                .and_then(|i| std::str::from_utf8(b.get(..pos + i + 4)?).ok())
        };
        let (end, next) = line_end(b, pos, limits)?;
        let start = (pos, end);
        if start.0 == start.1 {
            return Err(Error::Incomplete);
        }
        pos = next;
        let mut headers = Headers::with_capacity(16);
        let mut content_length: Option<usize> = None;
        let mut pending: Option<Pending> = None;
        let body_start = loop {
            let (end, next) = match line_end(b, pos, limits) {
                Ok(x) => x,
                Err(Error::Incomplete) if lenient => (b.len(), b.len()),
                Err(e) => return Err(e),
            };
            if end == pos {
                if let Some(p) = pending.take() {
                    finish(
                        buf,
                        head_text,
                        p,
                        &mut headers,
                        &mut content_length,
                        limits,
                        lenient,
                    )?;
                }
                break next;
            }
            let first = b.get(pos).copied().unwrap_or_default();
            if is_ws(first) {
                // Folded continuation (RFC 3261 §7.3.1).
                match pending.as_mut() {
                    Some(p) => {
                        p.value.1 = end;
                        p.folded = true;
                    }
                    // The continuation of a line that was skipped, or of nothing.
                    None if lenient => {}
                    None => return Err(Error::header("(first)", "starts with whitespace")),
                }
            } else {
                if let Some(p) = pending.take() {
                    finish(
                        buf,
                        head_text,
                        p,
                        &mut headers,
                        &mut content_length,
                        limits,
                        lenient,
                    )?;
                }
                match split_line(b, pos, end) {
                    Ok(p) => pending = Some(p),
                    // Skipped: the answer to a malformed request needs only the headers it copies.
                    Err(_) if lenient => {}
                    Err(e) => return Err(e),
                }
            }
            if next >= b.len() && lenient {
                if let Some(p) = pending.take() {
                    finish(
                        buf,
                        head_text,
                        p,
                        &mut headers,
                        &mut content_length,
                        limits,
                        lenient,
                    )?;
                }
                break b.len();
            }
            pos = next;
        };
        Ok(Head {
            start,
            headers,
            body_start,
            content_length,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        buf: &Bytes,
        head_text: Option<&str>,
        p: Pending,
        headers: &mut Headers,
        content_length: &mut Option<usize>,
        limits: &ParseLimits,
        lenient: bool,
    ) -> Result<()> {
        if headers.len() >= limits.max_headers {
            return Err(Error::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        let name_len = p.name.1 - p.name.0;
        // The header keeps one slice: from its name to the end of its value.
        let (line, value_start) = if p.folded {
            let mut v = Vec::with_capacity(name_len + 2 + (p.value.1 - p.value.0));
            v.extend_from_slice(buf.get(p.name.0..p.name.1).unwrap_or_default());
            v.extend_from_slice(b": ");
            v.extend_from_slice(&unfold(buf.get(p.value.0..p.value.1).unwrap_or_default()));
            (Bytes::from(v), name_len + 2)
        } else {
            let mut end = p.value.1;
            while end > p.value.0 && buf.get(end - 1).copied().is_some_and(is_ws) {
                end -= 1;
            }
            (buf.slice(p.name.0..end), p.value.0 - p.name.0)
        };
        let value = line.get(value_start..).unwrap_or_default();
        let text = if p.folded {
            std::str::from_utf8(value).ok()
        } else {
            // Both ends sit next to ASCII bytes, so slicing the checked text cannot fail.
            let (a, b) = (p.value.0, p.value.0 + value.len());
            head_text
                .and_then(|t| t.get(a..b))
                .or_else(|| std::str::from_utf8(value).ok())
        };
        let Some(text) = text else {
            if lenient {
                // Keep the header, readable: an answer copies From, To, Call-ID and CSeq.
                headers.push(Header::from_line(
                    p.kind,
                    std::str::from_utf8(buf.get(p.name.0..p.name.1).unwrap_or_default())
                        .unwrap_or_default(),
                    &String::from_utf8_lossy(value),
                    Hot::None,
                ));
                return Ok(());
            }
            return Err(not_utf8(p.kind));
        };
        let hot = if lenient {
            Hot::None
        } else {
            check_hot(p.kind, text, content_length, limits)?
        };
        let _ = (name_len, hot);
        headers.push(Header::from_line(
            p.kind,
            std::str::from_utf8(buf.get(p.name.0..p.name.1).unwrap_or_default())
                .unwrap_or_default(),
            text,
            Hot::None,
        ));
        Ok(())
    }

    /// [`super::parse_datagram`] through the old header section parse.
    pub(crate) fn parse_datagram(buf: &Bytes, limits: &ParseLimits) -> Result<Message> {
        if buf.len() > limits.max_message_size {
            return Err(Error::TooLarge {
                limit: limits.max_message_size,
            });
        }
        let head = parse_head(buf, limits, false)?;
        let available = buf.len() - head.body_start;
        let body = match head.content_length {
            Some(n) if n > available => {
                return Err(Error::BodyTruncated {
                    declared: n,
                    available,
                });
            }
            Some(n) => buf.slice(head.body_start..head.body_start + n),
            None => buf.slice(head.body_start..),
        };
        let Head {
            start,
            headers,
            body_start,
            content_length,
        } = head;
        super::build(
            buf,
            super::Head {
                start,
                start_text: None,
                shared: None,
                headers,
                body_start,
                content_length,
            },
            body,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\nextra";

    /// The Request-URI kept in the shared header section reads, compares, hashes and
    /// derives as one parsed from its own copy.
    #[test]
    fn request_uri_in_the_shared_text_is_the_uri() {
        use std::hash::{BuildHasher, RandomState};
        let buf = Bytes::from_static(
            b"\r\nOPTIONS sip:bob:pw@[::1]:5070;lr;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        );
        let Ok(Message::Request(req)) = parse_datagram(&buf, &ParseLimits::default()) else {
            panic!("not a request")
        };
        let own = Uri::parse("sip:bob:pw@[::1]:5070;lr;transport=tcp").unwrap();
        let uri = &req.uri;
        assert_eq!(uri, &own);
        assert_eq!(uri.as_str(), own.as_str());
        assert_eq!(format!("{uri:?} {uri}"), format!("{own:?} {own}"));
        assert_eq!(
            (
                uri.scheme_str(),
                uri.user(),
                uri.password(),
                uri.host(),
                uri.port()
            ),
            (
                own.scheme_str(),
                own.user(),
                own.password(),
                own.host(),
                own.port()
            )
        );
        assert_eq!(uri.param("transport"), Some(Some("tcp")));
        assert_eq!(uri.opaque(), own.opaque());
        assert!(uri.equivalent(&own));
        let s = RandomState::new();
        assert_eq!(s.hash_one(uri), s.hash_one(&own));
        assert_eq!(
            uri.with_param("x", Some("1")).unwrap(),
            own.with_param("x", Some("1")).unwrap()
        );
        let text: Arc<str> = Arc::from("ab");
        assert!(Uri::parse_in(&text, 1, 3).is_none());
    }

    #[test]
    fn datagram_body_is_content_length_bytes() {
        let m = parse_datagram(&Bytes::from_static(INVITE), &ParseLimits::default()).unwrap();
        let Message::Request(r) = m else { panic!() };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(&r.body[..], b"v=0\r");
        assert_eq!(r.cseq().unwrap().seq, 314159);
        assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(r.call_id().unwrap(), "a84b4c76e66710@pc33.example.com");
    }

    #[test]
    fn limits_are_enforced() {
        let b = Bytes::from_static(INVITE);
        let small = ParseLimits::default().max_message_size(100);
        assert!(matches!(
            parse_datagram(&b, &small),
            Err(Error::TooLarge { .. })
        ));
        let few = ParseLimits::default().max_headers(3);
        assert!(matches!(
            parse_datagram(&b, &few),
            Err(Error::TooManyHeaders { .. })
        ));
        let short = ParseLimits::default().max_line_length(40);
        assert!(matches!(
            parse_datagram(&b, &short),
            Err(Error::LineTooLong { .. })
        ));
    }

    #[test]
    fn framing_errors() {
        let l = ParseLimits::default();
        let with = |cl: &str| {
            let s = format!(
                "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: {cl}\r\n\r\nabc"
            );
            parse_datagram(&Bytes::from(s), &l)
        };
        assert!(matches!(with("-1"), Err(Error::ContentLength("negative"))));
        assert!(matches!(with("five"), Err(Error::ContentLength(_))));
        assert!(matches!(
            with("99999999999999999999999"),
            Err(Error::ContentLength(_))
        ));
        assert!(matches!(with("4"), Err(Error::BodyTruncated { .. })));
        assert!(with("3").is_ok());
        let bare_lf = Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\nVia: x\n\n");
        assert!(parse_datagram(&bare_lf, &l).is_err());
        assert!(matches!(
            parse_datagram(
                &Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n"),
                &l
            ),
            Err(Error::Incomplete)
        ));
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"\r",
            b":",
            b"SIP/2.0 200",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(parse_datagram(&Bytes::copy_from_slice(junk), &l).is_err());
        }
    }

    #[test]
    fn folding_and_status_lines() {
        let m = parse_datagram(
            &Bytes::from_static(b"SIP/2.0 100 \r\nSubject: a\r\n  b \r\n\tc\r\nX:\r\n\r\n"),
            &ParseLimits::default(),
        )
        .unwrap();
        let Message::Response(r) = m else { panic!() };
        assert_eq!(r.status, StatusCode::TRYING);
        assert_eq!(r.reason, "");
        assert_eq!(r.headers.get_str(HeaderName::Subject), Some("a b c"));
        assert_eq!(r.headers.get_by_name("x").unwrap().value(), "");
        for bad in [
            &b"SIP/2.0 4294967301 big\r\n\r\n"[..],
            b"SIP/2.0 99 low\r\n\r\n",
            b"SIP/2.0 20 x\r\n\r\n",
            b"SIP/2.0 200 a\x01b\r\n\r\n",
        ] {
            assert!(parse_datagram(&Bytes::copy_from_slice(bad), &ParseLimits::default()).is_err());
        }
    }

    #[test]
    fn malformed_requests_get_a_400_when_possible() {
        let raw = b"INVITE  sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
        let err = parse_datagram(&Bytes::from_static(raw), &ParseLimits::default()).unwrap_err();
        let r = bad_request_for(raw, &err, &ParseLimits::default()).unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.to().unwrap().tag().is_some());
        assert!(
            bad_request_for(b"SIP/2.0 200 OK\r\n\r\n", &err, &ParseLimits::default()).is_none()
        );
        assert!(bad_request_for(b"INVITE x\r\n\r\n", &err, &ParseLimits::default()).is_none());
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;

    const SEEDS: [&[u8]; 4] = [
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/TCP p1.example.com;received=192.0.2.1, SIP/2.0/UDP [2001:db8::9]:5070\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n\
Subject: caf\xc3\xa9 folded\r\n  over\r\n\tlines \r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\no=x\r\n",
        b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.101;rport=5060\r\n\
t: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
f: sip:alice@atlanta.example.com;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 FOO\r\n\
l: 0\r\n\
\r\n",
        b"\r\n\r\nBYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds10\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
To: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 231 BYE\r\n\
X-Odd:   spaced value  \t\r\n\
Content-Length: 0\r\n\
Content-Length: 0\r\n\
\r\n",
        b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX: \xff\r\n\r\n",
    ];

    fn limits(which: u8) -> ParseLimits {
        match which {
            0 => ParseLimits::default(),
            1 => ParseLimits::default().max_headers(3),
            2 => ParseLimits::default().max_line_length(40),
            _ => ParseLimits::default().max_message_size(200),
        }
    }

    fn same_reads<M: PartialEq + std::fmt::Debug>(a: M, b: M) {
        assert_eq!(a, b);
    }

    fn check(bytes: &[u8], l: &ParseLimits) {
        let buf = Bytes::copy_from_slice(bytes);
        let new = parse_datagram(&buf, l);
        let old = reference::parse_datagram(&buf, l);
        assert_eq!(new, old, "{:?}", String::from_utf8_lossy(bytes));
        if let (Ok(n), Ok(o)) = (&new, &old) {
            let (nh, oh) = (n.headers(), o.headers());
            for (a, b) in nh.iter().zip(oh.iter()) {
                assert_eq!(
                    (a.name(), a.name_str(), a.value()),
                    (b.name(), b.name_str(), b.value())
                );
            }
            macro_rules! reads {
                ($a:expr, $b:expr) => {{
                    same_reads($a.top_via(), $b.top_via());
                    // The tag and branch are read from what the check noted.
                    same_reads(
                        $a.top_via().map(|v| (v.branch(), v.received(), v.rport())),
                        $b.top_via().map(|v| (v.branch(), v.received(), v.rport())),
                    );
                    same_reads($a.from().map(|f| f.tag()), $b.from().map(|f| f.tag()));
                    same_reads($a.to().map(|f| f.tag()), $b.to().map(|f| f.tag()));
                    same_reads($a.from(), $b.from());
                    same_reads($a.to(), $b.to());
                    same_reads($a.from().map(|f| f.uri()), $b.from().map(|f| f.uri()));
                    same_reads($a.to().map(|f| f.uri()), $b.to().map(|f| f.uri()));
                    same_reads($a.cseq(), $b.cseq());
                    same_reads($a.call_id(), $b.call_id());
                    same_reads($a.content_length(), $b.content_length());
                    same_reads($a.vias().collect::<Vec<_>>(), $b.vias().collect::<Vec<_>>());
                }};
            }
            // Serialized as by the old `to_bytes` (estimated buffer, then frozen).
            let old_bytes = match n {
                Message::Request(r) => r.to_bytes_reference(),
                Message::Response(r) => r.to_bytes_reference(),
            };
            assert_eq!(n.to_bytes(), old_bytes);
            let mut into = bytes::BytesMut::new();
            match n {
                Message::Request(r) => r.write_to(&mut into),
                Message::Response(r) => r.write_to(&mut into),
            }
            assert_eq!(&into[..], &old_bytes[..]);
            match (n, o) {
                (Message::Request(a), Message::Request(b)) => reads!(a, b),
                (Message::Response(a), Message::Response(b)) => reads!(a, b),
                _ => panic!("kinds differ"),
            }
        }
        // The header loop against its previous version: same split, views and errors.
        for lenient in [false, true] {
            let view = |h: Head<'_>| {
                let hot: Vec<String> = h.headers.iter().map(|x| format!("{:?}", x.hot())).collect();
                (
                    h.start,
                    h.start_text.map(str::to_owned),
                    h.headers,
                    hot,
                    h.body_start,
                    h.content_length,
                )
            };
            let now = parse_head(&buf, l, lenient).map(view);
            let before = parse_head_before(&buf, l, lenient).map(view);
            assert_eq!(
                now,
                before,
                "lenient {lenient}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let lenient_new =
            parse_head(&buf, l, true).map(|h| (h.start, h.headers, h.body_start, h.content_length));
        let lenient_old = reference::parse_head(&buf, l, true)
            .map(|h| (h.start, h.headers, h.body_start, h.content_length));
        assert_eq!(lenient_new, lenient_old);
    }

    #[test]
    fn seeds_parse_as_before() {
        for seed in SEEDS {
            for which in 0..4 {
                check(seed, &limits(which));
            }
        }
        // Larger than the datagram size checked whole.
        let mut big = SEEDS[0].to_vec();
        let at = big.windows(4).position(|w| w == b"Max-").unwrap();
        let filler = format!("X-Filler: {}\r\n", "y".repeat(5000));
        big.splice(at..at, filler.bytes());
        check(&big, &limits(0));
        big[at + 12] = 0xff;
        check(&big, &limits(0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn mutated_messages_parse_as_before(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                b" \t\r\n:;,<>\"\\%@=/0aZ\x00\xff\xc3\xa9".to_vec())), 0..6),
            inserts in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                vec![&b"\r\n"[..], b"\r\n ", b"\r\n\r\n", b"Via: SIP/2.0/UDP h\r\n", b"\xc3", b"To: <sip:a@b>\r\n", b"l: 5\r\n"])), 0..3),
            cut in any::<prop::sample::Index>(),
            which in 0u8..4,
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
            let l = limits(which);
            check(&bytes, &l);
            check(&bytes[..cut.index(bytes.len() + 1)], &l);
        }

        #[test]
        fn arbitrary_bytes_parse_as_before(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            check(&bytes, &ParseLimits::default());
        }

        #[test]
        fn hot_values_check_as_before(
            seed in 0..HOT_SEEDS.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                b" \t;,:<>\"\\@=/[]0159aZ.-\x00\xc3".to_vec())), 0..4),
            inserts in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(
                vec![" ", ";tag=x", ";branch=z9hG4bK1", ":5060", "\"a b\" ", "<sip:a@b>", ",SIP/2.0/UDP h", "sips:", "[::1]", "%41", "\u{e9}"])), 0..3),
            cut in any::<prop::sample::Index>(),
            kind in prop::sample::select(HOT_KINDS.to_vec()),
        ) {
            let mut bytes = HOT_SEEDS[seed].as_bytes().to_vec();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            for (at, s) in inserts {
                let i = at.index(bytes.len() + 1);
                bytes.splice(i..i, s.bytes());
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            same_hot(kind, &text);
            let cut = cut.index(text.len() + 1);
            if let Some(short) = text.get(..cut) {
                same_hot(kind, short);
            }
        }

        #[test]
        fn hot_values_of_any_text_check_as_before(
            v in "[ \tA-Za-z0-9:;,<>\"\\@=/\\[\\].%-]{0,40}",
            kind in prop::sample::select(HOT_KINDS.to_vec()),
        ) {
            same_hot(kind, &v);
            same_hot(kind, &format!("314159 {v}"));
            same_hot(kind, &format!("{v} INVITE"));
            // Starting as the usual values do.
            same_hot(kind, &format!("SIP/2.0/{v}"));
            same_hot(kind, &format!("<sip:{v}"));
            same_hot(kind, &format!("\"{v}"));
        }
    }

    /// The headers with a typed check (and one without).
    const HOT_KINDS: [HeaderName; 7] = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CSeq,
        HeaderName::CallId,
        HeaderName::ContentLength,
        HeaderName::Subject,
    ];

    /// Values of Via, From and To: the usual shapes and the unusual ones the fast paths leave
    /// to the general parse.
    const HOT_SEEDS: [&str; 20] = [
        "a84b4c76e66710@pc33.atlanta.example.com",
        " 327 ",
        "-1",
        "65536",
        "000000327",
        "314159 INVITE",
        "1 ACK",
        "999999999 BYE",
        "2147483648 X-ext",
        "  0012\t\tFOO ",
        "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport",
        "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds10;received=192.0.2.101;rport=5060",
        "SIP/2.0/TCP p1.example.com;received=192.0.2.1;x=\"a,b\", SIP/2.0/UDP [2001:db8::9]:5070",
        "SIP / 2.0 / UDP host : 5060 ; branch = z9hG4bK1 ; maddr=[::1]",
        "Bob <sip:bob@biloxi.example.com>",
        "\"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=1928301774",
        "sip:alice@atlanta.example.com;tag=1928301774",
        "  Bob  Smith <sips:bob@[2001:db8::1]:5061;transport=tls?x=y> ; tag = a6c85cf ;x=\"q\\\"\"",
        "<tel:+1-201-555-0123>;tag=1",
        "\"\\\"q\" <sip:%61@h>;tag=\"quoted\";tag=second",
    ];

    /// The fast path and the general parse give the same view (offsets included) or the same
    /// error.
    fn same_hot(kind: HeaderName, v: &str) {
        let l = ParseLimits::default();
        // Without and with a Content-Length seen before.
        for seen in [None, Some(327)] {
            let (mut a, mut b) = (seen, seen);
            let new = check_hot(kind, v, &mut a, &l);
            let old = check_hot_general(kind, v, &mut b, &l);
            assert_eq!(format!("{new:?}"), format!("{old:?}"), "{kind:?} {v:?}");
            assert_eq!(a, b);
        }
    }

    #[test]
    fn hot_seeds_check_as_before() {
        for v in HOT_SEEDS {
            for kind in [
                HeaderName::Via,
                HeaderName::From,
                HeaderName::To,
                HeaderName::CSeq,
            ] {
                same_hot(kind, v);
            }
        }
        // The fast paths take the usual values.
        assert!(cseq_hot(HOT_SEEDS[5]).is_some());
        assert_eq!(short_number(HOT_SEEDS[4]), Some(327));
        assert!(crate::headers::via_hot(HOT_SEEDS[10]).is_some());
        assert!(crate::headers::via_hot(HOT_SEEDS[11]).is_some());
        assert!(crate::headers::addr_hot(HOT_SEEDS[14]).is_some());
        assert!(crate::headers::addr_hot(HOT_SEEDS[15]).is_some());
    }
}
