//! The relay path allocates nothing per packet: a counting global allocator watches
//! `handle_rtp` for plain relay, transcoding relay (both ways) and mapped telephone events.
//! Only the counting thread's allocations count: the test harness's own threads (its output
//! capture, its slow-test notice) may allocate meanwhile, and did on a loaded machine.
#![allow(unsafe_code)] // the counting allocator below; test-only
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use session_bridge::{
    BridgeEngine, Codec, EngineConfig, Leg, RtpAction, StreamState, TechnologyChoice,
};
use session_media::dtmf::DtmfEncoder;
use session_media::rtcp::NtpClock;
use session_media::rtp::RtpSender;
use session_types::SessionId;

struct Counting;

thread_local! {
    /// Whether this thread's allocations are counted now (a `const` initializer: reading it
    /// never allocates).
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

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Feeds `n` packets from `talker`'s peer and counts the allocations inside `handle_rtp`.
fn allocations_while_relaying(
    engine: &mut BridgeEngine,
    now: &mut Instant,
    talker: SessionId,
    peer: &mut RtpSender,
    payload_type: u8,
    n: usize,
) -> u64 {
    let mut buf = [0u8; 1500];
    let mut counted = 0;
    for _ in 0..n {
        *now += Duration::from_millis(20);
        let packet = peer
            .audio_at(*now, payload_type, &[0x55; 160], 160)
            .unwrap();
        let len = packet.len();
        buf[..len].copy_from_slice(packet);
        COUNTING.with(|counting| counting.set(true));
        let action = engine.handle_rtp(*now, talker, &mut buf, len);
        COUNTING.with(|counting| counting.set(false));
        counted += ALLOCATIONS.swap(0, Ordering::Relaxed);
        assert!(
            matches!(action, RtpAction::Forward { len: 172, .. }),
            "{action:?}"
        );
    }
    counted
}

#[test]
fn the_relay_path_does_not_allocate() {
    let mut now = Instant::now();
    let mut engine = BridgeEngine::new(EngineConfig::new(NtpClock::new(SystemTime::now(), now)));
    let plain = engine.create_bridge(TechnologyChoice::Auto);
    let transcoding = engine.create_bridge(TechnologyChoice::Auto);
    let [a, b, c, d] = [(); 4].map(|()| SessionId::new());
    let leg = |codec, ssrc| Leg::new(codec, StreamState::new(ssrc, 1, 1)).with_telephone_event(101);
    engine
        .add_member(now, plain, a, leg(Codec::pcmu(), 1))
        .unwrap();
    engine
        .add_member(now, plain, b, leg(Codec::pcmu(), 2))
        .unwrap();
    engine
        .add_member(now, transcoding, c, leg(Codec::pcmu(), 3))
        .unwrap();
    engine
        .add_member(now, transcoding, d, leg(Codec::pcma(), 4))
        .unwrap();
    while engine.poll_event().is_some() {}
    let mut peers = [1, 2, 3, 4].map(|n| RtpSender::new(100 + n, 0, 0));
    let [pa, _, pc, pd] = &mut peers;

    // Warm up: the first packet of each talker arms its stall timer (one heap entry).
    for (talker, peer, pt) in [(a, &mut *pa, 0), (c, &mut *pc, 0), (d, &mut *pd, 8)] {
        allocations_while_relaying(&mut engine, &mut now, talker, peer, pt, 5);
    }
    assert_eq!(
        allocations_while_relaying(&mut engine, &mut now, a, pa, 0, 1000),
        0,
        "relay"
    );
    assert_eq!(
        allocations_while_relaying(&mut engine, &mut now, c, pc, 0, 1000),
        0,
        "µ-law → A-law"
    );
    assert_eq!(
        allocations_while_relaying(&mut engine, &mut now, d, pd, 8, 1000),
        0,
        "A-law → µ-law"
    );

    // Telephone events, mapped: none of their packets allocates either (the digit's event is
    // queued once; the queue kept its capacity from the warm-up digit).
    let mut buf = [0u8; 1500];
    for round in 0..20 {
        let start = pa.timestamp();
        let packets: Vec<Vec<u8>> = DtmfEncoder::new('1', 800, 160)
            .unwrap()
            .map(|p| pa.event(101, &p.payload, p.marker, start).unwrap().to_vec())
            .collect();
        pa.skip(7 * 160);
        for packet in &packets {
            now += Duration::from_millis(20);
            buf[..packet.len()].copy_from_slice(packet);
            COUNTING.with(|counting| counting.set(true));
            let action = engine.handle_rtp(now, a, &mut buf, packet.len());
            COUNTING.with(|counting| counting.set(false));
            assert!(matches!(action, RtpAction::Forward { .. }));
        }
        let counted = ALLOCATIONS.swap(0, Ordering::Relaxed);
        if round > 0 {
            assert_eq!(counted, 0, "telephone events, round {round}");
        }
        while engine.poll_event().is_some() {}
    }
}
