//! A scripted SIP peer for wire-level tests: it writes the far side's messages from short
//! templates and checks what the system under test sent, so a test reads like an RFC 3261
//! call flow instead of a page of hand-written message text.
//!
//! [`ScriptedPeer`] keeps the dialog state a real user agent would (Call-ID, tags, CSeq, the
//! last INVITE and the peer's remote target) and learns the other side's tag and Contact from
//! what it is shown through [`ScriptedPeer::expect_request`] and
//! [`ScriptedPeer::expect_response`]. Branches, tags and Call-IDs are numbered, not random,
//! so the same script always produces the same bytes.
//!
//! ```
//! use session_sip::{Method, Uri};
//! use session_simnet::sip::ScriptedPeer;
//! use session_types::StatusCode;
//!
//! // Alice calls the system under test (here a second scripted peer plays it).
//! let mut alice = ScriptedPeer::new("alice", "127.0.0.1:5070".parse()?, Uri::parse("sip:bob@127.0.0.1:5060")?);
//! let mut bob = ScriptedPeer::new("bob", "127.0.0.1:5060".parse()?, Uri::parse("sip:alice@127.0.0.1:5070")?);
//! let invite = alice.invite();
//! let seen = bob.expect_request(Some(invite.to_bytes()), Method::Invite)?;
//! let ok = bob.respond(&seen, StatusCode::OK);
//! alice.expect_response(Some(ok.to_bytes()), StatusCode::OK)?;
//! let ack = alice.ack();
//! assert_eq!(ack.to()?.tag(), ok.to()?.tag(), "the ACK is in the dialog the 2xx made");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bytes::Bytes;
use session_sip::{Header, HeaderName, Message, Method, NameAddr, Request, Response, Uri};
use session_types::StatusCode;
use std::net::SocketAddr;

/// What went wrong when checking a message from the system under test.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// Nothing was sent where the script expected a message.
    #[error("expected {expected}, but nothing was sent")]
    NothingSent {
        /// What the script expected.
        expected: String,
    },
    /// The bytes do not parse as SIP.
    #[error("expected {expected}, but the bytes do not parse: {source}")]
    Unparsable {
        /// What the script expected.
        expected: String,
        /// The parser's complaint.
        source: session_sip::Error,
    },
    /// Another message was sent.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the script expected.
        expected: String,
        /// The start line of what was sent.
        got: String,
    },
}

/// The far side of a call, scripted by a test. See the module docs.
#[derive(Clone, Debug)]
pub struct ScriptedPeer {
    user: String,
    address: SocketAddr,
    transport: &'static str,
    /// Whom out-of-dialog requests go to (the Request-URI and To of an INVITE).
    target: Uri,
    call_id: String,
    /// Our From (as caller) or To (as callee) value, with our tag.
    local_party: String,
    /// The other side's value, with its tag once known.
    remote_party: String,
    /// Where in-dialog requests go: the other side's Contact, once known.
    remote_target: Uri,
    local_seq: u32,
    /// The last INVITE we sent (for its ACK and CANCEL).
    invite: Option<Request>,
    /// Route values in the order our in-dialog requests list them (RFC 3261 §12.1).
    route_set: Vec<String>,
    /// A 2xx fixed the route set: later responses (to a re-INVITE) do not change it
    /// (§12.2.1.2).
    route_set_fixed: bool,
    counter: u64,
}

fn start_line(message: &Message) -> String {
    match message {
        Message::Request(r) => format!("{} {}", r.method.as_str(), r.uri.as_str()),
        Message::Response(r) => {
            let method = r.cseq().map(|c| c.method.as_str().to_owned());
            format!(
                "{} {} (for {})",
                r.status.as_u16(),
                r.reason,
                method.unwrap_or_else(|_| "?".into())
            )
        }
    }
}

fn contact_uri(value: Option<&str>) -> Option<Uri> {
    match session_sip::Contact::parse(value?).ok()? {
        session_sip::Contact::Addr(addr) => Some(addr.uri()),
        session_sip::Contact::Star => None,
    }
}

fn tag_of(value: &str) -> Option<String> {
    NameAddr::parse(value).ok()?.tag().map(str::to_owned)
}

