//! The sans-IO user agent core: the transaction [`Endpoint`] plus dialogs.
//!
//! On top of transactions it adds what RFC 3261 gives the UA core rather than the transaction
//! layer: a UAS retransmits its 2xx until the ACK arrives (§13.3.1.4) and ends the dialog with
//! BYE if it never does; a UAC ACKs every 2xx, re-ACKs retransmissions, and ACKs then BYEs a
//! second dialog created by a forked answer (§13.2.2.4); requests for no dialog get 481
//! (§12.2.2); a re-INVITE that crosses ours gets 491, and a 491 for ours gives the randomized
//! retry delay of §14.1; BYE is answered and ends the dialog.
//!
//! An outgoing INVITE may be cancelled at any moment: the CANCEL waits for the first
//! provisional response (§9.1), is dropped by a final one, and a 2xx that wins the race is
//! ACKed and ended with BYE. A transport error reported by the driver ends the transactions
//! towards that peer at once (§17.1.4) instead of after Timer B or F.
//!
//! Randomness is an input, like time: every tag, Via branch, Call-ID, glare delay and
//! Retry-After comes from one generator seeded by [`UaConfig::rng_seed`] (the endpoint's To
//! tags from one seeded from it), so the same seed and the same inputs give the same bytes.
//!
//! Memory: per call the user agent keeps one boxed map entry per dialog and per INVITE record,
//! and transactions that linger after their final response keep no request and no bytes they
//! will never send again; [`UserAgent::reserve`] sizes the maps for a known load.

use crate::dialog::{Dialog, DialogState, SentInvite};
use crate::endpoint::{Endpoint, EndpointConfig, EndpointError, EndpointEvent, Protocol, Transmit};
use crate::transaction::TransactionId;
use crate::transaction::table::IdMap;
use bytes::Bytes;
use session_sip::{
    Header, HeaderName, Method, Request, Response, Uri, new_branch_with, new_tag_with,
};
use session_types::{CallId, DialogId, StatusCode};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Settings of a [`UserAgent`].
#[derive(Clone, Debug)]
pub struct UaConfig {
    /// The transaction endpoint's settings.
    pub endpoint: EndpointConfig,
    /// Host (or IP) written in our Via sent-by.
    pub via_host: String,
    /// Port written in our Via sent-by.
    pub via_port: u16,
    /// Our Contact URI.
    pub contact: Uri,
    /// Send a request that would exceed [`UDP_SIZE_LIMIT`] over TCP instead (RFC 3261
    /// §18.1.1); set when the transport layer has TCP.
    pub large_requests_over_tcp: bool,
    /// Seeds the one generator every random value of the user agent comes from: From and To
    /// tags, Via branches, Call-IDs, the §14.1 glare delay, the Retry-After of a 500 to an
    /// overlapping re-INVITE (§14.2), and the To tags its transaction [`Endpoint`] makes (the
    /// 200 to OPTIONS, the answers to CANCEL, stateless rejections).
    ///
    /// `None` seeds it from entropy, as a user agent in service must: Call-IDs and tags have
    /// to be unique across space and time (RFC 3261 §8.1.1.4, §19.3), so two user agents that
    /// may meet the same peer never share a fixed seed. `Some(seed)` is for tests and replays:
    /// the same seed and the same inputs (messages, calls and times) give the same bytes and
    /// the same events. [`UserAgent::rng_seed`] tells the seed in use either way, so a run
    /// seen once can be replayed.
    pub rng_seed: Option<u64>,
}

/// The largest request sent over UDP when TCP is available: 200 bytes under a 1500-byte MTU
/// (RFC 3261 §18.1.1).
pub const UDP_SIZE_LIMIT: usize = 1300;

/// Why a dialog ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogEnd {
    /// The peer sent BYE.
    PeerBye,
    /// We sent BYE.
    LocalBye,
    /// Our 2xx was never ACKed (§13.3.1.4); we sent BYE.
    AckTimeout,
    /// A forked 2xx created a second dialog, which we ACKed and ended (§13.2.2.4).
    ForkRejected,
    /// We cancelled the INVITE but its 2xx won the race with the CANCEL: we ACKed the 2xx
    /// and sent BYE at once (§9.1, §15).
    CancelledAfterAnswer,
    /// The transport could not reach the peer while our 2xx waited for its ACK (e.g. its TCP
    /// connection is gone, §17.2.4): the dialog cannot be confirmed.
    TransportError,
}

/// What the user agent tells the session layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum UaEvent {
    /// A dialog-creating INVITE arrived; answer with [`UserAgent::answer`].
    IncomingInvite {
        /// Its server transaction.
        tx: TransactionId,
        /// The INVITE.
        request: Request,
        /// Where it came from.
        source: SocketAddr,
    },
    /// Any other request: out of dialog (`dialog: None`) or inside one.
    IncomingRequest {
        /// Its server transaction.
        tx: TransactionId,
        /// The request.
        request: Request,
        /// The dialog it belongs to.
        dialog: Option<DialogId>,
        /// Where it came from.
        source: SocketAddr,
    },
    /// A response to one of our requests (for INVITE 2xx: the ACK was already sent).
    Response {
        /// Our client transaction.
        tx: TransactionId,
        /// The response.
        response: Response,
        /// The dialog it created or belongs to.
        dialog: Option<DialogId>,
    },
    /// The ACK for our 2xx arrived: the dialog is confirmed on both sides.
    Ack {
        /// The dialog.
        dialog: DialogId,
        /// The ACK (it may carry the SDP answer of a late offer).
        request: Request,
    },
    /// The peer cancelled the INVITE of server transaction `tx` (487 already sent).
    Cancelled {
        /// The INVITE's server transaction.
        tx: TransactionId,
    },
    /// Our request got no final response in time (Timer B or F): treat as 408.
    TransactionTimeout {
        /// The client transaction.
        tx: TransactionId,
    },
    /// Our request in client transaction `tx` could not be sent (RFC 3261 §17.1.4: a refused
    /// or broken TCP connection, an ICMP error): the transaction ended without a final
    /// response. Treat it as 503 (§8.1.3.1).
    TransportError {
        /// The client transaction.
        tx: TransactionId,
    },
    /// A dialog ended.
    DialogTerminated {
        /// The dialog.
        dialog: DialogId,
        /// Why.
        reason: DialogEnd,
    },
    /// Our re-INVITE met the peer's (491): try again after `retry_after` (§14.1).
    ReInviteGlare {
        /// The dialog.
        dialog: DialogId,
        /// The randomized delay.
        retry_after: Duration,
    },
}

