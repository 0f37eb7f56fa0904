//! The REGISTER client (RFC 3261 §10): [`SessionManager::register`](crate::SessionManager::register) binds a contact of ours to
//! an address of record at a registrar and keeps it bound until [`Registration::unregister`],
//! the handle's drop or the manager's shutdown.
//!
//! - **State** is a `watch` ([`Registration::state`], [`Registration::watch`],
//!   [`Registration::wait_for`]): `Registering`, `Registered { expires, contacts }`,
//!   `Failed { status, retry_in }`, `Unregistered`.
//! - **Refresh** before the granted expiry: at `expires − min(expires / 2, 5 min)` — half the
//!   time for short registrations, five minutes before the end for long ones, which leaves room
//!   for a whole non-INVITE transaction (32 s) and a few back-off retries before the binding
//!   lapses, without refreshing an hour-long binding every half hour. The granted expiry is our
//!   Contact's `expires` in the 2xx, else its `Expires`, else what we asked (§10.2.4).
//! - **Failures**: `423 Interval Too Brief` is retried at once with the registrar's
//!   `Min-Expires` (§10.2.8). A final 401/407 (credentials rejected or missing), 403, 404 and
//!   other 4xx/6xx without `Retry-After` are permanent (`retry_in: None`: retrying would not
//!   help, and would lock accounts on some servers). Timeouts, transport errors, 408, 480 and
//!   5xx are retried after `Retry-After` when the response has one, else after RFC 5626 §4.5's
//!   back-off: a random wait between half and all of `min(30 s · 2ⁿ, 30 min)` after the n-th
//!   consecutive failure (from the manager's seeded generator).
//! - **Digest**: every REGISTER carries the registration's own [`Account`] (the one given with
//!   [`RegisterOptions::credentials`], else a fresh one over the manager's provider); the user
//!   agent answers 401/407 with the same Call-ID and the next CSeq (§10.2, see
//!   `session_dialog::auth`), and refreshes are pre-authorized with the next nonce count.
//!   All REGISTERs of one registration share the Call-ID and From tag; CSeq goes up by one each.
//! - **Keep-alive** (RFC 5626 §4.4.1): over TCP or TLS, a CRLFCRLF ping on the registrar's
//!   connection every `Flow-Timer` seconds of the 2xx, or 120 s, each interval drawn between
//!   80 % and 100 % of it, so that a NAT keeps the flow the registrar reaches us on.
//! - **Unregister**: `Expires: 0` for our Contact; on drop it is sent without waiting, and the
//!   manager's shutdown sends it for every live registration and waits for the answers within
//!   its grace period.
//!
//! The protocol logic is [`Machine`], sans-IO (time, responses and randomness in, what to send
//! and when to wake out); the manager's task runs one per registration, with its timers, its
//! REGISTERs and their responses ([`Core`]'s hooks at the end of this file).

use crate::core::{Command, CommandSender, Core, now};
use crate::error::{Result, SessionError};
use session_dialog::auth::{Account, CredentialProvider};
use session_dialog::endpoint::Protocol;
use session_dialog::transaction::TransactionId;
use session_dialog::ua::OutgoingRequest;
use session_sip::{Header, HeaderName, Method, Response, Uri};
use session_types::{CallId, StatusCode};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// What [`SessionManager::register`] registers, and how.
///
/// [`SessionManager::register`]: crate::SessionManager::register
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// The registrar's URI, the REGISTER's Request-URI (`sip:example.com`, §10.2). Requests go
    /// to its host and port unless there is an outbound proxy.
    pub registrar: String,
    /// The address of record bound (To and From: `sip:alice@example.com`).
    pub address_of_record: String,
    /// The Contact to bind; ours (the SIP listener, `;transport=tcp` over TCP) by default.
    pub contact: Option<String>,
    /// The expiry asked for (3600 s by default); the registrar may grant less.
    pub expires: Duration,
    /// Whose credentials answer the registrar's challenges; a fresh account over the manager's
    /// provider ([`SessionManagerBuilder::credentials`]) by default.
    ///
    /// [`SessionManagerBuilder::credentials`]: crate::SessionManagerBuilder::credentials
    pub account: Option<Account>,
    /// The proxy the REGISTERs go through (pre-loaded Route, §8.1.2); the manager's
    /// [`SessionManagerBuilder::outbound_proxy`] by default.
    ///
    /// [`SessionManagerBuilder::outbound_proxy`]: crate::SessionManagerBuilder::outbound_proxy
    pub outbound_proxy: Option<String>,
    /// Register over TCP (a `;transport=tcp` URI selects it too; `sips:` selects TLS).
    pub tcp: bool,
}

