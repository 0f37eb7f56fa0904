//! Digest authentication inside the user agent (RFC 3261 §22.2), sans-IO and in virtual time:
//! the test plays a proxy or registrar with session-auth's `DigestServer`, reads what the user
//! agent sends as bytes and answers with bytes. A challenged request is re-sent in a new
//! transaction with the same Call-ID and From tag and the next CSeq; the layer above sees one
//! transaction id throughout; wrong credentials end the request after exactly one retry; the
//! ACK of a 2xx repeats the INVITE's credentials; ACK and CANCEL are never answered.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use session_auth::{Algorithm, Credentials, DigestServer, Ha1, Verdict};
use session_dialog::auth::Account;
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::transaction::TransactionId;
use session_dialog::ua::{OutgoingInvite, OutgoingRequest, UaConfig, UaEvent, UserAgent};
use session_sip::{HeaderName, Message, Method, Request, Response, Uri};
use session_types::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROXY: &str = "127.0.0.1:5070";

fn ua() -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: 5060,
        contact: Uri::parse("sip:alice@127.0.0.1:5060").unwrap(),
        large_requests_over_tcp: false,
        rng_seed: Some(7),
    })
}

fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn account(password: &'static str) -> Account {
    Account::new(move |realm: &str| {
        (realm == "proxy.test" || realm == "registrar.test")
            .then(|| Credentials::password("alice", password))
    })
}

fn users(user: &str, realm: &str, hash: session_auth::HashFunction) -> Option<Ha1> {
    (user == "alice").then(|| Ha1::from_password(hash, user, realm, "wonderland"))
}

/// The proxy (or registrar) side: a digest server and what it was sent.
struct Server {
    digest: DigestServer,
    rng: fastrand::Rng,
}

impl Server {
    fn new(realm: &str, proxy: bool, algorithms: &[Algorithm]) -> Self {
        Self {
            digest: DigestServer::builder(realm, b"a test secret of sixteen bytes or more")
                .algorithms(algorithms.iter().copied())
                .proxy(proxy)
                .build()
                .unwrap(),
            rng: fastrand::Rng::with_seed(1),
        }
    }

    /// The response to `request`: the challenge, or `None` when its credentials are right.
    fn check(&mut self, request: &Request) -> Option<Response> {
        match self
            .digest
            .verify_request(request, &users, wall(), &mut self.rng)
        {
            Verdict::Authorized { .. } => None,
            Verdict::Challenge(challenge) => {
                let mut response = Response::from_request(request, challenge.status);
                for (name, value) in challenge.headers() {
                    response
                        .headers
                        .push(session_sip::Header::new(name, value.to_owned()));
                }
                Some(response)
            }
            other => panic!("unexpected verdict {other:?}"),
        }
    }
}

/// Everything the user agent has to send, parsed.
fn sent(ua: &mut UserAgent) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(transmit) = ua.poll_transmit() {
        assert_eq!(transmit.destination, PROXY.parse::<SocketAddr>().unwrap());
        out.push(Message::parse(transmit.bytes).unwrap());
    }
    out
}

