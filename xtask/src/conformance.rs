//! `cargo xtask conformance [--dir PATH]`: runs the RFC 4475 torture-test corpus through
//! session-sip and checks both columns of `EXPECTED.tsv`.
//!
//! The messages are judged by session-sip's `sip-check` example (run once over every file):
//! whether each parses (valid ones must also round-trip, parse(serialize(m)) == m) and what a
//! UAS endpoint does with it — accept, answer with a status code, or drop.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::util::{cargo, workspace_root};

/// One row of EXPECTED.tsv.
struct Case {
    file: String,
    section: String,
    parse: String,
    actions: Vec<String>,
}

fn read_expected(dir: &std::path::Path) -> Result<Vec<Case>, String> {
    let path = dir.join("EXPECTED.tsv");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut cases = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, section, parse, action] = cols.as_slice() else {
            return Err(format!("bad EXPECTED.tsv line: {line:?}"));
        };
        cases.push(Case {
            file: (*file).to_owned(),
            section: (*section).to_owned(),
            parse: (*parse).to_owned(),
            actions: action.split('|').map(str::to_owned).collect(),
        });
    }
    Ok(cases)
}

/// Runs the conformance check; returns the process exit code.
pub(crate) fn run(args: &[String]) -> i32 {
    let mut dir = workspace_root().join("../shared/conformance/rfc4475");
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--dir" => match it.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("conformance: --dir needs a path");
                    return 2;
                }
            },
            other => {
                eprintln!("conformance: unknown argument {other:?}");
                return 2;
            }
        }
    }
    if !dir.is_dir() {
        eprintln!("conformance: corpus folder {} is missing", dir.display());
        return 1;
    }
    let cases = match read_expected(&dir) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            eprintln!("conformance: EXPECTED.tsv lists no cases");
            return 1;
        }
        Err(e) => {
            eprintln!("conformance: {e}");
            return 1;
        }
    };
    let files: Vec<PathBuf> = cases.iter().map(|c| dir.join(&c.file)).collect();
    let output = cargo()
        .args([
            "run",
            "--quiet",
            "-p",
            "session-sip",
            "--example",
            "sip-check",
            "--",
        ])
        .args(&files)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            eprintln!("conformance: cannot run sip-check: {e}");
            return 1;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    // sip-check exits non-zero when some file does not parse, which the corpus expects; only a
    // run that printed nothing is a failure of its own.
    if stdout.trim().is_empty() {
        eprintln!(
            "conformance: sip-check printed nothing:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return 1;
    }
    let mut results: HashMap<String, Vec<String>> = HashMap::new();
    for line in stdout.lines() {
        let cols: Vec<String> = line.split('\t').map(str::to_owned).collect();
        if let Some(path) = cols.first() {
            let name = PathBuf::from(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            results.insert(name, cols);
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        let got = results.get(&case.file);
        let (parse, action, reason) = match got.map(Vec::as_slice) {
            Some([_, parse, action, reason, ..]) => {
                (parse.as_str(), action.as_str(), reason.as_str())
            }
            _ => ("?", "?", "no output from sip-check"),
        };
        let round_trip_ok = !reason.contains("ROUND-TRIP MISMATCH");
        let parse_ok = match case.parse.as_str() {
            "valid" => parse == "valid" && round_trip_ok,
            "invalid" => parse == "invalid",
            _ => parse == "valid" || parse == "invalid",
        };
        let action_ok = case.actions.iter().any(|a| a == action);
        let ok = parse_ok && action_ok;
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
        println!(
            "{}  {:<16} {:<9} parse {:<7} (want {:<7}) action {:<6} (want {:<16}) {}",
            if ok { "PASS" } else { "FAIL" },
            case.file,
            case.section,
            parse,
            case.parse,
            action,
            case.actions.join("|"),
            reason
        );
    }
    println!("{passed} passed, {failed} failed");
    i32::from(failed > 0)
}
