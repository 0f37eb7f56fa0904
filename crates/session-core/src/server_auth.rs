//! Server-side digest authentication (RFC 3261 §22.1–§22.3): [`ServerAuth`] configures it
//! ([`crate::SessionManagerBuilder::authenticate`]), and the manager's task challenges the
//! requests it covers with session-auth's [`DigestServer`] before any per-call state exists.
//!
//! The nonces are stateless (an HMAC under the secret with their issue time), so a challenge
//! costs no memory; the only state is the digest server's bounded replay cache (nonce counts).
//! Time is the manager's clock turned into wall-clock time once (see `Core::wall_time`), so a
//! paused tokio runtime runs nonce expiry in virtual time too.

use crate::error::{Result, SessionError};
use session_auth::{Algorithm, DigestServer, Ha1Lookup, Verdict};
use session_sip::{Header, Method, Request};
use session_types::StatusCode;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Which requests a manager with [`ServerAuth`] challenges. Requests inside a call are never
/// challenged (the INVITE that made it was); REGISTER follows
/// [`crate::RegistrarConfig::authenticate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthScope {
    /// New calls: INVITEs outside a dialog (the default).
    #[default]
    Invite,
    /// Every request outside a dialog that can be challenged: INVITE, MESSAGE, REFER,
    /// SUBSCRIBE, … — not ACK or CANCEL (RFC 3261 §22.1), and not OPTIONS, which the SIP layer
    /// answers by itself.
    OutOfDialog,
}

/// Server-side digest authentication: the realm, the secret that keys the stateless nonces,
/// the application's user store (an [`Ha1Lookup`], so no plain password is needed) and which
/// requests to challenge. Give it to [`crate::SessionManagerBuilder::authenticate`].
///
/// An INVITE without valid credentials gets 401 with one `WWW-Authenticate` per offered
/// algorithm (407 with `Proxy-Authenticate` when [`ServerAuth::proxy`] is set); credentials
/// with an expired nonce or a nonce count seen before get a new challenge with `stale=true`;
/// malformed credentials get 400. An authorized INVITE reaches the
/// [`crate::CallHandler`] with [`crate::IncomingCall::authenticated_user`] set.
///
/// ```
/// use session_core::{Algorithm, AuthScope, Ha1, HashFunction, ServerAuth};
///
/// // The user store: HA1 = H(user:realm:password), computed here from a password for brevity.
/// let users = |user: &str, realm: &str, hash: HashFunction| {
///     (user == "alice").then(|| Ha1::from_password(hash, user, realm, "wonderland"))
/// };
/// let auth = ServerAuth::new("example.com", users)
///     .algorithms([Algorithm::Sha256, Algorithm::Md5])
///     .scope(AuthScope::OutOfDialog);
/// assert_eq!(auth.realm(), "example.com");
/// ```
#[derive(Clone)]
pub struct ServerAuth {
    realm: String,
    secret: Option<Vec<u8>>,
    lookup: Arc<dyn Ha1Lookup + Send + Sync>,
    scope: AuthScope,
    proxy: bool,
    algorithms: Option<Vec<Algorithm>>,
    nonce_lifetime: Option<Duration>,
}

impl fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAuth")
            .field("realm", &self.realm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .field("proxy", &self.proxy)
            .field("algorithms", &self.algorithms)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .finish_non_exhaustive()
    }
}

impl ServerAuth {
    /// Challenges in `realm`, with HA1s from `users`. The lookup runs on the manager's task
    /// for every credential checked: keep it an in-memory lookup (a slow store delays every
    /// call). A lookup that panics costs its request a 500, not the manager.
    pub fn new(realm: impl Into<String>, users: impl Ha1Lookup + Send + Sync + 'static) -> Self {
        Self {
            realm: realm.into(),
            secret: None,
            lookup: Arc::new(users),
            scope: AuthScope::default(),
            proxy: false,
            algorithms: None,
            nonce_lifetime: None,
        }
    }

    /// The key of the nonces' MAC (at least 16 bytes). Share it between servers that must
    /// accept each other's nonces, or keep one across restarts; by default 32 bytes are drawn
    /// from the manager's generator ([`crate::SessionManagerBuilder::rng_seed`]), so nonces of
    /// an earlier run are not accepted.
    #[must_use]
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Which requests are challenged ([`AuthScope::Invite`] by default).
    #[must_use]
    pub fn scope(mut self, scope: AuthScope) -> Self {
        self.scope = scope;
        self
    }

