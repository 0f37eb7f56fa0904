//! Identifiers: [`SessionId`] (one per call leg, compact and `Copy`), [`GroupId`], the SIP
//! [`CallId`] and the RFC 3261 §12 [`DialogId`] triple.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one session (one call leg) for its whole life, across every layer and event.
///
/// A UUID version 7 (RFC 9562 §5.7): the Unix time of its creation in milliseconds in the
/// first 48 bits, then 74 random bits — unique across processes (ids from several hosts merge
/// in one trace) and sortable by creation time, in the text form logs and databases already
/// parse. It displays as a hyphenated lowercase UUID (`0193a4c2-7b1e-7c3d-9f00-…`) and parses
/// back from any UUID text form (hyphenated, 32 plain hex digits, braced, `urn:uuid:`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u128);

impl SessionId {
    /// A fresh id, stamped with the wall clock now and random bits from the thread's
    /// generator. A component that takes time and randomness as inputs uses
    /// [`SessionId::v7`] instead.
    pub fn new() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Self::v7(unix_ms, fastrand::u128(..))
    }

    /// The UUID v7 of `unix_ms` (Unix time in milliseconds, its low 48 bits) with the low 74
    /// bits of `random`: the same inputs give the same id. Never the nil UUID (the version
    /// and variant bits are set).
    pub fn v7(unix_ms: u64, random: u128) -> Self {
        let bytes = random.to_be_bytes();
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&bytes[6..]);
        Self(
            uuid::Builder::from_unix_timestamp_millis(unix_ms, &tail)
                .into_uuid()
                .as_u128(),
        )
    }

    /// The creation time stamped into the id (Unix milliseconds); `None` for an id that is
    /// not a UUID v7 (one rebuilt with [`SessionId::from_u128`] from another scheme).
    pub fn unix_millis(self) -> Option<u64> {
        let uuid = uuid::Uuid::from_u128(self.0);
        (uuid.get_version_num() == 7).then_some((self.0 >> 80) as u64)
    }

    /// Rebuilds an id from its raw value (e.g. read back from storage).
    pub const fn from_u128(raw: u128) -> Self {
        Self(raw)
    }

    /// The raw 128-bit value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The last 8 hex digits (random bits), for logs and reports where the whole id is too
    /// long: the first digits of a UUID v7 are its timestamp, the same for every session made
    /// in one millisecond. Not unique; the full id ([`fmt::Display`]) is.
    pub fn short(self) -> String {
        format!("{:08x}", self.0 as u32)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_u128(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl FromStr for SessionId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match uuid::Uuid::try_parse(s) {
            // The nil UUID is never an id.
            Ok(uuid) if !uuid.is_nil() => Ok(Self(uuid.as_u128())),
            _ => Err(ParseIdError { input_len: s.len() }),
        }
    }
}

/// A string could not be parsed as a [`SessionId`] (it must be a UUID, not the nil one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a session id: expected a UUID, got {input_len} characters")]
pub struct ParseIdError {
    input_len: usize,
}

/// Identifies a group of sessions (a conference, a tenant, a call engine's queue).
///
/// Groups are small process-local numbers; [`GroupId::next`] hands out fresh ones and
/// [`GroupId::from_raw`] lets an application use numbers of its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct GroupId(u64);

impl GroupId {
    /// A process-unique group id, counting up from 1.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// A group id chosen by the application.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group-{}", self.0)
    }
}

/// A bridge (session-bridge): a number unique within the bridge engine that made it. It lives
/// here so that events about bridges (session-events) and the bridges themselves share one type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BridgeId(u64);

impl BridgeId {
    /// The bridge with this number (engines count from 1).
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for BridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bridge-{}", self.0)
    }
}

/// How a bridge carries media now (session-bridge's `Technology`; it lives here so that the
/// bridge events of session-events name it as a type, not as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BridgeTechnology {
    /// Packets of one member are rewritten in place for the other (also the state of a bridge
    /// with fewer than two members: nothing to carry).
    Relay,
    /// A relay between members whose G.711 laws differ: payloads are transcoded in place.
    TranscodingRelay,
    /// Every member's audio goes through a jitter buffer into a mix-minus every 20 ms.
    Mixer,
}

impl fmt::Display for BridgeTechnology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Relay => "relay",
            Self::TranscodingRelay => "transcoding relay",
            Self::Mixer => "mixer",
        })
    }
}

/// The SIP `Call-ID` of a call (RFC 3261 §8.1.1.4). Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(Arc<str>);

impl CallId {
    /// Wraps an existing Call-ID value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// A fresh, globally unique Call-ID: 128 random bits in hex, `@host` appended when given.
    ///
    /// The bits come from `fastrand`'s thread-local generator; a caller that must replay a run
    /// (a sans-IO test, a recorded failure) uses [`CallId::random_with`] and its own seeded
    /// generator instead.
    pub fn random(host: Option<&str>) -> Self {
        Self::from_bits(fastrand::u128(..), host)
    }

    /// [`CallId::random`] with the bits drawn from `rng`: the same generator state gives the
    /// same Call-ID. Seed it from entropy in production — a Call-ID must be unique across
    /// space and time (RFC 3261 §8.1.1.4), so two user agents must not share a fixed seed.
    pub fn random_with(rng: &mut fastrand::Rng, host: Option<&str>) -> Self {
        Self::from_bits(rng.u128(..), host)
    }