impl RegisterOptions {
    /// Registers `address_of_record` at `registrar` for an hour, with our Contact.
    pub fn new(registrar: &str, address_of_record: &str) -> Self {
        Self {
            registrar: registrar.to_owned(),
            address_of_record: address_of_record.to_owned(),
            contact: None,
            expires: DEFAULT_EXPIRES,
            account: None,
            outbound_proxy: None,
            tcp: false,
        }
    }

    /// Binds this Contact instead of ours.
    pub fn contact(mut self, uri: &str) -> Self {
        self.contact = Some(uri.to_owned());
        self
    }

    /// Asks for this expiry (whole seconds).
    pub fn expires(mut self, expires: Duration) -> Self {
        self.expires = expires;
        self
    }

    /// Answers challenges with credentials from `provider` (an account of its own).
    pub fn credentials(
        mut self,
        provider: impl CredentialProvider + Send + Sync + 'static,
    ) -> Self {
        self.account = Some(Account::new(provider));
        self
    }

    /// Answers challenges with `account`.
    pub fn account(mut self, account: Account) -> Self {
        self.account = Some(account);
        self
    }

    /// Sends the REGISTERs through the proxy at `uri`.
    pub fn outbound_proxy(mut self, uri: &str) -> Self {
        self.outbound_proxy = Some(uri.to_owned());
        self
    }

    /// Registers over TCP.
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }
}

/// The expiry asked for by default (RFC 3261 §10.2.1.1 suggests an hour).
pub(crate) const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);

/// Where a registration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// A REGISTER is on its way (the first one, or a retry after a failure).
    Registering,
    /// The registrar accepted the binding.
    Registered {
        /// For how long it granted it, from the 2xx.
        expires: Duration,
        /// Every contact bound to the address of record, as the 2xx listed them.
        contacts: Vec<Uri>,
    },
    /// The last REGISTER failed.
    Failed {
        /// Its final status (408 for no response, 503 for a transport error).
        status: StatusCode,
        /// When the registration tries again; `None` when it does not (credentials rejected,
        /// forbidden, unknown user …): unregister or drop it.
        retry_in: Option<Duration>,
    },
    /// Unregistered (Expires: 0 answered, or nothing was bound): the registration is over.
    Unregistered,
}

/// A live registration: its state, and the way to end it. Dropping it unregisters (best
/// effort, without waiting); [`Registration::unregister`] waits for the registrar's answer.
#[derive(Debug)]
pub struct Registration {
    id: RegistrationId,
    state: watch::Receiver<RegistrationState>,
    commands: CommandSender,
    /// Still to unregister when dropped.
    live: bool,
}

impl Registration {
    pub(crate) fn new(
        id: RegistrationId,
        state: watch::Receiver<RegistrationState>,
        commands: CommandSender,
    ) -> Self {
        Self {
            id,
            state,
            commands,
            live: true,
        }
    }

    /// The state now.
    pub fn state(&self) -> RegistrationState {
        self.state.borrow().clone()
    }

    /// The state as a `watch` receiver: every change, as it happens (`changed` fails once the
    /// registration is over).
    pub fn watch(&self) -> watch::Receiver<RegistrationState> {
        self.state.clone()
    }

    /// Waits until the state satisfies `ready` and returns it; when the registration ends
    /// first, returns its last state.
    pub async fn wait_for(
        &self,
        mut ready: impl FnMut(&RegistrationState) -> bool,
    ) -> RegistrationState {
        let mut state = self.state.clone();
        let reached = state.wait_for(|s| ready(s)).await.map(|s| s.clone());
        match reached {
            Ok(s) => s,
            Err(_) => state.borrow().clone(),
        }
    }

    /// Waits for the outcome of the registering in progress: the granted expiry, or the
    /// failure (a status as [`SessionError::Rejected`]; [`SessionError::Shutdown`] when the
    /// registration ended).
    pub async fn registered(&self) -> Result<Duration> {
        let outcome = self
            .wait_for(|s| !matches!(s, RegistrationState::Registering))
            .await;
        match outcome {
            RegistrationState::Registered { expires, .. } => Ok(expires),
            RegistrationState::Failed { status, .. } => Err(SessionError::Rejected {
                status,
                reason: status.reason_phrase().to_owned(),
            }),
            _ => Err(SessionError::Shutdown),
        }
    }

