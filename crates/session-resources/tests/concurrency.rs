//! Many threads acquiring and releasing at once: limits hold at every moment, no port pair is
//! handed out twice, and every count returns to zero.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use session_resources::{
    AdmissionController, AdmissionRequest, Limits, PortPair, PortPool, Resource,
};
use session_types::{Classify, ErrorKind, GroupId};

const THREADS: u64 = 8;
const ROUNDS: usize = 20_000;

const MAX_SESSIONS: usize = 10;
const MAX_PER_USER: usize = 3;
const MAX_PER_GROUP: usize = 4;
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const GROUPS: usize = 3;

/// Our own count of the permits held, raised after `try_admit` succeeds and lowered before the
/// permit is dropped, so it is never above the controller's true count: if it goes over a limit,
/// the controller let too many in.
struct Live {
    global: AtomicUsize,
    users: [AtomicUsize; USERS.len()],
    groups: [AtomicUsize; GROUPS],
}

#[test]
fn admission_limits_hold_under_contention() {
    let admission = AdmissionController::new(
        Limits::default()
            .max_sessions(MAX_SESSIONS)
            .max_per_user(MAX_PER_USER)
            .max_per_group(MAX_PER_GROUP),
    );
    let live = Live {
        global: AtomicUsize::new(0),
        users: Default::default(),
        groups: Default::default(),
    };
    let attempts = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    thread::scope(|scope| {
        for seed in 0..THREADS {
            let (admission, live, attempts, refused) = (&admission, &live, &attempts, &refused);
            scope.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut held = Vec::new();
                for _ in 0..ROUNDS {
                    if held.len() < 4 && rng.bool() {
                        let user = rng.usize(..USERS.len() + 1);
                        let group = rng.usize(..GROUPS + 1);
                        let mut request = AdmissionRequest::new();
                        if let Some(name) = USERS.get(user) {
                            request = request.with_user(name);
                        }
                        if group < GROUPS {
                            request = request.in_group(GroupId::from_raw(group as u64));
                        }
                        attempts.fetch_add(1, Ordering::Relaxed);
                        match admission.try_admit(&request) {
                            Ok(permit) => {
                                let n = live.global.fetch_add(1, Ordering::SeqCst) + 1;
                                assert!(n <= MAX_SESSIONS, "{n} sessions admitted");
                                if user < USERS.len() {
                                    let n = live.users[user].fetch_add(1, Ordering::SeqCst) + 1;
                                    assert!(n <= MAX_PER_USER, "{n} sessions of one user");
                                }
                                if group < GROUPS {
                                    let n = live.groups[group].fetch_add(1, Ordering::SeqCst) + 1;
                                    assert!(n <= MAX_PER_GROUP, "{n} sessions in one group");
                                }
                                held.push((permit, user, group));
                            }
                            Err(err) => {
                                assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else if !held.is_empty() {
                        let (permit, user, group) = held.swap_remove(rng.usize(..held.len()));
                        live.global.fetch_sub(1, Ordering::SeqCst);
                        if user < USERS.len() {
                            live.users[user].fetch_sub(1, Ordering::SeqCst);
                        }
                        if group < GROUPS {
                            live.groups[group].fetch_sub(1, Ordering::SeqCst);
                        }
                        drop(permit);
                    }
                    assert!(admission.active() <= MAX_SESSIONS);
                }
                for (permit, user, group) in held {
                    live.global.fetch_sub(1, Ordering::SeqCst);
                    if user < USERS.len() {
                        live.users[user].fetch_sub(1, Ordering::SeqCst);
                    }
                    if group < GROUPS {
                        live.groups[group].fetch_sub(1, Ordering::SeqCst);
                    }
                    drop(permit);
                }
            });
        }
    });
    let usage = admission.snapshot();
    assert_eq!(usage.active, 0);
    assert!(usage.users.is_empty(), "{:?}", usage.users);
    assert!(usage.groups.is_empty(), "{:?}", usage.groups);
    assert!(usage.peak <= MAX_SESSIONS && usage.peak > 0);
    let attempts = attempts.into_inner() as u64;
    let refused = refused.into_inner() as u64;
    assert_eq!(usage.admitted_total + usage.refused_total, attempts);
    assert_eq!(usage.refused_total, refused);
    assert!(refused > 0, "the limits were exercised");
}

#[test]
fn the_global_limit_is_exact_under_contention() {
    // Every thread grabs as many permits as it can; together they must get exactly the limit.
    let admission = AdmissionController::new(Limits::default().max_sessions(1_000));
    let got: Vec<Vec<_>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    std::iter::from_fn(|| admission.try_admit(&AdmissionRequest::new()).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 1_000);
    assert_eq!(admission.active(), 1_000);
    let err = admission.try_admit(&AdmissionRequest::new()).unwrap_err();
    assert_eq!(err.resource(), Some(&Resource::Sessions));
    drop(got);
    assert_eq!(admission.active(), 0);
}

#[test]
fn port_pairs_are_never_handed_out_twice() {
    const FIRST: u16 = 40000;
    let pool = PortPool::new(FIRST..FIRST + 32).unwrap(); // 16 pairs for 8 threads
    let taken: Vec<AtomicBool> = (0..32).map(|_| AtomicBool::new(false)).collect();
    let mark = |pair: &PortPair, now: bool| {
        let index = usize::from(pair.rtp() - FIRST);
        let before = taken[index].swap(now, Ordering::SeqCst);
        assert_eq!(before, !now, "port {} handed out twice", pair.rtp());
    };
    thread::scope(|scope| {
        for seed in 0..THREADS {
            let (pool, mark) = (&pool, &mark);
            scope.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut held = Vec::new();
                for _ in 0..ROUNDS {
                    if held.len() < 4 && rng.bool() {
                        if let Ok(pair) = pool.acquire() {
                            assert_eq!(pair.rtp() % 2, 0);
                            assert_eq!(pair.rtcp(), pair.rtp() + 1);
                            mark(&pair, true);
                            held.push(pair);
                        }
                    } else if !held.is_empty() {
                        let pair = held.swap_remove(rng.usize(..held.len()));
                        mark(&pair, false);
                        drop(pair);
                    }
                }
                for pair in held {
                    mark(&pair, false);
                }
            });
        }
    });
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.available(), 16);
    // Every pair came back exactly once: draining the pool yields each of them once.
    let drained: Vec<PortPair> = std::iter::from_fn(|| pool.acquire().ok()).collect();
    let mut ports: Vec<u16> = drained.iter().map(PortPair::rtp).collect();
    ports.sort_unstable();
    let expected: Vec<u16> = (FIRST..FIRST + 32).step_by(2).collect();
    assert_eq!(ports, expected);
    let usage = pool.snapshot();
    assert!(usage.peak <= 16);
    assert!(usage.refused_total >= 1);
}

