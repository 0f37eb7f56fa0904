//! The auth-param grammar shared by challenges and credentials (RFC 3261 §25.1, RFC 7235 §2.1):
//! `scheme LWS param *(COMMA param)` where a param is `token EQUAL (token / quoted-string)`.
//!
//! The reader is lenient where real peers are — parameter names in any case, unquoted values
//! where quotes are due (a nonce with `/` or `=` in it included), empty list elements, several
//! challenges on one line (RFC 7235 allows it; SIP asks for one per line) — and strict where
//! leniency would be unsafe: quoted-strings end, escapes are complete, no CR or LF gets into a
//! value (a line fold, whose line end may be a bare LF, reads as one space), and other control
//! characters only as quoted-pairs. It is linear in the input and never panics. The writer
//! escapes `"`, `\` and control characters, and leaves out CR and LF.
//!
//! ```
//! use session_auth::Challenge;
//!
//! // Two challenges on one line, names in odd case, an escaped quote, an unknown parameter.
//! let line = r#"Digest REALM="a \"b\"", nonce=n1, x-vendor="?", Digest realm="c", nonce="n2""#;
//! let all: Vec<_> = Challenge::parse_all(line).into_iter().map(Result::unwrap).collect();
//! assert_eq!(all[0].realm, r#"a "b""#);
//! assert_eq!(all[1].nonce, "n2");
//! // Written back with the escapes.
//! assert!(all[0].to_string().starts_with(r#"Digest realm="a \"b\"", nonce="n1""#));
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::{Error, Result};

/// One auth-param, its value unquoted and unescaped.
#[derive(Debug)]
pub(crate) struct RawParam<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: Cow<'a, str>,
}

/// One challenge or credentials: the scheme and its parameters as written.
#[derive(Debug)]
pub(crate) struct RawAuth<'a> {
    pub(crate) scheme: &'a str,
    pub(crate) params: Vec<RawParam<'a>>,
}

impl RawAuth<'_> {
    pub(crate) fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }
}

/// Reads every challenge (or credentials) on one header line.
pub(crate) fn parse_list(input: &str) -> Result<Vec<RawAuth<'_>>> {
    let mut c = Cursor { s: input, pos: 0 };
    let mut out = Vec::new();
    c.skip_separators()?;
    while !c.eof() {
        let at = c.pos;
        let scheme = c.token();
        if scheme.is_empty() {
            return Err(c.error("expected an auth scheme", at));
        }
        let mut auth = RawAuth {
            scheme,
            // Credentials have about a dozen parameters.
            params: Vec::with_capacity(12),
        };
        let had_space = c.skip_lws()?;
        if !c.eof() && c.peek() != Some(b',') && !c.at_param() {
            // A token68 (`Bearer mF_9.B5f-4.1JqM`, `Negotiate abc==`): not Digest, kept only
            // so that the challenges after it on the line can still be read.
            if !had_space || c.token68().is_empty() {
                return Err(c.error("unexpected character", c.pos));
            }
            c.skip_lws()?;
            if !c.eof() && c.peek() != Some(b',') {
                return Err(c.error("expected a comma", c.pos));
            }
            c.skip_separators()?;
        } else {
            if !had_space && c.at_param() {
                return Err(c.error("expected a space after the scheme", c.pos));
            }
            while c.at_param() {
                let name = c.token();
                c.skip_lws()?;
                c.bump(); // the `=` that `at_param` saw
                c.skip_lws()?;
                let value = c.value()?;
                auth.params.push(RawParam { name, value });
                c.skip_lws()?;
                if c.eof() {
                    break;
                }
                if c.peek() != Some(b',') {
                    return Err(c.error("expected a comma", c.pos));
                }
                c.skip_separators()?;
            }
            // The loop ends at the end of the line or at the next challenge's scheme.
            c.skip_separators()?;
        }
        out.push(auth);
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

/// `token` characters (RFC 3261 §25.1), as a table.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Bytes that end a run of plain qdtext: `"`, `\`, and control characters but HTAB.
const QUOTED_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == b'"' as usize || i == b'\\' as usize || (i < 0x20 && i != 0x09) || i == 0x7f;
        i += 1;
    }
    t
};

