//! The embedded registrar and location service (RFC 3261 §10.3), for tests, examples and small
//! deployments: opt in with [`crate::SessionManagerBuilder::registrar`].
//!
//! A REGISTER is taken through the §10.3 steps: the Request-URI and the address of record
//! (the To URI) must name a served domain (else 404); with
//! [`RegistrarConfig::authenticate`] it is challenged with the manager's digest
//! ([`crate::ServerAuth`]) and the authenticated user must be the address of record's user
//! (else 403); `Contact: *` needs `Expires: 0` and no other Contact (else 400) and removes
//! every binding; an expiry below the minimum gets 423 Interval Too Brief with
//! `Min-Expires`, one above the maximum is shortened; a binding's Call-ID and CSeq order
//! its updates (the same Call-ID with a CSeq not above the stored one fails the whole request
//! with 500, step 7). Updates are all-or-nothing, and the 200 lists every current binding with
//! its remaining `expires` (and `q`).
//!
//! [`crate::SessionManager::lookup`] returns an address of record's bindings, highest q first;
//! expired bindings are never returned and are swept from memory at most a second after
//! they expire (one pass over the table per sweep, at most one sweep a second). Memory is
//! bounded by [`RegistrarConfig::max_aors`] × [`RegistrarConfig::max_bindings_per_aor`]:
//! beyond either, a REGISTER that would add gets 503. Each change is published on the bus
//! as [`SessionEvent::Registrar`].
//!
//! The registrar itself (`Registrar`) is sans-IO: `now` is an argument of every method. The
//! manager's task drives it (`Core::serve_out_of_dialog`, `Core::sweep_bindings`) and shares
//! it with the [`crate::SessionManager`] handles behind a mutex for lookups.

use crate::core::{Core, now};
use crate::error::{Result, SessionError};
use crate::server_auth::{Authenticator, Checked, ServerAuth};
use session_dialog::transaction::TransactionId;
use session_events::{BindingChange, SessionEvent};
use session_sip::{Contact, Header, HeaderName, Method, Request, Uri};
use session_types::StatusCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often at most the registrar walks its table for expired bindings.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The settings of the embedded registrar ([`crate::SessionManagerBuilder::registrar`]).
///
/// ```
/// use session_core::RegistrarConfig;
/// use std::time::Duration;
///
/// let config = RegistrarConfig::default()
///     .domain("example.com")
///     .min_expires(Duration::from_secs(60))
///     .max_bindings_per_aor(5);
/// assert!(config.authenticate, "REGISTERs are challenged unless said otherwise");
/// assert_eq!(config.domains, ["example.com"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistrarConfig {
    /// The domains served, as hosts (`example.com`, `127.0.0.1`) or `host:port`; a REGISTER
    /// whose Request-URI or address of record names another gets 404. Empty (the default):
    /// any domain.
    pub domains: Vec<String>,
    /// The shortest registration accepted (default 60 s); shorter ones get 423 Interval Too
    /// Brief with this as `Min-Expires`.
    pub min_expires: Duration,
    /// The registration granted when the REGISTER asks for none (default 3600 s).
    pub default_expires: Duration,
    /// The longest registration granted (default 7200 s); longer requests are shortened.
    pub max_expires: Duration,
    /// How many contacts one address of record may have (default 10).
    pub max_bindings_per_aor: usize,
    /// How many addresses of record the registrar holds at most (default 10 000).
    pub max_aors: usize,
    /// Whether REGISTERs are challenged with the manager's digest (default yes; needs
    /// [`crate::SessionManagerBuilder::authenticate`]). The authenticated user must then be
    /// the user of the address of record it registers.
    pub authenticate: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            min_expires: Duration::from_secs(60),
            default_expires: Duration::from_secs(3600),
            max_expires: Duration::from_secs(7200),
            max_bindings_per_aor: 10,
            max_aors: 10_000,
            authenticate: true,
        }
    }
}

impl RegistrarConfig {
    /// Adds a served domain ([`RegistrarConfig::domains`]).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domains.push(domain.into());
        self
    }

    /// Sets [`RegistrarConfig::min_expires`].
    #[must_use]
    pub fn min_expires(mut self, expires: Duration) -> Self {
        self.min_expires = expires;
        self
    }

    /// Sets [`RegistrarConfig::default_expires`].
    #[must_use]
    pub fn default_expires(mut self, expires: Duration) -> Self {
        self.default_expires = expires;
        self
    }

    /// Sets [`RegistrarConfig::max_expires`].
    #[must_use]
    pub fn max_expires(mut self, expires: Duration) -> Self {
        self.max_expires = expires;
        self
    }

    /// Sets [`RegistrarConfig::max_bindings_per_aor`].
    #[must_use]
    pub fn max_bindings_per_aor(mut self, bindings: usize) -> Self {
        self.max_bindings_per_aor = bindings;
        self
    }

    /// Sets [`RegistrarConfig::max_aors`].
    #[must_use]
    pub fn max_aors(mut self, aors: usize) -> Self {
        self.max_aors = aors;
        self
    }

    /// Sets [`RegistrarConfig::authenticate`].
    #[must_use]
    pub fn authenticate(mut self, yes: bool) -> Self {
        self.authenticate = yes;
        self
    }

    /// Refuses settings that cannot work: a zero minimum, a default outside the minimum and
    /// maximum, room for no binding or no address of record.
    fn check(&self) -> Result<()> {
        let invalid = |value: &str| {
            Err(SessionError::InvalidInput {
                what: "registrar configuration",
                value: value.to_owned(),
            })
        };
        if self.min_expires.as_secs() == 0 {
            return invalid("min_expires must be at least 1 s");
        }
        if !(self.min_expires <= self.default_expires && self.default_expires <= self.max_expires) {
            return invalid("min_expires <= default_expires <= max_expires must hold");
        }
        if self.max_bindings_per_aor == 0 || self.max_aors == 0 {
            return invalid("max_bindings_per_aor and max_aors must be at least 1");
        }
        Ok(())
    }
}

