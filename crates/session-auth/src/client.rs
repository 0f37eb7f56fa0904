//! The client side (RFC 3261 §22.2–§22.3): answer a 401 or 407, and pre-authorize later
//! requests in the realms already answered.
//!
//! A [`DigestClient`] keeps, per realm (proxy and server realms apart), the credentials in
//! use (as HA1, never the password), the nonce and its count. An [`Attempt`] belongs to one
//! request and its re-sends: it remembers which realms were answered for it, which is how
//! the client refuses to loop — a second challenge for a realm already answered, without
//! `stale=true` (or a second `stale=true`), is [`Error::CredentialsRejected`].
//!
//! Randomness (the cnonce) is an input: every call that makes credentials takes a
//! `&mut fastrand::Rng`.
//!
//! ```
//! use session_auth::{Attempt, Credentials, DigestClient, DigestRequest};
//! use session_sip::HeaderName;
//! use session_types::StatusCode;
//!
//! let mut client = DigestClient::new();
//! let mut rng = fastrand::Rng::with_seed(7);
//! let provider = |realm: &str| {
//!     (realm == "example.com").then(|| Credentials::password("alice", "secret"))
//! };
//! let register = DigestRequest::new("REGISTER", "sip:example.com", b"");
//!
//! // REGISTER went out without credentials; the registrar answered 401.
//! let mut attempt = Attempt::new();
//! let challenge = r#"Digest realm="example.com", nonce="abc123", algorithm=SHA-256, qop="auth""#;
//! let headers = client.handle_challenge(
//!     &mut attempt,
//!     StatusCode::UNAUTHORIZED,
//!     [(HeaderName::WwwAuthenticate, challenge)],
//!     &register,
//!     &provider,
//!     &mut rng,
//! )?;
//! assert_eq!(headers[0].name, HeaderName::Authorization);
//! assert!(headers[0].value.contains("nc=00000001"));
//!
//! // The same 401 again: the password is wrong, and the client says so instead of looping.
//! let again = client.handle_challenge(
//!     &mut attempt,
//!     StatusCode::UNAUTHORIZED,
//!     [(HeaderName::WwwAuthenticate, challenge)],
//!     &register,
//!     &provider,
//!     &mut rng,
//! );
//! assert!(again.unwrap_err().to_string().contains("credentials rejected"));
//!
//! // A later request in the realm is pre-authorized with the next nonce count.
//! let headers = client.authorize(&mut Attempt::new(), &register, &mut rng);
//! assert!(headers[0].value.contains("nc=00000002"));
//! # Ok::<(), session_auth::Error>(())
//! ```

use std::cmp::Reverse;
use std::fmt;

use session_sip::HeaderName;
use session_types::StatusCode;

use crate::params::is_header_safe;
use crate::{
    Algorithm, Authorization, Challenge, DigestRequest, Error, Ha1, HashFunction, Qop, Result,
};

/// What a user agent authenticates with in one realm: a username and either the password or
/// a precomputed HA1 (which answers only challenges of its hash function).
///
/// `Debug` does not show the secret.
#[derive(Clone)]
pub struct Credentials {
    username: String,
    secret: Secret,
}

#[derive(Clone)]
enum Secret {
    Password(String),
    Ha1(Ha1),
}

