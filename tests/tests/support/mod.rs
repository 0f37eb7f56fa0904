//! Shared by the interop tests that drive baresip (and SIPp): finding the tools, temporary
//! directories, baresip's module directory and its end-of-call statistics and audio dumps, and
//! the tones both sides play.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
#![allow(dead_code, unreachable_pub)]

use session_media::AudioFrame;
use session_media::audio::{AudioSource, WavSource, goertzel_power};
use std::path::{Path, PathBuf};

/// The tone baresip plays (its `aufile` microphone).
pub const BARESIP_TONE_HZ: f64 = 1000.0;
/// The tone we play.
pub const OUR_TONE_HZ: f64 = 600.0;

/// True when `program` runs; when it is missing the test fails (under CI, or unless the
/// developer opted out: [`session_testkit::peers`]) or, opted out, returns early.
pub fn tool_available(program: &str, probe_arg: &str, apt_package: &str) -> bool {
    session_testkit::peers::require_program(program, probe_arg, apt_package)
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory named after the test binary, `name`, the process and the time.
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("{binary}-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where Debian installs baresip's modules (older releases, then multiarch ones): the first
/// candidate holding `module` (e.g. `g711.so`).
pub fn baresip_module_path(module: &str) -> PathBuf {
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

/// A line of the statistics baresip prints when a call ends (`rtp_stats yes`), as its
/// (transmit, receive) columns: `packets:` counts RTP packets; `pkt.report:` holds what the
/// peer's RTCP said: how many of baresip's packets it received and how many it sent.
pub fn baresip_stat(output: &str, name: &str) -> (u64, u64) {
    output
        .lines()
        .find_map(|line| {
            let mut numbers = line.trim().strip_prefix(name)?.split_whitespace();
            Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("no {name:?} line in baresip's output:\n{output}"))
}

/// The samples baresip decoded from what we sent (its `sndfile` dump, `dump-…-dec.wav`).
pub fn baresip_decoded_audio(dir: &Path) -> Vec<i16> {
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

/// The tone's share: power at `tone` over power at `other`.
pub fn tone_ratio(samples: &[i16], tone: f64, other: f64) -> f64 {
    goertzel_power(samples, tone) / goertzel_power(samples, other).max(f64::MIN_POSITIVE)
}