/// One contact bound to an address of record, as [`crate::SessionManager::lookup`] returns it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Binding {
    /// The address of record, in canonical form (`sip:user@domain`).
    pub aor: String,
    /// Where to reach it: the Contact URI as registered (place calls to it).
    pub contact: Uri,
    /// Its q-value (RFC 3261 §20.10, 0.0–1.0), if it gave one.
    pub q: Option<f32>,
    /// When it expires, on the manager's clock (tokio's, as a `std::time::Instant`).
    pub expires_at: Instant,
    /// How long it had left when it was looked up.
    pub expires_in: Duration,
    /// The Call-ID of the REGISTER that made or last refreshed it.
    pub call_id: String,
    /// That REGISTER's CSeq number.
    pub cseq: u32,
    /// Where that REGISTER came from (behind a NAT, the contact may not be reachable and this
    /// address may be).
    pub source: SocketAddr,
    /// The user that REGISTER was authenticated as, when the registrar authenticates.
    pub authenticated_user: Option<String>,
}

/// A binding as stored.
#[derive(Clone, Debug)]
struct Stored {
    contact: Uri,
    /// q in thousandths (RFC 3261's qvalue has three decimals).
    q: Option<u16>,
    expires_at: Instant,
    call_id: String,
    cseq: u32,
    source: SocketAddr,
    user: Option<String>,
}

impl Stored {
    fn binding(&self, aor: &str, now: Instant) -> Binding {
        Binding {
            aor: aor.to_owned(),
            contact: self.contact.clone(),
            q: self.q.map(|q| f32::from(q) / 1000.0),
            expires_at: self.expires_at,
            expires_in: self.expires_at.saturating_duration_since(now),
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            source: self.source,
            authenticated_user: self.user.clone(),
        }
    }

    /// The Contact value of a 200: `<uri>;expires=N[;q=Q]`.
    fn contact_value(&self, now: Instant) -> String {
        let left = self.expires_at.saturating_duration_since(now).as_secs();
        let mut value = format!("<{}>;expires={left}", self.contact);
        if let Some(q) = self.q {
            value.push_str(";q=");
            value.push_str(&format_q(q));
        }
        value
    }

    /// Ordering key: higher q first (absent counts as 1), then the one expiring last.
    fn rank(&self) -> (std::cmp::Reverse<u16>, std::cmp::Reverse<Instant>) {
        (
            std::cmp::Reverse(self.q.unwrap_or(1000)),
            std::cmp::Reverse(self.expires_at),
        )
    }
}

/// A qvalue in thousandths as RFC 3261 §25.1 writes it: `1`, `0.5`, `0.125`, `0`.
fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".to_owned();
    }
    let text = format!("0.{q:03}");
    let text = text.trim_end_matches('0');
    text.strip_suffix('.').unwrap_or(text).to_owned()
}

