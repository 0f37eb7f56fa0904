//! Character classes and small scanners shared by the grammar code (RFC 3261 §25.1).

use std::borrow::Cow;
use std::fmt;

const fn token_class(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// [`is_token_byte`] for constant tables.
pub(crate) const fn is_token_byte_const(b: u8) -> bool {
    token_class(b)
}

static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = token_class(i as u8);
        i += 1;
    }
    t
};

/// The bytes of a generic-param value that is not quoted: a token or a host (RFC 3261 §25.1
/// `gen-value`; `[`, `]` and `:` for IPv6 references).
static PARAM_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = token_class(c) || c == b'[' || c == b']' || c == b':';
        i += 1;
    }
    t
};

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

// The byte searches of the parser run over short texts (a header line, a value, a URI), where
// `memchr` first picking its routine at run time costs as much as the search: on x86-64 they
// call the SSE2 routines (always there) directly.

/// The first `n` in `b` ([`memchr::memchr`]).
#[inline]
pub(crate) fn find_byte(n: u8, b: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(one) = memchr::arch::x86_64::sse2::memchr::One::new(n) {
        return one.find(b);
    }
    memchr::memchr(n, b)
}

/// The first `n1` or `n2` in `b` ([`memchr::memchr2`]).
#[inline]
pub(crate) fn find_byte2(n1: u8, n2: u8, b: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(two) = memchr::arch::x86_64::sse2::memchr::Two::new(n1, n2) {
        return two.find(b);
    }
    memchr::memchr2(n1, n2, b)
}

/// The first `n1`, `n2` or `n3` in `b` ([`memchr::memchr3`]).
#[inline]
pub(crate) fn find_byte3(n1: u8, n2: u8, n3: u8, b: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(three) = memchr::arch::x86_64::sse2::memchr::Three::new(n1, n2, n3) {
        return three.find(b);
    }
    memchr::memchr3(n1, n2, n3, b)
}

/// Where the first empty line (`CRLF CRLF`) starts in `b`; the searcher is built once.
pub(crate) fn find_blank_line(b: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(b)
}

/// A byte range within some text, kept small so parsed views can be cached in headers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Offsets above `u32::MAX` never occur: inputs are bounded by the parse limits and
    /// `uri::scan` refuses longer text.
    pub(crate) fn new(start: usize, end: usize) -> Self {
        let c = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        Self {
            start: c(start),
            end: c(end),
        }
    }

    /// The text of this span within `base` (empty if it does not fit).
    pub(crate) fn get(self, base: &str) -> &str {
        base.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    pub(crate) fn end(self) -> usize {
        self.end as usize
    }
}

/// A byte range within a header value, small enough to keep typed views cached in a
/// [`crate::Header`] of 64 bytes. Values longer than `u16::MAX` bytes get no cached view.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub(crate) struct Span16 {
    start: u16,
    end: u16,
}

impl Span16 {
    /// The span `start..end`.
    #[inline]
    pub(crate) fn new(start: u16, end: u16) -> Self {
        Self { start, end }
    }

    /// The span of `part`, a slice of `base`, when it fits in 16 bits.
    #[inline]
    pub(crate) fn of(base: &str, part: &str) -> Option<Self> {
        let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
        Some(Self {
            start: u16::try_from(start).ok()?,
            end: u16::try_from(start + part.len()).ok()?,
        })
    }

    /// The text of this span within `base` (empty if it does not fit).
    #[inline]
    pub(crate) fn get(self, base: &str) -> &str {
        base.get(usize::from(self.start)..usize::from(self.end))
            .unwrap_or_default()
    }
}

/// SP or HTAB.
pub(crate) const fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A non-empty run of token characters.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Trims SP and HTAB at both ends (header values are already unfolded).
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |i| i + 1);
    // Both ends sit next to ASCII bytes, so they are char boundaries.
    s.get(start..end.max(start)).unwrap_or_default()
}

/// The bytes [`quoted_end`] steps over one by one: all but `"`, `\\` and the control
/// characters other than HTAB.
static QDTEXT_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = !(c == b'"' || c == b'\\' || (c < 0x20 && c != b'\t') || c == 0x7F);
        i += 1;
    }
    t
};

