//! # 11 — a conference
//!
//! A switch runs a conference on one mixing bridge, and every claim is checked by ear: each
//! party plays its own tone (ann 440 Hz, ben 700 Hz, cat 1 kHz, dan 1.5 kHz, the supervisor
//! 2 kHz) and what each phone receives is analysed by Goertzel: a listener must hear each
//! tone it should, 20 dB above every tone it should not — its own included.
//!
//! 1. opening — ann and ben call in and join a mixing bridge (`TechnologyChoice::ForceMixer`);
//! 2. joining mid-call — cat, then dan, join while the others talk: each hears all the others
//!    and never itself;
//! 3. mute — ben is muted: nobody hears him, he still hears everyone; then unmuted;
//! 4. monitor — a supervisor joins heard by nobody (`JoinSettings::heard_only_by([])`: every
//!    member's gain for the supervisor is zero from its first packet): the supervisor hears
//!    all four, nobody hears the supervisor, not even for an instant;
//! 5. whisper — the switch sets cat's gain for the supervisor back to unity: only cat hears
//!    the coaching;
//! 6. leaving mid-call — ann hangs up (her leg leaves the bridge by itself), and the switch
//!    takes ben's leg out; the others go on, whisper and all;
//! 7. the end — the switch destroys the bridge and everyone hangs up; nothing is held.
//!
//! Run: `cargo run -p examples2 --example 11_conference_demo`. Exits non-zero if a check fails.

use examples2::{
    Ear, check, check_heard, connect, expect, gone, hear, loopback, play_and_record, released,
    section, within,
};
use session_core::{
    BridgeId, CallSession, Gain, IncomingCalls, JoinSettings, SessionManager, Technology,
    TechnologyChoice,
};

type BoxError = Box<dyn std::error::Error>;

/// Everyone's tone, by name.
const TONES: [(&str, f64); 5] = [
    ("ann", 440.0),
    ("ben", 700.0),
    ("cat", 1000.0),
    ("dan", 1500.0),
    ("supervisor", 2000.0),
];

/// A phone in the conference: its call, the switch's leg of it, and what it hears.
struct Party {
    name: &'static str,
    call: CallSession,
    leg: CallSession,
    ear: Ear,
}

impl Party {
    /// `name` calls the conference; the switch answers and joins the leg to `bridge`.
    async fn join(
        name: &'static str,
        phones: &SessionManager,
        switch: &SessionManager,
        incoming: &mut IncomingCalls,
        bridge: BridgeId,
        settings: JoinSettings,
    ) -> Result<Self, BoxError> {
        let (call, leg) = connect(phones, switch, incoming, "conference").await?;
        let hz = TONES.iter().find(|(n, _)| *n == name).map_or(0.0, |t| t.1);
        let ear = play_and_record(&call, hz).await?;
        within("joining", leg.join_bridge_with(bridge, settings)).await?;
        println!("       {name} joined");
        Ok(Self {
            name,
            call,
            leg,
            ear,
        })
    }
}