impl Credentials {
    /// Username and password: answers any algorithm.
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: Secret::Password(password.into()),
        }
    }

    /// Username and `H(username:realm:password)` for one hash function (for the realm it is
    /// given for): answers that hash's algorithms, plain and `-sess`.
    pub fn ha1(username: impl Into<String>, ha1: Ha1) -> Self {
        Self {
            username: username.into(),
            secret: Secret::Ha1(ha1),
        }
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    fn can_answer(&self, hash: HashFunction) -> bool {
        match &self.secret {
            Secret::Password(_) => true,
            Secret::Ha1(ha1) => ha1.hash() == hash,
        }
    }

    fn ha1_for(&self, hash: HashFunction, realm: &str) -> Option<Ha1> {
        match &self.secret {
            Secret::Password(p) => Some(Ha1::from_password(hash, &self.username, realm, p)),
            Secret::Ha1(ha1) => (ha1.hash() == hash).then(|| ha1.clone()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Where credentials come from: the application, asked per realm.
pub trait CredentialProvider {
    /// The credentials for `realm`, or `None` if there are none.
    fn credentials(&self, realm: &str) -> Option<Credentials>;
}

impl<F: Fn(&str) -> Option<Credentials>> CredentialProvider for F {
    fn credentials(&self, realm: &str) -> Option<Credentials> {
        self(realm)
    }
}

/// One header to add to the request being sent: `Authorization` or `Proxy-Authorization`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthHeader {
    /// [`HeaderName::Authorization`] (answering a 401's `WWW-Authenticate`) or
    /// [`HeaderName::ProxyAuthorization`] (answering a 407's `Proxy-Authenticate`).
    pub name: HeaderName,
    /// The credentials.
    pub value: String,
}

/// The authentication history of one request and its re-sends (keep one per request that
/// may be challenged; start a new one for each new request, re-sends included in the old one).
#[derive(Clone, Default, Debug)]
pub struct Attempt {
    realms: Vec<AttemptRealm>,
    /// Challenges answered so far.
    rounds: u32,
}

#[derive(Clone, Debug)]
struct AttemptRealm {
    proxy: bool,
    realm: String,
    /// Credentials were sent in answer to a challenge without `stale=true`.
    answered: bool,
    /// Credentials were sent in answer to a challenge with `stale=true`.
    stale_retried: bool,
}

impl Attempt {
    /// A request not yet sent.
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, proxy: bool, realm: &str) -> Option<&AttemptRealm> {
        self.realms
            .iter()
            .find(|r| r.proxy == proxy && r.realm == realm)
    }

    /// Adds a realm (if new) with nothing answered yet.
    fn add(&mut self, proxy: bool, realm: &str) {
        if self.find(proxy, realm).is_none() {
            self.realms.push(AttemptRealm {
                proxy,
                realm: realm.to_owned(),
                answered: false,
                stale_retried: false,
            });
        }
    }

    /// Records that credentials were sent for a realm in answer to a challenge.
    fn mark(&mut self, proxy: bool, realm: &str, stale: bool) {
        self.add(proxy, realm);
        if let Some(r) = self
            .realms
            .iter_mut()
            .find(|r| r.proxy == proxy && r.realm == realm)
        {
            if stale {
                r.stale_retried = true;
            } else {
                r.answered = true;
            }
        }
    }
}

/// What the client keeps per realm.
struct RealmState {
    proxy: bool,
    realm: String,
    username: String,
    /// Plain HA1 for `algorithm.hash()`.
    ha1: Ha1,
    algorithm: Algorithm,
    nonce: String,
    opaque: Option<String>,
    qop: Option<Qop>,
    cnonce: String,
    /// Requests sent with `nonce` so far.
    nc: u32,
    /// For least-recently-used eviction.
    last_used: u64,
}

/// The client side of digest authentication for one user agent (or one account of it).
///
/// Memory is bounded: at most [`DigestClient::max_realms`] realms are kept (the least
/// recently used goes first), and a challenge response is read for at most that many realms.
pub struct DigestClient {
    realms: Vec<RealmState>,
    max_realms: usize,
    prefer_auth_int: bool,
    clock: u64,
}

impl Default for DigestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field(
                "realms",
                &self.realms.iter().map(|r| &r.realm).collect::<Vec<_>>(),
            )
            .field("max_realms", &self.max_realms)
            .field("prefer_auth_int", &self.prefer_auth_int)
            .finish()
    }
}

impl DigestClient {
    /// The default number of realms kept.
    pub const DEFAULT_MAX_REALMS: usize = 16;

    /// How many challenges one request answers at most: enough for a few proxies, the UAS and
    /// a stale nonce or two; a server that goes on (with ever new realms) gets
    /// [`Error::TooManyChallenges`].
    pub const MAX_ROUNDS: u32 = 8;

