//! Permits and port pairs held by tokio tasks and futures come back when those are aborted,
//! cancelled, time out, lose a `select!`, panic, or are dropped with their runtime.

// The helpers outside `#[test]` functions unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use session_resources::{AdmissionController, AdmissionRequest, Limits, PortPool};
use session_types::GroupId;
use tokio::sync::{mpsc, oneshot};

const TASKS: usize = 50;

fn controller() -> AdmissionController {
    AdmissionController::new(
        Limits::default()
            .max_sessions(TASKS)
            .max_per_user(TASKS)
            .max_per_group(TASKS),
    )
}

fn pool() -> PortPool {
    PortPool::new(30000..30000 + 2 * TASKS as u16).unwrap()
}

fn request(i: usize) -> AdmissionRequest<'static> {
    const USERS: [&str; 3] = ["alice", "bob", "carol"];
    AdmissionRequest::for_user(USERS[i % USERS.len()]).in_group(GroupId::from_raw(i as u64 % 4))
}

fn assert_all_released(admission: &AdmissionController, ports: &PortPool) {
    let usage = admission.snapshot();
    assert_eq!(usage.active, 0, "{usage}");
    assert!(usage.users.is_empty(), "{usage:#}");
    assert!(usage.groups.is_empty(), "{usage}");
    assert_eq!(ports.in_use(), 0);
    assert_eq!(ports.available(), ports.capacity());
}

/// Spawns tasks that take a permit and a port pair, report that they hold them, and wait
/// forever. Returns once all of them hold their resources.
async fn spawn_holders(
    admission: &AdmissionController,
    ports: &PortPool,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::channel(TASKS);
    let handles = (0..TASKS)
        .map(|i| {
            let (admission, ports, tx) = (admission.clone(), ports.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = admission.try_admit(&request(i)).unwrap();
                let _pair = ports.acquire().unwrap();
                tx.send(()).await.unwrap();
                pending::<()>().await;
            })
        })
        .collect();
    for _ in 0..TASKS {
        rx.recv().await.unwrap();
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_tasks_release_everything() {
    let (admission, ports) = (controller(), pool());
    let handles = spawn_holders(&admission, &ports).await;
    assert_eq!(admission.active(), TASKS);
    assert_eq!(ports.in_use(), TASKS);
    assert_eq!(admission.snapshot().users.len(), 3);
    // Everything is taken: one more is refused.
    assert!(admission.try_admit(&AdmissionRequest::new()).is_err());
    assert!(ports.acquire().is_err());
    for handle in &handles {
        handle.abort();
    }
    for handle in handles {
        // The task's future is dropped before its handle reports the cancellation.
        assert!(handle.await.unwrap_err().is_cancelled());
    }
    assert_all_released(&admission, &ports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_tasks_release_everything() {
    let (admission, ports) = (controller(), pool());
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let (admission, ports) = (admission.clone(), ports.clone());
            tokio::spawn(async move {
                let _permit = admission.try_admit(&request(i)).unwrap();
                let _pair = ports.acquire().unwrap();
                tokio::task::yield_now().await;
                panic!("session task {i} failed");
            })
        })
        .collect();
    for handle in handles {
        assert!(handle.await.unwrap_err().is_panic());
    }
    assert_all_released(&admission, &ports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_setup_releases_everything() {
    let (admission, ports) = (controller(), pool());
    let held = AtomicBool::new(false);
    let setup = async {
        let _permit = admission.try_admit(&request(0)).unwrap();
        let _pair = ports.acquire().unwrap();
        held.store(true, Ordering::SeqCst);
        // The answer never comes.
        pending::<()>().await;
    };
    let outcome = tokio::time::timeout(Duration::from_millis(5), setup).await;
    assert!(outcome.is_err(), "the setup timed out");
    assert!(held.load(Ordering::SeqCst), "the setup held its resources");
    assert_all_released(&admission, &ports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_select_branch_releases_everything() {
    let (admission, ports) = (controller(), pool());
    let held = AtomicBool::new(false);
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    cancel_tx.send(()).unwrap();
    tokio::select! {
        // `biased`: the session branch is polled first, takes its resources and waits; then
        // the already-sent cancellation wins and the session future is dropped.
        biased;
        () = async {
            let _permit = admission.try_admit(&request(1)).unwrap();
            let _pair = ports.acquire().unwrap();
            held.store(true, Ordering::SeqCst);
            pending::<()>().await;
        } => unreachable!(),
        _ = cancel_rx => {}
    }
    assert!(held.load(Ordering::SeqCst));
    assert_all_released(&admission, &ports);
}

#[test]
fn dropping_the_runtime_releases_everything() {
    let (admission, ports) = (controller(), pool());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let handles = runtime.block_on(spawn_holders(&admission, &ports));
    assert_eq!(admission.active(), TASKS);
    assert_eq!(ports.in_use(), TASKS);
    drop(handles);
    // Dropping the runtime drops every task it still holds, and waits for its workers.
    drop(runtime);
    assert_all_released(&admission, &ports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_join_set_releases_everything() {
    let (admission, ports) = (controller(), pool());
    let (tx, mut rx) = mpsc::channel(TASKS);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let (admission, ports, tx) = (admission.clone(), ports.clone(), tx.clone());
        set.spawn(async move {
            let _permit = admission.try_admit(&request(i)).unwrap();
            let _pair = ports.acquire().unwrap();
            tx.send(()).await.unwrap();
            pending::<()>().await;
        });
    }
    for _ in 0..TASKS {
        rx.recv().await.unwrap();
    }
    set.abort_all();
    while let Some(result) = set.join_next().await {
        assert!(result.unwrap_err().is_cancelled());
    }
    assert_all_released(&admission, &ports);
}
