//! RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME and BYE, built into a reused
//! buffer and parsed without panicking; the receiver statistics behind report blocks (loss,
//! extended sequence numbers §A.1/A.3, interarrival jitter §6.4.1/A.8), the round-trip time
//! from LSR/DLSR (§6.4.1), and a MOS estimate from a simplified E-model (ITU-T G.107).
//!
//! Everything here is sans-IO: arrival times come in as `now`, wall-clock time as [`NtpTime`].
//!
//! ```
//! use session_media::rtcp::{self, RtcpPacket};
//!
//! let mut buf = Vec::new();
//! rtcp::write_rr(&mut buf, 0x1234, &[]);
//! rtcp::write_sdes_cname(&mut buf, 0x1234, "alice@host");
//! rtcp::write_bye(&mut buf, &[0x1234], Some("bye"));
//! let packets = rtcp::parse_compound(&buf).unwrap();
//! assert!(matches!(&packets[1], RtcpPacket::SourceDescription(c) if c[0].1 == "alice@host"));
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// RTCP packet types (RFC 3550 §12.1).
pub mod packet_type {
    /// Sender report.
    pub const SR: u8 = 200;
    /// Receiver report.
    pub const RR: u8 = 201;
    /// Source description.
    pub const SDES: u8 = 202;
    /// Goodbye.
    pub const BYE: u8 = 203;
    /// Application-defined.
    pub const APP: u8 = 204;
}

/// A 64-bit NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    const UNIX_OFFSET_SECS: u64 = 2_208_988_800;

    /// The NTP time of a system time.
    pub fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs().wrapping_add(Self::UNIX_OFFSET_SECS);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        Self((secs << 32) | frac)
    }

    /// The middle 32 bits, as used in LSR and for round-trip arithmetic (units of 1/65536 s).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// A wall clock anchored to a monotonic instant, so NTP times can be computed from `now`
/// without reading the system clock again (sans-IO callers keep one per endpoint).
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    wall: SystemTime,
    mono: Instant,
}

impl NtpClock {
    /// Anchors the clock: `wall` and `mono` must be read at the same moment.
    pub fn new(wall: SystemTime, mono: Instant) -> Self {
        Self { wall, mono }
    }

    /// The NTP time at `now`.
    pub fn at(&self, now: Instant) -> NtpTime {
        NtpTime::from_system_time(self.wall + now.saturating_duration_since(self.mono))
    }
}

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from the source (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Round-trip time seen by the sender of the SR this block answers: arrival − LSR − DLSR
    /// (RFC 3550 §6.4.1). `None` when the peer has not seen an SR from us yet.
    pub fn round_trip(&self, arrival: NtpTime) -> Option<Duration> {
        if self.last_sr == 0 {
            return None;
        }
        let rtt = arrival
            .middle32()
            .wrapping_sub(self.last_sr)
            .wrapping_sub(self.delay_since_last_sr);
        // Peers that count DLSR in whole milliseconds (baresip among them) overstate it by up
        // to 1 ms, which on a fast link makes the result slightly "negative": read anything
        // within 2 ms below zero as zero. Further below is clock trouble, and anything over
        // 1 min is too: both are ignored.
        let slack = 2 * 65_536 / 1_000;
        if rtt.wrapping_neg() <= slack {
            return Some(Duration::ZERO);
        }
        (rtt < 60 << 16).then(|| Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536))
    }
}

/// Sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wall-clock time of the report.
    pub ntp: NtpTime,
    /// The same instant in the stream's RTP timestamp units.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// One parsed RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// SR.
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// Sender info.
        info: SenderInfo,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// RR.
    ReceiverReport {
        /// Sender SSRC.
        ssrc: u32,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// SDES: (SSRC, CNAME) per chunk that has a CNAME.
    SourceDescription(Vec<(u32, String)>),
    /// BYE.
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
        /// Reason, if given.
        reason: Option<String>,
    },
    /// Another packet type, skipped.
    Other(u8),
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// Writes a common header with a placeholder length; returns the header's offset.
fn begin(buf: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0x80 | (count & 0x1F), pt, 0, 0]);
    at
}

