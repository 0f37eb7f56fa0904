//! The SIP signaling engine under session-core: transactions (RFC 3261 §17) and, as they land,
//! dialogs (§12) and the tokio transport driver.
//!
//! Everything protocol-shaped here is **sans-IO**: a state machine takes input (a message that
//! arrived, a timer that fired) together with the current time, and hands back what to send and
//! when it next needs to be woken. It never reads the clock, never spawns, never touches a
//! socket. The driver that owns sockets and the single timer structure sits on top and only
//! moves bytes and instants, which makes loss and retransmission tests deterministic and fast
//! (see `session-simnet`).

pub mod auth;
pub mod dialog;
pub mod driver;
mod dscp;
pub mod endpoint;
mod icmp;
pub mod map;
mod reply;
pub mod tls;
pub mod transaction;
pub mod ua;