    fn from_bits(raw: u128, host: Option<&str>) -> Self {
        match host {
            Some(host) => Self(format!("{raw:032x}@{host}").into()),
            None => Self(format!("{raw:032x}").into()),
        }
    }

    /// The Call-ID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallId({})", self.0)
    }
}

impl From<&str> for CallId {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// A SIP dialog as RFC 3261 §12 identifies it: Call-ID, local tag and remote tag.
///
/// The tags are seen from this side of the dialog, so the two ends of one dialog hold ids with
/// the tags swapped (see [`DialogId::peer_view`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DialogId {
    /// The dialog's Call-ID.
    pub call_id: CallId,
    /// Our tag (From tag for the UAC, To tag for the UAS).
    pub local_tag: Arc<str>,
    /// The peer's tag.
    pub remote_tag: Arc<str>,
}

impl DialogId {
    /// Builds a dialog id from its three parts.
    pub fn new(
        call_id: CallId,
        local_tag: impl Into<Arc<str>>,
        remote_tag: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            call_id,
            local_tag: local_tag.into(),
            remote_tag: remote_tag.into(),
        }
    }

    /// The same dialog as the peer identifies it (tags swapped).
    pub fn peer_view(&self) -> Self {
        Self {
            call_id: self.call_id.clone(),
            local_tag: self.remote_tag.clone(),
            remote_tag: self.local_tag.clone(),
        }
    }
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};local-tag={};remote-tag={}",
            self.call_id, self.local_tag, self.remote_tag
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn session_id_round_trips_through_its_text() {
        for _ in 0..1000 {
            let id = SessionId::new();
            let text = id.to_string();
            assert_eq!(text.len(), 36);
            assert_eq!(text.parse::<SessionId>(), Ok(id));
            // The plain 32-digit form (the text of earlier versions) parses too.
            let plain: String = text.chars().filter(|c| *c != '-').collect();
            assert_eq!(plain.parse::<SessionId>(), Ok(id));
        }
    }

    #[test]
    fn session_ids_are_uuid_v7_sorted_by_creation_time() {
        let early = SessionId::v7(1_700_000_000_000, u128::MAX);
        let late = SessionId::v7(1_700_000_000_001, 0);
        assert!(
            early < late,
            "ordered by time first, whatever the random bits"
        );
        assert!(early.to_string() < late.to_string(), "and so is their text");
        assert_eq!(early.unix_millis(), Some(1_700_000_000_000));
        let text = late.to_string();
        assert_eq!(text.as_bytes()[14], b'7', "version 7: {text}");
        assert!(
            matches!(text.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "RFC 9562 variant"
        );
        assert_eq!(SessionId::v7(5, 42), SessionId::v7(5, 42), "deterministic");
        let now = SessionId::new().unix_millis().unwrap();
        assert!(now > 1_700_000_000_000, "stamped with the wall clock");
        assert_eq!(SessionId::from_u128(1).unix_millis(), None);
    }

    #[test]
    fn session_id_display_is_stable() {
        let id = SessionId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(
            format!("{id:?}"),
            "SessionId(01234567-89ab-cdef-0011-223344556677)"
        );
    }

    #[test]
    fn session_id_rejects_bad_text() {
        for bad in [
            "",
            "xyz",
            "0123456789abcdef0011223344556677ff",
            "+123456789abcdef0011223344556677",
            "0123456789abcdef001122334455667g",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn session_ids_are_unique_and_compact() {
        let ids: HashSet<_> = (0..10_000).map(|_| SessionId::new()).collect();
        assert_eq!(ids.len(), 10_000);
        assert_eq!(std::mem::size_of::<SessionId>(), 16);
    }

    #[test]
    fn group_ids_count_up() {
        let a = GroupId::next();
        let b = GroupId::next();
        assert!(b.as_u64() > a.as_u64());
    }

    #[test]
    fn dialog_peer_view_swaps_tags() {
        let id = DialogId::new(CallId::from("abc@host"), "l", "r");
        let peer = id.peer_view();
        assert_eq!(&*peer.local_tag, "r");
        assert_eq!(&*peer.remote_tag, "l");
        assert_eq!(peer.peer_view(), id);
        assert_eq!(id.to_string(), "abc@host;local-tag=l;remote-tag=r");
    }

    #[test]
    fn random_call_ids_differ() {
        let a = CallId::random(Some("example.com"));
        let b = CallId::random(Some("example.com"));
        assert_ne!(a, b);
        assert!(a.as_str().ends_with("@example.com"));
    }

    #[test]
    fn seeded_call_ids_replay() {
        let mut first = fastrand::Rng::with_seed(7);
        let mut again = fastrand::Rng::with_seed(7);
        let mut other = fastrand::Rng::with_seed(8);
        let a = CallId::random_with(&mut first, Some("example.com"));
        assert_eq!(a, CallId::random_with(&mut again, Some("example.com")));
        assert_ne!(a, CallId::random_with(&mut other, Some("example.com")));
        // The generator moves on: the next Call-ID of the same run is another one.
        assert_ne!(a, CallId::random_with(&mut first, Some("example.com")));
        let (text, host) = a.as_str().split_once('@').unwrap_or_default();
        assert_eq!((text.len(), host), (32, "example.com"));
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(CallId::random_with(&mut first, None).as_str().len(), 32);
    }
}
