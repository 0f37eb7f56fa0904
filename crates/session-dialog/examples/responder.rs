//! A tiny SIP responder on session-dialog: OPTIONS → 200, INVITE → 180 then 200 with a
//! placeholder SDP answer, BYE → 200. Drive it with SIPp:
//!
//! ```text
//! cargo run -p session-dialog --example responder -- 127.0.0.1:5080
//! sipp -sn uac 127.0.0.1:5080 -m 100 -r 50
//! ```
//!
//! `RESERVE_CALLS` (default 100,000) sizes the user agent's maps up front.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/responder.rs"]
mod responder;

use session_dialog::driver::{DriverConfig, SipDriver};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5080".into())
        .parse()?;
    let (handle, mut events) = SipDriver::start(DriverConfig {
        bind,
        ..DriverConfig::default()
    })
    .await?;
    // Room for the calls of a sustained load (a call's transactions linger 32 s after it
    // ends), so the maps never pause the driver to grow while datagrams queue up.
    let calls = std::env::var("RESERVE_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    handle.with(move |ua, _| ua.reserve(calls)).await?;
    println!(
        "listening on {} (UDP and TCP), room for {calls} calls; Ctrl-C stops",
        handle.local_addr()
    );
    tokio::select! {
        answered = responder::serve(&handle, &mut events) => println!("driver stopped after {answered} calls"),
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    Ok(())
}
