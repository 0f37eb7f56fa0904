//! Small helpers shared by the xtask commands: locating the workspace, running cargo,
//! running a child process with a timeout, and reading a process's CPU time.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// The cargo that runs us (so the same toolchain builds everything).
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Where cargo puts build output.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// How a child process ended.
pub(crate) enum Outcome {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It ran past the timeout and was killed.
    TimedOut,
}

/// Runs `command` with stdout and stderr sent to `log`, killing it after `timeout`.
pub(crate) fn run_with_timeout(
    mut command: Command,
    log: &Path,
    timeout: Duration,
) -> std::io::Result<(Outcome, Duration)> {
    let out = File::create(log)?;
    let err = out.try_clone()?;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((Outcome::Exited(status), started.elapsed()));
        }
        if started.elapsed() >= timeout {
            // The example overran: stop it so it cannot hold ports for the next one.
            let _ = child.kill();
            let _ = child.wait();
            return Ok((Outcome::TimedOut, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of `/proc/PID/stat`, counted
/// after the command name's closing parenthesis).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After ")", field 3 (state) is index 0, so utime (14) is index 11 and stime (15) 12.
    field(11) + field(12)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
