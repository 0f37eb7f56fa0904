//! Property tests: no input from the network makes the parsers, the client or the server
//! panic, and what this crate writes parses back to what it wrote.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use session_auth::{
    Algorithm, Attempt, Authorization, Challenge, Credentials, DigestClient, DigestRequest,
    DigestServer, Ha1, Qop,
};
use session_sip::HeaderName;
use session_types::StatusCode;

/// Text that looks like auth headers: their punctuation, their names and random bytes.
fn header_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("Digest ".to_owned()),
        Just("Basic ".to_owned()),
        Just(", ".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\r\n ".to_owned()),
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("realm".to_owned()),
        Just("nonce".to_owned()),
        Just("username*".to_owned()),
        Just("UTF-8''%C3%A4%".to_owned()),
        Just("algorithm=SHA-512-256-sess".to_owned()),
        Just("qop=\"auth,auth-int\"".to_owned()),
        Just("nc=0000000".to_owned()),
        Just("stale=TRUE".to_owned()),
        "[a-zA-Z0-9]{0,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn quoted_text() -> impl Strategy<Value = String> {
    // Anything but CR and LF, which no quoted-string can carry.
    "[^\r\n]{0,20}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn parsers_never_panic(s in header_like()) {
        let _ = Challenge::parse(&s);
        let _ = Challenge::parse_all(&s);
        let _ = Authorization::parse(&s);
    }

    #[test]
    fn parsers_never_panic_on_any_string(s in any::<String>()) {
        let _ = Challenge::parse_all(&s);
        let _ = Authorization::parse(&s);
    }

    #[test]
    fn client_never_panics(lines in prop::collection::vec(header_like(), 0..4), code in 100u16..700) {
        let status = StatusCode::new(code).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut rng = fastrand::Rng::with_seed(1);
        let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"body");
        let provider = |_: &str| Some(Credentials::password("alice", "pw"));
        let mut client = DigestClient::new();
        let mut attempt = Attempt::new();
        for _ in 0..3 {
            let headers = lines.iter().flat_map(|l| {
                [(HeaderName::WwwAuthenticate, l.as_str()), (HeaderName::ProxyAuthenticate, l.as_str())]
            });
            let _ = client.handle_challenge(&mut attempt, status, headers, &req, &provider, &mut rng);
            let _ = client.handle_challenge(
                &mut attempt, StatusCode::UNAUTHORIZED,
                lines.iter().map(|l| (HeaderName::WwwAuthenticate, l.as_str())),
                &req, &provider, &mut rng,
            );
        }
        let _ = client.authorize(&mut Attempt::new(), &req, &mut rng);
    }

    #[test]
    fn server_never_panics(lines in prop::collection::vec(header_like(), 0..4), dt in 0u64..1000) {
        let mut rng = fastrand::Rng::with_seed(2);
        let mut server = DigestServer::builder("example.com", b"0123456789abcdef").build().unwrap();
        let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"");
        let lookup = |u: &str, r: &str, h| Some(Ha1::from_password(h, u, r, "pw"));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + dt);
        let _ = server.verify(&req, lines.iter().map(String::as_str), &lookup, now, &mut rng);
    }

    #[test]
    fn server_never_panics_on_well_formed_credentials(
        username in "[a-z]{0,8}",
        nonce in "[0-9a-fA-FxX]{0,70}",
        response in "[0-9a-fA-F]{0,70}",
        alg in prop::sample::select(Algorithm::ALL.to_vec()),
        qop in prop::option::of(prop::sample::select(vec!["auth", "auth-int", "auth-conf"])),
        nc in "[0-9a-fA-F]{0,9}",
        uri in prop::sample::select(vec!["sip:bob@example.com", "sip:x"]),
        dt in 0u64..1000,
    ) {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut server = DigestServer::builder("example.com", b"0123456789abcdef").build().unwrap();
        let req = DigestRequest::new("INVITE", "sip:bob@example.com", b"");
        let lookup = |u: &str, r: &str, h| Some(Ha1::from_password(h, u, r, "pw"));
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + dt);
        let mut value = format!(
            "Digest username=\"{username}\", realm=\"example.com\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm={alg}, cnonce=\"c\", nc={nc}"
        );
        if let Some(q) = qop {
            value.push_str(&format!(", qop={q}"));
        }
        // A real nonce too, so that the checks after the MAC run.
        let real = server.challenge(now, &mut rng);
        let real_nonce = Challenge::parse(&real.values[0]).unwrap().nonce;
        let with_real = value.replace(&format!("nonce=\"{nonce}\""), &format!("nonce=\"{real_nonce}\""));
        let _ = server.verify(&req, [value.as_str()], &lookup, now, &mut rng);
        let _ = server.verify(&req, [with_real.as_str()], &lookup, now, &mut rng);
    }

    #[test]
    fn challenges_round_trip(
        realm in quoted_text(),
        nonce in "[^\r\n]{1,20}",
        opaque in prop::option::of(quoted_text()),
        domain in prop::option::of(quoted_text()),
        stale in any::<bool>(),
        alg in prop::sample::select(Algorithm::ALL.to_vec()),
        qop in prop::sample::subsequence(vec![Qop::Auth, Qop::AuthInt], 0..=2),
        userhash in any::<bool>(),
    ) {
        let mut c = Challenge::new(realm, nonce);
        c.opaque = opaque;
        c.domain = domain;
        c.stale = stale;
        c.algorithm = alg;
        c.qop = qop;
        c.userhash = userhash;
        prop_assert_eq!(Challenge::parse(&c.to_string()), Ok(c));
    }

    #[test]
    fn credentials_round_trip(
        username in quoted_text(),
        realm in quoted_text(),
        nonce in quoted_text(),
        uri in quoted_text(),
        alg in prop::sample::select(Algorithm::ALL.to_vec()),
        qop in prop::option::of(prop::sample::select(vec![Qop::Auth, Qop::AuthInt])),
        nc in any::<u32>(),
        cnonce in quoted_text(),
        opaque in prop::option::of(quoted_text()),
    ) {
        let mut a =
            Authorization::parse("Digest username=u, realm=r, nonce=n, uri=u, response=00")
                .unwrap();
        a.username = username;
        a.realm = realm;
        a.nonce = nonce;
        a.uri = uri;
        a.algorithm = alg;
        a.qop = qop;
        a.nc = qop.map(|_| nc);
        a.cnonce = qop.map(|_| cnonce);
        a.opaque = opaque;
        prop_assert_eq!(Authorization::parse(&a.to_string()), Ok(a));
    }
}
