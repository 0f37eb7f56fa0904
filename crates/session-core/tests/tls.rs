//! SIP over TLS between two managers on loopback (RFC 3261 §26.2.1): a `sips:` call set up,
//! answered and ended over TLS both ways (the callee's BYE reaches the caller over TLS through
//! its `;transport=tls` Contact), and the two ways a TLS call must fail — a server certificate
//! from a CA we do not trust, and one that does not name the host we called — failing at once
//! with a transport error, not after Timer B. Certificates are made at test time (rcgen).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use session_core::{CallDecision, CallState, FailureReason, TlsConfig};
use support::{Seen, builder, peer, within};

/// A test CA, and certificates it signs.
struct Authority {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Authority {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "session-core test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem }
    }

    /// A TLS configuration whose identity names `names`, signed by this CA, trusting `trusted`.
    fn config(&self, names: &[&str], trusted: &Authority) -> TlsConfig {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        TlsConfig::builder()
            .identity_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap()
            .trust_pem(trusted.pem.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sips_call_goes_over_tls_both_ways_and_bad_certificates_fail_at_once() {
    let ca = Authority::new();
    let stranger = Authority::new();
    let alice = peer(
        builder(38_600..=38_649).tls(ca.config(&["127.0.0.1"], &ca), None),
        |_| CallDecision::accept(),
    )
    .await;
    let mut bob = peer(
        builder(38_650..=38_699).tls(ca.config(&["127.0.0.1"], &ca), None),
        |_| CallDecision::accept(),
    )
    .await;
    let bob_tls = bob.manager.tls_addr().expect("bob listens for TLS");
    assert_ne!(bob_tls.port(), bob.manager.local_addr().port());

    // 1. A sips: call: INVITE over TLS, answered, the callee's BYE back over TLS.
    let call = alice
        .manager
        .call(&format!("sips:bob@{bob_tls}"))
        .await
        .unwrap();
    within(call.answered()).await.unwrap();
    let (at_bob, invite) = bob
        .expect(|seen| match seen {
            Seen::Incoming(call, request) => Some((call, request)),
            _ => None,
        })
        .await;
    let via = invite
        .headers
        .get_by_name("Via")
        .unwrap()
        .value()
        .to_owned();
    assert!(
        via.starts_with("SIP/2.0/TLS "),
        "the INVITE came over TLS: {via}"
    );
    let contact = invite
        .headers
        .get_by_name("Contact")
        .unwrap()
        .value()
        .to_owned();
    assert!(
        contact.starts_with("<sips:"),
        "a sips: request has a sips: Contact (RFC 3261 §8.1.1.8), which brings requests back over TLS: {contact}"
    );
    within(at_bob.wait_for(CallState::is_established)).await;
    at_bob.hangup().await.unwrap();
    assert_eq!(within(call.ended()).await, CallState::Terminated);

    // 2. A server whose certificate comes from a CA alice does not trust.
    let mallory = peer(
        builder(38_700..=38_749).tls(stranger.config(&["127.0.0.1"], &stranger), None),
        |_| CallDecision::accept(),
    )
    .await;
    let mallory_tls = mallory.manager.tls_addr().unwrap();
    let refused = alice
        .manager
        .call(&format!("sips:mallory@{mallory_tls}"))
        .await
        .unwrap();
    assert_eq!(
        within(refused.ended()).await,
        CallState::Failed(FailureReason::Transport),
        "an untrusted certificate fails the call at once"
    );

    // 3. A trusted CA, but the certificate names another host than the one called.
    let elsewhere = peer(
        builder(38_750..=38_799).tls(ca.config(&["pbx.example"], &ca), None),
        |_| CallDecision::accept(),
    )
    .await;
    let elsewhere_tls = elsewhere.manager.tls_addr().unwrap();
    let misnamed = alice
        .manager
        .call(&format!("sips:bob@{elsewhere_tls}"))
        .await
        .unwrap();
    assert_eq!(
        within(misnamed.ended()).await,
        CallState::Failed(FailureReason::Transport),
        "a certificate that does not name the host called fails the call"
    );

    for peer in [&alice, &bob, &mallory, &elsewhere] {
        support::assert_released(peer).await;
        peer.manager.shutdown().await;
    }
}