    /// Removes the binding (REGISTER with `Expires: 0`, §10.2.2) and waits for the answer;
    /// the state ends `Unregistered` either way. An error carries the registrar's refusal, or
    /// says that no answer came.
    pub async fn unregister(mut self) -> Result<()> {
        self.live = false;
        let (reply, done) = oneshot::channel();
        self.commands
            .send(Command::Registration(RegistrationCommand::Unregister {
                id: self.id,
                reply: Some(reply),
            }))
            .await
            .map_err(|_| SessionError::Shutdown)?;
        done.await.map_err(|_| SessionError::Shutdown)?
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.live {
            // A drop cannot wait for room: best effort. A full queue leaves the binding to
            // expire at the registrar (and the manager's shutdown unregisters it).
            let _ =
                self.commands
                    .try_send(Command::Registration(RegistrationCommand::Unregister {
                        id: self.id,
                        reply: None,
                    }));
        }
    }
}

/// A registration's number within its manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RegistrationId(u64);

/// A registration, resolved and ready to start.
pub(crate) struct NewRegistration {
    pub(crate) registrar: Uri,
    pub(crate) aor: Uri,
    pub(crate) contact: Option<Uri>,
    pub(crate) expires: Duration,
    pub(crate) account: Option<Account>,
    pub(crate) destination: SocketAddr,
    pub(crate) protocol: Protocol,
    /// The pre-loaded Route, if any.
    pub(crate) route: Option<Header>,
}

/// What handles ask of the manager's task about registrations.
pub(crate) enum RegistrationCommand {
    /// Start one.
    Start {
        registration: Box<NewRegistration>,
        reply: oneshot::Sender<Result<(RegistrationId, watch::Receiver<RegistrationState>)>>,
    },
    /// Unregister one (and forget it).
    Unregister {
        id: RegistrationId,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
}

// ---------------------------------------------------------------------------------------------
// The sans-IO machine
// ---------------------------------------------------------------------------------------------

/// The longest wait between retries (RFC 5626 §4.5's max-time).
const MAX_BACKOFF: Duration = Duration::from_secs(1800);
/// The first wait after a failure (RFC 5626 §4.5's base-time when a flow worked).
const BASE_BACKOFF: Duration = Duration::from_secs(30);
/// The most a refresh comes before the expiry.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The keep-alive interval over TCP/TLS without `Flow-Timer` (RFC 5626 §4.4.1).
const KEEPALIVE: Duration = Duration::from_secs(120);
/// How often in a row a 423 is followed.
const MAX_INTERVAL_RETRIES: u8 = 3;

/// What the machine wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing now.
    Wait,
    /// Send a REGISTER asking for this expiry (0: unregister).
    Send { expires: u32 },
    /// The registration is over (unregistered): forget it.
    Done,
}

/// One registration's protocol state: no I/O, no clock. `T` names a REGISTER in flight (the
/// user agent's transaction id).
#[derive(Debug)]
pub(crate) struct Machine<T = TransactionId> {
    /// The expiry to ask for (raised by 423).
    expires: u32,
    /// The CSeq of the last REGISTER.
    cseq: u32,
    /// The REGISTER whose answer counts, and whether it unregisters.
    in_flight: Option<(T, bool)>,
    /// Consecutive failures, for the back-off.
    failures: u32,
    /// When to refresh or retry.
    due: Option<Instant>,
    /// A 2xx came at least once: there may be a binding to remove.
    bound: bool,
    /// Asked to unregister: never registers again.
    unregistering: bool,
    /// 423s followed in a row.
    interval_retries: u8,
    state: RegistrationState,
}

impl<T: Copy + PartialEq> Machine<T> {
    pub(crate) fn new(expires: Duration) -> Self {
        Self {
            expires: u32::try_from(expires.as_secs()).unwrap_or(u32::MAX),
            cseq: 0,
            in_flight: None,
            failures: 0,
            due: None,
            bound: false,
            unregistering: false,
            interval_retries: 0,
            state: RegistrationState::Registering,
        }
    }

    pub(crate) fn state(&self) -> &RegistrationState {
        &self.state
    }

