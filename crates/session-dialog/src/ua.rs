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
//! Reliable provisional responses (RFC 3262), in both roles, when the endpoint's
//! [`UasPolicy`](session_sip::UasPolicy) lists the option tag `100rel` (as a UAC the user agent
//! PRACKs whatever asks for it):
//!
//! - **UAC.** A 101–199 answer to our INVITE with `Require: 100rel` and an `RSeq` is PRACKed in
//!   the early dialog it makes (one per To tag when the INVITE forks: its route set, remote
//!   target and CSeq count, §4), with `RAck: <rseq> <invite cseq> INVITE`. Only the first RSeq
//!   of an early dialog and then exactly one more each time are PRACKed and reported as
//!   [`UaEvent::Response`]; a retransmission or an out-of-order one is dropped (§4), so the
//!   layer above sees each reliable 1xx once. A lost PRACK is resent by its own transaction. The
//!   PRACK's responses, timeouts and transport errors are not reported: the PRACK is the user
//!   agent's business. The dialog a 2xx confirms keeps the early dialog's CSeq, so the ACK's
//!   successors (BYE …) number above the PRACKs.
//! - **UAS.** When the INVITE says `Require: 100rel`, every provisional response but 100 goes
//!   reliably; with `Supported: 100rel` only those with a body (early media). A reliable one
//!   carries `Require: 100rel` and an `RSeq` (a random start below 2³¹, then one more each,
//!   §3) and is resent at T1, 2·T1, 4·T1 … (§3: no T2 cap, unlike a 2xx) until its PRACK;
//!   without one in 64·T1 the INVITE is answered 500 ([`UaEvent::PrackTimeout`]). One is
//!   unacknowledged at a time: a reliable 1xx asked for meanwhile is queued and sent when the
//!   PRACK comes (at most [`MAX_QUEUED_PROVISIONALS`]). A 2xx asked for while the
//!   unacknowledged one carried a session description is held until its PRACK (§3): `answer`
//!   returns the dialog at once, and the 2xx goes out (then is retransmitted until its ACK) when
//!   the PRACK arrives; if the INVITE ends first the dialog ends with
//!   [`DialogEnd::PrackTimeout`] or [`DialogEnd::CancelledBeforeAnswer`], and hanging it up
//!   meanwhile answers the INVITE 480 rather than BYE an early dialog. Any other final
//!   response goes at once and stops the retransmissions; a later PRACK for the
//!   unacknowledged 1xx is still answered 200 (§3). The user agent answers every PRACK itself
//!   (200 when its Call-ID, tags and `RAck` match the unacknowledged 1xx, else 481) and
//!   reports a matched one as [`UaEvent::Prack`]; an offer in a PRACK (§5) is not supported.
//!
//! Digest authentication (RFC 3261 §22.2): a request sent with an [`Account`] (an INVITE
//! through [`OutgoingInvite::account`], an out-of-dialog request through
//! [`OutgoingRequest::account`], and every request inside a dialog the account was set for) is
//! answered by the user agent itself when a 401 or 407 comes: it re-sends the request with
//! credentials in a new transaction (same Call-ID, From tag, To and body, the next CSeq) and
//! reports [`UaEvent::Challenged`] instead of the challenge. Every later event of the re-sent
//! request carries the id of the *first* transaction, so the layer above keeps one id per
//! request; [`UserAgent::cancel`] with it reaches the INVITE in flight. Wrong credentials end
//! the request with the 401/407 as its final [`UaEvent::Response`]. The ACK of a 2xx carries
//! the INVITE's credentials (§13.2.2.4). See [`crate::auth`].
//!
//! Randomness is an input, like time: every tag, Via branch, Call-ID, glare delay, RSeq and
//! Retry-After comes from one generator seeded by [`UaConfig::rng_seed`] (the endpoint's To
//! tags from one seeded from it), so the same seed and the same inputs give the same bytes.
//!
//! Memory: per call the user agent keeps one boxed map entry per dialog and per INVITE record,
//! and transactions that linger after their final response keep no request and no bytes they
//! will never send again; [`UserAgent::reserve`] sizes the maps for a known load.

use crate::auth::{Account, Challengeable};
use crate::dialog::{Dialog, DialogState, SentInvite};
use crate::endpoint::{Endpoint, EndpointConfig, EndpointError, EndpointEvent, Protocol, Transmit};
use crate::map::{DialogMap, DialogParts, DialogRef, SeededState};
use crate::reply::{OwnLine, Reply};
use crate::transaction::TransactionId;
use crate::transaction::deadlines::Deadlines;
use crate::transaction::table::{IdMap, KEEP, Spare, shrink_heap, shrink_map, shrink_queue};
use bytes::Bytes;
use session_sip::{
    Header, HeaderName, Method, Request, Response, Uri, new_branch_with, new_shared_tag_with,
    new_tag_with,
};
use session_types::{CallId, DialogId, StatusCode};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// Our 2xx was held for the PRACK of a reliable provisional response with a session
    /// description (RFC 3262 §3), which did not come in 64·T1: the INVITE was answered 500
    /// instead and the 2xx never sent ([`UaEvent::PrackTimeout`] comes first).
    PrackTimeout,
    /// The peer cancelled the INVITE while our 2xx was held for a PRACK (RFC 3262 §3): the
    /// INVITE was answered 487 and the 2xx never sent ([`UaEvent::Cancelled`] comes first).
    CancelledBeforeAnswer,
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
        /// Our client transaction (the first one, when the request was re-sent after a
        /// challenge).
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
    /// The PRACK for a reliable provisional response to the INVITE of server transaction `tx`
    /// arrived and was answered 200 (RFC 3262 §3); retransmissions of that 1xx stopped, and a
    /// held 2xx or a queued 1xx went out. Its body, if any, is the peer's (§5).
    Prack {
        /// The INVITE's server transaction.
        tx: TransactionId,
        /// The PRACK.
        request: Request,
    },
    /// A reliable provisional response to the INVITE of server transaction `tx` got no PRACK
    /// in 64·T1 (RFC 3262 §3): the user agent answered the INVITE 500, so it is over. A dialog
    /// its held 2xx made ends next with [`DialogEnd::PrackTimeout`].
    PrackTimeout {
        /// The INVITE's server transaction.
        tx: TransactionId,
    },
    /// Our request `tx` was challenged (401 or 407) and has been sent again with credentials
    /// from its [`Account`], as CSeq `cseq` (RFC 3261 §22.2). Its later events still carry
    /// `tx`.
    Challenged {
        /// The request's first client transaction.
        tx: TransactionId,
        /// 401 (a UAS or registrar) or 407 (a proxy).
        status: StatusCode,
        /// The CSeq number of the request as re-sent.
        cseq: u32,
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

/// The response to `request` (RFC 3261 §8.2.6): the lines [`session_sip::response_copies`]
/// names (Via, From, To, Call-ID, CSeq; Timestamp in a 100; Record-Route when the response
/// establishes a dialog), the To tagged with `tag` (or a fresh tag drawn from `rng`) unless it
/// has one or the status is 100. Returns
/// it with the To tag it carries. It has no Content-Length yet: [`finish_body`] adds it after
/// whatever else the UA adds, so the header list is built once, in order.
///
/// `blank` is a response without headers to start from ([`blank_response`]); the headers are
/// the request's, less those a response does not copy, so they keep the request's order and
/// the list has room for what the UA adds.
fn response_to(
    blank: &Response,
    (request, request_tag): (&Request, RequestTag<'_>),
    status: StatusCode,
    tag: Option<&str>,
    rng: &mut fastrand::Rng,
) -> (Response, Option<String>) {
    let mut response = blank.clone();
    response.status = status;
    response.reason = status.reason_phrase().to_owned();
    let to_tag = response_tag((request, request_tag), status, tag, rng);
    response.headers = request.headers.clone();
    response
        .headers
        .retain(|header| session_sip::response_copies(header.name(), &request.method, status));
    if to_tag.added {
        // Validation let the request in with exactly one To (RFC 3261 §20.39).
        if let (Some(to), Some(tag)) = (response.headers.get_mut(HeaderName::To), &to_tag.tag) {
            let mut value = String::with_capacity(to.value().len() + 5 + tag.len());
            value.push_str(to.value());
            value.push_str(";tag=");
            value.push_str(tag);
            *to = Header::new(HeaderName::To, value);
        }
    }
    (response, to_tag.tag.map(Cow::into_owned))
}

/// The To tag of a response to `request` (RFC 3261 §8.2.6.2), as [`response_to`] chooses it.
struct ResponseTag<'a> {
    /// The tag the response's To carries: the request's, or (`added`) `tag` or a fresh one
    /// drawn; none in a 100 to a request without one.
    tag: Option<Cow<'a, str>>,
    /// The request's To has no tag and the response adds `tag` to it.
    added: bool,
}

/// See [`ResponseTag`]: the request's To tag if it has one; else none for a 100, else `tag`,
/// or a fresh one drawn from `rng`.
fn response_tag<'a>(
    (request, request_tag): (&'a Request, RequestTag<'a>),
    status: StatusCode,
    tag: Option<&'a str>,
    rng: &mut fastrand::Rng,
) -> ResponseTag<'a> {
    let existing = match request_tag {
        RequestTag::Known(tag) => tag,
        RequestTag::Unknown => request.to().ok().and_then(|to| to.tag()),
    };
    match existing {
        Some(existing) => ResponseTag {
            tag: Some(Cow::Borrowed(existing)),
            added: false,
        },
        None if status == StatusCode::TRYING => ResponseTag {
            tag: None,
            added: false,
        },
        // Validation let the request in with exactly one To (RFC 3261 §20.39).
        None if request.headers.get(HeaderName::To).is_some() => ResponseTag {
            tag: Some(tag.map_or_else(|| Cow::Owned(new_tag_with(rng)), Cow::Borrowed)),
            added: true,
        },
        None => ResponseTag {
            tag: None,
            added: false,
        },
    }
}

/// The id dialog `entry` is stored under, found by `key` (so equal to it): the dialog's own
/// id shared (reference counts), or, when the two differ (a UAC dialog whose 2xx named
/// another Call-ID or From tag than our INVITE: it is stored under the response's), built from
/// `key`.
fn stored_id(entry: &DialogEntry, key: DialogRef<'_>) -> DialogId {
    if entry.dialog.id.parts() == key.parts() {
        entry.dialog.id.clone()
    } else {
        key.to_id()
    }
}

/// What the caller of [`response_to`] knows of the request's To tag.
#[derive(Clone, Copy, Debug)]
enum RequestTag<'a> {
    /// Nothing: [`response_to`] reads it.
    Unknown,
    /// The request's To carries this tag, or none.
    Known(Option<&'a str>),
}

/// A response with no headers and no body, for [`response_to`] to clone (which allocates
/// nothing).
fn blank_response() -> Response {
    let mut blank = Response::builder(StatusCode::OK).build();
    blank.reason = String::new();
    blank.headers = session_sip::Headers::new();
    blank
}

/// Ends the headers of a message from [`response_to`]: Content-Type and Content-Length for
/// `body`, or Content-Length 0, taken from `cache`.
fn finish_body(cache: &mut BodyHeaders, response: &mut Response, body: Option<(&str, Bytes)>) {
    // `response_to` copies none; only headers the caller added may bring one.
    if response.headers.get(HeaderName::ContentLength).is_some() {
        response.headers.remove_all(HeaderName::ContentLength);
    }
    match body {
        Some((content_type, bytes)) => {
            response
                .headers
                .push(cache.content_type(content_type).header().clone());
            response
                .headers
                .push(cache.length(bytes.len()).header().clone());
            response.body = bytes;
        }
        None => response.headers.push(cache.zero.header().clone()),
    }
}

/// The Content-Type and Content-Length lines of the last responses, reused while they stay
/// the same: a clone is two reference counts, a new one four allocations.
struct BodyHeaders {
    content_type: Option<OwnLine>,
    /// The last non-zero length, and its line.
    length: (usize, OwnLine),
    zero: OwnLine,
}

impl BodyHeaders {
    fn new() -> Self {
        let zero = OwnLine::new(Header::new(HeaderName::ContentLength, "0"));
        Self {
            content_type: None,
            length: (0, zero.clone()),
            zero,
        }
    }

    fn content_type(&mut self, value: &str) -> OwnLine {
        match &self.content_type {
            Some(cached) if cached.header().value() == value => cached.clone(),
            _ => {
                let line = OwnLine::new(Header::new(HeaderName::ContentType, value));
                self.content_type = Some(line.clone());
                line
            }
        }
    }

