//! Digest algorithms (RFC 7616 §3.2, RFC 8760 §2.1), qualities of protection and the response
//! computation (RFC 7616 §3.4.1–§3.4.3, RFC 2617 §3.2.2).
//!
//! Three hash functions — MD5, SHA-256 and SHA-512/256 — each with a `-sess` variant that
//! hashes the nonce and cnonce into HA1. An [`Ha1`] is `H(username ":" realm ":" password)`,
//! what a server stores instead of the password.
//!
//! ```
//! use session_auth::{Algorithm, Ha1, HashFunction, Qop};
//!
//! let alg: Algorithm = "sha-256-SESS".parse()?; // tokens are case-insensitive
//! assert_eq!(alg, Algorithm::Sha256Sess);
//! assert_eq!(alg.to_string(), "SHA-256-sess");
//! assert_eq!(alg.hash(), HashFunction::Sha256);
//! assert!(Algorithm::Sha512_256.hash() > Algorithm::Md5.hash()); // stronger sorts higher
//! assert_eq!("auth-int".parse::<Qop>()?, Qop::AuthInt);
//!
//! // RFC 2617 §3.5: HA1 for Mufasa.
//! let ha1 = Ha1::from_password(HashFunction::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
//! assert_eq!(ha1.as_hex(), "939e7578ed9e3c518a452acee763bce9");
//! # Ok::<(), session_auth::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512Trunc256};

use crate::{Error, Result};

/// A hash function of digest authentication, ordered by strength (`Md5 < Sha256 < Sha512_256`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[non_exhaustive]
pub enum HashFunction {
    /// MD5 (RFC 1321); kept for backward compatibility only (RFC 8760 §2.1).
    Md5,
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// SHA-512/256 (FIPS 180-4): SHA-512 with its own initial values, truncated to 256 bits.
    Sha512_256,
}

impl HashFunction {
    /// The length of its digest in hex digits (32 or 64).
    pub const fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 | Self::Sha512_256 => 64,
        }
    }

    /// The algorithm that uses this hash, plain or `-sess`.
    pub const fn algorithm(self, session: bool) -> Algorithm {
        match (self, session) {
            (Self::Md5, false) => Algorithm::Md5,
            (Self::Md5, true) => Algorithm::Md5Sess,
            (Self::Sha256, false) => Algorithm::Sha256,
            (Self::Sha256, true) => Algorithm::Sha256Sess,
            (Self::Sha512_256, false) => Algorithm::Sha512_256,
            (Self::Sha512_256, true) => Algorithm::Sha512_256Sess,
        }
    }

    /// The hex digest of the concatenation of `parts`.
    pub(crate) fn hex(self, parts: &[&[u8]]) -> HexDigest {
        match self {
            Self::Md5 => digest_hex::<Md5>(parts),
            Self::Sha256 => digest_hex::<Sha256>(parts),
            Self::Sha512_256 => digest_hex::<Sha512Trunc256>(parts),
        }
    }
}

fn digest_hex<D: Digest>(parts: &[&[u8]]) -> HexDigest {
    let mut d = D::new();
    for p in parts {
        d.update(p);
    }
    HexDigest::encode(&d.finalize())
}

/// The `algorithm` of a challenge or credentials (RFC 7616 §3.3, RFC 8760 §2.1).
///
/// Parsing is case-insensitive; an absent `algorithm` means [`Algorithm::Md5`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5`.
    #[default]
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm, strongest first, plain before `-sess`.
    pub const ALL: [Self; 6] = [
        Self::Sha512_256,
        Self::Sha512_256Sess,
        Self::Sha256,
        Self::Sha256Sess,
        Self::Md5,
        Self::Md5Sess,
    ];

    /// The token as RFC 7616 writes it (`SHA-256`, `MD5-sess`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// The hash function it uses.
    pub const fn hash(self) -> HashFunction {
        match self {
            Self::Md5 | Self::Md5Sess => HashFunction::Md5,
            Self::Sha256 | Self::Sha256Sess => HashFunction::Sha256,
            Self::Sha512_256 | Self::Sha512_256Sess => HashFunction::Sha512_256,
        }
    }

    /// Whether it is a `-sess` variant (HA1 also covers the nonce and cnonce).
    pub const fn is_session(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// Recognizes a token, case-insensitively.
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token))
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_token(s).ok_or_else(|| Error::UnsupportedAlgorithm(Error::clipped(s)))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 7616 §3.3): `auth`, or `auth-int`, which also covers the body.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Qop {
    /// `auth`: method and URI are covered.
    Auth,
    /// `auth-int`: method, URI and a hash of the body are covered.
    AuthInt,
}

