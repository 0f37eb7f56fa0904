//! Whether a real peer program (SIPp, baresip, Kamailio …) is here for an interop test, with one
//! policy for every such test: an interop test never turns green by not running.
//!
//! - The program runs: the test goes on.
//! - It is missing under CI (`CI` set): the test fails, naming the package to install.
//! - It is missing elsewhere: the test fails the same way, unless the developer opted out with
//!   [`ALLOW_MISSING_PEERS`]`=1`; then the test returns early after a `NOT RUN` line on stderr
//!   (cargo shows it with the test's name, and the opt-out had to be typed).

use std::process::{Command, Stdio};

/// The environment variable that lets an interop test pass without its peer outside CI.
pub const ALLOW_MISSING_PEERS: &str = "SESSION_CORE_ALLOW_MISSING_PEERS";

/// What to do about something an interop test needs and does not have: `Ok(())` to go on
/// without running (opted out, and not under CI), `Err(message)` to fail with.
pub fn missing(what: &str, remedy: &str) -> Result<(), String> {
    if std::env::var_os("CI").is_some() {
        return Err(format!("{what} under CI: {remedy}"));
    }
    if std::env::var_os(ALLOW_MISSING_PEERS).is_some_and(|v| v == "1") {
        // A test reports through stderr: this is the line that says it did not run.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("NOT RUN: {what} ({remedy}); {ALLOW_MISSING_PEERS}=1 let this test pass");
        }
        return Ok(());
    }
    Err(format!(
        "{what}: {remedy}, or set {ALLOW_MISSING_PEERS}=1 to let interop tests pass without it"
    ))
}

/// True when `program` runs (`program probe_arg`); false when it is missing and the test may
/// pass without it (see the module docs).
///
/// # Panics
///
/// When it is missing and may not be: under CI, or without the opt-out.
pub fn require_program(program: &str, probe_arg: &str, apt_package: &str) -> bool {
    let found = Command::new(program)
        .arg(probe_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    let what = format!("{program} is not installed");
    let remedy = format!("apt-get install -y {apt_package}");
    if let Err(message) = missing(&what, &remedy) {
        // An interop test's precondition: failing here is the point.
        #[allow(clippy::panic)]
        {
            panic!("{message}");
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_runs_is_available() {
        // `cargo` runs wherever these tests run.
        assert!(require_program("cargo", "--version", "cargo"));
    }

    #[test]
    fn a_missing_program_fails_unless_opted_out() {
        // The environment is shared by the tests of this binary: only read it here.
        let ci = std::env::var_os("CI").is_some();
        let opted_out = std::env::var_os(ALLOW_MISSING_PEERS).is_some_and(|v| v == "1");
        let verdict = missing("nothing-by-this-name is not installed", "install it");
        assert_eq!(verdict.is_ok(), !ci && opted_out, "{verdict:?}");
        if let Err(message) = verdict {
            assert!(message.contains("install it"), "{message}");
        }
    }
}
