//! # 12 — call engine integration
//!
//! A small contact-centre engine built on session-core's primitives. The library answers,
//! rejects, defers and transfers; every business rule lives here, in the example:
//!
//! 1. routing — a table maps the Request-URI user to an agent (`anna`, `ben`) or to the
//!    `sales` queue; anything else gets 404 Not Found;
//! 2. busy agents — a call for an agent who is on a call gets 486 Busy Here;
//! 3. the queue — a `sales` call with every agent busy is deferred (180 Ringing) and waits;
//!    when an agent's call ends, the engine accepts the first waiting call for that agent;
//! 4. transfer — a supervisor moves a customer from one agent to another with a blind
//!    transfer (REFER): the customer calls the other agent, and the same routing rules apply,
//!    so a transfer to a busy agent fails with 486 and the call stays up;
//! 5. cleanup — every call ends and both managers hold nothing.
//!
//! The agents are seats of the engine (the engine's manager answers for them); the customers
//! are calls from a second manager.
//!
//! Run: `cargo run -p examples2 --example 12_call_engine_integration`. Exits non-zero if a
//! check fails.

use examples2::{check, loopback, released, section, within};
use session_core::{
    CallDecision, CallHandler, CallSession, CallState, CallStats, Identity, IncomingCall,
    SessionError, SessionId, SessionManager, StatusCode, TerminationReason,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

/// Where a dialled user goes.
#[derive(Debug, Clone, Copy)]
enum Route {
    Agent(&'static str),
    Queue,
}

/// What the engine decided, in the order it decided it: the engine's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    NoRoute(String),
    Connected(&'static str),
    Busy(&'static str),
    Queued(usize),
    FromQueue(&'static str),
    Free(&'static str),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute(user) => write!(f, "no route for '{user}': 404"),
            Self::Connected(agent) => write!(f, "connected to {agent}"),
            Self::Busy(agent) => write!(f, "{agent} is busy: 486"),
            Self::Queued(position) => write!(f, "queued at position {position}: 180 Ringing"),
            Self::FromQueue(agent) => write!(f, "first in the queue answered for {agent}"),
            Self::Free(agent) => write!(f, "{agent} is free"),
        }
    }
}

/// Who is on which call, and who waits.
struct Desk {
    agents: BTreeMap<&'static str, Option<CallSession>>,
    queue: VecDeque<CallSession>,
}

impl Desk {
    fn agent_on(&self, call: SessionId) -> Option<&'static str> {
        self.agents
            .iter()
            .find(|(_, on)| on.as_ref().is_some_and(|c| c.id() == call))
            .map(|(name, _)| *name)
    }

    fn free_agent(&self) -> Option<&'static str> {
        self.agents
            .iter()
            .find(|(_, on)| on.is_none())
            .map(|(name, _)| *name)
    }
}

/// The engine: a routing table, the desk, and a journal of its decisions.
struct Engine {
    routes: HashMap<&'static str, Route>,
    desk: Mutex<Desk>,
    journal: mpsc::UnboundedSender<Note>,
}

impl Engine {
    fn new(journal: mpsc::UnboundedSender<Note>) -> Self {
        Self {
            routes: HashMap::from([
                ("anna", Route::Agent("anna")),
                ("ben", Route::Agent("ben")),
                ("sales", Route::Queue),
            ]),
            desk: Mutex::new(Desk {
                agents: BTreeMap::from([("anna", None), ("ben", None)]),
                queue: VecDeque::new(),
            }),
            journal,
        }
    }

    fn desk(&self) -> MutexGuard<'_, Desk> {
        // Nothing panics while holding the lock, so it cannot be poisoned; recover anyway.
        self.desk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, note: Note) {
        let _ = self.journal.send(note);
    }

    /// The call `agent` is on.
    fn call_of(&self, agent: &str) -> Option<CallSession> {
        self.desk().agents.get(agent).cloned().flatten()
    }

    /// The supervisor's action: move `agent`'s customer to `target` by blind transfer.
    async fn transfer(&self, agent: &str, target: &str) -> Result<(), SessionError> {
        let call = self.call_of(agent).ok_or(SessionError::NoSuchSession)?;
        call.transfer(target).await
    }
}