    /// Challenge as a proxy does: 407 with `Proxy-Authenticate`, credentials read from
    /// `Proxy-Authorization` (default: as a UAS, 401 with `WWW-Authenticate`).
    #[must_use]
    pub fn proxy(mut self, yes: bool) -> Self {
        self.proxy = yes;
        self
    }

    /// The algorithms offered, preferred first (default SHA-256, then MD5). Some user agents
    /// give up on the first challenge they cannot answer (baresip 1.0 knows MD5 only and stops
    /// at a SHA-256 one): offer only MD5 to them.
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// How long a nonce is accepted after it was issued (default 5 minutes); credentials with
    /// an older one are challenged again with `stale=true`.
    #[must_use]
    pub fn nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = Some(lifetime);
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

/// The outcome of checking one request.
pub(crate) enum Checked {
    /// Right credentials, fresh: the user they belong to.
    Authorized(String),
    /// Answer the request with this (401/407 with the challenge, 400, or 500), nothing else.
    Answer(StatusCode, Vec<Header>),
}

/// A [`ServerAuth`] ready to check requests: the digest server (its replay cache) and its own
/// generator for nonce salts, so that challenging leaves the manager's other draws as they
/// were.
pub(crate) struct Authenticator {
    server: DigestServer,
    lookup: Arc<dyn Ha1Lookup + Send + Sync>,
    scope: AuthScope,
    rng: fastrand::Rng,
}

impl Authenticator {
    /// Builds the digest server; `rng` gives the secret when none was set and seeds the
    /// salts. Fails on a secret shorter than 16 bytes, no algorithm, or a realm with CR/LF.
    pub(crate) fn new(auth: ServerAuth, rng: &mut fastrand::Rng) -> Result<Self> {
        let secret = auth
            .secret
            .unwrap_or_else(|| std::iter::repeat_with(|| rng.u8(..)).take(32).collect());
        let mut builder = DigestServer::builder(auth.realm.clone(), &secret).proxy(auth.proxy);
        if let Some(algorithms) = auth.algorithms {
            builder = builder.algorithms(algorithms);
        }
        if let Some(lifetime) = auth.nonce_lifetime {
            builder = builder.nonce_lifetime(lifetime);
        }
        let server = builder
            .build()
            .map_err(|error| SessionError::InvalidInput {
                what: "server authentication",
                value: error.to_string(),
            })?;
        Ok(Self {
            server,
            lookup: auth.lookup,
            scope: auth.scope,
            rng: fastrand::Rng::with_seed(rng.u64(..)),
        })
    }

    /// Whether a request of `method` outside a dialog is challenged (REGISTER is the
    /// registrar's decision, INVITE always).
    pub(crate) fn covers(&self, method: &Method) -> bool {
        match method {
            Method::Invite => true,
            Method::Ack | Method::Cancel | Method::Register => false,
            _ => self.scope == AuthScope::OutOfDialog,
        }
    }

    /// Checks `request`'s credentials at wall-clock time `now`.
    pub(crate) fn check(&mut self, request: &Request, now: SystemTime) -> Checked {
        let Self {
            server,
            lookup,
            rng,
            ..
        } = self;
        // The lookup is the application's code: a panic in it costs this request a 500.
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            server.verify_request(request, &**lookup, now, rng)
        }));
        match verdict {
            Ok(Verdict::Authorized { username, .. }) => Checked::Authorized(username),
            Ok(Verdict::Challenge(challenge)) => {
                tracing::debug!(
                    method = %request.method,
                    reason = ?challenge.reason,
                    stale = challenge.stale,
                    "request challenged"
                );
                let headers = challenge
                    .headers()
                    .map(|(name, value)| Header::new(name, value))
                    .collect();
                Checked::Answer(challenge.status, headers)
            }
            Ok(Verdict::Reject { status, error }) => {
                tracing::debug!(method = %request.method, %error, "malformed credentials");
                Checked::Answer(status, Vec::new())
            }
            Ok(_) => Checked::Answer(StatusCode::SERVER_INTERNAL_ERROR, Vec::new()),
            Err(_) => {
                tracing::error!("the credential lookup panicked; the manager goes on");
                Checked::Answer(StatusCode::SERVER_INTERNAL_ERROR, Vec::new())
            }
        }
    }
}
