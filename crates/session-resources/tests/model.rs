//! Random sequences of admissions, releases and port leases checked step by step against a
//! plain model: every limit refuses exactly when the model says so, a refusal takes nothing,
//! and the counts always match.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use session_resources::{
    AdmissionController, AdmissionPermit, AdmissionRequest, Limits, PortPair, PortPool, Resource,
};
use session_types::GroupId;

const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Clone, Debug)]
enum Op {
    Admit {
        user: Option<usize>,
        group: Option<u64>,
    },
    Release(usize),
    Acquire,
    Return(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            proptest::option::of(0..USERS.len()),
            proptest::option::of(0..3u64)
        )
            .prop_map(|(user, group)| Op::Admit { user, group }),
        2 => any::<usize>().prop_map(Op::Release),
        2 => Just(Op::Acquire),
        1 => any::<usize>().prop_map(Op::Return),
    ]
}

#[derive(Default)]
struct Model {
    active: usize,
    users: BTreeMap<String, usize>,
    groups: BTreeMap<GroupId, usize>,
    admitted: u64,
    refused: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn admission_and_ports_follow_the_model(
        max_sessions in 0..6usize,
        max_per_user in 0..4usize,
        max_per_group in 0..4usize,
        group_2_limit in proptest::option::of(0..6usize),
        port_start in 10_000..10_006u16,
        port_len in 2..12u16,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut limits = Limits::default()
            .max_sessions(max_sessions)
            .max_per_user(max_per_user)
            .max_per_group(max_per_group);
        if let Some(max) = group_2_limit {
            limits = limits.max_for_group(GroupId::from_raw(2), max);
        }
        let group_limit = |group: GroupId| {
            if group == GroupId::from_raw(2) { group_2_limit.unwrap_or(max_per_group) } else { max_per_group }
        };
        let admission = AdmissionController::new(limits);
        // The pairs in the range: even, not below the start, partner below the end.
        let mut free: VecDeque<u16> = (port_start..port_start + port_len - 1)
            .filter(|p| p % 2 == 0)
            .collect();
        let ports = match PortPool::new(port_start..port_start + port_len) {
            Ok(ports) => ports,
            Err(_) => {
                prop_assert!(free.is_empty());
                return Ok(());
            }
        };
        prop_assert_eq!(ports.capacity(), free.len());

        let mut model = Model::default();
        let mut permits: Vec<AdmissionPermit> = Vec::new();
        let mut pairs: Vec<PortPair> = Vec::new();
        for op in ops {
            match op {
                Op::Admit { user, group } => {
                    let user = user.map(|u| USERS[u]);
                    let group = group.map(GroupId::from_raw);
                    let mut request = AdmissionRequest::new();
                    if let Some(user) = user { request = request.with_user(user); }
                    if let Some(group) = group { request = request.in_group(group); }
                    // The first limit that refuses, checked in the documented order.
                    let user_full = user
                        .filter(|u| model.users.get(*u).copied().unwrap_or(0) >= max_per_user);
                    let group_full = group
                        .filter(|g| model.groups.get(g).copied().unwrap_or(0) >= group_limit(*g));
                    let expected = match (model.active >= max_sessions, user_full, group_full) {
                        (true, _, _) => Some((Resource::Sessions, max_sessions)),
                        (false, Some(user), _) => {
                            Some((Resource::UserSessions { user: user.into() }, max_per_user))
                        }
                        (false, None, Some(group)) => {
                            Some((Resource::GroupSessions { group }, group_limit(group)))
                        }
                        (false, None, None) => None,
                    };
                    match (admission.try_admit(&request), expected) {
                        (Ok(permit), None) => {
                            prop_assert_eq!(permit.user(), user);
                            prop_assert_eq!(permit.group(), group);
                            model.active += 1;
                            model.admitted += 1;
                            if let Some(user) = user { *model.users.entry(user.to_owned()).or_default() += 1; }
                            if let Some(group) = group { *model.groups.entry(group).or_default() += 1; }
                            permits.push(permit);
                        }
                        (Err(err), Some((resource, limit))) => {
                            prop_assert_eq!(err.resource(), Some(&resource));
                            prop_assert_eq!(err.limit(), Some(limit));
                            model.refused += 1;
                        }
                        (outcome, expected) => {
                            prop_assert!(false, "got {:?}, model expected refusal {:?}", outcome, expected);
                        }
                    }
                }
                Op::Release(index) => {
                    if !permits.is_empty() {
                        let permit = permits.swap_remove(index % permits.len());
                        model.active -= 1;
                        if let Some(user) = permit.user() {
                            let count = model.users.get_mut(user).unwrap();
                            *count -= 1;
                            if *count == 0 { model.users.remove(user); }
                        }
                        if let Some(group) = permit.group() {
                            let count = model.groups.get_mut(&group).unwrap();
                            *count -= 1;
                            if *count == 0 { model.groups.remove(&group); }
                        }
                    }
                }
                Op::Acquire => match (ports.acquire(), free.pop_front()) {
                    (Ok(pair), Some(rtp)) => {
                        prop_assert_eq!(pair.rtp(), rtp, "FIFO order");
                        pairs.push(pair);
                    }
                    (Err(err), None) => prop_assert_eq!(err.resource(), Some(&Resource::RtpPorts)),
                    (got, want) => prop_assert!(false, "got {:?}, model expected {:?}", got, want),
                },
                Op::Return(index) => {
                    if !pairs.is_empty() {
                        let pair = pairs.swap_remove(index % pairs.len());
                        free.push_back(pair.rtp());
                    }
                }
            }
            let usage = admission.snapshot();
            prop_assert_eq!(usage.active, model.active);
            prop_assert_eq!(usage.admitted_total, model.admitted);
            prop_assert_eq!(usage.refused_total, model.refused);
            let users: BTreeMap<String, usize> =
                usage.users.iter().map(|(u, n)| (u.to_string(), *n)).collect();
            prop_assert_eq!(&users, &model.users);
            let groups: BTreeMap<GroupId, usize> = usage.groups.iter().copied().collect();
            prop_assert_eq!(&groups, &model.groups);
            prop_assert_eq!(ports.available(), free.len());
            prop_assert_eq!(ports.in_use(), pairs.len());
        }
        drop(permits);
        drop(pairs);
        let usage = admission.snapshot();
        prop_assert_eq!(usage.active, 0);
        prop_assert!(usage.users.is_empty() && usage.groups.is_empty());
        prop_assert_eq!(ports.in_use(), 0);
    }
}
