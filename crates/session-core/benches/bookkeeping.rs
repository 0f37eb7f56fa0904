//! Issue 13: the per-call cost of the bookkeeping a call placed into a group, with a priority
//! and a dependency, costs the manager — with 10,000 other sessions already in the structures.
//! Target: group membership, priority and dependency bookkeeping together ≤ 200 ns per call.
//!
//! What one call does, and what each benchmark runs (the same code the manager runs):
//! - group: `SessionManager::add_to_group` then `remove_from_group`, i.e. `Groups::add` (its
//!   `accept` closure reads the call's `ending` flag, and its state `watch` only when the flag
//!   is set, as the manager's does;
//!   `GroupMemberJoined` published) and `Groups::remove` (`GroupMemberLeft` published). The bus
//!   keeps no copy of the membership: `Groups` is registered with it as a `GroupMembership`
//!   source, as the manager's is, and asked only while a subscription is on a group;
//! - dependency: `SessionManager::add_dependency` then `remove_dependency`, i.e.
//!   `Dependencies::link` (cycle check; `accept` reads both calls' flags) and `unlink`;
//! - priority: `CallShared::set_priority` and `priority` (an `AtomicU8` store and load;
//!   `CallShared` is not reachable from outside the crate, so its two lines are repeated here);
//! - admission at the priority: `AdmissionController::try_admit` with
//!   `AdmissionRequest::for_user(..).at_priority(..)`, the permit dropped.
//!
//! A call the manager places with `CallOptions::group` does not leave through
//! `remove_from_group`: it joins as it is created (`Groups::add`, accepted at once) and leaves
//! as it ends (`Groups::forget`, every group it is in), and its links go as it ends
//! (`Dependencies::ended`). The `*_lifecycle` benchmarks measure that path.
//!
//! The 10,000 other sessions are in groups of 100 (`bookkeeping/groups_of_100/*`; the call
//! joins one of them) or all in one group (`bookkeeping/one_group_of_10000/*`), linked in pairs
//! (B leg on A leg; the call depends on an A leg), and admitted for a user each. No one is
//! subscribed to the bus except in `group_join_leave_with_subscriber` (a subscriber to the
//! call's group reads both events). `group_join_leave_bus_part` is the event bus's share of a
//! join and leave on its own: the two events published (until the bus stopped mirroring the
//! membership it also made and dropped the call's entry in the bus's group index).
//!
//! `Groups` and `Dependencies` are internal (the public methods need a live `CallSession`);
//! they are reached through `session_core::bench_support`.
//!
//! ```text
//! cargo bench -p session-core --bench bookkeeping -- --warm-up-time 1 --measurement-time 3
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use session_core::bench_support::{Dependencies, Groups};
use session_core::{CallState, Cascade, Filter, GroupId, Priority, SessionEvent, SessionId};
use session_events::EventBus;
use session_resources::{AdmissionController, AdmissionPermit, AdmissionRequest, Limits};
use tokio::sync::watch;

/// Sessions already present in every structure.
const OTHERS: u64 = 10_000;

/// A session id that does not collide with the background's.
fn session(n: u64) -> SessionId {
    SessionId::from_u128((0x5e55_u128 << 64) | u128::from(n))
}

/// The part of a call's shared state the bookkeeping reads (`CallShared`'s fields).
struct Call {
    id: SessionId,
    state: watch::Sender<CallState>,
    ending: AtomicBool,
    priority: AtomicU8,
}

impl Call {
    fn new(id: SessionId) -> Self {
        Self {
            id,
            state: watch::Sender::new(CallState::Active),
            ending: AtomicBool::new(false),
            priority: AtomicU8::new(0),
        }
    }

    /// What the manager's `accept` closures ask: has the call started to end? `ending` is set
    /// before the state turns final (`Core::end_call`), so the state is read only for the
    /// error the manager returns then.
    fn ending(&self) -> bool {
        if self.ending.load(Ordering::Relaxed) {
            let state = *self.state.borrow();
            black_box(state);
            return true;
        }
        false
    }

