//! The server side (RFC 3261 §22.1, §22.3; RFC 7616 §3.3, §5): issue challenges with
//! stateless nonces and verify credentials against stored HA1s.
//!
//! **Nonces** carry their own issue time and need no server state: a nonce is 64 hex digits,
//! `issued (8 bytes, big-endian seconds) | salt (8 random bytes) | MAC (16 bytes)`, the MAC
//! being HMAC-SHA-256 under the server's secret over the issue time, salt and realm, cut to
//! 128 bits. A nonce whose MAC fails was not issued by this server (or this secret); one whose
//! MAC holds but that is older than the lifetime is *stale*: good credentials with it get a new
//! challenge with `stale=true`, so the client retries without asking its user.
//!
//! **Replay protection** keeps, per nonce, the highest nonce count accepted, in a cache bounded
//! by [`DigestServerBuilder::replay_capacity`] nonces (default 16 384; with the tables' slack
//! about 70 bytes a nonce, so about 1.1 MiB at most). A count that does not increase is a
//! replay: refused with a fresh, stale nonce. Credentials without a qop (RFC 2069) have no
//! count and are always challenged.
//!
//! **Time and randomness are inputs**: `now` is an argument (the server never reads a clock),
//! and so is the generator of nonce salts.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use session_auth::{Algorithm, ChallengeReason, DigestRequest, DigestServer, Ha1, Verdict};
//! use session_sip::HeaderName;
//! use session_types::StatusCode;
//!
//! let mut rng = fastrand::Rng::with_seed(3);
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut server = DigestServer::builder("example.com", b"0123456789abcdef0123456789abcdef")
//!     .algorithms([Algorithm::Sha256, Algorithm::Md5])
//!     .build()?;
//! let lookup = |user: &str, realm: &str, hash| {
//!     (user == "alice").then(|| Ha1::from_password(hash, user, realm, "pw"))
//! };
//!
//! // A REGISTER without credentials: challenge it, one header per algorithm.
//! let register = DigestRequest::new("REGISTER", "sip:example.com", b"");
//! let Verdict::Challenge(c) = server.verify(&register, [], &lookup, now, &mut rng) else {
//!     unreachable!()
//! };
//! assert_eq!((c.status, c.header), (StatusCode::UNAUTHORIZED, HeaderName::WwwAuthenticate));
//! assert_eq!(c.values.len(), 2);
//! assert!(c.values[0].contains("algorithm=SHA-256"));
//! assert_eq!(c.reason, ChallengeReason::NoCredentials);
//! # Ok::<(), session_auth::Error>(())
//! ```

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac, NewMac};
use session_sip::HeaderName;
use session_types::{Classify, ErrorKind, StatusCode};
use sha2::Sha256;

use crate::algorithm::bytes_eq;
use crate::authorization::CredentialsRef;
use crate::params::is_header_safe;
use crate::replay::{NonceKey, ReplayCache, Seen};
use crate::{Algorithm, Challenge, DigestRequest, Error, Ha1, HashFunction, Qop, Result};

/// Where a server finds HA1 = `H(username:realm:password)`: the application's user store.
pub trait Ha1Lookup {
    /// HA1 of `username` in `realm` for `hash`, or `None` for an unknown user (or no HA1 for
    /// that hash).
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1>;
}

impl<F: Fn(&str, &str, HashFunction) -> Option<Ha1>> Ha1Lookup for F {
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
        self(username, realm, hash)
    }
}

/// The outcome of [`DigestServer::verify`].
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Verdict {
    /// The credentials are right, fresh and not replayed.
    Authorized {
        /// Who they belong to.
        username: String,
        /// The algorithm they used.
        algorithm: Algorithm,
        /// The quality of protection they used.
        qop: Qop,
    },
    /// Answer with this challenge (401 or 407).
    Challenge(ServerChallenge),
    /// The credentials are malformed: answer `status` (400), with `error` as the reason.
    Reject {
        /// 400 Bad Request.
        status: StatusCode,
        /// What is wrong.
        error: Error,
    },
}

