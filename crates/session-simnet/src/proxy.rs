//! A record-routing SIP proxy for wire-level tests (RFC 3261 §16), so that the topology real
//! deployments have — a proxy that stays in the path of every request of a dialog — can be
//! put between a [`ScriptedPeer`](crate::sip::ScriptedPeer) and the system under test, or
//! between two systems under test, without sockets.
//!
//! [`RecordRoutingProxy`] does what a proxy like Kamailio with `record_route()` and
//! `loose_route()` does to a message, and nothing more: route processing (§16.4), its Via
//! (§16.6 step 8), its Record-Route on requests that can create a dialog (§16.6 step 4), and
//! the top Via popped from responses (§16.7 step 3). It *insists on its route*: a request
//! inside a dialog that does not name it — neither as the top Route (loose routing) nor as the
//! Request-URI (a strict-routing hop) — is refused with [`ProxyError::NotRoutedThroughUs`],
//! which is how a call whose far end ignores the route set fails in the field. It keeps no
//! transactions: the ACK for a non-2xx and CANCEL are not modelled.
//!
//! ```
//! use session_sip::{HeaderName, Method, Uri};
//! use session_simnet::proxy::RecordRoutingProxy;
//! use session_simnet::sip::ScriptedPeer;
//! use session_types::StatusCode;
//!
//! let mut proxy = RecordRoutingProxy::loose("p1", "127.0.0.1:5070".parse()?);
//! let mut alice = ScriptedPeer::new("alice", "127.0.0.1:5071".parse()?, Uri::parse("sip:bob@127.0.0.1:5072")?);
//! let mut bob = ScriptedPeer::new("bob", "127.0.0.1:5072".parse()?, Uri::parse("sip:alice@127.0.0.1:5071")?);
//! let invite = proxy.forward_request(&alice.invite())?;
//! assert_eq!(invite.next_hop, bob.address());
//! let seen = bob.expect_request(Some(invite.request.to_bytes()), Method::Invite)?;
//! let ok = proxy.forward_response(&bob.respond(&seen, StatusCode::OK))?;
//! assert_eq!(ok.next_hop, alice.address());
//! alice.expect_response(Some(ok.response.to_bytes()), StatusCode::OK)?;
//! assert_eq!(alice.route_set(), ["<sip:127.0.0.1:5070;lr>"]);
//! // Alice's BYE follows the route set, so the proxy forwards it to Bob's Contact.
//! let bye = proxy.forward_request(&alice.bye())?;
//! assert_eq!(bye.request.headers.count(HeaderName::Route), 0, "the proxy took its Route off");
//! assert_eq!(bye.next_hop, bob.address());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use session_sip::{Header, HeaderName, Headers, Method, NameAddr, Request, Response, Uri, Via};
use std::net::{IpAddr, SocketAddr};

/// Why the proxy would not forward a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A request inside a dialog reached the proxy without naming it: the sender ignored the
    /// route set (a real proxy answers 404 or drops it).
    #[error("{method} {request_uri} inside a dialog does not route through {proxy}")]
    NotRoutedThroughUs {
        /// The request's method.
        method: String,
        /// Its Request-URI.
        request_uri: String,
        /// The proxy's name.
        proxy: String,
    },
    /// The next hop (a Route or the Request-URI) has no IP literal host the test network
    /// can deliver to.
    #[error("no IP address to forward {0} to")]
    NoNextHop(String),
    /// A response whose top Via is not the proxy's, or that has no Via left below it.
    #[error("response not for {proxy}: {reason}")]
    NotOurResponse {
        /// The proxy's name.
        proxy: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// Max-Forwards reached zero (§16.3 would answer 483).
    #[error("too many hops")]
    TooManyHops,
}

/// A request on its way on, and where it goes.
#[derive(Debug, Clone)]
pub struct ForwardedRequest {
    /// The request as the proxy sends it.
    pub request: Request,
    /// The address it goes to.
    pub next_hop: SocketAddr,
}

/// A response on its way back, and where it goes.
#[derive(Debug, Clone)]
pub struct ForwardedResponse {
    /// The response without the proxy's Via.
    pub response: Response,
    /// The address of the Via now on top.
    pub next_hop: SocketAddr,
}

/// A stateless, record-routing proxy at one address. See the module docs.
#[derive(Debug, Clone)]
pub struct RecordRoutingProxy {
    name: String,
    address: SocketAddr,
    /// The Record-Route line it inserts.
    record_route: String,
    /// Where requests outside a dialog go instead of their Request-URI.
    initial_next_hop: Option<SocketAddr>,
    counter: u64,
}

impl RecordRoutingProxy {
    /// A loose-routing proxy (§16.12): it records `<sip:ADDRESS;lr>`.
    pub fn loose(name: &str, address: SocketAddr) -> Self {
        Self::with_record_route(name, address, &format!("<sip:{address};lr>"))
    }