/// Writes Content-Type and Content-Length for `body` into `headers`; returns the body bytes.
fn set_body(headers: &mut session_sip::Headers, (content_type, bytes): (&str, Bytes)) -> Bytes {
    headers.remove_all(HeaderName::ContentLength);
    headers.push(Header::new(HeaderName::ContentType, content_type));
    headers.push(Header::new(
        HeaderName::ContentLength,
        bytes.len().to_string(),
    ));
    bytes
}

/// The response to `request` (RFC 3261 §8.2.6.1): its Via lines, From, To, Call-ID and CSeq,
/// its Record-Route values in order when the response establishes a dialog (§12.1.1, see
/// [`session_sip::copies_record_route`]), the To tagged with `tag` (or a fresh tag drawn from
/// `rng`) unless it has one or the status is 100. Returns
/// it with the To tag it carries. It has no Content-Length yet: [`finish_body`] adds it after
/// whatever else the UA adds, so the header list is built once, in order.
fn response_to(
    request: &Request,
    status: StatusCode,
    tag: Option<&str>,
    rng: &mut fastrand::Rng,
) -> (Response, Option<String>) {
    let mut response = Response::builder(status).build();
    response.headers.remove_all(HeaderName::ContentLength);
    let has_tag = request.to().ok().and_then(|to| to.tag().map(str::to_owned));
    let record_route = session_sip::copies_record_route(&request.method, status);
    let mut to_tag = None;
    for header in request.headers.iter() {
        match header.name() {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                response.headers.push(header.clone());
            }
            // Whole lines in their order: several values in one line, URI parameters and
            // header parameters all reach the peer as the proxies wrote them.
            HeaderName::RecordRoute if record_route => response.headers.push(header.clone()),
            HeaderName::To => match (&has_tag, status == StatusCode::TRYING) {
                (Some(existing), _) => {
                    to_tag = Some(existing.clone());
                    response.headers.push(header.clone());
                }
                (None, true) => response.headers.push(header.clone()),
                (None, false) => {
                    let tag = tag.map_or_else(|| new_tag_with(rng), str::to_owned);
                    let value = format!("{};tag={tag}", header.value());
                    response.headers.push(Header::new(HeaderName::To, value));
                    to_tag = Some(tag);
                }
            },
            // §8.2.6.1: a 100 Trying copies Timestamp.
            HeaderName::Timestamp if status == StatusCode::TRYING => {
                response.headers.push(header.clone());
            }
            _ => {}
        }
    }
    (response, to_tag)
}

/// Ends the headers of a message from [`response_to`]: Content-Type and Content-Length for
/// `body`, or Content-Length 0.
fn finish_body(response: &mut Response, body: Option<(&str, Bytes)>) {
    response.headers.remove_all(HeaderName::ContentLength);
    match body {
        Some(body) => response.body = set_body(&mut response.headers, body),
        None => response
            .headers
            .push(Header::new(HeaderName::ContentLength, "0")),
    }
}

/// Our Via for a new request over `protocol`, with a fresh branch drawn from `rng`. A free
/// function, so a caller can hold other parts of the user agent while it draws.
fn via_line(config: &UaConfig, rng: &mut fastrand::Rng, protocol: Protocol) -> String {
    format!(
        "SIP/2.0/{} {}:{};branch={};rport",
        protocol.via_token(),
        config.via_host,
        config.via_port,
        new_branch_with(rng)
    )
}

/// A UAS 2xx being retransmitted until its ACK (§13.3.1.4).
struct Pending2xx {
    bytes: Bytes,
    destination: SocketAddr,
    protocol: Protocol,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// An INVITE to send out of dialog, for [`UserAgent::invite_with`].
#[derive(Debug)]
pub struct OutgoingInvite<'a> {
    /// Our address of record (From).
    pub from: &'a Uri,
    /// The display name written in From.
    pub from_display: Option<&'a str>,
    /// Whom we call (To and Request-URI).
    pub to: &'a Uri,
    /// Where the INVITE goes.
    pub destination: SocketAddr,
    /// Over which transport.
    pub protocol: Protocol,
    /// Extra header fields (Supported, Session-Expires, the application's own …).
    pub headers: Vec<Header>,
    /// `(content type, bytes)`.
    pub body: Option<(&'a str, Bytes)>,
    /// The Call-ID to use (a retry of a refused INVITE keeps it, §8.1.3.5); a new one when
    /// `None`.
    pub call_id: Option<CallId>,
    /// The CSeq number (one more than the refused INVITE's for a retry); 1 when `None`.
    pub cseq: Option<u32>,
}

/// What we remember of an INVITE we sent.
struct ClientInvite {
    /// What dialogs are made from.
    invite: SentInvite,
    destination: SocketAddr,
    protocol: Protocol,
    /// The dialog its first 2xx made, with the ACK we sent for it and where it went.
    answered: Option<AckedAnswer>,
    /// Re-INVITE inside this dialog.
    within: Option<DialogId>,
    /// Where the INVITE stands, for CANCEL (§9.1).
    progress: InviteProgress,
    /// The caller asked to cancel it.
    cancel: Option<CancelState>,
}

/// The 2xx an INVITE of ours was answered with, as far as a retransmission of it needs.
#[derive(Debug)]
struct AckedAnswer {
    dialog: DialogId,
    ack: Bytes,
    /// The ACK's next hop: the dialog's first route, or its remote target (§13.2.2.4), not
    /// where the INVITE went.
    hop: SocketAddr,
}

/// How far an INVITE we sent got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteProgress {
    /// Nothing heard yet: a CANCEL must wait (§9.1).
    Calling,
    /// A provisional response arrived: a CANCEL may go.
    Proceeding,
    /// A final response arrived: nothing left to cancel.
    Final,
}

