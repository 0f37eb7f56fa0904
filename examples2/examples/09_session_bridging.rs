//! # 09 — session bridging
//!
//! A switch answers three phones and joins their calls in one bridge, and every claim is
//! checked by ear: each party plays its own tone (alice 440 Hz, bob 700 Hz, carol 1 kHz, the
//! switch's prompt 2 kHz) and what each phone receives is analysed by Goertzel.
//!
//! 1. three calls — alice, bob and carol call the switch, which plays them its prompt;
//! 2. a relay — `bridge_calls` joins alice and bob: each hears the other, the bridge relays
//!    packets, and a bridged leg's audio belongs to the bridge;
//! 3. a mixer — carol joins the same bridge: it switches to a mixer, and each hears the two
//!    others and not itself;
//! 4. the bus — every join and the switch of technology were published as `SessionEvent::Bridge`;
//! 5. leaving — bob leaves: the bridge relays again, and bob's leg has its own media back;
//! 6. hanging up while bridged — carol's leg leaves the bridge by itself, with its ports;
//! 7. destroying the bridge — alice's leg has its own media back, on the RTP stream she has
//!    received from the start, without a packet lost;
//! 8. hang-up — nothing is held anywhere.
//!
//! Run: `cargo run -p examples2 --example 09_session_bridging`. Exits non-zero if a check fails.

use examples2::{
    WAIT, check, check_heard, connect, expect, hear, loopback, play, play_and_record, released,
    section, within,
};
use session_core::crates::events::EventKind;
use session_core::{
    BridgeChange, Filter, IncomingCalls, SessionError, SessionEvent, SessionId, SessionManager,
    Subscription, Technology,
};
use std::collections::HashMap;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error>;

const ALICE: f64 = 440.0;
const BOB: f64 = 700.0;
const CAROL: f64 = 1000.0;
const PROMPT: f64 = 2000.0;

/// The next `count` bridge changes on the bus, and any that follow within 100 ms, as "who: what"
/// lines in a stable order (the bus keeps each session's order, not the order across sessions).
/// Stalls are left out: they report the network, not us.
async fn changes(
    bus: &mut Subscription,
    names: &HashMap<SessionId, &str>,
    count: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let event = if seen.len() < count {
            within("a bridge change", bus.recv()).await.ok()
        } else {
            tokio::time::timeout(Duration::from_millis(100), bus.recv())
                .await
                .ok()
                .and_then(Result::ok)
        };
        let Some(event) = event else { break };
        let SessionEvent::Bridge {
            session_id, change, ..
        } = &*event
        else {
            continue;
        };
        let what = match change {
            BridgeChange::Joined => "joined".to_owned(),
            BridgeChange::Left => "left".to_owned(),
            BridgeChange::MovedFrom { from } => format!("moved from {from}"),
            BridgeChange::TechnologyChanged { to } => format!("now {to}"),
            _ => continue,
        };
        let who = names.get(session_id).copied().unwrap_or("someone else");
        seen.push(format!("{who}: {what}"));
    }
    seen.sort();
    for line in &seen {
        println!("       bus: {line}");
    }
    seen
}