impl CallHandler for Engine {
    fn on_incoming_call(&self, call: &IncomingCall) -> CallDecision {
        let user = call.request_uri().user().unwrap_or_default();
        let mut desk = self.desk();
        match self.routes.get(user) {
            None => {
                self.note(Note::NoRoute(user.to_owned()));
                CallDecision::Reject(StatusCode::NOT_FOUND)
            }
            Some(Route::Agent(agent)) => match desk.agents.get_mut(agent) {
                Some(seat @ None) => {
                    *seat = Some(call.session.clone());
                    self.note(Note::Connected(agent));
                    CallDecision::accept()
                }
                _ => {
                    self.note(Note::Busy(agent));
                    CallDecision::Reject(StatusCode::BUSY_HERE)
                }
            },
            Some(Route::Queue) => match desk.free_agent() {
                Some(agent) => {
                    desk.agents.insert(agent, Some(call.session.clone()));
                    self.note(Note::Connected(agent));
                    CallDecision::accept()
                }
                None => {
                    desk.queue.push_back(call.session.clone());
                    self.note(Note::Queued(desk.queue.len()));
                    CallDecision::Defer
                }
            },
        }
    }

    fn on_call_ended(&self, call: &CallSession, _reason: TerminationReason, _stats: &CallStats) {
        let mut desk = self.desk();
        // A waiting caller who gave up leaves the queue.
        desk.queue.retain(|waiting| waiting.id() != call.id());
        let Some(agent) = desk.agent_on(call.id()) else {
            return;
        };
        self.note(Note::Free(agent));
        let next = desk.queue.pop_front();
        desk.agents.insert(agent, next.clone());
        if let Some(next) = next {
            self.note(Note::FromQueue(agent));
            // Handler methods must not wait: the answer goes out from a task of its own.
            tokio::spawn(async move {
                if let Err(error) = next.accept().await {
                    eprintln!("       the queued call could not be answered: {error}");
                }
            });
        }
    }
}

/// The engine's next decision.
async fn next_note(journal: &mut mpsc::UnboundedReceiver<Note>) -> Result<Note, BoxError> {
    let note = within("the engine's journal", journal.recv())
        .await
        .ok_or("the engine is gone")?;
    println!("       engine: {note}");
    Ok(note)
}

