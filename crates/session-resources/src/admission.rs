//! Admission control: limits on concurrent sessions (global, per user, per group) enforced with
//! RAII permits.
//!
//! [`AdmissionController::try_admit`] either takes every count the request needs — the global
//! slot, the user's and the group's — or takes none and returns
//! [`ResourceError::Exhausted`] naming the limit that refused it. The
//! [`AdmissionPermit`] it returns gives every count back when it is dropped, whichever way the
//! session ends: normal teardown, an error path, a task that is aborted or a future that is
//! cancelled while it holds the permit. Per-user and per-group entries disappear when their
//! count returns to zero, so the maps do not grow with every user ever seen.
//!
//! The global count is one atomic updated with compare-and-swap, so it never exceeds its limit
//! even for a moment; per-user and per-group counts live in sharded `parking_lot` maps whose
//! locks are held for one map operation and never across an `.await`.
//!
//! ```
//! use session_resources::{AdmissionController, AdmissionRequest, Limits};
//! use session_types::{GroupId, Priority};
//!
//! let sales = GroupId::from_raw(1);
//! let admission = AdmissionController::new(
//!     Limits::default().max_sessions(100).max_per_user(2).max_for_group(sales, 10),
//! );
//! let request = AdmissionRequest::for_user("alice").in_group(sales);
//! let first = admission.try_admit(&request)?;
//! let second = admission.try_admit(&request)?;
//! // Alice's third call is refused; the SIP layer answers 503 with Retry-After.
//! let refused = admission.try_admit(&request).unwrap_err();
//! assert_eq!(refused.limit(), Some(2));
//! assert_eq!(admission.active(), 2);
//! drop((first, second));
//! assert_eq!(admission.active(), 0);
//! assert_eq!(admission.snapshot().users.len(), 0);
//! # Ok::<(), session_resources::ResourceError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use session_types::{GroupId, Priority};

use crate::keyed::{Claim, KeyedCounts};
use crate::{Resource, ResourceError, Result};

/// The `Retry-After` suggested with a refusal unless [`Limits::retry_after`] says otherwise.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The limits an [`AdmissionController`] enforces. Every limit is off (unlimited) by default;
/// set the ones you want with the builder methods.
///
/// ```
/// use session_resources::Limits;
/// use session_types::GroupId;
/// use std::time::Duration;
///
/// let vip = GroupId::from_raw(9);
/// let limits = Limits::default()
///     .max_sessions(10_000)
///     .max_per_user(4)
///     .max_per_group(500)
///     .max_for_group(vip, 2_000)
///     .retry_after(Duration::from_secs(30));
/// assert_eq!(limits.group_limit(vip), Some(2_000));
/// assert_eq!(limits.group_limit(GroupId::from_raw(1)), Some(500));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    max_sessions: Option<usize>,
    max_per_user: Option<usize>,
    max_per_group: Option<usize>,
    group_overrides: HashMap<GroupId, usize>,
    retry_after: Duration,
    /// Global slots a request at each priority level may not use: the sum of the
    /// reservations made for levels above it ([`Limits::reserve_for`]).
    held_back: [usize; PRIORITY_LEVELS],
}

/// How many [`Priority`] levels there are.
const PRIORITY_LEVELS: usize = Priority::HIGHEST.level() as usize + 1;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: None,
            max_per_user: None,
            max_per_group: None,
            group_overrides: HashMap::new(),
            retry_after: DEFAULT_RETRY_AFTER,
            held_back: [0; PRIORITY_LEVELS],
        }
    }
}

impl Limits {
    /// At most `max` concurrent sessions in all.
    #[must_use]
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// At most `max` concurrent sessions per user (requests that name a user).
    #[must_use]
    pub fn max_per_user(mut self, max: usize) -> Self {
        self.max_per_user = Some(max);
        self
    }

    /// At most `max` concurrent sessions in any one group, unless
    /// [`max_for_group`](Self::max_for_group) sets that group's own limit.
    #[must_use]
    pub fn max_per_group(mut self, max: usize) -> Self {
        self.max_per_group = Some(max);
        self
    }

