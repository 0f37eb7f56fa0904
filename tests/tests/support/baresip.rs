//! baresip (Debian `baresip-core`, 1.0) as a peer, run headless from a configuration generated
//! in a temporary directory: SIP (on a free port) and RTP on 127.0.0.1, G.711 only, a WAV file
//! of a sine as its microphone (`aufile`), a player nobody drains (`aubridge`), the audio it
//! decodes dumped to WAV (`sndfile`), its end-of-call RTP statistics printed (`rtp_stats`) and,
//! unless a test opts out, its `ctrl_tcp` module, through which the test dials, hangs up, quits
//! and reads baresip's call events (netstring-framed JSON). Its SIP trace (`-s`) and everything
//! else it prints is collected for the checks and for failure messages.
//!
//! [`Baresip::builder`] sets the options (tone, account, control connection, extra modules,
//! commands at start, last-resort quit, SIP over TLS with a certificate and a trusted CA); [`BaresipBuilder::start`] waits until baresip is ready;
//! [`Baresip::quit`] asks it to quit and returns what it printed and decoded ([`Quit`]). The
//! process is killed when its handle is dropped, and every wait has a time limit ([`STEP`]).

use super::{BARESIP_TONE_HZ, TempDir, free_port};
use session_media::AudioFrame;
use session_media::audio::{AudioSink, AudioSource, ToneSource, WavRecorder, WavSource};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The limit of each wait on baresip: getting ready, a control event, quitting.
pub const STEP: Duration = Duration::from_secs(10);

/// How a baresip is to be configured and started: [`Baresip::builder`].
#[derive(Debug, Clone)]
pub struct BaresipBuilder {
    name: String,
    tone: f64,
    user: String,
    auto_answer: bool,
    control: bool,
    module_apps: Vec<String>,
    execute: Vec<String>,
    quit_after: Duration,
    tls: Option<TlsFiles>,
    /// The account's registration parameters (`regint=0`, never registered, by default).
    registration: String,
}

/// What baresip's TLS needs, in PEM: its certificate followed by the certificate's key
/// (`sip_certificate`), and the CA it trusts (`sip_cafile`).
#[derive(Debug, Clone)]
struct TlsFiles {
    identity: String,
    ca: String,
}

impl BaresipBuilder {
    /// The frequency of the sine its microphone plays (default [`BARESIP_TONE_HZ`]).
    pub fn tone(mut self, hz: f64) -> Self {
        self.tone = hz;
        self
    }

    /// The user of its account, `<sip:USER@127.0.0.1>` (default `baresip`); never registered.
    pub fn user(mut self, user: &str) -> Self {
        user.clone_into(&mut self.user);
        self
    }

    /// Its account answers every call at once (`answermode=auto`).
    pub fn auto_answer(mut self) -> Self {
        self.auto_answer = true;
        self
    }

    /// No `ctrl_tcp` module: [`Baresip::command`] and [`Baresip::event`] are not available, and
    /// [`Baresip::quit`] sends SIGTERM.
    pub fn without_control(mut self) -> Self {
        self.control = false;
        self
    }

    /// Loads one more application module (`module_app`, e.g. `rtcpsummary.so`).
    pub fn module_app(mut self, module: &str) -> Self {
        self.module_apps.push(module.to_owned());
        self
    }

    /// A command baresip executes once started (`-e`, e.g. `/dial sip:…`).
    pub fn execute(mut self, command: &str) -> Self {
        self.execute.push(command.to_owned());
        self
    }

    /// SIP over TLS: baresip presents `certificate` (PEM, with its `key`), trusts `ca`, and its
    /// account asks for TLS (`;transport=tls`, so its Contact names its TLS listener). baresip
    /// listens for TLS on the port after its SIP port ([`Baresip::tls_sip`]).
    pub fn tls(mut self, certificate: &str, key: &str, ca: &str) -> Self {
        self.tls = Some(TlsFiles {
            identity: format!("{certificate}{key}"),
            ca: ca.to_owned(),
        });
        self
    }

    /// Its account registers at `registrar` (its outbound proxy) every `interval`, answering
    /// digest challenges with `password` (baresip 1.0 answers MD5 only). Its address of record
    /// stays `<sip:USER@127.0.0.1>`.
    pub fn register_at(
        mut self,
        registrar: SocketAddr,
        password: &str,
        interval: Duration,
    ) -> Self {
        self.registration = format!(
            "regint={};auth_pass={password};outbound=\"sip:{registrar}\"",
            interval.as_secs()
        );
        self
    }

