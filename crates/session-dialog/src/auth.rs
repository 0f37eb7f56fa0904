//! Client digest authentication of the requests a [`UserAgent`](crate::ua::UserAgent) sends
//! (RFC 3261 §22.2–§22.3, with session-auth's sans-IO [`DigestClient`]).
//!
//! An [`Account`] is what the layer above attaches to a request (and the user agent then to the
//! dialog an INVITE makes): the application's [`CredentialProvider`] and the one
//! [`DigestClient`] that keeps the account's nonces and nonce counts. When a request sent with
//! an account is answered 401 or 407, the user agent answers the challenge itself and re-sends
//! the request in a new transaction — same Call-ID, From and To (tags included), Request-URI,
//! Route and body, the next CSeq (§8.1.3.5, §22.2) — with `Authorization` or
//! `Proxy-Authorization`. The layer above never sees the challenge: events of the re-sent
//! request carry the id of the first transaction (see [`UaEvent`](crate::ua::UaEvent)), and a
//! CANCEL asked for under that id reaches the INVITE in flight.
//!
//! The retry is bounded by session-auth's rules, one [`Attempt`] per request and its re-sends:
//! a second challenge for a realm already answered (the credentials are wrong), a realm with no
//! credentials, or more than [`DigestClient::MAX_ROUNDS`] challenges end the request with the
//! challenge itself as its final response — never a loop.
//!
//! What is never answered (§22.1, §22.2): a challenge to ACK or CANCEL (neither can be
//! challenged), to a PRACK (the user agent's own business), or to an INVITE the caller asked to
//! cancel. The ACK of a 2xx carries the INVITE's credentials as they were sent (§13.2.2.4),
//! copied rather than computed again.
//!
//! `Account` is a cheap handle (an `Arc`): the layer above keeps one per set of credentials —
//! per account, not per call — and a request or dialog keeps it alive as long as it may need
//! it (a BYE challenged after the call ended still finds its credentials).
//!
//! ```
//! use session_auth::Credentials;
//! use session_dialog::auth::Account;
//!
//! let account = Account::new(|realm: &str| {
//!     (realm == "example.com").then(|| Credentials::password("alice", "secret"))
//! });
//! assert!(account.realms().is_empty());
//! ```

use session_auth::{Attempt, AuthHeader, DigestClient, DigestRequest};
use session_sip::{Header, HeaderName, Request, Response};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use session_auth::{CredentialProvider, Credentials};

/// The credentials of one account and the digest state they need (nonces and nonce counts per
/// realm). Clones share the state.
#[derive(Clone)]
pub struct Account {
    inner: Arc<Mutex<AccountState>>,
}

struct AccountState {
    client: DigestClient,
    provider: Arc<dyn CredentialProvider + Send + Sync>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("realms", &self.realms())
            .finish()
    }
}

impl Account {
    /// An account whose credentials come from `provider`, asked per realm when a challenge
    /// comes. The provider runs inside the user agent (the driver's task): it must answer at
    /// once.
    pub fn new(provider: impl CredentialProvider + Send + Sync + 'static) -> Self {
        Self::shared(Arc::new(provider))
    }

    /// [`Account::new`] with a provider shared with others.
    pub fn shared(provider: Arc<dyn CredentialProvider + Send + Sync>) -> Self {
        Self::with_client(provider, DigestClient::new())
    }

    /// With a [`DigestClient`] configured by the caller (`max_realms`, `prefer_auth_int`).
    pub fn with_client(
        provider: Arc<dyn CredentialProvider + Send + Sync>,
        client: DigestClient,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(AccountState { client, provider })),
        }
    }

    /// The realms this account has answered and keeps nonces for: `(true, realm)` for a
    /// proxy's.
    pub fn realms(&self) -> Vec<(bool, String)> {
        self.state()
            .client
            .realms()
            .map(|(proxy, realm)| (proxy, realm.to_owned()))
            .collect()
    }

    /// A new account over the same provider, with digest state of its own (a fresh
    /// [`DigestClient`]): for a registration, whose pre-authorized refreshes must carry only
    /// its registrar's realms.
    pub fn sibling(&self) -> Self {
        let provider = Arc::clone(&self.state().provider);
        Self::shared(provider)
    }

    /// Whether two handles are the same account.
    pub fn same(&self, other: &Account) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn state(&self) -> MutexGuard<'_, AccountState> {
        // Nothing in the state can be left half-changed by a panic that matters: a poisoned
        // lock (a provider that panicked) still holds a usable client.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Credentials for a new request in the realms answered before (RFC 3261 §22.3), recorded
    /// in `attempt`.
    pub(crate) fn authorize(
        &self,
        attempt: &mut Attempt,
        request: &Request,
        rng: &mut fastrand::Rng,
    ) -> Vec<AuthHeader> {
        self.state()
            .client
            .authorize(attempt, &DigestRequest::from_sip(request), rng)
    }

    /// Answers the 401/407 `response` to `request` (as it will be re-sent: only its method,
    /// Request-URI and body count).
    pub(crate) fn answer(
        &self,
        attempt: &mut Attempt,
        response: &Response,
        request: &Request,
        rng: &mut fastrand::Rng,
    ) -> session_auth::Result<Vec<AuthHeader>> {
        let mut state = self.state();
        let AccountState { client, provider } = &mut *state;
        client.handle_response(attempt, response, request, &**provider, rng)
    }
}