    /// At most `max` concurrent sessions in `group`, replacing the default of
    /// [`max_per_group`](Self::max_per_group) for it. Pass `usize::MAX` to exempt the group.
    #[must_use]
    pub fn max_for_group(mut self, group: GroupId, max: usize) -> Self {
        self.group_overrides.insert(group, max);
        self
    }

    /// Keeps `slots` of the global limit for sessions at or above `priority`: a request below
    /// it is refused once only those slots are left, so an emergency call is admitted when
    /// routine ones get 503. Reservations add up (`reserve_for(2, 10)` and
    /// `reserve_for(4, 2)`: routine requests leave 12 slots, level 2 and 3 leave 2).
    ///
    /// ```
    /// use session_resources::{AdmissionController, AdmissionRequest, Limits};
    /// use session_types::Priority;
    ///
    /// let urgent = Priority::new(3).unwrap();
    /// let admission = AdmissionController::new(Limits::default().max_sessions(3).reserve_for(urgent, 1));
    /// let routine = AdmissionRequest::new();
    /// let calls = [admission.try_admit(&routine)?, admission.try_admit(&routine)?];
    /// assert!(admission.try_admit(&routine).is_err(), "the last slot is kept");
    /// let emergency = admission.try_admit(&AdmissionRequest::new().at_priority(Priority::HIGHEST))?;
    /// assert_eq!(admission.active(), 3);
    /// # drop((calls, emergency));
    /// # Ok::<(), session_resources::ResourceError>(())
    /// ```
    #[must_use]
    pub fn reserve_for(mut self, priority: Priority, slots: usize) -> Self {
        for below in 0..usize::from(priority.level()) {
            self.held_back[below] = self.held_back[below].saturating_add(slots);
        }
        self
    }

    /// The global slots a request at `priority` may not use (kept for higher priorities).
    pub fn held_back_from(&self, priority: Priority) -> usize {
        self.held_back[usize::from(priority.level())]
    }

    /// The wait suggested to a refused caller (`Retry-After`); [`DEFAULT_RETRY_AFTER`] if unset.
    #[must_use]
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The global limit, if any.
    pub fn session_limit(&self) -> Option<usize> {
        self.max_sessions
    }

    /// The per-user limit, if any.
    pub fn user_limit(&self) -> Option<usize> {
        self.max_per_user
    }

    /// The limit that applies to `group`: its own, else the default per-group limit, if any.
    pub fn group_limit(&self, group: GroupId) -> Option<usize> {
        self.group_overrides
            .get(&group)
            .copied()
            .or(self.max_per_group)
    }

    /// The wait suggested to a refused caller.
    pub fn suggested_retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// What a session asks to be admitted as: optionally a user (counted against the per-user
/// limit) and a group (counted against that group's limit).
///
/// ```
/// use session_resources::AdmissionRequest;
/// use session_types::GroupId;
///
/// let anonymous = AdmissionRequest::new();
/// let alice = AdmissionRequest::for_user("alice").in_group(GroupId::from_raw(3));
/// assert_eq!(alice.user, Some("alice"));
/// assert_eq!(anonymous.group, None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionRequest<'a> {
    /// The user the session belongs to (for example the user part of the caller's URI, or an
    /// account id), counted against [`Limits::max_per_user`].
    pub user: Option<&'a str>,
    /// The group the session joins, counted against that group's limit.
    pub group: Option<GroupId>,
    /// How urgent the session is: slots kept for higher priorities are not its to take
    /// ([`Limits::reserve_for`]).
    pub priority: Priority,
}

impl<'a> AdmissionRequest<'a> {
    /// A request that names neither user nor group: only the global limit applies.
    pub const fn new() -> Self {
        Self {
            user: None,
            group: None,
            priority: Priority::ROUTINE,
        }
    }

