//! Digest authentication end to end: RFC test vectors, client/server round trips for every
//! algorithm and qop, stale nonces, replays, wrong passwords and the client's no-loop rule.
//! No sleeps, no network: time and randomness are inputs.
#![allow(clippy::panic)] // test helpers outside #[test] fns

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_auth::{
    Algorithm, Attempt, AuthHeader, Authorization, ChallengeReason, Credentials, DigestClient,
    DigestRequest, DigestServer, Error, Ha1, HashFunction, Qop, ServerChallenge, Verdict,
};
use session_sip::{HeaderName, Message, Request};
use session_types::StatusCode;

const SECRET: &[u8] = b"test secret, thirty-two bytes!!!";
const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn users(user: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
    match user {
        "alice" => Some(Ha1::from_password(hash, user, realm, "wonderland")),
        "bob" => Some(Ha1::from_password(hash, user, realm, "builder")),
        _ => None,
    }
}

fn alice(_: &str) -> Option<Credentials> {
    Some(Credentials::password("alice", "wonderland"))
}

fn challenge_of(v: Verdict) -> ServerChallenge {
    match v {
        Verdict::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

fn values(headers: &[AuthHeader]) -> Vec<&str> {
    headers.iter().map(|h| h.value.as_str()).collect()
}

// --- RFC vectors -----------------------------------------------------------------------------

/// RFC 7616 §3.9.1: the same request with MD5 and with SHA-256.
#[test]
fn rfc_7616_section_3_9_1_vectors() {
    let realm = "http-auth@example.org";
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let opaque = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
    for (alg, hash, expected) in [
        ("MD5", HashFunction::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            "SHA-256",
            HashFunction::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
        // Not in the RFC (its §3.9.2 example is known to be wrong): the same inputs with
        // SHA-512/256, computed independently with Python's hashlib.
        (
            "SHA-512-256",
            HashFunction::Sha512_256,
            "430d05014cecc49cab6fbe03176d41a1da86cbfe24a16580e22aaad928d960d0",
        ),
    ] {
        let header = format!(
            "Digest username=\"Mufasa\", realm=\"{realm}\", uri=\"/dir/index.html\", \
             algorithm={alg}, nonce=\"{nonce}\", nc=00000001, cnonce=\"{cnonce}\", qop=auth, \
             response=\"{expected}\", opaque=\"{opaque}\""
        );
        let auth = Authorization::parse(&header).unwrap();
        let ha1 = Ha1::from_password(hash, "Mufasa", realm, "Circle of Life");
        assert_eq!(
            auth.expected_response(&ha1, "GET", b"").unwrap(),
            expected,
            "{alg}"
        );
        assert!(auth.verify(&ha1, "GET", b""), "{alg}");
        assert_eq!(Authorization::parse(&auth.to_string()).unwrap(), auth);
    }
}

/// RFC 7616 §3.9.1's challenge, as the server sends it.
#[test]
fn rfc_7616_challenges_parse() {
    let md5 = session_auth::Challenge::parse(
        "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n \
         algorithm=MD5,\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n \
         opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
    )
    .unwrap();
    assert_eq!(md5.qop, [Qop::Auth, Qop::AuthInt]);
    assert_eq!(md5.algorithm, Algorithm::Md5);
}

/// RFC 2617 §3.5, plus the RFC 2069 form and MD5-sess over the same inputs (computed
/// independently with Python's hashlib).
#[test]
fn rfc_2617_section_3_5_vector_and_variants() {
    let ha1 = Ha1::from_password(
        HashFunction::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    let common = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
                  nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
                  opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
    for (extra, expected) in [
        (
            ", qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
            "6629fae49393a05397450978507c4ef1",
        ),
        ("", "670fd8c2df070c60b045671b8b24ff02"),
        (
            ", algorithm=MD5-sess, qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
            "8e3825c57e897f5a0dec6c2d4e5059d0",
        ),
    ] {
        let auth =
            Authorization::parse(&format!("{common}{extra}, response=\"{expected}\"")).unwrap();
        assert_eq!(
            auth.expected_response(&ha1, "GET", b"").unwrap(),
            expected,
            "{extra}"
        );
    }
}

/// SHA-256-sess with auth-int over a body (computed independently with Python's hashlib).
#[test]
fn sha256_sess_auth_int_vector() {
    let auth = Authorization::parse(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"abc\", \
         uri=\"sip:bob@example.com\", algorithm=SHA-256-sess, qop=auth-int, nc=0000002a, \
         cnonce=\"xyz\", response=\"6fd409724659f6e1c5764f5c36d7e540529476c89173d637ea7d415e7c78cab2\"",
    )
    .unwrap();
    let ha1 = Ha1::from_password(HashFunction::Sha256, "alice", "example.com", "wonderland");
    assert!(auth.verify(&ha1, "INVITE", b"v=0\r\n"));
    assert!(
        !auth.verify(&ha1, "INVITE", b"v=1\r\n"),
        "auth-int covers the body"
    );
}

// --- Round trips ------------------------------------------------------------------------------

/// Every algorithm with every qop, as a registrar (401) and as a proxy (407), the client
/// answering with a password or with a precomputed HA1; then a pre-authorized second request.
#[test]
fn round_trip_every_algorithm_and_qop() {
    let mut rng = fastrand::Rng::with_seed(1);
    for alg in Algorithm::ALL {
        for qop in [Qop::Auth, Qop::AuthInt] {
            for proxy in [false, true] {
                for precomputed in [false, true] {
                    let ctx = format!("{alg} {qop} proxy={proxy} ha1={precomputed}");
                    let mut server = DigestServer::builder("example.com", SECRET)
                        .algorithms([alg])
                        .qop([qop])
                        .proxy(proxy)
                        .opaque("op")
                        .build()
                        .unwrap();
                    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
                    let req = DigestRequest::new("INVITE", "sip:bob@example.com", body);
                    let c = challenge_of(server.verify(&req, [], &users, at(T0), &mut rng));
                    let expected_status = if proxy {
                        StatusCode::PROXY_AUTHENTICATION_REQUIRED
                    } else {
                        StatusCode::UNAUTHORIZED
                    };
                    assert_eq!(c.status, expected_status, "{ctx}");

                    let creds = move |realm: &str| {
                        Some(if precomputed {
                            Credentials::ha1(
                                "alice",
                                Ha1::from_password(alg.hash(), "alice", realm, "wonderland"),
                            )
                        } else {
                            Credentials::password("alice", "wonderland")
                        })
                    };
                    let mut client = DigestClient::new();
                    let mut attempt = Attempt::new();
                    let headers = client
                        .handle_challenge(
                            &mut attempt,
                            c.status,
                            c.headers(),
                            &req,
                            &creds,
                            &mut rng,
                        )
                        .unwrap();
                    assert_eq!(headers.len(), 1, "{ctx}");
                    let want_name = if proxy {
                        HeaderName::ProxyAuthorization
                    } else {
                        HeaderName::Authorization
                    };
                    assert_eq!(headers[0].name, want_name, "{ctx}");
                    let sent = Authorization::parse(&headers[0].value).unwrap();
                    assert_eq!(
                        (sent.algorithm, sent.qop, sent.nc),
                        (alg, Some(qop), Some(1))
                    );
                    assert_eq!(sent.opaque.as_deref(), Some("op"));

                    assert_eq!(
                        server.verify(&req, values(&headers), &users, at(T0 + 1), &mut rng),
                        Verdict::Authorized {
                            username: "alice".into(),
                            algorithm: alg,
                            qop
                        },
                        "{ctx}"
                    );

                    // The next request in the realm, pre-authorized: nc 2, same nonce.
                    let bye = DigestRequest::new("BYE", "sip:bob@192.0.2.2", b"");
                    let pre = client.authorize(&mut Attempt::new(), &bye, &mut rng);
                    assert_eq!(Authorization::parse(&pre[0].value).unwrap().nc, Some(2));
                    assert!(
                        matches!(
                            server.verify(&bye, values(&pre), &users, at(T0 + 2), &mut rng),
                            Verdict::Authorized { .. }
                        ),
                        "{ctx}"
                    );
                }
            }
        }
    }
}

/// The client picks the strongest challenge it can answer, whatever the server's order.
#[test]
fn client_picks_the_strongest_challenge() {
    let mut rng = fastrand::Rng::with_seed(2);
    let mut server = DigestServer::builder("example.com", SECRET)
        .algorithms([
            Algorithm::Md5,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha256,
        ])
        .qop([Qop::Auth, Qop::AuthInt])
        .build()
        .unwrap();
    let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let c = server.challenge(at(T0), &mut rng);
    assert_eq!(c.values.len(), 4);

    let mut client = DigestClient::new();
    let h = client
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &alice,
            &mut rng,
        )
        .unwrap();
    let sent = Authorization::parse(&h[0].value).unwrap();
    assert_eq!(sent.algorithm, Algorithm::Sha512_256);
    assert_eq!(
        sent.qop,
        Some(Qop::Auth),
        "auth unless auth-int is preferred"
    );
    assert!(matches!(
        server.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));

    // An HA1 for SHA-256 only answers a SHA-256 challenge (plain before -sess).
    let only_sha256 = |realm: &str| {
        Some(Credentials::ha1(
            "alice",
            Ha1::from_password(HashFunction::Sha256, "alice", realm, "wonderland"),
        ))
    };
    // (A challenge goes to one client: a nonce shared by two would collide on its counts.)
    let c = server.challenge(at(T0), &mut rng);
    let mut client = DigestClient::new().prefer_auth_int(true);
    let h = client
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &only_sha256,
            &mut rng,
        )
        .unwrap();
    let sent = Authorization::parse(&h[0].value).unwrap();
    assert_eq!(
        (sent.algorithm, sent.qop),
        (Algorithm::Sha256, Some(Qop::AuthInt))
    );
    assert!(matches!(
        server.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));

    // An HA1 for MD5 against a server that offers only SHA-256: nothing to answer with.
    let sha_only = DigestServer::builder("example.com", SECRET)
        .algorithms([Algorithm::Sha256])
        .build()
        .unwrap();
    let c = sha_only.challenge(at(T0), &mut rng);
    let md5_only = |realm: &str| {
        Some(Credentials::ha1(
            "alice",
            Ha1::from_password(HashFunction::Md5, "alice", realm, "wonderland"),
        ))
    };
    let err = DigestClient::new()
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &md5_only,
            &mut rng,
        )
        .unwrap_err();
    assert_eq!(err, Error::NoUsableChallenge(StatusCode::UNAUTHORIZED));
}

/// session-sip types in and out: a parsed 401 and the request re-sent.
#[test]
fn session_sip_round_trip() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut registrar = DigestServer::builder("example.com", SECRET)
        .build()
        .unwrap();
    let register_bytes = "REGISTER sip:example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKreg1\r\n\
        To: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
        Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
        Contact: <sip:alice@192.0.2.1>\r\nContent-Length: 0\r\n\r\n";
    let Message::Request(register) = Message::parse(register_bytes.as_bytes()).unwrap() else {
        panic!("a request")
    };
    let Verdict::Challenge(c) = registrar.verify_request(&register, &users, at(T0), &mut rng)
    else {
        panic!("a challenge")
    };
    // The 401 as it would come back over the wire.
    let mut response_text = String::from(
        "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKreg1\r\n\
         To: <sip:alice@example.com>;tag=9\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
         Call-ID: reg1\r\nCSeq: 1 REGISTER\r\n",
    );
    for (name, value) in c.headers() {
        response_text.push_str(&format!("{}: {value}\r\n", name.as_str()));
    }
    response_text.push_str("Content-Length: 0\r\n\r\n");
    let Message::Response(response) = Message::parse(response_text.into_bytes()).unwrap() else {
        panic!("a response")
    };

    let mut client = DigestClient::new();
    let mut attempt = Attempt::new();
    let headers = client
        .handle_response(&mut attempt, &response, &register, &alice, &mut rng)
        .unwrap();
    let mut again: Request = register.clone();
    for h in headers {
        again
            .headers
            .push(session_sip::Header::new(h.name, h.value));
    }
    let reparsed = Message::parse(again.to_bytes()).unwrap();
    let Message::Request(again) = reparsed else {
        panic!("a request")
    };
    assert_eq!(
        registrar.verify_request(&again, &users, at(T0), &mut rng),
        Verdict::Authorized {
            username: "alice".into(),
            algorithm: Algorithm::Sha256,
            qop: Qop::Auth
        }
    );
}