/// Index just past the quoted-string starting at `start` (which must be `"`), or `None` when it
/// is unterminated, holds a control character other than HTAB (`qdtext` is LWS, %x21, %x23-5B,
/// %x5D-7E or UTF8-NONASCII: no NUL, RFC 3261 §25.1) or an illegal quoted-pair (`"\"` then
/// %x00-09 / %x0B-0C / %x0E-7F).
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start.checked_add(1)?;
    loop {
        // The plain qdtext first, by table.
        i = skip_table(s, i, &QDTEXT_PLAIN);
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if next > 0x7F || next == b'\r' || next == b'\n' {
                    return None;
                }
                i += 2;
            }
            0x00..=0x08 | 0x0A..=0x1F | 0x7F => return None,
            _ => i += 1,
        }
    }
}

/// Splits `s` on `sep` where it is outside quoted strings and angle brackets, trimming each
/// piece. Empty pieces are yielded, so callers can reject `a,,b`. Unbalanced quotes make the
/// last piece run to the end (the element parser then rejects it).
pub(crate) fn split_top_level(s: &str, sep: u8) -> SplitTop<'_> {
    SplitTop {
        s,
        pos: 0,
        done: false,
        sep,
    }
}

/// Iterator returned by [`split_top_level`].
pub(crate) struct SplitTop<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
    sep: u8,
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        // Jump between the only bytes that matter: the separator, `"` and `<`.
        while let Some(off) = bytes
            .get(i..)
            .and_then(|rest| find_byte3(self.sep, b'"', b'<', rest))
        {
            let at = i + off;
            match bytes.get(at) {
                Some(b'"') => match quoted_end(bytes, at) {
                    Some(end) => i = end,
                    None => break,
                },
                Some(b'<') => match bytes.get(at..).and_then(|r| find_byte(b'>', r)) {
                    Some(gt) => i = at + gt + 1,
                    None => break,
                },
                _ => {
                    self.pos = at + 1;
                    return self.s.get(start..at).map(trim);
                }
            }
        }
        self.done = true;
        self.s.get(start..).map(trim)
    }
}