    /// When [`Machine::on_timeout`] is next due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.due
    }

    /// The first REGISTER.
    pub(crate) fn start(&mut self) -> Step {
        Step::Send {
            expires: self.expires,
        }
    }

    /// The CSeq for the REGISTER about to go.
    pub(crate) fn next_cseq(&mut self) -> u32 {
        self.cseq = self.cseq.saturating_add(1);
        self.cseq
    }

    /// The REGISTER went as `tx`.
    pub(crate) fn sent(&mut self, tx: T, unregister: bool) {
        self.in_flight = Some((tx, unregister));
        self.due = None;
        if !unregister {
            self.state = RegistrationState::Registering;
        }
    }

    /// The user agent re-sent `tx` with credentials as CSeq `cseq`.
    pub(crate) fn challenged(&mut self, cseq: u32) {
        self.cseq = self.cseq.max(cseq);
    }

    /// The REGISTER in flight, if any.
    pub(crate) fn in_flight(&self) -> Option<T> {
        self.in_flight.map(|(t, _)| t)
    }

    /// The REGISTER asked for could not even be sent: a transport failure.
    pub(crate) fn not_sent(&mut self, now: Instant, rng: &mut fastrand::Rng) -> Step {
        if self.unregistering {
            self.in_flight = None;
            self.state = RegistrationState::Unregistered;
            return Step::Done;
        }
        let retry_in = self.backoff(rng);
        self.fail(now, StatusCode::SERVICE_UNAVAILABLE, Some(retry_in))
    }

    /// The final response to `tx`; `contact` is the Contact we bind.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        tx: T,
        response: &Response,
        contact: &Uri,
        rng: &mut fastrand::Rng,
    ) -> Step {
        let Some((_, unregister)) = self.in_flight.filter(|(t, _)| *t == tx) else {
            return Step::Wait;
        };
        self.in_flight = None;
        let status = response.status;
        if unregister {
            self.state = RegistrationState::Unregistered;
            return Step::Done;
        }
        if status.is_success() {
            let granted = granted_expiry(response, contact).unwrap_or(self.expires);
            let granted = if granted == 0 { self.expires } else { granted };
            self.bound = true;
            self.failures = 0;
            self.interval_retries = 0;
            let expires = Duration::from_secs(u64::from(granted));
            self.due = Some(now + refresh_after(expires));
            let contacts = response
                .contacts()
                .filter_map(|c| match c {
                    Ok(session_sip::Contact::Addr(address)) => Some(address.uri()),
                    _ => None,
                })
                .collect();
            self.state = RegistrationState::Registered { expires, contacts };
            return Step::Wait;
        }
        if status == StatusCode::INTERVAL_TOO_BRIEF {
            let min = response
                .headers
                .get_str(HeaderName::MinExpires)
                .and_then(|v| v.trim().parse::<u32>().ok());
            if let Some(min) = min
                && min > self.expires
                && self.interval_retries < MAX_INTERVAL_RETRIES
            {
                // §10.2.8: ask again with at least Min-Expires.
                self.interval_retries += 1;
                self.expires = min;
                return Step::Send { expires: min };
            }
        }
        let retry_after = response
            .retry_after()
            .and_then(std::result::Result::ok)
            .map(|s| Duration::from_secs(u64::from(s)));
        let permanent = matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::PROXY_AUTHENTICATION_REQUIRED
                | StatusCode::FORBIDDEN
        );
        let temporary = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TEMPORARILY_UNAVAILABLE
            || status.as_u16() >= 500 && status.as_u16() < 600;
        let retry_in = match (permanent, retry_after) {
            (true, _) => None,
            (false, Some(after)) => Some(after),
            (false, None) if temporary => Some(self.backoff(rng)),
            (false, None) => None,
        };
        self.fail(now, status, retry_in)
    }

    /// `tx` got no final response: 408 (no answer in time) or 503 (the transport failed), as
    /// RFC 3261 §8.1.3.1 has it.
    pub(crate) fn on_failure(
        &mut self,
        now: Instant,
        tx: T,
        status: StatusCode,
        rng: &mut fastrand::Rng,
    ) -> Step {
        let Some((_, unregister)) = self.in_flight.filter(|(t, _)| *t == tx) else {
            return Step::Wait;
        };
        self.in_flight = None;
        if unregister {
            self.state = RegistrationState::Unregistered;
            return Step::Done;
        }
        let retry_in = self.backoff(rng);
        self.fail(now, status, Some(retry_in))
    }

    fn fail(&mut self, now: Instant, status: StatusCode, retry_in: Option<Duration>) -> Step {
        self.failures = self.failures.saturating_add(1);
        self.due = retry_in.map(|after| now + after);
        self.state = RegistrationState::Failed { status, retry_in };
        Step::Wait
    }

    /// RFC 5626 §4.5: a random wait between half and all of `min(base · 2ⁿ, max)`, for the
    /// n-th failure in a row (the one being handled, not yet counted).
    fn backoff(&self, rng: &mut fastrand::Rng) -> Duration {
        let n = self.failures.saturating_add(1).min(10);
        let doubled = BASE_BACKOFF.saturating_mul(1 << n);
        let ceiling = u64::try_from(doubled.min(MAX_BACKOFF).as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.u64(ceiling / 2..=ceiling))
    }

    /// Time has reached `now`.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Step {
        match self.due {
            Some(at) if at <= now && self.in_flight.is_none() && !self.unregistering => {
                self.due = None;
                Step::Send {
                    expires: self.expires,
                }
            }
            _ => Step::Wait,
        }
    }

    /// Asked to unregister: `Expires: 0` when a binding may exist, else done at once.
    pub(crate) fn unregister(&mut self) -> Step {
        if self.in_flight.is_some_and(|(_, unregister)| unregister) {
            return Step::Wait; // Already on its way.
        }
        self.unregistering = true;
        self.due = None;
        if self.bound || self.in_flight.is_some() {
            Step::Send { expires: 0 }
        } else {
            self.in_flight = None;
            self.state = RegistrationState::Unregistered;
            Step::Done
        }
    }
}