    /// `CallShared::set_priority`.
    fn set_priority(&self, priority: Priority) {
        self.priority.store(priority.level(), Ordering::Relaxed);
    }

    /// `CallShared::priority`.
    fn priority(&self) -> Priority {
        Priority::new(self.priority.load(Ordering::Relaxed)).unwrap_or_default()
    }
}

/// The manager's structures with `OTHERS` sessions in them.
struct World {
    bus: EventBus,
    groups: Arc<Groups>,
    dependencies: Dependencies,
    admission: AdmissionController,
    /// The group the measured call joins.
    group: GroupId,
    /// The call it depends on (an A leg of the background, which has a B leg of its own).
    on: Call,
    _permits: Vec<AdmissionPermit>,
}

/// `OTHERS` sessions spread over groups of `group_size` (the measured call joins one of them),
/// linked in pairs (B leg depends on A leg, as the B2BUA links them), each admitted for a user
/// of its own.
fn world(group_size: u64) -> World {
    let bus = EventBus::new();
    let groups = Arc::new(Groups::default());
    // As `SessionManagerBuilder::start` does.
    bus.add_group_membership(&groups);
    let dependencies = Dependencies::default();
    let mut group = GroupId::next();
    for n in 0..OTHERS {
        if n % group_size == 0 {
            group = GroupId::next();
        }
        assert!(groups.add(&bus, session(n), group, || true));
        if n % 2 == 1 {
            let linked =
                dependencies.link(session(n), session(n - 1), Cascade::EndDependent, || true);
            assert_eq!(linked, Ok(true));
        }
    }
    let admission = AdmissionController::new(
        Limits::default()
            .max_sessions(2 * OTHERS as usize)
            .max_per_user(10)
            .reserve_for(Priority::HIGHEST, 100),
    );
    let permits = (0..OTHERS)
        .map(|n| {
            let user = format!("user{n}@example.com");
            admission
                .try_admit(&AdmissionRequest::for_user(&user))
                .unwrap()
        })
        .collect();
    World {
        bus,
        groups,
        dependencies,
        admission,
        group,
        on: Call::new(session(OTHERS - 2)),
        _permits: permits,
    }
}

impl World {
    /// Join the group and leave it.
    fn group_join_leave(&self, call: &Call) {
        let joined = self
            .groups
            .add(&self.bus, call.id, self.group, || !call.ending());
        let left = self.groups.remove(&self.bus, call.id, self.group);
        debug_assert!(joined && left);
        black_box((joined, left));
    }

    /// Depend on `self.on`, then drop the link.
    fn dependency_link_unlink(&self, call: &Call) {
        let linked = self
            .dependencies
            .link(call.id, self.on.id, Cascade::Notify, || {
                !(call.ending() || self.on.ending())
            })
            .unwrap();
        let unlinked = self.dependencies.unlink(call.id, self.on.id);
        debug_assert!(linked && unlinked);
        black_box((linked, unlinked));
    }

    /// Joins the group as a call placed into it does (`core/outbound.rs`), and leaves as it
    /// ends (`Core::end_call`).
    fn group_join_forget(&self, call: &Call) {
        let joined = self.groups.add(&self.bus, call.id, self.group, || true);
        debug_assert!(joined);
        self.groups.forget(&self.bus, call.id);
        black_box(joined);
    }

    /// Depends on `self.on`, then ends (its links go; nothing depends on it).
    fn dependency_link_ended(&self, call: &Call) {
        let linked = self
            .dependencies
            .link(call.id, self.on.id, Cascade::Notify, || {
                !(call.ending() || self.on.ending())
            })
            .unwrap();
        let cascade = self.dependencies.ended(&self.bus, call.id);
        debug_assert!(linked && cascade.is_empty());
        black_box((linked, cascade));
    }

    /// Admitted at `priority` for `user`; the permit is dropped at once.
    fn admit(&self, user: &str, priority: Priority) {
        let request = AdmissionRequest::for_user(user).at_priority(priority);
        let permit = self.admission.try_admit(black_box(&request)).unwrap();
        drop(black_box(permit));
    }
}