/// A CANCEL the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelState {
    /// Waiting for the first provisional response; the CANCEL will be this transaction.
    Deferred(TransactionId),
    /// Sent as this transaction.
    Sent(TransactionId),
}

impl CancelState {
    fn id(self) -> TransactionId {
        match self {
            Self::Deferred(id) | Self::Sent(id) => id,
        }
    }
}

/// What we remember of an INVITE we received.
struct ServerInvite {
    source: SocketAddr,
    protocol: Protocol,
    /// The To tag of every response we send for it (§8.2.6.2); for a re-INVITE, the dialog's.
    to_tag: String,
    within: Option<DialogId>,
}

/// A dialog and what the user agent does in it right now; one map entry per dialog, so a
/// request in a dialog costs one lookup.
///
/// The dialog and the pending 2xx are boxed: map slots are allocated for the peak number of
/// dialogs and kept, so a small slot keeps an idle map small.
struct DialogEntry {
    dialog: Box<Dialog>,
    /// Our 2xx waiting for its ACK (§13.3.1.4).
    pending_2xx: Option<Box<Pending2xx>>,
    /// Our re-INVITE in progress.
    local_reinvite: Option<TransactionId>,
    /// The peer's re-INVITE in progress.
    remote_reinvite: Option<TransactionId>,
}

impl DialogEntry {
    fn new(dialog: Dialog) -> Self {
        Self {
            dialog: Box::new(dialog),
            pending_2xx: None,
            local_reinvite: None,
            remote_reinvite: None,
        }
    }
}

/// The sans-IO user agent. See the module docs.
pub struct UserAgent {
    config: UaConfig,
    /// The seed `rng` started from ([`UaConfig::rng_seed`], or drawn from entropy).
    seed: u64,
    /// Every random value the user agent makes comes from here; the endpoint has a generator
    /// of its own, seeded from this one.
    rng: fastrand::Rng,
    /// `<contact>`, as written in our responses.
    contact_value: String,
    endpoint: Endpoint,
    dialogs: HashMap<DialogId, DialogEntry>,
    /// Boxed, like the dialogs: the maps keep room for their peak, so slots stay small.
    client_invites: IdMap<Box<ClientInvite>>,
    server_invites: IdMap<Box<ServerInvite>>,
    /// 2xx retransmission deadlines (lazy deletion: checked against the dialog's pending 2xx).
    timers: BinaryHeap<Reverse<(Instant, DialogId)>>,
    events: VecDeque<UaEvent>,
    /// Calls room was reserved for ([`UserAgent::reserve`]): maps never shrink below it.
    reserved: usize,
    /// When the maps were last checked for room a past peak left.
    last_shrink: Option<Instant>,
    /// A check was due later than a timeout that came: one more wake-up is owed for it.
    shrink_pending: bool,
}

/// How often the user agent checks its maps for room a past peak left (hash maps keep the
/// capacity of their peak: after a burst of 100,000 calls they would hold it for ever).
const SHRINK_EVERY: Duration = Duration::from_secs(10);

impl UserAgent {
    /// A user agent. Its random values come from one generator seeded with
    /// [`UaConfig::rng_seed`], or from entropy when that is `None`.
    pub fn new(config: UaConfig) -> Self {
        // Without a seed, the seed itself is the one value taken from entropy (fastrand's
        // thread-local generator); everything else is drawn from `rng`.
        let seed = config.rng_seed.unwrap_or_else(|| fastrand::u64(..));
        let mut rng = fastrand::Rng::with_seed(seed);
        let endpoint = Endpoint::with_seed(config.endpoint.clone(), rng.u64(..));
        Self {
            contact_value: format!("<{}>", config.contact),
            config,
            seed,
            rng,
            endpoint,
            dialogs: HashMap::new(),
            client_invites: IdMap::default(),
            server_invites: IdMap::default(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            reserved: 0,
            last_shrink: None,
            shrink_pending: false,
        }
    }

    /// Room for entries in every map and heap the user agent and its endpoint keep (for tests
    /// and metrics; it falls back after a peak, see [`UserAgent::handle_timeout`]).
    pub fn capacity(&self) -> usize {
        self.dialogs.capacity()
            + self.client_invites.capacity()
            + self.server_invites.capacity()
            + self.timers.capacity()
            + self.endpoint.capacity()
    }

    /// Every [`SHRINK_EVERY`], maps holding less than a quarter of their capacity shrink to
    /// twice their length (never below what [`UserAgent::reserve`] asked for).
    fn shrink_if_due(&mut self, now: Instant) {
        let due = self
            .last_shrink
            .is_none_or(|last| now.saturating_duration_since(last) >= SHRINK_EVERY);
        if !due {
            self.shrink_pending = true;
            return;
        }
        self.shrink_pending = false;
        self.last_shrink = Some(now);
        let floor = self.reserved;
        crate::transaction::table::shrink_map(&mut self.dialogs, floor);
        crate::transaction::table::shrink_map(&mut self.client_invites, floor);
        crate::transaction::table::shrink_map(&mut self.server_invites, floor);
        if self.timers.len() * 4 < self.timers.capacity() {
            self.timers.shrink_to((self.timers.len() * 2).max(floor));
        }
        if self.events.len() * 4 < self.events.capacity() {
            self.events.shrink_to(self.events.len() * 2);
        }
        self.endpoint.shrink_sparse(floor.saturating_mul(2));
    }

    /// The seed of the user agent's random generator: [`UaConfig::rng_seed`] when it was
    /// given, else the one drawn from entropy. Passing it back as `rng_seed` with the same
    /// inputs replays the run byte for byte.
    pub fn rng_seed(&self) -> u64 {
        self.seed
    }

    /// The request of server transaction `tx`, while the transaction lives.
    pub fn request_of(&self, tx: TransactionId) -> Option<&Request> {
        self.endpoint.request_of(tx)
    }

    /// Live dialogs.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Live transactions.
    pub fn transaction_count(&self) -> usize {
        self.endpoint.transaction_count()
    }

    /// Everything the user agent holds per call: dialogs, transactions, INVITE records and
    /// pending 2xx. Zero when idle, which tests check after every run.
    pub fn state_count(&self) -> usize {
        let in_dialogs: usize = self
            .dialogs
            .values()
            .map(|e| {
                1 + usize::from(e.pending_2xx.is_some())
                    + usize::from(e.local_reinvite.is_some())
                    + usize::from(e.remote_reinvite.is_some())
            })
            .sum();
        in_dialogs
            + self.endpoint.transaction_count()
            + self.client_invites.len()
            + self.server_invites.len()
    }

    /// Overload shedding: while `Some(retry_after)`, a new INVITE is answered 503 with
    /// `Retry-After` before any state is made for it (see [`Endpoint::set_shedding`]); the
    /// driver turns it on when the queue to the layer above runs short of room, and the layer
    /// above when it is at its admission limit.
    pub fn set_shedding(&mut self, retry_after: Option<Duration>) {
        self.endpoint.set_shedding(retry_after);
    }

    /// New INVITEs answered 503 by shedding so far.
    pub fn shed_invites(&self) -> u64 {
        self.endpoint.shed_invites()
    }

    /// Makes room for `calls` more concurrent calls (dialogs and their transactions), so a
    /// burst does not pause to grow and rehash the maps.
    pub fn reserve(&mut self, calls: usize) {
        self.reserved = self.reserved.saturating_add(calls);
        self.dialogs.reserve(calls);
        self.server_invites.reserve(calls);
        self.client_invites.reserve(calls);
        self.timers.reserve(calls);
        // An INVITE and a BYE transaction per call may overlap.
        self.endpoint.reserve(calls.saturating_mul(2));
    }

    /// A dialog.
    pub fn dialog(&self, id: &DialogId) -> Option<&Dialog> {
        self.dialogs.get(id).map(|e| &*e.dialog)
    }

    fn pending_2xx_due(&self, id: &DialogId) -> Option<Instant> {
        let pending = self.dialogs.get(id)?.pending_2xx.as_ref()?;
        Some(pending.next.min(pending.give_up))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.endpoint.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// When [`UserAgent::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, ref id))) = self.timers.peek() {
            if self.pending_2xx_due(id) == Some(at) {
                break;
            }
            self.timers.pop();
        }
        let ours = self.timers.peek().map(|Reverse((at, _))| *at);
        // A skipped room check comes back once, so an idle user agent gives room back too.
        let shrink = self
            .shrink_pending
            .then(|| self.last_shrink.map(|last| last + SHRINK_EVERY))
            .flatten();
        [ours, self.endpoint.poll_timeout(), shrink]
            .into_iter()
            .flatten()
            .min()
    }