impl ScriptedPeer {
    /// A peer named `user` at `address` (written in its Via and Contact) whose INVITEs go to
    /// `target`. It speaks UDP until [`ScriptedPeer::over_tcp`].
    pub fn new(user: &str, address: SocketAddr, target: Uri) -> Self {
        let mut peer = Self {
            user: user.to_owned(),
            address,
            transport: "UDP",
            remote_party: format!("<{target}>"),
            remote_target: target.clone(),
            target,
            call_id: String::new(),
            local_party: String::new(),
            local_seq: 0,
            invite: None,
            route_set: Vec::new(),
            route_set_fixed: false,
            counter: 0,
        };
        peer.new_call();
        peer
    }

    /// Writes TCP in the Via of the requests it makes.
    #[must_use]
    pub fn over_tcp(mut self) -> Self {
        self.transport = "TCP";
        self
    }

    /// Forgets the current call and starts the next one: a new Call-ID and From tag, CSeq 1.
    pub fn new_call(&mut self) {
        let n = self.next();
        self.call_id = format!("{}-{n}@{}", self.user, self.address.ip());
        self.local_party = format!(
            "<sip:{}@{}>;tag={}-tag-{n}",
            self.user, self.address, self.user
        );
        self.remote_party = format!("<{}>", self.target);
        self.remote_target = self.target.clone();
        self.local_seq = 0;
        self.invite = None;
        self.route_set.clear();
        self.route_set_fixed = false;
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The Call-ID of the current call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Our tag in the current call.
    pub fn local_tag(&self) -> Option<String> {
        tag_of(&self.local_party)
    }

    /// The other side's tag, once a response or request showed it.
    pub fn remote_tag(&self) -> Option<String> {
        tag_of(&self.remote_party)
    }

    /// The dialog's route set, in the order our requests list it: the INVITE's Record-Route
    /// as callee, the answer's reversed as caller (RFC 3261 §12.1).
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// Pretends the current call already has a dialog with the other side's tag `tag` (e.g.
    /// to send a request for a dialog the system under test does not know).
    pub fn assume_remote_tag(&mut self, tag: &str) {
        self.remote_party = format!("<{}>;tag={tag}", self.target);
    }

    fn via(&mut self) -> String {
        let n = self.next();
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK-{}-{n};rport",
            self.transport, self.address, self.user
        )
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.address)
    }

    /// A request with the dialog's headers: `uri`, a fresh Via, Max-Forwards, the route set
    /// once the dialog exists (§12.2.1.1: loose or strict routing), From, To, Call-ID, CSeq
    /// `seq` and Content-Length 0.
    fn build(&mut self, method: Method, uri: Uri, seq: u32) -> Request {
        let via = self.via();
        let in_dialog = self.remote_tag().is_some();
        let (uri, routes) = match self.route_set.first() {
            Some(first) if in_dialog => {
                let first = NameAddr::parse(first).ok().map(|n| n.uri());
                match first {
                    Some(first) if first.param("lr").is_none() => {
                        // Strict routing: the first route is the Request-URI, the remote
                        // target the last Route.
                        let mut routes = self.route_set[1..].to_vec();
                        routes.push(format!("<{uri}>"));
                        (first, routes)
                    }
                    _ => (uri, self.route_set.clone()),
                }
            }
            _ => (uri, Vec::new()),
        };
        let mut builder = Request::builder(method.clone(), uri)
            .header(HeaderName::Via, via)
            .max_forwards(70);
        for route in routes {
            builder = builder.header(HeaderName::Route, route);
        }
        let mut request = builder
            .header(HeaderName::From, self.local_party.clone())
            .header(HeaderName::To, self.remote_party.clone())
            .call_id(&self.call_id)
            .header(HeaderName::CSeq, format!("{seq} {}", method.as_str()))
            .build();
        if matches!(method, Method::Invite | Method::Update | Method::Subscribe) {
            request
                .headers
                .push(Header::new(HeaderName::Contact, self.contact()));
        }
        request
    }

    /// An INVITE opening the current call (or, once the dialog exists, a re-INVITE in it).
    pub fn invite(&mut self) -> Request {
        self.invite_with_body(None)
    }

    /// An INVITE carrying `body` as `(content type, bytes)`.
    pub fn invite_with_body(&mut self, body: Option<(&str, Bytes)>) -> Request {
        self.local_seq += 1;
        let uri = self.remote_target.clone();
        let mut invite = self.build(Method::Invite, uri, self.local_seq);
        if let Some((content_type, bytes)) = body {
            set_body(&mut invite.headers, content_type, bytes.len());
            invite.body = bytes;
        }
        self.invite = Some(invite.clone());
        invite
    }

    /// The ACK for a 2xx to our last INVITE (§13.2.2.4): a new branch, the INVITE's CSeq
    /// number, To with the tag the 2xx carried, sent to the 2xx's Contact.
    pub fn ack(&mut self) -> Request {
        let seq = self.invite_seq();
        let uri = self.remote_target.clone();
        self.build(Method::Ack, uri, seq)
    }

    /// The ACK for a failure response to our last INVITE (§17.1.1.3): the INVITE's branch
    /// and Request-URI, To from the response.
    pub fn ack_failure(&mut self, response: &Response) -> Request {
        let mut ack = self.mirror_invite(Method::Ack);
        if let Some(to) = response.headers.get(HeaderName::To) {
            ack.headers.remove_all(HeaderName::To);
            ack.headers.push(to.clone());
        }
        ack
    }

    /// The CANCEL for our last INVITE (§9.1): its branch, Request-URI, From, To and CSeq
    /// number.
    pub fn cancel(&mut self) -> Request {
        self.mirror_invite(Method::Cancel)
    }

    fn invite_seq(&self) -> u32 {
        self.invite
            .as_ref()
            .and_then(|i| i.cseq().ok())
            .map_or(self.local_seq, |c| c.seq)
    }

    fn mirror_invite(&mut self, method: Method) -> Request {
        let Some(invite) = &self.invite else {
            // No INVITE yet: a CANCEL or ACK for nothing (what the script asked for), still
            // well formed.
            let uri = self.remote_target.clone();
            return self.build(method, uri, self.local_seq.max(1));
        };
        let mut request = Request::builder(method.clone(), invite.uri.clone()).build();
        request.headers = session_sip::Headers::new();
        for header in invite.headers.iter() {
            match header.name() {
                HeaderName::Via
                | HeaderName::MaxForwards
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::Route => request.headers.push(header.clone()),
                _ => {}
            }
        }
        request.headers.push(Header::new(
            HeaderName::CSeq,
            format!("{} {}", self.invite_seq(), method.as_str()),
        ));
        request
            .headers
            .push(Header::new(HeaderName::ContentLength, "0"));
        request
    }

    /// BYE in the current dialog.
    pub fn bye(&mut self) -> Request {
        self.request(Method::Bye)
    }

    /// Any request in the current dialog (BYE, INFO, UPDATE, re-INVITE …) with the next CSeq.
    pub fn request(&mut self, method: Method) -> Request {
        if method == Method::Invite {
            return self.invite();
        }
        self.local_seq += 1;
        let uri = self.remote_target.clone();
        self.build(method, uri, self.local_seq)
    }

    /// Our response to `request` with `status`: its Via, From, To, Call-ID and CSeq, To
    /// tagged with our tag (not on 100 Trying, §8.2.6.1), and our Contact on a 1xx/2xx to an
    /// INVITE.
    pub fn respond(&mut self, request: &Request, status: StatusCode) -> Response {
        let has_tag = request.to().is_ok_and(|to| to.tag().is_some());
        let tag = (!has_tag && status != StatusCode::TRYING)
            .then(|| self.local_tag())
            .flatten();
        let mut response = Response::from_request_with_tag(request, status, tag.as_deref());
        if request.method == Method::Invite && status != StatusCode::TRYING && status.as_u16() < 300
        {
            response
                .headers
                .push(Header::new(HeaderName::Contact, self.contact()));
        }
        response
    }

    /// Checks that `sent` is a request with `method` and learns from it: an INVITE that opens
    /// a call makes this peer the callee of that call (its Call-ID, the caller's tag and
    /// Contact); any request refreshes the remote target from its Contact.
    pub fn expect_request<B: Into<Bytes>>(
        &mut self,
        sent: Option<B>,
        method: Method,
    ) -> Result<Request, ScriptError> {
        let expected = format!("a {} request", method.as_str());
        match parse(sent, &expected)? {
            Message::Request(request) if request.method == method => {
                self.learn_request(&request);
                Ok(request)
            }
            other => Err(ScriptError::Unexpected {
                expected,
                got: start_line(&other),
            }),
        }
    }

    /// Checks that `sent` is a response with `status` and learns from it: a response to our
    /// INVITE with a To tag sets the dialog's remote tag and target.
    pub fn expect_response<B: Into<Bytes>>(
        &mut self,
        sent: Option<B>,
        status: StatusCode,
    ) -> Result<Response, ScriptError> {
        let expected = format!("a {} response", status.as_u16());
        match parse(sent, &expected)? {
            Message::Response(response) if response.status == status => {
                self.learn_response(&response);
                Ok(response)
            }
            other => Err(ScriptError::Unexpected {
                expected,
                got: start_line(&other),
            }),
        }
    }

    fn learn_request(&mut self, request: &Request) {
        let opens_call = request.method == Method::Invite
            && request.to().is_ok_and(|to| to.tag().is_none())
            && request.call_id().is_ok_and(|id| id != self.call_id);
        if opens_call {
            let n = self.next();
            self.call_id = request.call_id().unwrap_or_default().to_owned();
            let to = request.headers.get_str(HeaderName::To).unwrap_or_default();
            self.local_party = format!("{to};tag={}-tag-{n}", self.user);
            self.remote_party = request
                .headers
                .get_str(HeaderName::From)
                .unwrap_or_default()
                .to_owned();
            self.local_seq = 0;
            self.invite = None;
            // §12.1.1: the callee's route set is the Record-Route of the request, in order.
            self.route_set = request
                .headers
                .values(HeaderName::RecordRoute)
                .map(str::to_owned)
                .collect();
            self.route_set_fixed = true;
        }
        if let Some(uri) = contact_uri(request.headers.values(HeaderName::Contact).next()) {
            self.remote_target = uri;
        }
    }

    fn learn_response(&mut self, response: &Response) {
        let to_invite = response.cseq().is_ok_and(|c| c.method == Method::Invite);
        if !to_invite || response.call_id().ok() != Some(self.call_id.as_str()) {
            return;
        }
        if let Some(to) = response.headers.get_str(HeaderName::To)
            && tag_of(to).is_some()
        {
            self.remote_party = to.to_owned();
            // §12.1.2: the caller's route set is the answer's Record-Route, reversed; a 2xx
            // fixes it (a 1xx made an early one it replaces).
            if !self.route_set_fixed && response.status.as_u16() < 300 {
                self.route_set = response
                    .headers
                    .values(HeaderName::RecordRoute)
                    .map(str::to_owned)
                    .collect();
                self.route_set.reverse();
                self.route_set_fixed = response.status.is_success();
            }
        }
        if let Some(uri) = contact_uri(response.headers.values(HeaderName::Contact).next()) {
            self.remote_target = uri;
        }
    }
}

