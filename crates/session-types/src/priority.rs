//! [`Priority`]: how urgent a session is, on one scale whatever said so — SIP's
//! `Resource-Priority` (RFC 4412), the engine's own routing, a handler's decision.

use std::fmt;

/// How urgent a session is: [`Priority::ROUTINE`] (0, every session's default) up to
/// [`Priority::HIGHEST`] (4). Higher is more urgent: admission can keep slots for sessions at
/// or above a priority, and the session's packets can be marked by it (DSCP).
///
/// The five levels match RFC 4412's five-value namespaces: `esnet.0` … `esnet.4` (RFC 7135)
/// map to 0 … 4, and `wps.4` … `wps.0`, whose order is the other way round, to 0 … 4.
///
/// ```
/// use session_types::Priority;
///
/// let emergency = Priority::new(4).unwrap();
/// assert!(emergency > Priority::ROUTINE);
/// assert_eq!(emergency, Priority::HIGHEST);
/// assert_eq!(Priority::new(5), None);
/// assert_eq!(Priority::default(), Priority::ROUTINE);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Priority {
    /// The default: no particular urgency.
    pub const ROUTINE: Priority = Priority(0);
    /// The most urgent level.
    pub const HIGHEST: Priority = Priority(4);

    /// Level `level` (0 … 4); `None` above 4.
    pub const fn new(level: u8) -> Option<Priority> {
        if level <= Self::HIGHEST.0 {
            Some(Priority(level))
        } else {
            None
        }
    }

    /// The level, 0 … 4.
    pub const fn level(self) -> u8 {
        self.0
    }

    /// Every level, lowest first.
    pub fn all() -> impl Iterator<Item = Priority> {
        (0..=Self::HIGHEST.0).map(Priority)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {}", self.0)
    }
}