    /// A request on behalf of `user`.
    pub const fn for_user(user: &'a str) -> Self {
        Self {
            user: Some(user),
            group: None,
            priority: Priority::ROUTINE,
        }
    }

    /// The same request on behalf of `user`.
    #[must_use]
    pub const fn with_user(mut self, user: &'a str) -> Self {
        self.user = Some(user);
        self
    }

    /// The same request, also counted in `group`.
    #[must_use]
    pub const fn in_group(mut self, group: GroupId) -> Self {
        self.group = Some(group);
        self
    }

    /// The same request at `priority`.
    #[must_use]
    pub const fn at_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// `usize::MAX` in [`Inner::max_sessions`] means "no limit" (and cannot be reached anyway).
const UNLIMITED: usize = usize::MAX;

struct Inner {
    active: AtomicUsize,
    max_sessions: AtomicUsize,
    peak: AtomicUsize,
    admitted: AtomicU64,
    refused_sessions: AtomicU64,
    refused_user: AtomicU64,
    refused_group: AtomicU64,
    users: KeyedCounts<Arc<str>>,
    groups: KeyedCounts<GroupId>,
    limits: Limits,
}

/// Enforces [`Limits`] and hands out [`AdmissionPermit`]s. Cheap to clone: clones share the
/// same counts.
#[derive(Clone)]
pub struct AdmissionController {
    inner: Arc<Inner>,
}

impl fmt::Debug for AdmissionController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionController")
            .field("active", &self.active())
            .field("max_sessions", &self.max_sessions())
            .finish_non_exhaustive()
    }
}