    /// A client with no realms yet, keeping up to [`Self::DEFAULT_MAX_REALMS`], choosing
    /// `qop=auth` when the server offers it.
    pub fn new() -> Self {
        Self {
            realms: Vec::new(),
            max_realms: Self::DEFAULT_MAX_REALMS,
            prefer_auth_int: false,
            clock: 0,
        }
    }

    /// Keeps up to `n` realms (at least 1).
    pub fn max_realms(mut self, n: usize) -> Self {
        self.max_realms = n.max(1);
        self
    }

    /// Chooses `qop=auth-int` (the body is covered too) when the server offers both it and
    /// `auth`. Off by default: a body that a proxy rewrites would fail `auth-int`.
    pub fn prefer_auth_int(mut self, yes: bool) -> Self {
        self.prefer_auth_int = yes;
        self
    }

    /// The realms with credentials in use: `(true, realm)` for proxy realms.
    pub fn realms(&self) -> impl Iterator<Item = (bool, &str)> {
        self.realms.iter().map(|r| (r.proxy, r.realm.as_str()))
    }

    /// Forgets a realm (server and proxy alike), e.g. when its account is removed.
    pub fn forget(&mut self, realm: &str) {
        self.realms.retain(|r| r.realm != realm);
    }

    /// Forgets every realm.
    pub fn clear(&mut self) {
        self.realms.clear();
    }

    /// Credentials for a new request in every realm answered before (pre-authorization, RFC
    /// 3261 §22.3), each with the next nonce count; empty when there are none. Records them
    /// in `attempt`, so a challenge that follows is answered once more with fresh credentials.
    ///
    /// Every realm the client knows is included: scope a client to one account or
    /// destination if credentials must not travel elsewhere.
    pub fn authorize(
        &mut self,
        attempt: &mut Attempt,
        request: &DigestRequest<'_>,
        rng: &mut fastrand::Rng,
    ) -> Vec<AuthHeader> {
        let known: Vec<(bool, String)> = self
            .realms
            .iter()
            .map(|r| (r.proxy, r.realm.clone()))
            .collect();
        for (proxy, realm) in known {
            attempt.add(proxy, &realm);
        }
        self.headers_for(attempt, request, rng)
    }

