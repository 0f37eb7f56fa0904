//! # 05 — session groups
//!
//! A dialer engine runs an outbound campaign with session groups; the library only keeps the
//! groups, the engine decides what they mean:
//!
//! 1. a group with a limit — calls placed into the `sales` group are admitted under its limit
//!    of two (`Limits::max_for_group`): the third is refused at once, before any SIP leaves;
//! 2. watching a group — a supervisor's dashboard subscribes to `sales` and sees each member
//!    join and each call's state changes, without knowing the calls in advance;
//! 3. several groups — one call is also put into a `vip` group the engine makes at run time;
//! 4. a member ends — a customer hangs up: the call leaves both groups by itself, and the
//!    freed slot admits the next call;
//! 5. the whole group — the campaign stops: one call ends every member, the group is empty
//!    and is dissolved; nothing is held on either side.
//!
//! Run: `cargo run -p examples2 --example 05_session_groups`. Exits non-zero if a check fails.

use examples2::{check, loopback, released, section, within};
use session_core::{
    CallDecision, CallHandler, CallOptions, CallSession, CallState, GroupId, IncomingCall, Limits,
    SessionError, SessionEvent, SessionId, Subscription,
};
use std::sync::{Arc, Mutex};

type BoxError = Box<dyn std::error::Error>;

/// The engine's own number for its sales team (limits are set before the manager starts).
const SALES: GroupId = GroupId::from_raw(100);

/// The customers' phones: answer every call and keep its handle, so a customer can hang up.
#[derive(Default)]
struct Customers {
    calls: Arc<Mutex<Vec<CallSession>>>,
}

impl CallHandler for Customers {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call.session.clone());
        }
        CallDecision::accept()
    }
}

/// The dashboard's view of the next group events, until `done` says enough.
async fn watch(
    dashboard: &mut Subscription,
    names: &[(SessionId, &str)],
    mut done: impl FnMut(&SessionEvent) -> bool,
) -> Result<(), BoxError> {
    let name = |id: SessionId| {
        names
            .iter()
            .find(|(s, _)| *s == id)
            .map_or("?", |(_, n)| *n)
            .to_owned()
    };
    loop {
        let event = within("a group event", dashboard.recv()).await?;
        match &*event {
            SessionEvent::GroupMemberJoined { session_id, group } => {
                println!("       dashboard: {} joined {group}", name(*session_id));
            }
            SessionEvent::GroupMemberLeft { session_id, group } => {
                println!("       dashboard: {} left {group}", name(*session_id));
            }
            SessionEvent::StateChanged {
                session_id, new, ..
            } => println!("       dashboard: {} is {new:?}", name(*session_id)),
            _ => {}
        }
        if done(&event) {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dialer = loopback(45_000..=45_099)
        .limits(Limits::default().max_for_group(SALES, 2))
        .start()
        .await?;
    let phones = Customers::default();
    let answered = phones.calls.clone();
    let customers = loopback(45_100..=45_199).handler(phones).start().await?;
    let customer = |n: u32| format!("sip:customer{n}@{}", customers.local_addr());
    let into_sales = || CallOptions::default().group(SALES);

    section("1. calls placed into `sales` are admitted under its limit of two");
    let mut dashboard = dialer.subscribe_group(SALES);
    let first = dialer.call_with(&customer(1), into_sales()).await?;
    let second = dialer.call_with(&customer(2), into_sales()).await?;
    let third = dialer.call_with(&customer(3), into_sales()).await;
    check(
        matches!(third, Err(SessionError::Resources(_))),
        "the third call is refused at once by the group's limit",
    );
    check(
        dialer.group_members(SALES) == Some(vec![first.id(), second.id()]),
        "the two admitted calls are members from their creation",
    );

    section("2. a supervisor's dashboard watches the group");
    let names = [(first.id(), "customer 1"), (second.id(), "customer 2")];
    let mut active = 0;
    watch(&mut dashboard, &names, |event| {
        if matches!(
            event,
            SessionEvent::StateChanged {
                new: CallState::Active,
                ..
            }
        ) {
            active += 1;
        }
        active == 2
    })
    .await?;
    check(
        active == 2,
        "the dashboard saw both members join and answer",
    );

    section("3. customer 1 is also a VIP");
    let vip = dialer.create_group();
    dialer.add_to_group(&first, vip)?;
    check(
        dialer.groups_of(&first) == vec![SALES, vip],
        "customer 1's call is in `sales` and in the new `vip` group",
    );

    section("4. customer 1 hangs up: the call leaves both groups, a slot frees up");
    // The customer's phone has the same call, by its Call-ID.
    let far_end = answered
        .lock()
        .map_err(|_| "the phones' list is poisoned")?
        .iter()
        .find(|call| call.call_id() == first.call_id())
        .cloned()
        .ok_or("customer 1's phone has no such call")?;
    within("customer 1 hangs up", far_end.hangup()).await?;
    watch(&mut dashboard, &names, |event| {
        matches!(event, SessionEvent::GroupMemberLeft { session_id, .. } if *session_id == first.id())
    })
    .await?;
    check(
        dialer.group_members(SALES) == Some(vec![second.id()])
            && dialer.group_members(vip) == Some(Vec::new()),
        "customer 1 left `sales` and `vip` as the call ended",
    );
    let third = dialer.call_with(&customer(3), into_sales()).await?;
    within("customer 3 answers", third.answered()).await?;
    check(
        dialer.group_members(SALES) == Some(vec![second.id(), third.id()]),
        "the freed slot admits customer 3",
    );

    section("5. the campaign stops: one call ends the whole group");
    let ended = dialer.hangup_group(SALES).await;
    within("customer 2's call ends", second.ended()).await;
    within("customer 3's call ends", third.ended()).await;
    check(ended == 2, "hangup_group ended both members");
    check(
        dialer.group_members(SALES) == Some(Vec::new()),
        "`sales` is empty",
    );
    check(
        dialer.dissolve_group(vip).is_empty() && dialer.group_members(vip).is_none(),
        "the empty `vip` group is dissolved",
    );
    check(
        released(&dialer).await && released(&customers).await,
        "nothing is held on either side: no call, no admission slot, no RTP port",
    );
    dialer.shutdown().await;
    customers.shutdown().await;
    Ok(())
}