// --- Failures ---------------------------------------------------------------------------------

/// A wrong password is challenged again (not authorized, not stale), and the client then
/// refuses to loop: "credentials rejected" with the status.
#[test]
fn wrong_password_is_challenged_and_the_client_does_not_loop() {
    let mut rng = fastrand::Rng::with_seed(4);
    for proxy in [false, true] {
        let mut server = DigestServer::builder("example.com", SECRET)
            .proxy(proxy)
            .build()
            .unwrap();
        let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"");
        let wrong = |_: &str| Some(Credentials::password("alice", "guess"));
        let mut client = DigestClient::new();
        let mut attempt = Attempt::new();

        let c = server.challenge(at(T0), &mut rng);
        let h = client
            .handle_challenge(&mut attempt, c.status, c.headers(), &req, &wrong, &mut rng)
            .unwrap();
        let c = challenge_of(server.verify(&req, values(&h), &users, at(T0), &mut rng));
        assert!(!c.stale);
        assert_eq!(c.reason, ChallengeReason::WrongResponse);

        let err = client
            .handle_challenge(&mut attempt, c.status, c.headers(), &req, &wrong, &mut rng)
            .unwrap_err();
        assert_eq!(
            err,
            Error::CredentialsRejected {
                status: c.status,
                realm: "example.com".into()
            }
        );
        let text = err.to_string();
        assert!(text.contains("credentials rejected"), "{text}");
        assert!(text.contains(if proxy { "407" } else { "401" }), "{text}");
    }
}