/// The content of a quoted string with its quoted-pairs resolved; text that is not quoted is
/// returned as it is.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => inner,
        _ => return Cow::Borrowed(s),
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Wraps `s` in double quotes, escaping `"` and `\` (RFC 3261 §25.1 quoted-pair). CR and LF
/// cannot be represented and are dropped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Decodes `%HH` escapes. Invalid escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&x| hex_val(x)),
                b.get(i + 2).and_then(|&x| hex_val(x)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

/// Escapes every byte of `s` that `allowed` rejects as `%HH`.
pub(crate) fn percent_encode(s: &str, allowed: fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if allowed(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

pub(crate) const fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `%` in `s` is always followed by two hex digits.
#[cfg(test)]
pub(crate) fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(&h), Some(&l)) if hex_val(h).is_some() && hex_val(l).is_some() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Parses a decimal number made only of digits, rejecting overflow and empty input.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 40 {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Generic parameters (`;name[=value]`), as they stand after a header value or a URI.
///
/// The text is kept as written; iteration yields `(name, value)` with the LWS around `;` and
/// `=` removed and quoted values left quoted.
///
/// Parameters the parser checked may also know where their `tag` (From, To) or `branch`
/// (Via) is, so that reading it does not scan them again; equality and `Debug` look at the
/// text only.
#[derive(Clone, Copy, Default)]
pub struct Params<'a> {
    raw: &'a str,
    found: Found,
}

impl PartialEq for Params<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Params<'_> {}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params").field("raw", &self.raw).finish()
    }
}

/// A parameter whose place [`check_header_params_finding`] notes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) enum Lookup {
    /// None.
    #[default]
    None,
    /// `tag` (From, To).
    Tag,
    /// `branch` (Via).
    Branch,
}

impl Lookup {
    #[inline]
    const fn name(self) -> &'static [u8] {
        self.name_str().as_bytes()
    }

    #[inline]
    const fn name_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Tag => "tag",
            Self::Branch => "branch",
        }
    }
}

/// What [`Params::get`] gives for the name of `key`, found while the parameters were checked:
/// `at` is [`Spot::ABSENT`], [`Spot::NO_VALUE`] or the offsets of the value in the text.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Found {
    key: Lookup,
    at: Spot,
}

/// Where a looked-up parameter is, in four bytes (kept in a header's cached view): absent,
/// present without a value, or the value's offsets within the parameters' text (below
/// `u16::MAX`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Spot {
    start: u16,
    end: u16,
}

impl Spot {
    const ABSENT: Self = Self {
        start: u16::MAX,
        end: u16::MAX,
    };
    const NO_VALUE: Self = Self {
        start: u16::MAX,
        end: 0,
    };
}

impl Found {
    /// What `key` was found to be, to keep.
    pub(crate) fn spot(self) -> Option<Spot> {
        (self.key != Lookup::None).then_some(self.at)
    }

    /// A kept spot for `key`.
    pub(crate) fn of(key: Lookup, at: Option<Spot>) -> Self {
        match at {
            Some(at) => Self { key, at },
            None => Self::default(),
        }
    }
}

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        Self {
            raw,
            found: Found::default(),
        }
    }

    /// Where the parameter `key` is, when these parameters know it.
    pub(crate) fn found(&self, key: Lookup) -> Option<Spot> {
        if self.found.key == key {
            self.found.spot()
        } else {
            None
        }
    }

    /// Parameters that know where one of theirs is (from [`check_header_params_finding`] on
    /// this very text).
    pub(crate) fn with_found(raw: &'a str, found: Found) -> Self {
        Self { raw, found }
    }

    /// The parameters as written, starting with `;` (empty when there are none).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The parameter `name` (compared case-insensitively): `None` when absent, `Some(None)`
    /// when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        // Known from the check: the first parameter with this name (case folding is an
        // equivalence, so the parameters matching `name` are those matching the key).
        let key = self.found.key.name();
        if !key.is_empty() {
            if eq_ignore_case(name.as_bytes(), key) {
                if let Some(found) = self.noted() {
                    return found;
                }
            } else if self.sole() {
                return None;
            }
        }
        self.get_by_scan(name)
    }

    /// [`Params::get`] of the name of `key` (`tag` or `branch`): what the check noted when it
    /// noted this key, without comparing names.
    #[inline]
    pub(crate) fn get_key(&self, key: Lookup) -> Option<Option<&'a str>> {
        if key != Lookup::None
            && self.found.key == key
            && let Some(found) = self.noted()
        {
            return found;
        }
        self.get_by_scan(key.name_str())
    }

    /// Whether the noted parameter is the only one, written `;key=value` (its value starts
    /// right after `;key=` and ends the text: the check found nothing before it or after it),
    /// so that every other name is absent without a scan.
    #[inline]
    fn sole(&self) -> bool {
        let Spot { start, end } = self.found.at;
        usize::from(start) == self.found.key.name().len() + 2 && usize::from(end) == self.raw.len()
    }

    /// The noted parameter, when its spot is readable (`None`: scan instead).
    #[inline]
    fn noted(&self) -> Option<Option<Option<&'a str>>> {
        let Spot { start, end } = self.found.at;
        if self.found.at == Spot::ABSENT {
            return Some(None);
        }
        if self.found.at == Spot::NO_VALUE {
            return Some(Some(None));
        }
        self.raw
            .get(usize::from(start)..usize::from(end))
            .map(|v| Some(Some(v)))
    }

    /// [`Params::get`] by scanning the text.
    fn get_by_scan(&self, name: &str) -> Option<Option<&'a str>> {
        // One pass over the bytes; the hot path of the dialog layer (tag, branch). A value is
        // looked at only when its name matches.
        let raw = self.raw;
        let b = raw.as_bytes();
        let wanted = name.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b.get(i) == Some(&b';') {
                i += 1;
            }
            let name_start = skip_ws(b, i);
            let name_end = skip_class(b, name_start, is_token_byte);
            let matched = name_end - name_start == wanted.len()
                && b.get(name_start..name_end)
                    .is_some_and(|n| eq_ignore_case(n, wanted));
            let mut j = skip_ws(b, name_end);
            let mut value = None;
            if b.get(j) == Some(&b'=') {
                let start = skip_ws(b, j + 1);
                let end = if b.get(start) == Some(&b'"') {
                    quoted_end(b, start).unwrap_or(b.len())
                } else {
                    b.get(start..)
                        .and_then(|r| find_byte(b';', r))
                        .map_or(b.len(), |k| start + k)
                };
                if matched {
                    value = raw.get(start..end).map(trim);
                }
                j = end;
            }
            if matched {
                return Some(value);
            }
            // On to the next `;` (a malformed name or value is skipped).
            i = match b.get(j..).and_then(|r| find_byte(b';', r)) {
                Some(k) if j + k > i => j + k,
                Some(k) => j + k + 1,
                None => b.len(),
            };
        }
        None
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        let raw = self.raw.strip_prefix(';').unwrap_or(self.raw);
        split_top_level(raw, b';')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (trim(n), Some(trim(v))),
                None => (p, None),
            })
    }
}

/// `a.eq_ignore_ascii_case(b)` for slices of the same length, cheaper when they are equal
/// byte for byte (a parameter name is usually written as it is looked up).
#[inline]
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(&x, &y)| {
            // Equal, or the same letter in the other case.
            x == y || (x | 0x20 == y | 0x20 && (y | 0x20).is_ascii_lowercase())
        })
}

/// Index of the first byte at or after `i` that is not SP or HTAB.
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that `class` rejects.
#[inline]
pub(crate) fn skip_class(b: &[u8], mut i: usize, class: impl Fn(u8) -> bool) -> usize {
    while b.get(i).copied().is_some_and(&class) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that `table` rejects: [`skip_class`] with a byte
/// table, four bytes a step while all four are allowed (fewer instructions a byte on the long
/// runs: hosts, Call-IDs, parameter values, quoted strings), then byte by byte.
#[inline]
pub(crate) fn skip_table(b: &[u8], mut i: usize, table: &[bool; 256]) -> usize {
    while let Some(&[c0, c1, c2, c3]) = b.get(i..i.wrapping_add(4)) {
        let allowed = |c: u8| table[usize::from(c)];
        if !(allowed(c0) & allowed(c1) & allowed(c2) & allowed(c3)) {
            break;
        }
        i += 4;
    }
    while b.get(i).is_some_and(|&c| table[usize::from(c)]) {
        i += 1;
    }
    i
}

/// Whether header parameters are well formed ([`check_header_params_finding`] noting
/// nothing).
#[cfg(test)]
pub(crate) fn check_header_params(s: &str) -> bool {
    check_header_params_finding(s, Lookup::None).is_some()
}

/// Checks header parameters (`*( SEMI generic-param )`, RFC 3261 §25.1) in one pass: each is
/// a token, optionally `=` and a token, host or quoted-string, with LWS allowed around `;`
/// and `=`. `s` must start with `;` or be empty. On the way it notes where the first parameter
/// named as `key` is (what [`Params::get`] would find); `None` when the parameters are
/// malformed. For
/// well-formed parameters the scan of `get` visits the same parameters with the same bounds:
/// a value runs to its closing quote, or over value bytes up to the LWS before the next `;`.
#[inline(always)]
pub(crate) fn check_header_params_finding(s: &str, key: Lookup) -> Option<Found> {
    let b = s.as_bytes();
    let wanted = key.name();
    let mut at = Spot::ABSENT;
    // Whether `at` can be kept (its offsets fit below `u16::MAX`).
    let mut keep = true;
    let mut looking = !wanted.is_empty();
    let mut i = 0;
    while i < b.len() {
        if b.get(i) != Some(&b';') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let name_start = i;
        let name_end = skip_class(b, i, is_token_byte);
        if name_end == i {
            return None;
        }
        let matched = looking
            && name_end - name_start == wanted.len()
            && b.get(name_start..name_end)
                .is_some_and(|n| eq_ignore_case(n, wanted));
        i = skip_ws(b, name_end);
        if b.get(i) == Some(&b'=') {
            i = skip_ws(b, i + 1);
            let start = i;
            if b.get(i) == Some(&b'"') {
                i = quoted_end(b, i)?;
            } else {
                let end = skip_table(b, i, &PARAM_VALUE);
                if end == i {
                    return None;
                }
                i = end;
            }
            if matched {
                // Offsets that do not fit below `u16::MAX` are not kept (`get` scans then).
                match (u16::try_from(start), u16::try_from(i)) {
                    (Ok(start), Ok(end)) if end < u16::MAX => at = Spot { start, end },
                    _ => keep = false,
                }
            }
            i = skip_ws(b, i);
        } else if matched {
            at = Spot::NO_VALUE;
        }
        looking &= !matched;
    }
    Some(Found::of(key, keep.then_some(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_brackets() {
        let v: Vec<_> = split_top_level(r#""a,b" <sip:x;y,z>, c , ,d"#, b',').collect();
        assert_eq!(v, [r#""a,b" <sip:x;y,z>"#, "c", "", "d"]);
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(quoted_end(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(quoted_end(br#""abc"#, 0), None);
        assert_eq!(quoted_end(b"\"\\\x00\"", 0), Some(4));
        assert_eq!(quoted_end(b"\"a\x00b\"", 0), None, "NUL is no qdtext");
        assert_eq!(quoted_end(b"\"a\tb\"", 0), Some(5), "HTAB is LWS");
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(unquote(&quote("x\"\\y")), "x\"\\y");
    }

    #[test]
    fn escapes() {
        assert_eq!(&*percent_decode("%75se%72"), b"user");
        assert_eq!(&*percent_decode("null-%00-"), b"null-\0-");
        assert_eq!(&*percent_decode("%zz"), b"%zz");
        assert!(escapes_ok(b"a%20b"));
        assert!(!escapes_ok(b"a%2"));
        assert!(!escapes_ok(b"%Z%45"));
        assert_eq!(
            percent_encode("a b", |c| c.is_ascii_alphanumeric()),
            "a%20b"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0068"), Some(68));
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64("36893488147419103232"), None);
        assert_eq!(parse_u64(""), None);
    }

    #[test]
    fn params() {
        let p = Params::new(";   tag    = 1918181833n ; lr; q=\"a;b\"");
        assert_eq!(p.get("TAG"), Some(Some("1918181833n")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("q"), Some(Some("\"a;b\"")));
        assert!(check_header_params(";a=b;c;d=\"x y\";e=[::1]"));
        assert!(!check_header_params(";;"));
        assert!(!check_header_params(";a=b;"));
        assert!(!check_header_params("a"));
    }
}

#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;

    /// `quoted_end` as it was before it stepped over plain bytes by table.
    fn quoted_end_reference(s: &[u8], start: usize) -> Option<usize> {
        let mut i = start.checked_add(1)?;
        loop {
            match *s.get(i)? {
                b'"' => return Some(i + 1),
                b'\\' => {
                    let next = *s.get(i + 1)?;
                    if next > 0x7F || next == b'\r' || next == b'\n' {
                        return None;
                    }
                    i += 2;
                }
                0x00..=0x08 | 0x0A..=0x1F | 0x7F => return None,
                _ => i += 1,
            }
        }
    }

    /// `check_header_params` as it was before its value bytes came from a table.
    fn check_header_params_reference(s: &str) -> bool {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b.get(i) != Some(&b';') {
                return false;
            }
            i = skip_ws(b, i + 1);
            let name_end = skip_class(b, i, is_token_byte);
            if name_end == i {
                return false;
            }
            i = skip_ws(b, name_end);
            if b.get(i) == Some(&b'=') {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'"') {
                    match quoted_end(b, i) {
                        Some(end) => i = end,
                        None => return false,
                    }
                } else {
                    let end = skip_class(b, i, |c| {
                        is_token_byte(c) || c == b'[' || c == b']' || c == b':'
                    });
                    if end == i {
                        return false;
                    }
                    i = end;
                }
                i = skip_ws(b, i);
            }
        }
        true
    }

    /// `Params::get` as it was before it skipped the values of other names.
    fn get_reference<'a>(raw: &'a str, name: &str) -> Option<Option<&'a str>> {
        let b = raw.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b.get(i) == Some(&b';') {
                i += 1;
            }
            let name_start = skip_ws(b, i);
            let name_end = skip_class(b, name_start, is_token_byte);
            let mut j = skip_ws(b, name_end);
            let mut value = None;
            if b.get(j) == Some(&b'=') {
                let start = skip_ws(b, j + 1);
                let end = if b.get(start) == Some(&b'"') {
                    quoted_end(b, start).unwrap_or(b.len())
                } else {
                    b.get(start..)
                        .and_then(|r| r.iter().position(|&c| c == b';'))
                        .map_or(b.len(), |k| start + k)
                };
                value = raw.get(start..end).map(trim);
                j = end;
            }
            if raw
                .get(name_start..name_end)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            {
                return Some(value);
            }
            i = match b.get(j..).and_then(|r| r.iter().position(|&c| c == b';')) {
                Some(k) if j + k > i => j + k,
                Some(k) => j + k + 1,
                None => b.len(),
            };
        }
        None
    }

    proptest! {
        /// `skip_table` stops where the byte-by-byte `skip_class` over the same table stops.
        #[test]
        fn table_runs_end_as_byte_by_byte(
            bytes in proptest::collection::vec(prop::sample::select(
                b"aZ09-.!%*_+`'~;:=\"\\ \t\r\n<>,@[]/?{}()\x00\x7f\xc3\xa9".to_vec()), 0..40),
            start in 0usize..44,
            which in 0usize..6,
        ) {
            let tables: [&[bool; 256]; 6] = [
                &TOKEN,
                &PARAM_VALUE,
                &QDTEXT_PLAIN,
                &crate::headers::CALL_ID_WORD,
                &crate::headers::VIA_HOST,
                &crate::headers::DISPLAY_TOKEN,
            ];
            let table = tables[which];
            prop_assert_eq!(
                skip_table(&bytes, start, table),
                skip_class(&bytes, start, |c| table[usize::from(c)])
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn get_matches_the_reference(
            body in proptest::collection::vec(prop::sample::select(
                b"tagTAGbranch;= \t\"\\,x1\xc3\xa9".to_vec()), 0..30),
            name in prop::sample::select(vec!["tag", "branch", "x", "", "TAG"]),
        ) {
            let raw = String::from_utf8_lossy(&body).into_owned();
            prop_assert_eq!(Params::new(&raw).get(name), get_reference(&raw, name));
        }

        #[test]
        fn case_folding_matches_std(a in any::<[u8; 3]>(), b in any::<[u8; 3]>(), same in any::<bool>()) {
            let b = if same { a.map(|c| if c.is_ascii_alphabetic() { c ^ 0x20 } else { c }) } else { b };
            prop_assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b));
            prop_assert_eq!(eq_ignore_case(&a, &a), true);
        }

        #[test]
        fn quoted_strings_end_as_before(
            body in proptest::collection::vec(prop::sample::select(
                b"\"\"\\\\ \ta\x00\x01\x7f\r\n\xc3\xa9\x80x;".to_vec()), 0..24),
            start in 0usize..3,
        ) {
            prop_assert_eq!(quoted_end(&body, start), quoted_end_reference(&body, start));
        }

        #[test]
        fn header_params_check_as_before(
            body in proptest::collection::vec(prop::sample::select(
                b";;;==  \t\"\\[]:,x1.-_tagTAG\xc3\xa9\x00\x7f".to_vec()), 0..40),
        ) {
            let raw = String::from_utf8_lossy(&body).into_owned();
            prop_assert_eq!(check_header_params(&raw), check_header_params_reference(&raw));
        }

        /// A tag past 64 KiB is not kept, and read by scanning.
        #[test]
        fn far_parameters_are_scanned(at in 65_500usize..65_600) {
            let raw = format!(";x={};tag=1;branch", "a".repeat(at));
            let found = check_header_params_finding(&raw, Lookup::Tag).unwrap();
            // The value `1` starts at `at + 8`.
            if at + 9 >= usize::from(u16::MAX) {
                prop_assert_eq!(found.spot(), None);
            }
            prop_assert_eq!(Params::with_found(&raw, found).get("tag"), Some(Some("1")));
            prop_assert_eq!(Params::with_found(&raw, found).get_key(Lookup::Tag), Some(Some("1")));
            let found = check_header_params_finding(&raw, Lookup::Branch).unwrap();
            prop_assert_eq!(Params::with_found(&raw, found).get("branch"), Some(None));
        }

        /// What the check notes about `tag` or `branch` is what scanning would find.
        #[test]
        fn found_parameters_read_as_scanned(
            parts in proptest::collection::vec((
                prop::sample::select(vec!["tag", "TAG", "Tag", "branch", "BRANCH", "rport", "ta", "tags", "x"]),
                prop::sample::select(vec!["", "=1", "=a;", " = z9hG4bK1 ", "=\"q;uo\\\"te\"", "=[::1]", "= ", "==", "=\""]),
                prop::sample::select(vec![";", " ;", "; ", ";\t"]),
            ), 0..5),
        ) {
            let mut raw = String::new();
            for (name, value, semi) in parts {
                raw.push_str(semi);
                raw.push_str(name);
                raw.push_str(value);
            }
            for key in [Lookup::Tag, Lookup::Branch, Lookup::None] {
                let found = check_header_params_finding(&raw, key);
                prop_assert_eq!(found.is_some(), check_header_params_reference(&raw));
                let Some(found) = found else { continue };
                let with = Params::with_found(&raw, found);
                let plain = Params::new(&raw);
                for name in ["tag", "TAG", "tAg", "branch", "Branch", "rport", "x", ""] {
                    prop_assert_eq!(with.get(name), plain.get(name), "{} in {:?}", name, raw);
                    prop_assert_eq!(with.get(name), get_reference(&raw, name));
                }
                // By key, with or without what the check noted.
                for k in [Lookup::Tag, Lookup::Branch] {
                    let name = k.name_str();
                    prop_assert_eq!(with.get_key(k), get_reference(&raw, name));
                    prop_assert_eq!(plain.get_key(k), get_reference(&raw, name));
                }
            }
        }
    }
}
