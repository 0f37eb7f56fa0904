//! Digest challenges: the value of a `WWW-Authenticate` (401) or `Proxy-Authenticate` (407)
//! header (RFC 3261 §22.1, RFC 7616 §3.3, RFC 8760 §2.4).
//!
//! ```
//! use session_auth::{Algorithm, Challenge, Qop};
//!
//! let c = Challenge::parse(
//!     r#"Digest realm="atlanta.example.com", domain="sip:ss1.example.com", qop="auth,auth-int",
//!        nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=TRUE, algorithm=sha-256"#,
//! )?;
//! assert_eq!(c.realm, "atlanta.example.com");
//! assert_eq!(c.algorithm, Algorithm::Sha256);
//! assert_eq!(c.qop, [Qop::Auth, Qop::AuthInt]);
//! assert!(c.stale);
//! assert_eq!(c.opaque.as_deref(), Some(""));
//!
//! // Written the way RFC 7616 writes it, and read back the same.
//! let text = c.to_string();
//! assert!(text.contains("algorithm=SHA-256"));
//! assert_eq!(Challenge::parse(&text)?, c);
//! # Ok::<(), session_auth::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::params::{self, RawAuth, write_quoted};
use crate::{Algorithm, Error, Qop, Result};

/// One Digest challenge.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Challenge {
    /// `realm`: which credentials to use (required).
    pub realm: String,
    /// `domain`: the URIs the credentials cover, space-separated, as written.
    pub domain: Option<String>,
    /// `nonce` (required).
    pub nonce: String,
    /// `opaque`: returned unchanged in the credentials.
    pub opaque: Option<String>,
    /// `stale`: the previous credentials were right but their nonce is no longer accepted;
    /// retry with this nonce without asking the user again.
    pub stale: bool,
    /// `algorithm`; [`Algorithm::Md5`] when absent.
    pub algorithm: Algorithm,
    /// `qop` options this crate knows, in the server's order (unknown ones are dropped); empty
    /// when the challenge has none (the RFC 2069 form).
    pub qop: Vec<Qop>,
    /// `userhash=true` (RFC 7616 §3.4.4): the server accepts a hashed username. Parsed, not
    /// used: credentials from this crate always carry the username in clear.
    pub userhash: bool,
}

impl Challenge {
    /// A challenge with the required parameters, MD5, no qop; set the other fields as needed.
    pub fn new(realm: impl Into<String>, nonce: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            domain: None,
            nonce: nonce.into(),
            opaque: None,
            stale: false,
            algorithm: Algorithm::Md5,
            qop: Vec::new(),
            userhash: false,
        }
    }

    /// Parses a header value and returns its first Digest challenge (normally its only one);
    /// if it has none, the error of its first challenge.
    pub fn parse(value: &str) -> Result<Self> {
        let mut first_error = None;
        for c in Self::parse_all(value) {
            match c {
                Ok(c) => return Ok(c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(Error::MissingParam("realm")))
    }

    /// Parses every challenge on a header line, one result each in order: a challenge of
    /// another scheme is [`Error::UnsupportedScheme`], a Digest challenge with an unknown
    /// algorithm [`Error::UnsupportedAlgorithm`]. A line that does not follow the grammar
    /// gives a single error.
    pub fn parse_all(value: &str) -> Vec<Result<Self>> {
        match params::parse_list(value) {
            Ok(list) => list.into_iter().map(Self::from_raw).collect(),
            Err(e) => vec![Err(e)],
        }
    }

    fn from_raw(mut raw: RawAuth<'_>) -> Result<Self> {
        if !raw.is_digest() {
            return Err(Error::UnsupportedScheme(Error::clipped(raw.scheme)));
        }
        let [
            realm,
            domain,
            nonce,
            opaque,
            stale,
            algorithm,
            qop,
            userhash,
        ] = params::collect(
            &mut raw.params,
            [
                "realm",
                "domain",
                "nonce",
                "opaque",
                "stale",
                "algorithm",
                "qop",
                "userhash",
            ],
        )?;
        let realm = realm.ok_or(Error::MissingParam("realm"))?;
        let nonce = nonce.ok_or(Error::MissingParam("nonce"))?;
        if nonce.is_empty() {
            return Err(Error::InvalidParam {
                name: "nonce",
                what: "empty",
            });
        }
        let algorithm = match algorithm {
            Some(a) => a.trim().parse()?,
            None => Algorithm::Md5,
        };
        let qop = match qop {
            Some(list) => {
                let mut known = Vec::new();
                for q in list.split(',').filter_map(|t| Qop::from_token(t.trim())) {
                    if !known.contains(&q) {
                        known.push(q);
                    }
                }
                if known.is_empty() {
                    return Err(Error::UnsupportedQop(Error::clipped(&list)));
                }
                known
            }
            None => Vec::new(),
        };
        let is_true =
            |v: Option<Cow<'_, str>>| v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Ok(Self {
            realm: realm.into_owned(),
            domain: domain.map(Cow::into_owned),
            nonce: nonce.into_owned(),
            opaque: opaque.map(Cow::into_owned),
            // RFC 2617 §3.2.1: anything but TRUE (any case) is false.
            stale: is_true(stale),
            algorithm,
            qop,
            userhash: is_true(userhash),
        })
    }
}