    /// When baresip quits by itself, a last resort (`-t`; default 120 s).
    pub fn quit_after(mut self, limit: Duration) -> Self {
        self.quit_after = limit;
        self
    }

    /// Writes the configuration, starts baresip, waits until it is ready and connects to its
    /// control port.
    pub async fn start(self) -> Baresip {
        let dir = TempDir::new(&self.name);
        let mut tone_file = WavRecorder::create(dir.path().join("tone.wav")).unwrap();
        let mut source = ToneSource::new(self.tone, 8000);
        // 30 s: baresip ends the call when its source file ends, long after each test.
        for _ in 0..1500 {
            tone_file
                .write_frame(&source.next_frame().unwrap())
                .unwrap();
        }
        tone_file.finalize().unwrap();
        // The ports are probed free, then released for baresip to bind: another process (or a
        // baresip started beside this one) may take one in between, and baresip also binds TCP
        // (and TLS, on the next port). A start that loses that race is retried on new ports.
        let mut attempt = 0;
        let (sip, ctrl_port, child, output, lines) = loop {
            attempt += 1;
            let sip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            let ctrl_port = self.control.then(free_port);
            let (child, output, lines, ready) = self.spawn(&dir, sip, ctrl_port).await;
            if ready {
                break (sip, ctrl_port, child, output, lines);
            }
            let printed = output.lock().unwrap().clone();
            if attempt < 5 && printed.contains("Address already in use") {
                continue;
            }
            panic!("baresip {} did not get ready:\n{printed}", self.name);
        };
        let control = match ctrl_port {
            Some(port) => Some(Control::connect(port).await),
            None => None,
        };
        Baresip {
            name: self.name,
            tone: self.tone,
            sip,
            dir,
            child,
            output,
            lines,
            control,
        }
    }

    /// Writes the configuration for these ports, starts baresip and waits (at most [`STEP`])
    /// until it says it is ready; `false` with what it printed when it did not.
    async fn spawn(
        &self,
        dir: &TempDir,
        sip: SocketAddr,
        ctrl_port: Option<u16>,
    ) -> (
        tokio::process::Child,
        Arc<Mutex<String>>,
        mpsc::UnboundedReceiver<String>,
        bool,
    ) {
        std::fs::write(
            dir.path().join("config"),
            self.config(dir.path(), sip, ctrl_port),
        )
        .unwrap();
        let answermode = if self.auto_answer {
            ";answermode=auto"
        } else {
            ""
        };
        let transport = if self.tls.is_some() {
            ";transport=tls"
        } else {
            ""
        };
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "<sip:{}@127.0.0.1{transport}>;{}{answermode}\n",
                self.user, self.registration
            ),
        )
        .unwrap();

        let mut command = tokio::process::Command::new("baresip");
        command
            .arg("-f")
            .arg(dir.path())
            // `-s` traces SIP (checked, and shown on failure); `-t` is a last-resort quit.
            .args(["-s", "-t", &self.quit_after.as_secs().to_string()]);
        for execute in &self.execute {
            command.args(["-e", execute]);
        }
        let mut child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        // Test-only: the lines one baresip prints during one test (it quits within
        // `quit_after`), read as they come.
        let (line_tx, mut lines) = mpsc::unbounded_channel();
        collect_lines(
            child.stdout.take().unwrap(),
            output.clone(),
            line_tx.clone(),
        );
        collect_lines(child.stderr.take().unwrap(), output.clone(), line_tx);
        let ready = tokio::time::timeout(STEP, async {
            while let Some(line) = lines.recv().await {
                if line.contains("baresip is ready") {
                    return true;
                }
            }
            false
        })
        .await;
        (child, output, lines, ready == Ok(true))
    }

    /// The text of its `config` file.
    fn config(&self, dir: &Path, sip: SocketAddr, ctrl_port: Option<u16>) -> String {
        let dir = dir.display();
        let modules = module_path(if self.control {
            "ctrl_tcp.so"
        } else {
            "g711.so"
        });
        let mut config = format!(
            "poll_method epoll\n\
             sip_listen {sip}\n\
             net_interface 127.0.0.1\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_source aufile,{dir}/tone.wav\n\
             rtcp_mux no\n\
             rtp_stats yes\n\
             module_path {modules}\n\
             module g711.so\n\
             module aufile.so\n\
             module aubridge.so\n\
             module sndfile.so\n",
            modules = modules.display(),
        );
        if self.control {
            config.push_str("module ctrl_tcp.so\n");
        }
        for module in ["account.so", "menu.so"]
            .into_iter()
            .chain(self.module_apps.iter().map(String::as_str))
        {
            config.push_str(&format!("module_app {module}\n"));
        }
        if let Some(port) = ctrl_port {
            config.push_str(&format!("ctrl_tcp_listen 127.0.0.1:{port}\n"));
        }
        config.push_str(&format!("snd_path {dir}\n"));
        if let Some(tls) = &self.tls {
            std::fs::write(format!("{dir}/tls-identity.pem"), &tls.identity).unwrap();
            std::fs::write(format!("{dir}/tls-ca.pem"), &tls.ca).unwrap();
            config.push_str(&format!(
                "sip_certificate {dir}/tls-identity.pem\nsip_cafile {dir}/tls-ca.pem\n"
            ));
        }
        config
    }
}

