//! Resource-Priority (RFC 4412): `namespace.priority` values, and the two namespaces this
//! stack maps onto [`Priority`]: `esnet` (RFC 7135, `esnet.0` lowest … `esnet.4` highest) and
//! `wps` (RFC 4412 §9, `wps.4` lowest … `wps.0` highest).
//!
//! ```
//! use session_sip::resource_priority::{PriorityNamespace, ResourceValue};
//! use session_types::Priority;
//!
//! let value = ResourceValue::parse("WPS.1").unwrap();
//! assert_eq!(value.namespace, "WPS");
//! assert_eq!(value.priority(), Some(Priority::new(3).unwrap()));
//! assert_eq!(PriorityNamespace::Esnet.value_for(Priority::HIGHEST), "esnet.4");
//! assert!(ResourceValue::parse("esnet").is_err(), "no priority part");
//! assert_eq!(ResourceValue::parse("dsn.flash").unwrap().priority(), None, "not ours");
//! ```

use crate::error::{Error, Result};
use session_types::Priority;

/// The header's name, for errors.
const HEADER: &str = "Resource-Priority";

/// One `namespace "." r-priority` value (RFC 4412 §3.1), as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceValue<'a> {
    /// The namespace (`esnet`, `wps`, `dsn` …).
    pub namespace: &'a str,
    /// The priority within it (`0` … `4`, `flash` …).
    pub value: &'a str,
}

impl<'a> ResourceValue<'a> {
    /// Parses one value; both parts must be `token-nodot` (RFC 4412 §3.1).
    pub fn parse(text: &'a str) -> Result<Self> {
        let text = text.trim();
        let Some((namespace, value)) = text.split_once('.') else {
            return Err(Error::header(
                HEADER,
                "no '.' between namespace and priority",
            ));
        };
        if !is_token_nodot(namespace) || !is_token_nodot(value) {
            return Err(Error::header(
                HEADER,
                "namespace or priority is not a token",
            ));
        }
        Ok(Self { namespace, value })
    }

    /// The namespace, when it is one we map.
    pub fn known_namespace(&self) -> Option<PriorityNamespace> {
        PriorityNamespace::ALL
            .into_iter()
            .find(|ns| self.namespace.eq_ignore_ascii_case(ns.name()))
    }

    /// The level on our scale, when the namespace is one we map and the value one of its
    /// five (namespaces and values are case-insensitive, RFC 4412 §3.1).
    pub fn priority(&self) -> Option<Priority> {
        self.known_namespace()?.priority_of(self.value)
    }
}

/// The Resource-Priority namespaces we understand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PriorityNamespace {
    /// `esnet` (RFC 7135, emergency services): `esnet.0` lowest … `esnet.4` highest. The
    /// default for what we write.
    #[default]
    Esnet,
    /// `wps` (RFC 4412 §9, Wireless Priority Service): `wps.4` lowest … `wps.0` highest.
    Wps,
}

impl PriorityNamespace {
    /// Both, in the order `Accept-Resource-Priority` lists them.
    pub const ALL: [PriorityNamespace; 2] = [PriorityNamespace::Esnet, PriorityNamespace::Wps];

    /// The namespace's name.
    pub const fn name(self) -> &'static str {
        match self {
            PriorityNamespace::Esnet => "esnet",
            PriorityNamespace::Wps => "wps",
        }
    }

    /// The level `value` (`"0"` … `"4"`) stands for in this namespace.
    pub fn priority_of(self, value: &str) -> Option<Priority> {
        let digit = match value.as_bytes() {
            [d @ b'0'..=b'4'] => d - b'0',
            _ => return None,
        };
        match self {
            PriorityNamespace::Esnet => Priority::new(digit),
            PriorityNamespace::Wps => Priority::new(Priority::HIGHEST.level() - digit),
        }
    }

    /// The value that stands for `priority` in this namespace (`esnet.3`, `wps.1`).
    pub fn value_for(self, priority: Priority) -> String {
        let digit = match self {
            PriorityNamespace::Esnet => priority.level(),
            PriorityNamespace::Wps => Priority::HIGHEST.level() - priority.level(),
        };
        format!("{}.{digit}", self.name())
    }
}

/// Every value we understand, for `Accept-Resource-Priority` (RFC 4412 §3.2).
pub fn accepted_values() -> String {
    let values: Vec<String> = PriorityNamespace::ALL
        .into_iter()
        .flat_map(|ns| Priority::all().map(move |p| ns.value_for(p)))
        .collect();
    values.join(", ")
}

/// `token-nodot` (RFC 4412 §3.1): a token without `.`.
fn is_token_nodot(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_the_scale() {
        for ns in PriorityNamespace::ALL {
            for priority in Priority::all() {
                let text = ns.value_for(priority);
                assert_eq!(
                    ResourceValue::parse(&text).unwrap().priority(),
                    Some(priority)
                );
            }
        }
        assert_eq!(PriorityNamespace::Wps.value_for(Priority::HIGHEST), "wps.0");
    }

    #[test]
    fn malformed_and_unknown_values() {
        for bad in [
            "",
            ".",
            "esnet.",
            ".4",
            "esnet.4.1",
            "es net.4",
            "esnet.\"4\"",
        ] {
            assert!(ResourceValue::parse(bad).is_err(), "{bad:?}");
        }
        for unknown in ["esnet.5", "wps.x", "ets.0", "dsn.flash"] {
            assert_eq!(
                ResourceValue::parse(unknown).unwrap().priority(),
                None,
                "{unknown}"
            );
        }
        assert_eq!(accepted_values().split(", ").count(), 10);
    }
}