/// Whether `manager` comes to hold exactly `pairs` RTP port pairs within [`WAIT`].
async fn ports_in_use(manager: &SessionManager, pairs: usize) -> bool {
    let settled = async {
        while manager.ports().in_use() != pairs {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, settled).await.is_ok()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (handler, mut incoming) = IncomingCalls::channel(8);
    let switch = loopback(45_000..=45_099).handler(handler).start().await?;
    let phones = [
        loopback(45_100..=45_199).start().await?,
        loopback(45_200..=45_299).start().await?,
        loopback(45_300..=45_399).start().await?,
    ];
    let [alice, bob, carol] = &phones;
    let mut bus = switch.events().subscribe(Filter::kind(EventKind::Bridge));

    section("1. three phones call the switch");
    let (a_call, a_leg) = connect(alice, &switch, &mut incoming, "conf").await?;
    let (b_call, b_leg) = connect(bob, &switch, &mut incoming, "conf").await?;
    let (c_call, c_leg) = connect(carol, &switch, &mut incoming, "conf").await?;
    let names = HashMap::from([
        (a_leg.id(), "alice"),
        (b_leg.id(), "bob"),
        (c_leg.id(), "carol"),
    ]);
    let mut a_ear = play_and_record(&a_call, ALICE).await?;
    let mut b_ear = play_and_record(&b_call, BOB).await?;
    let mut c_ear = play_and_record(&c_call, CAROL).await?;
    for leg in [&a_leg, &b_leg, &c_leg] {
        play(leg, PROMPT).await?;
    }
    let everyone = [ALICE, BOB, CAROL];
    let heard = hear(&mut [
        expect(&mut a_ear, &[PROMPT], &everyone),
        expect(&mut b_ear, &[PROMPT], &everyone),
        expect(&mut c_ear, &[PROMPT], &everyone),
    ])
    .await;
    check(
        heard.iter().all(|(ok, _)| *ok),
        "each phone hears the switch's 2 kHz prompt, and nobody else",
    );

    section("2. bridge_calls: alice and bob, relayed");
    let bridge = switch.bridge_calls(&a_leg, &b_leg).await?;
    println!("       {bridge} created");
    check(
        switch.bridge_of(&a_leg) == Some(bridge) && switch.bridge_of(&b_leg) == Some(bridge),
        "bridge_of says alice's and bob's legs are in it",
    );
    let heard = hear(&mut [
        expect(&mut a_ear, &[BOB], &[ALICE, CAROL, PROMPT]),
        expect(&mut b_ear, &[ALICE], &[BOB, CAROL, PROMPT]),
        expect(&mut c_ear, &[PROMPT], &everyone),
    ])
    .await;
    check_heard(&heard[0], "alice hears bob, not herself nor the prompt");
    check_heard(&heard[1], "bob hears alice, not himself nor the prompt");
    check_heard(&heard[2], "carol, not bridged, still hears the prompt");
    let stats = switch.bridge_stats(bridge).ok_or("no such bridge")?;
    println!("       {stats:?}");
    check(
        stats.technology == Technology::Relay && stats.members == 2 && stats.forwarded > 20,
        format!(
            "two members, relayed: {} packets forwarded",
            stats.forwarded
        ),
    );
    check(
        matches!(
            play(&a_leg, PROMPT).await,
            Err(SessionError::InvalidState { .. })
        ),
        "a bridged leg's audio belongs to the bridge: attaching a source is refused",
    );

    section("3. carol joins: the bridge mixes");
    within("carol joins", c_leg.join_bridge(bridge)).await?;
    let heard = hear(&mut [
        expect(&mut a_ear, &[BOB, CAROL], &[ALICE, PROMPT]),
        expect(&mut b_ear, &[ALICE, CAROL], &[BOB, PROMPT]),
        expect(&mut c_ear, &[ALICE, BOB], &[CAROL, PROMPT]),
    ])
    .await;
    check_heard(&heard[0], "alice hears bob and carol, and not her own tone");
    check_heard(&heard[1], "bob hears alice and carol, and not his own tone");
    check_heard(&heard[2], "carol hears alice and bob, and not her own tone");
    let stats = switch.bridge_stats(bridge).ok_or("no such bridge")?;
    check(
        stats.technology == Technology::Mixer && stats.members == 3 && stats.mixed_ticks > 10,
        format!("three members, mixed: {} ticks of 20 ms", stats.mixed_ticks),
    );

    section("4. the bridge's changes on the bus");
    check(
        changes(&mut bus, &names, 6).await
            == [
                "alice: joined",
                "alice: now mixer",
                "bob: joined",
                "bob: now mixer",
                "carol: joined",
                "carol: now mixer",
            ],
        "SessionEvent::Bridge: three joins, and the switch to a mixer told to each member",
    );

    section("5. bob leaves: a relay again, and bob's own media back");
    within("bob leaves", b_leg.leave_bridge()).await?;
    check(
        switch.bridge_of(&b_leg).is_none()
            && switch.bridge_members(bridge).is_some_and(|m| m.len() == 2),
        "bob's leg is in no bridge; two members remain",
    );
    check(
        changes(&mut bus, &names, 3).await == ["alice: now relay", "bob: left", "carol: now relay"],
        "the bus says bob left and the others are relayed again",
    );
    // Joining set the leg's own source and sink aside for good: the switch plays its prompt
    // on the leg again.
    play(&b_leg, PROMPT).await?;
    let heard = hear(&mut [
        expect(&mut a_ear, &[CAROL], &[ALICE, BOB, PROMPT]),
        expect(&mut c_ear, &[ALICE], &[BOB, CAROL, PROMPT]),
        expect(&mut b_ear, &[PROMPT], &everyone),
    ])
    .await;
    check_heard(&heard[0], "alice hears carol only");
    check_heard(&heard[1], "carol hears alice only");
    check_heard(&heard[2], "bob hears the switch's prompt again");
    let stats = switch.bridge_stats(bridge).ok_or("no such bridge")?;
    check(
        stats.technology == Technology::Relay,
        "bridge_stats says relay",
    );

    section("6. carol hangs up while bridged");
    within("carol hangs up", c_call.hangup()).await?;
    within("carol's leg", c_leg.ended()).await;
    check(
        changes(&mut bus, &names, 1).await == ["carol: left"],
        "her leg left the bridge by itself",
    );
    check(
        switch.bridge_members(bridge) == Some(vec![a_leg.id()]),
        "alice is the bridge's only member",
    );
    check(
        ports_in_use(&switch, 2).await,
        "and her leg's RTP ports went back to the switch's pool",
    );

    section("7. the bridge is destroyed: alice's own media back");
    within("destroy", switch.destroy_bridge(bridge)).await?;
    check(
        switch.bridge_stats(bridge).is_none() && switch.bridge_of(&a_leg).is_none(),
        "the bridge is gone and alice's leg is in none",
    );
    check(
        changes(&mut bus, &names, 1).await == ["alice: left"],
        "the bus says alice left",
    );
    play(&a_leg, PROMPT).await?;
    let heard = hear(&mut [expect(&mut a_ear, &[PROMPT], &everyone)]).await;
    check_heard(&heard[0], "alice hears the switch's prompt again");
    let rtp = within("alice's statistics", a_call.stats())
        .await?
        .rtp
        .ok_or("no RTP statistics")?;
    check(
        rtp.packets_received > 50 && rtp.packets_lost == 0,
        format!(
            "prompt, relay, mixer, relay, prompt: alice received one stream of {} packets, none lost",
            rtp.packets_received
        ),
    );

    section("8. hang-up");
    for call in [&a_call, &b_call] {
        within("hang-up", call.hangup()).await?;
    }
    for leg in [&a_leg, &b_leg] {
        within("the switch's side", leg.ended()).await;
    }
    let mut idle = released(&switch).await;
    for phone in &phones {
        idle &= released(phone).await;
    }
    check(idle, "no call, admission slot or RTP port is held anywhere");
    drop(incoming);
    switch.shutdown().await;
    for phone in phones {
        phone.shutdown().await;
    }
    Ok(())
}