/// A running baresip: its directory, process, output and control connection.
pub struct Baresip {
    name: String,
    tone: f64,
    sip: SocketAddr,
    dir: TempDir,
    child: tokio::process::Child,
    /// Everything it printed so far (stdout and stderr, SIP trace included).
    output: Arc<Mutex<String>>,
    lines: mpsc::UnboundedReceiver<String>,
    control: Option<Control>,
}

/// The `ctrl_tcp` connection.
struct Control {
    ctrl: tokio::net::tcp::OwnedWriteHalf,
    /// The JSON texts of `ctrl_tcp` events and responses, in arrival order.
    events: mpsc::UnboundedReceiver<String>,
    tokens: u32,
}

impl Control {
    async fn connect(port: u16) -> Self {
        let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap_or_else(|e| panic!("baresip's ctrl_tcp port {port}: {e}"));
        let (read, ctrl) = stream.into_split();
        // Test-only: the control events of one baresip during one test.
        let (event_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(read_netstrings(read, event_tx));
        Self {
            ctrl,
            events,
            tokens: 0,
        }
    }
}

impl Baresip {
    /// A baresip named `name` (its directory, and in failure messages) with the default
    /// options: a [`BARESIP_TONE_HZ`] tone, account `baresip` not answering by itself, a
    /// control connection, quitting by itself after 120 s.
    pub fn builder(name: &str) -> BaresipBuilder {
        BaresipBuilder {
            name: name.to_owned(),
            tone: BARESIP_TONE_HZ,
            user: "baresip".to_owned(),
            auto_answer: false,
            control: true,
            module_apps: Vec::new(),
            execute: Vec::new(),
            quit_after: Duration::from_secs(120),
            tls: None,
            registration: "regint=0".to_owned(),
        }
    }

    /// Where it listens for SIP.
    pub fn sip(&self) -> SocketAddr {
        self.sip
    }