    /// A strict-routing proxy (RFC 2543 style, no `lr`): it records `<sip:ADDRESS>` and
    /// expects to be the Request-URI of the requests that follow (§16.12.1.2).
    pub fn strict(name: &str, address: SocketAddr) -> Self {
        Self::with_record_route(name, address, &format!("<sip:{address}>"))
    }

    /// A proxy that writes `record_route` as its Record-Route line, as written: parameters
    /// (`;lr;ftag=…`), or several values in one line (a proxy recording two of its
    /// interfaces, each of which must name `address` for the proxy to recognise it).
    pub fn with_record_route(name: &str, address: SocketAddr, record_route: &str) -> Self {
        Self {
            name: name.to_owned(),
            address,
            record_route: record_route.to_owned(),
            initial_next_hop: None,
            counter: 0,
        }
    }

    /// Sends requests outside a dialog to `next` (the next proxy of a chain, or the server a
    /// dispatcher chose, as Kamailio's `$du`) rather than to their Request-URI. Requests inside
    /// a dialog still follow their Route.
    #[must_use]
    pub fn sending_initial_requests_to(mut self, next: SocketAddr) -> Self {
        self.initial_next_hop = Some(next);
        self
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The Record-Route line it inserts.
    pub fn record_route(&self) -> &str {
        &self.record_route
    }

    fn is_us(&self, uri: &Uri) -> bool {
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        host.parse::<IpAddr>()
            .is_ok_and(|ip| ip == self.address.ip())
            && uri.port().unwrap_or(5060) == self.address.port()
    }

    /// Forwards `request` (§16.6) after route processing (§16.4): a Request-URI naming the
    /// proxy (the previous hop routed strictly) is replaced by the last Route; Route values
    /// naming the proxy are taken off the top; a request with a To tag that named the proxy in
    /// neither place is refused. Max-Forwards goes down by one, the proxy's Via goes on top,
    /// and a request that can create a dialog gets the proxy's Record-Route in front of the
    /// others. The next hop is the top Route left, or else the configured next hop for a
    /// request outside a dialog ([`RecordRoutingProxy::sending_initial_requests_to`]), or else
    /// the Request-URI.
    pub fn forward_request(&mut self, request: &Request) -> Result<ForwardedRequest, ProxyError> {
        let mut routes: Vec<String> = request
            .headers
            .values(HeaderName::Route)
            .map(str::to_owned)
            .collect();
        let mut uri = request.uri.clone();
        let mut named = false;
        if self.is_us(&uri)
            && let Some(last) = routes.pop()
        {
            // §16.4: the previous hop was a strict router; the real target is the last Route.
            uri = NameAddr::parse(&last)
                .map(|n| n.uri())
                .map_err(|_| ProxyError::NoNextHop(last.clone()))?;
            named = true;
        }
        while routes
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .is_some_and(|r| self.is_us(&r.uri()))
        {
            routes.remove(0);
            named = true;
        }
        let in_dialog = request.to().is_ok_and(|to| to.tag().is_some());
        if in_dialog && !named {
            return Err(ProxyError::NotRoutedThroughUs {
                method: request.method.as_str().to_owned(),
                request_uri: request.uri.to_string(),
                proxy: self.name.clone(),
            });
        }
        let hops = match request.max_forwards() {
            Some(Ok(0)) => return Err(ProxyError::TooManyHops),
            Some(Ok(n)) => n - 1,
            _ => 70,
        };
        let creates_dialog = !in_dialog
            && matches!(
                request.method,
                Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
            );
        self.counter += 1;
        let via = format!(
            "SIP/2.0/UDP {};branch=z9hG4bK-{}-{}",
            self.address, self.name, self.counter
        );
        let mut headers = Headers::new();
        headers.push(Header::new(HeaderName::Via, via));
        let mut record_routed = !creates_dialog;
        for header in request.headers.iter() {
            match header.name() {
                HeaderName::Route => {}
                HeaderName::MaxForwards => {
                    headers.push(Header::new(HeaderName::MaxForwards, hops.to_string()));
                }
                HeaderName::RecordRoute if !record_routed => {
                    // §16.6 step 4: in front of the Record-Route values already there.
                    headers.push(Header::new(HeaderName::RecordRoute, &*self.record_route));
                    headers.push(header.clone());
                    record_routed = true;
                }
                _ => headers.push(header.clone()),
            }
        }
        if !record_routed {
            headers.push(Header::new(HeaderName::RecordRoute, &*self.record_route));
        }
        for route in &routes {
            headers.push(Header::new(HeaderName::Route, route.as_str()));
        }
        let next_hop = match (routes.first(), self.initial_next_hop) {
            (Some(route), _) => NameAddr::parse(route)
                .ok()
                .and_then(|n| ip_of(&n.uri()))
                .ok_or_else(|| ProxyError::NoNextHop(route.clone()))?,
            (None, Some(next)) if !in_dialog => next,
            (None, _) => ip_of(&uri).ok_or_else(|| ProxyError::NoNextHop(uri.to_string()))?,
        };
        let mut forwarded = request.clone();
        forwarded.uri = uri;
        forwarded.headers = headers;
        Ok(ForwardedRequest {
            request: forwarded,
            next_hop,
        })
    }

    /// Passes `response` back (§16.7): takes the proxy's Via off the top; the next hop is the
    /// Via below it.
    pub fn forward_response(&self, response: &Response) -> Result<ForwardedResponse, ProxyError> {
        let not_ours = |reason| ProxyError::NotOurResponse {
            proxy: self.name.clone(),
            reason,
        };
        let top = response.top_via().map_err(|_| not_ours("no Via"))?;
        let sent_by = ip_port(top.host, top.port);
        if sent_by != Some(self.address) {
            return Err(not_ours("the top Via is another's"));
        }
        let mut headers = Headers::new();
        let mut popped = false;
        for header in response.headers.iter() {
            if header.name() == HeaderName::Via && !popped {
                popped = true;
                // The proxy wrote its Via as a line of its own; should the far end have joined
                // the lines, what follows the first comma belongs to the hops below.
                if let Some((_, below)) = header.value().split_once(',') {
                    headers.push(Header::new(HeaderName::Via, below.trim()));
                }
                continue;
            }
            headers.push(header.clone());
        }
        let mut forwarded = response.clone();
        forwarded.headers = headers;
        let below = forwarded
            .top_via()
            .map_err(|_| not_ours("no Via below the proxy's"))?;
        let next_hop = next_hop_of(&below).ok_or_else(|| not_ours("the next Via has no IP"))?;
        Ok(ForwardedResponse {
            response: forwarded,
            next_hop,
        })
    }
}

fn ip_port(host: &str, port: Option<u16>) -> Option<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port.unwrap_or(5060)))
}

