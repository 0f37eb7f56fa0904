//! Helpers shared by the numbered examples in `examples2/examples/`: each example checks its
//! own outcome with [`check`] and exits non-zero when an expectation does not hold.

use std::fmt::Display;

/// Prints a passing check, or prints the failure and exits the process with status 1.
pub fn check(condition: bool, what: impl Display) {
    if condition {
        println!("  ok   {what}");
    } else {
        eprintln!("  FAIL {what}");
        std::process::exit(1);
    }
}

/// Prints a section heading.
pub fn section(title: impl Display) {
    println!("\n== {title}");
}

// ---- helpers for the examples that run real calls on loopback ----

use session_core::{SessionManager, SessionManagerBuilder};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

/// Upper bound for any wait of a call on loopback, where everything takes milliseconds.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `future` for at most [`WAIT`]; when it takes longer, prints what was awaited and exits
/// the process with status 1.
pub async fn within<F: Future>(what: impl Display, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => {
            eprintln!("  FAIL {what}: no outcome within {WAIT:?}");
            std::process::exit(1);
        }
    }
}

/// A manager builder for loopback: SIP on `127.0.0.1` with a port the system picks, RTP from
/// `media_ports` (give each manager of each example its own range), and a short shutdown grace.
pub fn loopback(media_ports: RangeInclusive<u16>) -> SessionManagerBuilder {
    SessionManager::builder()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .media_ports(media_ports)
        .shutdown_grace(Duration::from_millis(500))
}

/// Waits (at most [`WAIT`]) until `manager` holds nothing: no call, no admission slot, no RTP
/// port. Returns whether it got there. A call's state turns final before its media task has
/// given its ports back, so this is what to wait for before counting resources.
pub async fn released(manager: &SessionManager) -> bool {
    let idle = || {
        manager.active_calls() == 0
            && manager.admission().active() == 0
            && manager.ports().in_use() == 0
    };
    let wait = async {
        while !idle() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.is_ok()
}
