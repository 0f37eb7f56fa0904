//! The sans-IO transaction endpoint: datagrams and API calls in, datagrams and events out.
//!
//! It parses each message once, validates requests (answering malformed ones statelessly with
//! the status session-sip names), matches messages to transactions (RFC 3261 §17.1.3 and
//! §17.2.3, with the RFC 2543 fallback), runs the four transaction machines, answers CANCEL
//! (§9.2) and out-of-dialog OPTIONS itself, and routes responses back per §18.2.2 and RFC 3581.
//! Dialogs and call logic live above it and talk to it through [`EndpointEvent`]s and
//! [`TransactionId`]s.

use crate::map::SeededState;
use crate::reply::OwnLine;
use crate::transaction::table::{KEEP, Spare, shrink_queue};
use crate::transaction::{
    Action, ClientInvite, ClientNonInvite, ServerInvite, ServerInviteState, ServerNonInvite,
    TimerConfig, Transaction, TransactionId, TransactionTable, Transport, Verdict,
};
use bytes::Bytes;
use session_sip::{Header, HeaderName, Message, Method, ParseLimits, Request, Response, UasPolicy};
use session_types::StatusCode;
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The transport a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// UDP (unreliable: transactions retransmit).
    Udp,
    /// TCP (reliable).
    Tcp,
    /// TLS over TCP (reliable; RFC 3261 §26.2.1).
    Tls,
}

impl Protocol {
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }

    /// Whether the transport is reliable (no retransmissions by transactions).
    pub fn is_reliable(self) -> bool {
        matches!(self, Self::Tcp | Self::Tls)
    }

    /// Whether the transport is carried over a TCP connection (TCP or TLS).
    pub fn is_stream(self) -> bool {
        self.is_reliable()
    }

    fn reliability(self) -> Transport {
        match self {
            Self::Udp => Transport::Unreliable,
            Self::Tcp | Self::Tls => Transport::Reliable,
        }
    }
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Which transport.
    pub protocol: Protocol,
    /// Where to.
    pub destination: SocketAddr,
    /// The serialized message.
    pub bytes: Bytes,
    /// The DiffServ code point (0–63) to mark this message with when it is not the socket's
    /// own: a session whose priority asks for another mark than the rest (RFC 4412 §11 leaves
    /// the mapping to local policy; RFC 4594 §4.2 suggests CS3 for signalling). `None`: as the
    /// socket is marked.
    pub dscp: Option<u8>,
}

/// What the endpoint tells the layer above.
#[derive(Debug)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A new request opened a server transaction; answer it with [`Endpoint::respond`].
    Request {
        /// The server transaction.
        id: TransactionId,
        /// The request (top Via already carries `received`/`rport`).
        request: Request,
        /// Where it came from.
        source: SocketAddr,
        /// On which transport.
        protocol: Protocol,
    },
    /// An ACK that belongs to a 2xx (it is not part of any transaction, RFC 3261 §17.1.1.3).
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        source: SocketAddr,
    },
    /// A CANCEL matched a pending INVITE: the endpoint answered the CANCEL with 200 and the
    /// INVITE with 487 (§9.2).
    Cancelled {
        /// The INVITE's server transaction.
        id: TransactionId,
    },
    /// A response for a client transaction.
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// A 2xx to an INVITE whose client transaction is gone: the dialog layer ACKs it again.
    StrayInvite2xx {
        /// The response.
        response: Response,
        /// Where it came from.
        source: SocketAddr,
    },
    /// A transaction timed out: Timer B/F (client: treat as 408) or Timer H (server: no ACK).
    TimedOut {
        /// The transaction.
        id: TransactionId,
    },
    /// The transport could not send for client transaction `id` (RFC 3261 §17.1.4): it ended
    /// without a final response; treat it as 503 (§8.1.3.1).
    TransportError {
        /// The client transaction.
        id: TransactionId,
    },
    /// A transaction ended and was removed.
    Terminated {
        /// The transaction.
        id: TransactionId,
    },
}

/// Errors of the endpoint API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The request cannot start a transaction (no Via branch, no CSeq, or it is an ACK).
    #[error("cannot send request: {0}")]
    BadRequest(&'static str),
    /// A transaction with the same key is already live (a reused branch).
    #[error("a transaction with this branch and method is already live")]
    DuplicateTransaction,
    /// No live transaction has this id.
    #[error("no such transaction")]
    NoSuchTransaction,
    /// A re-INVITE is already in progress in this dialog (RFC 3261 §14.1).
    #[error("a re-INVITE is already in progress in this dialog")]
    RequestPending,
    /// The transaction refused the response (e.g. a second final response).
    #[error("the transaction cannot send this response in its state")]
    ResponseRefused,
    /// The INVITE already has its final response, so there is nothing left to cancel
    /// (RFC 3261 §9.1). This is a race with the network rather than a bug: the response's
    /// event says how the INVITE ended.
    #[error("the INVITE already has a final response: nothing to cancel")]
    AlreadyFinal,
}

impl session_types::Classify for EndpointError {
    fn kind(&self) -> session_types::ErrorKind {
        session_types::ErrorKind::ApiMisuse
    }
}

/// Settings of an [`Endpoint`].
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Parser limits.
    pub limits: ParseLimits,
    /// What this UAS accepts (methods, extensions, URI schemes, body types).
    pub policy: UasPolicy,
    /// Answer out-of-dialog OPTIONS statelessly with 200, Allow and Supported (503 with
    /// `Retry-After` while new INVITEs are shed, and the load when one is reported: see
    /// [`Endpoint::set_load`]).
    pub answer_options: bool,
    /// `Server`/`User-Agent` value added to what the endpoint builds itself.
    pub user_agent: Option<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            limits: ParseLimits::default(),
            policy: UasPolicy::default(),
            answer_options: true,
            user_agent: Some(concat!("session-core/", env!("CARGO_PKG_VERSION")).to_owned()),
        }
    }
}

/// How a message is matched to a transaction, as kept in the table. The strings are shared:
/// the table keeps the key twice (in its index and with the transaction), and a clone is a
/// reference count. Messages are matched with a [`KeyRef`] borrowed from them, so a lookup
/// allocates nothing.
#[derive(Clone, Debug)]
enum Key {
    /// §17.1.3: the branch we put in the top Via, and the CSeq method.
    Client { branch: Arc<str>, method: Method },
    /// §17.2.3: branch, sent-by (host and port) and method (ACK matches as INVITE). `text` is
    /// the branch followed by the host, as bytes.
    Server {
        /// The branch and the host in one allocation (keeping short ones in place spared
        /// it but made every key, kept twice per transaction, 16 bytes larger: +2.8 MB of
        /// peak RSS over 10,000 SIPp calls at 2,000/s, whose transactions linger 32 s).
        text: Arc<[u8]>,
        /// Where the host starts in `text`.
        split: usize,
        port: Option<u16>,
        method: Method,
    },
    /// §17.2.3 fallback for RFC 2543 peers without the magic cookie (rare: boxed, so the
    /// common keys, and the index of every transaction, stay small).
    Server2543(Box<Key2543>),
}