/// Pads to 32 bits and fills in the length (in 32-bit words minus one).
fn finish(buf: &mut Vec<u8>, at: usize) {
    while !(buf.len() - at).is_multiple_of(4) {
        buf.push(0);
    }
    let words = ((buf.len() - at) / 4 - 1) as u16;
    if let Some(len) = buf.get_mut(at + 2..at + 4) {
        len.copy_from_slice(&words.to_be_bytes());
    }
}

fn put_block(buf: &mut Vec<u8>, b: &ReportBlock) {
    put_u32(buf, b.ssrc);
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
    put_u32(buf, (u32::from(b.fraction_lost) << 24) | lost);
    put_u32(buf, b.highest_seq);
    put_u32(buf, b.jitter);
    put_u32(buf, b.last_sr);
    put_u32(buf, b.delay_since_last_sr);
}

/// Appends an SR (at most 31 report blocks are written).
pub fn write_sr(buf: &mut Vec<u8>, ssrc: u32, info: &SenderInfo, reports: &[ReportBlock]) {
    let reports = reports.get(..reports.len().min(31)).unwrap_or_default();
    let at = begin(buf, reports.len() as u8, packet_type::SR);
    put_u32(buf, ssrc);
    put_u32(buf, (info.ntp.0 >> 32) as u32);
    put_u32(buf, info.ntp.0 as u32);
    put_u32(buf, info.rtp_timestamp);
    put_u32(buf, info.packet_count);
    put_u32(buf, info.octet_count);
    reports.iter().for_each(|b| put_block(buf, b));
    finish(buf, at);
}

/// Appends an RR (at most 31 report blocks are written).
pub fn write_rr(buf: &mut Vec<u8>, ssrc: u32, reports: &[ReportBlock]) {
    let reports = reports.get(..reports.len().min(31)).unwrap_or_default();
    let at = begin(buf, reports.len() as u8, packet_type::RR);
    put_u32(buf, ssrc);
    reports.iter().for_each(|b| put_block(buf, b));
    finish(buf, at);
}

/// Appends an SDES with one chunk carrying a CNAME (cut to 255 bytes).
pub fn write_sdes_cname(buf: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let at = begin(buf, 1, packet_type::SDES);
    put_u32(buf, ssrc);
    let bytes = cname.as_bytes();
    let bytes = bytes.get(..bytes.len().min(255)).unwrap_or_default();
    buf.push(1); // CNAME
    buf.push(bytes.len() as u8);
    buf.extend_from_slice(bytes);
    // The item list ends with a null octet, then pads to 32 bits (§6.5).
    buf.push(0);
    finish(buf, at);
}

/// Appends a BYE (at most 31 sources; reason cut to 255 bytes).
pub fn write_bye(buf: &mut Vec<u8>, ssrcs: &[u32], reason: Option<&str>) {
    let ssrcs = ssrcs.get(..ssrcs.len().min(31)).unwrap_or_default();
    let at = begin(buf, ssrcs.len() as u8, packet_type::BYE);
    ssrcs.iter().for_each(|&s| put_u32(buf, s));
    if let Some(reason) = reason {
        let bytes = reason.as_bytes();
        let bytes = bytes.get(..bytes.len().min(255)).unwrap_or_default();
        buf.push(bytes.len() as u8);
        buf.extend_from_slice(bytes);
    }
    finish(buf, at);
}

/// A cursor over bytes that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32> {
        let (head, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(Error::MalformedRtcp("truncated"))?;
        self.0 = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn u8(&mut self) -> Result<u8> {
        let (&b, rest) = self
            .0
            .split_first()
            .ok_or(Error::MalformedRtcp("truncated"))?;
        self.0 = rest;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(Error::MalformedRtcp("truncated"))?;
        self.0 = rest;
        Ok(head)
    }
}

fn read_block(r: &mut Reader<'_>) -> Result<ReportBlock> {
    let ssrc = r.u32()?;
    let lost = r.u32()?;
    // Sign-extend the 24-bit cumulative loss.
    let cumulative_lost = ((lost << 8) as i32) >> 8;
    Ok(ReportBlock {
        ssrc,
        fraction_lost: (lost >> 24) as u8,
        cumulative_lost,
        highest_seq: r.u32()?,
        jitter: r.u32()?,
        last_sr: r.u32()?,
        delay_since_last_sr: r.u32()?,
    })
}