fn requests(ua: &mut UserAgent) -> Vec<Request> {
    sent(ua)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

fn deliver(ua: &mut UserAgent, now: Instant, response: &Response) {
    ua.handle_datagram(
        now,
        Protocol::Udp,
        PROXY.parse().unwrap(),
        &response.to_bytes(),
    );
}

fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

fn invite(ua: &mut UserAgent, now: Instant, account: Option<Account>) -> TransactionId {
    let from = Uri::parse("sip:alice@proxy.test").unwrap();
    let to = Uri::parse("sip:bob@proxy.test").unwrap();
    let (tx, _) = ua
        .invite_with(
            now,
            OutgoingInvite {
                from: &from,
                from_display: None,
                to: &to,
                destination: PROXY.parse().unwrap(),
                protocol: Protocol::Udp,
                headers: Vec::new(),
                body: Some(("application/sdp", Bytes::from_static(b"v=0\r\n"))),
                call_id: None,
                cseq: None,
                from_tag: None,
                account,
                dscp: None,
            },
        )
        .unwrap();
    tx
}

fn one(requests: Vec<Request>, method: Method) -> Request {
    let mut matching: Vec<Request> = requests
        .into_iter()
        .filter(|r| r.method == method)
        .collect();
    assert_eq!(matching.len(), 1, "one {method:?}");
    matching.remove(0)
}

/// Lets every transaction end (Timers D, K, M …) and checks the user agent holds nothing.
fn drains(ua: &mut UserAgent, mut now: Instant) {
    for _ in 0..200 {
        now += Duration::from_secs(1);
        ua.handle_timeout(now);
        let _ = sent(ua);
        let _ = events(ua);
    }
    assert_eq!(ua.state_count(), 0, "the user agent drained");
}

#[test]
fn an_invite_challenged_by_a_proxy_is_resent_with_the_same_call_id_and_from_tag_and_the_ack_carries_the_credentials()
 {
    let mut ua = ua();
    let mut proxy = Server::new("proxy.test", true, &[Algorithm::Sha256, Algorithm::Md5]);
    let start = Instant::now();
    let tx = invite(&mut ua, start, Some(account("wonderland")));
    let first = one(requests(&mut ua), Method::Invite);
    let challenge = proxy.check(&first).expect("no credentials yet: 407");
    assert_eq!(challenge.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    deliver(&mut ua, start, &challenge);

    // The 407 is ACKed by the transaction (§17.1.1.3, no credentials on that ACK), and the
    // INVITE goes again.
    let sent_now = requests(&mut ua);
    let ack_407 = one(sent_now.clone(), Method::Ack);
    assert_eq!(ack_407.headers.count(HeaderName::ProxyAuthorization), 0);
    let second = one(sent_now, Method::Invite);
    assert_eq!(second.call_id().unwrap(), first.call_id().unwrap());
    assert_eq!(second.from().unwrap().tag(), first.from().unwrap().tag());
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    assert_ne!(
        second.top_via().unwrap().branch(),
        first.top_via().unwrap().branch(),
        "a new transaction"
    );
    assert_eq!(second.body, first.body);
    let credentials = second
        .headers
        .get_str(HeaderName::ProxyAuthorization)
        .expect("Proxy-Authorization")
        .to_owned();
    assert!(credentials.contains("algorithm=SHA-256"), "{credentials}");
    assert!(proxy.check(&second).is_none(), "the proxy accepts it");
    let seen = events(&mut ua);
    assert!(
        matches!(
            seen.as_slice(),
            [UaEvent::Challenged { tx: t, status, cseq: 2 }]
                if *t == tx && *status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
        ),
        "{seen:?}"
    );

    // The callee answers through the proxy: the ACK repeats the INVITE's credentials.
    let mut ok = Response::from_request(&second, StatusCode::OK);
    ok.headers.push(session_sip::Header::new(
        HeaderName::Contact,
        "<sip:bob@127.0.0.1:5070>",
    ));
    deliver(&mut ua, start, &ok);
    let ack = one(requests(&mut ua), Method::Ack);
    assert_eq!(ack.cseq().unwrap().seq, 2);
    assert_eq!(
        ack.headers.get_str(HeaderName::ProxyAuthorization),
        Some(credentials.as_str())
    );
    let seen = events(&mut ua);
    let [
        UaEvent::Response {
            tx: answered,
            response,
            dialog: Some(dialog),
        },
    ] = seen.as_slice()
    else {
        panic!("{seen:?}")
    };
    assert_eq!(
        *answered, tx,
        "the layer above sees the first transaction's id"
    );
    assert_eq!(response.status, StatusCode::OK);

    // BYE in the dialog is not challenged by this proxy: it goes once, with the next CSeq.
    ua.hangup(start, dialog).unwrap();
    let bye = one(requests(&mut ua), Method::Bye);
    assert_eq!(bye.cseq().unwrap().seq, 3);
    deliver(
        &mut ua,
        start,
        &Response::from_request(&bye, StatusCode::OK),
    );
    drains(&mut ua, start);
}

#[test]
fn wrong_credentials_end_the_invite_after_exactly_one_retry_with_the_407() {
    let mut ua = ua();
    let mut proxy = Server::new("proxy.test", true, &[Algorithm::Md5]);
    let now = Instant::now();
    let tx = invite(&mut ua, now, Some(account("not the password")));
    let mut invites = 0;
    let mut last = None;
    for _ in 0..5 {
        let Some(request) = requests(&mut ua)
            .into_iter()
            .find(|r| r.method == Method::Invite)
        else {
            break;
        };
        invites += 1;
        let challenge = proxy.check(&request).expect("never accepted");
        deliver(&mut ua, now, &challenge);
        last = Some(events(&mut ua));
    }
    assert_eq!(invites, 2, "the first INVITE and one retry");
    let seen = last.unwrap();
    assert!(
        matches!(
            seen.as_slice(),
            [UaEvent::Response { tx: t, response, dialog: None }]
                if *t == tx && response.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
        ),
        "{seen:?}"
    );
    drains(&mut ua, now);
}

#[test]
fn without_an_account_or_credentials_the_challenge_is_the_final_response() {
    let mut ua = ua();
    let mut proxy = Server::new("elsewhere.test", true, &[Algorithm::Md5]);
    let now = Instant::now();
    // No account: nothing is answered.
    let tx = invite(&mut ua, now, None);
    let request = one(requests(&mut ua), Method::Invite);
    deliver(&mut ua, now, &proxy.check(&request).unwrap());
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Response { tx: t, response, .. }]
            if *t == tx && response.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
    ));
    // An account with nothing for this realm: the same.
    let tx = invite(&mut ua, now, Some(account("wonderland")));
    let request = one(requests(&mut ua), Method::Invite);
    deliver(&mut ua, now, &proxy.check(&request).unwrap());
    assert!(requests(&mut ua).iter().all(|r| r.method == Method::Ack));
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Response { tx: t, response, .. }]
            if *t == tx && response.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
    ));
    drains(&mut ua, now);
}