impl Qop {
    /// The token (`auth`, `auth-int`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::AuthInt => "auth-int",
        }
    }

    /// Recognizes a token, case-insensitively.
    pub fn from_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("auth") {
            Some(Self::Auth)
        } else if token.eq_ignore_ascii_case("auth-int") {
            Some(Self::AuthInt)
        } else {
            None
        }
    }
}

impl FromStr for Qop {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_token(s).ok_or_else(|| Error::UnsupportedQop(Error::clipped(s)))
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lowercase hex digest of up to 256 bits, kept on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl HexDigest {
    fn encode(bytes: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        let mut len = 0;
        for (&b, pair) in bytes.iter().zip(buf.chunks_exact_mut(2)) {
            if let [hi, lo] = pair {
                *hi = DIGITS[usize::from(b >> 4)];
                *lo = DIGITS[usize::from(b & 0x0f)];
                len += 2;
            }
        }
        Self { buf, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into `buf[..len]`, so this cannot fail.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

/// HA1 = `H(username ":" realm ":" password)` (RFC 7616 §3.4.2) for one hash function: what a
/// server keeps instead of the password, and what a client may be given instead of one.
///
/// `Debug` does not show the digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1 {
    hash: HashFunction,
    hex: HexDigest,
}

impl Ha1 {
    /// Computes HA1 from the password.
    pub fn from_password(hash: HashFunction, username: &str, realm: &str, password: &str) -> Self {
        Self {
            hash,
            hex: hash.hex(&[
                username.as_bytes(),
                b":",
                realm.as_bytes(),
                b":",
                password.as_bytes(),
            ]),
        }
    }

    /// Takes a stored HA1 in hex (either case); it must be a digest of `hash`'s length.
    pub fn from_hex(hash: HashFunction, hex: &str) -> Result<Self> {
        if hex.len() != hash.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(
                "HA1 is not a hex digest of its hash's length",
            ));
        }
        let mut buf = [0u8; 64];
        for (dst, src) in buf.iter_mut().zip(hex.bytes()) {
            *dst = src.to_ascii_lowercase();
        }
        Ok(Self {
            hash,
            hex: HexDigest {
                buf,
                len: hex.len(),
            },
        })
    }

    /// The hash function it was computed with.
    pub fn hash(&self) -> HashFunction {
        self.hash
    }

    /// The digest in lowercase hex.
    pub fn as_hex(&self) -> &str {
        self.hex.as_str()
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({:?}, <redacted>)", self.hash)
    }
}

/// What goes into one `response` value (RFC 7616 §3.4.1).
pub(crate) struct ResponseInput<'a> {
    pub(crate) algorithm: Algorithm,
    /// HA1 for `algorithm.hash()`; a mismatch is the caller's bug and gives a wrong answer.
    pub(crate) ha1: &'a Ha1,
    pub(crate) nonce: &'a str,
    pub(crate) cnonce: &'a str,
    pub(crate) nc: u32,
    /// `None`: the RFC 2069 form without cnonce and nc.
    pub(crate) qop: Option<Qop>,
    pub(crate) method: &'a str,
    pub(crate) uri: &'a str,
    pub(crate) body: &'a [u8],
}