impl AdmissionController {
    /// A controller enforcing `limits`, with nothing admitted yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                active: AtomicUsize::new(0),
                max_sessions: AtomicUsize::new(limits.max_sessions.unwrap_or(UNLIMITED)),
                peak: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                refused_sessions: AtomicU64::new(0),
                refused_user: AtomicU64::new(0),
                refused_group: AtomicU64::new(0),
                users: KeyedCounts::new(),
                groups: KeyedCounts::new(),
                limits,
            }),
        }
    }

    /// Admits one session if every limit that applies to `request` has room, taking a count
    /// from each; otherwise takes nothing and returns [`ResourceError::Exhausted`] for the first
    /// limit that refused (checked in the order global, user, group).
    ///
    /// The permit gives its counts back when dropped.
    ///
    /// No limit is ever exceeded, not even for a moment. A request that its user's or group's
    /// limit refuses does hold a global slot while that check runs. So when several threads
    /// admit at once near the global limit, one of them can be refused while a slot is about to
    /// come free. Taking every count under one lock would prevent that, at the price of
    /// serialising all admissions.
    pub fn try_admit(&self, request: &AdmissionRequest<'_>) -> Result<AdmissionPermit> {
        let inner = &*self.inner;
        let max = inner
            .max_sessions
            .load(Ordering::Relaxed)
            .saturating_sub(inner.limits.held_back_from(request.priority));
        let mut current = inner.active.load(Ordering::Relaxed);
        loop {
            if current >= max {
                inner.refused_sessions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(limit = max, "admission refused: session limit");
                return Err(self.refusal(Resource::Sessions, max));
            }
            match inner.active.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // From here on the permit owns what has been taken, so an early return gives it back.
        let mut permit = AdmissionPermit {
            inner: Arc::clone(&self.inner),
            user: None,
            group: None,
        };
        if let Some(user) = request.user {
            let limit = inner.limits.max_per_user.unwrap_or(UNLIMITED);
            match inner.users.try_acquire(user, limit, |u| Arc::from(u)) {
                Some(key) => permit.user = Some(key),
                None => {
                    inner.refused_user.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(limit, "admission refused: per-user limit");
                    let resource = Resource::UserSessions { user: user.into() };
                    return Err(self.refusal(resource, limit));
                }
            }
        }
        if let Some(group) = request.group {
            let limit = inner.limits.group_limit(group).unwrap_or(UNLIMITED);
            match inner.groups.try_acquire(&group, limit, |g| *g) {
                Some(key) => permit.group = Some(key),
                None => {
                    inner.refused_group.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(limit, %group, "admission refused: group limit");
                    return Err(self.refusal(Resource::GroupSessions { group }, limit));
                }
            }
        }
        inner.admitted.fetch_add(1, Ordering::Relaxed);
        // `current + 1` sessions were active the moment our slot was taken.
        if current + 1 > inner.peak.load(Ordering::Relaxed) {
            inner.peak.fetch_max(current + 1, Ordering::Relaxed);
        }
        Ok(permit)
    }

    fn refusal(&self, resource: Resource, limit: usize) -> ResourceError {
        ResourceError::exhausted(resource, limit, self.inner.limits.retry_after)
    }

    /// Changes the global limit while running (`None`: unlimited). Lowering it below the
    /// number of active sessions ends none of them; new ones are refused until enough have
    /// ended. `Some(0)` drains: nothing new is admitted.
    pub fn set_max_sessions(&self, max: Option<usize>) {
        self.inner
            .max_sessions
            .store(max.unwrap_or(UNLIMITED), Ordering::Relaxed);
    }

    /// The global limit in force, if any.
    pub fn max_sessions(&self) -> Option<usize> {
        match self.inner.max_sessions.load(Ordering::Relaxed) {
            UNLIMITED => None,
            max => Some(max),
        }
    }

    /// The limits given to [`new`](Self::new) (the global one may since have been changed with
    /// [`set_max_sessions`](Self::set_max_sessions); see [`max_sessions`](Self::max_sessions)).
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Sessions admitted and not yet released.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Active sessions of `user`.
    pub fn user_active(&self, user: &str) -> usize {
        self.inner.users.get(user)
    }

    /// Active sessions in `group`.
    pub fn group_active(&self, group: GroupId) -> usize {
        self.inner.groups.get(&group)
    }

    /// Requests refused so far, by any limit: what [`UsageSnapshot::refused_total`] says,
    /// without copying every user's and group's count (a metrics scrape reads this).
    pub fn refused_total(&self) -> u64 {
        let inner = &*self.inner;
        inner.refused_sessions.load(Ordering::Relaxed)
            + inner.refused_user.load(Ordering::Relaxed)
            + inner.refused_group.load(Ordering::Relaxed)
    }

    /// Current usage: active counts (global, per user, per group), the peak and the totals
    /// admitted and refused. Each figure is read atomically, but not all at one instant, so
    /// while sessions come and go the per-user sum may differ from `active` by a few.
    pub fn snapshot(&self) -> UsageSnapshot {
        let inner = &*self.inner;
        let mut users = inner.users.entries();
        users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut groups = inner.groups.entries();
        groups.sort_unstable_by_key(|entry| entry.0);
        let refused_sessions = inner.refused_sessions.load(Ordering::Relaxed);
        let refused_user = inner.refused_user.load(Ordering::Relaxed);
        let refused_group = inner.refused_group.load(Ordering::Relaxed);
        UsageSnapshot {
            active: self.active(),
            peak: inner.peak.load(Ordering::Relaxed),
            max_sessions: self.max_sessions(),
            admitted_total: inner.admitted.load(Ordering::Relaxed),
            refused_total: refused_sessions + refused_user + refused_group,
            refused_sessions,
            refused_user,
            refused_group,
            users,
            groups,
        }
    }

    /// The number of users with at least one active session (without copying the map).
    pub fn active_users(&self) -> usize {
        self.inner.users.len()
    }
}

/// One admitted session's claim on the limits. Dropping it releases the global slot and the
/// user's and group's counts; hold it for exactly as long as the session lives (typically as a
/// field of the session). It is `Send + Sync` and `'static`, so it can move into tasks.
#[must_use = "dropping the permit releases the admission at once"]
pub struct AdmissionPermit {
    inner: Arc<Inner>,
    user: Option<Claim<Arc<str>>>,
    group: Option<Claim<GroupId>>,
}