/// An unknown user looks exactly like a wrong password on the wire.
#[test]
fn unknown_user_is_challenged() {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut server = DigestServer::builder("example.com", SECRET)
        .build()
        .unwrap();
    let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let c = server.challenge(at(T0), &mut rng);
    let mallory = |_: &str| Some(Credentials::password("mallory", "x"));
    let h = DigestClient::new()
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &mallory,
            &mut rng,
        )
        .unwrap();
    let c = challenge_of(server.verify(&req, values(&h), &users, at(T0), &mut rng));
    assert_eq!((c.stale, c.reason), (false, ChallengeReason::UnknownUser));
}

/// An expired nonce with the right credentials: stale=true; the client retries once with the
/// same credentials and the new nonce; a second stale in a row is a rejection.
#[test]
fn stale_nonce_is_retried_once() {
    let mut rng = fastrand::Rng::with_seed(6);
    let mut server = DigestServer::builder("example.com", SECRET)
        .nonce_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let mut client = DigestClient::new();
    let asked = std::cell::Cell::new(0);
    let counting = |_: &str| {
        asked.set(asked.get() + 1);
        Some(Credentials::password("alice", "wonderland"))
    };

    let c = server.challenge(at(T0), &mut rng);
    let mut attempt = Attempt::new();
    let h = client
        .handle_challenge(
            &mut attempt,
            c.status,
            c.headers(),
            &req,
            &counting,
            &mut rng,
        )
        .unwrap();
    assert!(matches!(
        server.verify(&req, values(&h), &users, at(T0 + 60), &mut rng),
        Verdict::Authorized { .. }
    ));
    assert_eq!(asked.get(), 1);

    // Later, the pre-authorized request meets an expired nonce.
    let mut attempt = Attempt::new();
    let pre = client.authorize(&mut attempt, &req, &mut rng);
    let c = challenge_of(server.verify(&req, values(&pre), &users, at(T0 + 61), &mut rng));
    assert!(c.stale);
    assert_eq!(c.reason, ChallengeReason::Expired);
    assert!(c.values[0].contains("stale=TRUE"));
    let h = client
        .handle_challenge(
            &mut attempt,
            c.status,
            c.headers(),
            &req,
            &counting,
            &mut rng,
        )
        .unwrap();
    assert_eq!(asked.get(), 1, "stale: the same credentials, no new prompt");
    let sent = Authorization::parse(&h[0].value).unwrap();
    assert_eq!(sent.nc, Some(1), "a new nonce counts from 1");
    assert!(matches!(
        server.verify(&req, values(&h), &users, at(T0 + 62), &mut rng),
        Verdict::Authorized { .. }
    ));

    // A stale challenge twice for one request: refused instead of looping.
    let c = challenge_of(server.verify(&req, values(&h), &users, at(T0 + 200), &mut rng));
    assert!(c.stale);
    let err = client
        .handle_challenge(
            &mut attempt,
            c.status,
            c.headers(),
            &req,
            &counting,
            &mut rng,
        )
        .unwrap_err();
    assert!(matches!(err, Error::CredentialsRejected { .. }));
}