/// When to refresh a binding granted for `expires`: `expires − min(expires / 2, 5 min)`, at
/// least a second later.
pub(crate) fn refresh_after(expires: Duration) -> Duration {
    let margin = (expires / 2).min(REFRESH_MARGIN);
    expires.saturating_sub(margin).max(Duration::from_secs(1))
}

/// The expiry the 2xx grants `contact`: its Contact's `expires` parameter, else the
/// `Expires` header (§10.2.4).
fn granted_expiry(response: &Response, contact: &Uri) -> Option<u32> {
    let ours = response.contacts().find_map(|c| match c {
        Ok(session_sip::Contact::Addr(address)) if address.uri().equivalent(contact) => {
            address.expires().and_then(std::result::Result::ok)
        }
        _ => None,
    });
    ours.or_else(|| response.expires().and_then(std::result::Result::ok))
}

// ---------------------------------------------------------------------------------------------
// In the manager's task
// ---------------------------------------------------------------------------------------------

/// One registration as the manager's task keeps it.
struct Entry {
    machine: Machine,
    state: watch::Sender<RegistrationState>,
    registrar: Uri,
    aor: Uri,
    contact: Uri,
    account: Account,
    destination: SocketAddr,
    protocol: Protocol,
    route: Option<Header>,
    call_id: CallId,
    from_tag: String,
    /// Answers `unregister`, once its REGISTER is answered.
    unregistered: Option<oneshot::Sender<Result<()>>>,
    /// The next keep-alive ping (TCP/TLS while registered), and its interval.
    keepalive: Option<(Instant, Duration)>,
}

/// Every registration of one manager, with one timer heap.
#[derive(Default)]
pub(crate) struct Registrations {
    entries: HashMap<RegistrationId, Entry>,
    /// Our REGISTERs in flight (by the first transaction of each).
    by_tx: HashMap<TransactionId, RegistrationId>,
    /// Refresh, retry and keep-alive deadlines (lazy deletion: checked against the entry).
    timers: BinaryHeap<Reverse<(Instant, RegistrationId)>>,
    next_id: u64,
}

impl Registrations {
    /// The next deadline of any registration.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    fn schedule(&mut self, id: RegistrationId) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        let keepalive = entry.keepalive.map(|(at, _)| at);
        if let Some(at) = [entry.machine.deadline(), keepalive]
            .into_iter()
            .flatten()
            .min()
        {
            self.timers.push(Reverse((at, id)));
        }
    }
}

impl Core {
    /// A registration command from a handle.
    pub(crate) async fn on_registration_command(&mut self, command: RegistrationCommand) {
        match command {
            RegistrationCommand::Start {
                registration,
                reply,
            } => {
                let result = self.start_registration(*registration).await;
                let _ = reply.send(result);
            }
            RegistrationCommand::Unregister { id, reply } => {
                let Some(entry) = self.registrations.entries.get_mut(&id) else {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                    return;
                };
                entry.unregistered = reply;
                let step = entry.machine.unregister();
                self.registration_step(id, step).await;
            }
        }
    }

