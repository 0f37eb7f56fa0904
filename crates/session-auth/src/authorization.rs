//! Digest credentials: the value of an `Authorization` or `Proxy-Authorization` header
//! (RFC 3261 §22.2–§22.3, RFC 7616 §3.4), and the `response` they must carry.
//!
//! ```
//! use session_auth::{Authorization, Ha1, HashFunction};
//!
//! // RFC 7616 §3.9.1, the SHA-256 credentials.
//! let auth = Authorization::parse(
//!     r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html",
//!        algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001,
//!        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth,
//!        response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
//!        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
//! )?;
//! let ha1 = Ha1::from_password(HashFunction::Sha256, "Mufasa", "http-auth@example.org", "Circle of Life");
//! assert_eq!(auth.expected_response(&ha1, "GET", b"")?, auth.response);
//! assert!(auth.verify(&ha1, "GET", b""));
//! assert!(!auth.verify(&ha1, "POST", b""));
//! # Ok::<(), session_auth::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::algorithm::{NcText, ResponseInput, hex_eq};
use crate::params::{self, RawAuth, write_quoted};
use crate::{Algorithm, Error, Ha1, Qop, Result};

/// Digest credentials.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Authorization {
    /// `username` (or the decoded `username*` of RFC 7616 §3.4.4).
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, from the challenge.
    pub nonce: String,
    /// `uri`: the Request-URI the response was computed over.
    pub uri: String,
    /// `response`: the digest, in hex.
    pub response: String,
    /// `algorithm`; [`Algorithm::Md5`] when absent.
    pub algorithm: Algorithm,
    /// `cnonce`: required with a qop.
    pub cnonce: Option<String>,
    /// `opaque`, copied from the challenge.
    pub opaque: Option<String>,
    /// `qop`: the quality of protection chosen; `None` is the RFC 2069 form.
    pub qop: Option<Qop>,
    /// `nc`: how many requests this client has sent with this nonce, this one included;
    /// required with a qop.
    pub nc: Option<u32>,
    /// `userhash=true`: `username` is a hash (RFC 7616 §3.4.4). Parsed, never produced.
    pub userhash: bool,
}

impl Authorization {
    /// Parses a header value: Digest credentials (the first ones, if a line holds several).
    pub fn parse(value: &str) -> Result<Self> {
        CredentialsRef::parse(value).map(CredentialsRef::into_owned)
    }

    /// The `response` these credentials should carry for a request with this method and
    /// body, given HA1 for their algorithm's hash (RFC 7616 §3.4.1). With a `-sess`
    /// algorithm, HA1 is the plain `H(username:realm:password)`; the session key is derived
    /// here.
    pub fn expected_response(&self, ha1: &Ha1, method: &str, body: &[u8]) -> Result<String> {
        if ha1.hash() != self.algorithm.hash() {
            return Err(Error::InvalidInput("HA1 is for another hash function"));
        }
        Ok(self.input(ha1, method, body).compute().as_str().to_owned())
    }

    /// Whether `response` is right for this method and body (compared in constant time);
    /// `false` also when HA1 is for another hash function.
    pub fn verify(&self, ha1: &Ha1, method: &str, body: &[u8]) -> bool {
        ha1.hash() == self.algorithm.hash()
            && hex_eq(
                self.input(ha1, method, body).compute().as_str(),
                &self.response,
            )
    }

    pub(crate) fn input<'a>(
        &'a self,
        ha1: &'a Ha1,
        method: &'a str,
        body: &'a [u8],
    ) -> ResponseInput<'a> {
        ResponseInput {
            algorithm: self.algorithm,
            ha1,
            nonce: &self.nonce,
            cnonce: self.cnonce.as_deref().unwrap_or(""),
            nc: self.nc.unwrap_or(0),
            qop: self.qop,
            method,
            uri: &self.uri,
            body,
        }
    }
}

/// Credentials as read, borrowing from the header value where no escape had to be undone:
/// the server verifies these without copying them.
pub(crate) struct CredentialsRef<'a> {
    pub(crate) username: Cow<'a, str>,
    pub(crate) realm: Cow<'a, str>,
    pub(crate) nonce: Cow<'a, str>,
    pub(crate) uri: Cow<'a, str>,
    pub(crate) response: Cow<'a, str>,
    pub(crate) algorithm: Algorithm,
    pub(crate) cnonce: Option<Cow<'a, str>>,
    pub(crate) opaque: Option<Cow<'a, str>>,
    pub(crate) qop: Option<Qop>,
    pub(crate) nc: Option<u32>,
    pub(crate) userhash: bool,
}

