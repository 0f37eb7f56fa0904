//! Repository checks that run as tests, so `cargo test --workspace` enforces them: every crate
//! documents itself and opts into the workspace lints, no test is ignored, the README keeps
//! its two set-up commands at the top, only the I/O layers read a clock or spawn (an
//! allow-list with reasons), library code has no unbounded channel, and
//! `docs/ARCHITECTURE.md`'s code map names exactly the crates.

use crate::util::workspace_root;
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn library_crates() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = fs::read_dir(workspace_root().join("crates"))
        .expect("crates/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    crates
}

#[test]
fn every_library_crate_opts_into_workspace_lints() {
    for dir in library_crates() {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let lints = manifest.split("[lints]").nth(1).unwrap_or("");
        assert!(
            lints.trim_start().starts_with("workspace = true"),
            "{} must say `[lints] workspace = true`",
            dir.display()
        );
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    for dir in library_crates() {
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            assert!(
                text.trim_start().starts_with("//!"),
                "{} has no `//!` doc at the top",
                file.display()
            );
        }
    }
}

#[test]
fn no_test_is_ignored() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "tests", "examples2", "xtask"] {
        rust_files(&root.join(dir), &mut files);
    }
    let marker = ["#[", "ignore"].concat();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(&marker),
            "{} ignores a test: fix it or delete it",
            file.display()
        );
    }
}

#[test]
fn readme_starts_with_exactly_the_two_setup_commands() {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let first_block = readme.split("```").nth(1).expect("README has a code block");
    let commands: Vec<&str> = first_block
        .lines()
        .skip(1) // the info string (`sh`)
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .collect();
    assert_eq!(commands, ["cargo xtask examples", "cargo test --workspace"]);
}

#[test]
fn ci_runs_the_readme_test_command_and_the_examples() {
    let ci = fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    assert!(ci.starts_with("#!/usr/bin/env bash"));
    assert!(ci.contains("set -euo pipefail"));
    assert!(ci.contains("cargo test --workspace"));
    assert!(ci.contains("cargo xtask examples"));
}

#[test]
fn ci_runs_the_sipp_scenarios_after_the_examples() {
    let ci = fs::read_to_string(workspace_root().join(".ci/run")).unwrap();
    let examples = ci
        .find("cargo xtask examples")
        .expect("CI runs the examples");
    let sipp = ci
        .find("cargo xtask sipp")
        .expect("CI runs `cargo xtask sipp`");
    assert!(
        sipp > examples,
        "the SIPp step comes after the examples step"
    );
}

/// Library files allowed to read a clock or spawn, each with the reason. Everywhere else time
/// and concurrency come in from the caller: protocol cores take `now` as an argument.
const CLOCK_AND_SPAWN_ALLOWED: &[(&str, &str)] = &[
    (
        "crates/session-dialog/src/driver.rs",
        "the SIP driver: owns the sockets, the one timer, and tokio's clock",
    ),
    (
        "crates/session-media/src/endpoint.rs",
        "the RTP endpoint's I/O: tokio's clock for arrivals and sends, the wall clock for NTP",
    ),
    (
        "crates/session-core/src/manager.rs",
        "starts the manager task",
    ),
    (
        "crates/session-core/src/core/mod.rs",
        "the manager's one clock, `now()` (tokio's, so paused runtimes run it in virtual time)",
    ),
    (
        "crates/session-core/src/media.rs",
        "the per-call media task: its I/O and its clock (tokio's)",
    ),
    (
        "crates/session-bridge/src/driver.rs",
        "the bridge driver: the legs' socket tasks and tokio's clock",
    ),
    (
        "crates/session-types/src/id.rs",
        "`SessionId::new` stamps the wall clock into a UUID v7 (`SessionId::v7` takes it as input)",
    ),
    (
        "crates/session-events/src/subscription.rs",
        "a blocking receive with a timeout waits on the wall clock for its caller",
    ),
    (
        "crates/session-testkit/src/time.rs",
        "the test kit's one clock read: tokio's, virtual in a paused runtime",
    ),
    (
        "crates/session-testkit/src/peer.rs",
        "a test peer's delayed answers and tones run beside the manager's task, whose handler \
         callbacks must not wait",
    ),
    (
        "crates/session-simnet/src/simulation.rs",
        "the simulation's epoch: virtual time starts at a real instant and is advanced by it",
    ),
];

/// A library file's code without comments and without its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or(text);
    before_tests
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_the_io_layers_read_a_clock_or_spawn() {
    let root = workspace_root();
    let forbidden = [
        "Instant::now()",
        "SystemTime::now()",
        "tokio::spawn",
        "thread::spawn",
    ];
    let mut offenders = Vec::new();
    for dir in library_crates() {
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let relative = file
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if relative.ends_with("/tests.rs")
                || CLOCK_AND_SPAWN_ALLOWED
                    .iter()
                    .any(|(allowed, _)| *allowed == relative)
            {
                continue;
            }
            let code = code_of(&fs::read_to_string(&file).unwrap());
            for word in forbidden {
                if code.contains(word) {
                    offenders.push(format!("{relative}: {word}"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "time and tasks are inputs outside the I/O layers; take `now` as an argument or add the \
         file to CLOCK_AND_SPAWN_ALLOWED with a reason:\n{}",
        offenders.join("\n")
    );
}

/// Every queue between tasks is bounded: an unbounded channel in library code lets a fast
/// producer (a flood, a stalled consumer) grow memory without limit. The simulated network
/// (session-simnet), which runs simulations and not services, is exempt.
#[test]
fn library_code_has_no_unbounded_channel() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    for dir in library_crates() {
        if dir.ends_with("session-simnet") {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let code = code_of(&fs::read_to_string(&file).unwrap());
            for word in ["unbounded_channel", "UnboundedSender", "UnboundedReceiver"] {
                if code.contains(word) {
                    let relative = file.strip_prefix(&root).unwrap().display().to_string();
                    offenders.push(format!("{relative}: {word}"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "every queue between tasks is bounded; use `mpsc::channel(capacity)`:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_architecture_code_map_names_exactly_the_crates() {
    let map = fs::read_to_string(workspace_root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut documented: Vec<String> = map
        .lines()
        .filter_map(|line| line.strip_prefix("### `crates/"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect();
    documented.sort();
    let crates: Vec<String> = library_crates()
        .iter()
        .filter_map(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        documented, crates,
        "docs/ARCHITECTURE.md has a `### `crates/NAME`` section for each crate in crates/, and \
         only for those"
    );
}