    async fn start_registration(
        &mut self,
        new: NewRegistration,
    ) -> Result<(RegistrationId, watch::Receiver<RegistrationState>)> {
        let protocol = new.protocol;
        let contact = match new.contact {
            Some(contact) => contact,
            None => {
                let ours = self
                    .ua(move |ua, _| ua.contact_for(protocol).clone())
                    .await
                    .ok_or(SessionError::Shutdown)?;
                if protocol == Protocol::Tcp && ours.param("transport").is_none() {
                    ours.with_param("transport", Some("tcp")).unwrap_or(ours)
                } else {
                    ours
                }
            }
        };
        let account = match (new.account, &self.config.account) {
            (Some(account), _) => account,
            // Its own digest state over the manager's credentials: refreshes are
            // pre-authorized, and only this registrar's realms may travel with them.
            (None, Some(manager)) => manager.sibling(),
            (None, None) => Account::new(|_: &str| None),
        };
        self.registrations.next_id += 1;
        let id = RegistrationId(self.registrations.next_id);
        let call_id = CallId::random_with(&mut self.rng, Some(&self.local_ip.to_string()));
        let from_tag = session_sip::new_tag_with(&mut self.rng);
        let (state, receiver) = watch::channel(RegistrationState::Registering);
        let mut machine = Machine::new(new.expires);
        let step = machine.start();
        self.registrations.entries.insert(
            id,
            Entry {
                machine,
                state,
                registrar: new.registrar,
                aor: new.aor,
                contact,
                account,
                destination: new.destination,
                protocol,
                route: new.route,
                call_id,
                from_tag,
                unregistered: None,
                keepalive: None,
            },
        );
        self.registration_step(id, step).await;
        Ok((id, receiver))
    }

    /// Carries out what a registration's machine asked for, and publishes its state.
    async fn registration_step(&mut self, id: RegistrationId, step: Step) {
        match step {
            Step::Wait => {}
            Step::Send { expires } => {
                if let Err(error) = self.send_register(id, expires).await {
                    tracing::debug!(%error, "REGISTER not sent");
                    // Not even sent: a transport failure, retried after the back-off.
                    let step = self
                        .registrations
                        .entries
                        .get_mut(&id)
                        .map(|entry| entry.machine.not_sent(now(), &mut self.rng));
                    if let Some(Step::Done) = step {
                        self.forget_registration(id, Err(SessionError::Transport));
                        return;
                    }
                }
            }
            Step::Done => {
                self.forget_registration(id, Ok(()));
                return;
            }
        }
        let Some(entry) = self.registrations.entries.get_mut(&id) else {
            return;
        };
        // Keep-alives run while registered over a connection.
        let registered = matches!(entry.machine.state(), RegistrationState::Registered { .. });
        if !registered || entry.protocol == Protocol::Udp {
            entry.keepalive = None;
        }
        entry.state.send_if_modified(|old| {
            let new = entry.machine.state();
            if old == new {
                false
            } else {
                *old = new.clone();
                true
            }
        });
        self.registrations.schedule(id);
    }

    /// Sends the registration's next REGISTER (`expires` 0: unregister).
    async fn send_register(&mut self, id: RegistrationId, expires: u32) -> Result<()> {
        let Some(entry) = self.registrations.entries.get_mut(&id) else {
            return Ok(());
        };
        let cseq = entry.machine.next_cseq();
        let registrar = entry.registrar.clone();
        let aor = entry.aor.clone();
        let from_tag = entry.from_tag.clone();
        let call_id = entry.call_id.clone();
        let (destination, protocol) = (entry.destination, entry.protocol);
        let account = entry.account.clone();
        let mut headers = Vec::with_capacity(4);
        headers.extend(entry.route.clone());
        headers.push(Header::new(
            HeaderName::Contact,
            format!("<{}>", entry.contact),
        ));
        headers.push(Header::new(HeaderName::Expires, expires.to_string()));
        let sent = self
            .ua(move |ua, now| {
                ua.request_out_of_dialog(
                    now,
                    OutgoingRequest {
                        method: Method::Register,
                        uri: &registrar,
                        from: &aor,
                        from_display: None,
                        from_tag: Some(&from_tag),
                        to: &aor,
                        destination,
                        protocol,
                        headers,
                        body: None,
                        call_id: Some(call_id),
                        cseq: Some(cseq),
                        account: Some(account),
                        preauthorize: true,
                    },
                )
            })
            .await
            .ok_or(SessionError::Shutdown)?;
        let (tx, _) = sent.map_err(|_| SessionError::Transport)?;
        self.registrations.by_tx.insert(tx, id);
        if let Some(entry) = self.registrations.entries.get_mut(&id) {
            entry.machine.sent(tx, expires == 0);
        }
        Ok(())
    }