/// A qvalue (`0.5`) in thousandths; `None` unless it is 0–1 with at most three decimals.
fn parse_q(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The address of record of `uri` in canonical form (RFC 3261 §10.3 step 5: URI parameters
/// dropped, escapes decoded, the host in lower case): `sip:user@host[:port]`; `sips:` URIs
/// share their `sip:` record. `None` for other schemes.
pub(crate) fn canonical_aor(uri: &Uri) -> Option<String> {
    if !uri.is_sip() || uri.host().is_empty() {
        return None;
    }
    let mut aor = String::from("sip:");
    if let Some(user) = uri.user_decoded() {
        aor.push_str(&user);
        aor.push('@');
    }
    aor.push_str(&uri.host().to_ascii_lowercase());
    if let Some(port) = uri.port() {
        aor.push(':');
        aor.push_str(&port.to_string());
    }
    Some(aor)
}

/// A change to publish: address of record, contact, what happened.
pub(crate) type Change = (String, Uri, BindingChange);

/// What to answer a REGISTER and what changed.
pub(crate) struct Outcome {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<Header>,
    pub(crate) changes: Vec<Change>,
}

/// A REGISTER's refusal: the status and its headers.
type Refusal = (StatusCode, Vec<Header>);

fn refuse(status: StatusCode) -> Refusal {
    (status, Vec::new())
}

/// One Contact of a REGISTER, read.
struct Update {
    contact: Uri,
    expires: u32,
    q: Option<u16>,
}

/// The bindings of every address of record (sans-IO: time is an argument).
#[derive(Debug)]
pub(crate) struct Registrar {
    config: RegistrarConfig,
    aors: HashMap<String, Vec<Stored>>,
    /// Bindings in all records.
    bindings: usize,
    /// No binding expires before this (a lower bound: a removed binding may have set it).
    next_expiry: Option<Instant>,
    last_sweep: Option<Instant>,
}

impl Registrar {
    pub(crate) fn new(config: RegistrarConfig) -> Self {
        Self {
            config,
            aors: HashMap::new(),
            bindings: 0,
            next_expiry: None,
            last_sweep: None,
        }
    }

    pub(crate) fn authenticates(&self) -> bool {
        self.config.authenticate
    }

    /// How many bindings the registrar holds (expired ones not yet swept included).
    pub(crate) fn len(&self) -> usize {
        self.bindings
    }

    /// Whether `uri` names a served domain.
    fn serves(&self, uri: &Uri) -> bool {
        if self.config.domains.is_empty() {
            return true;
        }
        let host = uri.host();
        self.config.domains.iter().any(|domain| {
            match domain
                .rsplit_once(':')
                .filter(|(_, port)| port.parse::<u16>().is_ok())
            {
                // `host:port` (not an IPv6 reference's colon, whose port part would not
                // parse after `]`).
                Some((h, port)) if !h.is_empty() && !domain.ends_with(']') => {
                    h.eq_ignore_ascii_case(host)
                        && uri.port().map(|p| p.to_string()) == Some(port.into())
                }
                _ => domain.eq_ignore_ascii_case(host),
            }
        })
    }

    /// The current bindings of `aor` (any form `Uri::parse` takes, `sip:` assumed when it has
    /// no scheme), highest q first, then the one expiring last.
    pub(crate) fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let uri = Uri::parse(aor).or_else(|_| Uri::parse(&format!("sip:{aor}")));
        let Some(key) = uri.ok().as_ref().and_then(canonical_aor) else {
            return Vec::new();
        };
        let Some(stored) = self.aors.get(&key) else {
            return Vec::new();
        };
        let mut current: Vec<&Stored> = stored.iter().filter(|b| b.expires_at > now).collect();
        current.sort_by_key(|b| b.rank());
        current.iter().map(|b| b.binding(&key, now)).collect()
    }

    /// When [`Registrar::sweep`] has something to do.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        let at = self.next_expiry?;
        Some(match self.last_sweep {
            Some(last) => at.max(last + SWEEP_INTERVAL),
            None => at,
        })
    }

    /// Removes every expired binding when it is time ([`Registrar::next_sweep`]).
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<Change> {
        if self.next_sweep().is_none_or(|at| at > now) {
            return Vec::new();
        }
        self.sweep_all(now)
    }

    fn sweep_all(&mut self, now: Instant) -> Vec<Change> {
        self.last_sweep = Some(now);
        let mut changes = Vec::new();
        let mut next: Option<Instant> = None;
        self.aors.retain(|aor, stored| {
            stored.retain(|b| {
                if b.expires_at <= now {
                    changes.push((aor.clone(), b.contact.clone(), BindingChange::Expired));
                    false
                } else {
                    next = Some(next.map_or(b.expires_at, |n| n.min(b.expires_at)));
                    true
                }
            });
            !stored.is_empty()
        });
        self.bindings = self.bindings.saturating_sub(changes.len());
        self.next_expiry = next;
        changes
    }

    /// Processes a REGISTER from `source`, authenticated as `user` (when the registrar
    /// authenticates), at `now`.
    pub(crate) fn register(
        &mut self,
        now: Instant,
        request: &Request,
        source: SocketAddr,
        user: Option<&str>,
    ) -> Outcome {
        let mut changes = Vec::new();
        match self.try_register(now, request, source, user, &mut changes) {
            Ok(headers) => Outcome {
                status: StatusCode::OK,
                headers,
                changes,
            },
            Err((status, headers)) => Outcome {
                status,
                headers,
                changes,
            },
        }
    }

    fn try_register(
        &mut self,
        now: Instant,
        request: &Request,
        source: SocketAddr,
        user: Option<&str>,
        changes: &mut Vec<Change>,
    ) -> std::result::Result<Vec<Header>, Refusal> {
        let bad = |_| refuse(StatusCode::BAD_REQUEST);
        // Steps 1 and 3: our domain, an address of record in it.
        if !self.serves(&request.uri) {
            return Err(refuse(StatusCode::NOT_FOUND));
        }
        let to = request.to().map_err(bad)?.uri();
        let aor = canonical_aor(&to)
            .filter(|_| self.serves(&to))
            .ok_or(refuse(StatusCode::NOT_FOUND))?;
        // Step 4: the authenticated user may register its own address only.
        if self.config.authenticate && (user.is_none() || to.user_decoded().as_deref() != user) {
            return Err(refuse(StatusCode::FORBIDDEN));
        }
        let call_id = request.call_id().map_err(bad)?;
        let cseq = request.cseq().map_err(bad)?.seq;
        let header_expires = request.expires().transpose().map_err(bad)?;
        let mut star = false;
        let mut updates = Vec::new();
        let mut too_brief = false;
        let min = u32::try_from(self.config.min_expires.as_secs()).unwrap_or(u32::MAX);
        let max = u32::try_from(self.config.max_expires.as_secs()).unwrap_or(u32::MAX);
        let default = u32::try_from(self.config.default_expires.as_secs()).unwrap_or(u32::MAX);
        for contact in request.contacts() {
            match contact.map_err(bad)? {
                Contact::Star => star = true,
                Contact::Addr(address) => {
                    let expires = match address.expires() {
                        Some(expires) => expires.map_err(bad)?,
                        None => header_expires.unwrap_or(default),
                    };
                    let q = match address.params.get("q") {
                        None => None,
                        Some(value) => Some(
                            value
                                .and_then(parse_q)
                                .ok_or(refuse(StatusCode::BAD_REQUEST))?,
                        ),
                    };
                    too_brief |= expires != 0 && expires < min;
                    updates.push(Update {
                        contact: address.uri(),
                        expires: expires.min(max),
                        q,
                    });
                }
            }
        }
        if star && (!updates.is_empty() || header_expires != Some(0)) {
            // Step 6: `*` only alone, and only with `Expires: 0`.
            return Err(refuse(StatusCode::BAD_REQUEST));
        }
        if too_brief {
            return Err((
                StatusCode::INTERVAL_TOO_BRIEF,
                vec![Header::new(HeaderName::MinExpires, min.to_string())],
            ));
        }
        let registering = Registering {
            call_id,
            cseq,
            source,
            user,
        };
        let original = self.take_live(&aor, now, changes);
        let next = match self.apply(now, &original, star, updates, &registering) {
            Ok(next) => next,
            Err(refusal) => {
                // All or nothing (step 8): the record stays as it was.
                self.put_back(aor, original);
                return Err(refusal);
            }
        };
        if original.is_empty() && !next.is_empty() && self.aors.len() >= self.config.max_aors {
            // A new record in a full table: expired ones make room, if any (at most one such
            // walk a second, so that a flood of new records cannot make each REGISTER walk).
            if self
                .last_sweep
                .is_none_or(|last| last + SWEEP_INTERVAL <= now)
            {
                changes.extend(self.sweep_all(now));
            }
            if self.aors.len() >= self.config.max_aors {
                return Err(refuse(StatusCode::SERVICE_UNAVAILABLE));
            }
        }
        // Commit, and say what changed.
        for before in &original {
            if !next.iter().any(|n| n.contact.equivalent(&before.contact)) {
                changes.push((aor.clone(), before.contact.clone(), BindingChange::Removed));
            }
        }
        for after in &next {
            let expires = after.expires_at.saturating_duration_since(now);
            let change = match original
                .iter()
                .find(|b| b.contact.equivalent(&after.contact))
            {
                None => BindingChange::Added { expires },
                // Untouched by this REGISTER.
                Some(b) if b.call_id == after.call_id && b.cseq == after.cseq => continue,
                Some(_) => BindingChange::Refreshed { expires },
            };
            changes.push((aor.clone(), after.contact.clone(), change));
        }
        let mut listed: Vec<&Stored> = next.iter().collect();
        listed.sort_by_key(|b| b.rank());
        let headers = listed
            .iter()
            .map(|b| Header::new(HeaderName::Contact, b.contact_value(now)))
            .collect();
        if let Some(earliest) = next.iter().map(|b| b.expires_at).min() {
            self.next_expiry = Some(self.next_expiry.map_or(earliest, |n| n.min(earliest)));
        }
        self.put_back(aor, next);
        Ok(headers)
    }

    /// Takes `aor`'s record out of the table, without its expired bindings (reported in
    /// `changes`).
    fn take_live(&mut self, aor: &str, now: Instant, changes: &mut Vec<Change>) -> Vec<Stored> {
        let Some(stored) = self.aors.remove(aor) else {
            return Vec::new();
        };
        self.bindings = self.bindings.saturating_sub(stored.len());
        let (live, expired): (Vec<Stored>, Vec<Stored>) =
            stored.into_iter().partition(|b| b.expires_at > now);
        changes.extend(
            expired
                .into_iter()
                .map(|b| (aor.to_owned(), b.contact, BindingChange::Expired)),
        );
        live
    }

    /// Puts `aor`'s record (back) into the table; an empty one is dropped.
    fn put_back(&mut self, aor: String, stored: Vec<Stored>) {
        if stored.is_empty() {
            return;
        }
        self.bindings += stored.len();
        self.aors.insert(aor, stored);
    }

    /// The record `original` after the REGISTER's updates (steps 6 to 8), or why the REGISTER
    /// fails.
    fn apply(
        &self,
        now: Instant,
        original: &[Stored],
        star: bool,
        updates: Vec<Update>,
        registering: &Registering<'_>,
    ) -> std::result::Result<Vec<Stored>, Refusal> {
        // Step 7: an update with the binding's Call-ID must have a higher CSeq; otherwise the
        // request fails.
        let out_of_order =
            |b: &Stored| b.call_id == registering.call_id && registering.cseq <= b.cseq;
        if star {
            if original.iter().any(out_of_order) {
                return Err(refuse(StatusCode::SERVER_INTERNAL_ERROR));
            }
            return Ok(Vec::new());
        }
        let mut next = original.to_vec();
        for update in updates {
            let stale = original
                .iter()
                .any(|b| b.contact.equivalent(&update.contact) && out_of_order(b));
            if stale {
                return Err(refuse(StatusCode::SERVER_INTERNAL_ERROR));
            }
            let at = next
                .iter()
                .position(|b| b.contact.equivalent(&update.contact));
            if update.expires == 0 {
                if let Some(at) = at {
                    next.remove(at);
                }
                continue;
            }
            let stored = Stored {
                contact: update.contact,
                q: update.q,
                expires_at: now + Duration::from_secs(u64::from(update.expires)),
                call_id: registering.call_id.to_owned(),
                cseq: registering.cseq,
                source: registering.source,
                user: registering.user.map(str::to_owned),
            };
            match at {
                Some(at) => {
                    if let Some(slot) = next.get_mut(at) {
                        *slot = stored;
                    }
                }
                None => next.push(stored),
            }
        }
        if next.len() > self.config.max_bindings_per_aor {
            // As Kamailio's `max_contacts`: 503, and the record stays as it was.
            return Err(refuse(StatusCode::SERVICE_UNAVAILABLE));
        }
        Ok(next)
    }
}