/// Listens to `listeners` side by side and checks that each hears exactly the talkers
/// `rule(listener, talker)` allows, out of everyone in [`TONES`] (never itself).
async fn who_hears_whom(listeners: &mut [&mut Party], rule: impl Fn(&str, &str) -> bool) {
    // For each listener: the tones to hear (and whose they are) and the tones not to hear.
    let mut plans = Vec::new();
    for listener in listeners.iter() {
        let (mut present, mut absent, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (talker, hz) in TONES {
            if talker != listener.name && rule(listener.name, talker) {
                present.push(hz);
                names.push(talker);
            } else {
                absent.push(hz);
            }
        }
        plans.push((listener.name, names.join(", "), present, absent));
    }
    let mut expected: Vec<_> = listeners
        .iter_mut()
        .zip(&plans)
        .map(|(listener, (.., present, absent))| expect(&mut listener.ear, present, absent))
        .collect();
    let verdicts = hear(&mut expected).await;
    for ((name, names, ..), verdict) in plans.iter().zip(&verdicts) {
        check_heard(verdict, format!("{name} hears {names} and nobody else"));
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (handler, mut incoming) = IncomingCalls::channel(8);
    let switch = loopback(46_400..=46_499).handler(handler).start().await?;
    let phones = loopback(46_500..=46_599).start().await?;
    let bridge = switch.create_bridge(TechnologyChoice::ForceMixer)?;
    let mut join_with = async |name, settings| {
        Party::join(name, &phones, &switch, &mut incoming, bridge, settings).await
    };

    section("1. ann and ben open the conference");
    let mut ann = join_with("ann", JoinSettings::default()).await?;
    let mut ben = join_with("ben", JoinSettings::default()).await?;
    let stats = switch.bridge_stats(bridge).ok_or("no bridge")?;
    check(
        stats.technology == Technology::Mixer && stats.members == 2,
        "two members, mixed (a conference bridge always mixes)",
    );
    who_hears_whom(&mut [&mut ann, &mut ben], |_, talker| {
        matches!(talker, "ann" | "ben")
    })
    .await;

    section("2. cat, then dan, join mid-call");
    let mut cat = join_with("cat", JoinSettings::default()).await?;
    who_hears_whom(&mut [&mut ann, &mut ben, &mut cat], |_, talker| {
        matches!(talker, "ann" | "ben" | "cat")
    })
    .await;
    let mut dan = join_with("dan", JoinSettings::default()).await?;
    // Who hears whom from here on, as rules of (listener, talker): everyone in the room; the
    // supervisor listening unheard; the supervisor coaching cat.
    let in_room = |_: &str, talker: &str| talker != "supervisor";
    let monitored =
        |listener: &str, talker: &str| listener == "supervisor" || in_room(listener, talker);
    let coached = |listener: &str, talker: &str| listener == "cat" || monitored(listener, talker);
    who_hears_whom(&mut [&mut ann, &mut ben, &mut cat, &mut dan], in_room).await;
    check(
        switch.bridge_members(bridge).is_some_and(|m| m.len() == 4),
        "four members",
    );

    section("3. ben is muted, then unmuted");
    switch.set_muted(&ben.leg, true)?;
    who_hears_whom(
        &mut [&mut ann, &mut ben, &mut cat, &mut dan],
        |_, talker| talker != "ben" && talker != "supervisor",
    )
    .await;
    switch.set_muted(&ben.leg, false)?;
    who_hears_whom(&mut [&mut ann, &mut ben, &mut cat, &mut dan], in_room).await;

    section("4. a supervisor listens in, unheard");
    let mut sup = join_with("supervisor", JoinSettings::heard_only_by([])).await?;
    println!("       joined heard by nobody: every member's gain for the supervisor is zero");
    let parties = &mut [&mut ann, &mut ben, &mut cat, &mut dan, &mut sup];
    who_hears_whom(parties, monitored).await;

    section("5. the supervisor whispers to cat");
    switch.set_gain(&cat.leg, &sup.leg, Gain::UNITY)?;
    println!("       cat's gain for the supervisor: unity");
    let parties = &mut [&mut ann, &mut ben, &mut cat, &mut dan, &mut sup];
    who_hears_whom(parties, coached).await;

    section("6. ann hangs up, ben is taken out");
    within("ann hangs up", ann.call.hangup()).await?;
    gone(&ann.leg).await;
    within("ben leaves", ben.leg.leave_bridge()).await?;
    check(
        switch.bridge_members(bridge).is_some_and(|m| m.len() == 3)
            && switch.bridge_of(&ben.leg).is_none(),
        "ann's leg left by itself as it ended, ben's because the switch took it out",
    );
    who_hears_whom(&mut [&mut cat, &mut dan, &mut sup], |listener, talker| {
        !matches!(talker, "ann" | "ben") && coached(listener, talker)
    })
    .await;
    check(
        switch
            .bridge_stats(bridge)
            .is_some_and(|s| s.technology == Technology::Mixer),
        "still mixed, whisper and all",
    );

    section("7. the conference ends");
    within("destroy", switch.destroy_bridge(bridge)).await?;
    check(
        switch.bridge_stats(bridge).is_none()
            && [&cat, &dan, &sup]
                .iter()
                .all(|p| switch.bridge_of(&p.leg).is_none()),
        "the bridge is gone; every leg has its own media again",
    );
    for party in [&ben, &cat, &dan, &sup] {
        within("hang-up", party.call.hangup()).await?;
        within("the switch's side", party.leg.ended()).await;
    }
    check(
        released(&switch).await && released(&phones).await,
        "no call, admission slot or RTP port is held anywhere",
    );
    drop(incoming);
    switch.shutdown().await;
    phones.shutdown().await;
    Ok(())
}
