//! RFC 4028 session timers, as pure functions over messages: what a UAS answers to an INVITE's
//! Session-Expires/Min-SE (or 422), what a UAC learns from the 2xx, and when the refresher
//! refreshes or the other side gives up.

use crate::config::SessionTimerConfig;
use session_sip::{Header, HeaderName, Request, Response};
use std::time::Duration;

/// The smallest Min-SE RFC 4028 §4 allows.
pub(crate) const MIN_SE_FLOOR: u32 = 90;

/// Who refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Self::Uac => "uac",
            Self::Uas => "uas",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "uac" => Some(Self::Uac),
            "uas" => Some(Self::Uas),
            _ => None,
        }
    }
}

/// An agreed session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    /// The session interval in seconds.
    pub(crate) interval: u32,
    /// Who refreshes.
    pub(crate) refresher: Refresher,
    /// Whether we are the UAC of the dialog's initial INVITE.
    pub(crate) we_are_uac: bool,
}

impl SessionTimer {
    /// Whether we send the refreshes.
    pub(crate) fn we_refresh(&self) -> bool {
        (self.refresher == Refresher::Uac) == self.we_are_uac
    }

    /// When the refresher refreshes: half the interval (§10).
    pub(crate) fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval) / 2)
    }

    /// When the other side gives up and sends BYE: the interval minus the smaller of 32 s and
    /// a third of it (§10).
    pub(crate) fn expire_after(&self) -> Duration {
        let interval = u64::from(self.interval);
        Duration::from_secs(interval - (interval / 3).min(32))
    }

    /// The `Session-Expires` header for requests and responses of this session.
    pub(crate) fn header(&self) -> Header {
        Header::new(
            HeaderName::SessionExpires,
            format!("{};refresher={}", self.interval, self.refresher.as_str()),
        )
    }
}

fn supports_timer(headers: &session_sip::Headers) -> bool {
    [HeaderName::Supported, HeaderName::Require]
        .into_iter()
        .flat_map(|name| headers.values(name))
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim().eq_ignore_ascii_case("timer"))
}

fn session_expires(
    parsed: Option<session_sip::Result<(u32, session_sip::Params<'_>)>>,
) -> Option<(u32, Option<Refresher>)> {
    let (seconds, params) = parsed?.ok()?;
    let refresher = params.get("refresher").flatten().and_then(Refresher::parse);
    Some((seconds, refresher))
}

/// The headers a UAC adds to its INVITE.
pub(crate) fn uac_headers(config: &SessionTimerConfig) -> Vec<Header> {
    let min_se = (config.min_se.as_secs() as u32).max(MIN_SE_FLOOR);
    let expires = (config.expires.as_secs() as u32).max(min_se);
    // `Supported: timer` goes with our other option tags (`outbound.rs`).
    vec![
        Header::new(HeaderName::SessionExpires, expires.to_string()),
        Header::new(HeaderName::MinSe, min_se.to_string()),
    ]
}

/// What a UAS does with an INVITE (or a refresh) under `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UasDecision {
    /// No session timer for this session.
    None,
    /// Use this timer; put its header (and `Require: timer` when the UAC supports it) in the
    /// 2xx.
    Timer { timer: SessionTimer, require: bool },
    /// Answer 422 with this Min-SE (§9: the interval asked for is below our minimum).
    TooSmall(u32),
}

/// §9: the UAS side of negotiation.
///
/// Without a configuration of ours and without a `Session-Expires` in the request — most
/// INVITEs to most servers — the answer is known after one header lookup: the request's option
/// tags are read only when a timer is to be had.
pub(crate) fn uas_decide(request: &Request, config: Option<&SessionTimerConfig>) -> UasDecision {
    let asked = session_expires(request.session_expires());
    let Some(config) = config else {
        // We do not run timers ourselves, but a UAC that asked for one gets it honoured: it
        // refreshes, and we answer the refreshes (§9: a UAS without local policy accepts).
        return match asked {
            Some((interval, refresher)) if interval >= MIN_SE_FLOOR => UasDecision::Timer {
                timer: SessionTimer {
                    interval,
                    refresher: refresher.unwrap_or(Refresher::Uac),
                    we_are_uac: false,
                },
                require: supports_timer(&request.headers),
            },
            Some(_) => UasDecision::TooSmall(MIN_SE_FLOOR),
            None => UasDecision::None,
        };
    };
    let uac_supports = supports_timer(&request.headers);
    let our_min = (config.min_se.as_secs() as u32).max(MIN_SE_FLOOR);
    let their_min = request
        .min_se()
        .and_then(Result::ok)
        .unwrap_or(MIN_SE_FLOOR);
    let timer = match asked {
        Some((interval, _)) if interval < our_min => return UasDecision::TooSmall(our_min),
        Some((interval, refresher)) => SessionTimer {
            interval,
            // §9: a UAC that supports timers and named no refresher leaves it to us to pick;
            // we let it refresh. A UAC without timer support cannot refresh: we do.
            refresher: refresher.unwrap_or(if uac_supports {
                Refresher::Uac
            } else {
                Refresher::Uas
            }),
            we_are_uac: false,
        },
        None => SessionTimer {
            interval: (config.expires.as_secs() as u32)
                .max(our_min)
                .max(their_min),
            refresher: if uac_supports {
                Refresher::Uac
            } else {
                Refresher::Uas
            },
            we_are_uac: false,
        },
    };
    let timer = if uac_supports {
        timer
    } else {
        SessionTimer {
            refresher: Refresher::Uas,
            ..timer
        }
    };
    UasDecision::Timer {
        timer,
        require: uac_supports,
    }
}