/// The REGISTER's own values that go into its bindings.
struct Registering<'a> {
    call_id: &'a str,
    cseq: u32,
    source: SocketAddr,
    user: Option<&'a str>,
}

/// The server side of a manager, each part opt-in: digest authentication of requests and the
/// registrar.
#[derive(Default)]
pub(crate) struct ServerSide {
    pub(crate) auth: Option<Authenticator>,
    /// Shared with the manager's handles, for lookups.
    pub(crate) registrar: Option<Arc<parking_lot::Mutex<Registrar>>>,
}

impl ServerSide {
    /// Checks the configuration and builds the parts; `seed` draws the nonce secret when none
    /// was given, and the salts.
    pub(crate) fn new(
        auth: Option<ServerAuth>,
        registrar: Option<RegistrarConfig>,
        seed: u64,
    ) -> Result<Self> {
        if let Some(config) = &registrar {
            config.check()?;
            if config.authenticate && auth.is_none() {
                return Err(SessionError::InvalidInput {
                    what: "registrar configuration",
                    value: "authenticate needs SessionManagerBuilder::authenticate (or \
                            RegistrarConfig::authenticate(false))"
                        .to_owned(),
                });
            }
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let auth = auth
            .map(|auth| Authenticator::new(auth, &mut rng))
            .transpose()?;
        Ok(Self {
            auth,
            registrar: registrar
                .map(|config| Arc::new(parking_lot::Mutex::new(Registrar::new(config)))),
        })
    }
}

impl Core {
    /// The wall-clock time at `at` on the manager's clock (read once at start, then advanced
    /// by the manager's clock: virtual time in a paused runtime).
    pub(crate) fn wall_time(&self, at: Instant) -> SystemTime {
        let (epoch_ms, epoch) = self.wall_epoch;
        UNIX_EPOCH + Duration::from_millis(epoch_ms) + at.saturating_duration_since(epoch)
    }