impl fmt::Display for Challenge {
    /// `Digest realm="…", [domain="…", ]nonce="…", [opaque="…", ][stale=TRUE, ]algorithm=…[,
    /// qop="…"][, userhash=true]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest realm=")?;
        write_quoted(f, &self.realm)?;
        if let Some(domain) = &self.domain {
            f.write_str(", domain=")?;
            write_quoted(f, domain)?;
        }
        f.write_str(", nonce=")?;
        write_quoted(f, &self.nonce)?;
        if let Some(opaque) = &self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if self.stale {
            f.write_str(", stale=TRUE")?;
        }
        write!(f, ", algorithm={}", self.algorithm)?;
        if !self.qop.is_empty() {
            f.write_str(", qop=\"")?;
            for (i, q) in self.qop.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(q.as_str())?;
            }
            f.write_str("\"")?;
        }
        if self.userhash {
            f.write_str(", userhash=true")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3261_example_challenge() {
        // RFC 3261 §20.44 (WWW-Authenticate example).
        let c = Challenge::parse(
            "Digest realm=\"atlanta.com\", domain=\"sip:boxesbybob.com\", qop=\"auth\", \
             nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=MD5",
        )
        .unwrap();
        assert_eq!(c.realm, "atlanta.com");
        assert_eq!(c.domain.as_deref(), Some("sip:boxesbybob.com"));
        assert_eq!(c.qop, [Qop::Auth]);
        assert!(!c.stale);
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
    }

    #[test]
    fn defaults_and_unknown_parameters() {
        let c = Challenge::parse("digest NONCE=abc, Realm=r, charset=UTF-8, foo=\"bar\"").unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop.is_empty());
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("r", "abc"));
        let c = Challenge::parse(
            "Digest realm=r, nonce=n, qop=\"auth-conf, AUTH-INT\", userhash=TRUE, stale=yes",
        )
        .unwrap();
        assert_eq!(c.qop, [Qop::AuthInt]);
        assert!(c.userhash);
        assert!(!c.stale);
    }

    #[test]
    fn unusable_challenges() {
        let e = |s: &str| Challenge::parse(s).unwrap_err();
        assert_eq!(e("Digest nonce=n"), Error::MissingParam("realm"));
        assert_eq!(e("Digest realm=r"), Error::MissingParam("nonce"));
        assert_eq!(
            e("Digest realm=r, nonce=\"\""),
            Error::InvalidParam {
                name: "nonce",
                what: "empty"
            }
        );
        assert_eq!(
            e("Digest realm=r, realm=s, nonce=n"),
            Error::DuplicateParam("realm")
        );
        assert_eq!(
            e("Digest realm=r, nonce=n, algorithm=SHA-1"),
            Error::UnsupportedAlgorithm("SHA-1".into())
        );
        assert_eq!(
            e("Digest realm=r, nonce=n, qop=\"auth-conf\""),
            Error::UnsupportedQop("auth-conf".into())
        );
        assert_eq!(
            e("Basic realm=\"r\""),
            Error::UnsupportedScheme("Basic".into())
        );
        assert_eq!(e(""), Error::MissingParam("realm"));
    }

    #[test]
    fn parse_picks_the_first_digest_challenge_on_a_line() {
        let line = "Basic realm=\"b\", Digest realm=\"d\", nonce=\"n\", algorithm=SHA-512-256";
        let c = Challenge::parse(line).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha512_256);
        let all = Challenge::parse_all(line);
        assert_eq!(all.len(), 2);
        assert!(all[0].is_err());
    }
}