    fn length(&mut self, n: usize) -> OwnLine {
        if n == 0 {
            return self.zero.clone();
        }
        if self.length.0 != n {
            self.length = (
                n,
                OwnLine::new(Header::new(HeaderName::ContentLength, n.to_string())),
            );
        }
        self.length.1.clone()
    }
}

/// Our Via for a new request over `protocol`, with a fresh branch drawn from `rng`: the TLS
/// listener's port over TLS, the UDP/TCP one otherwise. A free function, so a caller can hold
/// other parts of the user agent while it draws.
fn via_line(
    config: &UaConfig,
    tls: Option<&TlsListener>,
    rng: &mut fastrand::Rng,
    protocol: Protocol,
) -> String {
    let port = match (protocol, tls) {
        (Protocol::Tls, Some(tls)) => tls.port,
        _ => config.via_port,
    };
    format!(
        "SIP/2.0/{} {}:{port};branch={};rport",
        protocol.via_token(),
        config.via_host,
        new_branch_with(rng)
    )
}

/// A UAS 2xx being retransmitted until its ACK (§13.3.1.4).
struct Pending2xx {
    bytes: Bytes,
    destination: SocketAddr,
    protocol: Protocol,
    dscp: Option<u8>,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

impl Pending2xx {
    /// When its deadline is: the next retransmission, or giving up.
    fn due(&self) -> Instant {
        self.next.min(self.give_up)
    }
}

/// The most reliable provisional responses one INVITE queues behind its unacknowledged one
/// (RFC 3262 §3 allows one in flight); [`UserAgent::answer`] refuses more.
pub const MAX_QUEUED_PROVISIONALS: usize = 4;

/// The option tag of RFC 3262.
const TAG_100REL: &str = "100rel";

/// The most early dialogs (To tags) one INVITE of ours PRACKs in; reliable 1xx from further
/// branches go up unacknowledged.
const MAX_EARLY_DIALOGS: usize = 16;

/// Whether a header list (`Require`, `Supported`) of `headers` names `100rel`.
fn names_100rel(headers: &session_sip::Headers, name: HeaderName) -> bool {
    headers
        .values(name)
        .any(|tag| tag.eq_ignore_ascii_case(TAG_100REL))
}

/// Which provisional responses to an INVITE we received go reliably (RFC 3262 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reliability {
    /// None: the INVITE did not offer `100rel`, or our policy does not list it.
    Never,
    /// Those with a body (early media): the INVITE said `Supported: 100rel`.
    WithBody,
    /// All but 100: the INVITE said `Require: 100rel`.
    Always,
}

/// A reliable provisional response of ours waiting for its PRACK (RFC 3262 §3).
struct Unacked {
    rseq: u32,
    bytes: Bytes,
    /// It carried a body (a session description): a 2xx waits for its PRACK.
    with_body: bool,
    interval: Duration,
    /// The next retransmission; `None` on a reliable transport or once the final response
    /// is out (§3: retransmissions stop, PRACKs are still answered).
    next: Option<Instant>,
    give_up: Instant,
}

impl Unacked {
    fn due(&self) -> Instant {
        self.next
            .map_or(self.give_up, |next| next.min(self.give_up))
    }
}

/// A provisional response waiting for the unacknowledged one to be PRACKed: built, but its
/// `Require`, `RSeq` and body lines are added when it goes.
struct QueuedProvisional {
    response: Response,
    body: Option<(Box<str>, Bytes)>,
}

/// The RFC 3262 state of an INVITE we received, made by its first reliable 1xx.
struct ReliableUas {
    /// The early dialog the responses make (our To tag, the peer's From tag): PRACKs carry it.
    dialog: DialogId,
    /// The INVITE's CSeq number (a PRACK's `RAck` names it).
    invite_seq: u32,
    /// The RSeq of the next reliable provisional response.
    next_rseq: u32,
    unacked: Option<Unacked>,
    queued: VecDeque<QueuedProvisional>,
    /// Our 2xx, held until `unacked` (which carried a session description) is PRACKed.
    held: Option<Response>,
    /// The CSeq of the last PRACK answered (§12.2.2 ordering before a dialog exists).
    prack_seq: Option<u32>,
    /// The final response is out (or the INVITE was cancelled): nothing more is sent.
    done: bool,
}

/// An early dialog a reliable provisional response to our INVITE made (RFC 3262 §4).
struct EarlyDialog {
    /// The To tag of its responses.
    remote_tag: std::sync::Arc<str>,
    /// The last RSeq PRACKed: only one more is PRACKed next.
    rseq: u32,
    /// Where PRACKs go and how they count; `None` for a re-INVITE, whose PRACKs go in its
    /// confirmed dialog.
    dialog: Option<Box<Dialog>>,
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
    /// The From tag to use (a retry keeps it, §8.1.3.5); a new one when `None`.
    pub from_tag: Option<&'a str>,
    /// Answer 401/407 challenges with this account's credentials, for the INVITE and for
    /// every request in the dialog it makes (see the module docs).
    pub account: Option<Account>,
    /// The DiffServ mark of the INVITE and of everything sent in the dialogs it makes, when
    /// not the socket's own ([`Transmit::dscp`]); `None` for the socket's.
    pub dscp: Option<u8>,
}

/// A request to send outside any dialog (REGISTER, OPTIONS, MESSAGE …), for
/// [`UserAgent::request_out_of_dialog`]. The user agent writes Via, Max-Forwards, From, To,
/// Call-ID and CSeq; no Contact (a REGISTER's Contact is the binding: the caller writes it,
/// see [`UserAgent::contact_for`]).
#[derive(Debug)]
pub struct OutgoingRequest<'a> {
    /// The method: anything but INVITE (see [`UserAgent::invite_with`]), ACK, CANCEL, PRACK.
    pub method: Method,
    /// The Request-URI (a REGISTER's: the registrar's domain, §10.2).
    pub uri: &'a Uri,
    /// From (a REGISTER's: the address of record, or a third party's).
    pub from: &'a Uri,
    /// The display name written in From.
    pub from_display: Option<&'a str>,
    /// The From tag; a new one when `None`.
    pub from_tag: Option<&'a str>,
    /// To (a REGISTER's: the address of record).
    pub to: &'a Uri,
    /// Where the request goes (its next hop).
    pub destination: SocketAddr,
    /// Over which transport.
    pub protocol: Protocol,
    /// Extra header fields (Contact, Expires, Route, the application's own …).
    pub headers: Vec<Header>,
    /// `(content type, bytes)`.
    pub body: Option<(&'a str, Bytes)>,
    /// The Call-ID (a registration keeps one for all its REGISTERs, §10.2.4); a new one when
    /// `None`.
    pub call_id: Option<CallId>,
    /// The CSeq number; 1 when `None`.
    pub cseq: Option<u32>,
    /// Answer 401/407 challenges with this account's credentials.
    pub account: Option<Account>,
    /// Send the account's credentials for the realms it already answered right away, with
    /// the next nonce count (RFC 3261 §22.3), instead of waiting for a challenge: for a
    /// REGISTER refresh to the same registrar. Only with an account scoped to that
    /// destination, since every realm the account knows goes along.
    pub preauthorize: bool,
}

/// What we remember of an INVITE we sent.
struct ClientInvite {
    /// What dialogs are made from.
    invite: SentInvite,
    destination: SocketAddr,
    protocol: Protocol,
    /// The mark of its messages, and of the dialogs it makes ([`Dialog::dscp`]).
    dscp: Option<u8>,
    /// The dialog its first 2xx made, with the ACK we sent for it and where it went.
    answered: Option<AckedAnswer>,
    /// Re-INVITE inside this dialog.
    within: Option<DialogId>,
    /// Where the INVITE stands, for CANCEL (§9.1).
    progress: InviteProgress,
    /// The caller asked to cancel it.
    cancel: Option<CancelState>,
    /// Early dialogs reliable provisional responses made, one per To tag (RFC 3262 §4).
    early: Vec<EarlyDialog>,
    /// The INVITE's `Authorization`/`Proxy-Authorization`, which the ACK of its 2xx repeats
    /// (§13.2.2.4).
    credentials: Vec<Header>,
    /// The account the dialog it makes answers challenges with.
    account: Option<Account>,
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
    /// Shared with the dialog's id and the transaction's record (reference counts).
    to_tag: Arc<str>,
    within: Option<DialogId>,
    /// Which provisional responses go reliably (RFC 3262).
    reliability: Reliability,
    /// Made by the first reliable provisional response.
    reliable: Option<Box<ReliableUas>>,
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
    /// Our requests in the dialog answer challenges with this account.
    account: Option<Account>,
}