/// Why a request is challenged. For logs only: it is not on the wire, where an unknown user
/// and a wrong password look the same.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ChallengeReason {
    /// No credentials for this realm.
    NoCredentials,
    /// The credentials use an algorithm or a qop this server does not offer, or none.
    NotOffered,
    /// The nonce (or opaque) was not issued by this server.
    UnknownNonce,
    /// The lookup knows no such user.
    UnknownUser,
    /// The response is wrong (a wrong password, or a request changed on the way).
    WrongResponse,
    /// Right credentials, expired nonce (`stale=true`).
    Expired,
    /// Right credentials, but the nonce count did not increase (`stale=true`).
    Replay,
    /// Right credentials, but the nonce's counts were evicted from the bounded replay cache
    /// (`stale=true`).
    Forgotten,
}

/// A challenge to send: the status, the header name and one value per offered algorithm.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServerChallenge {
    /// 401 Unauthorized (a UAS or registrar) or 407 Proxy Authentication Required (a proxy).
    pub status: StatusCode,
    /// `WWW-Authenticate` or `Proxy-Authenticate`.
    pub header: HeaderName,
    /// One challenge per offered algorithm, preferred first (RFC 8760 §2.4: one per line).
    pub values: Vec<String>,
    /// Whether they say `stale=true`.
    pub stale: bool,
    /// Why the request is challenged.
    pub reason: ChallengeReason,
}

impl ServerChallenge {
    /// The headers to add to the response, as `(name, value)` pairs.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, &str)> {
        self.values.iter().map(|v| (self.header, v.as_str()))
    }
}

/// Configuration of a [`DigestServer`]; finish with [`DigestServerBuilder::build`].
pub struct DigestServerBuilder {
    realm: String,
    secret: Vec<u8>,
    algorithms: Vec<Algorithm>,
    qop: Vec<Qop>,
    nonce_lifetime: Duration,
    replay_capacity: usize,
    proxy: bool,
    opaque: Option<String>,
    domain: Option<String>,
    check_uri: bool,
}

impl fmt::Debug for DigestServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServerBuilder")
            .field("realm", &self.realm)
            .field("secret", &"<redacted>")
            .field("algorithms", &self.algorithms)
            .field("qop", &self.qop)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("replay_capacity", &self.replay_capacity)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl DigestServerBuilder {
    /// The algorithms to offer, preferred first (default SHA-256, then MD5 for older
    /// clients, as RFC 8760 §2.4 suggests). Credentials with any other are challenged.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms.clear();
        for a in algorithms {
            if !self.algorithms.contains(&a) {
                self.algorithms.push(a);
            }
        }
        self
    }

    /// The qualities of protection to offer (default `auth`). Credentials without a qop (the
    /// RFC 2069 form, which has no nonce count and so no replay protection) are challenged.
    pub fn qop(mut self, qop: impl IntoIterator<Item = Qop>) -> Self {
        self.qop.clear();
        for q in qop {
            if !self.qop.contains(&q) {
                self.qop.push(q);
            }
        }
        self
    }

    /// How long a nonce is accepted after it was issued (default 5 minutes).
    pub fn nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = lifetime;
        self
    }

    /// How many nonces the replay cache remembers (default 16 384).
    pub fn replay_capacity(mut self, nonces: usize) -> Self {
        self.replay_capacity = nonces;
        self
    }

    /// Act as a proxy: 407 with `Proxy-Authenticate`, credentials from `Proxy-Authorization`
    /// (default: a UAS or registrar, 401 with `WWW-Authenticate`, `Authorization`).
    pub fn proxy(mut self, yes: bool) -> Self {
        self.proxy = yes;
        self
    }

    /// An `opaque` to send with every challenge and require back (default none).
    pub fn opaque(mut self, opaque: impl Into<String>) -> Self {
        self.opaque = Some(opaque.into());
        self
    }

    /// A `domain` to send with every challenge (default none).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the credentials' `uri` must equal the Request-URI (default yes; RFC 2617
    /// §3.2.2.5 answers a mismatch with 400). Turn it off behind a proxy that rewrites the
    /// Request-URI.
    pub fn check_uri(mut self, yes: bool) -> Self {
        self.check_uri = yes;
        self
    }

    /// The server. Fails ([`Error::InvalidInput`]) on a secret shorter than 16 bytes, no
    /// algorithm or qop, a zero replay capacity, or a realm, opaque or domain with CR or LF.
    pub fn build(self) -> Result<DigestServer> {
        if self.secret.len() < 16 {
            return Err(Error::InvalidInput(
                "the nonce secret is shorter than 16 bytes",
            ));
        }
        if self.algorithms.is_empty() || self.qop.is_empty() {
            return Err(Error::InvalidInput("no algorithm or no qop to offer"));
        }
        if self.replay_capacity == 0 {
            return Err(Error::InvalidInput("the replay cache needs room"));
        }
        let texts = [
            Some(self.realm.as_str()),
            self.opaque.as_deref(),
            self.domain.as_deref(),
        ];
        if !texts.into_iter().flatten().all(is_header_safe) {
            return Err(Error::InvalidInput(
                "realm, opaque or domain holds CR or LF",
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .map_err(|_| Error::InvalidInput("the nonce secret is unusable"))?;
        Ok(DigestServer {
            replay: ReplayCache::new(self.replay_capacity),
            realm: self.realm,
            mac,
            algorithms: self.algorithms,
            qop: self.qop,
            lifetime: self.nonce_lifetime.as_secs(),
            proxy: self.proxy,
            opaque: self.opaque,
            domain: self.domain,
            check_uri: self.check_uri,
        })
    }
}

/// The server side of digest authentication for one realm.
pub struct DigestServer {
    realm: String,
    /// HMAC-SHA-256 keyed with the secret, cloned for each nonce.
    mac: Hmac<Sha256>,
    algorithms: Vec<Algorithm>,
    qop: Vec<Qop>,
    lifetime: u64,
    proxy: bool,
    opaque: Option<String>,
    domain: Option<String>,
    check_uri: bool,
    replay: ReplayCache,
}

impl fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("realm", &self.realm)
            .field("algorithms", &self.algorithms)
            .field("qop", &self.qop)
            .field("lifetime", &self.lifetime)
            .field("proxy", &self.proxy)
            .field("replay_entries", &self.replay.len())
            .finish_non_exhaustive()
    }
}

