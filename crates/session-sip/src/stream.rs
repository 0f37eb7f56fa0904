//! Stream framing for TCP/TLS: an incremental decoder fed arbitrary chunks, yielding whole
//! messages framed by Content-Length (mandatory on streams, RFC 3261 §18.3) and skipping
//! CRLF keep-alives (RFC 5626 §4.4.1).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::parse::{ParseLimits, content_length_value, parse_framed};
use crate::text::is_ws;

/// Incremental decoder for one stream connection.
///
/// Feed bytes with [`StreamDecoder::push`], then call [`StreamDecoder::decode`] until it
/// returns `Ok(None)`. An error for which [`Error::is_framing`] holds means the message
/// boundaries are lost: close the connection (the decoder keeps returning that error). Any
/// other error means one well-framed message was malformed and has been skipped.
///
/// ```
/// use session_sip::{ParseLimits, StreamDecoder};
///
/// let mut d = StreamDecoder::new(ParseLimits::default());
/// d.push(b"\r\n\r\nOPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n");
/// assert!(d.decode().unwrap().is_none()); // not complete yet
/// d.push(b"Content-Length: 0\r\n\r\n");
/// assert!(d.decode().unwrap().is_some());
/// assert_eq!(d.take_pings(), 1); // answer each with a CRLF pong
/// ```
#[derive(Debug)]
pub struct StreamDecoder {
    buf: BytesMut,
    limits: ParseLimits,
    /// How far the search for the end of the header section has got.
    scanned: usize,
    /// Length of the header section of the message being received, once found.
    head_len: Option<usize>,
    pings: usize,
    failed: Option<Error>,
    rejected: Option<Bytes>,
}

impl StreamDecoder {
    /// A decoder with these limits (`max_message_size` also bounds the buffered data).
    pub fn new(limits: ParseLimits) -> Self {
        Self {
            buf: BytesMut::new(),
            limits,
            scanned: 0,
            head_len: None,
            pings: 0,
            failed: None,
            rejected: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether part of a message is buffered: anything besides the line ends of a keep-alive
    /// still being received. A transport uses it to bound how long a message may take to
    /// arrive once it has started (a client that never finishes one holds the connection).
    pub fn in_message(&self) -> bool {
        // Keep-alives are consumed as they complete, so at most a few line ends precede the
        // first byte of a message: the search stops there.
        self.buf.iter().any(|&c| c != b'\r' && c != b'\n')
    }

    /// How many CRLFCRLF keep-alive pings arrived since the last call; answer each with a
    /// CRLF pong (RFC 5626 §4.4.1).
    pub fn take_pings(&mut self) -> usize {
        std::mem::take(&mut self.pings)
    }

    /// The bytes of the last well-framed message that failed to parse, so the transport can
    /// answer it ([`crate::bad_request_for`]).
    pub fn take_rejected(&mut self) -> Option<Bytes> {
        self.rejected.take()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Message>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.decode_inner() {
            Err(e) if e.is_framing() => {
                self.failed = Some(e.clone());
                self.buf.clear();
                Err(e)
            }
            other => other,
        }
    }

    fn decode_inner(&mut self) -> Result<Option<Message>> {
        // Keep-alives between messages: CRLFCRLF is a ping, a lone CRLF a pong.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                self.pings += 1;
            } else if self.buf.starts_with(b"\r\n") && self.buf.get(2).is_some_and(|&c| c != b'\r')
            {
                self.buf.advance(2);
            } else {
                break;
            }
            self.scanned = 0;
            self.head_len = None;
        }
        if self.buf.first() == Some(&b'\r') {
            // Maybe the start of a keep-alive: wait for more.
            if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                return Ok(None);
            }
        }
        let head_len = match self.head_len {
            Some(n) => n,
            None => {
                let from = self.scanned.saturating_sub(3);
                let hay = self.buf.get(from..).unwrap_or_default();
                let Some(found) = crate::text::find_blank_line(hay) else {
                    self.scanned = self.buf.len();
                    if self.buf.len() > self.limits.max_message_size {
                        return Err(Error::TooLarge {
                            limit: self.limits.max_message_size,
                        });
                    }
                    return Ok(None);
                };
                let n = from + found + 4;
                self.head_len = Some(n);
                n
            }
        };
        let head = self.buf.get(..head_len).unwrap_or_default();
        let body_len = scan_content_length(head, &self.limits)?
            .ok_or(Error::ContentLength("missing on a stream transport"))?;
        let total = head_len + body_len;
        if total > self.limits.max_message_size {
            return Err(Error::TooLarge {
                limit: self.limits.max_message_size,
            });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        self.scanned = 0;
        self.head_len = None;
        match parse_framed(&frame, &self.limits) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                if !e.is_framing() {
                    self.rejected = Some(frame);
                }
                Err(e)
            }
        }
    }
}

