//! Timer values (RFC 3261 §17 and Table 4) and the transport property that changes them.

use std::time::Duration;

/// Whether the transport below retransmits by itself (RFC 3261 §17: TCP, TLS and SCTP are
/// reliable; the transaction then sends each message once and waits zero time where it would
/// absorb retransmissions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: the transaction retransmits.
    Unreliable,
    /// TCP and other stream transports.
    Reliable,
}

impl Transport {
    /// Whether this is a reliable transport.
    pub fn is_reliable(self) -> bool {
        self == Transport::Reliable
    }
}

/// The base timer values; everything else in Table 4 is derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, default 5 s.
    pub t4: Duration,
    /// How long an INVITE server transaction waits for the transaction user before it sends
    /// `100 Trying` itself (§17.2.1 says 200 ms).
    pub trying_delay: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s on an unreliable transport, zero on a reliable one.
    pub fn timer_d(&self, transport: Transport) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.timeout().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 on an unreliable transport, zero on a reliable one.
    pub fn absorb_after_final(&self, transport: Transport) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on an unreliable transport, zero on a reliable one.
    pub fn timer_j(&self, transport: Transport) -> Duration {
        if transport.is_reliable() {
            Duration::ZERO
        } else {
            self.timeout()
        }
    }
}
