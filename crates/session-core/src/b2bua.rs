//! A back-to-back user agent on top of the call primitives: an incoming call (the A leg) is
//! answered by placing an outgoing one (the B leg) and joining the two in a bridge.
//!
//! [`connect`] carries one call through: the B leg's 180 rings the A leg, its 183 with SDP
//! starts early media on both legs through our bridge, its answer answers the A leg, its final
//! failure is given to the A leg with the same status (486 stays 486; a B leg that never
//! answers becomes 408, one that cannot be reached 480), a CANCEL (the A leg ending before the
//! answer) cancels the B leg, and once both are up a BYE from either side ends the other. Media
//! always goes through our bridge, so each side sees only our SDP. Which headers cross from A
//! to B is the engine's choice ([`B2buaOptions::copy_headers`]); where the B leg goes is too.
//!
//! ```no_run
//! # async fn demo() -> session_core::Result<()> {
//! use session_core::{b2bua, CallDecision, IncomingCalls, SessionManager};
//!
//! let (handler, mut incoming) = IncomingCalls::channel(64);
//! let handler = handler.deferring_with(CallDecision::DeferSilently);
//! let manager = SessionManager::builder().handler(handler).start().await?;
//! while let Some(call) = incoming.next().await {
//!     let manager = manager.clone();
//!     tokio::spawn(async move {
//!         let options = b2bua::B2buaOptions::default();
//!         let _ = b2bua::connect(&manager, &call, "sip:bob@192.0.2.7", options).await;
//!     });
//! }
//! # Ok(()) }
//! ```

use crate::call::CallSession;
use crate::error::{Result, SessionError};
use crate::handler::IncomingCall;
use crate::manager::{CallOptions, SessionManager};
use session_bridge::{BridgeId, TechnologyChoice};
use session_types::{CallState, FailureReason, StatusCode};

/// Whose address the B leg's `From` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BLegIdentity {
    /// The caller's: the A leg's `From` URI (caller-ID passthrough, what a PBX does by
    /// default). The default.
    #[default]
    Caller,
    /// The manager's own identity (or [`CallOptions::from`] when set there).
    Ours,
}

/// How [`connect`] places the B leg.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct B2buaOptions {
    /// Header names copied from the A leg's INVITE into the B leg's (e.g. `Subject`,
    /// `X-Account`); nothing crosses by default.
    pub copy_headers: Vec<String>,
    /// Whose address the B leg presents; an explicit [`CallOptions::from`] in `call` wins.
    pub identity: BLegIdentity,
    /// Everything else about the B leg (identity, transport, proxy, more headers).
    pub call: CallOptions,
}

impl B2buaOptions {
    /// The B leg presents `identity`.
    pub fn identity(mut self, identity: BLegIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// Copies header `name` from the A leg's INVITE to the B leg's.
    pub fn copy_header(mut self, name: &str) -> Self {
        self.copy_headers.push(name.to_owned());
        self
    }
}

/// How a B2BUA call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum B2buaOutcome {
    /// Both legs were connected, then one side hung up and the other was ended.
    Completed,
    /// The B leg refused, failed or was never reached; the A leg got this final status.
    Refused(StatusCode),
    /// The caller gave up (CANCEL, or the A leg ended) before the answer; the B leg was
    /// cancelled.
    Abandoned,
}

