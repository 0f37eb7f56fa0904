//! Repository automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! Commands:
//! - `examples [FILTER...] [--timeout SECS] [--release] [--verbose]`: builds the examples of
//!   `examples2/` once, runs each in name order with a timeout, prints a table and
//!   `N passed, M failed`, and exits non-zero if any failed.
//! - `conformance [--dir PATH]`: runs the RFC 4475 torture tests through session-sip.
//! - `sipp [FILTER...] [--verbose] [--keep]`: runs SIPp scenarios against example 20 and example 20's
//!   UAC against SIPp (needs `sipp`; prints the install command when it is missing), and the
//!   `proxy-*` ones through Kamailio (needs `kamailio`; skipped without it, failed under CI).
//! - `sipp --load [--start-rate R] [--max-rate R] [--step-seconds S] [--hold-calls N]
//!   [--reserve-calls N] [--floor] [--keep]`: the highest clean call rate of example 20 next to
//!   SIPp's own UAS, with setup latency, CPU per call and RSS per held call; with `--floor`,
//!   session-dialog's `udp_floor` too, whose CPU per call is the I/O's share (not run by CI).
//! - `sipp --load --alloc [--alloc-rate R] [--alloc-seconds S] [--alloc-idle S]
//!   [--alloc-rounds N]`: example 20 with glibc's malloc next to example 20 with mimalloc
//!   under the same soak: RSS peak and after idle, CPU per call (not run by CI).
//! - `sipp --load --tls [--tls-rate R] [--tls-calls N] [--tls-rounds N]`: example 20's CPU
//!   per call over one TLS connection from its own UAC, next to TCP from its UAC and from SIPp
//!   (needs `openssl` for the test certificates; not run by CI).
//! - `sipp --abuse [--abuse-seconds S] [--abuse-cases LIST] [--abuse-nofile N]
//!   [--abuse-rss-mb MB]`: the TCP abuse cases against example 20 with well-behaved calls
//!   alongside; RSS, CPU and the good calls' p99 per case, exits 1 if a target is missed
//!   (about 2 min; not run by CI).
//! - `cluster [--quick] [--instances N] [--algorithm round-robin|call-load] [--no-capacity]
//!   [--keep] ...`: example-20 instances behind Kamailio's dispatcher under SIPp load: clean
//!   rate direct, via the proxy and over N instances, then one instance killed, one drained,
//!   the killed one restarted; exits 1 if a failover or drain target is missed (needs `sipp`
//!   and `kamailio`; CI runs `--quick`).
//!
//! This crate has no dependencies on purpose: it is built on every `cargo xtask` call.

mod cluster;
mod conformance;
mod examples;
mod sipp;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  examples [FILTER...] [--timeout SECS] [--release] [--verbose]
                      build and run the numbered examples in examples2/, print a table
  conformance [--dir PATH]
                      run the RFC 4475 torture-test corpus through session-sip
                      (default: ../shared/conformance/rfc4475)
  sipp [FILTER...] [--verbose] [--keep]
                      run SIPp scenarios against example 20_sipp_compatibility on loopback
                      and its UAC against SIPp's UAS; PASS/FAIL per scenario (needs sipp;
                      the proxy-* scenarios put Kamailio in the path and need kamailio)
  sipp --load [--start-rate 1000] [--max-rate 12000] [--step-seconds 5]
              [--hold-calls 10000] [--reserve-calls 100000] [--floor] [--keep]
                      load search: the highest rate with 0 failed calls for example 20
                      (release, signaling only) and for `sipp -sn uas`, side by side, with
                      calls/s, setup p50/p99, server CPU per call, RSS per held call and the
                      verdict against 0.9 x SIPp's rate; exits 1 if not met (about 4-5 min);
                      --floor runs session-dialog's udp_floor too (our I/O, no SIP work): the
                      CPU per call no UAS on that I/O goes below
  sipp --load --alloc [--alloc-rate 2000] [--alloc-seconds 60] [--alloc-idle 40]
              [--alloc-rounds 2]
                      example 20 built with glibc malloc and with mimalloc (examples2's
                      `mimalloc` feature), side by side under the same soak: RSS at start,
                      peak, after the load and after idle, CPU per call (about 7 min)
  sipp --load --tls [--tls-rate 500] [--tls-calls 5000] [--tls-rounds 2]
                      example 20 (UAS) called over one TLS connection by its own UAC, next to
                      the same calls over TCP from its UAC and from SIPp (-t t1): server CPU
                      per call and the verdict against 1.5 x TCP; exits 1 if not met (needs
                      openssl for the test certificates; about 1 min)
  sipp --abuse [--abuse-seconds 15] [--abuse-cases NAME,...] [--abuse-nofile 128]
               [--abuse-rss-mb 256]
                      TCP abuse against example 20 (pipelining, never-reading, slowloris,
                      fd-exhaustion, endless-header, and a baseline) while SIPp places good
                      calls over UDP and TCP: peak RSS, CPU during and 1 s after, good calls'
                      p99 per case; exits 1 if a target is missed (about 2 min)
  cluster [--quick] [--instances 2] [--algorithm round-robin|call-load] [--no-capacity]
          [--start-rate 200] [--max-rate 8000] [--step-seconds 5] [--max-steps 7]
          [--rate 80] [--call-ms 1000] [--phase-seconds 6] [--keep]
                      example 20 instances behind Kamailio's dispatcher (needs sipp and
                      kamailio): highest clean rate of 1 instance direct, 1 via the proxy and
                      N via the proxy; then with 3 instances under load, one killed
                      (failover time, calls lost in flight), one drained with SIGTERM (no
                      call lost), the killed one restarted (gets calls again); exits 1 if a
                      target is missed. --quick (CI): debug build, shorter steps (about 2 min)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let code = match command.as_str() {
        "examples" => examples::run(rest),
        "conformance" => conformance::run(rest),
        "sipp" => sipp::run(rest),
        "cluster" => cluster::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            0
        }
        other => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            2
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
