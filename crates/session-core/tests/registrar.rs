//! The embedded registrar and server-side digest on the wire: REGISTERs and INVITEs from a raw
//! UDP socket on loopback (credentials computed with session-auth's `DigestClient`, as a
//! phone would), checked response by response; then a call placed to a looked-up contact.
//! Registration expiry and nonce expiry run in virtual time (a paused runtime: the manager
//! reads tokio's clock, and loopback I/O in one process wakes tasks before the clock moves).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::crates::auth::{Attempt, AuthHeader, Challenge, Credentials, DigestClient};
use session_core::crates::sip::{Header, HeaderName, Message, Request, Response};
use session_core::{
    Algorithm, AuthScope, BindingChange, CallDecision, EventKind, Filter, Ha1, HashFunction,
    RegistrarConfig, ServerAuth, SessionEvent, SessionManager, SessionManagerBuilder, StatusCode,
};
use std::net::SocketAddr;
use std::time::Duration;
use support::{builder, peer, signaling_only, within};
use tokio::net::UdpSocket;

const REALM: &str = "example.com";

/// The user store: alice's password is `wonderland`; nobody else exists.
fn users() -> ServerAuth {
    ServerAuth::new(REALM, |user: &str, realm: &str, hash: HashFunction| {
        (user == "alice").then(|| Ha1::from_password(hash, user, realm, "wonderland"))
    })
}

/// A manager serving `example.com` with digest, no RTP.
async fn registrar(
    auth: ServerAuth,
    config: RegistrarConfig,
    base: SessionManagerBuilder,
) -> SessionManager {
    base.authenticate(auth)
        .registrar(config)
        .start()
        .await
        .expect("the registrar starts")
}

/// A phone speaking raw SIP over UDP: it writes REGISTERs (one Call-ID, CSeq counting up)
/// and answers challenges with a `DigestClient`.
struct Phone {
    socket: UdpSocket,
    server: SocketAddr,
    user: String,
    password: String,
    call_id: String,
    cseq: u32,
    digest: DigestClient,
    rng: fastrand::Rng,
}

impl Phone {
    async fn new(server: SocketAddr, user: &str, password: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let call_id = format!("reg-{user}-{}", socket.local_addr().unwrap().port());
        Self {
            socket,
            server,
            user: user.to_owned(),
            password: password.to_owned(),
            call_id,
            cseq: 0,
            digest: DigestClient::new(),
            rng: fastrand::Rng::with_seed(7),
        }
    }