/// Dials `user` at the engine.
async fn dial(
    customers: &SessionManager,
    engine: &SessionManager,
    user: &str,
) -> Result<CallSession, BoxError> {
    println!("       customer dials {user}");
    Ok(customers
        .call(&format!("sip:{user}@{}", engine.local_addr()))
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (journal, mut notes) = mpsc::unbounded_channel();
    let engine = Arc::new(Engine::new(journal));
    let pbx = loopback(44_000..=44_099)
        .shared_handler(engine.clone())
        .start()
        .await?;
    let customers = loopback(44_100..=44_199)
        .identity(Identity {
            user: "customer".to_owned(),
            display_name: None,
            domain: None,
        })
        .start()
        .await?;
    let agent_uri = |agent: &str| format!("sip:{agent}@{}", pbx.local_addr());

    section("1. routing by Request-URI user");
    let first = dial(&customers, &pbx, "anna").await?;
    within("anna's answer", first.answered()).await?;
    check(
        next_note(&mut notes).await? == Note::Connected("anna"),
        "anna is routed to the agent anna and answered",
    );
    let lost = dial(&customers, &pbx, "nobody").await?;
    let refused = within("the answer for nobody", lost.answered()).await;
    check(
        next_note(&mut notes).await? == Note::NoRoute("nobody".into()),
        "'nobody' is not in the routing table",
    );
    check(
        matches!(&refused, Err(e) if e.status() == Some(StatusCode::NOT_FOUND)),
        "the customer sees 404 Not Found",
    );

    section("2. a busy agent gets 486");
    let second = dial(&customers, &pbx, "anna").await?;
    let refused = within("the answer for anna", second.answered()).await;
    check(
        next_note(&mut notes).await? == Note::Busy("anna"),
        "anna is on a call",
    );
    check(
        matches!(&refused, Err(e) if e.status() == Some(StatusCode::BUSY_HERE)),
        "the customer sees 486 Busy Here",
    );

    section("3. the sales queue: defer, then accept when an agent frees");
    let third = dial(&customers, &pbx, "sales").await?;
    within("the sales answer", third.answered()).await?;
    check(
        next_note(&mut notes).await? == Note::Connected("ben"),
        "sales goes to the free agent, ben",
    );
    let waiting = dial(&customers, &pbx, "sales").await?;
    within("ringing", waiting.wait_for(|s| s == CallState::Ringing)).await;
    check(
        next_note(&mut notes).await? == Note::Queued(1),
        "with anna and ben busy, the next sales call waits in the queue",
    );
    check(
        waiting.last_response().map(|(s, _)| s) == Some(StatusCode::RINGING),
        "the waiting customer hears ringing (180) meanwhile",
    );
    println!("       ben's customer hangs up");
    within("hang-up", third.hangup()).await?;
    check(
        next_note(&mut notes).await? == Note::Free("ben"),
        "ben's call ended",
    );
    check(
        next_note(&mut notes).await? == Note::FromQueue("ben"),
        "the engine gives ben the waiting call",
    );
    within("the queued answer", waiting.answered()).await?;
    check(
        waiting.state() == CallState::Active,
        "the customer who waited is now talking to ben",
    );

    section("4. transfer to another agent");
    println!("       the supervisor moves anna's customer to ben, who is busy");
    let failed = within("the transfer", engine.transfer("anna", &agent_uri("ben"))).await;
    check(
        next_note(&mut notes).await? == Note::Busy("ben"),
        "the customer followed the REFER and called ben: the engine said busy",
    );
    check(
        matches!(&failed, Err(SessionError::TransferFailed { status, reason })
            if *status == StatusCode::BUSY_HERE && reason == "Busy Here"),
        format!(
            "the transfer fails with the target's status and reason phrase: {}",
            failed
                .as_ref()
                .map_or_else(ToString::to_string, |()| "ok?!".into())
        ),
    );
    check(
        first.state() == CallState::Active && engine.call_of("anna").is_some(),
        "and the customer is still with anna",
    );
    println!("       ben's customer hangs up");
    within("hang-up", waiting.hangup()).await?;
    check(
        next_note(&mut notes).await? == Note::Free("ben"),
        "ben is free, nobody waits",
    );
    println!("       the supervisor tries again");
    within("the transfer", engine.transfer("anna", &agent_uri("ben"))).await?;
    check(
        next_note(&mut notes).await? == Note::Connected("ben"),
        "the customer called ben and ben answered",
    );
    check(
        next_note(&mut notes).await? == Note::Free("anna"),
        "anna's leg ended with the transfer: anna is free",
    );
    check(
        within("the old leg", first.ended()).await == CallState::Terminated
            && first.transferred_to().is_some(),
        "the customer's first call ended and points to its new call",
    );

    section("5. cleanup");
    let last = engine.call_of("ben").ok_or("ben has no call")?;
    within("hang-up", last.hangup()).await?;
    check(
        next_note(&mut notes).await? == Note::Free("ben"),
        "ben hangs up the transferred call",
    );
    check(
        engine.desk().agents.values().all(Option::is_none) && engine.desk().queue.is_empty(),
        "every agent is free, the queue is empty",
    );
    check(
        released(&pbx).await && released(&customers).await,
        "both managers hold nothing: no call, no admission slot, no RTP port",
    );
    check(
        notes.try_recv().is_err(),
        "and the journal has nothing more",
    );
    pbx.shutdown().await;
    customers.shutdown().await;
    Ok(())
}