    /// Answers a 401 or 407: reads its `WWW-Authenticate` and `Proxy-Authenticate` headers
    /// (other names in `headers` are skipped), picks per realm the strongest challenge the
    /// credentials can answer (SHA-512-256 > SHA-256 > MD5; plain before `-sess`, then the
    /// server's order), and returns the headers for the re-sent request: one per realm of
    /// `attempt`, those answered earlier included (RFC 3261 §22.3), each with a fresh nonce
    /// count. `request` is the request as it will be re-sent.
    ///
    /// `stale=true` is answered with the new nonce and the same credentials (once per realm
    /// per attempt). A challenge for a realm `attempt` already answered without `stale=true`
    /// is [`Error::CredentialsRejected`]; a realm that the provider has no credentials for is
    /// skipped ([`Error::NoCredentials`] if that leaves nothing to answer). After
    /// [`Self::MAX_ROUNDS`] challenges for one attempt, the next is
    /// [`Error::TooManyChallenges`].
    pub fn handle_challenge<'h, P: CredentialProvider + ?Sized>(
        &mut self,
        attempt: &mut Attempt,
        status: StatusCode,
        headers: impl IntoIterator<Item = (HeaderName, &'h str)>,
        request: &DigestRequest<'_>,
        provider: &P,
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<AuthHeader>> {
        if status != StatusCode::UNAUTHORIZED && status != StatusCode::PROXY_AUTHENTICATION_REQUIRED
        {
            return Err(Error::NotAChallenge(status));
        }
        if attempt.rounds >= Self::MAX_ROUNDS {
            return Err(Error::TooManyChallenges(status));
        }
        // Challenges grouped by realm, in order of first appearance.
        let mut groups: Vec<(bool, String, Vec<Challenge>)> = Vec::new();
        for (name, value) in headers {
            let proxy = match name {
                HeaderName::WwwAuthenticate => false,
                HeaderName::ProxyAuthenticate => true,
                _ => continue,
            };
            for challenge in Challenge::parse_all(value).into_iter().flatten() {
                if let Some(g) = groups
                    .iter_mut()
                    .find(|g| g.0 == proxy && g.1 == challenge.realm)
                {
                    // One challenge per algorithm is all a server has reason to send.
                    if g.2.len() < Algorithm::ALL.len() {
                        g.2.push(challenge);
                    }
                } else if groups.len() < self.max_realms {
                    groups.push((proxy, challenge.realm.clone(), vec![challenge]));
                }
            }
        }
        if groups.is_empty() {
            return Err(Error::NoUsableChallenge(status));
        }

        let mut answered = 0;
        let mut without_credentials = None;
        for (proxy, realm, challenges) in groups {
            let stale = challenges.iter().any(|c| c.stale);
            let (answered_before, stale_before) = attempt
                .find(proxy, &realm)
                .map_or((false, false), |e| (e.answered, e.stale_retried));
            if (stale && stale_before) || (!stale && answered_before) {
                return Err(Error::CredentialsRejected { status, realm });
            }
            // Stale: the same credentials, if they answer one of the new challenges.
            let kept = stale
                .then(|| self.state(proxy, &realm))
                .flatten()
                .and_then(|s| {
                    let hash = s.ha1.hash();
                    let c = strongest(&challenges, |h| h == hash)?;
                    Some((c.clone(), s.username.clone(), s.ha1.clone()))
                });
            let (challenge, username, ha1) = match kept {
                Some(k) => k,
                None => {
                    let Some(creds) = provider.credentials(&realm) else {
                        without_credentials.get_or_insert(realm);
                        continue;
                    };
                    if !is_header_safe(&creds.username) {
                        return Err(Error::InvalidInput("username holds CR or LF"));
                    }
                    let Some(c) = strongest(&challenges, |h| creds.can_answer(h)) else {
                        continue;
                    };
                    let Some(ha1) = creds.ha1_for(c.algorithm.hash(), &realm) else {
                        continue;
                    };
                    (c.clone(), creds.username, ha1)
                }
            };
            attempt.mark(proxy, &realm, stale);
            let qop = self.choose_qop(&challenge.qop);
            self.install(RealmState {
                proxy,
                realm,
                username,
                ha1,
                algorithm: challenge.algorithm,
                nonce: challenge.nonce,
                opaque: challenge.opaque,
                qop,
                cnonce: new_cnonce(rng),
                nc: 0,
                last_used: 0,
            });
            answered += 1;
        }
        if answered == 0 {
            return Err(match without_credentials {
                Some(realm) => Error::NoCredentials { realm },
                None => Error::NoUsableChallenge(status),
            });
        }
        attempt.rounds += 1;
        Ok(self.headers_for(attempt, request, rng))
    }

    /// [`DigestClient::handle_challenge`] for session-sip types: `response` is the 401/407,
    /// `request` the request as it will be re-sent (its CSeq already incremented).
    pub fn handle_response<P: CredentialProvider + ?Sized>(
        &mut self,
        attempt: &mut Attempt,
        response: &session_sip::Response,
        request: &session_sip::Request,
        provider: &P,
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<AuthHeader>> {
        self.handle_challenge(
            attempt,
            response.status,
            response.headers.iter().map(|h| (h.name(), h.value())),
            &DigestRequest::from_sip(request),
            provider,
            rng,
        )
    }

    fn choose_qop(&self, offered: &[Qop]) -> Option<Qop> {
        let auth = offered.contains(&Qop::Auth);
        let int = offered.contains(&Qop::AuthInt);
        match (auth, int) {
            (true, true) if self.prefer_auth_int => Some(Qop::AuthInt),
            (true, _) => Some(Qop::Auth),
            (false, true) => Some(Qop::AuthInt),
            (false, false) => None,
        }
    }

    fn state(&self, proxy: bool, realm: &str) -> Option<&RealmState> {
        self.realms
            .iter()
            .find(|r| r.proxy == proxy && r.realm == realm)
    }

    fn install(&mut self, mut state: RealmState) {
        self.clock += 1;
        state.last_used = self.clock;
        self.realms
            .retain(|r| !(r.proxy == state.proxy && r.realm == state.realm));
        if self.realms.len() >= self.max_realms
            && let Some(i) = self
                .realms
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.last_used)
                .map(|(i, _)| i)
        {
            self.realms.remove(i);
        }
        self.realms.push(state);
    }

    /// One header per realm of the attempt that the client still knows.
    fn headers_for(
        &mut self,
        attempt: &Attempt,
        request: &DigestRequest<'_>,
        rng: &mut fastrand::Rng,
    ) -> Vec<AuthHeader> {
        let mut out = Vec::with_capacity(attempt.realms.len());
        for a in &attempt.realms {
            self.clock += 1;
            let clock = self.clock;
            let Some(s) = self
                .realms
                .iter_mut()
                .find(|r| r.proxy == a.proxy && r.realm == a.realm)
            else {
                continue;
            };
            s.last_used = clock;
            if s.nc == u32::MAX {
                // Never in practice; a fresh cnonce keeps the responses distinct, and the
                // server will challenge for a new nonce.
                s.cnonce = new_cnonce(rng);
                s.nc = 0;
            }
            s.nc += 1;
            let sends_cnonce = s.qop.is_some() || s.algorithm.is_session();
            let mut auth = Authorization {
                username: s.username.clone(),
                realm: s.realm.clone(),
                nonce: s.nonce.clone(),
                uri: request.uri.to_owned(),
                response: String::new(),
                algorithm: s.algorithm,
                cnonce: sends_cnonce.then(|| s.cnonce.clone()),
                opaque: s.opaque.clone(),
                qop: s.qop,
                nc: s.qop.map(|_| s.nc),
                userhash: false,
            };
            auth.response = auth
                .input(&s.ha1, request.method, request.body)
                .compute()
                .as_str()
                .to_owned();
            out.push(AuthHeader {
                name: if a.proxy {
                    HeaderName::ProxyAuthorization
                } else {
                    HeaderName::Authorization
                },
                value: auth.to_string(),
            });
        }
        out
    }
}

/// The strongest challenge whose hash `usable` accepts: stronger hash first, then plain
/// before `-sess`, then the server's order.
fn strongest(
    challenges: &[Challenge],
    usable: impl Fn(HashFunction) -> bool,
) -> Option<&Challenge> {
    challenges
        .iter()
        .enumerate()
        .filter(|(_, c)| usable(c.algorithm.hash()))
        .max_by_key(|(i, c)| (c.algorithm.hash(), !c.algorithm.is_session(), Reverse(*i)))
        .map(|(_, c)| c)
}

/// 128 random bits in hex.
fn new_cnonce(rng: &mut fastrand::Rng) -> String {
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(alg: &str, stale: bool) -> Challenge {
        let mut c = Challenge::new("r", "n");
        c.algorithm = alg.parse().unwrap();
        c.stale = stale;
        c
    }

    #[test]
    fn strongest_prefers_hash_then_plain_then_order() {
        let list = [
            ch("MD5", false),
            ch("SHA-256-sess", false),
            ch("SHA-256", false),
        ];
        assert_eq!(
            strongest(&list, |_| true).unwrap().algorithm,
            Algorithm::Sha256
        );
        assert_eq!(
            strongest(&list, |h| h == HashFunction::Md5)
                .unwrap()
                .algorithm,
            Algorithm::Md5
        );
        assert!(strongest(&list, |h| h == HashFunction::Sha512_256).is_none());
    }

    #[test]
    fn qop_choice() {
        let c = DigestClient::new();
        assert_eq!(c.choose_qop(&[Qop::AuthInt, Qop::Auth]), Some(Qop::Auth));
        assert_eq!(c.choose_qop(&[Qop::AuthInt]), Some(Qop::AuthInt));
        assert_eq!(c.choose_qop(&[]), None);
        let c = DigestClient::new().prefer_auth_int(true);
        assert_eq!(c.choose_qop(&[Qop::Auth, Qop::AuthInt]), Some(Qop::AuthInt));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials::password("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.username(), "alice");
    }
}