/// A server that forgot a pre-authorized nonce and challenges without `stale=true` is answered
/// once, with fresh credentials from the provider; the same again is a rejection.
#[test]
fn preauthorized_request_challenged_afresh_is_answered_once() {
    let mut rng = fastrand::Rng::with_seed(14);
    let server = DigestServer::builder("example.com", SECRET)
        .build()
        .unwrap();
    let req = DigestRequest::new("OPTIONS", "sip:example.com", b"");
    let mut client = DigestClient::new();
    let c = server.challenge(at(T0), &mut rng);
    client
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &alice,
            &mut rng,
        )
        .unwrap();

    // The server restarted with another secret: the cached nonce is unknown to it.
    let mut restarted = DigestServer::builder("example.com", b"a new secret after restart")
        .build()
        .unwrap();
    let mut attempt = Attempt::new();
    let pre = client.authorize(&mut attempt, &req, &mut rng);
    let c = challenge_of(restarted.verify(&req, values(&pre), &users, at(T0), &mut rng));
    assert_eq!((c.stale, c.reason), (false, ChallengeReason::UnknownNonce));
    let h = client
        .handle_challenge(&mut attempt, c.status, c.headers(), &req, &alice, &mut rng)
        .unwrap();
    assert!(matches!(
        restarted.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));
    let again =
        client.handle_challenge(&mut attempt, c.status, c.headers(), &req, &alice, &mut rng);
    assert!(matches!(again, Err(Error::CredentialsRejected { .. })));
}

