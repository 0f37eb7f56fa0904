//! # 10 — call routing with bridges
//!
//! A small contact-centre engine routes calls by joining them to bridges. The library gives
//! bridges, moves and merges; the policy — who goes where, who waits, who is next — lives
//! here, in the example's `Engine`. Each party plays its own tone (agents sam 440 Hz and sue
//! 700 Hz, customers carl 1 kHz and dana 1.5 kHz, the switch's hold music 2 kHz) and who hears
//! whom is checked by Goertzel analysis of what each phone receives.
//!
//! 1. seats — the agents call in and the routing table seats each in their team's bridge;
//! 2. routing — a customer dialling `sales` is joined to the sales bridge and talks to sam;
//!    a number the table does not know gets 404;
//! 3. a move — carl needs support: the engine moves his leg from the sales bridge to the
//!    support bridge (`join_bridge` while bridged); he hears sue and no longer sam, on the
//!    same RTP stream, without a lost packet or a concealed frame;
//! 4. a queue — dana dials `support` while sue is busy: she waits, on hold music;
//! 5. re-routing — carl hangs up; the engine sees his leg leave the support bridge on the bus
//!    and moves dana, the first waiting caller, to sue;
//! 6. a merge — sue asks sam to help: the engine merges the sales bridge into the support
//!    bridge (`merge_bridges`), and the three hear each other;
//! 7. hang-up — nothing is held anywhere.
//!
//! Run: `cargo run -p examples2 --example 10_call_routing`. Exits non-zero if a check fails.

use examples2::{
    check, check_heard, expect, gone, hear, loopback, play, play_and_record, released, section,
    within,
};
use session_core::crates::events::EventKind;
use session_core::{
    BridgeChange, BridgeId, CallSession, CallState, Filter, IncomingCalls, JitterStats,
    SessionEvent, SessionManager, StatusCode, Subscription, Technology, TechnologyChoice,
};
use std::collections::{HashMap, VecDeque};

type BoxError = Box<dyn std::error::Error>;

const SAM: f64 = 440.0;
const SUE: f64 = 700.0;
const CARL: f64 = 1000.0;
const DANA: f64 = 1500.0;
const HOLD_MUSIC: f64 = 2000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Team {
    Sales,
    Support,
}

/// What a dialled user means to the engine.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// An agent's seat in a team.
    Seat(Team),
    /// A team's line for customers.
    Line(Team),
}

/// Where the engine put a call.
#[derive(Debug, PartialEq, Eq)]
enum Routed {
    Seated(Team),
    Connected(Team),
    Waiting(Team),
    NotFound(String),
}

/// The engine: a routing table, one bridge per team, and the callers waiting for each team.
struct Engine {
    switch: SessionManager,
    incoming: IncomingCalls,
    routes: HashMap<&'static str, Route>,
    bridges: HashMap<Team, BridgeId>,
    waiting: HashMap<Team, VecDeque<CallSession>>,
}

impl Engine {
    fn new(switch: SessionManager, incoming: IncomingCalls) -> Result<Self, BoxError> {
        let mut bridges = HashMap::new();
        for team in [Team::Sales, Team::Support] {
            bridges.insert(team, switch.create_bridge(TechnologyChoice::Auto)?);
        }
        Ok(Self {
            switch,
            incoming,
            routes: HashMap::from([
                ("sam", Route::Seat(Team::Sales)),
                ("sue", Route::Seat(Team::Support)),
                ("sales", Route::Line(Team::Sales)),
                ("support", Route::Line(Team::Support)),
            ]),
            bridges,
            waiting: HashMap::new(),
        })
    }

    /// Answers the next incoming call and routes it by its Request-URI user: a seat or a free
    /// line joins the team's bridge; a busy line (an agent and a customer in it) waits on hold
    /// music; anything else gets 404. Returns the switch's leg (if answered) and the decision.
    async fn route_next(&mut self) -> Result<(Option<CallSession>, Routed), BoxError> {
        let call = within("an incoming call", self.incoming.next())
            .await
            .ok_or("the switch has stopped")?;
        let user = call.request_uri().user().unwrap_or_default().to_owned();
        let leg = call.session;
        let Some(route) = self.routes.get(user.as_str()).copied() else {
            within("the refusal", leg.reject(StatusCode::NOT_FOUND)).await?;
            return Ok((None, Routed::NotFound(user)));
        };
        within("the answer", leg.accept()).await?;
        within("the ACK", leg.wait_for(CallState::is_established)).await;
        let (Route::Seat(team) | Route::Line(team)) = route;
        let bridge = self.bridges[&team];
        let busy = self.switch.bridge_members(bridge).unwrap_or_default().len() >= 2;
        let routed = match route {
            Route::Line(team) if busy => {
                play(&leg, HOLD_MUSIC).await?;
                self.waiting.entry(team).or_default().push_back(leg.clone());
                Routed::Waiting(team)
            }
            Route::Line(team) => {
                within("joining", leg.join_bridge(bridge)).await?;
                Routed::Connected(team)
            }
            Route::Seat(team) => {
                within("joining", leg.join_bridge(bridge)).await?;
                Routed::Seated(team)
            }
        };
        println!("       engine: '{user}' → {routed:?}");
        Ok((Some(leg), routed))
    }

