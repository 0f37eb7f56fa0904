//! A sans-IO user agent "at" a loopback port, for tests that pass its bytes by hand.

use session_dialog::endpoint::EndpointConfig;
use session_dialog::ua::{UaConfig, UserAgent};
use session_sip::Uri;
use std::net::SocketAddr;

/// `127.0.0.1:port`.
pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A user agent whose Via and Contact name `127.0.0.1:port`.
pub(crate) fn ua(port: u16) -> UserAgent {
    UserAgent::new(UaConfig {
        endpoint: EndpointConfig::default(),
        via_host: "127.0.0.1".into(),
        via_port: port,
        contact: Uri::parse(&format!("sip:ua@127.0.0.1:{port}")).unwrap(),
        large_requests_over_tcp: false,
        rng_seed: None,
    })
}