    /// Where it listens for SIP over TLS (with [`BaresipBuilder::tls`]): baresip takes the
    /// port after its SIP port.
    pub fn tls_sip(&self) -> SocketAddr {
        SocketAddr::new(self.sip.ip(), self.sip.port() + 1)
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn control(&mut self) -> &mut Control {
        let name = &self.name;
        self.control
            .as_mut()
            .unwrap_or_else(|| panic!("baresip {name} was started without_control"))
    }

    /// Sends a `ctrl_tcp` command (`dial`, `hangup`, `quit` …).
    pub async fn command(&mut self, command: &str, params: &str) {
        let control = self.control();
        control.tokens += 1;
        let json = format!(
            r#"{{"command":"{command}","params":"{params}","token":"t{}"}}"#,
            control.tokens
        );
        let framed = format!("{}:{json},", json.len());
        control.ctrl.write_all(framed.as_bytes()).await.unwrap();
    }

    /// Waits for the `ctrl_tcp` event of type `kind` (e.g. `CALL_ESTABLISHED`) and returns
    /// its JSON text.
    pub async fn event(&mut self, kind: &str) -> String {
        let pattern = format!(r#""type":"{kind}""#);
        let events = &mut self.control().events;
        let wait = async {
            while let Some(event) = events.recv().await {
                if event.contains(&pattern) {
                    return Some(event);
                }
            }
            None
        };
        let found = tokio::time::timeout(STEP, wait).await;
        match found {
            Ok(Some(event)) => event,
            _ => panic!(
                "no event {kind} from baresip {} within {STEP:?}:\n{}",
                self.name,
                self.output()
            ),
        }
    }

    /// Asks baresip to quit (`quit` on its control connection, SIGTERM without one; either way
    /// it closes its WAV dumps), waits for it to exit (killing it after the time limit) and
    /// returns what it printed and decoded.
    pub async fn quit(mut self) -> Quit {
        if self.control.is_some() {
            self.command("quit", "").await;
        } else {
            let pid = self.child.id().expect("baresip is running").to_string();
            let _ = tokio::process::Command::new("sh")
                .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
                .status()
                .await;
        }
        let exited = tokio::time::timeout(STEP, self.child.wait()).await;
        if exited.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        // The pipes close with the process: drain the lines still queued.
        let drain = async { while self.lines.recv().await.is_some() {} };
        let _ = tokio::time::timeout(STEP, drain).await;
        let output = self.output();
        assert!(
            exited.is_ok(),
            "baresip {} did not quit:\n{output}",
            self.name
        );
        let decoded = decoded_audio(self.dir.path());
        Quit {
            name: self.name,
            tone: self.tone,
            output,
            decoded,
        }
    }
}

/// What a baresip left behind.
#[derive(Debug)]
pub struct Quit {
    /// The name it was started with.
    pub name: String,
    /// The tone it played.
    pub tone: f64,
    /// Everything it printed (stdout and stderr, SIP trace and statistics included).
    pub output: String,
    /// The audio it decoded from its peer, 8 kHz (its `sndfile` dump).
    pub decoded: Vec<i16>,
}

impl Quit {
    /// A line of the statistics baresip printed when its call ended (`rtp_stats yes`), as its
    /// (transmit, receive) columns: `packets:` counts RTP packets; `pkt.report:` holds what the
    /// peer's RTCP said: how many of baresip's packets it received and how many it sent.
    pub fn stat(&self, name: &str) -> (u64, u64) {
        let output = &self.output;
        output
            .lines()
            .find_map(|line| {
                let mut numbers = line.trim().strip_prefix(name)?.split_whitespace();
                Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
            })
            .unwrap_or_else(|| panic!("no {name:?} line in baresip's output:\n{output}"))
    }
}

/// Where Debian installs baresip's modules (older releases, then multiarch ones): the first
/// candidate holding `module` (e.g. `g711.so`).
fn module_path(module: &str) -> PathBuf {
    let candidates = [
        "/usr/lib/baresip/modules",
        "/usr/lib/x86_64-linux-gnu/baresip/modules",
        "/usr/lib/aarch64-linux-gnu/baresip/modules",
        "/usr/local/lib/baresip/modules",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join(module).exists())
        .unwrap_or_else(|| panic!("no baresip module directory with {module} among {candidates:?}"))
}

/// The samples baresip decoded from its peer (its `sndfile` dump, `dump-…-dec.wav`).
fn decoded_audio(dir: &Path) -> Vec<i16> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip dumped the audio it decoded");
    let mut wav = WavSource::open(&file).unwrap();
    std::iter::from_fn(|| wav.next_frame())
        .flat_map(|frame: AudioFrame| *frame.samples())
        .collect()
}

/// Appends every line of `pipe` to `output` and sends it on `lines`.
pub fn collect_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    pipe: R,
    output: Arc<Mutex<String>>,
    lines: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            {
                let mut all = output.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
            let _ = lines.send(line);
        }
    });
}

/// Reads netstrings (`LEN:DATA,`) from baresip's control connection and sends each DATA.
async fn read_netstrings(
    mut read: tokio::net::tcp::OwnedReadHalf,
    events: mpsc::UnboundedSender<String>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(colon) = buffer.iter().position(|&b| b == b':') {
            let length: usize = std::str::from_utf8(&buffer[..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not a netstring: {buffer:?}"));
            let end = colon + 1 + length;
            if buffer.len() <= end {
                break;
            }
            assert_eq!(buffer[end], b',', "netstring without its comma");
            let data = String::from_utf8_lossy(&buffer[colon + 1..end]).into_owned();
            buffer.drain(..=end);
            if events.send(data).is_err() {
                return;
            }
        }
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}