fn priority_store_load(call: &Call, priority: Priority) {
    call.set_priority(black_box(priority));
    black_box(call.priority());
}

fn bookkeeping(c: &mut Criterion) {
    let urgent = Priority::new(3).unwrap();
    // A fresh user (the admission map entry made and removed), and one with a call already up.
    let fresh = "alice@example.com";
    let busy = "carol@example.com";

    for (label, group_size) in [("groups_of_100", 100), ("one_group_of_10000", OTHERS)] {
        let world = world(group_size);
        let _busy_call = world
            .admission
            .try_admit(&AdmissionRequest::for_user(busy))
            .unwrap();
        let call = Call::new(session(OTHERS + 1));
        let mut g = c.benchmark_group(format!("bookkeeping/{label}"));
        g.bench_function("group_join_leave", |b| {
            b.iter(|| world.group_join_leave(&call));
        });
        g.bench_function("group_join_forget_lifecycle", |b| {
            b.iter(|| world.group_join_forget(&call));
        });
        if group_size == 100 {
            // A dashboard subscribed to the group reads both events.
            g.bench_function("group_join_leave_with_subscriber", |b| {
                let mut subscription = world.bus.subscribe(Filter::group(world.group));
                b.iter(|| {
                    world.group_join_leave(&call);
                    black_box(subscription.try_recv().unwrap());
                    black_box(subscription.try_recv().unwrap());
                });
            });
            // The event bus's share of a join and leave: the two events published, nobody
            // subscribed (session-events' code; the bus keeps no copy of the membership).
            g.bench_function("group_join_leave_bus_part", |b| {
                b.iter(|| {
                    world.bus.publish_with(|| SessionEvent::GroupMemberJoined {
                        session_id: call.id,
                        group: world.group,
                    });
                    world.bus.publish_with(|| SessionEvent::GroupMemberLeft {
                        session_id: call.id,
                        group: world.group,
                    });
                });
            });
            g.bench_function("dependency_link_unlink", |b| {
                b.iter(|| world.dependency_link_unlink(&call));
            });
            g.bench_function("dependency_link_ended_lifecycle", |b| {
                b.iter(|| world.dependency_link_ended(&call));
            });
            g.bench_function("priority_store_load", |b| {
                b.iter(|| priority_store_load(&call, urgent));
            });
            g.bench_function("admission_at_priority_fresh_user", |b| {
                b.iter(|| world.admit(fresh, urgent));
            });
            g.bench_function("admission_at_priority_user_active", |b| {
                b.iter(|| world.admit(busy, urgent));
            });
        }
        // Everything one call does, in the order a call does it.
        g.bench_function("call_without_admission", |b| {
            b.iter(|| {
                priority_store_load(&call, urgent);
                world.group_join_leave(&call);
                world.dependency_link_unlink(&call);
            });
        });
        g.bench_function("call_with_admission_user_active", |b| {
            b.iter(|| {
                let request = AdmissionRequest::for_user(busy).at_priority(urgent);
                let permit = world.admission.try_admit(black_box(&request)).unwrap();
                priority_store_load(&call, urgent);
                world.group_join_leave(&call);
                world.dependency_link_unlink(&call);
                drop(black_box(permit));
            });
        });
        g.bench_function("call_lifecycle_without_admission", |b| {
            b.iter(|| {
                priority_store_load(&call, urgent);
                world.group_join_forget(&call);
                world.dependency_link_ended(&call);
            });
        });
        g.bench_function("call_lifecycle_with_admission_user_active", |b| {
            b.iter(|| {
                let request = AdmissionRequest::for_user(busy).at_priority(urgent);
                let permit = world.admission.try_admit(black_box(&request)).unwrap();
                priority_store_load(&call, urgent);
                world.group_join_forget(&call);
                world.dependency_link_ended(&call);
                drop(black_box(permit));
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bookkeeping);
criterion_main!(benches);
