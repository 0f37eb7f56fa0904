//! Client digest authentication and the REGISTER client against a scripted registrar and proxy
//! on loopback (a raw UDP socket checking credentials with session-auth's `DigestServer`), in
//! virtual time: tokio's clock is paused and jumps to the next timer whenever every task
//! waits, so refreshes due in 30 s and back-offs of minutes take milliseconds, at exact
//! instants.

// Test helpers outside #[test] functions may unwrap and panic: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_auth::{Algorithm, DigestServer, Ha1, HashFunction, Verdict};
use session_core::crates::sip::{Header, HeaderName, Message, Method, Request, Response};
use session_core::{
    CallOptions, CallState, Credentials, FailureReason, RegisterOptions, RegistrationState,
    SessionError, SessionManager, StatusCode, Uri,
};
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};
use support::signaling_only;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Generous in virtual time: only a bug makes a test wait this long.
const LIMIT: Duration = Duration::from_secs(600);

fn users(user: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
    (user == "alice").then(|| Ha1::from_password(hash, user, realm, "wonderland"))
}

/// Alice's password for the realms of the test's registrar, proxy and callee.
fn alice(password: &'static str) -> impl Fn(&str) -> Option<Credentials> + Send + Sync {
    move |realm: &str| {
        matches!(realm, "registrar.test" | "proxy.test" | "bob.test")
            .then(|| Credentials::password("alice", password))
    }
}

/// A registrar, proxy or UAS on a raw UDP socket, checking credentials in one realm.
struct Server {
    socket: UdpSocket,
    digest: DigestServer,
    rng: fastrand::Rng,
}

impl Server {
    async fn bind(realm: &str, proxy: bool, algorithms: &[Algorithm]) -> Self {
        Self {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            digest: DigestServer::builder(realm, b"the test server's secret, 16+ bytes")
                .algorithms(algorithms.iter().copied())
                .proxy(proxy)
                .build()
                .unwrap(),
            rng: fastrand::Rng::with_seed(3),
        }
    }

    fn uri(&self) -> String {
        format!("sip:{}", self.socket.local_addr().unwrap())
    }

    /// The next request (responses skipped), or `None` if none comes within `limit`.
    async fn next_within(&self, limit: Duration) -> Option<(Request, SocketAddr)> {
        let mut buf = vec![0u8; 65_535];
        tokio::time::timeout(limit, async {
            loop {
                let (len, from) = self.socket.recv_from(&mut buf).await.unwrap();
                if let Message::Request(request) = Message::parse(buf[..len].to_vec()).unwrap() {
                    return (request, from);
                }
            }
        })
        .await
        .ok()
    }

    async fn next(&self) -> (Request, SocketAddr) {
        self.next_within(LIMIT).await.expect("a request in time")
    }

    /// The next request of `method`, skipping others (retransmissions, ACKs …).
    async fn next_of(&self, method: Method) -> (Request, SocketAddr) {
        loop {
            let (request, from) = self.next().await;
            if request.method == method {
                return (request, from);
            }
        }
    }

    async fn send(&self, response: &Response, to: SocketAddr) {
        self.socket.send_to(&response.to_bytes(), to).await.unwrap();
    }

    /// The challenge for `request`, or `None` when its credentials are right.
    fn check(&mut self, request: &Request) -> Option<Response> {
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        match self
            .digest
            .verify_request(request, &users, wall, &mut self.rng)
        {
            Verdict::Authorized { .. } => None,
            Verdict::Challenge(challenge) => {
                let mut response = Response::from_request(request, challenge.status);
                for (name, value) in challenge.headers() {
                    response.headers.push(Header::new(name, value.to_owned()));
                }
                Some(response)
            }
            other => panic!("unexpected verdict {other:?}"),
        }
    }

    /// Challenges `request` (it must carry no or wrong credentials) and sends the challenge.
    async fn challenge(&mut self, request: &Request, from: SocketAddr) {
        let challenge = self.check(request).expect("a challenge");
        self.send(&challenge, from).await;
    }
}

fn seq(request: &Request) -> u32 {
    request.cseq().unwrap().seq
}