    /// Checks the credentials of `request` (server transaction `tx`) when the manager
    /// challenges its method: `Continue` with the authenticated user (`None` when not
    /// challenged), or `Break` once the request has been answered (401/407, 400, 500).
    pub(crate) async fn authenticate(
        &mut self,
        tx: TransactionId,
        request: &Request,
    ) -> ControlFlow<(), Option<String>> {
        let covered = self
            .server_side
            .auth
            .as_ref()
            .is_some_and(|auth| auth.covers(&request.method));
        if !covered {
            return ControlFlow::Continue(None);
        }
        self.check_credentials(tx, request).await
    }

    /// As [`Core::authenticate`], for any method.
    async fn check_credentials(
        &mut self,
        tx: TransactionId,
        request: &Request,
    ) -> ControlFlow<(), Option<String>> {
        let wall = self.wall_time(now());
        let Some(auth) = self.server_side.auth.as_mut() else {
            return ControlFlow::Continue(None);
        };
        match auth.check(request, wall) {
            Checked::Authorized(user) => ControlFlow::Continue(Some(user)),
            Checked::Answer(status, headers) => {
                self.respond(None, tx, status, headers, None).await;
                ControlFlow::Break(())
            }
        }
    }

    /// Requests outside any call of ours other than INVITE pass here first: REGISTER goes to
    /// the registrar, others are challenged when [`crate::AuthScope::OutOfDialog`] says so.
    /// Returns the request when it still needs an answer.
    pub(crate) async fn serve_out_of_dialog(
        &mut self,
        tx: TransactionId,
        request: Request,
        source: SocketAddr,
    ) -> Option<Request> {
        if request.method == Method::Register
            && let Some(registrar) = self.server_side.registrar.clone()
        {
            self.on_register(&registrar, tx, &request, source).await;
            return None;
        }
        match self.authenticate(tx, &request).await {
            ControlFlow::Continue(_) => Some(request),
            ControlFlow::Break(()) => None,
        }
    }

