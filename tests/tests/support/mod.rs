//! Shared by the interop tests that drive baresip, SIPp and Kamailio: finding the tools,
//! temporary directories, free loopback ports, the tones both sides play, SIPp's output, the
//! check that a `SessionManager` holds nothing, and the baresip and Kamailio harnesses
//! themselves ([`baresip`], [`kamailio`]).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
#![allow(dead_code, unreachable_pub)]

pub mod baresip;
pub mod kamailio;

use session_core::SessionManager;
use session_media::audio::goertzel_power;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

/// The tone baresip plays (its `aufile` microphone) unless a test chooses another.
pub const BARESIP_TONE_HZ: f64 = 1000.0;
/// The tone we play.
pub const OUR_TONE_HZ: f64 = 600.0;

/// True when `program` runs; when it is missing the test fails (under CI, or unless the
/// developer opted out: [`session_simnet::peers`]) or, opted out, returns early.
pub fn tool_available(program: &str, probe_arg: &str, apt_package: &str) -> bool {
    session_simnet::peers::require_program(program, probe_arg, apt_package)
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

/// A loopback port free for both UDP and TCP now (baresip listens for SIP on both, and its
/// configuration needs the number up front). Another process may take it before the peer
/// binds; the peer then fails to start and the test says so.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP")
}

/// The tone's share: power at `tone` over power at `other`.
pub fn tone_ratio(samples: &[i16], tone: f64, other: f64) -> f64 {
    goertzel_power(samples, tone) / goertzel_power(samples, other).max(f64::MIN_POSITIVE)
}

/// Asserts that the manager holds no call, admission slot or RTP port (after `on_call_ended`,
/// which the manager calls only once the call's media task has given its ports back).
pub fn assert_released(manager: &SessionManager) {
    assert_eq!(
        (
            manager.active_calls(),
            manager.admission().active(),
            manager.ports().in_use()
        ),
        (0, 0, 0),
        "calls, admission slots, RTP ports still held"
    );
}

/// SIPp's stdout and stderr.
pub fn sipp_text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// The cumulative value of a counter line of SIPp's final statistics screen.
pub fn sipp_counter(output: &str, name: &str) -> u64 {
    output
        .lines()
        .filter(|line| line.trim_start().starts_with(name))
        .filter_map(|line| line.rsplit('|').next()?.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no {name:?} in SIPp output:\n{output}"))
}

/// An even UDP port `p` with `p … p + 3` free on loopback now, for a SIPp that binds `p` and
/// `p + 2` (audio and video) for the media of its SDP; the RTCP ports next to them stay free.
pub fn free_media_ports() -> u16 {
    for _ in 0..100 {
        let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        if !(1024..=u16::MAX - 4).contains(&port) {
            continue;
        }
        let all_free = (port..port + 4)
            .map(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if all_free {
            return port;
        }
    }
    panic!("no four consecutive free UDP ports on loopback")
}
