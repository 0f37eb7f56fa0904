//! `cargo xtask examples`: builds every example of the `examples2` package once, then runs
//! them one by one in name order (`01_…`, `02_…`), each with a timeout, and prints a table.

use crate::util::{self, Outcome};
use std::path::PathBuf;
use std::time::Duration;

struct Options {
    filters: Vec<String>,
    timeout: Duration,
    release: bool,
    verbose: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        filters: Vec::new(),
        timeout: Duration::from_secs(120),
        release: false,
        verbose: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => {
                let secs = args.next().ok_or("--timeout needs a number of seconds")?;
                let secs: u64 = secs
                    .parse()
                    .map_err(|_| format!("--timeout: not a number: {secs}"))?;
                options.timeout = Duration::from_secs(secs);
            }
            "--release" => options.release = true,
            "--verbose" | "-v" => options.verbose = true,
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            filter => options.filters.push(filter.to_owned()),
        }
    }
    Ok(options)
}

/// The example names of `examples2/examples/` (files `NAME.rs` and folders `NAME/main.rs`),
/// sorted so the numbered prefix gives the running order.
fn example_names() -> std::io::Result<Vec<String>> {
    let dir = util::workspace_root().join("examples2").join("examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = if path.is_dir() && path.join("main.rs").is_file() {
            path.file_name().map(|n| n.to_string_lossy().into_owned())
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem().map(|n| n.to_string_lossy().into_owned())
        } else {
            None
        };
        names.extend(name);
    }
    names.sort();
    Ok(names)
}

pub(crate) fn run(args: &[String]) -> i32 {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("xtask examples: {message}");
            return 2;
        }
    };
    let names = match example_names() {
        Ok(names) => names,
        Err(error) => {
            eprintln!("xtask examples: cannot list examples2/examples: {error}");
            return 1;
        }
    };
    let selected: Vec<String> = names
        .into_iter()
        .filter(|name| {
            options.filters.is_empty() || options.filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    if selected.is_empty() {
        eprintln!("xtask examples: no example matches {:?}", options.filters);
        return 1;
    }

    eprintln!("building {} example(s) of examples2 ...", selected.len());
    let mut build = util::cargo();
    build.args(["build", "--package", "examples2", "--examples"]);
    if options.release {
        build.arg("--release");
    }
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("xtask examples: build failed ({status})");
            return 1;
        }
        Err(error) => {
            eprintln!("xtask examples: cannot run cargo: {error}");
            return 1;
        }
    }

    let profile_dir = if options.release { "release" } else { "debug" };
    let bin_dir = util::target_dir().join(profile_dir).join("examples");
    let log_dir = util::target_dir().join("xtask-examples");
    if let Err(error) = std::fs::create_dir_all(&log_dir) {
        eprintln!(
            "xtask examples: cannot create {}: {error}",
            log_dir.display()
        );
        return 1;
    }

    let mut rows = Vec::new();
    for name in &selected {
        let binary: PathBuf = bin_dir.join(name);
        let log = log_dir.join(format!("{name}.log"));
        eprintln!("running {name} ...");
        let mut command = std::process::Command::new(&binary);
        command.current_dir(util::workspace_root());
        let (verdict, seconds) = match util::run_with_timeout(command, &log, options.timeout) {
            Ok((Outcome::Exited(status), took)) if status.success() => {
                ("pass".to_owned(), took.as_secs_f64())
            }
            Ok((Outcome::Exited(status), took)) => (format!("FAIL ({status})"), took.as_secs_f64()),
            Ok((Outcome::TimedOut, took)) => (
                format!("FAIL (timeout {}s)", options.timeout.as_secs()),
                took.as_secs_f64(),
            ),
            Err(error) => (format!("FAIL (cannot run: {error})"), 0.0),
        };
        let failed = verdict != "pass";
        if failed || options.verbose {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = output.lines().collect();
            let shown = if failed {
                &lines[lines.len().saturating_sub(40)..]
            } else {
                &lines[..]
            };
            eprintln!("---- output of {name} (log: {}) ----", log.display());
            for line in shown {
                eprintln!("{line}");
            }
            eprintln!("----");
        }
        rows.push((name.clone(), verdict, seconds));
    }

    let width = rows
        .iter()
        .map(|(name, _, _)| name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!();
    println!("{:<width$}  {:<24}  {:>8}", "example", "result", "seconds");
    println!("{:-<width$}  {:-<24}  {:->8}", "", "", "");
    for (name, verdict, seconds) in &rows {
        println!("{name:<width$}  {verdict:<24}  {seconds:>8.2}");
    }
    let failed = rows
        .iter()
        .filter(|(_, verdict, _)| verdict != "pass")
        .count();
    println!();
    println!("{} passed, {} failed", rows.len() - failed, failed);
    i32::from(failed > 0)
}
