//! session-core's embedded registrar against baresip on loopback: baresip registers to our
//! manager with digest (MD5, all baresip 1.0 answers), we look its address of record up and
//! call it at its registered contact, it answers by itself, and we hang up.
//!
//! - `baresip_registers_with_digest_and_we_call_it_at_its_registered_contact`: the first
//!   REGISTER gets our 401, the second carries MD5 credentials and gets 200 with the binding;
//!   the registrar publishes the binding (authenticated as `alice`, baresip's SIP address as
//!   the contact); a call to the looked-up contact is answered with audio both ways and torn
//!   down with every resource back; when baresip quits it unregisters and the binding goes.
//!
//! baresip (Debian `baresip-core`, 1.0) runs through the harness in `support::baresip`, its
//! account `<sip:alice@127.0.0.1>` with `auth_pass` and our manager as its `outbound` proxy. A
//! missing baresip fails the test with the `apt-get` command, unless
//! `SESSION_CORE_ALLOW_MISSING_PEERS=1` (never under CI) lets it pass without running.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use session_core::{
    Algorithm, BindingChange, EventKind, Filter, Ha1, HashFunction, RegistrarConfig, ServerAuth,
    SessionEvent, SessionManager, Subscription,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use support::baresip::{Baresip, STEP};
use support::{assert_released, tool_available};

const REALM: &str = "registrar.test";
const PASSWORD: &str = "wonderland";

/// The next registrar event within [`STEP`].
async fn next_binding(events: &mut Subscription) -> (String, String, BindingChange) {
    let wait = async {
        loop {
            let event = events.recv().await.expect("the bus is open");
            if let SessionEvent::Registrar {
                aor,
                contact,
                change,
            } = &*event
            {
                return (aor.to_string(), contact.to_string(), *change);
            }
        }
    };
    tokio::time::timeout(STEP, wait)
        .await
        .expect("a registrar event within the time limit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_with_digest_and_we_call_it_at_its_registered_contact() {
    if !tool_available("baresip", "-h", "baresip-core") {
        return;
    }
    let started = Instant::now();
    // alice's HA1 only: the registrar never sees a password.
    let alice = Ha1::from_password(HashFunction::Md5, "alice", REALM, PASSWORD);
    let users = move |user: &str, realm: &str, hash: HashFunction| {
        (user == "alice" && realm == REALM && hash == HashFunction::Md5).then(|| alice.clone())
    };
    let manager = SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .transports(session_core::Transports::Udp)
        .media_ports(49_300..=49_399)
        .shutdown_grace(Duration::from_millis(500))
        .authenticate(ServerAuth::new(REALM, users).algorithms([Algorithm::Md5]))
        .registrar(RegistrarConfig::default().domain("127.0.0.1"))
        .start()
        .await
        .expect("the manager starts");
    let mut bindings = manager
        .events()
        .subscribe(Filter::kind(EventKind::Registrar));

    let mut baresip = Baresip::builder("registered")
        .user("alice")
        .auto_answer()
        .register_at(manager.local_addr(), PASSWORD, Duration::from_secs(600))
        .start()
        .await;
    // baresip registers as it starts, before its control connection is up: the registrar's
    // event says when.
    let (aor, contact, change) = next_binding(&mut bindings).await;
    assert_eq!(aor, "sip:alice@127.0.0.1");
    assert_eq!(
        change,
        BindingChange::Added {
            expires: Duration::from_secs(600)
        }
    );

    // The location service has baresip's SIP address, authenticated as alice.
    let found = manager.lookup("sip:alice@127.0.0.1");
    assert_eq!(found.len(), 1, "{found:?}");
    let binding = &found[0];
    assert_eq!(binding.contact.as_str(), contact);
    assert_eq!(binding.authenticated_user.as_deref(), Some("alice"));
    assert_eq!(
        binding.contact.port(),
        Some(baresip.sip().port()),
        "{binding:?}"
    );
    assert_eq!(binding.contact.host(), "127.0.0.1");
    assert!(binding.expires_in > Duration::from_secs(590), "{binding:?}");

    // We call it there; baresip answers by itself.
    let call = manager.call(binding.contact.as_str()).await.unwrap();
    tokio::time::timeout(STEP, call.answered())
        .await
        .expect("baresip answers within the time limit")
        .unwrap_or_else(|e| panic!("baresip refused: {e}\n{}", baresip.output()));
    baresip.event("CALL_ESTABLISHED").await;
    // A second of the call: RTP flows both ways.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = call.stats().await.unwrap();
    let rtp = stats.rtp.expect("the call has media");
    assert!(
        rtp.packets_received > 10 && rtp.packets_sent > 10,
        "{rtp:?}"
    );
    call.hangup().await.unwrap();
    tokio::time::timeout(STEP, call.ended())
        .await
        .expect("the call ends");
    baresip.event("CALL_CLOSED").await;
    tokio::time::timeout(STEP, manager.idle())
        .await
        .expect("the manager releases everything");
    assert_released(&manager);

    // Quitting, baresip unregisters (Expires: 0): the binding goes.
    let quit = baresip.quit().await;
    let (_, removed, change) = next_binding(&mut bindings).await;
    assert_eq!(
        (removed.as_str(), change),
        (contact.as_str(), BindingChange::Removed)
    );
    assert!(manager.lookup("sip:alice@127.0.0.1").is_empty());

    // baresip's trace: our challenge, then its MD5 credentials.
    let output = &quit.output;
    assert!(
        output.contains("SIP/2.0 401 Unauthorized"),
        "no 401 in baresip's trace:\n{output}"
    );
    assert!(
        output.contains("Authorization: Digest username=\"alice\""),
        "no credentials in baresip's trace:\n{output}"
    );
    manager.shutdown().await;
    eprintln!("baresip registered and called: {:?}", started.elapsed());
}
