//! Moving a member between bridges under load, measured at the moved member's far end: does
//! its phone keep hearing one RTP stream (constant SSRC, contiguous sequence numbers,
//! timestamps in whole 20 ms frames, no inter-arrival gap over 40 ms), and how long after
//! `BridgeDriver::move_member` does the new bridge's audio arrive (target p99 ≤ 20 ms)?
//!
//! ```text
//! cargo run --release -p session-bridge --example bridge_moves -- \
//!     [--moves 1000] [--interval-ms 40] [--load-pairs 25] [--talker-offset-ms 10]
//! ```
//!
//! One `BridgeDriver` on a current-thread runtime in its own OS thread, which also runs the
//! mover. Bridges X and Y (`Auto`, so two PCMU members are relayed in place) each hold a
//! talker whose phone sends PCMU every 20 ms with a payload of 0x11 (X) or 0x22 (Y), the
//! send instant written into bytes 1..9; Y's phone starts `--talker-offset-ms` after X's.
//! The mover M starts in X; its phone P sends every 20 ms and records every packet it gets.
//! `--load-pairs` more bridged pairs carry 50 packets/s each way through the same driver.
//! After a 1 s warm-up M moves X → Y → X … every `--interval-ms` plus 2 × 20 ms / moves, so
//! the move's phase against the talkers' 20 ms clock sweeps the whole frame twice (a period
//! that is a multiple of 20 ms would hit one phase every time). Phones run on two other
//! threads (P, X, Y on one; the load on another), all on 127.0.0.1.
//!
//! With Y's phone δ ms behind X's, a switch leaves a gap at P of δ or δ + 20 ms (X → Y) and
//! 20 − δ or 40 − δ ms (Y → X) before any delay is added: the 40 ms bound is reachable only
//! with δ away from 0 and 20, and the default δ = 10 ms puts the largest at 30 ms. The report
//! therefore also gives what the path added to each gap (the change in one-way latency).
//!
//! "Completion" is the time from the `move_member` call to P's receipt of the first packet
//! carrying the new bridge's byte. It splits into the wait for the new talker's next packet
//! (up to one 20 ms frame, set by the phase) and the path through the bridge.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use session_bridge::{BridgeDriver, BridgeEvent, BridgeId, DriverConfig, TechnologyChoice};
use session_media::endpoint::{EndpointConfig, RtcpPort, RtpEndpoint};
use session_media::rtcp::is_rtcp;
use session_media::rtp::{MAX_PACKET, RtpSender, parse};
use session_types::SessionId;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, timeout};

const PTIME: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_secs(1);
const TAG_X: u8 = 0x11;
const TAG_Y: u8 = 0x22;
const TAG_P: u8 = 0x33;
const TAG_LOAD: u8 = 0x44;
/// Stages of the run, broadcast to the phones: talking, then silent, then done.
const SILENT: u8 = 1;
const DONE: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Args {
    moves: usize,
    interval: Duration,
    load_pairs: usize,
    talker_offset: Duration,
}

/// One packet as P received it.
#[derive(Debug, Clone, Copy)]
struct Rx {
    at: Instant,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    tag: u8,
    sent: Instant,
    intact: bool,
}

/// One `move_member` call.
#[derive(Debug, Clone, Copy)]
struct Move {
    call: Instant,
    took: Duration,
    to_tag: u8,
}

/// What the driver thread saw.
#[derive(Debug, Default)]
struct DriverReport {
    moves: Vec<Move>,
    refused: usize,
    relayed_to_m: u64,
    m_ssrc: u32,
    notes: String,
}