impl<'a> CredentialsRef<'a> {
    /// The first Digest credentials on the line.
    pub(crate) fn parse(value: &'a str) -> Result<Self> {
        let list = params::parse_list(value)?;
        let mut first_error = None;
        for raw in list {
            match Self::from_raw(raw) {
                Ok(a) => return Ok(a),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(Error::MissingParam("username")))
    }

    fn from_raw(mut raw: RawAuth<'a>) -> Result<Self> {
        if !raw.is_digest() {
            return Err(Error::UnsupportedScheme(Error::clipped(raw.scheme)));
        }
        let [
            username,
            username_ext,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            userhash,
        ] = params::collect(
            &mut raw.params,
            [
                "username",
                "username*",
                "realm",
                "nonce",
                "uri",
                "response",
                "algorithm",
                "cnonce",
                "opaque",
                "qop",
                "nc",
                "userhash",
            ],
        )?;
        let username = match (username, username_ext) {
            (Some(u), None) => u,
            (None, Some(ext)) => Cow::Owned(decode_ext_value(&ext)?),
            (Some(_), Some(_)) => return Err(Error::DuplicateParam("username")),
            (None, None) => return Err(Error::MissingParam("username")),
        };
        let qop = qop.map(|q| q.trim().parse::<Qop>()).transpose()?;
        let nc = nc.map(|v| parse_nc(&v)).transpose()?;
        if qop.is_some() {
            // RFC 7616 §3.4: cnonce and nc MUST be sent with a qop.
            if cnonce.is_none() {
                return Err(Error::MissingParam("cnonce"));
            }
            if nc.is_none() {
                return Err(Error::MissingParam("nc"));
            }
        }
        Ok(Self {
            username,
            realm: realm.ok_or(Error::MissingParam("realm"))?,
            nonce: nonce.ok_or(Error::MissingParam("nonce"))?,
            uri: uri.ok_or(Error::MissingParam("uri"))?,
            response: response.ok_or(Error::MissingParam("response"))?,
            algorithm: match algorithm {
                Some(a) => a.trim().parse()?,
                None => Algorithm::Md5,
            },
            cnonce,
            opaque,
            qop,
            nc,
            userhash: userhash.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        })
    }

    pub(crate) fn into_owned(self) -> Authorization {
        Authorization {
            username: self.username.into_owned(),
            realm: self.realm.into_owned(),
            nonce: self.nonce.into_owned(),
            uri: self.uri.into_owned(),
            response: self.response.into_owned(),
            algorithm: self.algorithm,
            cnonce: self.cnonce.map(Cow::into_owned),
            opaque: self.opaque.map(Cow::into_owned),
            qop: self.qop,
            nc: self.nc,
            userhash: self.userhash,
        }
    }

    /// Whether `response` is right (constant-time comparison); see [`Authorization::verify`].
    pub(crate) fn verify(&self, ha1: &Ha1, method: &str, body: &[u8]) -> bool {
        ha1.hash() == self.algorithm.hash()
            && hex_eq(
                ResponseInput {
                    algorithm: self.algorithm,
                    ha1,
                    nonce: &self.nonce,
                    cnonce: self.cnonce.as_deref().unwrap_or(""),
                    nc: self.nc.unwrap_or(0),
                    qop: self.qop,
                    method,
                    uri: &self.uri,
                    body,
                }
                .compute()
                .as_str(),
                &self.response,
            )
    }
}

/// `nc`: eight hex digits (RFC 7616 §3.4: `8LHEX`); any case is accepted, and so are fewer
/// digits.
fn parse_nc(v: &str) -> Result<u32> {
    let v = v.trim();
    if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidParam {
            name: "nc",
            what: "not eight hex digits",
        });
    }
    u32::from_str_radix(v, 16).map_err(|_| Error::InvalidParam {
        name: "nc",
        what: "not eight hex digits",
    })
}

/// RFC 8187 ext-value, as `username*` uses it: `UTF-8'[language]'percent-encoded`.
fn decode_ext_value(v: &str) -> Result<String> {
    let bad = Error::InvalidParam {
        name: "username*",
        what: "not a UTF-8 ext-value",
    };
    let mut parts = v.trim().splitn(3, '\'');
    let (Some(charset), Some(_language), Some(encoded)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return Err(bad);
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut it = encoded.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hi = it.next().and_then(|h| char::from(h).to_digit(16));
            let lo = it.next().and_then(|l| char::from(l).to_digit(16));
            match (hi, lo) {
                // Two hex digits make at most 0xff, so the cast is lossless.
                (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
                _ => return Err(bad),
            }
        } else {
            bytes.push(b);
        }
    }
    let s = String::from_utf8(bytes).map_err(|_| bad.clone())?;
    if !params::is_header_safe(&s) {
        return Err(bad);
    }
    Ok(s)
}