#[test]
fn a_users_last_release_racing_new_admissions_loses_nothing() {
    // Two threads admit and release the same user over and over with a quota of one, so its
    // entry is removed at zero and made again all the time, each racing the other: the quota
    // holds, no count is lost, and no entry is left behind.
    const PER_THREAD: usize = 50_000;
    let admission = AdmissionController::new(Limits::default().max_per_user(1));
    let holding = AtomicUsize::new(0);
    let admitted = AtomicUsize::new(0);
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..PER_THREAD {
                    if let Ok(permit) = admission.try_admit(&AdmissionRequest::for_user("dora")) {
                        assert_eq!(holding.fetch_add(1, Ordering::SeqCst), 0, "quota of one");
                        admitted.fetch_add(1, Ordering::Relaxed);
                        holding.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                }
            });
        }
    });
    let usage = admission.snapshot();
    assert_eq!(usage.active, 0);
    assert!(usage.users.is_empty(), "{:?}", usage.users);
    assert_eq!(admission.active_users(), 0);
    assert_eq!(usage.admitted_total, admitted.into_inner() as u64);
    assert_eq!(
        usage.admitted_total + usage.refused_user,
        2 * PER_THREAD as u64
    );
    assert_eq!(usage.refused_total, usage.refused_user);
    // The user can still be admitted: nothing stale blocks the quota.
    let again = admission
        .try_admit(&AdmissionRequest::for_user("dora"))
        .unwrap();
    assert_eq!(admission.user_active("dora"), 1);
    drop(again);
    assert_eq!(admission.active_users(), 0);
}