    /// A final response to a REGISTER of ours, or `None` for one that came to nothing
    /// (`status`: 408 or 503). Returns whether `tx` was one.
    pub(crate) async fn on_register_outcome(
        &mut self,
        tx: TransactionId,
        response: Option<&Response>,
        status: StatusCode,
    ) -> bool {
        let Some(id) = self.registrations.by_tx.remove(&tx) else {
            return false;
        };
        let Some(entry) = self.registrations.entries.get_mut(&id) else {
            return true;
        };
        let now = now();
        let step = match response {
            Some(response) => {
                let step =
                    entry
                        .machine
                        .on_response(now, tx, response, &entry.contact, &mut self.rng);
                let registered =
                    matches!(entry.machine.state(), RegistrationState::Registered { .. });
                if response.status.is_success() && registered && entry.protocol != Protocol::Udp {
                    // RFC 5626 §4.4.1: the registrar's Flow-Timer, else the default.
                    let interval = response
                        .headers
                        .get_by_name("Flow-Timer")
                        .and_then(|h| h.value().trim().parse::<u64>().ok())
                        .filter(|s| *s > 0)
                        .map_or(KEEPALIVE, Duration::from_secs);
                    let first = keepalive_wait(interval, &mut self.rng);
                    entry.keepalive = Some((now + first, interval));
                }
                if step == Step::Done {
                    let result = if response.status.is_success() {
                        Ok(())
                    } else {
                        Err(SessionError::Rejected {
                            status: response.status,
                            reason: response.reason.to_string(),
                        })
                    };
                    self.forget_registration(id, result);
                    return true;
                }
                step
            }
            None => {
                let step = entry.machine.on_failure(now, tx, status, &mut self.rng);
                if step == Step::Done {
                    let error = if status == StatusCode::REQUEST_TIMEOUT {
                        SessionError::Timeout
                    } else {
                        SessionError::Transport
                    };
                    self.forget_registration(id, Err(error));
                    return true;
                }
                step
            }
        };
        self.registration_step(id, step).await;
        true
    }

    /// The user agent re-sent REGISTER `tx` with credentials as CSeq `cseq`. Returns whether
    /// it was one of ours.
    pub(crate) fn on_register_challenged(&mut self, tx: TransactionId, cseq: u32) -> bool {
        let Some(id) = self.registrations.by_tx.get(&tx) else {
            return false;
        };
        if let Some(entry) = self.registrations.entries.get_mut(id) {
            entry.machine.challenged(cseq);
        }
        true
    }

    /// Refreshes, retries and keep-alives that are due.
    pub(crate) async fn registration_timers(&mut self) {
        let now = now();
        while let Some(Reverse((at, id))) = self.registrations.timers.peek().copied() {
            if at > now {
                break;
            }
            self.registrations.timers.pop();
            let Some(entry) = self.registrations.entries.get_mut(&id) else {
                continue;
            };
            let mut acted = false;
            if let Some((due, interval)) = entry.keepalive
                && due <= now
            {
                let (destination, protocol) = (entry.destination, entry.protocol);
                entry.keepalive = Some((now + keepalive_wait(interval, &mut self.rng), interval));
                acted = true;
                let _ = self
                    .ua(move |ua, _| ua.send_keepalive(destination, protocol))
                    .await;
            }
            let Some(entry) = self.registrations.entries.get_mut(&id) else {
                continue;
            };
            let step = entry.machine.on_timeout(now);
            if step != Step::Wait || acted {
                self.registration_step(id, step).await;
            }
        }
    }

    /// The manager is shutting down: unregisters every registration, its REGISTERs counted
    /// among the requests the shutdown waits for.
    pub(crate) async fn unregister_all(&mut self) {
        let ids: Vec<RegistrationId> = self.registrations.entries.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.registrations.entries.get_mut(&id) else {
                continue;
            };
            let step = entry.machine.unregister();
            self.registration_step(id, step).await;
            if let Some(tx) = self
                .registrations
                .entries
                .get(&id)
                .and_then(|e| e.machine.in_flight())
            {
                self.note_ending_request(tx);
            }
        }
    }

    fn forget_registration(&mut self, id: RegistrationId, result: Result<()>) {
        let Some(mut entry) = self.registrations.entries.remove(&id) else {
            return;
        };
        self.registrations.by_tx.retain(|_, r| *r != id);
        entry.state.send_replace(RegistrationState::Unregistered);
        if let Some(reply) = entry.unregistered.take() {
            let _ = reply.send(result);
        }
    }
}

/// A keep-alive interval drawn between 80 % and 100 % of `interval` (RFC 5626 §4.4.1).
fn keepalive_wait(interval: Duration, rng: &mut fastrand::Rng) -> Duration {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.u64(ms / 5 * 4..=ms))
}