/// Carries the deferred incoming call `a` through to `target` and back; returns when both
/// legs have ended. The handler must have deferred the call without answering it
/// ([`crate::CallDecision::DeferSilently`] or [`crate::CallDecision::Defer`]).
pub async fn connect(
    manager: &SessionManager,
    a: &IncomingCall,
    target: &str,
    options: B2buaOptions,
) -> Result<B2buaOutcome> {
    let mut call = options.call;
    for name in &options.copy_headers {
        if let Some(value) = a.header(name) {
            call.headers.push((name.clone(), value.to_owned()));
        }
    }
    let caller = a.session.remote_uri();
    // A caller address we could not write back (not a SIP URI) leaves ours in place.
    if call.from.is_none()
        && options.identity == BLegIdentity::Caller
        && session_sip::Uri::parse(caller).is_ok()
    {
        call.from = Some(caller.to_owned());
    }
    let a = &a.session;
    let b = match manager.call_with(target, call).await {
        Ok(b) => b,
        Err(error) => {
            // Not even sent (a bad target, no resources): the caller hears why.
            let status = error
                .status()
                .unwrap_or(StatusCode::TEMPORARILY_UNAVAILABLE);
            let _ = a.reject(status).await;
            return Ok(B2buaOutcome::Refused(status));
        }
    };
    // The B leg depends on the A leg: the engine sees the link (`dependents_of`,
    // `DependencyEnded`); ending the other leg stays this function's job.
    let _ = manager.add_dependency(&b, a, crate::Cascade::Notify);
    let mut bridge = None;
    let outcome = until_answered(manager, a, &b, &mut bridge).await;
    let result = match outcome {
        Ok(None) => {
            // Both legs up: whoever hangs up first ends the other.
            let mut a_state = a.watch_state();
            let mut b_state = b.watch_state();
            let hanging_up = |s: &CallState| s.is_final() || *s == CallState::Terminating;
            tokio::select! {
                () = reaches(&mut a_state, hanging_up) => {
                    let _ = b.hangup().await;
                }
                () = reaches(&mut b_state, hanging_up) => {
                    let _ = a.hangup().await;
                }
            }
            Ok(B2buaOutcome::Completed)
        }
        Ok(Some(outcome)) => Ok(outcome),
        Err(error) => {
            let _ = b.hangup().await;
            let _ = a.reject(StatusCode::SERVER_INTERNAL_ERROR).await;
            Err(error)
        }
    };
    a.ended().await;
    b.ended().await;
    if let Some(bridge) = bridge {
        let _ = manager.destroy_bridge(bridge).await;
    }
    result
}

/// The call until both legs are answered (`None`) or it is over (`Some`).
async fn until_answered(
    manager: &SessionManager,
    a: &CallSession,
    b: &CallSession,
    bridge: &mut Option<BridgeId>,
) -> Result<Option<B2buaOutcome>> {
    let mut a_state = a.watch_state();
    let mut b_state = b.watch_state();
    let mut rang = false;
    loop {
        let state = *b_state.borrow_and_update();
        match state {
            CallState::Ringing => {
                let early_media = b
                    .last_response()
                    .is_some_and(|(status, _)| status == StatusCode::SESSION_PROGRESS);
                if early_media && bridge.is_none() && b.codec().is_some() {
                    // 183 with SDP: early media flows caller ⇄ callee through our bridge.
                    a.early_media().await?;
                    *bridge = Some(join(manager, a, b).await?);
                } else if !rang && bridge.is_none() {
                    a.ring().await?;
                }
                rang = true;
            }
            state if state.is_established() => {
                a.accept().await?;
                if bridge.is_none() {
                    *bridge = Some(join(manager, a, b).await?);
                }
                return Ok(None);
            }
            CallState::Failed(reason) => {
                let status = match reason {
                    FailureReason::Rejected(status) => status,
                    FailureReason::Timeout => StatusCode::REQUEST_TIMEOUT,
                    FailureReason::Transport => StatusCode::TEMPORARILY_UNAVAILABLE,
                    other => other.status().unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
                };
                let _ = a.reject(status).await;
                return Ok(Some(B2buaOutcome::Refused(status)));
            }
            state if state.is_final() => {
                // Cancelled or ended on our side: the caller is told it is unavailable.
                let status = StatusCode::TEMPORARILY_UNAVAILABLE;
                let _ = a.reject(status).await;
                return Ok(Some(B2buaOutcome::Refused(status)));
            }
            _ => {}
        }
        tokio::select! {
            changed = b_state.changed() => {
                if changed.is_err() {
                    return Err(SessionError::NoSuchSession);
                }
            }
            () = reaches(&mut a_state, |s: &CallState| s.is_final()) => {
                // The caller gave up before the answer (CANCEL): the B leg goes too.
                let _ = b.cancel().await;
                return Ok(Some(B2buaOutcome::Abandoned));
            }
        }
    }
}

/// Waits until the watched state satisfies `done` (or the call is gone).
async fn reaches(
    state: &mut tokio::sync::watch::Receiver<CallState>,
    done: impl Fn(&CallState) -> bool,
) {
    // The guard the wait returns is dropped here, before the caller awaits anything else.
    let _ = state.wait_for(done).await.map(|state| *state);
}

/// Creates a bridge and joins both legs.
async fn join(manager: &SessionManager, a: &CallSession, b: &CallSession) -> Result<BridgeId> {
    let bridge = manager.create_bridge(TechnologyChoice::Auto)?;
    a.join_bridge(bridge).await?;
    b.join_bridge(bridge).await?;
    Ok(bridge)
}
