//! The relay forwards without allocating per packet: a counting global allocator watches
//! the forwarding calls on a current-thread runtime.
#![allow(unsafe_code)] // the counting allocator below; test-only
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use session_media::relay::RelayLeg;
use session_media::rtp::{RtpSender, parse};
use tokio::net::UdpSocket;

struct Counting;

thread_local! {
    /// Whether this thread's allocations are counted now: the test harness's own threads may
    /// allocate meanwhile (a `const` initializer: reading it never allocates).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[tokio::test(flavor = "current_thread")]
async fn relay_forwards_without_allocating_per_packet() {
    let lo = "127.0.0.1:0";
    let source = UdpSocket::bind(lo).await.unwrap();
    let relay_in = Arc::new(UdpSocket::bind(lo).await.unwrap());
    let relay_out = Arc::new(UdpSocket::bind(lo).await.unwrap());
    let sink = UdpSocket::bind(lo).await.unwrap();
    let mut leg =
        RelayLeg::new(relay_in.clone(), relay_out, sink.local_addr().unwrap()).rewrite_ssrc(0xABCD);
    let counters = leg.counters();
    let mut sender = RtpSender::new(1, 0, 0);
    let to = relay_in.local_addr().unwrap();
    let mut buf = [0u8; 1500];

    // Warm up (first use of the sockets may allocate inside tokio).
    for _ in 0..10 {
        source
            .send_to(sender.audio(0, &[0xFF; 160], 160).unwrap(), to)
            .await
            .unwrap();
        leg.forward_one().await.unwrap();
        sink.recv_from(&mut buf).await.unwrap();
    }
    const N: u64 = 1000;
    let mut allocations = 0;
    for _ in 0..N {
        source
            .send_to(sender.audio(0, &[0xFF; 160], 160).unwrap(), to)
            .await
            .unwrap();
        COUNTING.with(|counting| counting.set(true));
        let sent = leg.forward_one().await.unwrap();
        COUNTING.with(|counting| counting.set(false));
        allocations += ALLOCATIONS.swap(0, Ordering::Relaxed);
        assert_eq!(sent, 172);
        let (len, _) = sink.recv_from(&mut buf).await.unwrap();
        let (header, payload) = parse(&buf[..len]).unwrap();
        assert_eq!((header.ssrc, payload.len()), (0xABCD, 160));
    }
    // Garbage is dropped, not forwarded.
    source.send_to(&[1, 2, 3], to).await.unwrap();
    assert_eq!(leg.forward_one().await.unwrap(), 0);

    assert_eq!(allocations, 0, "no allocation in {N} forwarded packets");
    assert_eq!(counters.packets(), N + 10);
    assert_eq!(counters.bytes(), (N + 10) * 172);
    assert_eq!(counters.dropped(), 1);
    assert_eq!(counters.buffer_allocations(), 1);
}