/// §7.2: the UAC learns the timer from the 2xx; none when the 2xx has no Session-Expires.
pub(crate) fn uac_from_response(response: &Response) -> Option<SessionTimer> {
    let (interval, refresher) = session_expires(response.session_expires())?;
    Some(SessionTimer {
        // A peer that answers below the floor (§4 forbids it) would have us refresh in a loop.
        interval: interval.max(MIN_SE_FLOOR),
        // §7.2: a 2xx without the parameter leaves refreshing to the UAC.
        refresher: refresher.unwrap_or(Refresher::Uac),
        we_are_uac: true,
    })
}

/// §7.4: the Min-SE of a 422, for the retry.
pub(crate) fn min_se_of_422(response: &Response) -> Option<u32> {
    response.min_se().and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: st\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::parse(text.into_bytes()).unwrap()
    }

    fn config(expires: u64, min_se: u64) -> SessionTimerConfig {
        SessionTimerConfig {
            expires: Duration::from_secs(expires),
            min_se: Duration::from_secs(min_se),
        }
    }

    #[test]
    fn an_interval_below_our_minimum_gets_422_with_our_min_se() {
        let request = invite("Supported: timer\r\nSession-Expires: 100\r\n");
        assert_eq!(
            uas_decide(&request, Some(&config(1800, 120))),
            UasDecision::TooSmall(120)
        );
        let request = invite("Session-Expires: 60\r\n");
        assert_eq!(uas_decide(&request, None), UasDecision::TooSmall(90));
    }

    #[test]
    fn uac_that_supports_timers_refreshes_and_gets_require() {
        let request = invite("Supported: timer\r\nSession-Expires: 300;refresher=uac\r\n");
        let UasDecision::Timer { timer, require } = uas_decide(&request, Some(&config(1800, 90)))
        else {
            panic!("a timer was expected");
        };
        assert!(require);
        assert_eq!(timer.interval, 300);
        assert!(!timer.we_refresh());
        assert_eq!(timer.header().value(), "300;refresher=uac");
        assert_eq!(timer.expire_after(), Duration::from_secs(268));
    }

    #[test]
    fn uac_without_timer_support_leaves_refreshing_to_us() {
        let request = invite("");
        let UasDecision::Timer { timer, require } = uas_decide(&request, Some(&config(600, 90)))
        else {
            panic!("a timer was expected");
        };
        assert!(!require);
        assert_eq!(timer.interval, 600);
        assert!(timer.we_refresh());
        assert_eq!(timer.refresh_after(), Duration::from_secs(300));
        assert_eq!(uas_decide(&request, None), UasDecision::None);
    }

    #[test]
    fn without_a_policy_of_ours_a_timer_asked_for_is_honoured() {
        let request = invite("Supported: timer\r\nSession-Expires: 1800\r\n");
        assert_eq!(
            uas_decide(&request, None),
            UasDecision::Timer {
                timer: SessionTimer {
                    interval: 1800,
                    refresher: Refresher::Uac,
                    we_are_uac: false,
                },
                require: true,
            }
        );
        let request = invite("Session-Expires: 1800;refresher=uas\r\n");
        assert_eq!(
            uas_decide(&request, None),
            UasDecision::Timer {
                timer: SessionTimer {
                    interval: 1800,
                    refresher: Refresher::Uas,
                    we_are_uac: false,
                },
                require: false,
            }
        );
        // Supported: timer alone asks for nothing.
        let request = invite("Supported: timer\r\n");
        assert_eq!(uas_decide(&request, None), UasDecision::None);
    }

    #[test]
    fn uac_reads_the_refresher_from_the_2xx() {
        let response = Response::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
               To: <sip:b@h>;tag=2\r\nCall-ID: st\r\nCSeq: 1 INVITE\r\n\
               Session-Expires: 180;refresher=uas\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let timer = uac_from_response(&response).unwrap();
        assert_eq!(timer.interval, 180);
        assert!(!timer.we_refresh());
        let zero = Response::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
               To: <sip:b@h>;tag=2\r\nCall-ID: st\r\nCSeq: 1 INVITE\r\n\
               Session-Expires: 0\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let timer = uac_from_response(&zero).unwrap();
        assert_eq!(
            timer.refresh_after(),
            Duration::from_secs(45),
            "floor, not a refresh loop"
        );
        let headers = uac_headers(&config(60, 30));
        assert_eq!(headers[0].value(), "90", "interval raised to the floor");
        assert_eq!(headers[1].value(), "90");
    }
}
