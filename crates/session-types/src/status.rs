//! SIP response status codes (RFC 3261 §21 and later RFCs) with their default reason phrases.

use std::fmt;

/// A SIP status code, 100–699.
///
/// Any value in that range is accepted (extension codes exist); [`StatusCode::reason_phrase`]
/// knows the registered ones and falls back to the class name for the rest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

/// The class of a status code (its first digit), RFC 3261 §7.2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum StatusClass {
    /// 1xx: request received, continuing.
    Provisional,
    /// 2xx: the action was received, understood and accepted.
    Success,
    /// 3xx: further action must be taken (redirection).
    Redirection,
    /// 4xx: bad syntax or cannot be fulfilled at this server.
    ClientError,
    /// 5xx: the server failed on an apparently valid request.
    ServerError,
    /// 6xx: the request cannot be fulfilled at any server.
    GlobalFailure,
}

macro_rules! status_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $phrase:literal; )*) => {
        impl StatusCode {
            $( $(#[$doc])* pub const $name: StatusCode = StatusCode($code); )*

            /// The registered reason phrase, or the class name for an unregistered code.
            pub fn reason_phrase(self) -> &'static str {
                match self.0 {
                    $( $code => $phrase, )*
                    _ => match self.class() {
                        StatusClass::Provisional => "Session Progress",
                        StatusClass::Success => "OK",
                        StatusClass::Redirection => "Redirection",
                        StatusClass::ClientError => "Client Error",
                        StatusClass::ServerError => "Server Error",
                        StatusClass::GlobalFailure => "Global Failure",
                    },
                }
            }
        }
    };
}

status_codes! {
    /// 100 Trying.
    TRYING = 100, "Trying";
    /// 180 Ringing.
    RINGING = 180, "Ringing";
    /// 181 Call Is Being Forwarded.
    CALL_IS_BEING_FORWARDED = 181, "Call Is Being Forwarded";
    /// 182 Queued.
    QUEUED = 182, "Queued";
    /// 183 Session Progress.
    SESSION_PROGRESS = 183, "Session Progress";
    /// 200 OK.
    OK = 200, "OK";
    /// 202 Accepted (RFC 3515).
    ACCEPTED = 202, "Accepted";
    /// 300 Multiple Choices.
    MULTIPLE_CHOICES = 300, "Multiple Choices";
    /// 301 Moved Permanently.
    MOVED_PERMANENTLY = 301, "Moved Permanently";
    /// 302 Moved Temporarily.
    MOVED_TEMPORARILY = 302, "Moved Temporarily";
    /// 305 Use Proxy.
    USE_PROXY = 305, "Use Proxy";
    /// 380 Alternative Service.
    ALTERNATIVE_SERVICE = 380, "Alternative Service";
    /// 400 Bad Request.
    BAD_REQUEST = 400, "Bad Request";
    /// 401 Unauthorized.
    UNAUTHORIZED = 401, "Unauthorized";
    /// 402 Payment Required.
    PAYMENT_REQUIRED = 402, "Payment Required";
    /// 403 Forbidden.
    FORBIDDEN = 403, "Forbidden";
    /// 404 Not Found.
    NOT_FOUND = 404, "Not Found";
    /// 405 Method Not Allowed.
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    /// 406 Not Acceptable.
    NOT_ACCEPTABLE = 406, "Not Acceptable";
    /// 407 Proxy Authentication Required.
    PROXY_AUTHENTICATION_REQUIRED = 407, "Proxy Authentication Required";
    /// 408 Request Timeout.
    REQUEST_TIMEOUT = 408, "Request Timeout";
    /// 410 Gone.
    GONE = 410, "Gone";
    /// 413 Request Entity Too Large.
    REQUEST_ENTITY_TOO_LARGE = 413, "Request Entity Too Large";
    /// 414 Request-URI Too Long.
    REQUEST_URI_TOO_LONG = 414, "Request-URI Too Long";
    /// 415 Unsupported Media Type.
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    /// 416 Unsupported URI Scheme.
    UNSUPPORTED_URI_SCHEME = 416, "Unsupported URI Scheme";
    /// 417 Unknown Resource-Priority (RFC 4412).
    UNKNOWN_RESOURCE_PRIORITY = 417, "Unknown Resource-Priority";
    /// 420 Bad Extension.
    BAD_EXTENSION = 420, "Bad Extension";
    /// 421 Extension Required.
    EXTENSION_REQUIRED = 421, "Extension Required";
    /// 422 Session Interval Too Small (RFC 4028).
    SESSION_INTERVAL_TOO_SMALL = 422, "Session Interval Too Small";
    /// 423 Interval Too Brief.
    INTERVAL_TOO_BRIEF = 423, "Interval Too Brief";
    /// 480 Temporarily Unavailable.
    TEMPORARILY_UNAVAILABLE = 480, "Temporarily Unavailable";
    /// 481 Call/Transaction Does Not Exist.
    CALL_OR_TRANSACTION_DOES_NOT_EXIST = 481, "Call/Transaction Does Not Exist";
    /// 482 Loop Detected.
    LOOP_DETECTED = 482, "Loop Detected";
    /// 483 Too Many Hops.
    TOO_MANY_HOPS = 483, "Too Many Hops";
    /// 484 Address Incomplete.
    ADDRESS_INCOMPLETE = 484, "Address Incomplete";
    /// 485 Ambiguous.
    AMBIGUOUS = 485, "Ambiguous";
    /// 486 Busy Here.
    BUSY_HERE = 486, "Busy Here";
    /// 487 Request Terminated.
    REQUEST_TERMINATED = 487, "Request Terminated";
    /// 488 Not Acceptable Here.
    NOT_ACCEPTABLE_HERE = 488, "Not Acceptable Here";
    /// 489 Bad Event (RFC 6665).
    BAD_EVENT = 489, "Bad Event";
    /// 491 Request Pending.
    REQUEST_PENDING = 491, "Request Pending";
    /// 493 Undecipherable.
    UNDECIPHERABLE = 493, "Undecipherable";
    /// 500 Server Internal Error.
    SERVER_INTERNAL_ERROR = 500, "Server Internal Error";
    /// 501 Not Implemented.
    NOT_IMPLEMENTED = 501, "Not Implemented";
    /// 502 Bad Gateway.
    BAD_GATEWAY = 502, "Bad Gateway";
    /// 503 Service Unavailable.
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    /// 504 Server Time-out.
    SERVER_TIMEOUT = 504, "Server Time-out";
    /// 505 Version Not Supported.
    VERSION_NOT_SUPPORTED = 505, "Version Not Supported";
    /// 513 Message Too Large.
    MESSAGE_TOO_LARGE = 513, "Message Too Large";
    /// 600 Busy Everywhere.
    BUSY_EVERYWHERE = 600, "Busy Everywhere";
    /// 603 Decline.
    DECLINE = 603, "Decline";
    /// 604 Does Not Exist Anywhere.
    DOES_NOT_EXIST_ANYWHERE = 604, "Does Not Exist Anywhere";
    /// 606 Not Acceptable.
    NOT_ACCEPTABLE_ANYWHERE = 606, "Not Acceptable";
}