/// Credentials with an algorithm the server does not know are challenged, not rejected.
#[test]
fn unknown_algorithm_in_credentials_is_challenged() {
    let mut rng = fastrand::Rng::with_seed(15);
    let mut server = DigestServer::builder("example.com", SECRET)
        .build()
        .unwrap();
    let req = DigestRequest::new("OPTIONS", "sip:example.com", b"");
    let v = challenge_of(server.verify(
        &req,
        [
            "Digest username=a, realm=\"example.com\", nonce=n, uri=\"sip:example.com\", \
          response=r, algorithm=SHA-1",
        ],
        &users,
        at(T0),
        &mut rng,
    ));
    assert_eq!((v.stale, v.reason), (false, ChallengeReason::NotOffered));
}

/// A wrong password with an expired nonce is not stale (stale is only for good credentials).
#[test]
fn expired_nonce_with_wrong_password_is_not_stale() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut server = DigestServer::builder("example.com", SECRET)
        .build()
        .unwrap();
    let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let c = server.challenge(at(T0), &mut rng);
    let wrong = |_: &str| Some(Credentials::password("alice", "nope"));
    let h = DigestClient::new()
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &wrong,
            &mut rng,
        )
        .unwrap();
    let c = challenge_of(server.verify(&req, values(&h), &users, at(T0 + 10_000), &mut rng));
    assert!(!c.stale);
}