    async fn on_register(
        &mut self,
        registrar: &parking_lot::Mutex<Registrar>,
        tx: TransactionId,
        request: &Request,
        source: SocketAddr,
    ) {
        let authenticates = registrar.lock().authenticates();
        let user = if authenticates {
            match self.check_credentials(tx, request).await {
                ControlFlow::Continue(user) => user,
                ControlFlow::Break(()) => return,
            }
        } else {
            None
        };
        let outcome = registrar
            .lock()
            .register(now(), request, source, user.as_deref());
        tracing::debug!(
            status = outcome.status.as_u16(),
            changes = outcome.changes.len(),
            "REGISTER answered"
        );
        self.respond(None, tx, outcome.status, outcome.headers, None)
            .await;
        self.publish_bindings(outcome.changes);
    }

    /// When the registrar next has expired bindings to sweep.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        self.server_side
            .registrar
            .as_ref()
            .and_then(|registrar| registrar.lock().next_sweep())
    }

    /// Sweeps the registrar's expired bindings, when it is time.
    pub(crate) fn sweep_bindings(&mut self, now: Instant) {
        let Some(registrar) = &self.server_side.registrar else {
            return;
        };
        let changes = registrar.lock().sweep(now);
        self.publish_bindings(changes);
    }

    fn publish_bindings(&self, changes: Vec<Change>) {
        for (aor, contact, change) in changes {
            self.publish(SessionEvent::Registrar {
                aor: Arc::from(aor),
                contact: Arc::from(contact.as_str()),
                change,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5070);

    /// A REGISTER for `to` with these Contact values and Expires.
    fn register(
        to: &str,
        call_id: &str,
        cseq: u32,
        contacts: &[&str],
        expires: Option<u32>,
    ) -> Request {
        let mut text = format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}{call_id}\r\n\
             Max-Forwards: 70\r\nTo: <{to}>\r\nFrom: <{to}>;tag=f{cseq}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        );
        for contact in contacts {
            text.push_str(&format!("Contact: {contact}\r\n"));
        }
        if let Some(expires) = expires {
            text.push_str(&format!("Expires: {expires}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match session_sip::Message::parse(text.into_bytes()).unwrap() {
            session_sip::Message::Request(request) => request,
            session_sip::Message::Response(_) => unreachable!(),
        }
    }

    fn open() -> Registrar {
        Registrar::new(RegistrarConfig::default().authenticate(false))
    }

    fn contacts(outcome: &Outcome) -> Vec<&str> {
        outcome
            .headers
            .iter()
            .filter(|h| h.name() == HeaderName::Contact)
            .map(Header::value)
            .collect()
    }

    const ALICE: &str = "sip:alice@example.com";

    #[test]
    fn binds_refreshes_and_lists_by_q_with_remaining_expires() {
        let mut r = open();
        let t0 = Instant::now();
        let out = r.register(
            t0,
            &register(
                ALICE,
                "c1",
                1,
                &["<sip:alice@10.0.0.1:5070>;q=0.5"],
                Some(600),
            ),
            SOURCE,
            None,
        );
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(
            contacts(&out),
            ["<sip:alice@10.0.0.1:5070>;expires=600;q=0.5"]
        );
        assert_eq!(
            out.changes,
            [(
                ALICE.to_owned(),
                Uri::parse("sip:alice@10.0.0.1:5070").unwrap(),
                BindingChange::Added {
                    expires: Duration::from_secs(600)
                }
            )]
        );
        // A second device with a higher q, from another Call-ID, a minute later.
        let t1 = t0 + Duration::from_secs(60);
        let out = r.register(
            t1,
            &register(
                ALICE,
                "c2",
                1,
                &["<sip:alice@10.0.0.2;transport=tcp>;q=1.0"],
                None,
            ),
            SOURCE,
            None,
        );
        assert_eq!(
            contacts(&out),
            [
                "<sip:alice@10.0.0.2;transport=tcp>;expires=3600;q=1",
                "<sip:alice@10.0.0.1:5070>;expires=540;q=0.5",
            ]
        );
        let found = r.lookup("alice@EXAMPLE.com", t1);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].contact.as_str(),
            "sip:alice@10.0.0.2;transport=tcp"
        );
        assert_eq!(found[0].q, Some(1.0));
        assert_eq!(found[1].expires_in, Duration::from_secs(540));
        assert_eq!((found[1].call_id.as_str(), found[1].cseq), ("c1", 1));
        // The first device refreshes (same Call-ID, next CSeq), now without q.
        let out = r.register(
            t1,
            &register(ALICE, "c1", 2, &["<sip:alice@10.0.0.1:5070>"], Some(300)),
            SOURCE,
            None,
        );
        assert_eq!(out.status, StatusCode::OK);
        assert!(matches!(
            out.changes.as_slice(),
            [(_, _, BindingChange::Refreshed { expires })] if *expires == Duration::from_secs(300)
        ));
        // A query (no Contact) changes nothing and lists both.
        let out = r.register(t1, &register(ALICE, "c3", 1, &[], None), SOURCE, None);
        assert_eq!(contacts(&out).len(), 2);
        assert!(out.changes.is_empty());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn star_removes_everything_only_alone_with_expires_zero() {
        let mut r = open();
        let now = Instant::now();
        let add = register(
            ALICE,
            "c1",
            5,
            &["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>"],
            None,
        );
        assert_eq!(r.register(now, &add, SOURCE, None).status, StatusCode::OK);
        for bad in [
            register(ALICE, "c2", 1, &["*"], None),
            register(ALICE, "c2", 1, &["*"], Some(60)),
            register(ALICE, "c2", 1, &["*", "<sip:a@10.0.0.3>"], Some(0)),
        ] {
            let out = r.register(now, &bad, SOURCE, None);
            assert_eq!(out.status, StatusCode::BAD_REQUEST);
        }
        // Step 6: the same Call-ID with a CSeq not above the bindings' fails the request.
        let stale = r.register(
            now,
            &register(ALICE, "c1", 5, &["*"], Some(0)),
            SOURCE,
            None,
        );
        assert_eq!(stale.status, StatusCode::SERVER_INTERNAL_ERROR);
        assert_eq!(r.lookup(ALICE, now).len(), 2);
        let out = r.register(
            now,
            &register(ALICE, "c1", 6, &["*"], Some(0)),
            SOURCE,
            None,
        );
        assert_eq!(out.status, StatusCode::OK);
        assert!(contacts(&out).is_empty());
        assert_eq!(out.changes.len(), 2);
        assert!(out.changes.iter().all(|c| c.2 == BindingChange::Removed));
        assert!(r.lookup(ALICE, now).is_empty());
        assert_eq!(r.len(), 0);
        assert!(r.aors.is_empty());
    }

    #[test]
    fn too_brief_gets_423_with_min_expires_and_long_ones_are_shortened() {
        let mut r = open();
        let now = Instant::now();
        let out = r.register(
            now,
            &register(ALICE, "c", 1, &["<sip:a@h>"], Some(30)),
            SOURCE,
            None,
        );
        assert_eq!(out.status, StatusCode::INTERVAL_TOO_BRIEF);
        assert_eq!(out.headers[0].name(), HeaderName::MinExpires);
        assert_eq!(out.headers[0].value(), "60");
        assert_eq!(r.len(), 0);
        // The contact's own expires wins over the header's.
        let out = r.register(
            now,
            &register(ALICE, "c", 2, &["<sip:a@h>;expires=86400"], Some(30)),
            SOURCE,
            None,
        );
        assert_eq!(contacts(&out), ["<sip:a@h>;expires=7200"]);
        // Expires 0 for one contact removes just that one, below the minimum or not.
        let out = r.register(
            now,
            &register(ALICE, "c", 3, &["<sip:a@h>"], Some(0)),
            SOURCE,
            None,
        );
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(out.changes[0].2, BindingChange::Removed);
    }

    #[test]
    fn an_out_of_order_update_fails_the_whole_request() {
        let mut r = open();
        let now = Instant::now();
        let first = register(ALICE, "c1", 10, &["<sip:a@h1>"], None);
        assert_eq!(r.register(now, &first, SOURCE, None).status, StatusCode::OK);
        // A new contact and an update of h1 with a CSeq not above 10: nothing is committed.
        let mixed = register(
            ALICE,
            "c1",
            10,
            &["<sip:a@h2>", "<sip:a@h1>;expires=100"],
            None,
        );
        let out = r.register(now, &mixed, SOURCE, None);
        assert_eq!(out.status, StatusCode::SERVER_INTERNAL_ERROR);
        assert!(out.changes.is_empty());
        let left = r.lookup(ALICE, now);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].expires_in, Duration::from_secs(3600));
        // Another Call-ID (a rebooted phone) may update it whatever its CSeq.
        let other = register(ALICE, "c2", 1, &["<sip:a@h1>;expires=100"], None);
        assert_eq!(r.register(now, &other, SOURCE, None).status, StatusCode::OK);
        assert_eq!(r.lookup(ALICE, now)[0].expires_in, Duration::from_secs(100));
    }

