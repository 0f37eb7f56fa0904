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
//! A transfer asked by one of the legs (REFER) can be carried out here without sending a REFER
//! to anyone ([`transfer_locally`]): an attended transfer whose consultation call also runs
//! through us joins the two remote parties in one bridge and ends the transferor's two legs; a
//! blind one places a new leg to the target and puts it in the transferor's place.
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
use crate::handler::{IncomingCall, IncomingTransfer};
use crate::manager::{CallOptions, SessionManager};
use parking_lot::Mutex;
use session_bridge::{BridgeId, TechnologyChoice};
use session_types::{CallState, FailureReason, SessionId, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
    /// A local transfer ([`transfer_locally`]) handed the remaining leg to another B2BUA call,
    /// which carries it on; the transferor's leg was ended.
    Transferred,
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
    // The legs to see ended before the bridge goes: a local transfer may have changed them.
    let mut last_legs = (a.clone(), b.clone());
    let result = match (outcome, bridge) {
        (Ok(None), Some(joined)) => {
            let pair = manager.b2bua_pairs().register(a, &b, joined);
            match connected(manager.b2bua_pairs(), &pair).await {
                Some(legs) => {
                    last_legs = legs;
                    Ok(B2buaOutcome::Completed)
                }
                // Both legs went elsewhere; the bridge is `transfer_locally`'s to destroy.
                None => return Ok(B2buaOutcome::Transferred),
            }
        }
        (Ok(Some(outcome)), _) => Ok(outcome),
        (result, _) => {
            // An error, or answered without a bridge (which `until_answered` never returns).
            let _ = b.hangup().await;
            let _ = a.reject(StatusCode::SERVER_INTERNAL_ERROR).await;
            Err(result.err().unwrap_or(SessionError::NoSuchSession))
        }
    };
    last_legs.0.ended().await;
    last_legs.1.ended().await;
    if let Some(bridge) = bridge {
        let _ = manager.destroy_bridge(bridge).await;
    }
    result
}