fn ip_of(uri: &Uri) -> Option<SocketAddr> {
    ip_port(uri.host(), uri.port())
}

/// Where a response goes back to (§18.2.2): `received`/`rport` when present, else sent-by.
fn next_hop_of(via: &Via<'_>) -> Option<SocketAddr> {
    let sent_by = ip_port(via.host, via.port)?;
    let ip = via
        .received()
        .and_then(|r| r.parse().ok())
        .unwrap_or(sent_by.ip());
    let port = via.rport().flatten().unwrap_or(sent_by.port());
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ScriptedPeer;
    use session_types::StatusCode;

    fn peers() -> (ScriptedPeer, ScriptedPeer) {
        let uri = |text: &str| Uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let alice = ScriptedPeer::new(
            "alice",
            SocketAddr::from(([127, 0, 0, 1], 5071)),
            uri("sip:bob@127.0.0.1:5072"),
        );
        let bob = ScriptedPeer::new(
            "bob",
            SocketAddr::from(([127, 0, 0, 1], 5072)),
            uri("sip:alice@127.0.0.1:5071"),
        );
        (alice, bob)
    }

    #[test]
    fn a_request_in_a_dialog_that_skips_the_proxy_is_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        let mut proxy = RecordRoutingProxy::loose("p1", SocketAddr::from(([127, 0, 0, 1], 5070)));
        let (mut alice, mut bob) = peers();
        let invite = proxy.forward_request(&alice.invite())?;
        let seen = bob.expect_request(Some(invite.request.to_bytes()), Method::Invite)?;
        // A callee that drops Record-Route from its 200: the caller's route set stays empty.
        let mut ok = bob.respond(&seen, StatusCode::OK);
        ok.headers.remove_all(HeaderName::RecordRoute);
        alice.expect_response(
            Some(proxy.forward_response(&ok)?.response.to_bytes()),
            StatusCode::OK,
        )?;
        assert!(alice.route_set().is_empty());
        let refused = proxy.forward_request(&alice.ack());
        assert!(
            matches!(refused, Err(ProxyError::NotRoutedThroughUs { ref method, .. }) if method == "ACK"),
            "{refused:?}"
        );
        Ok(())
    }

    #[test]
    fn a_strict_router_takes_the_request_uri_from_the_last_route()
    -> Result<(), Box<dyn std::error::Error>> {
        let address = SocketAddr::from(([127, 0, 0, 1], 5070));
        let mut proxy = RecordRoutingProxy::strict("p1", address);
        let (mut alice, mut bob) = peers();
        let invite = proxy.forward_request(&alice.invite())?;
        let seen = bob.expect_request(Some(invite.request.to_bytes()), Method::Invite)?;
        let ok = proxy.forward_response(&bob.respond(&seen, StatusCode::OK))?;
        alice.expect_response(Some(ok.response.to_bytes()), StatusCode::OK)?;
        let bye = alice.bye();
        assert_eq!(
            bye.uri.as_str(),
            "sip:127.0.0.1:5070",
            "§12.2.1.1 strict routing"
        );
        let forwarded = proxy.forward_request(&bye)?;
        assert_eq!(forwarded.request.uri.as_str(), "sip:bob@127.0.0.1:5072");
        assert_eq!(forwarded.request.headers.count(HeaderName::Route), 0);
        assert_eq!(forwarded.next_hop, bob.address());
        Ok(())
    }
}