    #[test]
    fn expired_bindings_are_never_returned_and_are_swept() {
        let mut r = open();
        let t0 = Instant::now();
        let a = register(ALICE, "c1", 1, &["<sip:a@h1>"], Some(60));
        let b = register("sip:bob@example.com", "c2", 1, &["<sip:b@h2>"], Some(120));
        r.register(t0, &a, SOURCE, None);
        r.register(t0, &b, SOURCE, None);
        assert_eq!(r.next_sweep(), Some(t0 + Duration::from_secs(60)));
        let t60 = t0 + Duration::from_secs(60);
        assert!(r.lookup(ALICE, t60).is_empty(), "gone at its expiry");
        assert!(r.sweep(t0 + Duration::from_secs(59)).is_empty(), "not yet");
        let swept = r.sweep(t60);
        assert_eq!(
            swept,
            [(
                ALICE.to_owned(),
                Uri::parse("sip:a@h1").unwrap(),
                BindingChange::Expired
            )]
        );
        assert_eq!(r.len(), 1);
        // The next sweep waits for bob's expiry (and at least a second).
        assert_eq!(r.next_sweep(), Some(t0 + Duration::from_secs(120)));
        assert_eq!(r.sweep(t0 + Duration::from_secs(120)).len(), 1);
        assert_eq!((r.len(), r.next_sweep()), (0, None));
    }