/// The same nonce count twice is a replay; a lower one too; a higher one is fine.
#[test]
fn replays_are_refused() {
    let mut rng = fastrand::Rng::with_seed(8);
    let mut server = DigestServer::builder("example.com", SECRET)
        .build()
        .unwrap();
    let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"");
    let c = server.challenge(at(T0), &mut rng);
    let mut client = DigestClient::new();
    let first = client
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &alice,
            &mut rng,
        )
        .unwrap();
    let second = client.authorize(&mut Attempt::new(), &req, &mut rng);
    let third = client.authorize(&mut Attempt::new(), &req, &mut rng);

    let ok = |v: Verdict| matches!(v, Verdict::Authorized { .. });
    assert!(ok(server.verify(
        &req,
        values(&first),
        &users,
        at(T0),
        &mut rng
    )));
    let replay = challenge_of(server.verify(&req, values(&first), &users, at(T0), &mut rng));
    assert_eq!(
        (replay.stale, replay.reason),
        (true, ChallengeReason::Replay)
    );
    assert!(ok(server.verify(
        &req,
        values(&third),
        &users,
        at(T0),
        &mut rng
    )));
    // nc 2 after nc 3: out of order counts as a replay too (nc must strictly increase).
    let late = challenge_of(server.verify(&req, values(&second), &users, at(T0), &mut rng));
    assert_eq!(late.reason, ChallengeReason::Replay);
    assert_eq!(server.replay_entries(), 1);
}

/// The replay cache stays within its capacity, and what it evicts cannot be replayed.
#[test]
fn replay_cache_is_bounded() {
    let mut rng = fastrand::Rng::with_seed(9);
    let mut server = DigestServer::builder("example.com", SECRET)
        .replay_capacity(8)
        .build()
        .unwrap();
    let req = DigestRequest::new("OPTIONS", "sip:example.com", b"");
    let mut first = None;
    for i in 0..50 {
        let c = server.challenge(at(T0 + i), &mut rng);
        let h = DigestClient::new()
            .handle_challenge(
                &mut Attempt::new(),
                c.status,
                c.headers(),
                &req,
                &alice,
                &mut rng,
            )
            .unwrap();
        assert!(matches!(
            server.verify(&req, values(&h), &users, at(T0 + i), &mut rng),
            Verdict::Authorized { .. }
        ));
        assert!(server.replay_entries() <= 8);
        first.get_or_insert(h);
    }
    // The first nonce was evicted long ago but has not expired: its replay is still refused.
    let first = first.unwrap();
    let c = challenge_of(server.verify(&req, values(&first), &users, at(T0 + 50), &mut rng));
    assert!(c.stale);
    assert_eq!(c.reason, ChallengeReason::Forgotten);
}

/// Nonces the server did not issue, a changed request, a tampered body, a mismatched URI and
/// malformed credentials.
#[test]
fn forged_tampered_and_malformed_credentials() {
    let mut rng = fastrand::Rng::with_seed(10);
    let mut server = DigestServer::builder("example.com", SECRET)
        .qop([Qop::AuthInt])
        .build()
        .unwrap();
    let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"body");
    let c = server.challenge(at(T0), &mut rng);
    let mut client = DigestClient::new();
    let h = client
        .handle_challenge(
            &mut Attempt::new(),
            c.status,
            c.headers(),
            &req,
            &alice,
            &mut rng,
        )
        .unwrap();

    // A nonce from another server (another secret).
    let other = DigestServer::builder("example.com", b"another secret, 16 bytes")
        .qop([Qop::AuthInt])
        .build()
        .unwrap();
    let foreign = other.challenge(at(T0), &mut rng);
    let fh = DigestClient::new()
        .handle_challenge(
            &mut Attempt::new(),
            foreign.status,
            foreign.headers(),
            &req,
            &alice,
            &mut rng,
        )
        .unwrap();
    let v = challenge_of(server.verify(&req, values(&fh), &users, at(T0), &mut rng));
    assert_eq!((v.stale, v.reason), (false, ChallengeReason::UnknownNonce));

    // The body changed on the way (auth-int).
    let tampered = DigestRequest::new("INVITE", "sip:bob@example.com", b"BODY");
    let v = challenge_of(server.verify(&tampered, values(&h), &users, at(T0), &mut rng));
    assert_eq!(v.reason, ChallengeReason::WrongResponse);

    // The method changed.
    let bye = DigestRequest::new("BYE", "sip:bob@example.com", b"body");
    let v = challenge_of(server.verify(&bye, values(&h), &users, at(T0), &mut rng));
    assert_eq!(v.reason, ChallengeReason::WrongResponse);

    // The Request-URI is not the credentials' uri: 400 (RFC 2617 §3.2.2.5).
    let moved = DigestRequest::new("INVITE", "sip:carol@example.com", b"body");
    assert!(matches!(
        server.verify(&moved, values(&h), &users, at(T0), &mut rng),
        Verdict::Reject {
            status: StatusCode::BAD_REQUEST,
            ..
        }
    ));

    // Malformed credentials: 400.
    for bad in [
        "Digest username=\"alice",
        "Digest username=alice, realm=\"example.com\"",
        "Digest username=a, realm=example.com, nonce=n, uri=u, response=r, qop=auth, cnonce=c, nc=xyz",
    ] {
        assert!(
            matches!(
                server.verify(&req, [bad], &users, at(T0), &mut rng),
                Verdict::Reject {
                    status: StatusCode::BAD_REQUEST,
                    ..
                }
            ),
            "{bad}"
        );
    }

    // Credentials for another realm or scheme are skipped: a plain challenge.
    let v = challenge_of(server.verify(
        &req,
        [
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "Digest username=a, realm=other, nonce=n, uri=u, response=r",
        ],
        &users,
        at(T0),
        &mut rng,
    ));
    assert_eq!(v.reason, ChallengeReason::NoCredentials);

    // The RFC 2069 form (no qop) has no replay protection: challenged.
    let mut no_qop = Authorization::parse(&h[0].value).unwrap();
    no_qop.qop = None;
    no_qop.nc = None;
    no_qop.cnonce = None;
    let ha1 = Ha1::from_password(HashFunction::Sha256, "alice", "example.com", "wonderland");
    no_qop.response = no_qop.expected_response(&ha1, "INVITE", b"body").unwrap();
    let v = challenge_of(server.verify(
        &req,
        [no_qop.to_string().as_str()],
        &users,
        at(T0),
        &mut rng,
    ));
    assert_eq!(v.reason, ChallengeReason::NotOffered);

    // And the genuine credentials still pass.
    assert!(matches!(
        server.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));
}