/// The length of the run of plain qdtext at the start of `bytes`: up to the first `"`, `\\` or
/// control character other than HTAB.
fn plain_qdtext(bytes: &[u8]) -> usize {
    // The quote or backslash with SIMD, then one branch-free pass for control characters
    // (almost never there) before it.
    let end = memchr::memchr2(b'"', b'\\', bytes).unwrap_or(bytes.len());
    let run = bytes.get(..end).unwrap_or_default();
    let controls = run.iter().fold(false, |acc, &b| {
        acc | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    if controls {
        run.iter()
            .position(|&b| QUOTED_STOP[usize::from(b)])
            .unwrap_or(end)
    } else {
        end
    }
}

#[inline]
fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

impl<'a> Cursor<'a> {
    fn error(&self, what: &'static str, at: usize) -> Error {
        Error::Syntax { what, at }
    }

    fn eof(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, at: usize) -> Option<u8> {
        self.s.as_bytes().get(at).copied()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        // Callers only cut at ASCII bytes, which are char boundaries.
        self.s.get(from..to).unwrap_or_default()
    }

    /// The length of a line fold at `at` (CRLF, or a bare LF as lenient readers take it,
    /// followed by SP or HTAB), if there is one.
    fn fold_at(&self, at: usize) -> Option<usize> {
        let eol = match (self.peek_at(at), self.peek_at(at + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\n'), _) => 1,
            _ => return None,
        };
        matches!(self.peek_at(at + eol), Some(b' ' | b'\t')).then_some(eol + 1)
    }

    /// Skips linear white space (SP, HTAB, and a line fold); any other CR or LF is an error.
    /// Says whether anything was skipped.
    fn skip_lws(&mut self) -> Result<bool> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.bump(),
                Some(b'\r' | b'\n') => match self.fold_at(self.pos) {
                    Some(n) => self.pos += n,
                    None => return Err(self.error("bare CR or LF", self.pos)),
                },
                _ => return Ok(self.pos > start),
            }
        }
    }

    /// Skips white space and empty list elements.
    fn skip_separators(&mut self) -> Result<()> {
        loop {
            self.skip_lws()?;
            if self.peek() == Some(b',') {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_token_byte) {
            self.bump();
        }
        self.slice(start, self.pos)
    }

    fn token68(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        }) {
            self.bump();
        }
        while self.peek() == Some(b'=') {
            self.bump();
        }
        self.slice(start, self.pos)
    }

    /// Whether a `token LWS "="` starts here (without moving).
    fn at_param(&self) -> bool {
        let b = self.s.as_bytes();
        let mut i = self.pos;
        let start = i;
        while b.get(i).copied().is_some_and(is_token_byte) {
            i += 1;
        }
        if i == start {
            return false;
        }
        loop {
            match b.get(i) {
                Some(b' ' | b'\t') => i += 1,
                Some(b'\r' | b'\n') => match self.fold_at(i) {
                    Some(n) => i += n,
                    None => return false,
                },
                Some(b'=') => return true,
                _ => return false,
            }
        }
    }

    /// A quoted-string (unescaped) or an unquoted value.
    fn value(&mut self) -> Result<Cow<'a, str>> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        // Lenient: anything up to white space or a comma, so that unquoted nonces with `/`,
        // `+` or `=` (base64) and unquoted URIs are read as their senders meant them.
        let start = self.pos;
        let rest = self.s.as_bytes().get(start..).unwrap_or_default();
        self.pos += rest
            .iter()
            .position(|&b| matches!(b, b',' | b' ' | b'"') || b.is_ascii_control())
            .unwrap_or(rest.len());
        if self.pos == start {
            return Err(self.error("expected a value", start));
        }
        Ok(Cow::Borrowed(self.slice(start, self.pos)))
    }

    fn quoted(&mut self) -> Result<Cow<'a, str>> {
        let open = self.pos;
        self.bump();
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start; // start of the bytes not yet copied into `owned`
        loop {
            self.pos += plain_qdtext(self.s.as_bytes().get(self.pos..).unwrap_or_default());
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated quoted-string", open));
            };
            match b {
                b'"' => {
                    let value = match owned {
                        Some(mut s) => {
                            s.push_str(self.slice(run, self.pos));
                            Cow::Owned(s)
                        }
                        None => Cow::Borrowed(self.slice(start, self.pos)),
                    };
                    self.bump();
                    return Ok(value);
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(self.slice(run, self.pos));
                    self.bump();
                    let Some(escaped) = self.s.get(self.pos..).and_then(|r| r.chars().next())
                    else {
                        return Err(self.error("unterminated quoted-string", open));
                    };
                    if escaped == '\r' || escaped == '\n' {
                        return Err(self.error("CR or LF escaped in a quoted-string", self.pos));
                    }
                    s.push(escaped);
                    self.pos += escaped.len_utf8();
                    run = self.pos;
                }
                b'\r' | b'\n' => {
                    // A fold inside the quotes is one space (RFC 3261 §7.3.1).
                    let Some(n) = self.fold_at(self.pos) else {
                        return Err(self.error("bare CR or LF", self.pos));
                    };
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(self.slice(run, self.pos));
                    s.push(' ');
                    self.pos += n;
                    run = self.pos;
                }
                b'\t' => self.bump(),
                _ if b.is_ascii_control() => {
                    return Err(self.error("control character in a quoted-string", self.pos));
                }
                // Other ASCII and the bytes of UTF-8 characters (qdtext, UTF8-NONASCII).
                _ => self.bump(),
            }
        }
    }
}

