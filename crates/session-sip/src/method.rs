//! SIP request methods: the RFC 3261 set, the common extensions, and any other token.

use std::fmt;

use crate::error::{Error, Result};
use crate::text::is_token;

/// A request method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an extension
/// method, not INVITE.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// REFER (RFC 3515).
    Refer,
    /// NOTIFY (RFC 6665).
    Notify,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// MESSAGE (RFC 3428).
    Message,
    /// PRACK (RFC 3262).
    Prack,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other method token, kept as written.
    Extension(Box<str>),
}

impl Method {
    /// Parses a method token. Errors when `s` is not a token.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "INFO" => Self::Info,
            "UPDATE" => Self::Update,
            "REFER" => Self::Refer,
            "NOTIFY" => Self::Notify,
            "SUBSCRIBE" => Self::Subscribe,
            "MESSAGE" => Self::Message,
            "PRACK" => Self::Prack,
            "PUBLISH" => Self::Publish,
            _ if is_token(s) => Self::Extension(s.into()),
            _ => return Err(Error::StartLine("method is not a token")),
        })
    }

    /// The method as it goes on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Info => "INFO",
            Self::Update => "UPDATE",
            Self::Refer => "REFER",
            Self::Notify => "NOTIFY",
            Self::Subscribe => "SUBSCRIBE",
            Self::Message => "MESSAGE",
            Self::Prack => "PRACK",
            Self::Publish => "PUBLISH",
            Self::Extension(s) => s,
        }
    }

    /// Whether this is one of the methods this crate names (not an extension token).
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Extension(_))
    }

    /// The place of a named method in [`Method::KNOWN`] (kept in a parsed CSeq header).
    pub(crate) fn known_index(&self) -> Option<u8> {
        Some(match self {
            Self::Invite => 0,
            Self::Ack => 1,
            Self::Bye => 2,
            Self::Cancel => 3,
            Self::Options => 4,
            Self::Register => 5,
            Self::Info => 6,
            Self::Update => 7,
            Self::Refer => 8,
            Self::Notify => 9,
            Self::Subscribe => 10,
            Self::Message => 11,
            Self::Prack => 12,
            Self::Publish => 13,
            Self::Extension(_) => return None,
        })
    }

    /// The method at `i` in [`Method::KNOWN`].
    pub(crate) fn from_known_index(i: u8) -> Option<Self> {
        Some(match i {
            0 => Self::Invite,
            1 => Self::Ack,
            2 => Self::Bye,
            3 => Self::Cancel,
            4 => Self::Options,
            5 => Self::Register,
            6 => Self::Info,
            7 => Self::Update,
            8 => Self::Refer,
            9 => Self::Notify,
            10 => Self::Subscribe,
            11 => Self::Message,
            12 => Self::Prack,
            13 => Self::Publish,
            _ => return None,
        })
    }

    /// The methods this crate names, in a stable order (used for `Allow`).
    pub const KNOWN: [Method; 14] = [
        Self::Invite,
        Self::Ack,
        Self::Bye,
        Self::Cancel,
        Self::Options,
        Self::Register,
        Self::Info,
        Self::Update,
        Self::Refer,
        Self::Notify,
        Self::Subscribe,
        Self::Message,
        Self::Prack,
        Self::Publish,
    ];
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_extension_methods() {
        for (i, m) in Method::KNOWN.into_iter().enumerate() {
            assert_eq!(m.known_index(), Some(i as u8));
            assert_eq!(Method::from_known_index(i as u8), Some(m.clone()));
            assert_eq!(Method::parse(m.as_str()).unwrap(), m);
        }
        let odd = "!interesting-Method0123456789_*+`.%indeed'~";
        let m = Method::parse(odd).unwrap();
        assert_eq!(m.as_str(), odd);
        assert!(!m.is_known());
        // Case-sensitive (RFC 3261 §7.1).
        assert!(!Method::parse("invite").unwrap().is_known());
        assert!(Method::parse("IN VITE").is_err());
        assert!(Method::parse("").is_err());
        assert_eq!(Method::from_known_index(14), None);
        assert_eq!(m.known_index(), None);
    }
}