/// A request through two authenticating proxies: after the second 407, the re-sent request
/// carries credentials for both realms (RFC 3261 §22.3).
#[test]
fn two_proxies_in_a_row() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut outer = DigestServer::builder("outer.example.com", SECRET)
        .proxy(true)
        .build()
        .unwrap();
    let mut inner = DigestServer::builder("inner.example.com", b"inner secret, sixteen+")
        .proxy(true)
        .build()
        .unwrap();
    let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"");
    let mut client = DigestClient::new();
    let mut attempt = Attempt::new();

    let c = outer.challenge(at(T0), &mut rng);
    let h = client
        .handle_challenge(&mut attempt, c.status, c.headers(), &req, &alice, &mut rng)
        .unwrap();
    assert!(matches!(
        outer.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));
    // The inner proxy skips the outer realm's credentials and challenges.
    let c = challenge_of(inner.verify(&req, values(&h), &users, at(T0), &mut rng));
    assert_eq!(c.reason, ChallengeReason::NoCredentials);
    let h = client
        .handle_challenge(&mut attempt, c.status, c.headers(), &req, &alice, &mut rng)
        .unwrap();
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|h| h.name == HeaderName::ProxyAuthorization));
    assert!(matches!(
        outer.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));
    assert!(matches!(
        inner.verify(&req, values(&h), &users, at(T0), &mut rng),
        Verdict::Authorized { .. }
    ));
}