/// Finds Content-Length (or `l`) in a header section without parsing it fully.
fn scan_content_length(head: &[u8], limits: &ParseLimits) -> Result<Option<usize>> {
    let mut found: Option<usize> = None;
    for line in head.split(|&c| c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().copied().is_some_and(is_ws) {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let mut name = line.get(..colon).unwrap_or_default();
        while let [rest @ .., last] = name {
            if !is_ws(*last) {
                break;
            }
            name = rest;
        }
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = std::str::from_utf8(line.get(colon + 1..).unwrap_or_default())
                .map_err(|_| Error::ContentLength("not a number"))?;
            let n = content_length_value(value, limits)?;
            if found.is_some_and(|old| old != n) {
                return Err(Error::ContentLength("given twice with different values"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 3\r\n\r\nabc\
\r\n\r\n\r\n\
SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

    fn decode_all(chunks: &[&[u8]]) -> (Vec<Message>, usize) {
        let mut d = StreamDecoder::new(ParseLimits::default());
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(m) = d.decode().unwrap() {
                out.push(m);
            }
        }
        (out, d.take_pings())
    }

    #[test]
    fn every_split_gives_the_same_messages() {
        let (whole, pings) = decode_all(&[TWO]);
        assert_eq!(whole.len(), 2);
        assert_eq!(pings, 1);
        for i in 0..TWO.len() {
            let (a, b) = TWO.split_at(i);
            assert_eq!(decode_all(&[a, b]).0, whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = TWO.chunks(1).collect();
        assert_eq!(decode_all(&bytes).0, whole);
    }

    #[test]
    fn framing_errors_are_fatal() {
        for bad in [
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n",
        ] {
            let mut d = StreamDecoder::new(ParseLimits::default());
            d.push(bad);
            let e = d.decode().unwrap_err();
            assert!(e.is_framing(), "{e}");
            assert!(d.decode().is_err());
        }
        let mut d = StreamDecoder::new(ParseLimits::default().max_message_size(64));
        d.push(&[b'a'; 100]);
        assert!(d.decode().unwrap_err().is_framing());
    }

    #[test]
    fn in_message_ignores_keepalive_line_ends() {
        let mut d = StreamDecoder::new(ParseLimits::default());
        assert!(!d.in_message());
        // A lone CRLF (a pong) stays buffered until more arrives, but it is no message.
        d.push(b"\r\n");
        assert!(d.decode().unwrap().is_none());
        assert!(!d.in_message());
        d.push(b"\r\nOPT");
        assert!(d.decode().unwrap().is_none());
        assert_eq!(d.take_pings(), 1);
        assert!(d.in_message());
        d.push(b"IONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n");
        assert!(d.decode().unwrap().is_some());
        assert!(!d.in_message());
    }

    #[test]
    fn a_malformed_message_is_skipped() {
        let mut d = StreamDecoder::new(ParseLimits::default());
        d.push(b"OPTIONS  sip:a@b SIP/2.0\r\nl: 0\r\n\r\nSIP/2.0 200 OK\r\nl: 0\r\n\r\n");
        let e = d.decode().unwrap_err();
        assert!(!e.is_framing());
        let raw = d.take_rejected().unwrap();
        assert!(raw.starts_with(b"OPTIONS  sip"));
        assert!(crate::bad_request_for(&raw, &e, &ParseLimits::default()).is_none());
        assert!(d.decode().unwrap().is_some());
    }
}