fn set_body(headers: &mut session_sip::Headers, content_type: &str, len: usize) {
    headers.remove_all(HeaderName::ContentLength);
    headers.push(Header::new(HeaderName::ContentType, content_type));
    headers.push(Header::new(HeaderName::ContentLength, len.to_string()));
}

fn parse<B: Into<Bytes>>(sent: Option<B>, expected: &str) -> Result<Message, ScriptError> {
    let bytes = sent.ok_or_else(|| ScriptError::NothingSent {
        expected: expected.to_owned(),
    })?;
    Message::parse(bytes.into()).map_err(|source| ScriptError::Unparsable {
        expected: expected.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        match Uri::parse(text) {
            Ok(uri) => uri,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    fn pair() -> (ScriptedPeer, ScriptedPeer) {
        let alice = ScriptedPeer::new(
            "alice",
            SocketAddr::from(([127, 0, 0, 1], 5070)),
            uri("sip:bob@127.0.0.1:5060"),
        );
        let bob = ScriptedPeer::new(
            "bob",
            SocketAddr::from(([127, 0, 0, 1], 5060)),
            uri("sip:alice@127.0.0.1:5070"),
        );
        (alice, bob)
    }

    #[test]
    fn a_whole_call_between_two_scripted_peers_is_consistent() -> Result<(), ScriptError> {
        let (mut alice, mut bob) = pair();
        let invite = alice.invite();
        assert!(invite.top_via().is_ok_and(|v| v.is_rfc3261_branch()));
        let seen = bob.expect_request(Some(invite.to_bytes()), Method::Invite)?;
        assert_eq!(bob.call_id(), alice.call_id(), "the callee joined the call");
        let ringing = bob.respond(&seen, StatusCode::RINGING);
        let ok = bob.respond(&seen, StatusCode::OK);
        assert_eq!(
            ringing.to().ok().and_then(|t| t.tag().map(str::to_owned)),
            bob.local_tag()
        );
        alice.expect_response(Some(ringing.to_bytes()), StatusCode::RINGING)?;
        alice.expect_response(Some(ok.to_bytes()), StatusCode::OK)?;
        assert_eq!(alice.remote_tag(), bob.local_tag());
        let ack = alice.ack();
        assert_eq!(
            ack.uri.as_str(),
            "sip:bob@127.0.0.1:5060",
            "to the 2xx's Contact"
        );
        assert_eq!(ack.cseq().map(|c| c.seq).ok(), Some(1));
        assert_ne!(
            ack.top_via()
                .ok()
                .and_then(|v| v.branch().map(str::to_owned)),
            invite
                .top_via()
                .ok()
                .and_then(|v| v.branch().map(str::to_owned)),
            "a 2xx ACK is a new transaction"
        );
        bob.expect_request(Some(ack.to_bytes()), Method::Ack)?;
        // Bob hangs up: his BYE is in the same dialog, seen from his side.
        let bye = bob.bye();
        assert_eq!(
            bye.from().ok().and_then(|f| f.tag().map(str::to_owned)),
            bob.local_tag()
        );
        assert_eq!(
            bye.to().ok().and_then(|t| t.tag().map(str::to_owned)),
            alice.local_tag()
        );
        assert_eq!(bye.uri.as_str(), "sip:alice@127.0.0.1:5070");
        let seen = alice.expect_request(Some(bye.to_bytes()), Method::Bye)?;
        let done = alice.respond(&seen, StatusCode::OK);
        bob.expect_response(Some(done.to_bytes()), StatusCode::OK)?;
        Ok(())
    }

    #[test]
    fn cancel_and_failure_ack_mirror_the_invite() {
        let (mut alice, mut bob) = pair();
        let invite = alice.invite();
        let cancel = alice.cancel();
        let branch = |r: &Request| r.top_via().ok().and_then(|v| v.branch().map(str::to_owned));
        assert_eq!(branch(&cancel), branch(&invite));
        assert_eq!(cancel.uri, invite.uri);
        assert_eq!(cancel.headers.get_str(HeaderName::CSeq), Some("1 CANCEL"));
        let busy = bob.respond(&invite, StatusCode::BUSY_HERE);
        let ack = alice.ack_failure(&busy);
        assert_eq!(branch(&ack), branch(&invite));
        assert_eq!(ack.headers.get_str(HeaderName::CSeq), Some("1 ACK"));
        assert_eq!(
            ack.to().ok().and_then(|t| t.tag().map(str::to_owned)),
            bob.local_tag()
        );
    }

    #[test]
    fn expectations_say_what_was_wrong() {
        let (mut alice, mut bob) = pair();
        let missing = bob.expect_request(None::<Bytes>, Method::Invite);
        assert!(matches!(missing, Err(ScriptError::NothingSent { .. })));
        let wrong = bob.expect_request(Some(alice.bye().to_bytes()), Method::Invite);
        assert!(
            matches!(&wrong, Err(ScriptError::Unexpected { got, .. }) if got.starts_with("BYE ")),
            "{wrong:?}"
        );
        let garbage = bob.expect_response(Some(Bytes::from_static(b"hello")), StatusCode::OK);
        assert!(matches!(garbage, Err(ScriptError::Unparsable { .. })));
        let invite = alice.invite();
        let ringing = bob.respond(&invite, StatusCode::RINGING);
        let status = alice.expect_response(Some(ringing.to_bytes()), StatusCode::OK);
        assert!(
            matches!(&status, Err(ScriptError::Unexpected { got, .. }) if got.starts_with("180 ")),
            "{status:?}"
        );
    }

    #[test]
    fn a_cancel_without_invite_is_still_well_formed() {
        let (mut alice, _) = pair();
        let cancel = alice.cancel();
        assert!(cancel.top_via().is_ok() && cancel.call_id().is_ok());
        assert_eq!(cancel.headers.get_str(HeaderName::CSeq), Some("1 CANCEL"));
        alice.assume_remote_tag("gone");
        assert_eq!(
            alice
                .bye()
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_owned)),
            Some("gone".to_owned())
        );
    }

    #[test]
    fn the_same_script_makes_the_same_bytes() {
        let (mut a1, _) = pair();
        let (mut a2, _) = pair();
        assert_eq!(a1.invite().to_bytes(), a2.invite().to_bytes());
        a1.new_call();
        assert_ne!(a1.call_id(), a2.call_id());
    }
}
