//! A tiny SIP responder on session-dialog: OPTIONS → 200, INVITE → 180 then 200 with a
//! placeholder SDP answer, BYE → 200. Drive it with SIPp:
//!
//! ```text
//! cargo run -p session-dialog --example responder -- 127.0.0.1:5080
//! sipp -sn uac 127.0.0.1:5080 -m 100 -r 50
//! ```
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
    println!(
        "listening on {} (UDP and TCP); Ctrl-C stops",
        handle.local_addr()
    );
    tokio::select! {
        answered = responder::serve(&handle, &mut events) => println!("driver stopped after {answered} calls"),
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    Ok(())
}
