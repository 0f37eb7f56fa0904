//! Small helpers shared by the xtask commands: locating the workspace, running cargo, and
//! running a child process with a timeout.

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