    /// Moves `leg` to `team`'s bridge, wherever it is now.
    async fn move_to(&self, leg: &CallSession, team: Team) -> Result<(), BoxError> {
        within("the move", leg.join_bridge(self.bridges[&team])).await?;
        println!("       engine: moved to {team:?}");
        Ok(())
    }

    /// Waits for a customer to leave a team's bridge (told by the bus) and gives that team's
    /// agent the first caller waiting for it. Returns the team.
    async fn on_next_departure(&mut self, bus: &mut Subscription) -> Result<Team, BoxError> {
        loop {
            let event = within("a bridge change", bus.recv()).await?;
            let SessionEvent::Bridge {
                bridge,
                change: BridgeChange::Left,
                ..
            } = &*event
            else {
                continue;
            };
            let Some(team) = self.team_of(*bridge) else {
                continue;
            };
            println!("       engine: a call left the {team:?} bridge");
            if let Some(next) = self.waiting.get_mut(&team).and_then(VecDeque::pop_front) {
                self.move_to(&next, team).await?;
            }
            return Ok(team);
        }
    }

    fn team_of(&self, bridge: BridgeId) -> Option<Team> {
        let mut teams = self.bridges.iter();
        teams.find(|(_, id)| **id == bridge).map(|(team, _)| *team)
    }
}

/// The playout figures of what `call` received: frames made up for missing audio, and
/// packets lost on the way.
async fn gaps(call: &CallSession) -> Result<(JitterStats, i64), BoxError> {
    let stats = within("statistics", call.stats()).await?;
    let lost = stats.rtp.map_or(-1, |rtp| rtp.packets_lost);
    Ok((stats.playout.ok_or("no playout figures")?, lost))
}