impl ResponseInput<'_> {
    /// The `response` value in lowercase hex.
    pub(crate) fn compute(&self) -> HexDigest {
        let h = self.algorithm.hash();
        let session_ha1;
        let ha1 = if self.algorithm.is_session() {
            // RFC 7616 §3.4.2: A1 = H(user:realm:passwd) ":" nonce ":" cnonce.
            session_ha1 = h.hex(&[
                self.ha1.as_hex().as_bytes(),
                b":",
                self.nonce.as_bytes(),
                b":",
                self.cnonce.as_bytes(),
            ]);
            session_ha1.as_str()
        } else {
            self.ha1.as_hex()
        };
        // RFC 7616 §3.4.3: A2 = Method ":" request-uri [":" H(entity-body)].
        let ha2 = if self.qop == Some(Qop::AuthInt) {
            let body = h.hex(&[self.body]);
            h.hex(&[
                self.method.as_bytes(),
                b":",
                self.uri.as_bytes(),
                b":",
                body.as_str().as_bytes(),
            ])
        } else {
            h.hex(&[self.method.as_bytes(), b":", self.uri.as_bytes()])
        };
        match self.qop {
            Some(qop) => {
                let nc = NcText::new(self.nc);
                h.hex(&[
                    ha1.as_bytes(),
                    b":",
                    self.nonce.as_bytes(),
                    b":",
                    nc.as_bytes(),
                    b":",
                    self.cnonce.as_bytes(),
                    b":",
                    qop.as_str().as_bytes(),
                    b":",
                    ha2.as_str().as_bytes(),
                ])
            }
            // RFC 2069 compatibility (RFC 2617 §3.2.2.1).
            None => h.hex(&[
                ha1.as_bytes(),
                b":",
                self.nonce.as_bytes(),
                b":",
                ha2.as_str().as_bytes(),
            ]),
        }
    }
}

/// `nc` as eight lowercase hex digits, without allocating.
pub(crate) struct NcText([u8; 8]);

impl NcText {
    pub(crate) fn new(nc: u32) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 8];
        for (i, d) in out.iter_mut().enumerate() {
            let shift = 28 - 4 * i;
            *d = DIGITS[((nc >> shift) & 0xf) as usize];
        }
        Self(out)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Compares a computed lowercase hex digest with a received one (hex digits in either case)
/// in time that does not depend on where they differ.
pub(crate) fn hex_eq(expected: &str, received: &str) -> bool {
    if expected.len() != received.len() {
        return false;
    }
    let diff = expected
        .bytes()
        .zip(received.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()));
    diff == 0
}

/// Compares two byte strings in time that does not depend on where they differ.
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_case_insensitively() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>().unwrap(), a);
            assert_eq!(
                a.as_str()
                    .to_ascii_lowercase()
                    .parse::<Algorithm>()
                    .unwrap(),
                a
            );
            assert_eq!(a.hash().algorithm(a.is_session()), a);
        }
        assert!(matches!(
            "SHA-1".parse::<Algorithm>(),
            Err(Error::UnsupportedAlgorithm(t)) if t == "SHA-1"
        ));
        assert_eq!("AUTH".parse::<Qop>().unwrap(), Qop::Auth);
        assert!("auth-conf".parse::<Qop>().is_err());
    }

    #[test]
    fn hashes_match_known_digests() {
        assert_eq!(
            HashFunction::Md5.hex(&[b""]).as_str(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            HashFunction::Sha256.hex(&[b"a", b"bc"]).as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // FIPS 180-4 example for SHA-512/256("abc").
        assert_eq!(
            HashFunction::Sha512_256.hex(&[b"abc"]).as_str(),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
    }

    #[test]
    fn ha1_from_hex_checks_length_and_digits() {
        let ha1 = Ha1::from_password(HashFunction::Sha256, "u", "r", "p");
        let upper = ha1.as_hex().to_ascii_uppercase();
        assert_eq!(Ha1::from_hex(HashFunction::Sha256, &upper).unwrap(), ha1);
        assert!(Ha1::from_hex(HashFunction::Md5, ha1.as_hex()).is_err());
        assert!(Ha1::from_hex(HashFunction::Md5, &"g".repeat(32)).is_err());
        assert!(!format!("{ha1:?}").contains(ha1.as_hex()));
    }

    #[test]
    fn nc_text_and_comparisons() {
        assert_eq!(NcText::new(1).as_bytes(), b"00000001");
        assert_eq!(NcText::new(0xdead_beef).as_bytes(), b"deadbeef");
        assert!(hex_eq("ab12", "AB12"));
        assert!(!hex_eq("ab12", "ab13"));
        assert!(!hex_eq("ab12", "ab1"));
        assert!(bytes_eq(b"xy", b"xy"));
        assert!(!bytes_eq(b"xy", b"xz"));
    }
}
