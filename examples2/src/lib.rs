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
