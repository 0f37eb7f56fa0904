//! SIP digest authentication (RFC 3261 §22 with RFC 2617's semantics, RFC 7616's algorithms
//! and qualities of protection, RFC 8760 for SIP) as a sans-IO core: no sockets, no clock, no
//! threads — time and randomness are arguments, and nothing panics on any input.
//!
//! - **Headers**: [`Challenge`] is a `WWW-Authenticate`/`Proxy-Authenticate` value,
//!   [`Authorization`] an `Authorization`/`Proxy-Authorization` value; both parse leniently
//!   (any case, unknown parameters skipped, several challenges on a line) and print back in
//!   RFC 7616's form.
//! - **Client**: [`DigestClient`] answers a 401/407 with the strongest challenge its
//!   [`CredentialProvider`] can meet (SHA-512-256 > SHA-256 > MD5, `-sess` variants too),
//!   keeps nonce counts per realm to pre-authorize later requests, retries once on
//!   `stale=true`, and refuses to loop when credentials are rejected ([`Attempt`]).
//! - **Server**: [`DigestServer`] issues challenges with stateless HMAC nonces, verifies
//!   credentials against HA1s from an [`Ha1Lookup`], answers expired nonces with `stale=true`
//!   and refuses replays through nonce counts kept in a bounded cache; the result is a
//!   [`Verdict`].
//!
//! # A round trip
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use session_auth::{
//!     Algorithm, Attempt, Credentials, DigestClient, DigestRequest, DigestServer, Ha1, Qop,
//!     Verdict,
//! };
//!
//! let mut rng = fastrand::Rng::with_seed(42);
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//!
//! // The registrar stores HA1s, never passwords.
//! let mut registrar = DigestServer::builder("example.com", b"a server secret, 16+ bytes")
//!     .algorithms([Algorithm::Sha512_256, Algorithm::Sha256, Algorithm::Md5])
//!     .build()?;
//! let users = |user: &str, realm: &str, hash| {
//!     (user == "alice").then(|| Ha1::from_password(hash, user, realm, "wonderland"))
//! };
//!
//! let register = DigestRequest::new("REGISTER", "sip:example.com", b"");
//!
//! // 1. No credentials: 401 with one challenge per algorithm.
//! let Verdict::Challenge(challenge) = registrar.verify(&register, [], &users, now, &mut rng)
//! else { unreachable!() };
//!
//! // 2. The phone answers the strongest one.
//! let mut phone = DigestClient::new();
//! let password = |_: &str| Some(Credentials::password("alice", "wonderland"));
//! let mut attempt = Attempt::new();
//! let headers = phone.handle_challenge(
//!     &mut attempt,
//!     challenge.status,
//!     challenge.headers(),
//!     &register,
//!     &password,
//!     &mut rng,
//! )?;
//! assert!(headers[0].value.contains("algorithm=SHA-512-256"));
//!
//! // 3. The registrar accepts the re-sent REGISTER.
//! let values = headers.iter().map(|h| h.value.as_str());
//! assert_eq!(
//!     registrar.verify(&register, values, &users, now, &mut rng),
//!     Verdict::Authorized {
//!         username: "alice".into(),
//!         algorithm: Algorithm::Sha512_256,
//!         qop: Qop::Auth,
//!     }
//! );
//! # Ok::<(), session_auth::Error>(())
//! ```
//!
//! # Wiring into a user agent
//!
//! Keep one [`DigestClient`] per account and one [`Attempt`] per request (its re-sends after
//! 401/407 share it). Add [`DigestClient::authorize`]'s headers to a new request, and on a
//! 401/407 re-send it with a new CSeq and the headers from
//! [`DigestClient::handle_response`]; an error means the request has failed. A UAS or proxy
//! calls [`DigestServer::verify_request`] and sends [`ServerChallenge`]'s headers in a 401/407,
//! or 400 on [`Verdict::Reject`].
#![forbid(unsafe_code)]

mod algorithm;
mod authorization;
mod challenge;
mod client;
mod error;
mod params;
mod replay;
mod request;
mod server;

pub use algorithm::{Algorithm, Ha1, HashFunction, Qop};
pub use authorization::Authorization;
pub use challenge::Challenge;
pub use client::{Attempt, AuthHeader, CredentialProvider, Credentials, DigestClient};
pub use error::{Error, Result};
pub use request::DigestRequest;
pub use server::{
    ChallengeReason, DigestServer, DigestServerBuilder, Ha1Lookup, ServerChallenge, Verdict,
};