impl AdmissionPermit {
    /// The user this permit counts against, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|claim| &**claim.key())
    }

    /// The group this permit counts against, if any.
    pub fn group(&self) -> Option<GroupId> {
        self.group.as_ref().map(|claim| *claim.key())
    }
}

impl fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("user", &self.user())
            .field("group", &self.group())
            .finish_non_exhaustive()
    }
}

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        if let Some(group) = &self.group {
            self.inner.groups.release(group);
        }
        if let Some(user) = &self.user {
            self.inner.users.release(user);
        }
        self.inner.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A plain-data picture of an [`AdmissionController`]'s usage, from
/// [`AdmissionController::snapshot`].
///
/// `Display` prints a summary; the alternate form (`{:#}`) adds one line per user. User names
/// are personal data, so log the alternate form only where that is acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageSnapshot {
    /// Sessions admitted and not yet released.
    pub active: usize,
    /// The most sessions active at once since the controller was made.
    pub peak: usize,
    /// The global limit in force, if any.
    pub max_sessions: Option<usize>,
    /// Sessions admitted since the controller was made.
    pub admitted_total: u64,
    /// Requests refused since the controller was made (the sum of the three below).
    pub refused_total: u64,
    /// Requests refused by the global limit.
    pub refused_sessions: u64,
    /// Requests refused by a per-user limit.
    pub refused_user: u64,
    /// Requests refused by a group limit.
    pub refused_group: u64,
    /// Active sessions per user, for every user with at least one, sorted by user.
    pub users: Vec<(Arc<str>, usize)>,
    /// Active sessions per group, for every group with at least one, sorted by group.
    pub groups: Vec<(GroupId, usize)>,
}

impl UsageSnapshot {
    /// Active sessions of `user` in this snapshot.
    pub fn user(&self, user: &str) -> usize {
        self.users
            .binary_search_by(|entry| (*entry.0).cmp(user))
            .map_or(0, |index| self.users[index].1)
    }

    /// Active sessions in `group` in this snapshot.
    pub fn group(&self, group: GroupId) -> usize {
        self.groups
            .binary_search_by_key(&group, |entry| entry.0)
            .map_or(0, |index| self.groups[index].1)
    }
}