/// The 200 to a REGISTER: its Contact bound for `expires` seconds.
fn registered(request: &Request, expires: u32) -> Response {
    let mut ok = Response::from_request(request, StatusCode::OK);
    let contact = request.headers.get_str(HeaderName::Contact).unwrap();
    ok.headers.push(Header::new(
        HeaderName::Contact,
        format!("{contact};expires={expires}"),
    ));
    ok
}

async fn manager(password: &'static str) -> SessionManager {
    signaling_only()
        .credentials(alice(password))
        .start()
        .await
        .unwrap()
}

/// MD5 and SHA-256: the first REGISTER is challenged, the second carries credentials with the
/// same Call-ID and From tag and the next CSeq; the refresh comes at half of a 60 s expiry,
/// pre-authorized with the next nonce count; unregistering sends Expires: 0.
async fn register_refresh_unregister(algorithm: Algorithm) {
    let mut registrar = Server::bind("registrar.test", false, &[algorithm]).await;
    let manager = manager("wonderland").await;
    let registration = manager
        .register(
            RegisterOptions::new(&registrar.uri(), "sip:alice@registrar.test")
                .expires(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(registration.state(), RegistrationState::Registering);

    let (first, from) = registrar.next_of(Method::Register).await;
    assert_eq!(first.headers.count(HeaderName::Authorization), 0);
    assert_eq!(first.headers.get_str(HeaderName::Expires), Some("60"));
    assert_eq!(first.uri.as_str(), registrar.uri());
    assert_eq!(first.to().unwrap().uri_str(), "sip:alice@registrar.test");
    registrar.challenge(&first, from).await;

    let (second, from) = registrar.next_of(Method::Register).await;
    assert_eq!(second.call_id().unwrap(), first.call_id().unwrap());
    assert_eq!(second.from().unwrap().tag(), first.from().unwrap().tag());
    assert_eq!(seq(&second), seq(&first) + 1);
    let credentials = second.headers.get_str(HeaderName::Authorization).unwrap();
    assert!(
        credentials.contains(&format!("algorithm={algorithm}")),
        "{credentials}"
    );
    assert!(
        registrar.check(&second).is_none(),
        "the registrar accepts it"
    );
    registrar.send(&registered(&second, 60), from).await;
    assert_eq!(
        registration.registered().await.unwrap(),
        Duration::from_secs(60)
    );
    let RegistrationState::Registered { contacts, .. } = registration.state() else {
        panic!("{:?}", registration.state())
    };
    assert_eq!(contacts.len(), 1);
    let registered_at = Instant::now();

    // The refresh, at half the granted 60 s, pre-authorized.
    let (refresh, from) = registrar.next_of(Method::Register).await;
    let after = registered_at.elapsed();
    assert!(
        (Duration::from_secs(30)..Duration::from_millis(30_050)).contains(&after),
        "refreshed after {after:?}"
    );
    assert_eq!(refresh.call_id().unwrap(), first.call_id().unwrap());
    assert_eq!(seq(&refresh), seq(&second) + 1);
    let credentials = refresh.headers.get_str(HeaderName::Authorization).unwrap();
    assert!(credentials.contains("nc=00000002"), "{credentials}");
    assert!(registrar.check(&refresh).is_none());
    registrar.send(&registered(&refresh, 60), from).await;

    // Unregister: Expires: 0 for our Contact, answered.
    let answer = async {
        let (removal, from) = registrar.next_of(Method::Register).await;
        assert_eq!(removal.headers.get_str(HeaderName::Expires), Some("0"));
        assert_eq!(seq(&removal), seq(&refresh) + 1);
        assert_eq!(
            removal.headers.get_str(HeaderName::Contact),
            first.headers.get_str(HeaderName::Contact)
        );
        registrar
            .send(&Response::from_request(&removal, StatusCode::OK), from)
            .await;
    };
    let watch = registration.watch();
    let (result, ()) = tokio::join!(registration.unregister(), answer);
    result.unwrap();
    assert_eq!(*watch.borrow(), RegistrationState::Unregistered);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn register_with_md5_digest_refreshes_before_expiry_and_unregisters() {
    register_refresh_unregister(Algorithm::Md5).await;
}

#[tokio::test(start_paused = true)]
async fn register_with_sha256_digest_refreshes_before_expiry_and_unregisters() {
    register_refresh_unregister(Algorithm::Sha256).await;
}

#[tokio::test(start_paused = true)]
async fn interval_too_brief_is_retried_with_min_expires() {
    let registrar = Server::bind("registrar.test", false, &[Algorithm::Md5]).await;
    let manager = manager("wonderland").await;
    let registration = manager
        .register(
            RegisterOptions::new(&registrar.uri(), "sip:alice@registrar.test")
                .expires(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let (first, from) = registrar.next_of(Method::Register).await;
    let mut brief = Response::from_request(&first, StatusCode::INTERVAL_TOO_BRIEF);
    brief
        .headers
        .push(Header::new(HeaderName::MinExpires, "120"));
    registrar.send(&brief, from).await;
    let (second, from) = registrar.next_of(Method::Register).await;
    assert_eq!(second.headers.get_str(HeaderName::Expires), Some("120"));
    assert_eq!(seq(&second), seq(&first) + 1);
    assert_eq!(second.call_id().unwrap(), first.call_id().unwrap());
    registrar.send(&registered(&second, 120), from).await;
    assert_eq!(
        registration.registered().await.unwrap(),
        Duration::from_secs(120)
    );
    drop(registration);
    // Dropped: unregistered without waiting.
    let (removal, _) = registrar.next_of(Method::Register).await;
    assert_eq!(removal.headers.get_str(HeaderName::Expires), Some("0"));
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_after_retry_after_and_a_shutdown_unregisters() {
    let registrar = Server::bind("registrar.test", false, &[Algorithm::Md5]).await;
    let manager = manager("wonderland").await;
    let registration = manager
        .register(RegisterOptions::new(
            &registrar.uri(),
            "sip:alice@registrar.test",
        ))
        .await
        .unwrap();
    let (first, from) = registrar.next_of(Method::Register).await;
    assert_eq!(first.headers.get_str(HeaderName::Expires), Some("3600"));
    let mut busy = Response::from_request(&first, StatusCode::SERVICE_UNAVAILABLE);
    busy.headers.push(Header::new(HeaderName::RetryAfter, "17"));
    registrar.send(&busy, from).await;
    let failed = registration
        .wait_for(|s| matches!(s, RegistrationState::Failed { .. }))
        .await;
    assert_eq!(
        failed,
        RegistrationState::Failed {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_in: Some(Duration::from_secs(17))
        }
    );
    let failed_at = Instant::now();
    let (second, from) = registrar.next_of(Method::Register).await;
    let after = failed_at.elapsed();
    assert!(
        (Duration::from_secs(17)..Duration::from_millis(17_050)).contains(&after),
        "retried after {after:?}"
    );
    registrar.send(&registered(&second, 3600), from).await;
    registration.registered().await.unwrap();

    // The manager's shutdown unregisters and waits for the answer.
    let answer = async {
        let (removal, from) = registrar.next_of(Method::Register).await;
        assert_eq!(removal.headers.get_str(HeaderName::Expires), Some("0"));
        registrar
            .send(&Response::from_request(&removal, StatusCode::OK), from)
            .await;
    };
    tokio::join!(manager.shutdown(), answer);
    assert_eq!(registration.state(), RegistrationState::Unregistered);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_password_fails_the_registration_with_401_after_exactly_one_retry() {
    let mut registrar = Server::bind("registrar.test", false, &[Algorithm::Sha256]).await;
    let manager = manager("not the password").await;
    let registration = manager
        .register(RegisterOptions::new(
            &registrar.uri(),
            "sip:alice@registrar.test",
        ))
        .await
        .unwrap();
    let (first, from) = registrar.next_of(Method::Register).await;
    registrar.challenge(&first, from).await;
    let (second, from) = registrar.next_of(Method::Register).await;
    assert!(second.headers.get_str(HeaderName::Authorization).is_some());
    registrar.challenge(&second, from).await;
    let error = registration.registered().await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(
        registration.state(),
        RegistrationState::Failed {
            status: StatusCode::UNAUTHORIZED,
            retry_in: None
        }
    );
    // No third REGISTER, however long we wait.
    assert!(
        registrar
            .next_within(Duration::from_secs(3600))
            .await
            .is_none()
    );
    // Nothing was bound: unregistering sends nothing.
    registration.unregister().await.unwrap();
    assert!(
        registrar
            .next_within(Duration::from_secs(60))
            .await
            .is_none()
    );
    manager.shutdown().await;
}

/// The 200 to an INVITE (no SDP: signaling only) with the callee's Contact.
fn answered(invite: &Request, contact: SocketAddr) -> Response {
    let mut ok = Response::from_request(invite, StatusCode::OK);
    ok.headers.push(Header::new(
        HeaderName::Contact,
        format!("<sip:bob@{contact}>"),
    ));
    ok
}

#[tokio::test(start_paused = true)]
async fn an_invite_challenged_by_the_proxy_is_resent_and_acked_with_credentials_and_a_challenged_bye_is_resent()
 {
    let mut proxy = Server::bind("proxy.test", true, &[Algorithm::Sha256, Algorithm::Md5]).await;
    let mut callee = Server::bind("bob.test", false, &[Algorithm::Md5]).await;
    let manager = signaling_only()
        .credentials(alice("wonderland"))
        .outbound_proxy(Uri::parse(&proxy.uri()).unwrap())
        .start()
        .await
        .unwrap();
    let call = manager.call("sip:bob@proxy.test").await.unwrap();

    let (first, from) = proxy.next_of(Method::Invite).await;
    assert_eq!(first.headers.count(HeaderName::ProxyAuthorization), 0);
    proxy.challenge(&first, from).await;
    // The 407 is ACKed without credentials (§17.1.1.3), then the INVITE goes again.
    let (ack, _) = proxy.next_of(Method::Ack).await;
    assert_eq!(ack.headers.count(HeaderName::ProxyAuthorization), 0);
    let (second, from) = proxy.next_of(Method::Invite).await;
    assert_eq!(second.call_id().unwrap(), first.call_id().unwrap());
    assert_eq!(second.from().unwrap().tag(), first.from().unwrap().tag());
    assert_eq!(seq(&second), seq(&first) + 1);
    assert_eq!(second.body, first.body);
    let credentials = second
        .headers
        .get_str(HeaderName::ProxyAuthorization)
        .unwrap()
        .to_owned();
    assert!(credentials.contains("algorithm=SHA-256"), "{credentials}");
    assert!(proxy.check(&second).is_none(), "the proxy accepts it");
    // The callee answers (its Contact is the other socket); the ACK carries the credentials.
    let callee_addr = callee.socket.local_addr().unwrap();
    proxy.send(&answered(&second, callee_addr), from).await;
    support::within(call.answered()).await.unwrap();
    let (ack, _) = callee.next_of(Method::Ack).await;
    assert_eq!(seq(&ack), seq(&second));
    assert_eq!(
        ack.headers.get_str(HeaderName::ProxyAuthorization),
        Some(credentials.as_str())
    );

    // INFO challenged by the callee in a realm alice has no password for: rejected with 401.
    let picky = async {
        let (info, from) = callee.next_of(Method::Info).await;
        let mut challenge = Response::from_request(&info, StatusCode::UNAUTHORIZED);
        challenge.headers.push(Header::new(
            HeaderName::WwwAuthenticate,
            r#"Digest realm="nobody.test", nonce="n1", algorithm=MD5"#,
        ));
        callee.send(&challenge, from).await;
    };
    let (sent, ()) = tokio::join!(call.send_info("application/x-test", "one"), picky);
    match sent {
        Err(SessionError::Rejected { status, .. }) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        other => panic!("{other:?}"),
    }

    // BYE challenged by the callee: re-sent with credentials and the next CSeq.
    call.hangup().await.unwrap();
    let (bye, from) = callee.next_of(Method::Bye).await;
    callee.challenge(&bye, from).await;
    let (again, from) = callee.next_of(Method::Bye).await;
    assert_eq!(seq(&again), seq(&bye) + 1);
    assert_eq!(again.call_id().unwrap(), bye.call_id().unwrap());
    assert!(callee.check(&again).is_none(), "the callee accepts it");
    callee
        .send(&Response::from_request(&again, StatusCode::OK), from)
        .await;
    assert_eq!(call.ended().await, CallState::Terminated);
    support::assert_manager_released(&manager).await;
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_with_the_wrong_password_fails_with_407_after_exactly_one_retry() {
    let mut proxy = Server::bind("proxy.test", true, &[Algorithm::Md5]).await;
    let manager = signaling_only()
        .outbound_proxy(Uri::parse(&proxy.uri()).unwrap())
        .start()
        .await
        .unwrap();
    // The call's own credentials (the manager has none).
    let call = manager
        .call_with(
            "sip:bob@proxy.test",
            CallOptions::default().credentials(alice("not the password")),
        )
        .await
        .unwrap();
    let (first, from) = proxy.next_of(Method::Invite).await;
    proxy.challenge(&first, from).await;
    let (second, from) = proxy.next_of(Method::Invite).await;
    assert!(
        second
            .headers
            .get_str(HeaderName::ProxyAuthorization)
            .is_some()
    );
    proxy.challenge(&second, from).await;
    assert_eq!(
        call.ended().await,
        CallState::Failed(FailureReason::Rejected(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED
        ))
    );
    // Only ACKs for the 407s follow, never a third INVITE.
    while let Some((request, _)) = proxy.next_within(Duration::from_secs(64)).await {
        assert_eq!(request.method, Method::Ack, "{request:?}");
    }
    support::assert_manager_released(&manager).await;
    manager.shutdown().await;
}

/// Reads from `stream` until `buf` holds a whole message without a body (or a bare CRLFCRLF
/// ping); returns it and keeps what follows in `buf`.
async fn next_frame(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return buf.drain(..end + 4).collect();
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

// In real time: under tokio's paused clock the driver hands every ping to the connection (its
// wire trace shows them) but only the first reaches the peer's socket — not understood yet,
// and not seen in real time. A one-second Flow-Timer keeps this test at three seconds; only
// its lower bounds are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_the_registration_keeps_its_flow_alive_with_crlf_pings_at_the_flow_timer() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registrar = format!("sip:{};transport=tcp", listener.local_addr().unwrap());
    let manager = manager("wonderland").await;
    let registration = manager
        .register(RegisterOptions::new(&registrar, "sip:alice@registrar.test"))
        .await
        .unwrap();
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let frame = next_frame(&mut stream, &mut buf).await;
    let Message::Request(register) = Message::parse(frame).unwrap() else {
        panic!("a REGISTER")
    };
    let via = register.headers.get_str(HeaderName::Via).unwrap();
    assert!(via.starts_with("SIP/2.0/TCP"), "{via}");
    let contact = register.headers.get_str(HeaderName::Contact).unwrap();
    assert!(contact.contains("transport=tcp"), "{contact}");
    // RFC 5626 §4.4.1: the registrar asks for a ping every second.
    let mut ok = registered(&register, 3600);
    ok.headers.push(Header::other("Flow-Timer", "1").unwrap());
    stream.write_all(&ok.to_bytes()).await.unwrap();
    registration.registered().await.unwrap();
    let registered_at = Instant::now();
    for round in 1..=3u32 {
        let ping = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut stream, &mut buf))
            .await
            .expect("a keep-alive ping");
        assert_eq!(ping, b"\r\n\r\n", "round {round}");
        // Each interval is between 80 % and 100 % of the Flow-Timer: never earlier than
        // 0.8 s a round; the upper bound leaves room for a loaded machine.
        let after = registered_at.elapsed();
        assert!(
            after >= Duration::from_millis(800 * u64::from(round))
                && after <= Duration::from_secs(u64::from(round) + 2),
            "ping {round} after {after:?}"
        );
    }
    drop(registration);
    let frame = next_frame(&mut stream, &mut buf).await;
    let Message::Request(removal) = Message::parse(frame).unwrap() else {
        panic!("a REGISTER")
    };
    assert_eq!(removal.headers.get_str(HeaderName::Expires), Some("0"));
    manager.shutdown().await;
}