#[test]
fn a_cancel_after_the_retry_reaches_the_invite_in_flight_and_a_cancelled_invite_is_not_retried() {
    let mut ua = ua();
    let mut proxy = Server::new("proxy.test", true, &[Algorithm::Md5]);
    let now = Instant::now();
    let tx = invite(&mut ua, now, Some(account("wonderland")));
    let first = one(requests(&mut ua), Method::Invite);
    deliver(&mut ua, now, &proxy.check(&first).unwrap());
    let second = one(requests(&mut ua), Method::Invite);
    let _ = events(&mut ua);
    // Ringing, then the caller gives up: the CANCEL names the re-sent INVITE's branch.
    deliver(
        &mut ua,
        now,
        &Response::from_request(&second, StatusCode::RINGING),
    );
    let seen = events(&mut ua);
    assert!(matches!(seen.as_slice(), [UaEvent::Response { tx: t, .. }] if *t == tx));
    ua.cancel(now, tx).unwrap();
    let cancel = one(requests(&mut ua), Method::Cancel);
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        second.top_via().unwrap().branch()
    );
    assert_eq!(cancel.cseq().unwrap().seq, second.cseq().unwrap().seq);
    assert_eq!(cancel.headers.count(HeaderName::ProxyAuthorization), 0);
    deliver(
        &mut ua,
        now,
        &Response::from_request(&cancel, StatusCode::OK),
    );
    deliver(
        &mut ua,
        now,
        &Response::from_request(&second, StatusCode::REQUEST_TERMINATED),
    );
    drains(&mut ua, now);

    // Cancelled before any answer, then challenged: the 407 ends it, no retry.
    let mut ua = self::ua();
    let tx = invite(&mut ua, now, Some(account("wonderland")));
    let first = one(requests(&mut ua), Method::Invite);
    ua.cancel(now, tx).unwrap();
    deliver(&mut ua, now, &proxy.check(&first).unwrap());
    assert!(requests(&mut ua).iter().all(|r| r.method == Method::Ack));
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Response { response, .. }]
            if response.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
    ));
    drains(&mut ua, now);
}

fn register(
    ua: &mut UserAgent,
    now: Instant,
    account: &Account,
    cseq: u32,
    call_id: Option<session_types::CallId>,
    preauthorize: bool,
) -> (TransactionId, session_types::CallId) {
    let aor = Uri::parse("sip:alice@registrar.test").unwrap();
    let registrar = Uri::parse("sip:registrar.test").unwrap();
    ua.request_out_of_dialog(
        now,
        OutgoingRequest {
            method: Method::Register,
            uri: &registrar,
            from: &aor,
            from_display: None,
            from_tag: Some("fixed"),
            to: &aor,
            destination: PROXY.parse().unwrap(),
            protocol: Protocol::Udp,
            headers: vec![
                session_sip::Header::new(HeaderName::Contact, "<sip:alice@127.0.0.1:5060>"),
                session_sip::Header::new(HeaderName::Expires, "3600"),
            ],
            body: None,
            call_id,
            cseq: Some(cseq),
            account: Some(account.clone()),
            preauthorize,
        },
    )
    .unwrap()
}

