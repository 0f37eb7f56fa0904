//! Repository checks that run as tests, so `cargo test --workspace` enforces them: every crate
//! documents itself and opts into the workspace lints, no test is ignored, and the README keeps
//! its two set-up commands at the top.

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
