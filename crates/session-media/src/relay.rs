//! A zero-copy RTP relay leg: datagrams received on one socket are checked as RTP (a
//! zero-copy `RtpReader` over the receive buffer), optionally given a new SSRC in place, and
//! sent from another socket — with one buffer per leg allocated at creation and none per
//! packet. Counters prove it: `packets` grows, `buffer_allocations` stays 1.
//!
//! Two legs (A→B and B→A) sharing `Arc<UdpSocket>`s make a bidirectional relay, e.g. for a
//! B2BUA that anchors media without transcoding.
//!
//! ```no_run
//! # async fn demo() -> session_media::Result<()> {
//! use std::sync::Arc;
//! use session_media::relay::RelayLeg;
//! use tokio::net::UdpSocket;
//!
//! let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
//! let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
//! let mut leg = RelayLeg::new(a.clone(), b.clone(), "127.0.0.1:40000".parse().unwrap());
//! let counters = leg.counters();
//! tokio::spawn(async move { leg.run().await });
//! # let _ = counters; Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rtp_rs::RtpReader;
use tokio::net::UdpSocket;

use crate::error::Result;
use crate::rtp::MAX_PACKET;

/// Counters of a relay leg, readable from other tasks.
#[derive(Debug, Default)]
pub struct RelayCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    buffer_allocations: AtomicU64,
}

impl RelayCounters {
    /// Packets forwarded.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Bytes forwarded.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Datagrams dropped (not RTP/RTCP).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Packet buffers allocated by the leg: 1, however many packets it forwards.
    pub fn buffer_allocations(&self) -> u64 {
        self.buffer_allocations.load(Ordering::Relaxed)
    }
}

/// One direction of a relay.
#[derive(Debug)]
pub struct RelayLeg {
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    destination: SocketAddr,
    rewrite_ssrc: Option<u32>,
    buf: Box<[u8; MAX_PACKET]>,
    counters: Arc<RelayCounters>,
}

impl RelayLeg {
    /// Forwards what `from` receives to `destination`, sending from `to`.
    pub fn new(from: Arc<UdpSocket>, to: Arc<UdpSocket>, destination: SocketAddr) -> Self {
        let counters = Arc::new(RelayCounters::default());
        counters.buffer_allocations.fetch_add(1, Ordering::Relaxed);
        Self {
            from,
            to,
            destination,
            rewrite_ssrc: None,
            buf: Box::new([0; MAX_PACKET]),
            counters,
        }
    }

    /// Rewrites the SSRC of forwarded RTP packets (in place) to `ssrc`.
    pub fn rewrite_ssrc(mut self, ssrc: u32) -> Self {
        self.rewrite_ssrc = Some(ssrc);
        self
    }

    /// Changes where packets go (e.g. after a re-INVITE moved the peer).
    pub fn set_destination(&mut self, destination: SocketAddr) {
        self.destination = destination;
    }

    /// The counters, shared.
    pub fn counters(&self) -> Arc<RelayCounters> {
        Arc::clone(&self.counters)
    }

    /// Receives one datagram and forwards it if it is RTP or RTCP; returns the bytes sent
    /// (0 when dropped).
    pub async fn forward_one(&mut self) -> Result<usize> {
        let (len, _src) = self.from.recv_from(&mut self.buf[..]).await?;
        let Some(packet) = self.buf.get_mut(..len) else {
            return Ok(0);
        };
        let is_rtcp = crate::rtcp::is_rtcp(packet);
        if !is_rtcp && RtpReader::new(packet).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(0);
        }
        if let (false, Some(ssrc), Some(field)) =
            (is_rtcp, self.rewrite_ssrc, packet.get_mut(8..12))
        {
            field.copy_from_slice(&ssrc.to_be_bytes());
        }
        let sent = self.to.send_to(packet, self.destination).await?;
        self.counters.packets.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(sent)
    }

    /// Forwards until a socket error.
    pub async fn run(mut self) -> Result<()> {
        loop {
            self.forward_one().await?;
        }
    }
}
