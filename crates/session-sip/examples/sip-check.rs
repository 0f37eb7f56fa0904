//! `sip-check FILE...`: parses each file as one SIP datagram and prints, tab-separated, the
//! path, `valid`/`invalid`, what a UAS endpoint does (`accept`, a status code, or `drop`) and
//! why. Valid messages are also checked to round-trip (parse(serialize(m)) == m). Exits 0 when
//! every file parses.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use bytes::Bytes;
use session_sip::{Action, Message, ParseLimits, UasPolicy, triage_datagram};

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: sip-check FILE...");
        return ExitCode::from(2);
    }
    let (limits, policy) = (ParseLimits::default(), UasPolicy::default());
    let mut all_parse = true;
    for path in files {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                all_parse = false;
                continue;
            }
        };
        let v = triage_datagram(&Bytes::from(bytes), &limits, &policy);
        let mut reason = v.reason.replace(['\t', '\r', '\n'], " ");
        if let Some(m) = &v.message {
            if Message::parse(m.to_bytes()).as_ref() != Ok(m) {
                reason.push_str(" [ROUND-TRIP MISMATCH]");
                all_parse = false;
            }
        } else {
            all_parse = false;
        }
        let action = match &v.action {
            Action::Accept => "accept".to_owned(),
            Action::Answer(r) => r.status.as_u16().to_string(),
            Action::Drop => "drop".to_owned(),
            _ => "unknown".to_owned(),
        };
        let validity = if v.well_formed { "valid" } else { "invalid" };
        println!("{path}\t{validity}\t{action}\t{reason}");
    }
    if all_parse {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