impl StatusCode {
    /// A status code from its number; `None` outside 100–699 (RFC 3261 §25.1 `Status-Code`).
    pub const fn new(code: u16) -> Option<Self> {
        if code >= 100 && code <= 699 {
            Some(Self(code))
        } else {
            None
        }
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The class (first digit).
    pub const fn class(self) -> StatusClass {
        match self.0 / 100 {
            1 => StatusClass::Provisional,
            2 => StatusClass::Success,
            3 => StatusClass::Redirection,
            4 => StatusClass::ClientError,
            5 => StatusClass::ServerError,
            _ => StatusClass::GlobalFailure,
        }
    }

    /// 1xx.
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// 200–699: ends a client transaction.
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// 300–699: the request failed or was redirected.
    pub const fn is_failure(self) -> bool {
        self.0 >= 300
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason_phrase())
    }
}

impl fmt::Debug for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusCode({})", self.0)
    }
}

impl TryFrom<u16> for StatusCode {
    type Error = u16;

    fn try_from(code: u16) -> Result<Self, u16> {
        Self::new(code).ok_or(code)
    }
}

impl From<StatusCode> for u16 {
    fn from(code: StatusCode) -> u16 {
        code.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_enforced() {
        assert_eq!(StatusCode::new(99), None);
        assert_eq!(StatusCode::new(700), None);
        assert_eq!(StatusCode::new(100), Some(StatusCode::TRYING));
        assert_eq!(
            StatusCode::new(699).map(StatusCode::class),
            Some(StatusClass::GlobalFailure)
        );
    }

    #[test]
    fn phrases_and_classes() {
        assert_eq!(StatusCode::BUSY_HERE.to_string(), "486 Busy Here");
        assert_eq!(
            StatusCode::new(499).map(StatusCode::reason_phrase),
            Some("Client Error")
        );
        assert!(StatusCode::RINGING.is_provisional());
        assert!(!StatusCode::RINGING.is_final());
        assert!(
            StatusCode::OK.is_success()
                && StatusCode::OK.is_final()
                && !StatusCode::OK.is_failure()
        );
        assert!(StatusCode::MOVED_TEMPORARILY.is_failure());
        assert_eq!(
            StatusCode::SERVICE_UNAVAILABLE.class(),
            StatusClass::ServerError
        );
    }
}
