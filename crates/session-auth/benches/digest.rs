//! Server-side verification cost: one SHA-256 `Authorization` (qop=auth, pre-authorized, a
//! fresh nonce count each time) parsed, its nonce's MAC checked, HA1 looked up, the response
//! recomputed and compared, and the nonce count recorded in the replay cache. The credentials
//! are made outside the timed part.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use session_auth::{
    Algorithm, Attempt, Authorization, Credentials, DigestClient, DigestRequest, DigestServer, Ha1,
    HashFunction, Verdict,
};

fn verify(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut rng = fastrand::Rng::with_seed(1);
    let mut server = DigestServer::builder("example.com", b"bench secret, 32 bytes long.....")
        .algorithms([Algorithm::Sha256])
        // Long enough that the nonce never expires during the run.
        .nonce_lifetime(Duration::from_secs(1 << 30))
        .build()
        .unwrap();
    let mut users: HashMap<String, Ha1> = HashMap::new();
    for i in 0..1000 {
        let name = format!("user{i}");
        let ha1 = Ha1::from_password(HashFunction::Sha256, &name, "example.com", "pw");
        users.insert(name, ha1);
    }
    let lookup = |user: &str, _realm: &str, hash: HashFunction| {
        users.get(user).filter(|h| h.hash() == hash).cloned()
    };
    let req = DigestRequest::new(
        "INVITE",
        "sip:bob@biloxi.example.com",
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n",
    );

    let mut client = DigestClient::new();
    let challenge = server.challenge(now, &mut rng);
    let provider = |_: &str| Some(Credentials::password("user7", "pw"));
    client
        .handle_challenge(
            &mut Attempt::new(),
            challenge.status,
            challenge.headers(),
            &req,
            &provider,
            &mut rng,
        )
        .unwrap();

    let mut client_rng = fastrand::Rng::with_seed(2);
    c.bench_function("verify SHA-256 (auth, pre-authorized)", |b| {
        b.iter_batched(
            || {
                client
                    .authorize(&mut Attempt::new(), &req, &mut client_rng)
                    .remove(0)
                    .value
            },
            |value| {
                let v = server.verify(&req, [value.as_str()], &lookup, now, &mut rng);
                assert!(matches!(v, Verdict::Authorized { .. }));
                black_box(v)
            },
            BatchSize::SmallInput,
        )
    });

    let value = client
        .authorize(&mut Attempt::new(), &req, &mut client_rng)
        .remove(0)
        .value;
    c.bench_function("parse Authorization", |b| {
        b.iter(|| black_box(Authorization::parse(black_box(&value)).unwrap()))
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