/// True when a datagram looks like RTCP rather than RTP (RFC 5761 §4: payload types 200–204
/// sit where RTP's marker + payload type would be 72–76).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(192..=223)) && datagram.first().is_some_and(|b| b >> 6 == 2)
}

/// Parses a compound RTCP packet. Unknown packet types are skipped as [`RtcpPacket::Other`].
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>> {
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let [first, pt, l0, l1, ..] = *rest else {
            return Err(Error::MalformedRtcp("truncated header"));
        };
        if first >> 6 != 2 {
            return Err(Error::MalformedRtcp("version is not 2"));
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let (packet, tail) = rest
            .split_at_checked(len)
            .ok_or(Error::MalformedRtcp("length beyond the datagram"))?;
        rest = tail;
        let count = usize::from(first & 0x1F);
        // Padding (P bit) counts in the last octet; strip it from the body.
        let body_end = if first & 0x20 != 0 {
            let pad = usize::from(*packet.last().unwrap_or(&0));
            len.checked_sub(pad)
                .filter(|&e| e >= 4)
                .ok_or(Error::MalformedRtcp("bad padding"))?
        } else {
            len
        };
        let mut r = Reader(packet.get(4..body_end).unwrap_or_default());
        let parsed = match pt {
            packet_type::SR => {
                let ssrc = r.u32()?;
                let hi = r.u32()?;
                let lo = r.u32()?;
                let info = SenderInfo {
                    ntp: NtpTime((u64::from(hi) << 32) | u64::from(lo)),
                    rtp_timestamp: r.u32()?,
                    packet_count: r.u32()?,
                    octet_count: r.u32()?,
                };
                let reports = (0..count)
                    .map(|_| read_block(&mut r))
                    .collect::<Result<_>>()?;
                RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports,
                }
            }
            packet_type::RR => {
                let ssrc = r.u32()?;
                let reports = (0..count)
                    .map(|_| read_block(&mut r))
                    .collect::<Result<_>>()?;
                RtcpPacket::ReceiverReport { ssrc, reports }
            }
            packet_type::SDES => {
                let mut chunks = Vec::new();
                for _ in 0..count {
                    let ssrc = r.u32()?;
                    let mut consumed = 0usize;
                    loop {
                        let kind = r.u8()?;
                        consumed += 1;
                        if kind == 0 {
                            break;
                        }
                        let n = usize::from(r.u8()?);
                        let value = r.bytes(n)?;
                        consumed += 1 + n;
                        if kind == 1 {
                            chunks.push((ssrc, String::from_utf8_lossy(value).into_owned()));
                        }
                    }
                    // Chunks end on a 32-bit boundary.
                    let pad = (4 - consumed % 4) % 4;
                    r.bytes(pad.min(r.0.len()))?;
                }
                RtcpPacket::SourceDescription(chunks)
            }
            packet_type::BYE => {
                let ssrcs = (0..count).map(|_| r.u32()).collect::<Result<_>>()?;
                let reason = match r.u8() {
                    Ok(n) => Some(String::from_utf8_lossy(r.bytes(usize::from(n))?).into_owned()),
                    Err(_) => None,
                };
                RtcpPacket::Bye { ssrcs, reason }
            }
            other => RtcpPacket::Other(other),
        };
        packets.push(parsed);
    }
    if packets.is_empty() {
        return Err(Error::MalformedRtcp("empty"));
    }
    Ok(packets)
}

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Statistics of one received RTP source: what a report block says about it.
#[derive(Debug, Clone)]
pub struct ReceptionStats {
    clock_rate: u32,
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    jitter_x16: u64,
    last_transit: Option<i64>,
    epoch: Option<Instant>,
    last_sr: Option<(u32, Instant)>,
}

