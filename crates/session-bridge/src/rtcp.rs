//! RTCP is terminated per leg: each leg reports on what *it* sent and received, and reports
//! that arrive are consumed, never forwarded across the bridge (a report on a stream the far
//! end never saw would only confuse it).
//!
//! Every [`crate::EngineConfig::rtcp_interval`] a leg sends a compound packet (RFC 3550 §6.1):
//! an SR when its stream has sent anything on its SSRC (counts over the SSRC's whole life,
//! carried across hand-overs, §6.4.1), an RR otherwise, with one report block on the source it
//! receives, then SDES with its CNAME (§6.5.1). The SR's RTP timestamp is read off the stream's
//! sampling clock at the report's instant, not copied from the last packet (§6.4.1).
//!
//! Leaving a bridge sends no BYE (§6.6): the stream outlives the bridge, and the call that
//! takes its leg back says goodbye when the call ends.

use std::time::{Duration, Instant};

use session_media::rtcp::{self, NtpClock, RtcpPacket};

use crate::leg::Leg;

/// RTCP bookkeeping of one leg besides its reception statistics (which live in the [`Leg`],
/// so they are handed back with it).
#[derive(Debug, Clone, Default)]
pub(crate) struct LegRtcp {
    /// When the next report is due.
    pub(crate) next_report: Option<Instant>,
    /// Round-trip time from the far end's last report block on our stream.
    pub(crate) rtt: Option<Duration>,
    /// Fraction lost (0.0–1.0) that the far end last reported on our stream.
    pub(crate) remote_fraction_lost: Option<f32>,
    /// Compound packets sent.
    pub(crate) sent: u64,
    /// Compound packets received (parsed).
    pub(crate) received: u64,
}

/// Appends the leg's report (SR or RR, then SDES CNAME) at `now` to `out`.
pub(crate) fn write_report(
    out: &mut Vec<u8>,
    leg: &mut Leg,
    clock: &NtpClock,
    default_cname: &str,
    now: Instant,
) {
    let ssrc = leg.stream.ssrc;
    let block = leg.reception.report_block(now);
    let blocks = block.as_slice();
    if leg.stream.packets > 0 {
        let info = rtcp::SenderInfo {
            ntp: clock.at(now),
            rtp_timestamp: leg.stream.timestamp_at(now),
            // RFC 3550 §6.4.1: the counts wrap at 2^32.
            packet_count: leg.stream.packets as u32,
            octet_count: leg.stream.octets as u32,
        };
        rtcp::write_sr(out, ssrc, &info, blocks);
    } else {
        rtcp::write_rr(out, ssrc, blocks);
    }
    let cname = leg.cname.as_deref().unwrap_or(default_cname);
    rtcp::write_sdes_cname(out, ssrc, cname);
}

/// Takes in a compound packet the far end sent on this leg: its SR times (for LSR/DLSR in our
/// next report block) and what its report blocks say about our stream.
pub(crate) fn absorb(
    leg: &mut Leg,
    state: &mut LegRtcp,
    clock: &NtpClock,
    packets: &[RtcpPacket],
    now: Instant,
) {
    state.received += 1;
    let arrival = clock.at(now);
    for packet in packets {
        let reports = match packet {
            RtcpPacket::SenderReport { info, reports, .. } => {
                leg.reception.on_sender_report(now, info.ntp);
                reports
            }
            RtcpPacket::ReceiverReport { reports, .. } => reports,
            _ => continue,
        };
        if let Some(block) = reports.iter().find(|b| b.ssrc == leg.stream.ssrc) {
            state.remote_fraction_lost = Some(f32::from(block.fraction_lost) / 256.0);
            if let Some(rtt) = block.round_trip(arrival) {
                state.rtt = Some(rtt);
            }
        }
    }
}