    #[test]
    fn memory_is_bounded_per_record_and_in_records() {
        let mut r = Registrar::new(
            RegistrarConfig::default()
                .authenticate(false)
                .max_bindings_per_aor(2)
                .max_aors(2),
        );
        let t0 = Instant::now();
        let two = register(ALICE, "c1", 1, &["<sip:a@h1>", "<sip:a@h2>"], Some(60));
        assert_eq!(r.register(t0, &two, SOURCE, None).status, StatusCode::OK);
        let third = register(ALICE, "c1", 2, &["<sip:a@h3>"], None);
        let out = r.register(t0, &third, SOURCE, None);
        assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.lookup(ALICE, t0).len(), 2, "the record stays as it was");
        let bob = register("sip:bob@example.com", "c2", 1, &["<sip:b@h>"], Some(3600));
        assert_eq!(r.register(t0, &bob, SOURCE, None).status, StatusCode::OK);
        let carol = register("sip:carol@example.com", "c3", 1, &["<sip:c@h>"], None);
        let out = r.register(t0, &carol, SOURCE, None);
        assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
        // Once alice's bindings have expired, carol finds room.
        let later = t0 + Duration::from_secs(61);
        let out = r.register(later, &carol, SOURCE, None);
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(
            out.changes
                .iter()
                .filter(|c| c.2 == BindingChange::Expired)
                .count(),
            2
        );
        assert_eq!((r.aors.len(), r.len()), (2, 2));
    }

    #[test]
    fn domains_and_the_authenticated_user_are_checked() {
        let mut r = Registrar::new(RegistrarConfig::default().domain("example.com"));
        let now = Instant::now();
        let ok = register(ALICE, "c", 1, &["<sip:a@h>"], None);
        assert_eq!(
            r.register(now, &ok, SOURCE, None).status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            r.register(now, &ok, SOURCE, Some("bob")).status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            r.register(now, &ok, SOURCE, Some("alice")).status,
            StatusCode::OK
        );
        assert_eq!(
            r.lookup(ALICE, now)[0].authenticated_user.as_deref(),
            Some("alice")
        );
        let elsewhere = register("sip:alice@example.org", "c", 2, &["<sip:a@h>"], None);
        let out = r.register(now, &elsewhere, SOURCE, Some("alice"));
        assert_eq!(out.status, StatusCode::NOT_FOUND);
        let tel = register("tel:+123", "c", 3, &["<sip:a@h>"], None);
        assert_eq!(
            r.register(now, &tel, SOURCE, None).status,
            StatusCode::NOT_FOUND
        );
        let mut with_port = Registrar::new(
            RegistrarConfig::default()
                .authenticate(false)
                .domain("127.0.0.1:5080"),
        );
        let other_port = register("sip:a@127.0.0.1:5080", "c", 1, &["<sip:a@h>"], None);
        // The Request-URI is sip:example.com: not served.
        let out = with_port.register(now, &other_port, SOURCE, None);
        assert_eq!(out.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn malformed_registers_get_400() {
        let mut r = open();
        let now = Instant::now();
        for contact in [
            "<sip:a@h>;q=2",
            "<sip:a@h>;q=0.1234",
            "<sip:a@h>;expires=x",
            "<nope",
        ] {
            let out = r.register(
                now,
                &register(ALICE, "c", 1, &[contact], None),
                SOURCE,
                None,
            );
            assert_eq!(out.status, StatusCode::BAD_REQUEST, "{contact}");
        }
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn qvalues_read_and_print_as_rfc_3261_writes_them() {
        for (text, q) in [
            ("1", 1000),
            ("1.000", 1000),
            ("0", 0),
            ("0.5", 500),
            ("0.125", 125),
        ] {
            assert_eq!(parse_q(text), Some(q), "{text}");
        }
        for text in ["1.5", "2", "0.1234", "", ".5", "0.x"] {
            assert_eq!(parse_q(text), None, "{text}");
        }
        assert_eq!(
            [1000, 500, 125, 0, 10].map(format_q),
            ["1", "0.5", "0.125", "0", "0.01"]
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(RegistrarConfig::default().check().is_ok());
        let zero = RegistrarConfig::default().min_expires(Duration::ZERO);
        assert!(zero.check().is_err());
        let inverted = RegistrarConfig::default().max_expires(Duration::from_secs(10));
        assert!(inverted.check().is_err());
        assert!(RegistrarConfig::default().max_aors(0).check().is_err());
        let needs_auth = ServerSide::new(None, Some(RegistrarConfig::default()), 1);
        assert!(needs_auth.is_err());
        assert!(
            ServerSide::new(
                None,
                Some(RegistrarConfig::default().authenticate(false)),
                1
            )
            .is_ok()
        );
    }
}