/// The RFC 2543 matching key of §17.2.3.
#[derive(Clone, Debug)]
struct Key2543 {
    uri: Arc<str>,
    from_tag: Arc<str>,
    call_id: Arc<str>,
    cseq: u32,
    top_via: Arc<str>,
    method: Method,
}

/// The two parts of `text`, split at `split` (a [`Key::Server`]'s branch and host).
fn key_parts(text: &[u8], split: usize) -> (&[u8], &[u8]) {
    text.split_at_checked(split).unwrap_or((text, &[]))
}

/// A [`Key`] borrowed from a message (or from a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyRef<'a> {
    Client {
        branch: &'a str,
        method: &'a Method,
    },
    /// The branch and the host as bytes (they are only hashed and compared).
    Server {
        branch: &'a [u8],
        host: &'a [u8],
        port: Option<u16>,
        method: &'a Method,
    },
    Server2543 {
        uri: &'a str,
        from_tag: &'a str,
        call_id: &'a str,
        cseq: u32,
        top_via: &'a str,
        method: &'a Method,
    },
}

/// The RFC 3261 branch prefix (§8.1.1.7).
const MAGIC_COOKIE: &str = "z9hG4bK";

/// What an ACK matches as (§17.2.3), for keys borrowed from an ACK.
static INVITE: Method = Method::Invite;

impl KeyRef<'_> {
    /// The owned key, to insert.
    fn to_key(self) -> Key {
        match self {
            Self::Client { branch, method } => Key::Client {
                branch: branch.into(),
                method: method.clone(),
            },
            Self::Server {
                branch,
                host,
                port,
                method,
            } => Key::Server {
                text: joined(branch, host),
                split: branch.len(),
                port,
                method: method.clone(),
            },
            Self::Server2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                method,
            } => Key::Server2543(Box::new(Key2543 {
                uri: uri.into(),
                from_tag: from_tag.into(),
                call_id: call_id.into(),
                cseq,
                top_via: top_via.into(),
                method: method.clone(),
            })),
        }
    }

    /// Hashes the parts a peer can vary while the keys stay distinct. A client key's branch
    /// is ours (random), so it alone spreads the keys; the method is left to equality (an
    /// INVITE and its CANCEL share a bucket). A server key's parts all come from the peer:
    /// hashing its branch alone would let a hostile peer put any number of transactions in
    /// one bucket by reusing a branch under different sent-by values (each a transaction of
    /// its own, §17.2.3), making every lookup a walk; the host and port are hashed too. The
    /// method again only by equality (a handful of methods share a branch at most).
    fn hash_into<H: Hasher>(self, state: &mut H) {
        match self {
            Self::Client { branch, .. } => state.write(branch.as_bytes()),
            Self::Server {
                branch, host, port, ..
            } => {
                state.write(branch);
                state.write(host);
                state.write_u16(port.unwrap_or(0));
            }
            Self::Server2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                method,
            } => {
                state.write_u8(2);
                uri.hash(state);
                from_tag.hash(state);
                call_id.hash(state);
                cseq.hash(state);
                top_via.hash(state);
                method.hash(state);
            }
        }
    }
}

/// `a` followed by `b`, in one allocation: put together on the stack when short enough, so that the `Arc` is made with one copy
/// rather than byte by byte.
fn joined(a: &[u8], b: &[u8]) -> Arc<[u8]> {
    let mut buf = [0u8; 128];
    let n = a.len() + b.len();
    if let Some(whole) = buf.get_mut(..n)
        && let Some((head, tail)) = whole.split_at_mut_checked(a.len())
    {
        head.copy_from_slice(a);
        tail.copy_from_slice(b);
        return Arc::from(&*whole);
    }
    // An exact-size iterator: collected into the `Arc` in one allocation.
    a.iter().chain(b).copied().collect()
}

/// Anything a [`Key`] can be looked up with.
trait KeyView {
    fn view(&self) -> KeyRef<'_>;
}

impl KeyView for KeyRef<'_> {
    fn view(&self) -> KeyRef<'_> {
        *self
    }
}

impl KeyView for Key {
    fn view(&self) -> KeyRef<'_> {
        match self {
            Self::Client { branch, method } => KeyRef::Client { branch, method },
            Self::Server {
                text,
                split,
                port,
                method,
            } => {
                let (branch, host) = key_parts(text, *split);
                KeyRef::Server {
                    branch,
                    host,
                    port: *port,
                    method,
                }
            }
            Self::Server2543(key) => KeyRef::Server2543 {
                uri: &key.uri,
                from_tag: &key.from_tag,
                call_id: &key.call_id,
                cseq: key.cseq,
                top_via: &key.top_via,
                method: &key.method,
            },
        }
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash_into(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash_into(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        // The table's index and the transaction's slot hold clones of one key, which the
        // index compares when the transaction leaves it: the same text then needs no byte
        // compared (for speed).
        if let (
            Self::Server {
                text,
                split,
                port,
                method,
            },
            Self::Server {
                text: other_text,
                split: other_split,
                port: other_port,
                method: other_method,
            },
        ) = (self, other)
            && Arc::ptr_eq(text, other_text)
        {
            return split == other_split && port == other_port && method == other_method;
        }
        self.view() == other.view()
    }
}

impl Eq for Key {}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// What the endpoint keeps with each transaction.
#[derive(Debug)]
struct Context {
    /// The request that created the transaction, while it may still be needed: until the
    /// final response (server: to answer it, for 100 Trying and the 487 after a CANCEL;
    /// client: for the CANCEL and the ACK of a failure). A transaction that lingers to absorb
    /// retransmissions (Timers D, I, J, K, L, M) no longer holds it (boxed, so it then
    /// takes no room in the slot either).
    request: Option<Box<Request>>,
    /// Client: where requests go. Server: where responses go (§18.2.2).
    peer: SocketAddr,
    protocol: Protocol,
    /// Server: the To tag of the responses sent, reused for the 487 after a CANCEL.
    to_tag: Option<Arc<str>>,
    /// The mark every message of the transaction carries ([`Transmit::dscp`]).
    dscp: Option<u8>,
}

/// The sans-IO transaction endpoint. See the module docs.
pub struct Endpoint {
    config: EndpointConfig,
    /// `Server: <config.user_agent>`, built once (a clone is a reference count).
    server_header: Option<OwnLine>,
    /// Whether a new server transaction keeps a copy of its request (see
    /// [`Endpoint::hand_over_requests`]).
    keep_requests: bool,
    /// Boxes of requests answered, for the next ones kept ([`Endpoint::keep_request`]).
    spare_requests: Spare<Request>,
    /// Where the To tags the endpoint makes itself come from (the 200 to OPTIONS, the answers
    /// to CANCEL, stateless rejections): seeded, so a run can be replayed.
    rng: fastrand::Rng,
    table: TransactionTable<Key, Context>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    /// Client transactions ended by a transport error whose `TimedOut` is still queued: it is
    /// reported as [`EndpointEvent::TransportError`].
    transport_failed: Vec<TransactionId>,
    /// While set, a new INVITE (no To tag, no transaction yet) is answered 503 with this
    /// Retry-After, statelessly: see [`Endpoint::set_shedding`].
    shedding: Option<Duration>,
    /// New INVITEs answered 503 by shedding, since the endpoint was made.
    shed_invites: u64,
    /// The load reported in answers to OPTIONS ([`LOAD_HEADER`]), when the layer above
    /// reports one: see [`Endpoint::set_load`].
    load: Option<Load>,
}

/// The non-standard header our answers to out-of-dialog OPTIONS carry the load in, once the
/// layer above reports one ([`Endpoint::set_load`]): `X-Load: ACTIVE/LIMIT`, or `X-Load:
/// ACTIVE` without a limit (`X-Load: 3/100`: three calls of at most a hundred).
///
/// No SIP standard carries a load in a response to OPTIONS, and Kamailio's dispatcher reads
/// none: its probing only looks at the status (a 200, or the codes `ds_ping_reply_codes`
/// adds, keeps a destination active). The header is for balancers and monitors that can read
/// one (a script, a health check), next to the status that already says "send me no more".
pub const LOAD_HEADER: &str = "X-Load";

/// How loaded the element is, as the answers to OPTIONS report it ([`LOAD_HEADER`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Calls (or sessions) in progress.
    pub active: usize,
    /// The most admitted at once, when there is a limit.
    pub limit: Option<usize>,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "{}/{limit}", self.active),
            None => write!(f, "{}", self.active),
        }
    }
}