/// Hex digits in a nonce: 8 bytes of time, 8 of salt, 16 of MAC.
const NONCE_HEX_LEN: usize = 64;

fn unix_secs(t: SystemTime) -> u64 {
    // A time before 1970 is a broken clock; it gives nonces that are already old.
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl DigestServer {
    /// A builder for realm `realm` whose nonces are authenticated with `secret` (at least 16
    /// bytes; share it between servers that must accept each other's nonces).
    pub fn builder(realm: impl Into<String>, secret: &[u8]) -> DigestServerBuilder {
        DigestServerBuilder {
            realm: realm.into(),
            secret: secret.to_vec(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: vec![Qop::Auth],
            nonce_lifetime: Duration::from_secs(300),
            replay_capacity: 16_384,
            proxy: false,
            opaque: None,
            domain: None,
            check_uri: true,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How many nonces the replay cache holds now.
    pub fn replay_entries(&self) -> usize {
        self.replay.len()
    }

    /// A fresh challenge (for a request that came without credentials).
    pub fn challenge(&self, now: SystemTime, rng: &mut fastrand::Rng) -> ServerChallenge {
        self.make_challenge(false, ChallengeReason::NoCredentials, now, rng)
    }

    /// Verifies a request: `credentials` are the values of its `Authorization` headers (its
    /// `Proxy-Authorization` headers for a proxy); those for other realms and other schemes
    /// are skipped. `now` is the current time; `rng` salts new nonces.
    pub fn verify<'h>(
        &mut self,
        request: &DigestRequest<'_>,
        credentials: impl IntoIterator<Item = &'h str>,
        lookup: &(impl Ha1Lookup + ?Sized),
        now: SystemTime,
        rng: &mut fastrand::Rng,
    ) -> Verdict {
        let mut ours = None;
        let mut reason = ChallengeReason::NoCredentials;
        for value in credentials {
            match CredentialsRef::parse(value) {
                Ok(a) if a.realm == self.realm => {
                    ours = Some(a);
                    break;
                }
                Ok(_) | Err(Error::UnsupportedScheme(_)) => {}
                Err(error) if error.kind() == ErrorKind::MalformedInput => {
                    return Verdict::Reject {
                        status: StatusCode::BAD_REQUEST,
                        error,
                    };
                }
                // Digest with an algorithm or qop this crate does not know.
                Err(_) => reason = ChallengeReason::NotOffered,
            }
        }
        let Some(auth) = ours else {
            return self.challenge_verdict(false, reason, now, rng);
        };
        match self.check(&auth, request, lookup, unix_secs(now)) {
            Ok(qop) => Verdict::Authorized {
                username: auth.username.into_owned(),
                algorithm: auth.algorithm,
                qop,
            },
            Err(Refusal::Reject(error)) => Verdict::Reject {
                status: StatusCode::BAD_REQUEST,
                error,
            },
            Err(Refusal::Challenge(reason)) => {
                let stale = matches!(
                    reason,
                    ChallengeReason::Expired | ChallengeReason::Replay | ChallengeReason::Forgotten
                );
                self.challenge_verdict(stale, reason, now, rng)
            }
        }
    }

    /// [`DigestServer::verify`] for a session-sip request: reads its `Authorization` (or, for
    /// a proxy, `Proxy-Authorization`) headers.
    pub fn verify_request(
        &mut self,
        request: &session_sip::Request,
        lookup: &(impl Ha1Lookup + ?Sized),
        now: SystemTime,
        rng: &mut fastrand::Rng,
    ) -> Verdict {
        let name = if self.proxy {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let values = request.headers.get_all(name).map(|h| h.value());
        self.verify(&DigestRequest::from_sip(request), values, lookup, now, rng)
    }

    /// The checks, cheapest that can refuse first; a response is checked before the nonce's
    /// age and count, because `stale=true` is only for right credentials (RFC 2617 §3.2.1).
    fn check(
        &mut self,
        auth: &CredentialsRef<'_>,
        request: &DigestRequest<'_>,
        lookup: &(impl Ha1Lookup + ?Sized),
        now: u64,
    ) -> Result<Qop, Refusal> {
        if !self.algorithms.contains(&auth.algorithm) {
            return Err(Refusal::Challenge(ChallengeReason::NotOffered));
        }
        let Some(qop) = auth.qop.filter(|q| self.qop.contains(q)) else {
            return Err(Refusal::Challenge(ChallengeReason::NotOffered));
        };
        if self.check_uri && auth.uri != request.uri {
            return Err(Refusal::Reject(Error::InvalidParam {
                name: "uri",
                what: "not the Request-URI",
            }));
        }
        if let Some(opaque) = &self.opaque
            && auth.opaque.as_deref() != Some(opaque.as_str())
        {
            return Err(Refusal::Challenge(ChallengeReason::UnknownNonce));
        }
        let (issued, key) = self
            .open_nonce(&auth.nonce)
            .ok_or(Refusal::Challenge(ChallengeReason::UnknownNonce))?;
        let ha1 = lookup
            .ha1(&auth.username, &auth.realm, auth.algorithm.hash())
            .ok_or(Refusal::Challenge(ChallengeReason::UnknownUser))?;
        if !auth.verify(&ha1, request.method, request.body) {
            return Err(Refusal::Challenge(ChallengeReason::WrongResponse));
        }
        // A nonce from the future means the clock went back; past a lifetime, treat it as old.
        if now.saturating_sub(issued) > self.lifetime || issued.saturating_sub(now) > self.lifetime
        {
            return Err(Refusal::Challenge(ChallengeReason::Expired));
        }
        // With a qop the parser has made sure nc is there.
        let nc = auth.nc.unwrap_or(0);
        match self.replay.check(key, issued, nc, now, self.lifetime) {
            Seen::Fresh => Ok(qop),
            Seen::Replayed => Err(Refusal::Challenge(ChallengeReason::Replay)),
            Seen::Forgotten => Err(Refusal::Challenge(ChallengeReason::Forgotten)),
        }
    }

    fn challenge_verdict(
        &self,
        stale: bool,
        reason: ChallengeReason,
        now: SystemTime,
        rng: &mut fastrand::Rng,
    ) -> Verdict {
        Verdict::Challenge(self.make_challenge(stale, reason, now, rng))
    }

    fn make_challenge(
        &self,
        stale: bool,
        reason: ChallengeReason,
        now: SystemTime,
        rng: &mut fastrand::Rng,
    ) -> ServerChallenge {
        let nonce = self.new_nonce(unix_secs(now), rng.u64(..));
        let mut challenge = Challenge::new(self.realm.clone(), nonce);
        challenge.domain = self.domain.clone();
        challenge.opaque = self.opaque.clone();
        challenge.stale = stale;
        challenge.qop = self.qop.clone();
        let values = self
            .algorithms
            .iter()
            .map(|&a| {
                challenge.algorithm = a;
                challenge.to_string()
            })
            .collect();
        let (status, header) = if self.proxy {
            (
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                HeaderName::ProxyAuthenticate,
            )
        } else {
            (StatusCode::UNAUTHORIZED, HeaderName::WwwAuthenticate)
        };
        ServerChallenge {
            status,
            header,
            values,
            stale,
            reason,
        }
    }

    fn nonce_mac(&self, issued: &[u8; 8], salt: &[u8; 8]) -> NonceKey {
        let mut mac = self.mac.clone();
        mac.update(issued);
        mac.update(salt);
        mac.update(self.realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        for (k, b) in key.iter_mut().zip(full.iter()) {
            *k = *b;
        }
        key
    }

    fn new_nonce(&self, issued: u64, salt: u64) -> String {
        let issued = issued.to_be_bytes();
        let salt = salt.to_be_bytes();
        let mac = self.nonce_mac(&issued, &salt);
        let mut out = String::with_capacity(NONCE_HEX_LEN);
        for b in issued.iter().chain(&salt).chain(&mac) {
            // Writing into a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// The issue time and MAC of a nonce this server issued; `None` for anything else.
    fn open_nonce(&self, nonce: &str) -> Option<(u64, NonceKey)> {
        if nonce.len() != NONCE_HEX_LEN {
            return None;
        }
        let mut bytes = [0u8; NONCE_HEX_LEN / 2];
        for (dst, pair) in bytes.iter_mut().zip(nonce.as_bytes().chunks_exact(2)) {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            // Two hex digits make at most 0xff, so the cast is lossless.
            *dst = (hi * 16 + lo) as u8;
        }
        let (issued, rest) = bytes.split_first_chunk::<8>()?;
        let (salt, given) = rest.split_first_chunk::<8>()?;
        let expected = self.nonce_mac(issued, salt);
        bytes_eq(&expected, given).then(|| (u64::from_be_bytes(*issued), expected))
    }
}

/// Why [`DigestServer::check`] refused.
enum Refusal {
    Reject(Error),
    Challenge(ChallengeReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> DigestServer {
        DigestServer::builder("r", b"0123456789abcdef")
            .build()
            .unwrap()
    }

    #[test]
    fn nonces_open_only_when_issued_here() {
        let s = server();
        let n = s.new_nonce(1234, 99);
        assert_eq!(n.len(), NONCE_HEX_LEN);
        let (issued, _) = s.open_nonce(&n).unwrap();
        assert_eq!(issued, 1234);
        assert!(s.open_nonce(&n.to_ascii_uppercase()).is_some());
        // Any change breaks the MAC: time, salt or MAC digits.
        for i in [0, 15, 16, 31, 32, 63] {
            let mut b = n.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            assert!(
                s.open_nonce(std::str::from_utf8(&b).unwrap()).is_none(),
                "{i}"
            );
        }
        // Another secret or realm does not accept it.
        let other = DigestServer::builder("r", b"0123456789abcdeX")
            .build()
            .unwrap();
        assert!(other.open_nonce(&n).is_none());
        let other = DigestServer::builder("r2", b"0123456789abcdef")
            .build()
            .unwrap();
        assert!(other.open_nonce(&n).is_none());
        for junk in ["", "zz", &"g".repeat(64), &"é".repeat(32)] {
            assert!(s.open_nonce(junk).is_none());
        }
    }

    #[test]
    fn builder_refuses_bad_configuration() {
        let b = || DigestServer::builder("r", b"0123456789abcdef");
        assert!(DigestServer::builder("r", b"short").build().is_err());
        assert!(b().algorithms([]).build().is_err());
        assert!(b().qop([]).build().is_err());
        assert!(b().replay_capacity(0).build().is_err());
        assert!(
            DigestServer::builder("r\r\n", b"0123456789abcdef")
                .build()
                .is_err()
        );
        let s = b().proxy(true).opaque("o").domain("sip:d").build().unwrap();
        let c = s.challenge(UNIX_EPOCH, &mut fastrand::Rng::with_seed(1));
        assert_eq!(c.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!(c.header, HeaderName::ProxyAuthenticate);
        let parsed = Challenge::parse(&c.values[0]).unwrap();
        assert_eq!(parsed.opaque.as_deref(), Some("o"));
        assert_eq!(parsed.domain.as_deref(), Some("sip:d"));
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }
}