fn lo0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Value at quantile `q` of sorted `v` (nearest rank).
fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn std_socket() -> StdUdpSocket {
    let s = StdUdpSocket::bind(lo0()).expect("bind phone socket");
    s.set_nonblocking(true).expect("non-blocking");
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A bound leg, pointed at `phone`, bridged into `bridge`; returns its session and address.
async fn bridge_leg(
    driver: &BridgeDriver,
    bridge: BridgeId,
    phone: SocketAddr,
) -> (SessionId, SocketAddr) {
    let mut endpoint = RtpEndpoint::bind(lo0(), RtcpPort::Muxed, EndpointConfig::default())
        .await
        .expect("bind leg");
    endpoint.set_remote(phone, phone);
    let addr = endpoint.local_addr().expect("leg address");
    let session = SessionId::new();
    driver
        .add_member(bridge, session, endpoint.into_leg())
        .map_err(|(e, _)| e)
        .expect("add member");
    (session, addr)
}

/// The driver's thread: sets up the bridges, hands the legs' addresses over, moves M, and
/// stops the phones in two stages before shutting the driver down.
fn run_driver(
    args: Args,
    phones: Vec<SocketAddr>,
    legs_out: std::sync::mpsc::Sender<Vec<SocketAddr>>,
    stage: watch::Sender<u8>,
) -> DriverReport {
    runtime().block_on(async move {
        let (driver, mut events) = BridgeDriver::start(DriverConfig::new());
        let drain = tokio::spawn(async move {
            let (mut moved, mut other) = (0u64, 0u64);
            while let Some(event) = events.recv().await {
                match event {
                    BridgeEvent::MemberMoved { .. } => moved += 1,
                    _ => other += 1,
                }
            }
            (moved, other)
        });
        let bridge = || {
            driver
                .create_bridge(TechnologyChoice::Auto)
                .expect("bridge")
        };
        let (x, y) = (bridge(), bridge());
        let (m, m_addr) = bridge_leg(&driver, x, phones[0]).await;
        let (tx, tx_addr) = bridge_leg(&driver, x, phones[1]).await;
        let (ty, ty_addr) = bridge_leg(&driver, y, phones[2]).await;
        let mut addrs = vec![m_addr, tx_addr, ty_addr];
        for pair in phones[3..].chunks(2) {
            let bridge = bridge();
            for &phone in pair {
                addrs.push(bridge_leg(&driver, bridge, phone).await.1);
            }
        }
        legs_out.send(addrs).expect("hand the leg addresses over");
        tokio::time::sleep(WARM_UP).await;
        let technology = |b| driver.stats(b).map(|s| s.technology);
        let technologies = format!("X {:?}, Y {:?}", technology(x), technology(y));

        // The moves, on a period that sweeps the phase against the 20 ms packet clock.
        let step = PTIME * 2 / u32::try_from(args.moves.max(1)).unwrap_or(u32::MAX);
        let period = args.interval + step;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut moves, mut refused, mut in_x) = (Vec::with_capacity(args.moves), 0, true);
        for _ in 0..args.moves {
            ticks.tick().await;
            let (to, to_tag) = if in_x { (y, TAG_Y) } else { (x, TAG_X) };
            let call = Instant::now();
            let result = driver.move_member(m, to);
            let took = call.elapsed();
            if result.is_ok() {
                in_x = !in_x;
                moves.push(Move { call, took, to_tag });
            } else {
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Talkers stop; what is in flight arrives; then the counters are final.
        let _ = stage.send(SILENT);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let relayed_to_m = [tx, ty]
            .iter()
            .filter_map(|s| driver.member_stats(*s))
            .map(|s| s.forwarded)
            .sum();
        let m_ssrc = driver.member_stats(m).map_or(0, |s| s.stream.ssrc);
        let ds = driver.driver_stats();
        let _ = stage.send(DONE);
        let left = timeout(Duration::from_secs(5), driver.shutdown())
            .await
            .map_or(0, |legs| legs.len());
        drop(driver);
        let (moved_events, other_events) = timeout(Duration::from_secs(5), drain)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let notes = format!(
            "bridges: {technologies}; MemberMoved events {moved_events}, other events \
             {other_events}\ndriver: sent {} send_dropped {} no_remote {} send_errors {} \
             foreign {} events_dropped {}; legs handed back at shutdown {left}",
            ds.sent, ds.send_dropped, ds.no_remote, ds.send_errors, ds.foreign, ds.events_dropped
        );
        DriverReport {
            moves,
            refused,
            relayed_to_m,
            m_ssrc,
            notes,
        }
    })
}

/// A phone: `(socket, its leg, payload tag, first send offset)`.
type Phone = (StdUdpSocket, SocketAddr, u8, Duration);

/// One phone's task: a PCMU packet every 20 ms from `first` until the run goes silent (payload
/// `tag`, the send instant in ns since `base` in bytes 1..9), and every RTP packet received
/// until it is done (recorded when `keep`). Returns the records, packets sent and received.
async fn phone(
    (socket, leg, tag, first, ssrc): (UdpSocket, SocketAddr, u8, tokio::time::Instant, u32),
    base: Instant,
    keep: bool,
    mut stage: watch::Receiver<u8>,
) -> (Vec<Rx>, u64, u64) {
    let mut sender = RtpSender::new(ssrc, (ssrc >> 16) as u16, ssrc.rotate_left(9));
    let mut payload = [tag; 160];
    let mut ticks = tokio::time::interval_at(first, PTIME);
    let mut buf = [0u8; MAX_PACKET];
    let mut got = Vec::with_capacity(if keep { 1 << 16 } else { 0 });
    let (mut sent, mut received) = (0, 0);
    loop {
        let now = *stage.borrow_and_update();
        if now >= DONE {
            break;
        }
        let received_from = tokio::select! {
            biased;
            changed = stage.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break, // the driver's thread is gone
            },
            _ = ticks.tick(), if now < SILENT => {
                let ns = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                payload[1..9].copy_from_slice(&ns.to_be_bytes());
                let packet = sender.audio(0, &payload, 160).expect("build RTP");
                sent += u64::from(socket.send_to(packet, leg).await.is_ok());
                continue;
            }
            r = socket.recv_from(&mut buf) => r,
        };
        let at = Instant::now();
        let Ok((len, _)) = received_from else {
            continue;
        };
        let datagram = &buf[..len];
        let Ok((h, payload)) = parse(datagram) else {
            continue;
        };
        if is_rtcp(datagram) || payload.len() < 9 {
            continue;
        }
        received += 1;
        if keep {
            let ns = u64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
            got.push(Rx {
                at,
                ssrc: h.ssrc,
                seq: h.sequence,
                ts: h.timestamp,
                marker: h.marker,
                tag: payload[0],
                sent: base + Duration::from_nanos(ns),
                intact: payload.len() == 160 && payload[9..].iter().all(|b| *b == payload[0]),
            });
        }
    }
    (got, sent, received)
}

/// A thread of phones on one current-thread runtime; with `record`, the first one's
/// reception is kept. Returns those records, and packets sent and received by all.
fn run_phones(
    phones: Vec<Phone>,
    base: Instant,
    stage: watch::Receiver<u8>,
    record: bool,
) -> (Vec<Rx>, u64, u64) {
    runtime().block_on(async move {
        let start = tokio::time::Instant::now() + Duration::from_millis(5);
        let tasks: Vec<_> = phones
            .into_iter()
            .enumerate()
            .map(|(i, (socket, leg, tag, offset))| {
                let socket = UdpSocket::from_std(socket).expect("tokio socket");
                let ssrc = 0x5EED_0000 + u32::try_from(i).unwrap_or(0);
                let me = (socket, leg, tag, start + offset, ssrc);
                tokio::spawn(phone(me, base, record && i == 0, stage.clone()))
            })
            .collect();
        let (mut kept, mut sent, mut received) = (Vec::new(), 0, 0);
        for task in tasks {
            let (got, s, r) = task.await.unwrap_or_default();
            (sent, received) = (sent + s, received + r);
            if !got.is_empty() {
                kept = got;
            }
        }
        (kept, sent, received)
    })
}

fn main() {
    let mut args = Args {
        moves: 1000,
        interval: Duration::from_millis(40),
        load_pairs: 25,
        talker_offset: Duration::from_millis(10),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = || -> u64 {
            let v = argv.next().unwrap_or_else(|| panic!("{arg} needs a value"));
            v.parse()
                .unwrap_or_else(|_| panic!("{arg}: not a number: {v}"))
        };
        match arg.as_str() {
            "--moves" => args.moves = value() as usize,
            "--interval-ms" => args.interval = Duration::from_millis(value()),
            "--load-pairs" => args.load_pairs = value() as usize,
            "--talker-offset-ms" => args.talker_offset = Duration::from_millis(value() % 20),
            other => panic!(
                "unknown argument {other:?} (--moves N --interval-ms MS --load-pairs K \
                 --talker-offset-ms MS)"
            ),
        }
    }
    println!(
        "bridge_moves: {} moves every {} ms (+{:.0} µs phase sweep), {} load pairs, Y's talker \
         {} ms after X's; PCMU every 20 ms, 127.0.0.1, {} CPUs",
        args.moves,
        args.interval.as_millis(),
        PTIME.as_secs_f64() * 2e6 / args.moves.max(1) as f64,
        args.load_pairs,
        args.talker_offset.as_millis(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let base = Instant::now();
    let n = 2 * args.load_pairs;
    let specs: Vec<(u8, Duration)> = [TAG_P, TAG_X, TAG_Y]
        .into_iter()
        .zip([Duration::ZERO, Duration::ZERO, args.talker_offset])
        .chain((0..n).map(|i| (TAG_LOAD, PTIME * i as u32 / n as u32)))
        .collect();
    let sockets: Vec<StdUdpSocket> = specs.iter().map(|_| std_socket()).collect();
    let phone_addrs = sockets
        .iter()
        .map(|s| s.local_addr().expect("address"))
        .collect();
    let (legs_tx, legs_rx) = std::sync::mpsc::channel();
    let (stage_tx, stage_rx) = watch::channel(0u8);
    let driver = std::thread::spawn(move || run_driver(args, phone_addrs, legs_tx, stage_tx));
    let legs: Vec<SocketAddr> = legs_rx.recv_timeout(Duration::from_secs(30)).expect("legs");
    let mut observed: Vec<Phone> = sockets
        .into_iter()
        .zip(legs)
        .zip(specs)
        .map(|((socket, leg), (tag, offset))| (socket, leg, tag, offset))
        .collect();
    let load = observed.split_off(3);
    let stage_load = stage_rx.clone();
    let phones = std::thread::spawn(move || run_phones(observed, base, stage_rx, true));
    let load = std::thread::spawn(move || run_phones(load, base, stage_load, false));
    let report = driver.join().expect("driver thread");
    let (rx, observed_sent, _) = phones.join().expect("phone thread");
    let (_, load_sent, load_received) = load.join().expect("load thread");
    println!("load phones: sent {load_sent}, received {load_received}");
    analyse(&report, &rx, observed_sent);
}

fn analyse(d: &DriverReport, rx: &[Rx], sent: u64) {
    let (mut ssrc_changes, mut seq_breaks, mut ts_odd, mut ts_steps) = (0, 0, 0, 0);
    let (mut gaps, mut added, mut switch_gap) = (vec![], vec![], 0f64);
    // Media time (timestamps, 8 samples per ms) minus arrival time since the first packet.
    let (mut media, mut drift) = (0f64, (0f64, 0f64));
    for w in rx.windows(2) {
        let (a, b) = (w[0], w[1]);
        ssrc_changes += usize::from(a.ssrc != b.ssrc);
        seq_breaks += usize::from(b.seq != a.seq.wrapping_add(1));
        let step = b.ts.wrapping_sub(a.ts) as i32;
        ts_steps += usize::from(step != 160);
        ts_odd += usize::from(step <= 0 || step % 160 != 0);
        media += f64::from(step) / 8.0;
        let off = media - ms(b.at - rx[0].at);
        drift = (drift.0.min(off), drift.1.max(off));
        let gap = ms(b.at - a.at);
        gaps.push(gap);
        if a.tag != b.tag {
            switch_gap = switch_gap.max(gap);
        }
        // Arrival gap − send gap: the difference of the two packets' one-way latencies.
        added.push(ms(b.at - b.sent) - ms(a.at - a.sent));
    }
    let latency = sorted(rx.iter().map(|r| ms(r.at - r.sent)).collect());
    let (gaps, added) = (sorted(gaps), sorted(added));
    // Each move against P's records: the first packet with the new bridge's byte after the
    // call (and before the next call), and any old-bridge packet after that one.
    let (mut completion, mut wait, mut path, mut took) = (vec![], vec![], vec![], vec![]);
    let (mut incomplete, mut interleaved, mut i) = (0, 0, 0);
    for (k, mv) in d.moves.iter().enumerate() {
        took.push(ms(mv.took));
        let end = d.moves.get(k + 1).map(|n| n.call);
        while i < rx.len() && rx[i].at < mv.call {
            i += 1;
        }
        let window: Vec<&Rx> = rx[i..]
            .iter()
            .take_while(|r| end.is_none_or(|e| r.at < e))
            .collect();
        let Some(p) = window.iter().position(|r| r.tag == mv.to_tag) else {
            incomplete += 1;
            continue;
        };
        let (r, from) = (window[p], window[p].sent.max(mv.call));
        completion.push(ms(r.at - mv.call));
        wait.push(ms(from - mv.call));
        path.push(ms(r.at - from));
        interleaved += window[p..].iter().filter(|r| r.tag != mv.to_tag).count();
    }
    let (completion, wait, path, took) =
        (sorted(completion), sorted(wait), sorted(path), sorted(took));
    let count = |f: &dyn Fn(&Rx) -> bool| rx.iter().filter(|r| f(r)).count();
    let (from_x, from_y) = (count(&|r| r.tag == TAG_X), count(&|r| r.tag == TAG_Y));
    let (markers, damaged) = (count(&|r| r.marker), count(&|r| !r.intact));
    let ssrcs: std::collections::BTreeSet<u32> = rx.iter().map(|r| r.ssrc).collect();
    let (received, relayed) = (rx.len(), d.relayed_to_m);
    let lost = relayed.saturating_sub(received as u64);
    let over_40 = gaps.iter().filter(|g| **g > 40.0).count();
    let (max_gap, p99) = (pct(&gaps, 1.0), pct(&completion, 0.99));
    let (moves, refused) = (d.moves.len(), d.refused);
    println!(
        "{}\n\
         moves: {moves} made ({refused} refused); no new-bridge packet before the next move: \
         {incomplete}\n\
         at P: {received} RTP packets ({from_x} from X, {from_y} from Y), {markers} with the \
         marker bit, {damaged} with a changed payload; P and the talkers sent {sent}\n\
         lost at P: {lost} (the bridge relayed {relayed} packets to M's leg)\n\
         SSRC changes at P: {ssrc_changes} (SSRCs seen {ssrcs:08x?}, M's stream {:08x})\n\
         sequence discontinuities at P: {seq_breaks}\n\
         timestamp steps ≠ 160: {ts_steps}; not whole 160-sample frames or not forward: \
         {ts_odd}\n\
         old-bridge packets after the first new-bridge one: {interleaved}\n\
         timestamp clock − arrival clock at P: from {:.1} to {:.1} ms",
        d.notes, d.m_ssrc, drift.0, drift.1
    );
    println!(
        "inter-arrival gap at P: p50 {:.3} / p99 {:.3} / max {max_gap:.3} ms; over 40 ms: \
         {over_40}; largest across a switch {switch_gap:.3} ms\n\
         \x20 gap − the senders' gap (what the path added): p99 {:.3} / max {:.3} ms\n\
         one-way latency phone → bridge → P: {}\n\
         move_member call: {}\n\
         move completion (call → first new-bridge packet at P): {}\n\
         \x20 waiting for the new talker's next packet: {}\n\
         \x20 the path (later of send and call → arrival): {}",
        pct(&gaps, 0.5),
        pct(&gaps, 0.99),
        pct(&added, 0.99),
        pct(&added, 1.0),
        three(&latency),
        three(&took),
        three(&completion),
        three(&wait),
        three(&path),
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "verdict: inter-arrival gap ≤ 40 ms: {} (max {max_gap:.3} ms)\n\
         verdict: move completion p99 ≤ 20 ms: {} (p99 {p99:.3} ms, {incomplete} incomplete)\n\
         verdict: SSRC constant: {} ({ssrc_changes} changes)\n\
         verdict: sequence contiguous: {} ({seq_breaks} discontinuities, {lost} lost)",
        verdict(max_gap <= 40.0),
        verdict(p99 <= 20.0 && incomplete == 0),
        verdict(ssrc_changes == 0 && received > 0),
        verdict(seq_breaks == 0 && received > 0),
    );
}

fn three(v: &[f64]) -> String {
    let (p50, p99, max) = (pct(v, 0.5), pct(v, 0.99), pct(v, 1.0));
    format!("p50 {p50:.3} / p99 {p99:.3} / max {max:.3} ms")
}