/// The §17.2.3 key of `request`, whose top Via is `via`.
fn server_key<'a>(request: &'a Request, via: &session_sip::Via<'a>) -> Option<KeyRef<'a>> {
    let method = match request.method {
        Method::Ack => &INVITE,
        ref other => other,
    };
    // The branch is read once (`Via::is_rfc3261_branch` would read it again).
    match via.branch() {
        Some(branch) if branch.starts_with(MAGIC_COOKIE) => Some(KeyRef::Server {
            branch: branch.as_bytes(),
            host: via.host.as_bytes(),
            port: via.port,
            method,
        }),
        _ => {
            let top_via = request.headers.values(HeaderName::Via).next()?;
            Some(KeyRef::Server2543 {
                uri: request.uri.as_str(),
                from_tag: request.from().ok()?.tag().unwrap_or_default(),
                call_id: request.call_id().ok()?,
                cseq: request.cseq().ok()?.seq,
                top_via,
                method,
            })
        }
    }
}

/// Where responses to `request`, received from `source`, go (RFC 3261 §18.2.2, RFC 3581 §4),
/// and the request's top Via rewritten with `received` and `rport` (§18.2.1).
fn response_route(request: &mut Request, source: SocketAddr, protocol: Protocol) -> SocketAddr {
    let Ok(via) = request.top_via() else {
        return source;
    };
    let via = ViaFacts::of(&via, source);
    stamp_top_via(&mut request.headers, via, source, protocol)
}

/// [`response_route`] for a response already built from the request (a stateless rejection,
/// whose Via lines are the request's as received): where it goes, and its top Via with the
/// `received` and `rport` the request's would have had, so the client can match it (RFC 3581
/// §4: the response carries them whatever made it).
fn rejection_route(response: &mut Response, source: SocketAddr, protocol: Protocol) -> SocketAddr {
    let Ok(via) = response.top_via() else {
        return source;
    };
    let via = ViaFacts::of(&via, source);
    stamp_top_via(&mut response.headers, via, source, protocol)
}

/// What routing a response needs from the request's top Via.
#[derive(Clone, Copy)]
struct ViaFacts {
    /// It carries `rport` (RFC 3581): answer to the source port and say which it was.
    wants_rport: bool,
    /// Its sent-by host is the source's IP address already (no `received` needed).
    host_is_source: bool,
    /// Its sent-by port.
    port: Option<u16>,
}

impl ViaFacts {
    fn of(via: &session_sip::Via<'_>, source: SocketAddr) -> Self {
        Self {
            wants_rport: via.rport().is_some(),
            host_is_source: host_is(via.host, source.ip()),
            port: via.port,
        }
    }
}