impl ReceptionStats {
    /// Statistics for a stream with the given RTP clock rate.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            ssrc: None,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_x16: 0,
            last_transit: None,
            epoch: None,
            last_sr: None,
        }
    }

    /// The source's SSRC, once a packet was seen.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Records a received RTP packet.
    pub fn on_rtp(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32) {
        if self.ssrc != Some(ssrc) {
            // A new source (or the first): start over (RFC 3550 §8.2 treats it as a new one).
            *self = Self::new(self.clock_rate);
            self.ssrc = Some(ssrc);
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta == 0 {
                // Duplicate of the highest: counted as received, as RFC 3550 A.3 does.
            } else if delta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            } else if delta <= u16::MAX - MAX_MISORDER {
                // A big jump: the source restarted its sequence. Re-base.
                *self = Self {
                    last_sr: self.last_sr,
                    ..Self::new(self.clock_rate)
                };
                self.ssrc = Some(ssrc);
                self.base_seq = u32::from(seq);
                self.max_seq = seq;
            }
            // Otherwise a reordered older packet: counted, max unchanged.
        }
        self.received += 1;
        // Interarrival jitter (A.8): D = (Rj − Ri) − (Sj − Si), J += (|D| − J)/16.
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.saturating_duration_since(epoch).as_micros() as u64)
            .saturating_mul(u64::from(self.clock_rate))
            / 1_000_000;
        let transit = (arrival as i64).wrapping_sub(i64::from(timestamp));
        if let Some(last) = self.last_transit {
            // Timestamps wrap at 2^32: take the difference modulo 2^32, signed.
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Records an SR from the source (for LSR/DLSR in our next report).
    pub fn on_sender_report(&mut self, now: Instant, ntp: NtpTime) {
        self.last_sr = Some((ntp.middle32(), now));
    }

    /// Extended highest sequence number.
    pub fn extended_highest(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets received (duplicates included).
    pub fn received(&self) -> u64 {
        self.received
    }

    fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        u64::from(self.extended_highest().wrapping_sub(self.base_seq)) + 1
    }

    /// Cumulative packets lost (expected − received; negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_x16 >> 4).unwrap_or(u32::MAX)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter()) * 1000.0 / f64::from(self.clock_rate)
    }

    /// The report block for this source; starts a new loss interval (fraction lost is over the
    /// packets since the previous call).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                let units = d.as_micros() as u64 * 65_536 / 1_000_000;
                (lsr, u32::try_from(units).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.extended_highest(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// Statistics of one media stream, for events and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamStats {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// Payload octets sent.
    pub octets_sent: u64,
    /// RTP packets received.
    pub packets_received: u64,
    /// Packets lost, cumulative, as we measure it.
    pub packets_lost: i64,
    /// Loss fraction (0.0–1.0) used for quality: the larger of what we measure on what we
    /// receive (whole stream) and what the peer's last report says about what we send.
    pub fraction_lost: f64,
    /// Interarrival jitter of what we receive, in ms.
    pub jitter_ms: f64,
    /// Round-trip time from the peer's last report, if known.
    pub rtt: Option<Duration>,
    /// Estimated listening quality (1.0–4.5), see [`mos_estimate`]; `None` while nothing has
    /// been received, since there is no quality to estimate (rather than a perfect 4.4).
    pub mos: Option<f64>,
}

/// A MOS estimate from a simplified E-model (ITU-T G.107) for G.711 with packet loss
/// concealment: R = 93.2 − Id − Ie,eff, where the delay impairment Id uses the one-way delay
/// (half the RTT plus a jitter buffer of about twice the jitter plus 20 ms of packetisation) and
/// Ie,eff = 95 · Ppl / (Ppl + Bpl) with Bpl = 25.1 (G.113 Appendix I, random loss).
pub fn mos_estimate(loss_fraction: f64, jitter_ms: f64, rtt: Option<Duration>) -> f64 {
    let ppl = (loss_fraction.clamp(0.0, 1.0)) * 100.0;
    let rtt_ms = rtt.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let delay = rtt_ms / 2.0 + 2.0 * jitter_ms.max(0.0) + 20.0;
    let id = 0.024 * delay
        + if delay > 177.3 {
            0.11 * (delay - 177.3)
        } else {
            0.0
        };
    let ie_eff = 95.0 * ppl / (ppl + 25.1);
    let r = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6;
    mos.clamp(1.0, 4.5)
}

#[cfg(test)]
mod tests;