/// Whether a request of this method may be answered after a challenge (§22.1: not ACK or
/// CANCEL; PRACK is the user agent's own).
pub(crate) fn challengeable(method: &session_sip::Method) -> bool {
    !matches!(
        method,
        session_sip::Method::Ack | session_sip::Method::Cancel | session_sip::Method::Prack
    )
}

/// The credentials a request carries (`Authorization`, `Proxy-Authorization`), to copy onto
/// the ACK of its 2xx (§13.2.2.4).
pub(crate) fn credentials_of(request: &Request) -> Vec<Header> {
    request
        .headers
        .iter()
        .filter(|h| {
            matches!(
                h.name(),
                HeaderName::Authorization | HeaderName::ProxyAuthorization
            )
        })
        .cloned()
        .collect()
}

/// `request` again for a new transaction: a new top Via, CSeq `seq`, and `credentials` in
/// place of the ones it carried.
pub(crate) fn resend(
    request: &Request,
    via: String,
    seq: u32,
    credentials: &[AuthHeader],
) -> Request {
    let mut again = request.clone();
    let headers = &mut again.headers;
    // Our Via is the only one (a UAC's request has one): a new branch makes a new transaction.
    headers.remove_all(HeaderName::Via);
    headers.push_front(Header::new(HeaderName::Via, via));
    if let Some(cseq) = headers.get_mut(HeaderName::CSeq) {
        cseq.set_value(format!("{seq} {}", request.method.as_str()));
    }
    headers.remove_all(HeaderName::Authorization);
    headers.remove_all(HeaderName::ProxyAuthorization);
    for credential in credentials {
        headers.push(Header::new(credential.name, credential.value.clone()));
    }
    again
}

/// What the user agent keeps of a request sent with an account, until its final response: all
/// it takes to send it again.
pub(crate) struct Challengeable {
    /// The transaction the layer above knows the request by (its first).
    pub(crate) original: crate::transaction::TransactionId,
    /// The request as last sent.
    pub(crate) request: Request,
    pub(crate) destination: std::net::SocketAddr,
    pub(crate) protocol: crate::endpoint::Protocol,
    pub(crate) account: Account,
    pub(crate) attempt: Attempt,
    /// The dialog it was sent in: a re-send takes the dialog's next CSeq while it lives.
    pub(crate) dialog: Option<session_types::DialogId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        let text = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\n\
            Max-Forwards: 70\r\nTo: <sip:a@example.com>\r\nFrom: <sip:a@example.com>;tag=t\r\n\
            Call-ID: c1\r\nCSeq: 7 REGISTER\r\nAuthorization: Digest old\r\n\
            Content-Length: 0\r\n\r\n";
        match session_sip::Message::parse(text.as_bytes().to_vec()).unwrap() {
            session_sip::Message::Request(r) => r,
            session_sip::Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn a_resent_request_has_a_new_via_the_next_cseq_and_only_the_new_credentials() {
        let original = request();
        let creds = [AuthHeader {
            name: HeaderName::Authorization,
            value: "Digest new".into(),
        }];
        let again = resend(
            &original,
            "SIP/2.0/UDP h:5060;branch=z9hG4bK2;rport".into(),
            8,
            &creds,
        );
        assert_eq!(again.top_via().unwrap().branch(), Some("z9hG4bK2"));
        assert_eq!(again.headers.count(HeaderName::Via), 1);
        assert_eq!(again.cseq().unwrap().seq, 8);
        assert_eq!(again.call_id().unwrap(), "c1");
        assert_eq!(again.from().unwrap().tag(), Some("t"));
        let auth: Vec<_> = again.headers.values(HeaderName::Authorization).collect();
        assert_eq!(auth, ["Digest new"]);
        assert_eq!(credentials_of(&again).len(), 1);
    }

    #[test]
    fn ack_cancel_and_prack_are_never_answered() {
        use session_sip::Method;
        assert!(!challengeable(&Method::Ack));
        assert!(!challengeable(&Method::Cancel));
        assert!(!challengeable(&Method::Prack));
        assert!(challengeable(&Method::Bye));
        assert!(challengeable(&Method::Register));
    }
}