/// Whether Via host `host` (an IPv6 reference in brackets or not) is the address `ip`.
fn host_is(host: &str, ip: IpAddr) -> bool {
    // Most hosts are the dotted quad the peer sends from: read without the general parser.
    if let IpAddr::V4(ip) = ip
        && let Some(quad) = dotted_quad(host.as_bytes())
    {
        return quad == ip;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        == Some(ip)
}

/// `host` as an IPv4 address when it is written the one way `Ipv4Addr`'s parser accepts
/// (four decimal numbers up to 255, no leading zeros); `None` for anything else, which the
/// caller leaves to that parser.
fn dotted_quad(host: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut index = 0;
    let (mut value, mut digits) = (0u16, 0u8);
    for &byte in host {
        match byte {
            b'0'..=b'9' => {
                // At most three digits, and no leading zero.
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(byte - b'0');
                digits += 1;
            }
            b'.' if digits > 0 => {
                *octets.get_mut(index)? = u8::try_from(value).ok()?;
                index += 1;
                (value, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || index != 3 {
        return None;
    }
    *octets.get_mut(index)? = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

/// Rewrites the first Via value of `headers` with `received` and `rport` as §18.2.1 and
/// RFC 3581 ask, and returns where the responses go.
fn stamp_top_via(
    headers: &mut session_sip::Headers,
    via: ViaFacts,
    source: SocketAddr,
    protocol: Protocol,
) -> SocketAddr {
    let destination = if via.wants_rport || protocol == Protocol::Tcp {
        source
    } else {
        SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
    };
    if via.host_is_source && !via.wants_rport {
        return destination;
    }
    // Rebuild the first Via value with the parameters the RFCs ask for.
    let Some(first) = headers.values(HeaderName::Via).next() else {
        return destination;
    };
    let mut top = String::with_capacity(first.len() + 40);
    for (i, part) in first.split(';').enumerate() {
        let name = part.split('=').next().unwrap_or_default().trim();
        if i > 0 && (name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport")) {
            continue;
        }
        if i > 0 {
            top.push(';');
        }
        top.push_str(part.trim());
    }
    top.push_str(&format!(";received={}", source.ip()));
    if via.wants_rport {
        top.push_str(&format!(";rport={}", source.port()));
    }
    let mut rebuilt = session_sip::Headers::new();
    let mut replaced = false;
    for header in headers.iter() {
        if !replaced && header.name() == HeaderName::Via {
            replaced = true;
            rebuilt.push(Header::new(HeaderName::Via, top.clone()));
            // Keep any further values that shared the first Via line.
            let whole = header.value();
            let offset = (first.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
            let rest = whole
                .get(offset.saturating_add(first.len())..)
                .unwrap_or_default();
            let rest = rest.trim_start_matches([',', ' ', '\t']);
            if !rest.is_empty() {
                rebuilt.push(Header::new(HeaderName::Via, rest.to_owned()));
            }
        } else {
            rebuilt.push(header.clone());
        }
    }
    *headers = rebuilt;
    destination
}

impl Endpoint {
    /// A new endpoint whose random values (the To tags it makes itself: the 200 to OPTIONS,
    /// the 200 or 481 to a CANCEL and the INVITE's 487, stateless rejections) come from a
    /// generator seeded from entropy.
    pub fn new(config: EndpointConfig) -> Self {
        Self::with_rng(config, fastrand::Rng::new())
    }

    /// A new endpoint whose random values come from a generator seeded with `seed`: the same
    /// seed and the same inputs give the same bytes. For tests and replays; a user agent in
    /// service seeds from entropy (see [`UaConfig::rng_seed`](crate::ua::UaConfig::rng_seed)).
    pub fn with_seed(config: EndpointConfig, seed: u64) -> Self {
        Self::with_rng(config, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(config: EndpointConfig, rng: fastrand::Rng) -> Self {
        let server_header = config
            .user_agent
            .as_deref()
            .map(|agent| OwnLine::new(Header::new(HeaderName::Server, agent)));
        // The matching keys are the peer's (branches, hosts): hashed with keys of our own,
        // derived from the seeded generator so that a replay behaves alike.
        let table = TransactionTable::with_hasher(SeededState::derived_from(&rng));
        Self {
            config,
            server_header,
            keep_requests: true,
            spare_requests: Spare::default(),
            rng,
            table,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            transport_failed: Vec::new(),
            shedding: None,
            shed_invites: 0,
            load: None,
        }
    }

    /// Overload shedding: while `Some(retry_after)`, every new INVITE — one with no To tag
    /// that matches no transaction (its retransmissions included) — is answered 503 Service
    /// Unavailable with `Retry-After` (RFC 3261 §21.5.4) *statelessly*: no transaction, no
    /// dialog, nothing kept, so refusing costs a parse and a send. The caller's ACK for the
    /// 503 matches nothing and is dropped (§17.2.1 would absorb it; with no state it is
    /// harmless). Requests within dialogs, and every other method, go on as before, so calls
    /// already admitted lose nothing. `None` turns shedding off.
    pub fn set_shedding(&mut self, retry_after: Option<Duration>) {
        self.shedding = retry_after;
    }

    /// New INVITEs answered 503 by shedding so far.
    pub fn shed_invites(&self) -> u64 {
        self.shed_invites
    }

    /// The load the answers to out-of-dialog OPTIONS report in [`LOAD_HEADER`]; `None` (the
    /// default) leaves the header out. A balancer probing with OPTIONS gets 200 while new
    /// calls are taken and 503 with `Retry-After` while they are shed
    /// ([`Endpoint::set_shedding`]), with this load in both.
    pub fn set_load(&mut self, load: Option<Load>) {
        self.load = load;
    }

    /// The settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Live transactions (for tests and metrics: it drains to zero when idle).
    pub fn transaction_count(&self) -> usize {
        self.table.len()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the layer above.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// [`Endpoint::poll_timeout`] as if nothing were remembered (for tests).
    #[cfg(test)]
    pub(crate) fn poll_timeout_unchecked(&mut self) -> Option<Instant> {
        self.table.next_deadline_unchecked()
    }

    /// Time has reached `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
        self.collect_actions(now);
    }

    fn transmit(&mut self, protocol: Protocol, destination: SocketAddr, bytes: Bytes) {
        self.transmit_marked(protocol, destination, bytes, None);
    }

    fn transmit_marked(
        &mut self,
        protocol: Protocol,
        destination: SocketAddr,
        bytes: Bytes,
        dscp: Option<u8>,
    ) {
        self.transmits.push_back(Transmit {
            protocol,
            destination,
            bytes,
            dscp,
        });
    }

    /// Moves the table's actions into transmits and events.
    fn collect_actions(&mut self, now: Instant) {
        while let Some((id, action)) = self.table.poll_action() {
            match action {
                Action::Transmit(bytes) => {
                    // The context outlives the transaction until its Terminated is polled.
                    if let Some(ctx) = self.table.context(id) {
                        let (protocol, peer, dscp) = (ctx.protocol, ctx.peer, ctx.dscp);
                        self.transmit_marked(protocol, peer, bytes, dscp);
                    }
                }
                Action::SendTrying => self.send_trying(now, id),
                Action::TimedOut => {
                    let event = match self.transport_failed.iter().position(|&t| t == id) {
                        Some(at) => {
                            self.transport_failed.swap_remove(at);
                            EndpointEvent::TransportError { id }
                        }
                        None => EndpointEvent::TimedOut { id },
                    };
                    self.events.push_back(event);
                }
                Action::Terminated => self.events.push_back(EndpointEvent::Terminated { id }),
            }
        }
    }

    fn send_trying(&mut self, now: Instant, id: TransactionId) {
        let Some(request) = self
            .table
            .context(id)
            .and_then(|ctx| ctx.request.as_deref())
        else {
            return;
        };
        // 100 Trying carries no To tag (§8.2.6.1).
        let trying = Response::from_request_with_tag(request, StatusCode::TRYING, None).to_bytes();
        self.table.with(id, |tx, _| {
            if let Transaction::ServerInvite(tx) = tx {
                tx.send_response(now, 100, trying);
            }
        });
        self.collect_actions(now);
    }

    /// A datagram (or a message framed from a stream) arrived from `source`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        protocol: Protocol,
        source: SocketAddr,
        bytes: &Bytes,
    ) {
        let verdict = session_sip::triage_datagram_with(
            bytes,
            &self.config.limits,
            &self.config.policy,
            &mut self.rng,
        );
        match verdict.action {
            session_sip::Action::Accept => {}
            session_sip::Action::Answer(mut response) => {
                // Stateless rejection (§8.2): routed by its Via like any response (§18.2.2),
                // which carries `received` and `rport` as the request's would (RFC 3581).
                tracing::debug!(%source, status = response.status.as_u16(), reason = %verdict.reason, "rejecting request");
                let destination = rejection_route(&mut response, source, protocol);
                self.transmit(protocol, destination, response.to_bytes());
                return;
            }
            _ => {
                tracing::debug!(%source, reason = %verdict.reason, "dropping message");
                return;
            }
        }
        match verdict.message {
            Some(Message::Request(request)) => self.handle_request(now, protocol, source, request),
            Some(Message::Response(response)) => self.handle_response(now, source, response),
            None => {}
        }
    }

    /// A message already parsed (e.g. framed from a TCP stream by `StreamDecoder`) arrived:
    /// validated like a datagram, without parsing it again.
    pub fn handle_message(
        &mut self,
        now: Instant,
        protocol: Protocol,
        source: SocketAddr,
        message: Message,
    ) {
        match message {
            Message::Request(mut request) => {
                match session_sip::validate_request(&request, &self.config.policy) {
                    Ok(()) => self.handle_request(now, protocol, source, request),
                    Err(rejection) => {
                        tracing::debug!(%source, status = rejection.status.as_u16(), reason = %rejection.reason, "rejecting request");
                        // The Via first, so the response copies it with `received`/`rport`.
                        let destination = response_route(&mut request, source, protocol);
                        let response = rejection.to_response_with(&request, &mut self.rng);
                        self.transmit(protocol, destination, response.to_bytes());
                    }
                }
            }
            Message::Response(response) => match session_sip::validate_response(&response) {
                Ok(()) => self.handle_response(now, source, response),
                Err(discard) => {
                    tracing::debug!(%source, reason = %discard.reason, "dropping response")
                }
            },
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        protocol: Protocol,
        source: SocketAddr,
        mut request: Request,
    ) {
        // Matched on a key borrowed from the request; the owned key is made only for a new
        // transaction (not for an ACK, which starts none).
        // The top Via is read once, for the key and for where the responses go.
        let (found, fresh) = {
            let Ok(via) = request.top_via() else {
                return;
            };
            let Some(view) = server_key(&request, &via) else {
                return;
            };
            let found = self.table.find::<dyn KeyView>(&view);
            let fresh = (found.is_none() && request.method != Method::Ack)
                .then(|| (view.to_key(), ViaFacts::of(&via, source)));
            (found, fresh)
        };
        if let Some(id) = found {
            let is_ack = request.method == Method::Ack;
            let verdict = self.table.with(id, |tx, _| match tx {
                Transaction::ServerInvite(tx) if is_ack => tx.handle_ack(now),
                Transaction::ServerInvite(tx) => tx.handle_invite_retransmission(),
                Transaction::ServerNonInvite(tx) => tx.handle_request(),
                _ => Verdict::Absorbed,
            });
            self.collect_actions(now);
            if verdict == Some(Verdict::PassUp) {
                self.events
                    .push_back(EndpointEvent::Ack { request, source });
            }
            return;
        }
        // An ACK for a 2xx has a branch of its own (§17.1.1.3): it goes to the dialog.
        let Some((key, via)) = fresh else {
            if request.method == Method::Ack {
                self.events
                    .push_back(EndpointEvent::Ack { request, source });
            }
            return;
        };
        match request.method {
            Method::Cancel => self.handle_cancel(now, (protocol, source, via), request, key),
            Method::Options
                if self.config.answer_options
                    && request.to().is_ok_and(|to| to.tag().is_none()) =>
            {
                let destination = stamp_top_via(&mut request.headers, via, source, protocol);
                let response = self.options_answer(&request);
                self.transmit(protocol, destination, response.to_bytes());
            }
            Method::Invite
                if self.shedding.is_some() && request.to().is_ok_and(|to| to.tag().is_none()) =>
            {
                let retry_after = self.shedding.unwrap_or_default().as_secs().max(1);
                let destination = stamp_top_via(&mut request.headers, via, source, protocol);
                let mut response = Response::from_request_with_rng(
                    &request,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &mut self.rng,
                );
                response
                    .headers
                    .push(Header::new(HeaderName::RetryAfter, retry_after.to_string()));
                self.shed_invites += 1;
                self.transmit(protocol, destination, response.to_bytes());
            }
            _ => {
                let peer = stamp_top_via(&mut request.headers, via, source, protocol);
                let reliability = protocol.reliability();
                let transaction = match request.method {
                    Method::Invite => Transaction::ServerInvite(ServerInvite::new(
                        now,
                        reliability,
                        self.config.timers,
                    )),
                    _ => Transaction::ServerNonInvite(ServerNonInvite::new(
                        reliability,
                        self.config.timers,
                    )),
                };
                let context = Context {
                    request: self.keep_requests.then(|| Box::new(request.clone())),
                    peer,
                    protocol,
                    to_tag: None,
                    dscp: None,
                };
                if let Some(id) = self.table.insert(key, transaction, context) {
                    self.events.push_back(EndpointEvent::Request {
                        id,
                        request,
                        source,
                        protocol,
                    });
                }
                self.collect_actions(now);
            }
        }
    }

    /// The answer to an out-of-dialog OPTIONS. RFC 3261 §11.2: it is the status an INVITE
    /// would get now, so while new INVITEs are shed it is 503 with their `Retry-After` — what
    /// makes a balancer probing with OPTIONS (Kamailio's dispatcher) take us out of its set
    /// until we answer 200 again.
    fn options_answer(&mut self, request: &Request) -> Response {
        let status = if self.shedding.is_some() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        let mut builder = Response::builder(StatusCode::OK);
        builder = builder.header(HeaderName::Allow, self.config.policy.allow_header());
        if !self.config.policy.supported.is_empty() {
            builder = builder.header(
                HeaderName::Supported,
                self.config.policy.supported.join(", "),
            );
        }
        // Answered only when the To has no tag, so the response always takes a fresh one.
        let mut response = Response::from_request_with_rng(request, status, &mut self.rng);
        if let Some(retry_after) = self.shedding {
            let seconds = retry_after.as_secs().max(1);
            response
                .headers
                .push(Header::new(HeaderName::RetryAfter, seconds.to_string()));
        }
        for header in builder.build().headers.iter() {
            if matches!(header.name(), HeaderName::Allow | HeaderName::Supported) {
                response.headers.push(header.clone());
            }
        }
        // `LOAD_HEADER` is a token, so `Header::other` always makes it.
        if let Some(load) = self
            .load
            .and_then(|load| Header::other(LOAD_HEADER, load.to_string()))
        {
            response.headers.push(load);
        }
        if let Some(server) = &self.server_header {
            response.headers.push(server.header().clone());
        }
        response
    }

    /// CANCEL (§9.2): answer it, and end the INVITE with 487 if it is still pending.
    fn handle_cancel(
        &mut self,
        now: Instant,
        (protocol, source, via): (Protocol, SocketAddr, ViaFacts),
        mut cancel: Request,
        key: Key,
    ) {
        // The INVITE the CANCEL is for: the same key with method INVITE (§9.2).
        let invite_key = match key.view() {
            KeyRef::Server {
                branch, host, port, ..
            } => KeyRef::Server {
                branch,
                host,
                port,
                method: &INVITE,
            },
            KeyRef::Server2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                ..
            } => KeyRef::Server2543 {
                uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                method: &INVITE,
            },
            KeyRef::Client { .. } => return,
        };
        let invite_id = self.table.find::<dyn KeyView>(&invite_key);
        let peer = stamp_top_via(&mut cancel.headers, via, source, protocol);
        let pending = invite_id.and_then(|id| match self.table.with(id, |tx, _| matches!(tx, Transaction::ServerInvite(tx) if tx.state() == ServerInviteState::Proceeding)) {
            Some(true) => Some(id),
            _ => None,
        });
        let status = if invite_id.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
        };
        let to_tag = invite_id
            .and_then(|id| self.table.context(id))
            .and_then(|ctx| ctx.to_tag.clone())
            .unwrap_or_else(|| session_sip::new_tag_with(&mut self.rng).into());
        let answer = Response::from_request_with_tag(&cancel, status, Some(&to_tag)).to_bytes();
        let mut tx = ServerNonInvite::new(protocol.reliability(), self.config.timers);
        tx.send_response(now, status.as_u16(), answer);
        // The CANCEL is answered at once: nothing more is built from it.
        drop(cancel);
        // The 200 to the CANCEL is marked as the INVITE's answers are.
        let dscp = invite_id
            .and_then(|id| self.table.context(id))
            .and_then(|ctx| ctx.dscp);
        let context = Context {
            request: None,
            peer,
            protocol,
            to_tag: Some(to_tag.clone()),
            dscp,
        };
        self.table
            .insert(key, Transaction::ServerNonInvite(tx), context);
        if let Some(id) = pending {
            let terminated = self
                .table
                .context(id)
                .and_then(|ctx| ctx.request.as_deref())
                .map(|request| {
                    Response::from_request_with_tag(
                        request,
                        StatusCode::REQUEST_TERMINATED,
                        Some(&to_tag),
                    )
                    .to_bytes()
                });
            if let Some(bytes) = terminated {
                self.table.with(id, |tx, ctx| {
                    ctx.to_tag = Some(to_tag);
                    ctx.request = None;
                    if let Transaction::ServerInvite(tx) = tx {
                        tx.send_response(now, 487, bytes);
                    }
                });
                self.events.push_back(EndpointEvent::Cancelled { id });
            }
        }
        self.collect_actions(now);
    }

    fn handle_response(&mut self, now: Instant, source: SocketAddr, response: Response) {
        // §8.1.3.3: a response with more than one Via was not meant for us.
        if response.headers.values(HeaderName::Via).nth(1).is_some() {
            tracing::debug!(%source, "dropping response with several Vias");
            return;
        }
        // §17.1.3: the branch of the top Via and the CSeq method, borrowed from the response.
        let Ok(cseq) = response.cseq() else {
            return;
        };
        let found = match response.top_via().ok().and_then(|via| via.branch()) {
            Some(branch) => self.table.find::<dyn KeyView>(&KeyRef::Client {
                branch,
                method: &cseq.method,
            }),
            None => return,
        };
        let status = response.status.as_u16();
        let Some(id) = found else {
            if response.status.is_success()
                && response.cseq().is_ok_and(|c| c.method == Method::Invite)
            {
                self.events
                    .push_back(EndpointEvent::StrayInvite2xx { response, source });
            }
            return;
        };
        let verdict = self.table.with(id, |tx, ctx| {
            let verdict = match tx {
                Transaction::ClientInvite(tx) => tx.handle_response(now, status, || {
                    ctx.request
                        .as_ref()
                        .map(|invite| ack_for_failure(invite, &response))
                        .unwrap_or_default()
                }),
                Transaction::ClientNonInvite(tx) => tx.handle_response(now, status),
                _ => Verdict::Absorbed,
            };
            // After the final response neither a CANCEL nor a failure ACK is built again.
            if status >= 200 {
                ctx.request = None;
            }
            verdict
        });
        self.collect_actions(now);
        if verdict == Some(Verdict::PassUp) {
            self.events
                .push_back(EndpointEvent::Response { id, response });
        }
    }

    /// Starts a client transaction for `request` (not ACK) towards `destination`. The request
    /// must carry its top Via with an RFC 3261 branch and a CSeq.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        protocol: Protocol,
    ) -> Result<TransactionId, EndpointError> {
        self.start_client(now, None, request, (destination, protocol, None))
    }

    /// [`Endpoint::send_request`] with every message of the transaction marked `dscp`
    /// ([`Transmit::dscp`]).
    pub fn send_marked_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        protocol: Protocol,
        dscp: Option<u8>,
    ) -> Result<TransactionId, EndpointError> {
        self.start_client(now, None, request, (destination, protocol, dscp))
    }

    /// Starts a client transaction towards `(destination, protocol, mark)`, under a reserved
    /// id when one is given.
    fn start_client(
        &mut self,
        now: Instant,
        reserved: Option<TransactionId>,
        request: Request,
        (destination, protocol, dscp): (SocketAddr, Protocol, Option<u8>),
    ) -> Result<TransactionId, EndpointError> {
        if request.method == Method::Ack {
            return Err(EndpointError::BadRequest(
                "ACK is not a transaction: use send_stateless",
            ));
        }
        let via = request
            .top_via()
            .map_err(|_| EndpointError::BadRequest("no Via"))?;
        let branch: Arc<str> = via
            .branch()
            .filter(|branch| branch.starts_with(MAGIC_COOKIE))
            .ok_or(EndpointError::BadRequest("no RFC 3261 branch"))?
            .into();
        let method = request
            .cseq()
            .map_err(|_| EndpointError::BadRequest("no CSeq"))?
            .method;
        let key = Key::Client { branch, method };
        let bytes = request.to_bytes();
        let reliability = protocol.reliability();
        let transaction = match request.method {
            Method::Invite => Transaction::ClientInvite(ClientInvite::new(
                now,
                bytes,
                reliability,
                self.config.timers,
            )),
            _ => Transaction::ClientNonInvite(ClientNonInvite::new(
                now,
                bytes,
                reliability,
                self.config.timers,
            )),
        };
        let context = Context {
            request: Some(Box::new(request)),
            peer: destination,
            protocol,
            to_tag: None,
            dscp,
        };
        let inserted = match reserved {
            Some(id) => self.table.insert_reserved(id, key, transaction, context),
            None => self.table.insert(key, transaction, context),
        };
        let id = inserted.ok_or(EndpointError::DuplicateTransaction)?;
        self.collect_actions(now);
        Ok(id)
    }

    /// The transport could not send to `destination` over `protocol` (an ICMP error on UDP, a
    /// refused or broken TCP connection). Every transaction with that peer ends (RFC 3261
    /// §17.1.4, §17.2.4): client transactions still waiting for a final response report
    /// [`EndpointEvent::TransportError`]; server transactions just end. Returns how many
    /// transactions it ended.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        destination: SocketAddr,
        protocol: Protocol,
    ) -> usize {
        let failed: Vec<TransactionId> = self
            .table
            .iter()
            .filter(|(_, ctx)| ctx.peer == destination && ctx.protocol == protocol)
            .map(|(id, _)| id)
            .collect();
        for &id in &failed {
            let client = self
                .table
                .with(id, |tx, _| match tx {
                    Transaction::ClientInvite(tx) => {
                        tx.handle_transport_error();
                        true
                    }
                    Transaction::ClientNonInvite(tx) => {
                        tx.handle_transport_error();
                        true
                    }
                    Transaction::ServerInvite(tx) => {
                        tx.handle_transport_error();
                        false
                    }
                    Transaction::ServerNonInvite(tx) => {
                        tx.handle_transport_error();
                        false
                    }
                })
                .unwrap_or(false);
            if client {
                self.transport_failed.push(id);
            }
            self.collect_actions(now);
            // A transaction that ended without a timeout leaves nothing to translate.
            self.transport_failed.retain(|&t| t != id);
        }
        if !failed.is_empty() {
            tracing::debug!(%destination, ended = failed.len(), "transport error");
        }
        failed.len()
    }

    /// Makes room for `additional` more transactions (see [`TransactionTable::reserve`]).
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(additional);
    }

    /// Gives back room a past peak left (see [`TransactionTable::shrink_sparse`]).
    pub fn shrink_sparse(&mut self, floor: usize) {
        self.table.shrink_sparse(floor);
        shrink_queue(&mut self.transmits, KEEP);
        shrink_queue(&mut self.events, KEEP);
    }

    /// Room for transactions in the endpoint's table (for tests and metrics).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Hands out the id of a client transaction that starts later (see
    /// [`Endpoint::send_cancel`]).
    pub(crate) fn reserve_id(&mut self) -> TransactionId {
        self.table.reserve_id()
    }

    /// Sends the CANCEL for the INVITE of client transaction `invite` (§9.1), as transaction
    /// `id` when one was reserved, and arms the INVITE's guard against a final response that
    /// never comes.
    pub(crate) fn send_cancel(
        &mut self,
        now: Instant,
        invite: TransactionId,
        id: Option<TransactionId>,
    ) -> Result<TransactionId, EndpointError> {
        let cancel = self
            .cancel_for(invite)
            .ok_or(EndpointError::NoSuchTransaction)?;
        let (destination, protocol) = self
            .peer_of(invite)
            .ok_or(EndpointError::NoSuchTransaction)?;
        // The CANCEL goes where the INVITE went, marked as it was (§9.1).
        let dscp = self.dscp_of(invite);
        let id = self.start_client(now, id, cancel, (destination, protocol, dscp))?;
        self.table.with(invite, |tx, _| {
            if let Transaction::ClientInvite(tx) = tx {
                tx.handle_cancel_sent(now);
            }
        });
        self.collect_actions(now);
        Ok(id)
    }

    /// Sends a message outside any transaction (an ACK for a 2xx, a 2xx retransmission after
    /// the transaction ended, a stateless response).
    pub fn send_stateless(&mut self, bytes: Bytes, destination: SocketAddr, protocol: Protocol) {
        self.transmit(protocol, destination, bytes);
    }

    /// [`Endpoint::send_stateless`] marked `dscp` ([`Transmit::dscp`]).
    pub fn send_marked_stateless(
        &mut self,
        bytes: Bytes,
        destination: SocketAddr,
        protocol: Protocol,
        dscp: Option<u8>,
    ) {
        self.transmit_marked(protocol, destination, bytes, dscp);
    }

    /// Marks every message transaction `id` sends from now on `dscp` ([`Transmit::dscp`]):
    /// a server transaction's responses (the 487 after a CANCEL and the 200 to the CANCEL
    /// included), a client transaction's retransmissions and ACK of a failure. Returns
    /// whether the transaction is live.
    pub fn set_dscp(&mut self, id: TransactionId, dscp: Option<u8>) -> bool {
        self.table.with(id, |_, ctx| ctx.dscp = dscp).is_some()
    }

    /// The mark of transaction `id`'s messages ([`Endpoint::set_dscp`]); `None` when it has
    /// none or is gone.
    pub fn dscp_of(&self, id: TransactionId) -> Option<u8> {
        self.table.context(id)?.dscp
    }

    /// Answers the request of server transaction `id`; returns the bytes sent (the user agent
    /// keeps a 2xx to retransmit it).
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<Bytes, EndpointError> {
        let tag = response.to().ok().and_then(|to| to.tag().map(Arc::from));
        self.respond_tagged(now, id, response, tag)
    }

    /// [`Endpoint::respond`] for a caller that knows the To tag the response carries, which
    /// spares reading it back.
    pub(crate) fn respond_tagged(
        &mut self,
        now: Instant,
        id: TransactionId,
        mut response: Response,
        tag: Option<Arc<str>>,
    ) -> Result<Bytes, EndpointError> {
        if let Some(server) = &self.server_header
            && response.headers.get(HeaderName::Server).is_none()
        {
            response.headers.push(server.header().clone());
        }
        let status = response.status.as_u16();
        let bytes = response.to_bytes();
        self.respond_bytes(now, id, status, bytes, tag.as_ref())
    }

    /// The `Server` line the endpoint adds to the responses it sends, when it has one
    /// ([`EndpointConfig::user_agent`]).
    pub(crate) fn server_header(&self) -> Option<&OwnLine> {
        self.server_header.as_ref()
    }

    /// Sends `bytes`, a response with `status` to the request of server transaction `id`
    /// already serialized (its `Server` line included), through the transaction. `tag` is the
    /// To tag it carries: an INVITE transaction keeps it for the 487 after a CANCEL.
    pub(crate) fn respond_bytes(
        &mut self,
        now: Instant,
        id: TransactionId,
        status: u16,
        bytes: Bytes,
        tag: Option<&Arc<str>>,
    ) -> Result<Bytes, EndpointError> {
        let sent = bytes.clone();
        let spare_requests = &mut self.spare_requests;
        let accepted = self
            .table
            .with(id, |tx, ctx| {
                let accepted = match tx {
                    Transaction::ServerInvite(tx) => {
                        // Only an INVITE's tag is read again (`handle_cancel`).
                        if let Some(tag) = tag {
                            ctx.to_tag = Some(Arc::clone(tag));
                        }
                        tx.send_response(now, status, bytes)
                    }
                    Transaction::ServerNonInvite(tx) => tx.send_response(now, status, bytes),
                    _ => false,
                };
                if accepted
                    && status >= 200
                    && let Some(mut request) = ctx.request.take()
                {
                    // Answered: the request is no longer needed (see `Context::request`). Its
                    // box is kept for the next request, without what is big in it.
                    request.headers = session_sip::Headers::new();
                    request.body = Bytes::new();
                    spare_requests.keep(request);
                }
                accepted
            })
            .ok_or(EndpointError::NoSuchTransaction)?;
        self.collect_actions(now);
        if accepted {
            Ok(sent)
        } else {
            Err(EndpointError::ResponseRefused)
        }
    }

    /// A new server transaction no longer keeps a copy of its request by itself: the layer
    /// above gives back, with [`Endpoint::keep_request`], every request it does not answer
    /// while handling its [`EndpointEvent::Request`] (what [`Endpoint::request_of`], the
    /// 100 Trying and a CANCEL's 487 are built from). A request answered at once (a BYE, a
    /// rejection) is then never copied.
    pub(crate) fn hand_over_requests(&mut self) {
        self.keep_requests = false;
    }

    /// Server transaction `id` keeps (a copy of) its request until its final response.
    pub(crate) fn keep_request(&mut self, id: TransactionId, request: &Request) {
        if let Some(ctx) = self.table.context_mut(id)
            && ctx.request.is_none()
        {
            ctx.request = Some(self.spare_requests.boxed(request.clone()));
        }
    }

    /// The request that created transaction `id`, until its final response: a server
    /// transaction keeps it while the TU may answer, a client transaction while it may be
    /// cancelled. A transaction lingering after its final response (to absorb
    /// retransmissions) has released it, to keep its memory small.
    pub fn request_of(&self, id: TransactionId) -> Option<&Request> {
        self.table.context(id)?.request.as_deref()
    }

    /// Whether `id` is a server transaction.
    pub(crate) fn is_server(&self, id: TransactionId) -> bool {
        self.table.is_server(id)
    }

    /// Whether transaction `id` is live (it may be lingering after its final response).
    pub fn is_live(&self, id: TransactionId) -> bool {
        self.table.context(id).is_some()
    }

    /// Where responses of server transaction `id` go, or where client transaction `id` sends.
    pub fn peer_of(&self, id: TransactionId) -> Option<(SocketAddr, Protocol)> {
        self.table.context(id).map(|ctx| (ctx.peer, ctx.protocol))
    }

    /// Builds the CANCEL for the pending INVITE of client transaction `id` (§9.1).
    pub fn cancel_for(&self, id: TransactionId) -> Option<Request> {
        let invite = self.table.context(id)?.request.as_deref()?;
        mirror_invite(invite, Method::Cancel, invite.headers.get(HeaderName::To)?)
    }
}

/// A request that mirrors `invite` the way CANCEL (§9.1) and the ACK for a failure
/// (§17.1.1.3) must: same Request-URI, the INVITE's top Via only, its From, Call-ID, Route and
/// Max-Forwards, the CSeq number with `method`, and the given To.
fn mirror_invite(invite: &Request, method: Method, to: &Header) -> Option<Request> {
    let mut request = Request::builder(method.clone(), invite.uri.clone()).build();
    request.headers = session_sip::Headers::new();
    let top_via = invite.headers.values(HeaderName::Via).next()?;
    request
        .headers
        .push(Header::new(HeaderName::Via, top_via.to_owned()));
    for header in invite.headers.iter() {
        if matches!(
            header.name(),
            HeaderName::From | HeaderName::CallId | HeaderName::Route | HeaderName::MaxForwards
        ) {
            request.headers.push(header.clone());
        }
    }
    request.headers.push(to.clone());
    let seq = invite.cseq().ok()?.seq;
    request.headers.push(Header::new(
        HeaderName::CSeq,
        format!("{seq} {}", method.as_str()),
    ));
    request
        .headers
        .push(Header::new(HeaderName::ContentLength, "0"));
    Some(request)
}

/// The ACK for a failure response, built by the INVITE client transaction (§17.1.1.3).
fn ack_for_failure(invite: &Request, response: &Response) -> Bytes {
    // The response's To carries the peer's tag; a response without To was already dropped by
    // validation, so the fallback (the INVITE's To) never goes on the wire in practice.
    let to = response
        .headers
        .get(HeaderName::To)
        .or_else(|| invite.headers.get(HeaderName::To));
    to.and_then(|to| mirror_invite(invite, Method::Ack, to))
        .map(|ack| ack.to_bytes())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer reusing one branch under many sent-by values makes as many server
    /// transactions (§17.2.3); their keys must not all share a hash, or each lookup walks
    /// them all (a hash flood needing no knowledge of the hasher's secret).
    #[test]
    fn server_keys_sharing_a_branch_spread_over_the_hash() {
        use std::hash::BuildHasher;
        let state = SeededState::derived_from(&fastrand::Rng::with_seed(7));
        let method = Method::Options;
        let hash = |host: &[u8], port| {
            let mut hasher = state.build_hasher();
            KeyRef::Server {
                branch: b"z9hG4bK-same",
                host,
                port,
                method: &method,
            }
            .hash_into(&mut hasher);
            hasher.finish()
        };
        let mut hashes: Vec<u64> = (1..=1000u16)
            .map(|port| hash(b"10.0.0.1", Some(port)))
            .collect();
        hashes.extend((0..=255u8).map(|last| hash(format!("10.0.0.{last}").as_bytes(), None)));
        let count = hashes.len();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), count, "every sent-by its own hash");
    }

    #[test]
    fn joined_keys_are_the_two_parts() {
        let long = [b'x'; 200];
        for (a, b) in [
            (&b"z9hG4bK-1"[..], &b"10.0.0.1"[..]),
            (&[], &[]),
            (&long, b"h"),
            (b"z9", &long),
        ] {
            let expected: Vec<u8> = a.iter().chain(b).copied().collect();
            assert_eq!(&*joined(a, b), &expected[..]);
            assert_eq!(key_parts(&joined(a, b), a.len()), (a, b));
        }
        assert_eq!(std::mem::size_of::<Key>(), 56, "a key stays small");
    }

    #[test]
    fn dotted_quads_read_as_the_standard_parser_reads_them() {
        let hosts = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "0.0.0.00",
            "1..2.3",
            "1.2.3.",
            ".1.2.3",
            "a.b.c.d",
            "1.2.3.4a",
            "+1.2.3.4",
            "1.2.3.-4",
            "1000.1.1.1",
            "192.168.001.1",
            "10.0.0.255",
            "",
            "example.com",
            "::1",
            "1.2.3.4 ",
            " 1.2.3.4",
        ];
        for host in hosts {
            let standard = host.parse::<std::net::Ipv4Addr>().ok();
            match dotted_quad(host.as_bytes()) {
                Some(quad) => assert_eq!(Some(quad), standard, "{host}"),
                None => assert!(
                    standard.is_none() || host.contains(' '),
                    "{host} left to the parser"
                ),
            }
        }
        let source: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(host_is("10.0.0.1", source));
        assert!(!host_is("10.0.0.10", source));
        assert!(!host_is("010.0.0.1", source));
        assert!(host_is("[::1]", "::1".parse().unwrap_or(source)));
        assert!(!host_is("10.0.0.1", "::1".parse().unwrap_or(source)));
    }
}