    fn via(&mut self, protocol: Protocol) -> String {
        via_line(&self.config, &mut self.rng, protocol)
    }

    /// Time has reached `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, _))) = self.timers.peek() {
            if at > now {
                break;
            }
            let Some(Reverse((at, id))) = self.timers.pop() else {
                break;
            };
            let Some(entry) = self.dialogs.get_mut(&id) else {
                continue;
            };
            let Some(pending) = entry.pending_2xx.as_mut() else {
                continue;
            };
            if pending.next.min(pending.give_up) != at {
                continue;
            }
            if pending.give_up <= now {
                // §13.3.1.4: no ACK in 64·T1: confirm and end the session with BYE.
                entry.pending_2xx = None;
                self.events.push_back(UaEvent::DialogTerminated {
                    dialog: id.clone(),
                    reason: DialogEnd::AckTimeout,
                });
                self.send_bye(now, &id);
                continue;
            }
            self.endpoint.send_stateless(
                pending.bytes.clone(),
                pending.destination,
                pending.protocol,
            );
            pending.interval = (pending.interval * 2).min(self.config.endpoint.timers.t2);
            pending.next = now + pending.interval;
            let due = pending.next.min(pending.give_up);
            self.timers.push(Reverse((due, id)));
        }
        self.endpoint.handle_timeout(now);
        self.pump(now);
        self.shrink_if_due(now);
    }

    /// A datagram arrived.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        protocol: Protocol,
        source: SocketAddr,
        bytes: &Bytes,
    ) {
        self.endpoint.handle_datagram(now, protocol, source, bytes);
        self.pump(now);
    }

    /// A message already framed and parsed (from a TCP stream) arrived.
    pub fn handle_message(
        &mut self,
        now: Instant,
        protocol: Protocol,
        source: SocketAddr,
        message: session_sip::Message,
    ) {
        self.endpoint.handle_message(now, protocol, source, message);
        self.pump(now);
    }

    /// The transport could not send to `destination` over `protocol` (the driver calls this
    /// when a send fails: a refused or broken TCP connection, a hard UDP send error).
    ///
    /// Every client transaction with that peer still waiting for a final response ends with
    /// [`UaEvent::TransportError`] (§17.1.4, §8.1.3.1); server transactions whose responses
    /// go there just end (§17.2.4); a dialog whose 2xx to that peer still waits for its ACK
    /// ends with [`DialogEnd::TransportError`]. Other dialogs stay: the next request in them
    /// reports its own failure.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        protocol: Protocol,
    ) {
        self.endpoint
            .handle_transport_error(now, destination, protocol);
        let dead: Vec<DialogId> = self
            .dialogs
            .iter()
            .filter(|(_, e)| {
                e.pending_2xx
                    .as_ref()
                    .is_some_and(|p| p.destination == destination && p.protocol == protocol)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.end_dialog(&id);
            self.events.push_back(UaEvent::DialogTerminated {
                dialog: id,
                reason: DialogEnd::TransportError,
            });
        }
        self.pump(now);
    }

    /// Turns endpoint events into user agent behaviour and events.
    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                EndpointEvent::Request {
                    id,
                    request,
                    source,
                    protocol,
                } => self.on_request(now, id, request, source, protocol),
                EndpointEvent::Ack { request, .. } => self.on_ack(request),
                EndpointEvent::Cancelled { id } => {
                    self.server_invites.remove(&id);
                    self.events.push_back(UaEvent::Cancelled { tx: id });
                }
                EndpointEvent::Response { id, response } => self.on_response(now, id, response),
                EndpointEvent::StrayInvite2xx { response, source } => {
                    // The transaction is gone but the 2xx came again: re-ACK from the dialog.
                    if let Some(dialog) = Dialog::id_of_response(&response)
                        .and_then(|id| self.dialogs.get(&id))
                        .map(|e| &e.dialog)
                    {
                        let via = via_line(&self.config, &mut self.rng, dialog.protocol);
                        let ack = dialog.clone().request(
                            Method::Ack,
                            via,
                            None,
                            response.cseq().ok().map(|c| c.seq),
                        );
                        self.endpoint
                            .send_stateless(ack.to_bytes(), source, dialog.protocol);
                    }
                }
                EndpointEvent::TimedOut { id } => {
                    if self.endpoint.is_server(id) {
                        continue; // Timer H: our failure was never ACKed; nothing to tell.
                    }
                    self.end_local_reinvite(id);
                    self.events
                        .push_back(UaEvent::TransactionTimeout { tx: id });
                }
                EndpointEvent::TransportError { id } => {
                    self.end_local_reinvite(id);
                    self.events.push_back(UaEvent::TransportError { tx: id });
                }
                EndpointEvent::Terminated { id } => {
                    self.end_local_reinvite(id);
                    self.client_invites.remove(&id);
                    if let Some(invite) = self.server_invites.remove(&id)
                        && let Some(dialog) = invite.within
                        && let Some(entry) = self.dialogs.get_mut(&dialog)
                        && entry.remote_reinvite == Some(id)
                    {
                        entry.remote_reinvite = None;
                    }
                }
            }
        }
    }

    /// Client transaction `tx` is over: if it was our re-INVITE, another may start.
    fn end_local_reinvite(&mut self, tx: TransactionId) {
        if let Some(invite) = self.client_invites.get(&tx)
            && let Some(dialog) = &invite.within
            && let Some(entry) = self.dialogs.get_mut(dialog)
            && entry.local_reinvite == Some(tx)
        {
            entry.local_reinvite = None;
        }
    }

    fn reject(
        &mut self,
        now: Instant,
        tx: TransactionId,
        request: &Request,
        status: StatusCode,
        extra: Option<Header>,
    ) {
        let mut response = Response::from_request_with_rng(request, status, &mut self.rng);
        if let Some(header) = extra {
            response.headers.push(header);
        }
        // A response the transaction refuses is a bug of ours, not of the peer: log and go on.
        if let Err(error) = self.endpoint.respond(now, tx, response) {
            tracing::warn!(%error, "could not reject request");
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        tx: TransactionId,
        request: Request,
        source: SocketAddr,
        protocol: Protocol,
    ) {
        let has_to_tag = request.to().is_ok_and(|to| to.tag().is_some());
        if !has_to_tag {
            if request.method == Method::Invite {
                let to_tag = new_tag_with(&mut self.rng);
                self.server_invites.insert(
                    tx,
                    Box::new(ServerInvite {
                        source,
                        protocol,
                        to_tag,
                        within: None,
                    }),
                );
                self.events.push_back(UaEvent::IncomingInvite {
                    tx,
                    request,
                    source,
                });
            } else {
                self.events.push_back(UaEvent::IncomingRequest {
                    tx,
                    request,
                    dialog: None,
                    source,
                });
            }
            return;
        }
        let found = Dialog::id_of_request(&request)
            .and_then(|id| self.dialogs.get_mut(&id).map(|entry| (id, entry)));
        let Some((id, entry)) = found else {
            // §12.2.2: a request for a dialog we do not have.
            self.reject(
                now,
                tx,
                &request,
                StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
                None,
            );
            return;
        };
        let seq = request.cseq().map(|c| c.seq).unwrap_or_default();
        if !entry.dialog.accept_remote_seq(seq) {
            self.reject(now, tx, &request, StatusCode::SERVER_INTERNAL_ERROR, None);
            return;
        }
        match request.method {
            Method::Bye => {
                let (mut ok, tag) = response_to(&request, StatusCode::OK, None, &mut self.rng);
                finish_body(&mut ok, None);
                if let Err(error) = self.endpoint.respond_tagged(now, tx, ok, tag) {
                    tracing::warn!(%error, "could not answer BYE");
                }
                self.end_dialog(&id);
                self.events.push_back(UaEvent::DialogTerminated {
                    dialog: id,
                    reason: DialogEnd::PeerBye,
                });
            }
            Method::Invite if entry.local_reinvite.is_some() => {
                // §14.2: our re-INVITE is pending: glare.
                self.reject(now, tx, &request, StatusCode::REQUEST_PENDING, None);
            }
            Method::Invite if entry.remote_reinvite.is_some() => {
                // §14.2: a second re-INVITE before the first was answered.
                let retry = Header::new(HeaderName::RetryAfter, self.rng.u32(0..=10).to_string());
                self.reject(
                    now,
                    tx,
                    &request,
                    StatusCode::SERVER_INTERNAL_ERROR,
                    Some(retry),
                );
            }
            Method::Invite => {
                entry
                    .dialog
                    .refresh_target(request.headers.values(HeaderName::Contact).next());
                entry.remote_reinvite = Some(tx);
                let to_tag = id.local_tag.to_string();
                self.server_invites.insert(
                    tx,
                    Box::new(ServerInvite {
                        source,
                        protocol,
                        to_tag,
                        within: Some(id.clone()),
                    }),
                );
                self.events.push_back(UaEvent::IncomingRequest {
                    tx,
                    request,
                    dialog: Some(id),
                    source,
                });
            }
            _ => {
                if request.method == Method::Update {
                    entry
                        .dialog
                        .refresh_target(request.headers.values(HeaderName::Contact).next());
                }
                self.events.push_back(UaEvent::IncomingRequest {
                    tx,
                    request,
                    dialog: Some(id),
                    source,
                });
            }
        }
    }

    fn on_ack(&mut self, request: Request) {
        let Some(id) = Dialog::id_of_request(&request) else {
            return;
        };
        let acked = self
            .dialogs
            .get_mut(&id)
            .and_then(|e| e.pending_2xx.take())
            .is_some();
        if acked {
            self.events.push_back(UaEvent::Ack {
                dialog: id,
                request,
            });
        }
    }

    fn on_response(&mut self, now: Instant, tx: TransactionId, response: Response) {
        let is_invite = response.cseq().is_ok_and(|c| c.method == Method::Invite);
        if !is_invite || !self.client_invites.contains_key(&tx) {
            let dialog =
                Dialog::id_of_response(&response).filter(|id| self.dialogs.contains_key(id));
            self.events.push_back(UaEvent::Response {
                tx,
                response,
                dialog,
            });
            return;
        }
        let status = response.status;
        if status.is_provisional() {
            let dialog = Dialog::id_of_response(&response);
            self.events.push_back(UaEvent::Response {
                tx,
                response,
                dialog,
            });
            self.on_invite_provisional(now, tx);
            return;
        }
        let within = self.client_invites.get(&tx).and_then(|i| i.within.clone());
        if let Some(invite) = self.client_invites.get_mut(&tx) {
            // A deferred CANCEL is dropped: a final response came before any 1xx.
            invite.progress = InviteProgress::Final;
        }
        if !status.is_success() {
            if let Some(dialog) = within {
                if let Some(entry) = self.dialogs.get_mut(&dialog)
                    && entry.local_reinvite == Some(tx)
                {
                    entry.local_reinvite = None;
                }
                if status == StatusCode::REQUEST_PENDING {
                    let retry_after = self.glare_delay(&dialog);
                    self.events.push_back(UaEvent::ReInviteGlare {
                        dialog: dialog.clone(),
                        retry_after,
                    });
                }
                self.events.push_back(UaEvent::Response {
                    tx,
                    response,
                    dialog: Some(dialog),
                });
            } else {
                self.events.push_back(UaEvent::Response {
                    tx,
                    response,
                    dialog: None,
                });
            }
            return;
        }
        self.on_invite_2xx(now, tx, response, within);
    }

    /// The first 1xx for INVITE `tx`: a CANCEL the caller asked for may go now (§9.1).
    fn on_invite_provisional(&mut self, now: Instant, tx: TransactionId) {
        let Some(invite) = self.client_invites.get_mut(&tx) else {
            return;
        };
        if invite.progress != InviteProgress::Calling {
            return;
        }
        invite.progress = InviteProgress::Proceeding;
        let Some(CancelState::Deferred(id)) = invite.cancel else {
            return;
        };
        invite.cancel = Some(CancelState::Sent(id));
        match self.endpoint.send_cancel(now, tx, Some(id)) {
            Ok(_) => self.pump(now),
            Err(error) => tracing::warn!(%error, "could not send the deferred CANCEL"),
        }
    }

    /// §14.1: the owner of the Call-ID waits 2.1–4 s, the other side 0–2 s, in 10 ms steps.
    fn glare_delay(&mut self, dialog: &DialogId) -> Duration {
        let owner = self
            .dialogs
            .get(dialog)
            .is_some_and(|e| e.dialog.we_are_uac);
        let steps = if owner {
            self.rng.u64(210..=400)
        } else {
            self.rng.u64(0..=200)
        };
        Duration::from_millis(steps * 10)
    }

    fn on_invite_2xx(
        &mut self,
        now: Instant,
        tx: TransactionId,
        response: Response,
        within: Option<DialogId>,
    ) {
        let Some(invite) = self.client_invites.get(&tx) else {
            return;
        };
        let Some(id) = Dialog::id_of_response(&response) else {
            return;
        };
        // A retransmission of the 2xx we already ACKed: ACK again, nothing new to report.
        if let Some(answered) = &invite.answered
            && answered.dialog == id
        {
            // §13.2.2.4: each retransmission of the 2xx gets the same ACK, along the route set.
            self.endpoint
                .send_stateless(answered.ack.clone(), answered.hop, invite.protocol);
            return;
        }
        let forked = invite.answered.is_some();
        let cancelled = invite.cancel.is_some();
        let seq = invite.invite.seq;
        let via = via_line(&self.config, &mut self.rng, invite.protocol);
        let protocol = invite.protocol;
        let contact = response.headers.values(HeaderName::Contact).next();
        // A re-INVITE's 2xx refreshes its dialog in place; a first 2xx makes a new one.
        let (ack, hop, new_dialog) = match within.as_ref().and_then(|d| self.dialogs.get_mut(d)) {
            Some(entry) => {
                entry.local_reinvite = None;
                let dialog = &mut entry.dialog;
                dialog.state = DialogState::Confirmed;
                dialog.refresh_target(contact);
                let ack = dialog.request(Method::Ack, via, None, Some(seq)).to_bytes();
                (ack, dialog.next_hop(), None)
            }
            None => {
                let Some(mut dialog) = Dialog::from_sent_invite(
                    &invite.invite,
                    &response,
                    invite.destination,
                    protocol,
                ) else {
                    return;
                };
                dialog.state = DialogState::Confirmed;
                dialog.refresh_target(contact);
                let ack = dialog.request(Method::Ack, via, None, Some(seq)).to_bytes();
                let hop = dialog.next_hop();
                (ack, hop, Some(dialog))
            }
        };
        self.endpoint.send_stateless(ack.clone(), hop, protocol);
        if let Some(invite) = self.client_invites.get_mut(&tx)
            && invite.answered.is_none()
        {
            invite.answered = Some(AckedAnswer {
                dialog: id.clone(),
                ack,
                hop,
            });
        }
        let Some(dialog) = new_dialog else {
            let dialog = within.filter(|d| self.dialogs.contains_key(d));
            self.events.push_back(UaEvent::Response {
                tx,
                response,
                dialog,
            });
            return;
        };
        self.dialogs.insert(id.clone(), DialogEntry::new(dialog));
        if cancelled && !forked {
            // §15: we wanted out but the 2xx won the race with the CANCEL: the call exists
            // now, so it is ACKed (above) and ended with BYE.
            self.events.push_back(UaEvent::Response {
                tx,
                response,
                dialog: Some(id.clone()),
            });
            self.events.push_back(UaEvent::DialogTerminated {
                dialog: id.clone(),
                reason: DialogEnd::CancelledAfterAnswer,
            });
            self.send_bye(now, &id);
            return;
        }
        if forked {
            // §13.2.2.4: a second 2xx from another branch: ACK it, then end that dialog.
            self.send_bye(now, &id);
            self.events.push_back(UaEvent::DialogTerminated {
                dialog: id,
                reason: DialogEnd::ForkRejected,
            });
            return;
        }
        self.events.push_back(UaEvent::Response {
            tx,
            response,
            dialog: Some(id),
        });
    }

    fn end_dialog(&mut self, id: &DialogId) -> Option<Dialog> {
        self.dialogs.remove(id).map(|e| *e.dialog)
    }

    fn send_bye(&mut self, now: Instant, id: &DialogId) {
        let Some(mut dialog) = self.end_dialog(id) else {
            return;
        };
        let bye = dialog.request(Method::Bye, self.via(dialog.protocol), None, None);
        let hop = dialog.next_hop();
        if let Err(error) = self.endpoint.send_request(now, bye, hop, dialog.protocol) {
            tracing::warn!(%error, "could not send BYE");
        }
        self.pump(now);
    }

    /// RFC 3261 §18.1.1: a request larger than [`UDP_SIZE_LIMIT`] goes over TCP when we have
    /// it; its top Via then names TCP.
    fn fit_transport(&self, request: &mut Request, protocol: Protocol) -> Protocol {
        if protocol != Protocol::Udp || !self.config.large_requests_over_tcp {
            return protocol;
        }
        let size = request.to_bytes().len();
        if size <= UDP_SIZE_LIMIT {
            return protocol;
        }
        if let Some(via) = request.headers.get_mut(HeaderName::Via) {
            let value = via.value().replacen("SIP/2.0/UDP ", "SIP/2.0/TCP ", 1);
            via.set_value(value);
        }
        Protocol::Tcp
    }

    /// Sends an INVITE out of dialog and returns its client transaction. `body` is
    /// `(content type, bytes)`.
    pub fn invite(
        &mut self,
        now: Instant,
        from: &Uri,
        to: &Uri,
        destination: SocketAddr,
        protocol: Protocol,
        body: Option<(&str, Bytes)>,
    ) -> Result<TransactionId, EndpointError> {
        let invite = OutgoingInvite {
            from,
            from_display: None,
            to,
            destination,
            protocol,
            headers: Vec::new(),
            body,
            call_id: None,
            cseq: None,
        };
        self.invite_with(now, invite).map(|(tx, _)| tx)
    }

    /// Sends an INVITE out of dialog with a display name and extra headers; returns its
    /// client transaction and the new Call-ID.
    pub fn invite_with(
        &mut self,
        now: Instant,
        invite: OutgoingInvite<'_>,
    ) -> Result<(TransactionId, CallId), EndpointError> {
        let OutgoingInvite {
            from,
            from_display,
            to,
            destination,
            protocol,
            headers,
            body,
            call_id,
            cseq,
        } = invite;
        let call_id = call_id
            .unwrap_or_else(|| CallId::random_with(&mut self.rng, Some(&self.config.via_host)));
        let via = self.via(protocol);
        let from_tag = new_tag_with(&mut self.rng);
        let mut builder = Request::builder(Method::Invite, to.clone())
            .header(HeaderName::Via, via)
            .max_forwards(70)
            .from(from_display, from, &from_tag)
            .to(None, to, None)
            .call_id(call_id.as_str())
            .cseq(cseq.unwrap_or(1))
            .contact(&self.config.contact);
        for header in headers {
            builder = builder.header_line(header);
        }
        if let Some((content_type, bytes)) = body {
            builder = builder.body(content_type, bytes);
        }
        let mut request = builder.build();
        let protocol = self.fit_transport(&mut request, protocol);
        let invite = SentInvite::of(&request).ok_or(EndpointError::BadRequest("no From tag"))?;
        let tx = self
            .endpoint
            .send_request(now, request, destination, protocol)?;
        self.client_invites.insert(
            tx,
            Box::new(ClientInvite {
                invite,
                destination,
                protocol,
                answered: None,
                within: None,
                progress: InviteProgress::Calling,
                cancel: None,
            }),
        );
        Ok((tx, call_id))
    }

    /// Sends a request inside a dialog (BYE, re-INVITE, UPDATE, INFO, REFER, NOTIFY …).
    pub fn request_in_dialog(
        &mut self,
        now: Instant,
        id: &DialogId,
        method: Method,
        headers: Vec<Header>,
        body: Option<(&str, Bytes)>,
    ) -> Result<TransactionId, EndpointError> {
        // §14.1: one re-INVITE at a time per dialog (checked before a CSeq is spent).
        let entry = self
            .dialogs
            .get(id)
            .ok_or(EndpointError::NoSuchTransaction)?;
        if method == Method::Invite && entry.local_reinvite.is_some() {
            return Err(EndpointError::RequestPending);
        }
        let via = self.via(entry.dialog.protocol);
        let contact = &self.config.contact;
        let dialog = &mut self
            .dialogs
            .get_mut(id)
            .ok_or(EndpointError::NoSuchTransaction)?
            .dialog;
        let mut request = dialog.request(method.clone(), via, Some(contact), None);
        for header in headers {
            request.headers.push(header);
        }
        if let Some(body) = body {
            request.body = set_body(&mut request.headers, body);
        }
        let (hop, protocol) = (dialog.next_hop(), dialog.protocol);
        let protocol = self.fit_transport(&mut request, protocol);
        let sent = match method {
            Method::Invite => SentInvite::of(&request),
            _ => None,
        };
        let tx = self.endpoint.send_request(now, request, hop, protocol)?;
        match (method, sent) {
            (Method::Invite, Some(invite)) => {
                if let Some(entry) = self.dialogs.get_mut(id) {
                    entry.local_reinvite = Some(tx);
                }
                self.client_invites.insert(
                    tx,
                    Box::new(ClientInvite {
                        invite,
                        destination: hop,
                        protocol,
                        answered: None,
                        within: Some(id.clone()),
                        progress: InviteProgress::Calling,
                        cancel: None,
                    }),
                );
            }
            (Method::Bye, _) => {
                self.end_dialog(id);
                self.events.push_back(UaEvent::DialogTerminated {
                    dialog: id.clone(),
                    reason: DialogEnd::LocalBye,
                });
            }
            _ => {}
        }
        self.pump(now);
        Ok(tx)
    }

    /// Ends a confirmed dialog with BYE.
    pub fn hangup(&mut self, now: Instant, id: &DialogId) -> Result<TransactionId, EndpointError> {
        self.request_in_dialog(now, id, Method::Bye, Vec::new(), None)
    }

    /// Cancels our pending INVITE `tx` (§9.1) and returns the CANCEL's client transaction.
    ///
    /// It may be called at any time after [`UserAgent::invite`]. A CANCEL may only be sent
    /// once a provisional response arrived: before that the user agent remembers the request
    /// and sends the CANCEL (under the returned id) when the first 1xx arrives; if a final
    /// response comes first, no CANCEL is sent and the id never shows up in an event. If the
    /// INVITE is answered with a 2xx anyway (the CANCEL lost the race, or the answer came
    /// first), the user agent ACKs it, sends BYE at once, and reports
    /// [`UaEvent::DialogTerminated`] with [`DialogEnd::CancelledAfterAnswer`] right after the
    /// [`UaEvent::Response`]. Calling it again returns the same id.
    ///
    /// # Errors
    ///
    /// [`EndpointError::AlreadyFinal`] when the INVITE's final response has already arrived
    /// (hang up an answered call with [`UserAgent::hangup`] instead);
    /// [`EndpointError::NoSuchTransaction`] when `tx` is not a live client transaction.
    pub fn cancel(
        &mut self,
        now: Instant,
        tx: TransactionId,
    ) -> Result<TransactionId, EndpointError> {
        if let Some(invite) = self.client_invites.get(&tx) {
            if let Some(cancel) = invite.cancel {
                return Ok(cancel.id());
            }
            let state = match invite.progress {
                InviteProgress::Final => return Err(EndpointError::AlreadyFinal),
                InviteProgress::Calling => CancelState::Deferred(self.endpoint.reserve_id()),
                InviteProgress::Proceeding => {
                    CancelState::Sent(self.endpoint.send_cancel(now, tx, None)?)
                }
            };
            if let Some(invite) = self.client_invites.get_mut(&tx) {
                invite.cancel = Some(state);
            }
            self.pump(now);
            return Ok(state.id());
        }
        // Not an INVITE of ours: CANCEL the request as asked (it is the caller's choice).
        let cancel = self
            .endpoint
            .cancel_for(tx)
            .ok_or(EndpointError::NoSuchTransaction)?;
        let (destination, protocol) = self
            .endpoint
            .peer_of(tx)
            .ok_or(EndpointError::NoSuchTransaction)?;
        let id = self
            .endpoint
            .send_request(now, cancel, destination, protocol)?;
        self.pump(now);
        Ok(id)
    }

    /// Answers a request received in server transaction `tx`. For an INVITE, a 2xx creates (or
    /// refreshes) the dialog and is retransmitted until its ACK; the returned id is the dialog's.
    pub fn answer(
        &mut self,
        now: Instant,
        tx: TransactionId,
        status: StatusCode,
        headers: Vec<Header>,
        body: Option<(&str, Bytes)>,
    ) -> Result<Option<DialogId>, EndpointError> {
        let invite = self.server_invites.get(&tx);
        let within = invite.and_then(|i| i.within.clone());
        let Some(request) = self.endpoint.request_of(tx) else {
            // A transaction that already sent its final response keeps no request.
            return Err(if self.endpoint.is_live(tx) {
                EndpointError::ResponseRefused
            } else {
                EndpointError::NoSuchTransaction
            });
        };
        let (mut response, to_tag) = response_to(
            request,
            status,
            invite.map(|i| i.to_tag.as_str()),
            &mut self.rng,
        );
        let is_invite = request.method == Method::Invite;
        if is_invite && status != StatusCode::TRYING && status.as_u16() < 300 {
            response.headers.push(Header::new(
                HeaderName::Contact,
                self.contact_value.as_str(),
            ));
        }
        for header in headers {
            response.headers.push(header);
        }
        finish_body(&mut response, body);
        // The dialog (if this 2xx makes one) is read off the request before the response goes
        // to the transaction, so neither is copied.
        let new_dialog = match (invite, &to_tag) {
            (Some(invite), Some(local_tag)) if status.is_success() && within.is_none() => {
                Dialog::from_uas_tagged(request, local_tag, invite.source, invite.protocol)
            }
            _ => None,
        };
        let bytes = self.endpoint.respond_tagged(now, tx, response, to_tag)?;
        let mut dialog_id = None;
        if let Some(invite) = self.server_invites.get(&tx)
            && status.is_success()
        {
            let (source, protocol) = (invite.source, invite.protocol);
            let id = match (within, new_dialog) {
                (Some(id), _) => Some(id),
                (None, Some(dialog)) => {
                    let id = dialog.id.clone();
                    self.dialogs.insert(id.clone(), DialogEntry::new(dialog));
                    Some(id)
                }
                (None, None) => None,
            };
            if let Some(id) = id.filter(|id| self.dialogs.contains_key(id)) {
                let (destination, protocol) =
                    self.endpoint.peer_of(tx).unwrap_or((source, protocol));
                let t1 = self.config.endpoint.timers.t1;
                let give_up = now + t1 * 64;
                // On a reliable transport the 2xx is sent once; only the ACK wait remains.
                let next = if protocol.is_reliable() {
                    give_up
                } else {
                    now + t1
                };
                let pending = Pending2xx {
                    bytes,
                    destination,
                    protocol,
                    interval: t1,
                    next,
                    give_up,
                };
                self.timers.push(Reverse((next.min(give_up), id.clone())));
                if let Some(entry) = self.dialogs.get_mut(&id) {
                    entry.pending_2xx = Some(Box::new(pending));
                    entry.remote_reinvite = None;
                }
                dialog_id = Some(id);
            }
        }
        if status.as_u16() >= 200
            && let Some(invite) = self.server_invites.remove(&tx)
            && let Some(dialog) = invite.within
            && let Some(entry) = self.dialogs.get_mut(&dialog)
            && entry.remote_reinvite == Some(tx)
        {
            // The final response is out: nothing more is sent for this INVITE, and another
            // re-INVITE may come (§14.2).
            entry.remote_reinvite = None;
        }
        self.pump(now);
        Ok(dialog_id)
    }
}