impl fmt::Display for Authorization {
    /// `Digest username="…", realm="…", nonce="…", uri="…", response="…", algorithm=…[,
    /// cnonce="…"][, opaque="…"][, qop=…][, nc=…][, userhash=true]` (RFC 3261 §25.1 quoting:
    /// qop and nc bare).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest username=")?;
        write_quoted(f, &self.username)?;
        f.write_str(", realm=")?;
        write_quoted(f, &self.realm)?;
        f.write_str(", nonce=")?;
        write_quoted(f, &self.nonce)?;
        f.write_str(", uri=")?;
        write_quoted(f, &self.uri)?;
        f.write_str(", response=")?;
        write_quoted(f, &self.response)?;
        write!(f, ", algorithm={}", self.algorithm)?;
        if let Some(cnonce) = &self.cnonce {
            f.write_str(", cnonce=")?;
            write_quoted(f, cnonce)?;
        }
        if let Some(opaque) = &self.opaque {
            f.write_str(", opaque=")?;
            write_quoted(f, opaque)?;
        }
        if let Some(qop) = self.qop {
            write!(f, ", qop={qop}")?;
        }
        if let Some(nc) = self.nc {
            f.write_str(", nc=")?;
            // NcText holds ASCII hex digits only.
            f.write_str(std::str::from_utf8(NcText::new(nc).as_bytes()).unwrap_or("00000000"))?;
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
    use crate::HashFunction;

    #[test]
    fn rfc_2617_example() {
        // RFC 2617 §3.5 (the password is "Circle Of Life" there).
        let auth = Authorization::parse(
            "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n \
             qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n \
             response=\"6629fae49393a05397450978507c4ef1\",\r\n \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!(auth.algorithm, Algorithm::Md5);
        assert_eq!(auth.nc, Some(1));
        let ha1 = Ha1::from_password(
            HashFunction::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(
            auth.expected_response(&ha1, "GET", b"").unwrap(),
            "6629fae49393a05397450978507c4ef1"
        );
        assert!(auth.verify(&ha1, "GET", b""));
        let other = Ha1::from_password(HashFunction::Sha256, "Mufasa", "testrealm@host.com", "x");
        assert!(!auth.verify(&other, "GET", b""));
        assert!(auth.expected_response(&other, "GET", b"").is_err());
    }

    #[test]
    fn rfc_7616_md5_example() {
        // RFC 7616 §3.9.1, the MD5 credentials.
        let auth = Authorization::parse(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             uri=\"/dir/index.html\", algorithm=MD5, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let ha1 = Ha1::from_password(
            HashFunction::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            auth.expected_response(&ha1, "GET", b"").unwrap(),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        // Formatting and parsing again gives the same credentials.
        assert_eq!(Authorization::parse(&auth.to_string()).unwrap(), auth);
    }

    #[test]
    fn required_parameters_and_values() {
        let base = "Digest username=u, realm=r, nonce=n, uri=\"sip:a@b\", response=00";
        assert!(Authorization::parse(base).is_ok());
        for (missing, name) in [
            ("username=u, ", "username"),
            ("realm=r, ", "realm"),
            ("nonce=n, ", "nonce"),
            ("uri=\"sip:a@b\", ", "uri"),
        ] {
            assert_eq!(
                Authorization::parse(&base.replace(missing, "")).unwrap_err(),
                Error::MissingParam(name)
            );
        }
        assert_eq!(
            Authorization::parse(&format!("{base}, qop=auth, nc=1")).unwrap_err(),
            Error::MissingParam("cnonce")
        );
        assert_eq!(
            Authorization::parse(&format!("{base}, qop=auth, cnonce=c")).unwrap_err(),
            Error::MissingParam("nc")
        );
        let a = Authorization::parse(&format!("{base}, qop=\"AUTH-INT\", cnonce=c, NC=0000000A"))
            .unwrap();
        assert_eq!((a.qop, a.nc), (Some(Qop::AuthInt), Some(10)));
        for bad_nc in ["123456789", "xyz", "\"\""] {
            assert!(
                Authorization::parse(&format!("{base}, qop=auth, cnonce=c, nc={bad_nc}")).is_err(),
                "{bad_nc}"
            );
        }
    }

    #[test]
    fn extended_username() {
        let a = Authorization::parse(
            "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=r, nonce=n, uri=u, response=x",
        )
        .unwrap();
        assert_eq!(a.username, "J\u{e4}s\u{f8}n Doe");
        for bad in [
            "UTF-8''%C3",
            "ISO-8859-1''x",
            "x",
            "UTF-8''%0D%0A",
            "UTF-8''%zz",
        ] {
            assert!(
                Authorization::parse(&format!(
                    "Digest username*={bad}, realm=r, nonce=n, uri=u, response=x"
                ))
                .is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            Authorization::parse(
                "Digest username=a, username*=UTF-8''b, realm=r, nonce=n, uri=u, response=x"
            )
            .unwrap_err(),
            Error::DuplicateParam("username")
        );
    }
}