/// Starts a registration through the manager's task (for [`crate::SessionManager::register`]).
pub(crate) async fn start(
    commands: &CommandSender,
    registration: NewRegistration,
) -> Result<Registration> {
    let (reply, result) = oneshot::channel();
    commands
        .send(Command::Registration(RegistrationCommand::Start {
            registration: Box::new(registration),
            reply,
        }))
        .await
        .map_err(|_| SessionError::Shutdown)?;
    let (id, state) = result.await.map_err(|_| SessionError::Shutdown)??;
    Ok(Registration::new(id, state, commands.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(text: &str) -> Response {
        let text = format!(
            "{text}\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nTo: <sip:a@r>;tag=x\r\n\
             From: <sip:a@r>;tag=y\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
        match session_sip::Message::parse(text.into_bytes()).unwrap() {
            session_sip::Message::Response(r) => r,
            session_sip::Message::Request(_) => unreachable!(),
        }
    }

    /// The machine names REGISTERs by any id: plain numbers here.
    fn tx(n: u64) -> u64 {
        n
    }

    #[test]
    fn refresh_comes_at_half_for_short_and_five_minutes_early_for_long_bindings() {
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_2xx_grants_our_contacts_expiry_and_schedules_the_refresh() {
        let mut rng = fastrand::Rng::with_seed(1);
        let ours = Uri::parse("sip:me@127.0.0.1:5060").unwrap();
        let mut m: Machine<u64> = Machine::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        assert_eq!(m.start(), Step::Send { expires: 3600 });
        assert_eq!(m.next_cseq(), 1);
        m.sent(tx(1), false);
        let ok = response(
            "SIP/2.0 200 OK\r\nContact: <sip:other@10.0.0.1>;expires=3000\r\n\
             Contact: <sip:me@127.0.0.1:5060>;expires=120\r\nExpires: 999",
        );
        assert_eq!(m.on_response(t0, tx(1), &ok, &ours, &mut rng), Step::Wait);
        let RegistrationState::Registered { expires, contacts } = m.state().clone() else {
            panic!("{:?}", m.state())
        };
        assert_eq!(expires, Duration::from_secs(120));
        assert_eq!(contacts.len(), 2);
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(m.on_timeout(t0 + Duration::from_secs(59)), Step::Wait);
        assert_eq!(
            m.on_timeout(t0 + Duration::from_secs(60)),
            Step::Send { expires: 3600 }
        );
    }

    #[test]
    fn interval_too_brief_asks_again_with_min_expires_and_rejection_is_permanent() {
        let mut rng = fastrand::Rng::with_seed(1);
        let ours = Uri::parse("sip:me@127.0.0.1:5060").unwrap();
        let mut m: Machine<u64> = Machine::new(Duration::from_secs(30));
        let t0 = Instant::now();
        m.sent(tx(1), false);
        let brief = response("SIP/2.0 423 Interval Too Brief\r\nMin-Expires: 600");
        assert_eq!(
            m.on_response(t0, tx(1), &brief, &ours, &mut rng),
            Step::Send { expires: 600 }
        );
        m.sent(tx(2), false);
        // A stale answer to the first one changes nothing.
        assert_eq!(
            m.on_response(t0, tx(1), &brief, &ours, &mut rng),
            Step::Wait
        );
        let rejected = response("SIP/2.0 401 Unauthorized");
        assert_eq!(
            m.on_response(t0, tx(2), &rejected, &ours, &mut rng),
            Step::Wait
        );
        assert_eq!(
            m.state(),
            &RegistrationState::Failed {
                status: StatusCode::UNAUTHORIZED,
                retry_in: None
            }
        );
        assert_eq!(m.deadline(), None);
        // Nothing was ever bound: unregistering sends nothing.
        assert_eq!(m.unregister(), Step::Done);
    }

    #[test]
    fn failures_back_off_or_honour_retry_after() {
        let mut rng = fastrand::Rng::with_seed(1);
        let ours = Uri::parse("sip:me@127.0.0.1:5060").unwrap();
        let mut m: Machine<u64> = Machine::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        m.sent(tx(1), false);
        let busy = response("SIP/2.0 503 Service Unavailable\r\nRetry-After: 17");
        m.on_response(t0, tx(1), &busy, &ours, &mut rng);
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(17)));
        m.sent(tx(2), false);
        m.on_failure(t0, tx(2), StatusCode::REQUEST_TIMEOUT, &mut rng);
        // The second failure in a row: between 60 and 120 s.
        let wait = m.deadline().unwrap() - t0;
        assert!(
            (Duration::from_secs(60)..=Duration::from_secs(120)).contains(&wait),
            "{wait:?}"
        );
        let RegistrationState::Failed { status, retry_in } = m.state().clone() else {
            panic!()
        };
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(retry_in, Some(wait));
    }
}
