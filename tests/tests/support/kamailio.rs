//! Kamailio as a peer: found ([`installed`]), started in the foreground in a temporary
//! directory with a configuration the test writes ([`Kamailio::start`]), its log collected, and
//! stopped ([`Kamailio::stop`]; its process group killed on drop otherwise).
//!
//! Kamailio forks its workers; they share its process group, of which it is the leader (it is
//! started with a group of its own), so stopping signals the group. The configuration must log
//! `KAMAILIO READY` once its workers run: append [`READY_ROUTE`], whose event route does that.

use super::{TempDir, free_port, tool_available};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The limit of each wait on Kamailio: getting ready, exiting after SIGTERM.
pub const STEP: Duration = Duration::from_secs(10);

/// What the configuration must contain so that [`Kamailio::start`] knows it is ready.
pub const READY_ROUTE: &str = r#"
event_route[core:worker-one-init] {
    xlog("L_NOTICE", "KAMAILIO READY\n");
}
"#;

/// The Kamailio binary and its module directory when Kamailio is here with every module of
/// `modules` (e.g. `["tls"]`), named in the `apt-get` line of `packages`; `None` when it is not
/// and the test may pass without it (see `support::tool_available`).
///
/// # Panics
///
/// When it is missing and may not be: under CI, or without the opt-out.
pub fn installed(modules: &[&str], packages: &str) -> Option<(String, PathBuf)> {
    let binary = binary();
    if !tool_available(&binary, "-v", packages) {
        return None;
    }
    let found = module_dir().filter(|dir| {
        modules
            .iter()
            .all(|module| dir.join(format!("{module}.so")).is_file())
    });
    if let Some(dir) = found {
        return Some((binary, dir));
    }
    let what = format!("Kamailio's modules {modules:?} are not installed");
    if let Err(message) =
        session_simnet::peers::missing(&what, &format!("apt-get install -y {packages}"))
    {
        panic!("{message}");
    }
    None
}

/// `$KAMAILIO`, else where Debian puts it (not on every user's PATH), else `kamailio`.
fn binary() -> String {
    if let Some(binary) = std::env::var_os("KAMAILIO") {
        return binary.to_string_lossy().into_owned();
    }
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .unwrap_or("kamailio")
        .to_owned()
}

/// The first usual place of Kamailio's modules that holds `tm.so`: Debian's multiarch
/// directories, then the plain ones.
fn module_dir() -> Option<PathBuf> {
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path());
    let plain = [
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/usr/local/lib64",
    ];
    multiarch
        .chain(plain.into_iter().map(PathBuf::from))
        .map(|dir| dir.join("kamailio/modules"))
        .find(|dir| dir.join("tm.so").is_file())
}

/// A running Kamailio: its directory, process, port and log.
pub struct Kamailio {
    child: tokio::process::Child,
    port: u16,
    log: Arc<Mutex<String>>,
    stopped: bool,
    dir: TempDir,
}

impl Kamailio {
    /// Writes `files` (name, text) into a new directory, then the configuration `config`
    /// makes from that directory, the module directory and a free loopback port; starts
    /// Kamailio on it and waits until it logs `KAMAILIO READY` (see [`READY_ROUTE`]).
    pub async fn start(
        name: &str,
        (binary, modules): &(String, PathBuf),
        files: &[(&str, &str)],
        config: impl FnOnce(&Path, &Path, u16) -> String,
    ) -> Self {
        let dir = TempDir::new(name);
        for (file, text) in files {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        let port = free_port();
        let config_file = dir.path().join("kamailio.cfg");
        std::fs::write(&config_file, config(dir.path(), modules, port)).unwrap();
        // Foreground (-DD: workers forked, no daemon), log to stderr (-E), small memory,
        // runtime files in the directory.
        let mut child = tokio::process::Command::new(binary)
            .arg("-f")
            .arg(&config_file)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-w")
            .arg(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        // Test-only: the lines one Kamailio prints during one test, read as they come.
        let (line_tx, mut lines) = mpsc::unbounded_channel();
        super::baresip::collect_lines(child.stdout.take().unwrap(), log.clone(), line_tx.clone());
        super::baresip::collect_lines(child.stderr.take().unwrap(), log.clone(), line_tx);
        let mut kamailio = Self {
            child,
            port,
            log,
            stopped: false,
            dir,
        };
        let ready = tokio::time::timeout(STEP, async {
            while let Some(line) = lines.recv().await {
                if line.contains("KAMAILIO READY") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let log = kamailio.stop().await;
            panic!("Kamailio did not get ready within {STEP:?}:\n{log}");
        }
        kamailio
    }

    /// Where it listens (the port its configuration was given).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its directory (the files given to [`Kamailio::start`], its configuration).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` to its process group (it and the workers it forked).
    fn signal_group(&self, signal: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([signal, "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGTERM to the group and its exit within [`STEP`], else SIGKILL; idempotent. Returns
    /// everything it logged.
    pub async fn stop(&mut self) -> String {
        if !self.stopped {
            self.signal_group("-TERM");
            if tokio::time::timeout(STEP, self.child.wait()).await.is_err() {
                self.signal_group("-KILL");
                let _ = self.child.wait().await;
            }
            self.stopped = true;
        }
        self.log()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if !self.stopped {
            self.signal_group("-KILL");
        }
    }
}
