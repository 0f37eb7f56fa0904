//! Small helpers shared by the xtask commands: locating the workspace, running cargo,
//! running a child process with a timeout, reading a process's CPU time and children, a free
//! loopback port, the load average and a log's last lines.

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

/// A loopback port free for both UDP and TCP right now (our servers listen on both; Kamailio
/// and SIPp on UDP).
pub(crate) fn free_port() -> Result<u16, String> {
    for _ in 0..20 {
        let socket =
            std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
        let port = socket
            .local_addr()
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no port free for both UDP and TCP".to_owned())
}

/// The process ids whose parent is `pid` (from `/proc/PID/stat`).
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| {
                    // `PID (COMM) STATE PPID …`; COMM may hold spaces and parentheses.
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The machine's load averages over 1, 5 and 15 minutes, as `a / b / c`.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_default()
}

/// The last `lines` lines of the file at `path`.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.into_iter().rev().collect::<Vec<_>>().join("\n")
}