/// Dials `user` at the switch and lets the engine route it.
async fn dial(
    phones: &SessionManager,
    engine: &mut Engine,
    user: &str,
) -> Result<(CallSession, Option<CallSession>, Routed), BoxError> {
    println!("       dials {user}");
    let call = phones
        .call(&format!("sip:{user}@{}", engine.switch.local_addr()))
        .await?;
    let (leg, routed) = engine.route_next().await?;
    if leg.is_some() {
        within("the answer", call.answered()).await?;
    }
    Ok((call, leg, routed))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (handler, incoming) = IncomingCalls::channel(8);
    let switch = loopback(46_000..=46_099).handler(handler).start().await?;
    let agents = loopback(46_100..=46_199).start().await?;
    let customers = loopback(46_200..=46_299).start().await?;
    let mut bus = switch.events().subscribe(Filter::kind(EventKind::Bridge));
    let mut engine = Engine::new(switch.clone(), incoming)?;
    let (sales, support) = (engine.bridges[&Team::Sales], engine.bridges[&Team::Support]);

    section("1. the agents take their seats");
    let (sam, sam_leg, routed) = dial(&agents, &mut engine, "sam").await?;
    check(
        routed == Routed::Seated(Team::Sales),
        "sam sits in the sales bridge",
    );
    let (sue, sue_leg, routed) = dial(&agents, &mut engine, "sue").await?;
    check(
        routed == Routed::Seated(Team::Support),
        "sue sits in the support bridge",
    );
    let (sam_leg, sue_leg) = (sam_leg.ok_or("no leg")?, sue_leg.ok_or("no leg")?);
    let mut sam_ear = play_and_record(&sam, SAM).await?;
    let mut sue_ear = play_and_record(&sue, SUE).await?;

    section("2. customers are routed by the number they dial");
    let (carl, carl_leg, routed) = dial(&customers, &mut engine, "sales").await?;
    check(
        routed == Routed::Connected(Team::Sales),
        "'sales' joins the sales bridge",
    );
    let carl_leg = carl_leg.ok_or("no leg")?;
    let mut carl_ear = play_and_record(&carl, CARL).await?;
    let heard = hear(&mut [
        expect(&mut carl_ear, &[SAM], &[SUE, CARL, HOLD_MUSIC]),
        expect(&mut sam_ear, &[CARL], &[SAM, SUE, HOLD_MUSIC]),
    ])
    .await;
    check_heard(&heard[0], "carl hears sam");
    check_heard(&heard[1], "sam hears carl");
    let (lost, _, routed) = dial(&customers, &mut engine, "billing").await?;
    let refused = within("the answer for billing", lost.answered()).await;
    check(
        routed == Routed::NotFound("billing".into())
            && matches!(&refused, Err(e) if e.status() == Some(StatusCode::NOT_FOUND)),
        "'billing' is not in the routing table: 404 Not Found",
    );

    section("3. carl needs support: a move between bridges");
    let (before, lost_before) = gaps(&carl).await?;
    engine.move_to(&carl_leg, Team::Support).await?;
    check(
        switch.bridge_of(&carl_leg) == Some(support)
            && switch.bridge_members(sales) == Some(vec![sam_leg.id()]),
        "carl's leg is in the support bridge; sam is alone in sales",
    );
    let heard = hear(&mut [
        expect(&mut carl_ear, &[SUE], &[SAM, CARL, HOLD_MUSIC]),
        expect(&mut sue_ear, &[CARL], &[SAM, SUE, HOLD_MUSIC]),
    ])
    .await;
    check_heard(&heard[0], "carl hears sue, and sam no longer");
    check_heard(&heard[1], "sue hears carl");
    let (after, lost_after) = gaps(&carl).await?;
    let made_up = (after.concealed + after.silence) - (before.concealed + before.silence);
    println!(
        "       carl's playout since the move: {} frames played, {made_up} made up, {} packets \
         lost, {} re-buffering",
        after.played - before.played,
        lost_after - lost_before,
        after.rebuffers - before.rebuffers,
    );
    // The stream goes on whatever the bridges do: its sequence numbers run on (nothing counts
    // as lost) and the buffer never has to start over. Frames made up would show a pause in
    // time; a busy machine can cause a few on its own, so only a pause of 100 ms fails.
    check(
        lost_after == 0 && after.lost == 0 && after.rebuffers == before.rebuffers && made_up <= 5,
        "no gap: the same RTP stream, no packet lost, no re-buffering",
    );
    let moved = loop {
        let event = within("the move on the bus", bus.recv()).await?;
        if let SessionEvent::Bridge {
            session_id,
            change: BridgeChange::MovedFrom { from },
            ..
        } = *event
            && session_id == carl_leg.id()
        {
            break from;
        }
    };
    check(
        moved == sales,
        format!("the bus says carl's leg moved from {sales} to {support}"),
    );

    section("4. dana dials support while sue is busy: she waits");
    let (dana, dana_leg, routed) = dial(&customers, &mut engine, "support").await?;
    check(
        routed == Routed::Waiting(Team::Support),
        "the engine queues her",
    );
    let dana_leg = dana_leg.ok_or("no leg")?;
    let mut dana_ear = play_and_record(&dana, DANA).await?;
    let heard = hear(&mut [expect(
        &mut dana_ear,
        &[HOLD_MUSIC],
        &[SAM, SUE, CARL, DANA],
    )])
    .await;
    check_heard(&heard[0], "dana hears the hold music, and nobody else");

    section("5. carl hangs up: the engine re-routes dana to sue");
    within("carl hangs up", carl.hangup()).await?;
    let team = engine.on_next_departure(&mut bus).await?;
    check(
        team == Team::Support && switch.bridge_of(&dana_leg) == Some(support),
        "carl's leg left the support bridge, and dana's leg joined it",
    );
    let heard = hear(&mut [
        expect(&mut dana_ear, &[SUE], &[SAM, CARL, DANA, HOLD_MUSIC]),
        expect(&mut sue_ear, &[DANA], &[SAM, SUE, CARL, HOLD_MUSIC]),
    ])
    .await;
    check_heard(&heard[0], "dana hears sue, not the hold music");
    check_heard(&heard[1], "sue hears dana, and carl no longer");

    section("6. sue asks sam to help: the engine merges the bridges");
    switch.merge_bridges(sales, support)?;
    println!("       engine: merged {sales} into {support}");
    let stats = switch.bridge_stats(support).ok_or("no support bridge")?;
    check(
        switch.bridge_stats(sales).is_none()
            && stats.members == 3
            && stats.technology == Technology::Mixer,
        "the sales bridge is gone; support holds sam, sue and dana, mixed",
    );
    let heard = hear(&mut [
        expect(&mut sam_ear, &[SUE, DANA], &[SAM, CARL, HOLD_MUSIC]),
        expect(&mut sue_ear, &[SAM, DANA], &[SUE, CARL, HOLD_MUSIC]),
        expect(&mut dana_ear, &[SAM, SUE], &[DANA, CARL, HOLD_MUSIC]),
    ])
    .await;
    check_heard(&heard[0], "sam hears sue and dana, and not his own tone");
    check_heard(&heard[1], "sue hears sam and dana, and not her own tone");
    check_heard(&heard[2], "dana hears sam and sue, and not her own tone");

    section("7. hang-up");
    for call in [&dana, &sam, &sue] {
        within("hang-up", call.hangup()).await?;
    }
    for leg in [&carl_leg, &dana_leg, &sam_leg, &sue_leg] {
        gone(leg).await;
    }
    check(
        switch.bridge_members(support) == Some(Vec::new()),
        "every leg left the support bridge as it ended",
    );
    within("destroy", switch.destroy_bridge(support)).await?;
    let idle = released(&switch).await && released(&agents).await && released(&customers).await;
    check(idle, "no call, admission slot or RTP port is held anywhere");
    drop(engine);
    for manager in [switch, agents, customers] {
        manager.shutdown().await;
    }
    Ok(())
}