/// Writes `s` as a quoted-string: `"` and `\` escaped, other control characters as
/// quoted-pairs; CR and LF, which no quoted-string can hold (RFC 3261 §25.1), are left out.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut run = 0;
    for (i, ch) in s.char_indices() {
        let escape = matches!(ch, '"' | '\\') || (ch.is_ascii_control() && ch != '\t');
        if escape || ch == '\r' || ch == '\n' {
            f.write_str(s.get(run..i).unwrap_or_default())?;
            if ch != '\r' && ch != '\n' {
                f.write_char('\\')?;
                f.write_char(ch)?;
            }
            run = i + ch.len_utf8();
        }
    }
    f.write_str(s.get(run..).unwrap_or_default())?;
    f.write_char('"')
}

/// Whether `s` is safe to send as a parameter value the application chose (no CR or LF).
pub(crate) fn is_header_safe(s: &str) -> bool {
    !s.contains(['\r', '\n'])
}

/// Takes each known parameter out of `params`, at most once each: `names[i]` (lowercase)
/// goes into `out[i]`.
pub(crate) fn collect<'a, const N: usize>(
    params: &mut [RawParam<'a>],
    names: [&'static str; N],
) -> Result<[Option<Cow<'a, str>>; N]> {
    let mut out: [Option<Cow<'a, str>>; N] = std::array::from_fn(|_| None);
    for p in params {
        // Names are short: lowercase once, then compare bytes.
        let mut lower = [0u8; 16];
        let Some(name) = lower.get_mut(..p.name.len()) else {
            continue;
        };
        name.copy_from_slice(p.name.as_bytes());
        name.make_ascii_lowercase();
        let same =
            |n: &&str| n.len() == name.len() && n.bytes().zip(name.iter()).all(|(a, b)| a == *b);
        if let Some(i) = names.iter().position(same) {
            match out.get_mut(i) {
                Some(slot @ None) => *slot = Some(std::mem::take(&mut p.value)),
                _ => return Err(Error::DuplicateParam(names.get(i).copied().unwrap_or(""))),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_values(input: &str) -> Vec<(String, Vec<(String, String)>)> {
        parse_list(input)
            .unwrap()
            .into_iter()
            .map(|a| {
                (
                    a.scheme.to_owned(),
                    a.params
                        .into_iter()
                        .map(|p| (p.name.to_owned(), p.value.into_owned()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn params_quoted_unquoted_and_escaped() {
        let got = names_values(
            "Digest  realm = \"a\\\\b\\\"c\" ,nonce=x/y+z==,,qop=\"auth,auth-int\",\r\n stale=TRUE",
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "Digest");
        let p = &got[0].1;
        assert_eq!(p[0], ("realm".into(), "a\\b\"c".into()));
        assert_eq!(p[1], ("nonce".into(), "x/y+z==".into()));
        assert_eq!(p[2], ("qop".into(), "auth,auth-int".into()));
        assert_eq!(p[3], ("stale".into(), "TRUE".into()));
    }

    #[test]
    fn several_challenges_and_token68() {
        let got = names_values(
            "Basic realm=\"x\", Bearer mF_9.B5f-4.1JqM==, Negotiate, Digest realm=\"r\", nonce=\"n\"",
        );
        let schemes: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "Negotiate", "Digest"]);
        assert_eq!(got[3].1.len(), 2);
    }

    #[test]
    fn folded_quoted_string_is_one_space() {
        let got = names_values("Digest realm=\"a\r\n\tb\"");
        assert_eq!(got[0].1[0].1, "a b");
        let got = names_values("Digest realm=\"a\n b\",\n nonce=n");
        assert_eq!(got[0].1[0].1, "a b");
        assert_eq!(got[0].1[1].1, "n");
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "Digest realm=\"open",
            "Digest realm=\"a\\",
            "Digest realm=\"a\\\r\n b\"",
            "Digest realm=\"a\nb\"",
            "Digest realm=\"a\0b\"",
            "Digest realm=a\r\nnonce=b",
            "Digest realm=\"a\" nonce=\"b\"",
            "Digest realm=",
            "Digest realm=,",
            "=x",
            "Digest,realm=x\n",
            "Digest realm=\"a\"\"b\"",
            "Digest@ realm=a",
        ] {
            assert!(parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoting_escapes_and_drops_line_breaks() {
        let mut s = String::new();
        write_quoted(&mut s, "a\"b\\c\r\nd\u{1}é").unwrap();
        assert_eq!(s, "\"a\\\"b\\\\cd\\\u{1}é\"");
        let line = format!("Digest x={s}");
        let back = parse_list(&line).unwrap();
        assert_eq!(back[0].params[0].value, "a\"b\\cd\u{1}é");
    }

    #[test]
    fn duplicates_are_refused() {
        let mut list = parse_list("Digest nonce=a, NONCE=b").unwrap();
        assert_eq!(
            collect(&mut list[0].params, ["nonce"]).unwrap_err(),
            Error::DuplicateParam("nonce")
        );
    }
}