#[test]
fn a_register_answers_a_sha256_401_and_a_refresh_is_preauthorized_with_the_next_nonce_count() {
    let mut ua = ua();
    let mut registrar = Server::new("registrar.test", false, &[Algorithm::Sha256]);
    let account = account("wonderland");
    let now = Instant::now();
    let (tx, call_id) = register(&mut ua, now, &account, 1, None, true);
    let first = one(requests(&mut ua), Method::Register);
    assert_eq!(first.headers.count(HeaderName::Authorization), 0);
    deliver(&mut ua, now, &registrar.check(&first).unwrap());
    let second = one(requests(&mut ua), Method::Register);
    assert_eq!(second.cseq().unwrap().seq, 2);
    assert_eq!(second.call_id().unwrap(), call_id.as_str());
    assert_eq!(second.from().unwrap().tag(), Some("fixed"));
    let credentials = second.headers.get_str(HeaderName::Authorization).unwrap();
    assert!(credentials.contains("algorithm=SHA-256"), "{credentials}");
    assert!(credentials.contains("nc=00000001"), "{credentials}");
    assert!(
        registrar.check(&second).is_none(),
        "the registrar accepts it"
    );
    deliver(
        &mut ua,
        now,
        &Response::from_request(&second, StatusCode::OK),
    );
    let seen = events(&mut ua);
    assert!(
        matches!(
            seen.as_slice(),
            [UaEvent::Challenged { tx: a, status, cseq: 2 }, UaEvent::Response { tx: b, response, dialog: None }]
                if *a == tx && *b == tx && *status == StatusCode::UNAUTHORIZED
                    && response.status == StatusCode::OK
        ),
        "{seen:?}"
    );

    // The refresh goes with credentials at once (same nonce, next count) and is accepted.
    let (tx, _) = register(&mut ua, now, &account, 3, Some(call_id), true);
    let refresh = one(requests(&mut ua), Method::Register);
    let credentials = refresh.headers.get_str(HeaderName::Authorization).unwrap();
    assert!(credentials.contains("nc=00000002"), "{credentials}");
    assert!(registrar.check(&refresh).is_none());
    deliver(
        &mut ua,
        now,
        &Response::from_request(&refresh, StatusCode::OK),
    );
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Response { tx: t, response, .. }] if *t == tx && response.status == StatusCode::OK
    ));
    drains(&mut ua, now);
}

#[test]
fn a_bye_challenged_after_the_dialog_ended_is_resent_with_credentials() {
    let mut ua = ua();
    let mut uas = Server::new("registrar.test", false, &[Algorithm::Md5]);
    let now = Instant::now();
    let tx = invite(&mut ua, now, Some(account("wonderland")));
    let request = one(requests(&mut ua), Method::Invite);
    let mut ok = Response::from_request(&request, StatusCode::OK);
    ok.headers.push(session_sip::Header::new(
        HeaderName::Contact,
        "<sip:bob@127.0.0.1:5070>",
    ));
    deliver(&mut ua, now, &ok);
    let ack = one(requests(&mut ua), Method::Ack);
    assert_eq!(ack.headers.count(HeaderName::ProxyAuthorization), 0);
    let seen = events(&mut ua);
    let [
        UaEvent::Response {
            tx: t,
            dialog: Some(dialog),
            ..
        },
    ] = seen.as_slice()
    else {
        panic!("{seen:?}")
    };
    assert_eq!(*t, tx);
    let bye_tx = ua.hangup(now, dialog).unwrap();
    let bye = one(requests(&mut ua), Method::Bye);
    let _ = events(&mut ua); // DialogTerminated (LocalBye): the dialog is gone already.
    deliver(&mut ua, now, &uas.check(&bye).unwrap());
    let again = one(requests(&mut ua), Method::Bye);
    assert_eq!(again.cseq().unwrap().seq, bye.cseq().unwrap().seq + 1);
    assert_eq!(again.call_id().unwrap(), bye.call_id().unwrap());
    assert_eq!(again.to().unwrap().tag(), bye.to().unwrap().tag());
    assert!(uas.check(&again).is_none());
    deliver(
        &mut ua,
        now,
        &Response::from_request(&again, StatusCode::OK),
    );
    let seen = events(&mut ua);
    assert!(
        matches!(
            seen.as_slice(),
            [UaEvent::Challenged { tx: a, .. }, UaEvent::Response { tx: b, response, .. }]
                if *a == bye_tx && *b == bye_tx && response.status == StatusCode::OK
        ),
        "{seen:?}"
    );
    drains(&mut ua, now);
}