    /// The next REGISTER (CSeq + 1) binding `contacts` (Contact values), with `expires`.
    fn request(&mut self, contacts: &[&str], expires: Option<u32>) -> Request {
        self.cseq += 1;
        let local = self.socket.local_addr().unwrap();
        let mut text = format!(
            "REGISTER sip:{REALM} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-reg-{}-{};rport\r\n\
             Max-Forwards: 70\r\n\
             To: <sip:{}@{REALM}>\r\n\
             From: <sip:{}@{REALM}>;tag=phone-{}\r\n\
             Call-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.call_id, self.cseq, self.user, self.user, self.user, self.call_id, self.cseq
        );
        for contact in contacts {
            text.push_str(&format!("Contact: {contact}\r\n"));
        }
        if let Some(expires) = expires {
            text.push_str(&format!("Expires: {expires}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match Message::parse(text.into_bytes()).unwrap() {
            Message::Request(request) => request,
            Message::Response(_) => unreachable!(),
        }
    }

    /// Sends `request` and returns its final response.
    async fn send(&self, request: &Request) -> Response {
        self.socket
            .send_to(&request.to_bytes(), self.server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        within(async {
            loop {
                let (len, _) = self.socket.recv_from(&mut buf).await.unwrap();
                if let Message::Response(r) = Message::parse(buf[..len].to_vec()).unwrap()
                    && r.status.is_final()
                {
                    return r;
                }
            }
        })
        .await
    }

    /// `request` with `headers` added.
    fn with(mut request: Request, headers: &[AuthHeader]) -> Request {
        for h in headers {
            request.headers.push(Header::new(h.name, h.value.clone()));
        }
        request
    }

    /// A whole registration as a phone does it: the REGISTER pre-authorized when a nonce is
    /// known, each 401 answered once more with credentials and the next CSeq, until a
    /// response that is not a challenge or the client gives up. Returns every final response
    /// and the credentials of the last request sent.
    async fn register(
        &mut self,
        contacts: &[&str],
        expires: Option<u32>,
    ) -> (Vec<Response>, Vec<AuthHeader>) {
        let mut attempt = Attempt::new();
        let first = self.request(contacts, expires);
        let headers = self.digest.authorize(
            &mut attempt,
            &session_core::crates::auth::DigestRequest::from_sip(&first),
            &mut self.rng,
        );
        let mut request = Self::with(first, &headers);
        let mut sent = headers;
        let mut responses = Vec::new();
        loop {
            let response = self.send(&request).await;
            let challenged = response.status == StatusCode::UNAUTHORIZED;
            responses.push(response);
            if !challenged {
                return (responses, sent);
            }
            let next = self.request(contacts, expires);
            let password = self.password.clone();
            let user = self.user.clone();
            let provider = move |_: &str| Some(Credentials::password(&user, &password));
            let Ok(headers) = self.digest.handle_response(
                &mut attempt,
                responses.last().unwrap(),
                &next,
                &provider,
                &mut self.rng,
            ) else {
                // The client refuses to loop: wrong credentials.
                return (responses, sent);
            };
            request = Self::with(next, &headers);
            sent = headers;
        }
    }
}

fn contacts(response: &Response) -> Vec<&str> {
    response.headers.values(HeaderName::Contact).collect()
}

fn challenges(response: &Response) -> Vec<Challenge> {
    response
        .headers
        .values(HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(v).unwrap())
        .collect()
}

/// The next registrar event on `events` within the time limit.
async fn next_binding_event(
    events: &mut session_core::Subscription,
) -> (String, String, BindingChange) {
    within(async {
        loop {
            let event = events.recv().await.unwrap();
            if let SessionEvent::Registrar {
                aor,
                contact,
                change,
            } = &*event
            {
                return (aor.to_string(), contact.to_string(), *change);
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_with_digest_and_a_call_to_its_looked_up_contact_is_answered() {
    let server = registrar(
        users(),
        RegistrarConfig::default().domain(REALM),
        builder(49_100..=49_199),
    )
    .await;
    let mut registered = server
        .events()
        .subscribe(Filter::kind(EventKind::Registrar));
    // Bob's manager is where alice's phone really is: its address goes into the Contact.
    // Test-only: the one or two calls of this test.
    let (incoming_tx, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    let bob = peer(builder(49_200..=49_299), move |call| {
        let _ = incoming_tx.send(call.request_uri().to_string());
        CallDecision::accept()
    })
    .await;
    let contact = format!("<sip:alice@{}>", bob.manager.local_addr());

    let mut phone = Phone::new(server.local_addr(), "alice", "wonderland").await;
    let (responses, _) = phone.register(&[&contact], Some(600)).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::OK]);
    // The challenge: one per offered algorithm, strongest first, a fresh (not stale) nonce.
    let offered = challenges(&responses[0]);
    let algorithms: Vec<Algorithm> = offered.iter().map(|c| c.algorithm).collect();
    assert_eq!(algorithms, [Algorithm::Sha256, Algorithm::Md5]);
    assert!(offered.iter().all(|c| c.realm == REALM && !c.stale));
    // The 200 lists the binding with the granted expiry.
    let ok = &responses[1];
    assert_eq!(
        contacts(ok),
        [format!(
            "<sip:alice@{}>;expires=600",
            bob.manager.local_addr()
        )]
    );
    let event = next_binding_event(&mut registered).await;
    assert_eq!(
        event,
        (
            "sip:alice@example.com".to_owned(),
            format!("sip:alice@{}", bob.manager.local_addr()),
            BindingChange::Added {
                expires: Duration::from_secs(600)
            }
        )
    );

    // The location service: one binding, authenticated as alice.
    let found = server.lookup("sip:alice@example.com");
    assert_eq!(found.len(), 1, "{found:?}");
    let binding = &found[0];
    assert_eq!(binding.authenticated_user.as_deref(), Some("alice"));
    assert_eq!(binding.source, phone.socket.local_addr().unwrap());
    assert!(server.lookup("sip:bob@example.com").is_empty());

    // A call routed to the looked-up contact reaches the phone (bob's manager) and is answered.
    let call = server.call(binding.contact.as_str()).await.unwrap();
    within(call.answered()).await.unwrap();
    let uri = within(incoming.recv()).await.unwrap();
    assert_eq!(uri, binding.contact.as_str());
    call.hangup().await.unwrap();
    within(call.ended()).await;
    support::assert_manager_released(&server).await;
    support::assert_released(&bob).await;
    server.shutdown().await;
    bob.manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_star_removal_and_interval_too_brief() {
    let server = registrar(users(), RegistrarConfig::default(), signaling_only()).await;
    let mut phone = Phone::new(server.local_addr(), "alice", "wonderland").await;
    let (responses, _) = phone
        .register(&["<sip:alice@10.0.0.1:5070>"], Some(120))
        .await;
    assert_eq!(responses.last().unwrap().status, StatusCode::OK);

    // Too brief: 423 with Min-Expires (pre-authorized with the known nonce: no 401 first).
    let (responses, _) = phone
        .register(&["<sip:alice@10.0.0.1:5070>"], Some(10))
        .await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [StatusCode::INTERVAL_TOO_BRIEF]);
    assert_eq!(
        responses[0].headers.get_str(HeaderName::MinExpires),
        Some("60")
    );
    assert_eq!(
        server.lookup("sip:alice@example.com")[0].expires_in,
        Duration::from_secs(120)
    );

    // A refresh 30 s later, and a second device with a q-value.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (responses, _) = phone
        .register(
            &["<sip:alice@10.0.0.1:5070>", "<sip:alice@10.0.0.2>;q=0.7"],
            Some(300),
        )
        .await;
    let ok = responses.last().unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        contacts(ok),
        [
            "<sip:alice@10.0.0.1:5070>;expires=300",
            "<sip:alice@10.0.0.2>;expires=300;q=0.7"
        ]
    );
    let found = server.lookup("alice@example.com");
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].q, Some(0.7));

    // `*` with Expires: 0 removes both.
    let (responses, _) = phone.register(&["*"], Some(0)).await;
    let ok = responses.last().unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert!(contacts(ok).is_empty());
    assert!(server.lookup("sip:alice@example.com").is_empty());
    assert_eq!(server.registrar_bindings(), 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_binding_is_gone_after_its_time_and_its_expiry_is_published() {
    let server = registrar(users(), RegistrarConfig::default(), signaling_only()).await;
    let mut registered = server
        .events()
        .subscribe(Filter::kind(EventKind::Registrar));
    let mut phone = Phone::new(server.local_addr(), "alice", "wonderland").await;
    let started = tokio::time::Instant::now();
    let (responses, _) = phone.register(&["<sip:alice@10.0.0.1>"], Some(60)).await;
    assert_eq!(responses.last().unwrap().status, StatusCode::OK);
    assert!(matches!(
        next_binding_event(&mut registered).await.2,
        BindingChange::Added { .. }
    ));
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(server.lookup("sip:alice@example.com").len(), 1);
    // The manager sweeps it at its expiry, on its own clock.
    let (aor, contact, change) = next_binding_event(&mut registered).await;
    assert_eq!(change, BindingChange::Expired);
    assert_eq!(
        (aor.as_str(), contact.as_str()),
        ("sip:alice@example.com", "sip:alice@10.0.0.1")
    );
    let at = started.elapsed();
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(62)).contains(&at),
        "swept at {at:?}"
    );
    assert!(server.lookup("sip:alice@example.com").is_empty());
    assert_eq!(server.registrar_bindings(), 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wrong_passwords_and_replayed_credentials_are_never_accepted() {
    let server = registrar(users(), RegistrarConfig::default(), signaling_only()).await;
    // A wrong password: challenged, answered, challenged again — the client gives up.
    let mut mallory = Phone::new(server.local_addr(), "alice", "guess").await;
    let (responses, _) = mallory.register(&["<sip:alice@10.6.6.6>"], None).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED]
    );
    assert!(
        !challenges(&responses[1])[0].stale,
        "a wrong password is no stale nonce"
    );
    // An unknown user looks the same on the wire.
    let mut nobody = Phone::new(server.local_addr(), "nobody", "x").await;
    let (responses, _) = nobody.register(&["<sip:nobody@10.6.6.6>"], None).await;
    assert!(
        responses
            .iter()
            .all(|r| r.status == StatusCode::UNAUTHORIZED)
    );
    assert!(server.lookup("sip:alice@example.com").is_empty());

    // Alice registers; then the same credentials (same nonce count) come again on a new
    // request: refused with a stale challenge, and the binding is not refreshed.
    let mut phone = Phone::new(server.local_addr(), "alice", "wonderland").await;
    let (responses, credentials) = phone.register(&["<sip:alice@10.0.0.1>"], Some(100)).await;
    assert_eq!(responses.last().unwrap().status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let replay = Phone::with(
        phone.request(&["<sip:alice@10.0.0.1>"], Some(3600)),
        &credentials,
    );
    let refused = phone.send(&replay).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(challenges(&refused).iter().all(|c| c.stale));
    assert_eq!(
        server.lookup("sip:alice@example.com")[0].expires_in,
        Duration::from_secs(90)
    );

    // Alice may not register bob's address: authenticated, but forbidden.
    let mut wrong_aor = Phone::new(server.local_addr(), "alice", "wonderland").await;
    wrong_aor.user = "bob".to_owned();
    let to_bob = wrong_aor.request(&["<sip:bob@10.0.0.9>"], None);
    let challenge = wrong_aor.send(&to_bob).await;
    let next = wrong_aor.request(&["<sip:bob@10.0.0.9>"], None);
    let provider = |_: &str| Some(Credentials::password("alice", "wonderland"));
    let headers = wrong_aor
        .digest
        .handle_response(
            &mut Attempt::new(),
            &challenge,
            &next,
            &provider,
            &mut fastrand::Rng::new(),
        )
        .unwrap();
    let forbidden = wrong_aor.send(&Phone::with(next, &headers)).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    // Malformed credentials: 400.
    let mut sloppy = Phone::new(server.local_addr(), "alice", "wonderland").await;
    let broken = Phone::with(
        sloppy.request(&["<sip:alice@10.0.0.1>"], None),
        &[AuthHeader {
            name: HeaderName::Authorization,
            value: format!("Digest username=\"alice\", realm=\"{REALM}\""),
        }],
    );
    assert_eq!(sloppy.send(&broken).await.status, StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_nonce_is_challenged_again_with_stale_true() {
    let auth = users().nonce_lifetime(Duration::from_secs(30));
    let server = registrar(auth, RegistrarConfig::default(), signaling_only()).await;
    let mut phone = Phone::new(server.local_addr(), "alice", "wonderland").await;
    let (responses, _) = phone.register(&["<sip:alice@10.0.0.1>"], Some(3600)).await;
    assert_eq!(responses.len(), 2);
    // Within the nonce's lifetime the phone's pre-authorized refresh passes at once.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (responses, _) = phone.register(&["<sip:alice@10.0.0.1>"], Some(3600)).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [StatusCode::OK]);
    // Past it, the same nonce is stale: one challenge with stale=true, then 200.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (responses, _) = phone.register(&["<sip:alice@10.0.0.1>"], Some(3600)).await;
    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::OK]);
    assert!(challenges(&responses[0]).iter().all(|c| c.stale));
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invites_are_challenged_before_any_call_and_the_handler_sees_the_user() {
    use session_core::crates::sip::Uri;
    use session_simnet::sip::ScriptedPeer;
    // Test-only: one authenticated user per call of this test.
    let (users_seen, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let bob = peer(signaling_only().authenticate(users()), move |call| {
        let _ = users_seen.send(call.authenticated_user.clone());
        CallDecision::accept()
    })
    .await;
    let server = bob.manager.local_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = Uri::parse(&bob.uri("bob")).unwrap();
    let mut caller = ScriptedPeer::new("alice", socket.local_addr().unwrap(), target);
    let phone = Phone {
        socket,
        server,
        user: "alice".into(),
        password: "wonderland".into(),
        call_id: String::new(),
        cseq: 0,
        digest: DigestClient::new(),
        rng: fastrand::Rng::with_seed(1),
    };
    // No credentials: 401, and no session was made for it.
    let invite = caller.invite();
    let challenge = phone.send(&invite).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bob.manager.active_calls(), 0);
    let ack = caller.ack_failure(&challenge);
    phone.socket.send_to(&ack.to_bytes(), server).await.unwrap();
    // Malformed credentials: 400.
    let mut broken = caller.invite();
    broken.headers.push(Header::new(
        HeaderName::Authorization,
        "Digest realm=\"example.com\", nonce",
    ));
    let refused = phone.send(&broken).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    phone
        .socket
        .send_to(&caller.ack_failure(&refused).to_bytes(), server)
        .await
        .unwrap();
    // The same Call-ID, the next CSeq, credentials (RFC 3261 §22.2): the call is answered and
    // the handler saw who.
    let mut invite = caller.invite();
    let provider = |_: &str| Some(Credentials::password("alice", "wonderland"));
    let mut client = DigestClient::new();
    let headers = client
        .handle_response(
            &mut Attempt::new(),
            &challenge,
            &invite,
            &provider,
            &mut fastrand::Rng::new(),
        )
        .unwrap();
    for h in &headers {
        invite.headers.push(Header::new(h.name, h.value.clone()));
    }
    let ok = phone.send(&invite).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(within(seen.recv()).await.unwrap().as_deref(), Some("alice"));
    caller
        .expect_response(Some(ok.to_bytes()), StatusCode::OK)
        .unwrap();
    phone
        .socket
        .send_to(&caller.ack().to_bytes(), server)
        .await
        .unwrap();
    let bye_ok = phone.send(&caller.bye()).await;
    assert_eq!(bye_ok.status, StatusCode::OK);
    support::assert_released(&bob).await;

    // Outside a dialog, MESSAGE is challenged only with AuthScope::OutOfDialog.
    caller.new_call();
    let message = caller.request(session_core::crates::sip::Method::Message);
    assert_eq!(
        phone.send(&message).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    bob.manager.shutdown().await;

    let strict = peer(
        signaling_only().authenticate(users().scope(AuthScope::OutOfDialog).proxy(true)),
        |_| CallDecision::accept(),
    )
    .await;
    let mut other = ScriptedPeer::new(
        "alice",
        phone.socket.local_addr().unwrap(),
        Uri::parse(&strict.uri("bob")).unwrap(),
    );
    let phone = Phone {
        server: strict.manager.local_addr(),
        ..phone
    };
    let message = other.request(session_core::crates::sip::Method::Message);
    let challenged = phone.send(&message).await;
    assert_eq!(challenged.status, StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert_eq!(
        challenged
            .headers
            .values(HeaderName::ProxyAuthenticate)
            .count(),
        2
    );
    let invite = other.invite();
    assert_eq!(
        phone.send(&invite).await.status,
        StatusCode::PROXY_AUTHENTICATION_REQUIRED
    );
    strict.manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_registrar_that_authenticates_needs_server_auth_and_register_is_405_without_one() {
    let refused = SessionManager::builder()
        .registrar(RegistrarConfig::default())
        .start()
        .await;
    assert!(refused.is_err());
    // No registrar: REGISTER is not a method we allow.
    let plain = signaling_only().start().await.unwrap();
    let mut phone = Phone::new(plain.local_addr(), "alice", "wonderland").await;
    let request = phone.request(&["<sip:alice@10.0.0.1>"], None);
    assert_eq!(
        phone.send(&request).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(plain.lookup("sip:alice@example.com").is_empty());
    plain.shutdown().await;
    // An open registrar (authenticate(false)) takes REGISTERs without credentials.
    let open = signaling_only()
        .registrar(RegistrarConfig::default().authenticate(false))
        .start()
        .await
        .unwrap();
    let mut phone = Phone::new(open.local_addr(), "carol", "").await;
    let request = phone.request(&["<sip:carol@10.0.0.3>"], None);
    assert_eq!(phone.send(&request).await.status, StatusCode::OK);
    assert_eq!(open.lookup("sip:carol@example.com").len(), 1);
    open.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_register_client_registers_with_digest_and_is_called_at_its_contact() {
    use session_core::{Credentials, RegisterOptions};
    let server = registrar(
        users(),
        RegistrarConfig::default().domain(REALM),
        signaling_only(),
    )
    .await;
    // Test-only: the one or two calls of this test.
    let (incoming_tx, mut incoming) = tokio::sync::mpsc::unbounded_channel();
    let phone = peer(
        signaling_only().credentials(|_: &str| Some(Credentials::password("alice", "wonderland"))),
        move |call| {
            let _ = incoming_tx.send(call.request_uri().to_string());
            CallDecision::accept()
        },
    )
    .await;
    // sip:example.com does not resolve: the REGISTERs go through the registrar's address as
    // the outbound proxy, as a phone configured with a proxy sends them.
    let registration = phone
        .manager
        .register(
            RegisterOptions::new(&format!("sip:{REALM}"), "sip:alice@example.com")
                .outbound_proxy(&format!("sip:{}", server.local_addr()))
                .expires(Duration::from_secs(300)),
        )
        .await
        .unwrap();
    let granted = within(registration.registered()).await.unwrap();
    assert_eq!(granted, Duration::from_secs(300));
    let found = server.lookup("sip:alice@example.com");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].authenticated_user.as_deref(), Some("alice"));
    assert_eq!(
        found[0].contact.port(),
        Some(phone.manager.local_addr().port()),
        "{found:?}"
    );

    let call = server.call(found[0].contact.as_str()).await.unwrap();
    within(call.answered()).await.unwrap();
    assert_eq!(
        within(incoming.recv()).await.unwrap(),
        found[0].contact.as_str()
    );
    call.hangup().await.unwrap();
    within(call.ended()).await;

    within(registration.unregister()).await.unwrap();
    assert!(server.lookup("sip:alice@example.com").is_empty());
    support::assert_manager_released(&server).await;
    support::assert_released(&phone).await;
    phone.manager.shutdown().await;
    server.shutdown().await;
}