/// Client-side errors: not a challenge, nothing usable, no credentials.
#[test]
fn client_errors() {
    let mut rng = fastrand::Rng::with_seed(12);
    let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let mut client = DigestClient::new();
    let digest = "Digest realm=\"example.com\", nonce=\"n\", qop=\"auth\"";
    let run = |client: &mut DigestClient,
               rng: &mut fastrand::Rng,
               status: StatusCode,
               headers: Vec<(HeaderName, &str)>,
               provider: &dyn session_auth::CredentialProvider| {
        client.handle_challenge(&mut Attempt::new(), status, headers, &req, provider, rng)
    };
    assert_eq!(
        run(&mut client, &mut rng, StatusCode::FORBIDDEN, vec![], &alice).unwrap_err(),
        Error::NotAChallenge(StatusCode::FORBIDDEN)
    );
    for junk in [
        vec![(HeaderName::WwwAuthenticate, "Basic realm=\"x\"")],
        vec![(
            HeaderName::WwwAuthenticate,
            "Digest realm=\"x\", nonce=\"n\", algorithm=SHA-1",
        )],
        vec![(HeaderName::WwwAuthenticate, "Digest realm=\"x")],
        vec![(HeaderName::Authorization, digest)],
        vec![],
    ] {
        assert_eq!(
            run(
                &mut client,
                &mut rng,
                StatusCode::UNAUTHORIZED,
                junk,
                &alice
            )
            .unwrap_err(),
            Error::NoUsableChallenge(StatusCode::UNAUTHORIZED)
        );
    }
    let nobody = |_: &str| None;
    assert_eq!(
        run(
            &mut client,
            &mut rng,
            StatusCode::UNAUTHORIZED,
            vec![(HeaderName::WwwAuthenticate, digest)],
            &nobody
        )
        .unwrap_err(),
        Error::NoCredentials {
            realm: "example.com".into()
        }
    );
    let crlf = |_: &str| Some(Credentials::password("alice\r\nVia: x", "pw"));
    assert!(matches!(
        run(
            &mut client,
            &mut rng,
            StatusCode::UNAUTHORIZED,
            vec![(HeaderName::WwwAuthenticate, digest)],
            &crlf
        ),
        Err(Error::InvalidInput(_))
    ));
    // A usable Digest challenge next to junk on the same line is still answered.
    let h = run(
        &mut client,
        &mut rng,
        StatusCode::UNAUTHORIZED,
        vec![(
            HeaderName::WwwAuthenticate,
            "Negotiate, Digest realm=\"example.com\", nonce=\"n\", qop=\"auth\"",
        )],
        &alice,
    )
    .unwrap();
    assert_eq!(h.len(), 1);
}

/// A server that challenges for ever new realms cannot keep a request going.
#[test]
fn endless_new_realms_end() {
    let mut rng = fastrand::Rng::with_seed(16);
    let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"");
    let mut client = DigestClient::new();
    let mut attempt = Attempt::new();
    let mut rounds = 0;
    let err = loop {
        let line = format!("Digest realm=\"realm{rounds}\", nonce=\"n\", qop=\"auth\"");
        match client.handle_challenge(
            &mut attempt,
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            [(HeaderName::ProxyAuthenticate, line.as_str())],
            &req,
            &alice,
            &mut rng,
        ) {
            Ok(_) => rounds += 1,
            Err(e) => break e,
        }
        assert!(rounds < 100);
    };
    assert_eq!(rounds, DigestClient::MAX_ROUNDS);
    assert_eq!(
        err,
        Error::TooManyChallenges(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
    );
}

/// The client keeps at most `max_realms` realms, least recently used out first.
#[test]
fn client_memory_is_bounded() {
    let mut rng = fastrand::Rng::with_seed(13);
    let req = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let mut client = DigestClient::new().max_realms(3);
    for i in 0..10 {
        let line = format!("Digest realm=\"r{i}\", nonce=\"n\", qop=\"auth\"");
        client
            .handle_challenge(
                &mut Attempt::new(),
                StatusCode::UNAUTHORIZED,
                [(HeaderName::WwwAuthenticate, line.as_str())],
                &req,
                &alice,
                &mut rng,
            )
            .unwrap();
        assert!(client.realms().count() <= 3);
    }
    let realms: Vec<&str> = client.realms().map(|(_, r)| r).collect();
    assert_eq!(realms, ["r7", "r8", "r9"]);
    // One 401 naming many realms is read for at most `max_realms` of them.
    let many: Vec<String> = (0..50)
        .map(|i| format!("Digest realm=\"m{i}\", nonce=\"n\", qop=\"auth\""))
        .collect();
    let h = client
        .handle_challenge(
            &mut Attempt::new(),
            StatusCode::UNAUTHORIZED,
            many.iter()
                .map(|v| (HeaderName::WwwAuthenticate, v.as_str())),
            &req,
            &alice,
            &mut rng,
        )
        .unwrap();
    assert_eq!(h.len(), 3);
    client.forget("m0");
    assert_eq!(client.realms().count(), 2);
    client.clear();
    assert!(
        client
            .authorize(&mut Attempt::new(), &req, &mut rng)
            .is_empty()
    );
}