impl DialogEntry {
    fn new(dialog: Dialog) -> Self {
        Self {
            dialog: Box::new(dialog),
            pending_2xx: None,
            local_reinvite: None,
            remote_reinvite: None,
            account: None,
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
    /// `Contact: <contact>`, as written in our responses (built once: a clone is a reference
    /// count).
    contact_header: OwnLine,
    /// Content-Length and Content-Type lines our responses reuse.
    body_headers: BodyHeaders,
    /// What our responses start from ([`blank_response`]).
    blank: Response,
    endpoint: Endpoint,
    /// Looked up by ids borrowed from the messages; hashed with keys from `rng`.
    dialogs: DialogMap<DialogEntry>,
    /// Boxed, like the dialogs: the maps keep room for their peak, so slots stay small.
    client_invites: IdMap<Box<ClientInvite>>,
    server_invites: IdMap<Box<ServerInvite>>,
    /// 2xx retransmission deadlines (lazy deletion: checked against the dialog's pending 2xx).
    /// A pending 2xx that goes away (ACKed, replaced, its dialog ended) is forgotten there
    /// ([`UserAgent::forget_2xx`]), so [`UserAgent::poll_timeout`] looks the earliest up only
    /// when it may be stale.
    timers: Deadlines<DialogId>,
    /// Reliable 1xx retransmission and PRACK deadlines, by INVITE server transaction (lazy
    /// deletion: checked against its unacknowledged 1xx).
    prack_timers: BinaryHeap<Reverse<(Instant, TransactionId)>>,
    /// The INVITE server transaction an early dialog's PRACKs are for (RFC 3262 §3).
    expected_pracks: HashMap<DialogId, TransactionId>,
    /// Our PRACK client transactions: their outcome is not reported (RFC 3262 §4).
    pracks: IdMap<()>,
    events: VecDeque<UaEvent>,
    /// Calls room was reserved for ([`UserAgent::reserve`]): maps never shrink below it.
    reserved: usize,
    /// Our policy lists `100rel` (RFC 3262): provisional responses may go reliably.
    offers_100rel: bool,
    /// When the maps were last checked for room a past peak left.
    last_shrink: Option<Instant>,
    /// A check was due later than a timeout that came: one more wake-up is owed for it.
    shrink_pending: bool,
    /// Our TLS listener, when there is one ([`UserAgent::set_tls_listener`]).
    tls: Option<TlsListener>,
    /// Requests sent with an account, until their final response, by current transaction.
    challengeable: IdMap<Box<Challengeable>>,
    /// Transactions of re-sent requests → the request's first transaction (the id the layer
    /// above knows).
    aliases: IdMap<TransactionId>,
    /// A request's first transaction → its current one.
    current: IdMap<TransactionId>,
    /// Re-sent transactions that ended: their aliases go once the events naming them are out.
    retired: Vec<TransactionId>,
    /// Boxes of INVITE records and of pending 2xx that went, for the next ones.
    spare_invites: Spare<ServerInvite>,
    spare_2xx: Spare<Pending2xx>,
}

/// Where we take TLS: what our Via and Contact say in messages sent over TLS.
struct TlsListener {
    port: u16,
    contact: Uri,
    /// `Contact: <contact>`, as written in our responses.
    contact_header: OwnLine,
    /// The same address as a `sips:` URI: our Contact when the request is for a `sips:` URI
    /// (RFC 3261 §8.1.1.8, §12.1.1), and its `Contact: <…>` line.
    sips_contact: Uri,
    sips_contact_header: OwnLine,
}

impl TlsListener {
    /// Our Contact for a request or answer over TLS: `sips:` when `target` is one.
    fn contact_for(&self, target: &Uri) -> &Uri {
        if target.scheme() == session_sip::Scheme::Sips {
            &self.sips_contact
        } else {
            &self.contact
        }
    }
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
        let mut endpoint = Endpoint::with_seed(config.endpoint.clone(), rng.u64(..));
        // Requests the user agent answers at once (BYE, rejections) are not copied.
        endpoint.hand_over_requests();
        let dialogs = DialogMap::new(SeededState::derived_from(&rng));
        let offers_100rel = config
            .endpoint
            .policy
            .supported
            .iter()
            .any(|tag| tag.eq_ignore_ascii_case(TAG_100REL));
        Self {
            contact_header: OwnLine::new(Header::new(
                HeaderName::Contact,
                format!("<{}>", config.contact),
            )),
            body_headers: BodyHeaders::new(),
            blank: blank_response(),
            config,
            seed,
            rng,
            endpoint,
            dialogs,
            client_invites: IdMap::default(),
            server_invites: IdMap::default(),
            timers: Deadlines::default(),
            prack_timers: BinaryHeap::new(),
            expected_pracks: HashMap::new(),
            pracks: IdMap::default(),
            events: VecDeque::new(),
            reserved: 0,
            offers_100rel,
            last_shrink: None,
            shrink_pending: false,
            tls: None,
            challengeable: IdMap::default(),
            aliases: IdMap::default(),
            current: IdMap::default(),
            retired: Vec::new(),
            spare_invites: Spare::default(),
            spare_2xx: Spare::default(),
        }
    }

    /// Room for entries in every map and heap the user agent and its endpoint keep (for tests
    /// and metrics; it falls back after a peak, see [`UserAgent::handle_timeout`]).
    pub fn capacity(&self) -> usize {
        self.dialogs.capacity()
            + self.client_invites.capacity()
            + self.server_invites.capacity()
            + self.timers.capacity()
            + self.prack_timers.capacity()
            + self.expected_pracks.capacity()
            + self.pracks.capacity()
            + self.challengeable.capacity()
            + self.aliases.capacity()
            + self.current.capacity()
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
        // The maps every call uses keep a little room; the rarer ones give all of it back.
        let floor = self.reserved.max(KEEP);
        self.dialogs.shrink(floor);
        shrink_map(&mut self.client_invites, floor);
        shrink_map(&mut self.server_invites, floor);
        self.timers.shrink(floor);
        shrink_heap(&mut self.prack_timers, 0);
        shrink_map(&mut self.expected_pracks, 0);
        shrink_map(&mut self.pracks, 0);
        shrink_map(&mut self.challengeable, 0);
        shrink_map(&mut self.aliases, 0);
        shrink_map(&mut self.current, 0);
        shrink_queue(&mut self.events, KEEP);
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

    /// Everything the user agent holds per call: dialogs, transactions, INVITE records,
    /// pending 2xx and PRACK records. Zero when idle, which tests check after every run.
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
            + self.expected_pracks.len()
            + self.pracks.len()
            + self.challengeable.len()
            + self.aliases.len()
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

    /// The load our answers to out-of-dialog OPTIONS report (see [`Endpoint::set_load`]).
    pub fn set_load(&mut self, load: Option<crate::endpoint::Load>) {
        self.endpoint.set_load(load);
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

    /// When the unacknowledged reliable 1xx of INVITE `tx` is next resent or given up on.
    fn unacked_due(&self, tx: TransactionId) -> Option<Instant> {
        let reliable = self.server_invites.get(&tx)?.reliable.as_ref()?;
        if reliable.done {
            return None;
        }
        reliable.unacked.as_ref().map(Unacked::due)
    }

    fn pending_2xx_due_in(dialogs: &DialogMap<DialogEntry>, id: &DialogId) -> Option<Instant> {
        dialogs.get(id)?.pending_2xx.as_deref().map(Pending2xx::due)
    }

    /// Dialog `id`'s pending 2xx went away (ACKed, replaced, or its dialog ended): its
    /// deadline is stale.
    fn forget_2xx(timers: &mut Deadlines<DialogId>, id: &DialogId, pending: &Pending2xx) {
        timers.forget(pending.due(), id);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.endpoint.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        let Some(mut event) = self.events.pop_front() else {
            // Every event naming a retired re-sent transaction is out: forget its alias.
            for tx in std::mem::take(&mut self.retired) {
                if let Some(original) = self.aliases.remove(&tx)
                    && self.current.get(&original) == Some(&tx)
                {
                    self.current.remove(&original);
                }
            }
            return None;
        };
        // A re-sent request's events carry its first transaction's id.
        if let UaEvent::Response { tx, .. }
        | UaEvent::TransactionTimeout { tx }
        | UaEvent::TransportError { tx } = &mut event
            && let Some(original) = self.aliases.get(tx)
        {
            *tx = *original;
        }
        Some(event)
    }

    /// When [`UserAgent::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let dialogs = &self.dialogs;
        let ours = self
            .timers
            .earliest(|at, id| Self::pending_2xx_due_in(dialogs, id) == Some(at));
        while let Some(&Reverse((at, tx))) = self.prack_timers.peek() {
            if self.unacked_due(tx) == Some(at) {
                break;
            }
            self.prack_timers.pop();
        }
        let pracks = self.prack_timers.peek().map(|Reverse((at, _))| *at);
        // A skipped room check comes back once, so an idle user agent gives room back too.
        let shrink = self
            .shrink_pending
            .then(|| self.last_shrink.map(|last| last + SHRINK_EVERY))
            .flatten();
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earliest(
            earliest(ours, pracks),
            earliest(self.endpoint.poll_timeout(), shrink),
        )
    }

    fn via(&mut self, protocol: Protocol) -> String {
        via_line(&self.config, self.tls.as_ref(), &mut self.rng, protocol)
    }

    /// We also listen for TLS on `port`: requests and responses sent over TLS carry that port
    /// in their Via and `contact` (a `;transport=tls` URI) as Contact, so that the peer's
    /// requests in the dialog come back over TLS (RFC 3261 §26.2.1).
    pub fn set_tls_listener(&mut self, port: u16, contact: Uri) {
        let contact_header = OwnLine::new(Header::new(HeaderName::Contact, format!("<{contact}>")));
        // `sips:user@host:port`, without the transport parameter (sips implies TLS).
        let sips_text = format!(
            "sips:{}{}:{port}",
            contact.user().map(|u| format!("{u}@")).unwrap_or_default(),
            contact.host()
        );
        let sips_contact = Uri::parse(&sips_text).unwrap_or_else(|_| contact.clone());
        let sips_contact_header = OwnLine::new(Header::new(
            HeaderName::Contact,
            format!("<{sips_contact}>"),
        ));
        self.tls = Some(TlsListener {
            port,
            contact,
            contact_header,
            sips_contact,
            sips_contact_header,
        });
    }

    /// Time has reached `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(entry) = self.dialogs.get_mut(&id) else {
                continue;
            };
            let Some(pending) = entry.pending_2xx.as_mut() else {
                continue;
            };
            if pending.due() != at {
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
            self.endpoint.send_marked_stateless(
                pending.bytes.clone(),
                pending.destination,
                pending.protocol,
                pending.dscp,
            );
            pending.interval = (pending.interval * 2).min(self.config.endpoint.timers.t2);
            pending.next = now + pending.interval;
            self.timers.push(pending.due(), id);
        }
        self.handle_prack_timers(now);
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
                    let held = self.remove_server_invite(id);
                    self.events.push_back(UaEvent::Cancelled { tx: id });
                    self.end_held_dialog(held, DialogEnd::CancelledBeforeAnswer);
                }
                EndpointEvent::Response { id, response } => self.on_response(now, id, response),
                EndpointEvent::StrayInvite2xx { response, source } => {
                    // The transaction is gone but the 2xx came again: re-ACK from the dialog.
                    if let Some(dialog) = Dialog::id_of_response(&response)
                        .and_then(|id| self.dialogs.get(&id))
                        .map(|e| &e.dialog)
                    {
                        let via = via_line(
                            &self.config,
                            self.tls.as_ref(),
                            &mut self.rng,
                            dialog.protocol,
                        );
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
                    if self.pracks.contains_key(&id) {
                        // The UAS gives up on its 1xx by itself (RFC 3262 §3): nothing to do.
                        tracing::debug!("PRACK timed out");
                        continue;
                    }
                    self.end_local_reinvite(id);
                    self.challengeable.remove(&id);
                    self.events
                        .push_back(UaEvent::TransactionTimeout { tx: id });
                }
                EndpointEvent::TransportError { id } => {
                    if self.pracks.contains_key(&id) {
                        continue; // The INVITE's own transaction reports the peer's loss.
                    }
                    self.end_local_reinvite(id);
                    self.challengeable.remove(&id);
                    self.events.push_back(UaEvent::TransportError { tx: id });
                }
                EndpointEvent::Terminated { id } => {
                    // Most of these maps are empty in a UAS (client transactions): no lookup
                    // then.
                    if !self.client_invites.is_empty() {
                        self.end_local_reinvite(id);
                        self.client_invites.remove(&id);
                    }
                    if !self.pracks.is_empty() {
                        self.pracks.remove(&id);
                    }
                    if !self.challengeable.is_empty() {
                        self.challengeable.remove(&id);
                    }
                    if !self.aliases.is_empty() && self.aliases.contains_key(&id) {
                        self.retired.push(id);
                    }
                    // A 2xx still held ends here only when the transport failed (§17.2.4).
                    let held = self.remove_server_invite(id);
                    self.end_held_dialog(held, DialogEnd::TransportError);
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

    /// Forgets INVITE server transaction `tx`: its record, the PRACKs it expects, and the
    /// dialog's pending re-INVITE. Returns the dialog its held 2xx made, which the caller ends
    /// (a re-INVITE's held 2xx leaves its dialog as it was).
    fn remove_server_invite(&mut self, tx: TransactionId) -> Option<DialogId> {
        if self.server_invites.is_empty() {
            return None; // No lookup (every transaction's end comes here).
        }
        let mut invite = self.server_invites.remove(&tx)?;
        let (within, reliable) = (invite.within.take(), invite.reliable.take());
        self.spare_invites.keep(invite);
        if let Some(dialog) = &within
            && let Some(entry) = self.dialogs.get_mut(dialog)
            && entry.remote_reinvite == Some(tx)
        {
            entry.remote_reinvite = None;
        }
        let reliable = reliable?;
        if self.expected_pracks.get(&reliable.dialog) == Some(&tx) {
            self.expected_pracks.remove(&reliable.dialog);
        }
        (reliable.held.is_some() && within.is_none()).then_some(reliable.dialog)
    }

    /// Ends the dialog a held 2xx made (see [`UserAgent::remove_server_invite`]).
    fn end_held_dialog(&mut self, dialog: Option<DialogId>, reason: DialogEnd) {
        if let Some(dialog) = dialog
            && self.end_dialog(&dialog).is_some()
        {
            self.events
                .push_back(UaEvent::DialogTerminated { dialog, reason });
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
        // The To tag is read once: it says whether the request is in a dialog, and which.
        let Some(to_tag) = request.to().ok().and_then(|to| to.tag()) else {
            if request.method == Method::Invite {
                let to_tag = new_shared_tag_with(&mut self.rng);
                let reliability = self.reliability_of(&request);
                self.server_invites.insert(
                    tx,
                    self.spare_invites.boxed(ServerInvite {
                        source,
                        protocol,
                        to_tag,
                        within: None,
                        reliability,
                        reliable: None,
                    }),
                );
                // Not answered here: the endpoint keeps the request for the answer.
                self.endpoint.keep_request(tx, &request);
                self.events.push_back(UaEvent::IncomingInvite {
                    tx,
                    request,
                    source,
                });
            } else {
                // Not answered here: the endpoint keeps the request for the answer.
                self.endpoint.keep_request(tx, &request);
                self.events.push_back(UaEvent::IncomingRequest {
                    tx,
                    request,
                    dialog: None,
                    source,
                });
            }
            return;
        };
        if request.method == Method::Prack {
            // RFC 3262 §3: matched against our unacknowledged reliable 1xx, in an early dialog
            // as in a confirmed one.
            self.on_prack(now, tx, request);
            return;
        }
        let reliability = match request.method {
            Method::Invite => self.reliability_of(&request),
            _ => Reliability::Never,
        };
        let found = Dialog::key_of_request_to(&request, to_tag).and_then(|key| {
            let entry = self.dialogs.get_mut(&key)?;
            Some((stored_id(entry, key), entry))
        });
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
        if entry.dialog.dscp.is_some() {
            // Our answers in the dialog are marked as the rest of it.
            self.endpoint.set_dscp(tx, entry.dialog.dscp);
        }
        let seq = request.cseq().map(|c| c.seq).unwrap_or_default();
        if !entry.dialog.accept_remote_seq(seq) {
            self.reject(now, tx, &request, StatusCode::SERVER_INTERNAL_ERROR, None);
            return;
        }
        match request.method {
            Method::Bye => {
                // The BYE's To carries the dialog's tag: copied as it is.
                let ok = Reply::plain(
                    &request,
                    StatusCode::OK,
                    None,
                    &self.body_headers.zero,
                    self.endpoint.server_header(),
                )
                .to_bytes();
                if let Err(error) = self.endpoint.respond_bytes(now, tx, 200, ok, None) {
                    tracing::warn!(%error, "could not answer BYE");
                }
                self.end_dialog(&id);
                self.events.push_back(UaEvent::DialogTerminated {
                    dialog: id.clone(),
                    reason: DialogEnd::PeerBye,
                });
                self.bye_ends_held_invite(now, &id);
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
                let to_tag = id.local_tag.clone();
                self.server_invites.insert(
                    tx,
                    self.spare_invites.boxed(ServerInvite {
                        source,
                        protocol,
                        to_tag,
                        within: Some(id.clone()),
                        reliability,
                        reliable: None,
                    }),
                );
                // Not answered here: the endpoint keeps the request for the answer.
                self.endpoint.keep_request(tx, &request);
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
                // Not answered here: the endpoint keeps the request for the answer.
                self.endpoint.keep_request(tx, &request);
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
        let Some(key) = Dialog::key_of_request(&request) else {
            return;
        };
        let acked = self.dialogs.get_mut(&key).and_then(|e| {
            let pending = e.pending_2xx.take()?;
            Some((stored_id(e, key), pending))
        });
        if let Some((id, mut pending)) = acked {
            Self::forget_2xx(&mut self.timers, &id, &pending);
            // The box waits for the next 2xx, without this one's bytes.
            pending.bytes = Bytes::new();
            self.spare_2xx.keep(pending);
            self.events.push_back(UaEvent::Ack {
                dialog: id,
                request,
            });
        }
    }

    fn on_response(&mut self, now: Instant, tx: TransactionId, response: Response) {
        if self.pracks.contains_key(&tx) {
            // Our PRACK's answer (RFC 3262 §4): nothing to do either way; a failure leaves the
            // UAS to give up on its 1xx (§3).
            if !response.status.is_provisional() && !response.status.is_success() {
                tracing::debug!(status = response.status.as_u16(), "PRACK refused");
            }
            return;
        }
        if response.status.is_final() {
            let challenge = response.status == StatusCode::UNAUTHORIZED
                || response.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED;
            if challenge && self.answer_challenge(now, tx, &response) {
                return;
            }
            self.challengeable.remove(&tx);
        }
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
            // RFC 3262 §4: 100rel in a 100 is ignored.
            if status != StatusCode::TRYING
                && names_100rel(&response.headers, HeaderName::Require)
                && !self.on_reliable_provisional(now, tx, &response)
            {
                return;
            }
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

    /// RFC 3262 §4: PRACKs a reliable provisional response to our INVITE `tx` in the early
    /// dialog it belongs to. Returns whether the response goes on to the layer above: not a
    /// retransmission nor one out of order (its RSeq is not one more than the last), which
    /// "MUST NOT be processed further", nor one after the final response (we MAY discard it).
    /// One without RSeq or To tag cannot be PRACKed and goes on as an unreliable one.
    fn on_reliable_provisional(
        &mut self,
        now: Instant,
        tx: TransactionId,
        response: &Response,
    ) -> bool {
        let Some(Ok(rseq)) = response.rseq() else {
            return true;
        };
        let Some(tag) = response
            .to()
            .ok()
            .and_then(|to| to.tag().map(std::sync::Arc::<str>::from))
        else {
            return true;
        };
        let Some(invite) = self.client_invites.get_mut(&tx) else {
            return true;
        };
        if invite.progress == InviteProgress::Final {
            return false;
        }
        let within = invite.within.clone();
        let contact = response.headers.values(HeaderName::Contact).next();
        let room = invite.early.len() < MAX_EARLY_DIALOGS;
        match invite.early.iter_mut().find(|e| e.remote_tag == tag) {
            Some(early) => {
                if early.rseq.checked_add(1) != Some(rseq) {
                    tracing::debug!(rseq, last = early.rseq, "reliable 1xx out of order");
                    return false;
                }
                early.rseq = rseq;
                if let Some(dialog) = early.dialog.as_mut() {
                    dialog.refresh_target(contact);
                }
            }
            // A new early dialog (one per To tag when the INVITE forks): its RSeq count
            // starts at whatever the UAS chose (errata 4604: per early dialog).
            None if room => {
                let dialog = match within {
                    Some(_) => None,
                    None => {
                        let made = Dialog::from_sent_invite(
                            &invite.invite,
                            response,
                            invite.destination,
                            invite.protocol,
                        );
                        let Some(mut dialog) = made else {
                            return true;
                        };
                        dialog.dscp = invite.dscp;
                        Some(Box::new(dialog))
                    }
                };
                invite.early.push(EarlyDialog {
                    remote_tag: tag.clone(),
                    rseq,
                    dialog,
                });
            }
            None => return true,
        }
        let rack = format!("{rseq} {} INVITE", invite.invite.seq);
        self.send_prack(now, tx, &tag, rack, within);
        true
    }

    /// Sends a PRACK with `rack` in the early dialog with To tag `tag` of our INVITE `tx`, or
    /// in dialog `within` for a re-INVITE.
    fn send_prack(
        &mut self,
        now: Instant,
        tx: TransactionId,
        tag: &str,
        rack: String,
        within: Option<DialogId>,
    ) {
        let protocol = match &within {
            Some(id) => self.dialogs.get(id).map(|e| e.dialog.protocol),
            None => self.client_invites.get(&tx).map(|i| i.protocol),
        };
        let Some(protocol) = protocol else {
            return;
        };
        let via = via_line(&self.config, self.tls.as_ref(), &mut self.rng, protocol);
        let dialog = match &within {
            Some(id) => self.dialogs.get_mut(id).map(|e| &mut *e.dialog),
            None => self
                .client_invites
                .get_mut(&tx)
                .and_then(|i| i.early.iter_mut().find(|e| &*e.remote_tag == tag))
                .and_then(|e| e.dialog.as_deref_mut()),
        };
        let Some(dialog) = dialog else {
            return;
        };
        // The early dialog's next CSeq, its route set and remote target (§4, RFC 3261 §12.2.1.1).
        let mut prack = dialog.request(Method::Prack, via, None, None);
        prack.headers.remove_all(HeaderName::ContentLength);
        prack.headers.push(Header::new(HeaderName::RAck, rack));
        prack
            .headers
            .push(Header::new(HeaderName::ContentLength, "0"));
        let (hop, protocol, dscp) = (dialog.next_hop(), dialog.protocol, dialog.dscp);
        match self
            .endpoint
            .send_marked_request(now, prack, hop, protocol, dscp)
        {
            Ok(id) => {
                self.pracks.insert(id, ());
            }
            Err(error) => tracing::warn!(%error, "could not send PRACK"),
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
            self.endpoint.send_marked_stateless(
                answered.ack.clone(),
                answered.hop,
                invite.protocol,
                invite.dscp,
            );
            return;
        }
        let forked = invite.answered.is_some();
        let cancelled = invite.cancel.is_some();
        let seq = invite.invite.seq;
        // §13.2.2.4: the ACK carries the INVITE's credentials, as sent.
        let credentials = invite.credentials.clone();
        let account = invite.account.clone();
        let via = via_line(
            &self.config,
            self.tls.as_ref(),
            &mut self.rng,
            invite.protocol,
        );
        let (protocol, dscp) = (invite.protocol, invite.dscp);
        let contact = response.headers.values(HeaderName::Contact).next();
        // A re-INVITE's 2xx refreshes its dialog in place; a first 2xx makes a new one.
        let (ack, hop, new_dialog) = match within.as_ref().and_then(|d| self.dialogs.get_mut(d)) {
            Some(entry) => {
                entry.local_reinvite = None;
                let dialog = &mut entry.dialog;
                dialog.state = DialogState::Confirmed;
                dialog.refresh_target(contact);
                let mut ack = dialog.request(Method::Ack, via, None, Some(seq));
                for credential in credentials {
                    ack.headers.push(credential);
                }
                (ack.to_bytes(), dialog.next_hop(), None)
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
                dialog.dscp = dscp;
                dialog.refresh_target(contact);
                // RFC 3262 §4: the PRACKs were counted in the early dialog this 2xx confirms;
                // our next request goes on from there.
                if let Some(early) = invite
                    .early
                    .iter()
                    .find(|e| e.remote_tag == id.remote_tag)
                    .and_then(|e| e.dialog.as_ref())
                {
                    dialog.local_seq = dialog.local_seq.max(early.local_seq);
                }
                let mut ack = dialog.request(Method::Ack, via, None, Some(seq));
                for credential in credentials {
                    ack.headers.push(credential);
                }
                let hop = dialog.next_hop();
                (ack.to_bytes(), hop, Some(dialog))
            }
        };
        self.endpoint
            .send_marked_stateless(ack.clone(), hop, protocol, dscp);
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
        let mut entry = DialogEntry::new(dialog);
        entry.account = account;
        if let Some(pending) = self
            .dialogs
            .insert(id.clone(), entry)
            .and_then(|old| old.pending_2xx)
        {
            Self::forget_2xx(&mut self.timers, &id, &pending);
        }
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

    /// Removes dialog `id`; returns it in its box (not moved out of it: for speed).
    fn end_dialog(&mut self, id: &DialogId) -> Option<Box<Dialog>> {
        let entry = self.dialogs.remove(id)?;
        if let Some(pending) = &entry.pending_2xx {
            Self::forget_2xx(&mut self.timers, id, pending);
        }
        Some(entry.dialog)
    }

    fn send_bye(&mut self, now: Instant, id: &DialogId) {
        let account = self.dialogs.get(id).and_then(|e| e.account.clone());
        let Some(mut dialog) = self.end_dialog(id) else {
            return;
        };
        let bye = dialog.request(Method::Bye, self.via(dialog.protocol), None, None);
        let hop = dialog.next_hop();
        let kept = account.map(|account| (bye.clone(), account));
        let sent = self
            .endpoint
            .send_marked_request(now, bye, hop, dialog.protocol, dialog.dscp);
        match sent {
            Ok(tx) => {
                if let Some((bye, account)) = kept {
                    self.track_challengeable(tx, bye, hop, dialog.protocol, account, None);
                }
            }
            Err(error) => tracing::warn!(%error, "could not send BYE"),
        }
        self.pump(now);
    }

    /// Remembers request `request`, sent as `tx` with `account`, so that a 401/407 to it can
    /// be answered ([`UserAgent::answer_challenge`]).
    fn track_challengeable(
        &mut self,
        tx: TransactionId,
        request: Request,
        destination: SocketAddr,
        protocol: Protocol,
        account: Account,
        dialog: Option<DialogId>,
    ) {
        self.track_attempt(
            tx,
            request,
            destination,
            protocol,
            account,
            dialog,
            session_auth::Attempt::new(),
        );
    }

    /// [`UserAgent::track_challengeable`] with the attempt pre-authorization started.
    #[allow(clippy::too_many_arguments)]
    fn track_attempt(
        &mut self,
        tx: TransactionId,
        request: Request,
        destination: SocketAddr,
        protocol: Protocol,
        account: Account,
        dialog: Option<DialogId>,
        attempt: session_auth::Attempt,
    ) {
        if !crate::auth::challengeable(&request.method) {
            return;
        }
        self.challengeable.insert(
            tx,
            Box::new(Challengeable {
                original: tx,
                request,
                destination,
                protocol,
                account,
                attempt,
                dialog,
            }),
        );
    }

    /// A 401/407 answered our request `tx`: when it was sent with an account, answer the
    /// challenge and send it again (RFC 3261 §22.2, §8.1.3.5). Returns whether it was re-sent,
    /// in which case the challenge goes no further; otherwise it is the request's final
    /// response (no account, wrong or missing credentials, too many rounds, a cancelled
    /// INVITE).
    fn answer_challenge(&mut self, now: Instant, tx: TransactionId, response: &Response) -> bool {
        let Some(mut record) = self.challengeable.remove(&tx) else {
            return false;
        };
        if self
            .client_invites
            .get(&tx)
            .is_some_and(|invite| invite.cancel.is_some())
        {
            // The caller wants out: the challenge ends the INVITE (§9.1 has nothing to cancel).
            return false;
        }
        let Ok(old_seq) = record.request.cseq().map(|c| c.seq) else {
            return false;
        };
        // Within a dialog that lives, the dialog's next number (others may have gone out
        // meanwhile); otherwise one more than the challenged request's.
        let live = record
            .dialog
            .as_ref()
            .and_then(|id| self.dialogs.get(id))
            .map(|entry| entry.dialog.local_seq);
        let Some(seq) = live.unwrap_or(old_seq).max(old_seq).checked_add(1) else {
            return false;
        };
        let answered = record.account.answer(
            &mut record.attempt,
            response,
            &record.request,
            &mut self.rng,
        );
        let credentials = match answered {
            Ok(credentials) => credentials,
            Err(error) => {
                let status = response.status.as_u16();
                tracing::debug!(%error, status, "challenge not answered");
                return false;
            }
        };
        if let Some(entry) = record
            .dialog
            .as_ref()
            .and_then(|id| self.dialogs.get_mut(id))
        {
            entry.dialog.local_seq = seq;
        }
        let via = via_line(
            &self.config,
            self.tls.as_ref(),
            &mut self.rng,
            record.protocol,
        );
        let request = crate::auth::resend(&record.request, via, seq, &credentials);
        let sent = match request.method {
            Method::Invite => SentInvite::of(&request),
            _ => None,
        };
        // Marked as the challenged request was.
        let dscp = self.endpoint.dscp_of(tx);
        let new_tx = match self.endpoint.send_marked_request(
            now,
            request.clone(),
            record.destination,
            record.protocol,
            dscp,
        ) {
            Ok(id) => id,
            Err(error) => {
                tracing::warn!(%error, "could not re-send the challenged request");
                return false;
            }
        };
        if let Some(sent) = sent {
            let within = self.client_invites.get_mut(&tx).and_then(|old| {
                // The old INVITE is over: nothing of it is cancelled or ACKed any more.
                old.progress = InviteProgress::Final;
                old.within.clone()
            });
            let account = self
                .client_invites
                .get(&tx)
                .and_then(|old| old.account.clone());
            if let Some(entry) = within.as_ref().and_then(|id| self.dialogs.get_mut(id)) {
                entry.local_reinvite = Some(new_tx);
            }
            self.client_invites.insert(
                new_tx,
                Box::new(ClientInvite {
                    invite: sent,
                    destination: record.destination,
                    protocol: record.protocol,
                    dscp,
                    answered: None,
                    within,
                    progress: InviteProgress::Calling,
                    cancel: None,
                    early: Vec::new(),
                    credentials: crate::auth::credentials_of(&request),
                    account,
                }),
            );
        }
        let original = record.original;
        record.request = request;
        self.challengeable.insert(new_tx, record);
        self.aliases.insert(new_tx, original);
        self.current.insert(original, new_tx);
        self.events.push_back(UaEvent::Challenged {
            tx: original,
            status: response.status,
            cseq: seq,
        });
        true
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
            from_tag: None,
            account: None,
            dscp: None,
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
            from_tag,
            account,
            dscp,
        } = invite;
        let call_id = call_id
            .unwrap_or_else(|| CallId::random_with(&mut self.rng, Some(&self.config.via_host)));
        let via = self.via(protocol);
        let from_tag = match from_tag {
            Some(tag) => tag.to_owned(),
            None => new_tag_with(&mut self.rng),
        };
        let contact = match (&self.tls, protocol) {
            (Some(tls), Protocol::Tls) => tls.contact_for(to),
            _ => &self.config.contact,
        };
        let mut builder = Request::builder(Method::Invite, to.clone())
            .header(HeaderName::Via, via)
            .max_forwards(70)
            .from(from_display, from, &from_tag)
            .to(None, to, None)
            .call_id(call_id.as_str())
            .cseq(cseq.unwrap_or(1))
            .contact(contact);
        for header in headers {
            builder = builder.header_line(header);
        }
        if let Some((content_type, bytes)) = body {
            builder = builder.body(content_type, bytes);
        }
        let mut request = builder.build();
        let protocol = self.fit_transport(&mut request, protocol);
        let invite = SentInvite::of(&request).ok_or(EndpointError::BadRequest("no From tag"))?;
        let credentials = crate::auth::credentials_of(&request);
        let kept = account.clone().map(|account| (request.clone(), account));
        let tx = self
            .endpoint
            .send_marked_request(now, request, destination, protocol, dscp)?;
        self.client_invites.insert(
            tx,
            Box::new(ClientInvite {
                invite,
                destination,
                protocol,
                dscp,
                answered: None,
                within: None,
                progress: InviteProgress::Calling,
                cancel: None,
                early: Vec::new(),
                credentials,
                account,
            }),
        );
        if let Some((request, account)) = kept {
            self.track_challengeable(tx, request, destination, protocol, account, None);
        }
        Ok((tx, call_id))
    }

    /// Sends a request outside any dialog (REGISTER, OPTIONS, MESSAGE …) and returns its
    /// client transaction and Call-ID. Its responses come as [`UaEvent::Response`] with
    /// `dialog: None`; with an account, 401/407 challenges are answered (see the module docs).
    ///
    /// # Errors
    ///
    /// [`EndpointError::BadRequest`] for INVITE (use [`UserAgent::invite_with`]), ACK, CANCEL
    /// or PRACK; what the endpoint refuses otherwise.
    pub fn request_out_of_dialog(
        &mut self,
        now: Instant,
        request: OutgoingRequest<'_>,
    ) -> Result<(TransactionId, CallId), EndpointError> {
        let OutgoingRequest {
            method,
            uri,
            from,
            from_display,
            from_tag,
            to,
            destination,
            protocol,
            headers,
            body,
            call_id,
            cseq,
            account,
            preauthorize,
        } = request;
        if matches!(
            method,
            Method::Invite | Method::Ack | Method::Cancel | Method::Prack
        ) {
            return Err(EndpointError::BadRequest(
                "not a method for request_out_of_dialog",
            ));
        }
        let call_id = call_id
            .unwrap_or_else(|| CallId::random_with(&mut self.rng, Some(&self.config.via_host)));
        let via = self.via(protocol);
        let from_tag = match from_tag {
            Some(tag) => tag.to_owned(),
            None => new_tag_with(&mut self.rng),
        };
        let mut builder = Request::builder(method, uri.clone())
            .header(HeaderName::Via, via)
            .max_forwards(70)
            .from(from_display, from, &from_tag)
            .to(None, to, None)
            .call_id(call_id.as_str())
            .cseq(cseq.unwrap_or(1));
        for header in headers {
            builder = builder.header_line(header);
        }
        if let Some((content_type, bytes)) = body {
            builder = builder.body(content_type, bytes);
        }
        let mut request = builder.build();
        let mut attempt = session_auth::Attempt::new();
        if let Some(account) = account.as_ref().filter(|_| preauthorize) {
            for credential in account.authorize(&mut attempt, &request, &mut self.rng) {
                request
                    .headers
                    .push(Header::new(credential.name, credential.value));
            }
        }
        let protocol = self.fit_transport(&mut request, protocol);
        let kept = account.map(|account| (request.clone(), account));
        let tx = self
            .endpoint
            .send_request(now, request, destination, protocol)?;
        if let Some((request, account)) = kept {
            self.track_attempt(tx, request, destination, protocol, account, None, attempt);
        }
        self.pump(now);
        Ok((tx, call_id))
    }

    /// Our Contact URI for requests over `protocol` (the TLS listener's over TLS), e.g. for
    /// the Contact of a REGISTER.
    pub fn contact_for(&self, protocol: Protocol) -> &Uri {
        match (&self.tls, protocol) {
            (Some(tls), Protocol::Tls) => &tls.contact,
            _ => &self.config.contact,
        }
    }

    /// Marks what server or client transaction `tx` sends from now on with DiffServ code
    /// point `dscp` ([`Transmit::dscp`]; `None`: as the socket is marked). On an incoming
    /// INVITE it marks the answers, and the dialog a 2xx makes goes on with that mark.
    /// Returns whether the transaction is live.
    pub fn set_transaction_dscp(&mut self, tx: TransactionId, dscp: Option<u8>) -> bool {
        let tx = self.current.get(&tx).copied().unwrap_or(tx);
        self.endpoint.set_dscp(tx, dscp)
    }

    /// Marks everything sent in dialog `id` from now on with `dscp` ([`Dialog::dscp`]): our
    /// requests, our answers to the peer's, ACKs and 2xx retransmissions. Returns whether the
    /// dialog exists.
    pub fn set_dialog_dscp(&mut self, id: &DialogId, dscp: Option<u8>) -> bool {
        let Some(entry) = self.dialogs.get_mut(id) else {
            return false;
        };
        entry.dialog.dscp = dscp;
        if let Some(pending) = entry.pending_2xx.as_mut() {
            pending.dscp = dscp;
        }
        true
    }

    /// Sets the account whose credentials answer challenges to our requests in dialog `id`
    /// (e.g. one we answered as UAS); returns whether the dialog exists. A dialog our INVITE
    /// made has that INVITE's account already.
    pub fn set_dialog_account(&mut self, id: &DialogId, account: Option<Account>) -> bool {
        match self.dialogs.get_mut(id) {
            Some(entry) => {
                entry.account = account;
                true
            }
            None => false,
        }
    }

    /// Sends a keep-alive ping (CRLFCRLF, RFC 5626 §4.4.1) to `destination` over TCP or TLS,
    /// on the connection there (the driver opens one if there is none). Nothing is sent over
    /// UDP, where a keep-alive is a STUN request (§4.4.2), not done here.
    pub fn send_keepalive(&mut self, destination: SocketAddr, protocol: Protocol) {
        if protocol != Protocol::Udp {
            self.endpoint
                .send_stateless(Bytes::from_static(b"\r\n\r\n"), destination, protocol);
        }
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
        if method == Method::Bye && self.hang_up_held(now, id) {
            // No BYE went: the dialog is gone (see `hangup`).
            return Err(EndpointError::NoSuchTransaction);
        }
        // §14.1: one re-INVITE at a time per dialog (checked before a CSeq is spent).
        let entry = self
            .dialogs
            .get(id)
            .ok_or(EndpointError::NoSuchTransaction)?;
        if method == Method::Invite && entry.local_reinvite.is_some() {
            return Err(EndpointError::RequestPending);
        }
        let protocol = entry.dialog.protocol;
        let account = entry.account.clone();
        let sips_target = entry.dialog.remote_target.scheme() == session_sip::Scheme::Sips;
        let via = self.via(protocol);
        let contact = match (&self.tls, protocol) {
            (Some(tls), Protocol::Tls) if sips_target => &tls.sips_contact,
            (Some(tls), Protocol::Tls) => &tls.contact,
            _ => &self.config.contact,
        };
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
        let (hop, protocol, dscp) = (dialog.next_hop(), dialog.protocol, dialog.dscp);
        let protocol = self.fit_transport(&mut request, protocol);
        let sent = match method {
            Method::Invite => SentInvite::of(&request),
            _ => None,
        };
        let credentials = crate::auth::credentials_of(&request);
        let kept = account.clone().map(|account| (request.clone(), account));
        let tx = self
            .endpoint
            .send_marked_request(now, request, hop, protocol, dscp)?;
        if let Some((request, account)) = kept {
            self.track_challengeable(tx, request, hop, protocol, account, Some(id.clone()));
        }
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
                        dscp,
                        answered: None,
                        within: Some(id.clone()),
                        progress: InviteProgress::Calling,
                        cancel: None,
                        early: Vec::new(),
                        credentials,
                        account,
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
    ///
    /// A dialog whose 2xx is still held for a PRACK (RFC 3262 §3) is early on the peer's side,
    /// and a callee does not BYE an early dialog (RFC 3261 §15): its INVITE is answered 480
    /// instead, the dialog ends with [`DialogEnd::LocalBye`], and the result is
    /// [`EndpointError::NoSuchTransaction`], as for a dialog already gone.
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
        // A request re-sent after a challenge is cancelled in its current transaction.
        let tx = self.current.get(&tx).copied().unwrap_or(tx);
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
        let dscp = self.endpoint.dscp_of(tx);
        let id = self
            .endpoint
            .send_marked_request(now, cancel, destination, protocol, dscp)?;
        self.pump(now);
        Ok(id)
    }

    /// Answers a request received in server transaction `tx`. For an INVITE, a 2xx creates (or
    /// refreshes) the dialog and is retransmitted until its ACK; the returned id is the dialog's.
    ///
    /// With RFC 3262 (see the module docs) a provisional response may go reliably: one asked
    /// for while another waits for its PRACK is queued (`Ok(None)`), and a 2xx asked for while
    /// an unacknowledged one carried a session description is held until its PRACK: the dialog
    /// is returned at once, the 2xx goes when the PRACK comes.
    ///
    /// # Errors
    ///
    /// [`EndpointError::ResponseRefused`] when the transaction cannot send this response: a
    /// second final response (a held 2xx counts as sent), a reliable 1xx after the final one,
    /// or more than [`MAX_QUEUED_PROVISIONALS`] reliable 1xx waiting;
    /// [`EndpointError::NoSuchTransaction`] when `tx` is not a live server transaction.
    pub fn answer(
        &mut self,
        now: Instant,
        tx: TransactionId,
        status: StatusCode,
        headers: Vec<Header>,
        body: Option<(&str, Bytes)>,
    ) -> Result<Option<DialogId>, EndpointError> {
        let invite = self.server_invites.get(&tx);
        let reliable = invite.and_then(|i| i.reliable.as_deref());
        if reliable.is_some_and(|r| r.held.is_some()) {
            // The final response is decided: it waits for a PRACK (RFC 3262 §3).
            return Err(EndpointError::ResponseRefused);
        }
        // RFC 3262 §3: a 2xx waits for the PRACK of a 1xx that carried a session description.
        let hold = status.is_success()
            && reliable.is_some_and(|r| !r.done && r.unacked.as_ref().is_some_and(|u| u.with_body));
        let within = invite.and_then(|i| i.within.clone());
        let Some(request) = self.endpoint.request_of(tx) else {
            // A transaction that already sent its final response keeps no request.
            return Err(if self.endpoint.is_live(tx) {
                EndpointError::ResponseRefused
            } else {
                EndpointError::NoSuchTransaction
            });
        };
        // An INVITE's record says what its To carries: no tag for a new dialog (`within` is
        // none), the dialog's tag (ours, `to_tag`) for a re-INVITE (see `on_request`).
        let request_tag = match invite {
            Some(i) if i.within.is_some() => RequestTag::Known(Some(&*i.to_tag)),
            Some(_) => RequestTag::Known(None),
            None => RequestTag::Unknown,
        };
        let is_invite = request.method == Method::Invite;
        let contact =
            (is_invite && status != StatusCode::TRYING && status.as_u16() < 300).then(|| {
                match (&self.tls, invite.map(|i| i.protocol)) {
                    (Some(tls), Some(Protocol::Tls))
                        if request.uri.scheme() == session_sip::Scheme::Sips =>
                    {
                        &tls.sips_contact_header
                    }
                    (Some(tls), Some(Protocol::Tls)) => &tls.contact_header,
                    _ => &self.contact_header,
                }
            });
        let has_body = body.as_ref().is_some_and(|(_, bytes)| !bytes.is_empty());
        let reliable_1xx = status.is_provisional()
            && status != StatusCode::TRYING
            && match invite.map_or(Reliability::Never, |i| i.reliability) {
                Reliability::Always => true,
                Reliability::WithBody => has_body,
                Reliability::Never => false,
            };
        if !reliable_1xx && !hold {
            // The usual answer: serialized straight from the request, sent at once.
            let to_tag = response_tag(
                (request, request_tag),
                status,
                invite.map(|i| &*i.to_tag),
                &mut self.rng,
            );
            let body_headers = &mut self.body_headers;
            let body = body.map(|(content_type, bytes)| {
                let length = body_headers.length(bytes.len());
                (body_headers.content_type(content_type), bytes, length)
            });
            let zero = &body_headers.zero;
            let bytes = Reply {
                request,
                status,
                tag: to_tag.tag.as_deref().filter(|_| to_tag.added),
                contact,
                headers: &headers,
                body: body
                    .as_ref()
                    .map(|(content_type, bytes, _)| (content_type, bytes)),
                length: body.as_ref().map_or(zero, |(_, _, length)| length),
                server: self.endpoint.server_header(),
            }
            .to_bytes();
            // The dialog (if this 2xx makes one) is read off the request before the response
            // goes to the transaction, which then lets the request go.
            // An INVITE's To tag, when its response has one, is its record's (`response_tag`).
            let new_dialog = match (invite, &to_tag.tag) {
                (Some(invite), Some(_)) if status.is_success() && within.is_none() => {
                    Dialog::from_uas_tagged(request, &invite.to_tag, invite.source, invite.protocol)
                }
                _ => None,
            };
            // An INVITE's tag is its record's (see `response_tag`); only an INVITE's is kept.
            let tagged = to_tag.tag.is_some();
            return self.send_answer(now, tx, status, bytes, tagged, within, new_dialog);
        }
        let (mut response, to_tag) = response_to(
            &self.blank,
            (request, request_tag),
            status,
            invite.map(|i| &*i.to_tag),
            &mut self.rng,
        );
        if let Some(contact) = contact {
            response.headers.push(contact.header().clone());
        }
        for header in headers {
            response.headers.push(header);
        }
        if reliable_1xx {
            let early = to_tag
                .as_deref()
                .and_then(|tag| early_dialog_id(request, tag));
            let invite_seq = request.cseq().map(|c| c.seq).unwrap_or_default();
            let Some(early) = early else {
                return Err(EndpointError::BadRequest("no From tag or Call-ID"));
            };
            let provisional = QueuedProvisional {
                response,
                body: body.map(|(content_type, bytes)| (content_type.into(), bytes)),
            };
            self.send_reliable(now, tx, provisional, invite_seq, early)?;
            self.pump(now);
            return Ok(None);
        }
        // A 2xx held until the PRACK of a 1xx that carried a session description.
        finish_body(&mut self.body_headers, &mut response, body);
        let mut new_dialog = match (invite, &to_tag) {
            (Some(invite), Some(_)) if within.is_none() => {
                Dialog::from_uas_tagged(request, &invite.to_tag, invite.source, invite.protocol)
            }
            _ => None,
        };
        if let Some(dialog) = new_dialog.as_mut() {
            // The dialog goes on marked as its INVITE's answers were.
            dialog.dscp = self.endpoint.dscp_of(tx);
        }
        let id = self.insert_answered_dialog(tx, within, new_dialog, None);
        if let Some(reliable) = self.reliable_mut(tx) {
            // Provisional responses not sent yet say nothing the 2xx does not.
            reliable.queued.clear();
            reliable.held = Some(response);
        }
        Ok(id)
    }

    /// Sends `bytes`, the answer with `status` to server transaction `tx` (with the To tag of
    /// its INVITE record when `tagged`), and does what it ends: the dialog it makes
    /// (`new_dialog`) or refreshes (`within`) retransmits a 2xx until its ACK, a final
    /// response ends the INVITE's record.
    #[allow(clippy::too_many_arguments)]
    fn send_answer(
        &mut self,
        now: Instant,
        tx: TransactionId,
        status: StatusCode,
        bytes: Bytes,
        tagged: bool,
        within: Option<DialogId>,
        mut new_dialog: Option<Dialog>,
    ) -> Result<Option<DialogId>, EndpointError> {
        if let Some(dialog) = new_dialog.as_mut() {
            // The dialog goes on marked as its INVITE's answers were.
            dialog.dscp = self.endpoint.dscp_of(tx);
        }
        // The INVITE's record, and whether it has reliable 1xx state, read once (for speed:
        // most INVITEs have none, and it is not looked up again then).
        let record = self.server_invites.get(&tx);
        let (has_record, has_reliable) = (
            record.is_some(),
            record.is_some_and(|i| i.reliable.is_some()),
        );
        let tag = record.filter(|_| tagged).map(|i| &i.to_tag);
        let bytes = self
            .endpoint
            .respond_bytes(now, tx, status.as_u16(), bytes, tag)?;
        if status.as_u16() >= 200
            && has_reliable
            && let Some(reliable) = self.reliable_mut(tx)
        {
            // §3: no new reliable 1xx after the final response, and no more retransmissions
            // of the unacknowledged one (its PRACK is still answered).
            reliable.done = true;
            reliable.queued.clear();
            if let Some(unacked) = reliable.unacked.as_mut() {
                unacked.next = None;
            }
        }
        let mut dialog_id = None;
        if has_record && status.is_success() {
            // The 2xx is retransmitted until its ACK (§13.3.1.4), from the dialog it makes or
            // refreshes.
            let pending = self.pending_2xx(now, tx, bytes);
            dialog_id = self.insert_answered_dialog(tx, within, new_dialog, pending);
        }
        if status.as_u16() >= 200 {
            // The final response is out: nothing more is sent for this INVITE, and another
            // re-INVITE may come (§14.2). A reliable 1xx still unacknowledged keeps the record
            // until the transaction ends, to answer its PRACK (RFC 3262 §3).
            let unacked = has_reliable
                && self
                    .server_invites
                    .get(&tx)
                    .and_then(|i| i.reliable.as_ref())
                    .is_some_and(|r| r.unacked.is_some());
            if unacked {
                let within = self.server_invites.get(&tx).and_then(|i| i.within.clone());
                if let Some(entry) = within.and_then(|id| self.dialogs.get_mut(&id))
                    && entry.remote_reinvite == Some(tx)
                {
                    entry.remote_reinvite = None;
                }
            } else {
                self.remove_server_invite(tx);
            }
        }
        self.pump(now);
        Ok(dialog_id)
    }

    /// The dialog a 2xx to INVITE `tx` makes (`new_dialog`, now kept) or refreshes (`within`),
    /// if it is live. A dialog made before any PRACK was answered counts them (§12.2.2).
    fn insert_answered_dialog(
        &mut self,
        tx: TransactionId,
        within: Option<DialogId>,
        new_dialog: Option<Dialog>,
        pending: Option<Pending2xx>,
    ) -> Option<DialogId> {
        match (within, new_dialog) {
            (Some(id), _) => {
                let entry = self.dialogs.get_mut(&id)?;
                if let Some(pending) = pending {
                    Self::arm_2xx((&mut self.timers, &mut self.spare_2xx), entry, &id, pending);
                }
                Some(id)
            }
            (None, Some(mut dialog)) => {
                let prack_seq = self.reliable_mut(tx).and_then(|r| r.prack_seq);
                if let Some(seq) = prack_seq {
                    dialog.accept_remote_seq(seq);
                }
                let id = dialog.id.clone();
                let mut entry = DialogEntry::new(dialog);
                if let Some(pending) = pending {
                    Self::arm_2xx(
                        (&mut self.timers, &mut self.spare_2xx),
                        &mut entry,
                        &id,
                        pending,
                    );
                }
                if let Some(pending) = self
                    .dialogs
                    .insert(id.clone(), entry)
                    .and_then(|old| old.pending_2xx)
                {
                    Self::forget_2xx(&mut self.timers, &id, &pending);
                }
                Some(id)
            }
            (None, None) => None,
        }
    }

    /// Our 2xx to INVITE `tx` (`bytes`) went out in dialog `id`: it is retransmitted until its
    /// ACK (§13.3.1.4).
    fn start_2xx(&mut self, now: Instant, tx: TransactionId, id: &DialogId, bytes: Bytes) {
        let Some(pending) = self.pending_2xx(now, tx, bytes) else {
            return;
        };
        if let Some(entry) = self.dialogs.get_mut(id) {
            Self::arm_2xx((&mut self.timers, &mut self.spare_2xx), entry, id, pending);
        }
    }

    /// What retransmits our 2xx to INVITE `tx` (`bytes`, sent at `now`) until its ACK.
    fn pending_2xx(&self, now: Instant, tx: TransactionId, bytes: Bytes) -> Option<Pending2xx> {
        let invite = self.server_invites.get(&tx)?;
        let (destination, protocol) = self
            .endpoint
            .peer_of(tx)
            .unwrap_or((invite.source, invite.protocol));
        let t1 = self.config.endpoint.timers.t1;
        let give_up = now + t1 * 64;
        // On a reliable transport the 2xx is sent once; only the ACK wait remains.
        let next = if protocol.is_reliable() {
            give_up
        } else {
            now + t1
        };
        Some(Pending2xx {
            bytes,
            destination,
            protocol,
            dscp: self.endpoint.dscp_of(tx),
            interval: t1,
            next,
            give_up,
        })
    }

    /// Dialog `id` (`entry`) waits for the ACK of `pending` (§13.3.1.4).
    fn arm_2xx(
        (timers, spare): (&mut Deadlines<DialogId>, &mut Spare<Pending2xx>),
        entry: &mut DialogEntry,
        id: &DialogId,
        pending: Pending2xx,
    ) {
        if let Some(old) = entry.pending_2xx.take() {
            Self::forget_2xx(timers, id, &old);
        }
        timers.push(pending.due(), id.clone());
        entry.pending_2xx = Some(spare.boxed(pending));
        entry.remote_reinvite = None;
    }
}

/// The early dialog our provisional responses to `invite` with To tag `tag` make, as the
/// peer's requests in it name it ([`Dialog::id_of_request`]).
fn early_dialog_id(invite: &Request, tag: &str) -> Option<DialogId> {
    let remote = invite.from().ok()?.tag()?.to_owned();
    Some(DialogId::new(
        CallId::new(invite.call_id().ok()?),
        tag,
        remote,
    ))
}

/// Reliable provisional responses as a UAS (RFC 3262 §3).
impl UserAgent {
    /// How INVITE `request` wants its provisional responses, given our policy.
    fn reliability_of(&self, request: &Request) -> Reliability {
        if !self.offers_100rel {
            return Reliability::Never;
        }
        // One pass to see which of the two lists the INVITE has (most have neither).
        let (mut require, mut supported) = (false, false);
        for header in request.headers.iter() {
            match header.name() {
                HeaderName::Require => require = true,
                HeaderName::Supported => supported = true,
                _ => {}
            }
        }
        if require && names_100rel(&request.headers, HeaderName::Require) {
            Reliability::Always
        } else if supported && names_100rel(&request.headers, HeaderName::Supported) {
            Reliability::WithBody
        } else {
            Reliability::Never
        }
    }

    fn reliable_mut(&mut self, tx: TransactionId) -> Option<&mut ReliableUas> {
        self.server_invites.get_mut(&tx)?.reliable.as_deref_mut()
    }

    /// Sends `provisional` reliably for INVITE `tx` (CSeq number `invite_seq`, early dialog
    /// `dialog`), or queues it behind the unacknowledged one (§3: one at a time).
    fn send_reliable(
        &mut self,
        now: Instant,
        tx: TransactionId,
        provisional: QueuedProvisional,
        invite_seq: u32,
        dialog: DialogId,
    ) -> Result<(), EndpointError> {
        let rng = &mut self.rng;
        let invite = self
            .server_invites
            .get_mut(&tx)
            .ok_or(EndpointError::NoSuchTransaction)?;
        let reliable = invite.reliable.get_or_insert_with(|| {
            Box::new(ReliableUas {
                dialog,
                invite_seq,
                // §3: the first RSeq is between 1 and 2³¹ − 1, uniformly chosen.
                next_rseq: rng.u32(1..=(1 << 31) - 1),
                unacked: None,
                queued: VecDeque::new(),
                held: None,
                prack_seq: None,
                done: false,
            })
        });
        if reliable.done {
            // §3: no new reliable provisional response after the final one.
            return Err(EndpointError::ResponseRefused);
        }
        if reliable.unacked.is_some() {
            if reliable.queued.len() >= MAX_QUEUED_PROVISIONALS {
                return Err(EndpointError::ResponseRefused);
            }
            reliable.queued.push_back(provisional);
            return Ok(());
        }
        let rseq = reliable.next_rseq;
        let QueuedProvisional { mut response, body } = provisional;
        response
            .headers
            .push(Header::new(HeaderName::Require, TAG_100REL));
        response
            .headers
            .push(Header::new(HeaderName::RSeq, rseq.to_string()));
        let with_body = body.as_ref().is_some_and(|(_, bytes)| !bytes.is_empty());
        finish_body(
            &mut self.body_headers,
            &mut response,
            body.as_ref().map(|(t, bytes)| (&**t, bytes.clone())),
        );
        let tag = Some(invite.to_tag.clone());
        let bytes = self.endpoint.respond_tagged(now, tx, response, tag)?;
        // §7.1: one more for each reliable provisional response of this transaction.
        reliable.next_rseq = rseq.saturating_add(1);
        let t1 = self.config.endpoint.timers.t1;
        let unacked = Unacked {
            rseq,
            bytes,
            with_body,
            interval: t1,
            next: (!invite.protocol.is_reliable()).then(|| now + t1),
            give_up: now + t1 * 64,
        };
        let due = unacked.due();
        reliable.unacked = Some(unacked);
        let dialog = reliable.dialog.clone();
        self.prack_timers.push(Reverse((due, tx)));
        self.expected_pracks.insert(dialog, tx);
        Ok(())
    }

    /// Retransmits the unacknowledged reliable 1xx that are due, and gives up on those that
    /// waited 64·T1.
    fn handle_prack_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, tx))) = self.prack_timers.peek() {
            if at > now {
                break;
            }
            self.prack_timers.pop();
            if self.unacked_due(tx) != Some(at) {
                continue;
            }
            let Some(unacked) = self.reliable_mut(tx).and_then(|r| r.unacked.as_mut()) else {
                continue;
            };
            if unacked.give_up <= now {
                self.prack_timeout(now, tx);
                continue;
            }
            // §3: T1, then doubling with no T2 cap (unlike a 2xx): a PRACK is retransmitted
            // on its own timer, not on each 1xx, so the 1xx need not come back sooner.
            unacked.interval *= 2;
            unacked.next = Some(now + unacked.interval);
            let (due, bytes) = (unacked.due(), unacked.bytes.clone());
            self.prack_timers.push(Reverse((due, tx)));
            if let Some((destination, protocol)) = self.endpoint.peer_of(tx) {
                self.endpoint.send_stateless(bytes, destination, protocol);
            }
        }
    }

    /// §3: a reliable 1xx of INVITE `tx` got no PRACK in 64·T1: the INVITE is answered 500
    /// ("SHOULD reject the original request with a 5xx").
    fn prack_timeout(&mut self, now: Instant, tx: TransactionId) {
        if let Some(reliable) = self.reliable_mut(tx) {
            reliable.done = true;
            reliable.unacked = None;
            reliable.queued.clear();
        }
        self.respond_to_invite(now, tx, StatusCode::SERVER_INTERNAL_ERROR);
        let held = self.remove_server_invite(tx);
        self.events.push_back(UaEvent::PrackTimeout { tx });
        self.end_held_dialog(held, DialogEnd::PrackTimeout);
    }

    /// Sends a final response without a body to INVITE `tx`, outside [`UserAgent::answer`].
    fn respond_to_invite(&mut self, now: Instant, tx: TransactionId, status: StatusCode) {
        let Some(invite) = self.server_invites.get(&tx) else {
            return;
        };
        let Some(request) = self.endpoint.request_of(tx) else {
            return;
        };
        let to_tag = response_tag(
            (request, RequestTag::Unknown),
            status,
            Some(&*invite.to_tag),
            &mut self.rng,
        );
        let bytes = Reply::plain(
            request,
            status,
            to_tag.tag.as_deref().filter(|_| to_tag.added),
            &self.body_headers.zero,
            self.endpoint.server_header(),
        )
        .to_bytes();
        // The tag is the INVITE record's: the request's To has it, or it was added.
        let tag = to_tag.tag.is_some().then_some(&invite.to_tag);
        if let Err(error) = self
            .endpoint
            .respond_bytes(now, tx, status.as_u16(), bytes, tag)
        {
            tracing::warn!(%error, status = status.as_u16(), "could not answer the INVITE");
        }
    }

    /// We hang up dialog `id` while its 2xx is held (see [`UserAgent::hangup`]): the INVITE
    /// gets 480 and the dialog ends. Returns whether it was such a dialog.
    fn hang_up_held(&mut self, now: Instant, id: &DialogId) -> bool {
        let Some(&tx) = self.expected_pracks.get(id) else {
            return false;
        };
        let held = self.server_invites.get(&tx).is_some_and(|i| {
            i.within.is_none() && i.reliable.as_ref().is_some_and(|r| r.held.is_some())
        });
        if !held {
            return false;
        }
        if let Some(reliable) = self.reliable_mut(tx) {
            // §3: the final response stops the retransmissions; a late PRACK is still answered.
            reliable.held = None;
            reliable.done = true;
            if let Some(unacked) = reliable.unacked.as_mut() {
                unacked.next = None;
            }
        }
        self.respond_to_invite(now, tx, StatusCode::TEMPORARILY_UNAVAILABLE);
        self.end_dialog(id);
        self.events.push_back(UaEvent::DialogTerminated {
            dialog: id.clone(),
            reason: DialogEnd::LocalBye,
        });
        self.pump(now);
        true
    }

    /// A BYE ended dialog `id`: an INVITE whose 2xx is held there gets 487 instead (RFC 3261
    /// §15.1.2).
    fn bye_ends_held_invite(&mut self, now: Instant, id: &DialogId) {
        let Some(&tx) = self.expected_pracks.get(id) else {
            return;
        };
        let held = self
            .server_invites
            .get(&tx)
            .and_then(|i| i.reliable.as_ref())
            .is_some_and(|r| r.held.is_some());
        if held {
            self.respond_to_invite(now, tx, StatusCode::REQUEST_TERMINATED);
            self.remove_server_invite(tx);
        }
    }

    /// A PRACK arrived in server transaction `tx` (§3): 200 when it matches the
    /// unacknowledged reliable 1xx of its early (or confirmed) dialog by `RAck`, else 481.
    fn on_prack(&mut self, now: Instant, tx: TransactionId, request: Request) {
        let Some(Ok(rack)) = request.rack() else {
            // §7.2: a PRACK names what it acknowledges.
            self.reject(now, tx, &request, StatusCode::BAD_REQUEST, None);
            return;
        };
        let id = Dialog::id_of_request(&request);
        let matched = id
            .as_ref()
            .and_then(|id| self.expected_pracks.get(id).copied())
            .filter(|invite_tx| {
                let reliable = self
                    .server_invites
                    .get(invite_tx)
                    .and_then(|i| i.reliable.as_ref());
                reliable.is_some_and(|r| {
                    rack.cseq.method == Method::Invite
                        && rack.cseq.seq == r.invite_seq
                        && r.unacked.as_ref().is_some_and(|u| u.rseq == rack.rseq)
                })
            });
        let (Some(invite_tx), Some(id)) = (matched, id) else {
            // §3: it matches no unacknowledged reliable provisional response.
            self.reject(
                now,
                tx,
                &request,
                StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
                None,
            );
            return;
        };
        // The PRACK's answer is marked as the INVITE's answers are.
        if let Some(dscp) = self.endpoint.dscp_of(invite_tx) {
            self.endpoint.set_dscp(tx, Some(dscp));
        }
        // RFC 3261 §12.2.2: in order after the INVITE and the PRACKs before it (counted by the
        // dialog once a 2xx made it).
        let seq = request.cseq().map(|c| c.seq).unwrap_or_default();
        let in_order = match self.dialogs.get_mut(&id) {
            Some(entry) => entry.dialog.accept_remote_seq(seq),
            None => self
                .reliable_mut(invite_tx)
                .is_some_and(|r| r.prack_seq.unwrap_or(r.invite_seq) < seq),
        };
        if !in_order {
            self.reject(now, tx, &request, StatusCode::SERVER_INTERNAL_ERROR, None);
            return;
        }
        let Some(invite) = self.server_invites.get_mut(&invite_tx) else {
            return;
        };
        let to_tag = invite.to_tag.clone();
        let Some(reliable) = invite.reliable.as_deref_mut() else {
            return;
        };
        reliable.prack_seq = Some(seq);
        reliable.unacked = None;
        let held = reliable.held.take();
        let done = reliable.done || held.is_some();
        reliable.done = done;
        let next = if done {
            None
        } else {
            reliable.queued.pop_front()
        };
        let invite_seq = reliable.invite_seq;
        // The PRACK's To carries the dialog's tag (`on_request`): copied as it is.
        let ok = Reply::plain(
            &request,
            StatusCode::OK,
            None,
            &self.body_headers.zero,
            self.endpoint.server_header(),
        )
        .to_bytes();
        if let Err(error) = self.endpoint.respond_bytes(now, tx, 200, ok, None) {
            tracing::warn!(%error, "could not answer PRACK");
        }
        self.events.push_back(UaEvent::Prack {
            tx: invite_tx,
            request,
        });
        if let Some(held) = held {
            // §3: the PRACK came; the 2xx held for it goes now and waits for its ACK.
            match self
                .endpoint
                .respond_tagged(now, invite_tx, held, Some(to_tag))
            {
                Ok(bytes) => self.start_2xx(now, invite_tx, &id, bytes),
                Err(error) => tracing::warn!(%error, "could not send the held 2xx"),
            }
        } else if let Some(next) = next
            && let Err(error) = self.send_reliable(now, invite_tx, next, invite_seq, id)
        {
            tracing::warn!(%error, "could not send a queued provisional response");
        }
        if done {
            // Final response out and nothing unacknowledged: nothing more to answer.
            self.remove_server_invite(invite_tx);
        }
    }
}

#[cfg(test)]
mod reply_tests {
    //! [`Reply`] (the bytes written straight from the request) against the [`Response`] built
    //! the long way ([`response_to`], the user agent's lines, [`finish_body`], the endpoint's
    //! Server line), byte for byte.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn requests() -> Vec<Request> {
        [
            // Compact names, Vias on several lines and in one, Record-Route, Timestamp.
            "INVITE sip:bob@b.example SIP/2.0\r\n\
             v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-b\r\n\
             Via: SIP/2.0/TCP 10.0.0.3;branch=z9hG4bK-c;received=1.2.3.4\r\n\
             Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
             f: \"Alice\" <sip:alice@a.example>;tag=a1\r\n\
             t: <sip:bob@b.example>\r\n\
             i: call-1@a.example\r\n\
             CSeq: 7 INVITE\r\n\
             Timestamp: 54.2\r\n\
             Record-Route: <sip:p3.example;lr>\r\n\
             m: <sip:alice@10.0.0.1>\r\n\
             Max-Forwards: 70\r\n\
             c: application/sdp\r\n\
             l: 4\r\n\r\nv=0\n",
            // In a dialog: the To has our tag.
            "BYE sip:alice@10.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bK-d;rport\r\n\
             From: <sip:alice@a.example>;tag=a1\r\n\
             To: \"Bob\" <sip:bob@b.example>;tag=b2;x=1\r\n\
             Call-ID: call-1@a.example\r\n\
             CSeq: 8 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            // A dialog-making request other than INVITE.
            "SUBSCRIBE sip:bob@b.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-e\r\n\
             Record-Route: <sip:p1.example;lr>\r\n\
             From: <sip:alice@a.example>;tag=a3\r\n\
             To: sip:bob@b.example\r\n\
             Call-ID: call-2\r\n\
             CSeq: 1 SUBSCRIBE\r\n\
             Event: presence\r\n\
             Timestamp: 1\r\n\
             Content-Length: 0\r\n\r\n",
            // No To at all (the response adds no tag and draws none).
            "OPTIONS sip:b.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-f\r\n\
             From: <sip:alice@a.example>;tag=a4\r\n\
             Call-ID: call-3\r\n\
             CSeq: 1 OPTIONS\r\n\r\n",
        ]
        .iter()
        .map(|text| Request::parse(Bytes::from_static(text.as_bytes())).unwrap())
        .chain(std::iter::once({
            // More copied lines than `Reply` keeps in place.
            let vias: String = (0..14)
                .map(|i| format!("Via: SIP/2.0/UDP 10.0.1.{i};branch=z9hG4bK-{i}\r\n"))
                .collect();
            let text = format!(
                "INVITE sip:bob@b.example SIP/2.0\r\n{vias}\
                 From: <sip:alice@a.example>;tag=a5\r\nTo: <sip:bob@b.example>\r\n\
                 Call-ID: call-4\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            Request::parse(Bytes::from(text)).unwrap()
        }))
        .collect()
    }

    fn header_sets() -> Vec<Vec<Header>> {
        vec![
            Vec::new(),
            vec![
                Header::new(HeaderName::Supported, "timer"),
                Header::new(HeaderName::ContentLength, "99"),
                // No name: not serialized either way.
                Header::new(HeaderName::Other, "ignored"),
                Header::new(HeaderName::ContentType, "text/plain"),
            ],
            vec![
                Header::other("X-Foo", "bar").unwrap(),
                Header::new(HeaderName::Server, "custom"),
                Header::new(HeaderName::RetryAfter, "5"),
            ],
        ]
    }

    #[test]
    fn reply_bytes_equal_the_response_built_the_long_way() {
        let statuses = [100, 180, 183, 200, 202, 400, 481, 487, 500, 603];
        let contact = OwnLine::new(Header::new(HeaderName::Contact, "<sip:ua@192.0.2.1:5060>"));
        let server = OwnLine::new(Header::new(HeaderName::Server, "session-core/test"));
        let sdp = Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
        let bodies = [
            None,
            Some(("application/sdp", sdp)),
            Some(("text/plain", Bytes::new())),
        ];
        let mut compared = 0;
        for request in requests() {
            for code in statuses {
                let status = StatusCode::new(code).unwrap();
                for tag in [None, Some("chosen")] {
                    for contact in [None, Some(&contact)] {
                        for headers in header_sets() {
                            for body in &bodies {
                                for server in [None, Some(&server)] {
                                    let seed = compared;
                                    let mut long_rng = fastrand::Rng::with_seed(seed);
                                    let mut cache = BodyHeaders::new();
                                    let (mut response, long_tag) = response_to(
                                        &blank_response(),
                                        (&request, RequestTag::Unknown),
                                        status,
                                        tag,
                                        &mut long_rng,
                                    );
                                    if let Some(contact) = contact {
                                        response.headers.push(contact.header().clone());
                                    }
                                    for header in &headers {
                                        response.headers.push(header.clone());
                                    }
                                    finish_body(&mut cache, &mut response, body.clone());
                                    if let Some(server) = server
                                        && response.headers.get(HeaderName::Server).is_none()
                                    {
                                        response.headers.push(server.header().clone());
                                    }
                                    let long = response.to_bytes();

                                    let mut rng = fastrand::Rng::with_seed(seed);
                                    let mut cache = BodyHeaders::new();
                                    let to_tag = response_tag(
                                        (&request, RequestTag::Unknown),
                                        status,
                                        tag,
                                        &mut rng,
                                    );
                                    let body = body.as_ref().map(|(content_type, bytes)| {
                                        (cache.content_type(content_type), bytes.clone())
                                    });
                                    let length = cache
                                        .length(body.as_ref().map_or(0, |(_, bytes)| bytes.len()));
                                    let short = Reply {
                                        request: &request,
                                        status,
                                        tag: to_tag.tag.as_deref().filter(|_| to_tag.added),
                                        contact,
                                        headers: &headers,
                                        body: body.as_ref().map(|(t, b)| (t, b)),
                                        length: &length,
                                        server,
                                    };
                                    assert_eq!(short.to_bytes(), short.to_bytes_reference());
                                    let short = short.to_bytes();
                                    assert_eq!(
                                        String::from_utf8_lossy(&short),
                                        String::from_utf8_lossy(&long),
                                        "{} answered {code}",
                                        request.method
                                    );
                                    assert_eq!(long_tag.as_deref(), to_tag.tag.as_deref());
                                    assert_eq!(long_rng.u64(..), rng.u64(..), "same draws");
                                    compared += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 5 * 10 * 2 * 2 * 3 * 3 * 2);
    }
}

#[cfg(test)]
mod timer_tests {
    //! [`UserAgent::poll_timeout`] checks its earliest 2xx deadline once, until something
    //! changes it.
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn datagram(text: String) -> Bytes {
        Bytes::from(text)
    }

    fn request(method: &str, branch: &str, to_tag: &str) -> Bytes {
        datagram(format!(
            "{method} sip:ua@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
             From: <sip:peer@127.0.0.1:5061>;tag=p1\r\n\
             To: <sip:ua@127.0.0.1:5060>{to_tag}\r\n\
             Call-ID: timer-1@127.0.0.1\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:peer@127.0.0.1:5061>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn the_2xx_deadline_goes_with_its_ack() {
        let mut ua = UserAgent::new(UaConfig {
            endpoint: EndpointConfig::default(),
            via_host: "127.0.0.1".into(),
            via_port: 5060,
            contact: Uri::parse("sip:ua@127.0.0.1:5060").unwrap(),
            large_requests_over_tcp: false,
            rng_seed: Some(7),
        });
        let peer = SocketAddr::from(([127, 0, 0, 1], 5061));
        let now = Instant::now();
        ua.handle_datagram(
            now,
            Protocol::Udp,
            peer,
            &request("INVITE", "z9hG4bK-i", ""),
        );
        let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
            panic!("no INVITE");
        };
        let dialog = ua
            .answer(now, tx, StatusCode::OK, Vec::new(), None)
            .unwrap()
            .unwrap();
        let t1 = ua.config.endpoint.timers.t1;
        // The 2xx is retransmitted at T1 (§13.3.1.4); asked again, the same answer.
        assert_eq!(ua.poll_timeout(), Some(now + t1));
        assert_eq!(ua.poll_timeout(), Some(now + t1));
        let ack = request("ACK", "z9hG4bK-a", &format!(";tag={}", dialog.local_tag));
        ua.handle_datagram(now, Protocol::Udp, peer, &ack);
        // Acknowledged: what is left is the INVITE transaction's Timer L (64·T1).
        assert_eq!(ua.poll_timeout(), Some(now + t1 * 64));
        assert_eq!(ua.poll_timeout(), Some(now + t1 * 64));
    }

    fn user_agent() -> UserAgent {
        UserAgent::new(UaConfig {
            endpoint: EndpointConfig::default(),
            via_host: "127.0.0.1".into(),
            via_port: 5060,
            contact: Uri::parse("sip:ua@127.0.0.1:5060").unwrap(),
            large_requests_over_tcp: false,
            rng_seed: Some(7),
        })
    }

    /// What `poll_timeout` remembers is what it finds when it remembers nothing: every
    /// deadline looked up again, from the dialogs' pending 2xx and the transactions.
    fn exact(ua: &mut UserAgent) -> Option<Instant> {
        let remembered = ua.poll_timeout();
        let pending = ua
            .dialogs
            .values()
            .filter_map(|e| e.pending_2xx.as_deref().map(Pending2xx::due))
            .min();
        let transactions = ua.endpoint.poll_timeout_unchecked();
        let pracks = ua.prack_timers.peek().map(|Reverse((at, _))| *at);
        let shrink = ua
            .shrink_pending
            .then(|| ua.last_shrink.map(|last| last + SHRINK_EVERY))
            .flatten();
        let expected = [pending, transactions, pracks, shrink]
            .into_iter()
            .flatten()
            .min();
        assert_eq!(remembered, expected);
        ua.timers.forget_checks();
        assert_eq!(ua.poll_timeout(), expected);
        remembered
    }

    /// An answered INVITE; the dialog's local tag.
    fn answered(ua: &mut UserAgent, now: Instant, branch: &str) -> Arc<str> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 5061));
        ua.handle_datagram(now, Protocol::Udp, peer, &request("INVITE", branch, ""));
        let Some(UaEvent::IncomingInvite { tx, .. }) = ua.poll_event() else {
            panic!("no INVITE");
        };
        exact(ua);
        let dialog = ua
            .answer(now, tx, StatusCode::OK, Vec::new(), None)
            .unwrap()
            .unwrap();
        while ua.poll_event().is_some() {}
        dialog.local_tag
    }

    /// Each kind of change to the 2xx deadlines is seen by the next `poll_timeout`: a 2xx
    /// armed, retransmitted (re-armed), ACKed, its dialog ended by a BYE before the ACK or by a
    /// transport error, given up on after 64·T1.
    #[test]
    fn the_next_deadline_follows_every_change_of_the_2xx_deadlines() {
        let peer = SocketAddr::from(([127, 0, 0, 1], 5061));
        let t0 = Instant::now();
        let mut ua = user_agent();
        let t1 = ua.config.endpoint.timers.t1;
        // Armed, then retransmitted at T1 (next at 3·T1), then ACKed.
        let tag = answered(&mut ua, t0, "z9hG4bK-1");
        assert_eq!(exact(&mut ua), Some(t0 + t1));
        ua.handle_timeout(t0 + t1);
        assert_eq!(exact(&mut ua), Some(t0 + t1 * 3));
        let ack = request("ACK", "z9hG4bK-1a", &format!(";tag={tag}"));
        ua.handle_datagram(t0 + t1, Protocol::Udp, peer, &ack);
        assert_eq!(exact(&mut ua), Some(t0 + t1 * 64));
        // A BYE before the ACK ends the dialog and its 2xx deadline.
        let mut ua = user_agent();
        let tag = answered(&mut ua, t0, "z9hG4bK-2");
        let bye = request("BYE", "z9hG4bK-2b", &format!(";tag={tag}")).to_vec();
        let bye = String::from_utf8(bye)
            .unwrap()
            .replace("CSeq: 1 BYE", "CSeq: 2 BYE");
        ua.handle_datagram(t0, Protocol::Udp, peer, &datagram(bye));
        while ua.poll_event().is_some() {}
        assert_eq!(ua.dialog_count(), 0);
        exact(&mut ua);
        // A transport error towards the peer ends it too.
        let mut ua = user_agent();
        answered(&mut ua, t0, "z9hG4bK-3");
        ua.handle_transport_error(t0, peer, Protocol::Udp);
        assert_eq!(ua.dialog_count(), 0);
        exact(&mut ua);
        // Never ACKed: retransmitted until 64·T1, then given up on.
        let mut ua = user_agent();
        answered(&mut ua, t0, "z9hG4bK-4");
        while let Some(at) = exact(&mut ua) {
            ua.handle_timeout(at);
            while ua.poll_event().is_some() {}
            if ua.dialog_count() == 0 {
                break;
            }
        }
        assert_eq!(ua.dialog_count(), 0);
        exact(&mut ua);
    }
}