impl fmt::Display for UsageSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sessions: {} active, peak {}", self.active, self.peak)?;
        match self.max_sessions {
            Some(max) => write!(f, ", limit {max}")?,
            None => f.write_str(", no limit")?,
        }
        writeln!(
            f,
            "; {} admitted, {} refused ({} global, {} per-user, {} per-group)",
            self.admitted_total,
            self.refused_total,
            self.refused_sessions,
            self.refused_user,
            self.refused_group
        )?;
        writeln!(f, "users: {} with active sessions", self.users.len())?;
        if f.alternate() {
            for (user, count) in &self.users {
                writeln!(f, "  user {user}: {count}")?;
            }
        }
        writeln!(f, "groups: {} with active sessions", self.groups.len())?;
        for (group, count) in &self.groups {
            writeln!(f, "  {group}: {count}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_types::{Classify, ErrorKind};

    fn group(raw: u64) -> GroupId {
        GroupId::from_raw(raw)
    }

    #[test]
    fn reserved_slots_are_tiered_by_priority() {
        let level = |l| Priority::new(l).unwrap();
        let limits = Limits::default()
            .max_sessions(10)
            .reserve_for(level(2), 4)
            .reserve_for(level(4), 2);
        assert_eq!(
            Priority::all()
                .map(|p| limits.held_back_from(p))
                .collect::<Vec<_>>(),
            [6, 6, 2, 2, 0]
        );
        let admission = AdmissionController::new(limits);
        let at = |l| AdmissionRequest::new().at_priority(level(l));
        let mut held = Vec::new();
        while let Ok(permit) = admission.try_admit(&at(0)) {
            held.push(permit);
        }
        assert_eq!(held.len(), 4, "routine calls leave the 6 reserved slots");
        while let Ok(permit) = admission.try_admit(&at(3)) {
            held.push(permit);
        }
        assert_eq!(
            held.len(),
            8,
            "level 3 may take level 2's reservation, not level 4's"
        );
        while let Ok(permit) = admission.try_admit(&at(4)) {
            held.push(permit);
        }
        assert_eq!(held.len(), 10, "the highest level takes the rest");
        // A slot freed by a routine call is still not a routine call's while others are kept.
        drop(held.remove(0));
        assert!(admission.try_admit(&at(0)).is_err());
        assert!(admission.try_admit(&at(4)).is_ok());
    }

    #[test]
    fn global_limit_is_exact() {
        let admission = AdmissionController::new(Limits::default().max_sessions(3));
        let permits: Vec<_> = (0..3)
            .map(|_| admission.try_admit(&AdmissionRequest::new()).unwrap())
            .collect();
        let err = admission.try_admit(&AdmissionRequest::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted);
        assert_eq!(err.resource(), Some(&Resource::Sessions));
        assert_eq!(err.limit(), Some(3));
        assert_eq!(err.retry_after(), Some(DEFAULT_RETRY_AFTER));
        assert_eq!(admission.active(), 3);
        drop(permits);
        assert_eq!(admission.active(), 0);
        // Room again after the release.
        let again = admission.try_admit(&AdmissionRequest::new()).unwrap();
        assert_eq!(admission.active(), 1);
        drop(again);
        let usage = admission.snapshot();
        assert_eq!(usage.admitted_total, 4);
        assert_eq!(usage.refused_total, 1);
        assert_eq!(usage.refused_sessions, 1);
        assert_eq!(usage.peak, 3);
    }

    #[test]
    fn user_refusal_gives_the_global_slot_back() {
        let admission =
            AdmissionController::new(Limits::default().max_sessions(10).max_per_user(1));
        let alice = AdmissionRequest::for_user("alice");
        let held = admission.try_admit(&alice).unwrap();
        assert_eq!(held.user(), Some("alice"));
        let err = admission.try_admit(&alice).unwrap_err();
        assert_eq!(
            err.resource(),
            Some(&Resource::UserSessions {
                user: "alice".into()
            })
        );
        assert_eq!(err.limit(), Some(1));
        assert_eq!(
            admission.active(),
            1,
            "the refused request left no global count"
        );
        assert_eq!(admission.user_active("alice"), 1);
        // Another user is not affected by alice's quota.
        let bob = admission
            .try_admit(&AdmissionRequest::for_user("bob"))
            .unwrap();
        assert_eq!(admission.active(), 2);
        drop((held, bob));
        assert_eq!(admission.active(), 0);
        assert_eq!(
            admission.active_users(),
            0,
            "user entries are removed at zero"
        );
    }

    #[test]
    fn group_refusal_gives_user_and_global_back() {
        let admission = AdmissionController::new(
            Limits::default()
                .max_per_user(5)
                .max_per_group(1)
                .max_for_group(group(2), 2),
        );
        let a = admission
            .try_admit(&AdmissionRequest::for_user("alice").in_group(group(1)))
            .unwrap();
        assert_eq!(a.group(), Some(group(1)));
        let err = admission
            .try_admit(&AdmissionRequest::for_user("carol").in_group(group(1)))
            .unwrap_err();
        assert_eq!(
            err.resource(),
            Some(&Resource::GroupSessions { group: group(1) })
        );
        assert_eq!(admission.active(), 1);
        assert_eq!(admission.user_active("carol"), 0, "no residue for carol");
        assert_eq!(admission.active_users(), 1);
        // Group 2 has its own, larger limit.
        let b = admission
            .try_admit(&AdmissionRequest::new().in_group(group(2)))
            .unwrap();
        let c = admission
            .try_admit(&AdmissionRequest::new().in_group(group(2)))
            .unwrap();
        assert!(
            admission
                .try_admit(&AdmissionRequest::new().in_group(group(2)))
                .is_err()
        );
        assert_eq!(admission.group_active(group(2)), 2);
        let usage = admission.snapshot();
        assert_eq!(usage.groups, vec![(group(1), 1), (group(2), 2)]);
        assert_eq!(usage.refused_group, 2);
        drop((a, b, c));
        let usage = admission.snapshot();
        assert_eq!(usage.active, 0);
        assert!(usage.users.is_empty());
        assert!(usage.groups.is_empty());
        assert_eq!(usage.admitted_total, 3);
    }

    #[test]
    fn zero_limits_refuse_everything() {
        let admission = AdmissionController::new(Limits::default().max_per_user(0));
        assert!(
            admission
                .try_admit(&AdmissionRequest::for_user("x"))
                .is_err()
        );
        // Requests without a user are not subject to the per-user limit.
        let anonymous = admission.try_admit(&AdmissionRequest::new()).unwrap();
        drop(anonymous);
        let closed = AdmissionController::new(Limits::default().max_sessions(0));
        assert!(closed.try_admit(&AdmissionRequest::new()).is_err());
        assert_eq!(closed.active(), 0);
    }

    #[test]
    fn the_global_limit_can_change_while_running() {
        let admission = AdmissionController::new(Limits::default());
        assert_eq!(admission.max_sessions(), None);
        let a = admission.try_admit(&AdmissionRequest::new()).unwrap();
        let b = admission.try_admit(&AdmissionRequest::new()).unwrap();
        admission.set_max_sessions(Some(1));
        assert_eq!(admission.max_sessions(), Some(1));
        assert!(admission.try_admit(&AdmissionRequest::new()).is_err());
        drop(a);
        assert!(
            admission.try_admit(&AdmissionRequest::new()).is_err(),
            "still at the new limit"
        );
        drop(b);
        let c = admission.try_admit(&AdmissionRequest::new()).unwrap();
        admission.set_max_sessions(None);
        let d = admission.try_admit(&AdmissionRequest::new()).unwrap();
        drop((c, d));
        assert_eq!(admission.active(), 0);
    }

    #[test]
    fn snapshot_lists_users_and_groups_sorted() {
        let admission = AdmissionController::new(Limits::default().max_sessions(10));
        let _p1 = admission
            .try_admit(&AdmissionRequest::for_user("bob").in_group(group(5)))
            .unwrap();
        let _p2 = admission
            .try_admit(&AdmissionRequest::for_user("alice").in_group(group(5)))
            .unwrap();
        let _p3 = admission
            .try_admit(&AdmissionRequest::for_user("alice").in_group(group(3)))
            .unwrap();
        let usage = admission.snapshot();
        assert_eq!(usage.active, 3);
        assert_eq!(usage.max_sessions, Some(10));
        let users: Vec<(&str, usize)> = usage.users.iter().map(|(u, n)| (&**u, *n)).collect();
        assert_eq!(users, vec![("alice", 2), ("bob", 1)]);
        assert_eq!(usage.user("alice"), 2);
        assert_eq!(usage.user("nobody"), 0);
        assert_eq!(usage.group(group(5)), 2);
        assert_eq!(usage.group(group(4)), 0);
        let text = usage.to_string();
        assert_eq!(
            text,
            "sessions: 3 active, peak 3, limit 10; 3 admitted, 0 refused \
             (0 global, 0 per-user, 0 per-group)\n\
             users: 2 with active sessions\n\
             groups: 2 with active sessions\n  group-3: 1\n  group-5: 2\n"
        );
        assert!(
            !text.contains("alice"),
            "user names only in the alternate form"
        );
        let full = format!("{usage:#}");
        assert!(full.contains("  user alice: 2\n  user bob: 1\n"), "{full}");
    }

    #[test]
    fn permits_are_send_sync_static() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<AdmissionPermit>();
        assert_send_sync::<AdmissionController>();
    }
}