/// Both legs up: whoever hangs up first ends the other — whichever two legs the pair holds by
/// then. Returns those two, or `None` when a local transfer handed them to other pairs.
async fn connected(pairs: &Pairs, pair: &PairGuard) -> Option<(CallSession, CallSession)> {
    let hanging_up = |s: &CallState| s.is_final() || *s == CallState::Terminating;
    let mut legs = pair.pair.legs.subscribe();
    loop {
        let (x, y) = legs.borrow_and_update().clone()?;
        let mut x_state = x.watch_state();
        let mut y_state = y.watch_state();
        let ended = tokio::select! {
            () = reaches(&mut x_state, hanging_up) => x.id(),
            () = reaches(&mut y_state, hanging_up) => y.id(),
            changed = legs.changed() => {
                if changed.is_err() {
                    return None;
                }
                continue;
            }
        };
        // Claimed under the registry's lock, so a transfer cannot take the partner meanwhile.
        if let Some(partner) = pairs.end(&pair.pair, ended) {
            let _ = partner.hangup().await;
            return Some((x, y));
        }
    }
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
                if !rang && b.has_rung() {
                    let _ = a.ring().await;
                }
                a.accept().await?;
                if bridge.is_none() {
                    *bridge = Some(join(manager, a, b).await?);
                }
                return Ok(None);
            }
            CallState::Failed(reason) => {
                // A 180 and a failure that came together: the watch showed only the failure,
                // but the caller still hears the ringing first (provisionals are passed back).
                if !rang && b.has_rung() {
                    let _ = a.ring().await;
                }
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

// ---- local transfers ----

/// How long a transfer waits for its leg's call to be paired (see `Pairs::partner_of_within`).
const PAIRING_PATIENCE: Duration = Duration::from_secs(1);

/// How long the transferor has to hang up its call after the final NOTIFY before we do.
const TRANSFEROR_GRACE: Duration = Duration::from_secs(2);

/// Carries out a transfer asked by a leg of a B2BUA call ([`connect`]) without sending a REFER
/// to anyone (the REFER was deferred: [`crate::QueueingHandler::queueing_transfers`]):
///
/// - **attended**, when the `Replaces` names our leg of another B2BUA call (the transferor's
///   consultation call also runs through us): the transferor's partner in this call moves
///   into the other call's bridge without a gap, taking the place of the replaced leg; both
///   of the transferor's legs end (the replaced one with BYE from us, RFC 3891 §3);
/// - **blind** (or a `Replaces` naming a dialog elsewhere): a new leg is placed to the
///   `Refer-To` target (carrying the `Replaces` and `Referred-By`) for the transferor's
///   partner; once it answers it takes the transferor's place in the bridge.
///
/// The transferor hears the outcome in the final NOTIFY (200, or the failure's status, when
/// its call stays as it was). Returns once the transfer has succeeded or failed.
pub async fn transfer_locally(
    manager: &SessionManager,
    transfer: &IncomingTransfer,
    options: B2buaOptions,
) -> Result<()> {
    let transferor = &transfer.session;
    let pairs = manager.b2bua_pairs();
    if let Some(replaced) = &transfer.request.replaced_call {
        // Both calls may have been answered a moment ago.
        for leg in [transferor, replaced] {
            let _ = pairs.partner_of_within(leg, PAIRING_PATIENCE).await;
        }
        if let Some(swap) = pairs.swap(transferor, replaced) {
            return join_swapped(manager, transferor, replaced, swap).await;
        }
    }
    let Some((pair, partner)) = pairs.partner_of_within(transferor, PAIRING_PATIENCE).await else {
        // Not a leg of a connected B2BUA call: nothing here to put in its place.
        let _ = transferor.finish_transfer(StatusCode::FORBIDDEN).await;
        return Err(SessionError::InvalidState {
            operation: "transfer a call that is not a B2BUA leg",
            state: transferor.state(),
        });
    };
    let mut call = options.call;
    if call.from.is_none() && options.identity == BLegIdentity::Caller {
        call.from = Some(partner.remote_uri().to_owned());
    }
    let referrer = transfer.request.referred_by.clone();
    let replaces = transfer.request.replaces.clone();
    call.headers
        .extend(referrer.map(|value| ("Referred-By".to_owned(), value)));
    call.headers
        .extend(replaces.map(|value| ("Replaces".to_owned(), value)));
    let target = transfer.request.target.as_str();
    let new_leg = match manager.call_with(target, call).await {
        Ok(leg) => leg,
        Err(error) => {
            let status = error.status().unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let _ = transferor.finish_transfer(status).await;
            return Err(error);
        }
    };
    let state = new_leg
        .wait_for(|state| state.is_established() || state.is_final())
        .await;
    if !state.is_established() {
        let status = match state {
            CallState::Failed(FailureReason::Rejected(status)) => status,
            CallState::Failed(FailureReason::Timeout) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::TEMPORARILY_UNAVAILABLE,
        };
        let _ = transferor.finish_transfer(status).await;
        return Err(SessionError::TransferFailed {
            status,
            reason: status.reason_phrase().to_owned(),
        });
    }
    if !manager.b2bua_pairs().replace(&pair, transferor, &new_leg) {
        // The call ended while the target answered: the new leg has nobody to talk to.
        let _ = new_leg.hangup().await;
        let status = StatusCode::REQUEST_TERMINATED;
        let _ = transferor.finish_transfer(status).await;
        return Err(SessionError::TransferFailed {
            status,
            reason: status.reason_phrase().to_owned(),
        });
    }
    let _ = transferor.leave_bridge().await;
    if let Err(error) = new_leg.join_bridge(pair.bridge).await {
        // The partner hung up meanwhile; `connect` ends the new leg with it.
        tracing::debug!(session_id = %new_leg.id(), %error, "transferred leg not bridged");
    }
    let _ = transferor.finish_transfer(StatusCode::OK).await;
    end_transferor_leg(transferor).await;
    Ok(())
}

/// The media half of an attended local transfer: the replaced leg leaves, the transferor's
/// partner moves in, the transferor's bridge goes, and both transferor legs end.
async fn join_swapped(
    manager: &SessionManager,
    transferor: &CallSession,
    replaced: &CallSession,
    swap: Swap,
) -> Result<()> {
    let _ = replaced.leave_bridge().await;
    // A move: no gap and one SSRC for the moved party (session-bridge's make-before-break).
    let moved = swap.moved.join_bridge(swap.into).await;
    let _ = manager.destroy_bridge(swap.from).await;
    let _ = transferor.finish_transfer(StatusCode::OK).await;
    // RFC 3891 §3: the replaced dialog is ended by its target (us) with BYE.
    let _ = replaced.hangup().await;
    end_transferor_leg(transferor).await;
    // A party that hung up meanwhile was already paired with its new partner, whose
    // `connect` ends it.
    if let Err(error) = moved {
        tracing::debug!(session_id = %swap.moved.id(), %error, "transferred party not moved");
    }
    Ok(())
}

/// After a successful transfer the transferor ends its call (RFC 5589 §6); one that does not
/// within [`TRANSFEROR_GRACE`] is sent BYE.
async fn end_transferor_leg(transferor: &CallSession) {
    let ended = tokio::time::timeout(TRANSFEROR_GRACE, transferor.ended()).await;
    if ended.is_err() {
        let _ = transferor.hangup().await;
        transferor.ended().await;
    }
}

/// The connected B2BUA calls of one manager, by leg: what lets a local transfer re-pair legs
/// while their [`connect`] calls run.
#[derive(Default)]
pub(crate) struct Pairs {
    by_leg: Mutex<HashMap<SessionId, Arc<Pair>>>,
    /// Woken whenever a pair is registered.
    registered: tokio::sync::Notify,
}

/// One connected B2BUA call.
struct Pair {
    /// The bridge the two legs are in.
    bridge: BridgeId,
    /// The two legs; `None` once they were handed elsewhere or the call ended. Changed only
    /// under [`Pairs::by_leg`]'s lock.
    legs: watch::Sender<Option<(CallSession, CallSession)>>,
}

/// A registered pair, unregistered when dropped (a `connect` that is dropped leaves nothing).
struct PairGuard {
    pairs: Arc<Pairs>,
    pair: Arc<Pair>,
}

/// What an attended local transfer changed.
struct Swap {
    /// The transferor's partner, now in the other call.
    moved: CallSession,
    /// The transferor's bridge, to destroy.
    from: BridgeId,
    /// The bridge the moved party joins.
    into: BridgeId,
}

impl Pairs {
    /// Registers `a` and `b`, joined in `bridge`, as one connected call.
    fn register(self: &Arc<Self>, a: &CallSession, b: &CallSession, bridge: BridgeId) -> PairGuard {
        let (legs, _) = watch::channel(Some((a.clone(), b.clone())));
        let pair = Arc::new(Pair { bridge, legs });
        let mut by_leg = self.by_leg.lock();
        by_leg.insert(a.id(), Arc::clone(&pair));
        by_leg.insert(b.id(), Arc::clone(&pair));
        self.registered.notify_waiters();
        PairGuard {
            pairs: Arc::clone(self),
            pair,
        }
    }

    /// Ends `pair` because its leg `ended` hangs up: the partner to hang up, or `None` when
    /// the pair no longer holds `ended` (a transfer changed its legs first).
    fn end(&self, pair: &Arc<Pair>, ended: SessionId) -> Option<CallSession> {
        let mut by_leg = self.by_leg.lock();
        let legs = pair.legs.borrow().clone()?;
        let partner = partner_in(&legs, ended)?;
        forget(&mut by_leg, pair, &legs);
        pair.legs.send_replace(None);
        Some(partner)
    }

    /// [`Pairs::partner_of`], waiting up to `patience` for `leg`'s call to be paired: a
    /// REFER can arrive the moment a leg is answered, before `connect` has paired it.
    async fn partner_of_within(
        &self,
        leg: &CallSession,
        patience: Duration,
    ) -> Option<(Arc<Pair>, CallSession)> {
        let waited = tokio::time::timeout(patience, async {
            loop {
                let registered = self.registered.notified();
                if let Some(found) = self.partner_of(leg) {
                    return found;
                }
                registered.await;
            }
        });
        waited.await.ok()
    }

    /// The pair `leg` is in and its partner there.
    fn partner_of(&self, leg: &CallSession) -> Option<(Arc<Pair>, CallSession)> {
        let by_leg = self.by_leg.lock();
        let pair = by_leg.get(&leg.id())?;
        let partner = partner_in(pair.legs.borrow().as_ref()?, leg.id())?;
        Some((Arc::clone(pair), partner))
    }

    /// Puts `new` in `old`'s place in `pair`; false when `old` is no longer there.
    fn replace(&self, pair: &Arc<Pair>, old: &CallSession, new: &CallSession) -> bool {
        let mut by_leg = self.by_leg.lock();
        let Some(legs) = pair.legs.borrow().clone() else {
            return false;
        };
        let Some(partner) = partner_in(&legs, old.id()) else {
            return false;
        };
        by_leg.remove(&old.id());
        by_leg.insert(new.id(), Arc::clone(pair));
        let legs = if legs.0.id() == old.id() {
            (new.clone(), partner)
        } else {
            (partner, new.clone())
        };
        pair.legs.send_replace(Some(legs));
        true
    }

    /// An attended local transfer: `transferor` and `replaced` are legs of two different
    /// pairs; the transferor's partner takes `replaced`'s place in the other pair, and the
    /// transferor's pair is dissolved. `None` (and nothing changed) otherwise.
    fn swap(&self, transferor: &CallSession, replaced: &CallSession) -> Option<Swap> {
        let mut by_leg = self.by_leg.lock();
        let from = Arc::clone(by_leg.get(&transferor.id())?);
        let into = Arc::clone(by_leg.get(&replaced.id())?);
        if Arc::ptr_eq(&from, &into) {
            return None;
        }
        let from_legs = from.legs.borrow().clone()?;
        let moved = partner_in(&from_legs, transferor.id())?;
        let into_legs = into.legs.borrow().clone()?;
        let stays = partner_in(&into_legs, replaced.id())?;
        forget(&mut by_leg, &from, &from_legs);
        by_leg.remove(&replaced.id());
        by_leg.insert(moved.id(), Arc::clone(&into));
        let legs = if into_legs.0.id() == replaced.id() {
            (moved.clone(), stays)
        } else {
            (stays, moved.clone())
        };
        into.legs.send_replace(Some(legs));
        from.legs.send_replace(None);
        Some(Swap {
            moved,
            from: from.bridge,
            into: into.bridge,
        })
    }

    /// How many B2BUA calls are connected (each holds two legs).
    pub(crate) fn connected(&self) -> usize {
        self.by_leg.lock().len() / 2
    }
}

impl Drop for PairGuard {
    fn drop(&mut self) {
        let mut by_leg = self.pairs.by_leg.lock();
        if let Some(legs) = self.pair.legs.borrow().clone() {
            forget(&mut by_leg, &self.pair, &legs);
        }
    }
}

/// The leg of `legs` that is not `leg`, if `leg` is one of them.
fn partner_in(legs: &(CallSession, CallSession), leg: SessionId) -> Option<CallSession> {
    if legs.0.id() == leg {
        Some(legs.1.clone())
    } else if legs.1.id() == leg {
        Some(legs.0.clone())
    } else {
        None
    }
}

/// Removes `legs`' entries where they still point to `pair`.
fn forget(
    by_leg: &mut HashMap<SessionId, Arc<Pair>>,
    pair: &Arc<Pair>,
    legs: &(CallSession, CallSession),
) {
    for leg in [legs.0.id(), legs.1.id()] {
        if by_leg.get(&leg).is_some_and(|p| Arc::ptr_eq(p, pair)) {
            by_leg.remove(&leg);
        }
    }
}
