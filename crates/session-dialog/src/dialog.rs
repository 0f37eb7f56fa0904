//! One SIP dialog (RFC 3261 §12): its id, sequence numbers, route set and remote target, and
//! how in-dialog requests are built from them (§12.2.1.1, loose and strict routing).

use crate::endpoint::Protocol;
use crate::map::DialogRef;
use session_sip::{Header, HeaderName, Method, NameAddr, Request, Response, Uri};
use session_types::{CallId, DialogId};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Early (after a 1xx with a To tag) or confirmed (after a 2xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
}

/// A dialog, seen from our side.
#[derive(Clone, Debug)]
pub struct Dialog {
    /// Call-ID, local tag, remote tag.
    pub id: DialogId,
    /// Early or confirmed.
    pub state: DialogState,
    /// Whether we sent the INVITE that created it (we own the Call-ID, §14.1).
    pub we_are_uac: bool,
    /// The CSeq of our last request in the dialog.
    pub local_seq: u32,
    /// The CSeq of the peer's last request, once it sent one.
    pub remote_seq: Option<u32>,
    /// Our From (UAC) or To (UAS) value, with our tag: written as From in our requests.
    pub local_party: String,
    /// The peer's value with its tag: written as To in our requests.
    pub remote_party: String,
    /// Where requests go: the peer's Contact URI.
    pub remote_target: Uri,
    /// Route values (`<sip:proxy;lr>`) in the order our requests list them.
    pub route_set: Vec<String>,
    /// The address we last exchanged messages with, used when the next hop is not an IP literal.
    pub peer: SocketAddr,
    /// The transport in use.
    pub protocol: Protocol,
    /// The DiffServ mark of our messages in the dialog when it is not the socket's own
    /// (`Transmit::dscp`): the priority of the session it carries decides it. New dialogs
    /// take their INVITE transaction's mark.
    pub dscp: Option<u8>,
}

fn contact_uri(headers_contact: Option<&str>) -> Option<Uri> {
    let value = headers_contact?;
    match session_sip::Contact::parse(value).ok()? {
        session_sip::Contact::Addr(addr) => Some(addr.uri()),
        session_sip::Contact::Star => None,
    }
}

/// [`contact_uri`] for a Contact value that validation parsed already (every request the
/// endpoint passes up was validated, and with it each of its Contact values): the two usual
/// forms, `<URI>` with or without parameters and a bare `URI` ended by its parameters, have
/// only their URI read again; any other (a display name, `*`) goes through [`contact_uri`].
fn validated_contact_uri(value: Option<&str>) -> Option<Uri> {
    let value = value?.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    let uri = match bytes.first() {
        // `<URI>…`: the URI ends at the first `>` (RFC 3261 §20.10).
        Some(b'<') => {
            let inner = value.get(1..)?;
            inner.get(..inner.find('>')?)
        }
        // A bare URI cannot hold `;`, `,` or `?` (§20.10): the first `;` starts the parameters.
        Some(_)
            if !bytes
                .iter()
                .any(|b| matches!(b, b'<' | b'"' | b',' | b'?' | b'*')) =>
        {
            let end = value.find(';').unwrap_or(value.len());
            value.get(..end).map(|uri| uri.trim_matches([' ', '\t']))
        }
        _ => None,
    };
    match uri {
        Some(uri) => Uri::parse(uri).ok(),
        None => contact_uri(Some(value)),
    }
}

/// The first Contact value of `request`, as `headers.values(Contact).next()` gives it. For
/// speed, a first Contact line without a comma (one value, the usual case) is taken as it is,
/// without the list splitter: [`validated_contact_uri`] trims it as the splitter would.
fn first_contact(request: &Request) -> Option<&str> {
    request
        .headers
        .get_str(HeaderName::Contact)
        .filter(|line| !line.as_bytes().contains(&b','))
        .or_else(|| request.headers.values(HeaderName::Contact).next())
}

fn tag_of(value: &str) -> Option<String> {
    NameAddr::parse(value).ok()?.tag().map(str::to_owned)
}

/// What a UAC keeps of an INVITE it sent to make dialogs from its answers (several, when a
/// proxy forks it): far less than the request itself.
#[derive(Clone, Debug)]
pub(crate) struct SentInvite {
    /// The From value, with our tag.
    pub(crate) local_party: Box<str>,
    pub(crate) local_tag: std::sync::Arc<str>,
    pub(crate) call_id: CallId,
    pub(crate) seq: u32,
    /// The Request-URI (the remote target when a 2xx has no Contact).
    pub(crate) uri: Uri,
}

impl SentInvite {
    pub(crate) fn of(invite: &Request) -> Option<Self> {
        let local_party = invite.headers.get_str(HeaderName::From)?;
        Some(Self {
            local_tag: invite.from().ok()?.tag()?.into(),
            local_party: local_party.into(),
            call_id: CallId::new(invite.call_id().ok()?),
            seq: invite.cseq().ok()?.seq,
            uri: invite.uri.clone(),
        })
    }
}

impl Dialog {
    /// The dialog a UAC gets from a 1xx (with a To tag) or 2xx answer to its INVITE (§12.1.2).
    pub fn from_uac(
        invite: &Request,
        response: &Response,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> Option<Self> {
        let sent = SentInvite::of(invite)?;
        Self::from_sent_invite(&sent, response, peer, protocol)
    }

    /// [`Dialog::from_uac`] from the parts of the INVITE a UAC keeps.
    pub(crate) fn from_sent_invite(
        invite: &SentInvite,
        response: &Response,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> Option<Self> {
        let local_party = invite.local_party.to_string();
        let remote_party = response.headers.get_str(HeaderName::To)?.to_owned();
        let id = DialogId::new(
            invite.call_id.clone(),
            invite.local_tag.clone(),
            tag_of(&remote_party)?,
        );
        let remote_target = contact_uri(response.headers.values(HeaderName::Contact).next())
            .unwrap_or_else(|| invite.uri.clone());
        // §12.1.2: the route set is the Record-Route of the response, reversed.
        let mut route_set: Vec<String> = response
            .headers
            .values(HeaderName::RecordRoute)
            .map(str::to_owned)
            .collect();
        route_set.reverse();
        Some(Self {
            id,
            state: if response.status.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            we_are_uac: true,
            local_seq: invite.seq,
            remote_seq: None,
            local_party,
            remote_party,
            remote_target,
            route_set,
            peer,
            protocol,
            dscp: None,
        })
    }

    /// The dialog a UAS gets when it answers `invite` with `response` (§12.1.1); the response
    /// carries our To tag.
    pub fn from_uas(
        invite: &Request,
        response: &Response,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> Option<Self> {
        let local_party = response.headers.get_str(HeaderName::To)?.to_owned();
        let local_tag = tag_of(&local_party)?;
        let remote_target = contact_uri(invite.headers.values(HeaderName::Contact).next())?;
        let mut dialog = Self::from_uas_with(
            invite,
            (local_party, local_tag.into()),
            remote_target,
            (peer, protocol),
        )?;
        if !response.status.is_success() {
            dialog.state = DialogState::Early;
        }
        Some(dialog)
    }

    /// [`Dialog::from_uas`] for the 2xx the UA is about to send with To tag `local_tag`
    /// (the INVITE's To had none): nothing is read back from the response.
    pub(crate) fn from_uas_tagged(
        invite: &Request,
        local_tag: &Arc<str>,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> Option<Self> {
        let to = invite.headers.get_str(HeaderName::To)?;
        let mut local_party = String::with_capacity(to.len() + 5 + local_tag.len());
        local_party.push_str(to);
        local_party.push_str(";tag=");
        local_party.push_str(local_tag);
        let remote_target = validated_contact_uri(first_contact(invite))?;
        Self::from_uas_with(
            invite,
            (local_party, Arc::clone(local_tag)),
            remote_target,
            (peer, protocol),
        )
    }

    /// The dialog a UAS gets from `invite`, with our To (`local_party`, our tag) and the peer's
    /// Contact URI.
    fn from_uas_with(
        invite: &Request,
        (local_party, local_tag): (String, Arc<str>),
        remote_target: Uri,
        (peer, protocol): (SocketAddr, Protocol),
    ) -> Option<Self> {
        let remote_party = invite.headers.get_str(HeaderName::From)?.to_owned();
        let remote_tag = invite.from().ok()?.tag()?;
        let id = DialogId::new(CallId::new(invite.call_id().ok()?), local_tag, remote_tag);
        // Most INVITEs come with no Record-Route: then no list is walked (for speed).
        let route_set = match invite.headers.get(HeaderName::RecordRoute) {
            None => Vec::new(),
            Some(_) => invite
                .headers
                .values(HeaderName::RecordRoute)
                .map(str::to_owned)
                .collect(),
        };
        Some(Self {
            id,
            state: DialogState::Confirmed,
            we_are_uac: false,
            local_seq: 0,
            remote_seq: Some(invite.cseq().ok()?.seq),
            local_party,
            remote_party,
            remote_target,
            route_set,
            peer,
            protocol,
            dscp: None,
        })
    }

    /// The dialog id a request received in this dialog carries (To tag is ours).
    pub fn id_of_request(request: &Request) -> Option<DialogId> {
        Self::key_of_request(request).map(DialogRef::to_id)
    }

    /// [`Dialog::id_of_request`] borrowed from the request: finding the dialog allocates
    /// nothing (§12.2.2: Call-ID, To tag, From tag; an RFC 2543 peer may send no From tag).
    pub(crate) fn key_of_request(request: &Request) -> Option<DialogRef<'_>> {
        Self::key_of_request_to(request, request.to().ok()?.tag()?)
    }

    /// [`Dialog::key_of_request`] for a request whose To tag the caller has read already.
    pub(crate) fn key_of_request_to<'a>(
        request: &'a Request,
        local_tag: &'a str,
    ) -> Option<DialogRef<'a>> {
        let remote_tag = request.from().ok()?.tag().unwrap_or_default();
        Some(DialogRef {
            call_id: request.call_id().ok()?,
            local_tag,
            remote_tag,
        })
    }

    /// The dialog id a response to our request carries (From tag is ours).
    pub fn id_of_response(response: &Response) -> Option<DialogId> {
        let from = response.from().ok()?;
        let to = response.to().ok()?;
        Some(DialogId::new(
            CallId::new(response.call_id().ok()?),
            from.tag()?,
            to.tag()?,
        ))
    }

    /// Whether the first route does loose routing (`;lr`), RFC 3261 §16.12.
    fn first_route_is_loose(&self) -> bool {
        self.route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .is_some_and(|r| r.uri().param("lr").is_some())
    }

    /// Request-URI and Route values for the next request (§12.2.1.1).
    fn target_and_routes(&self) -> (Uri, Vec<String>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(_) if self.first_route_is_loose() => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                // Strict routing: the first route becomes the Request-URI and the remote target
                // goes last in the Route list.
                let uri = NameAddr::parse(first)
                    .map(|n| n.uri())
                    .unwrap_or_else(|_| self.remote_target.clone());
                let mut routes: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
                routes.push(format!("<{}>", self.remote_target));
                (uri, routes)
            }
        }
    }

    /// Where the next request goes: the first route, or the remote target, when its host is an
    /// IP address; otherwise the address we last talked to.
    pub fn next_hop(&self) -> SocketAddr {
        let uri = match self.route_set.first().and_then(|r| NameAddr::parse(r).ok()) {
            Some(route) => route.uri(),
            None => self.remote_target.clone(),
        };
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        // §19.1.2: 5061 is the default port of sips: and of ;transport=tls, 5060 of the rest.
        let tls = uri.scheme() == session_sip::Scheme::Sips
            || uri
                .param("transport")
                .flatten()
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let default_port = if tls { 5061 } else { 5060 };
        match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, uri.port().unwrap_or(default_port)),
            Err(_) => self.peer,
        }
    }

    /// Builds an in-dialog request with `method` and a top Via of `via` (the caller makes the
    /// branch). CSeq: one more than the last, except ACK (and CANCEL), which reuse `seq_for_ack`.
    pub fn request(
        &mut self,
        method: Method,
        via: String,
        contact: Option<&Uri>,
        seq_for_ack: Option<u32>,
    ) -> Request {
        let seq = match (method.clone(), seq_for_ack) {
            (Method::Ack | Method::Cancel, Some(seq)) => seq,
            _ => {
                self.local_seq = self.local_seq.wrapping_add(1).max(1);
                self.local_seq
            }
        };
        let (uri, routes) = self.target_and_routes();
        let mut request = Request::builder(method.clone(), uri).build();
        let headers = &mut request.headers;
        *headers = session_sip::Headers::new();
        headers.push(Header::new(HeaderName::Via, via));
        headers.push(Header::new(HeaderName::MaxForwards, "70"));
        for route in routes {
            headers.push(Header::new(HeaderName::Route, route));
        }
        headers.push(Header::new(HeaderName::From, self.local_party.clone()));
        headers.push(Header::new(HeaderName::To, self.remote_party.clone()));
        headers.push(Header::new(HeaderName::CallId, self.id.call_id.as_str()));
        headers.push(Header::new(
            HeaderName::CSeq,
            format!("{seq} {}", method.as_str()),
        ));
        if let Some(contact) = contact
            && matches!(
                method,
                Method::Invite
                    | Method::Update
                    | Method::Refer
                    | Method::Subscribe
                    | Method::Notify
            )
        {
            headers.push(Header::new(HeaderName::Contact, format!("<{contact}>")));
        }
        headers.push(Header::new(HeaderName::ContentLength, "0"));
        request
    }

    /// Checks and records the CSeq of a request the peer sent in this dialog (§12.2.2): a lower
    /// number than the last one is out of order (answer 500).
    pub fn accept_remote_seq(&mut self, seq: u32) -> bool {
        match self.remote_seq {
            Some(last) if seq <= last => false,
            _ => {
                self.remote_seq = Some(seq);
                true
            }
        }
    }

    /// A target refresh (re-INVITE, UPDATE, or their 2xx) brought a new Contact (§12.2).
    pub fn refresh_target(&mut self, contact: Option<&str>) {
        if let Some(uri) = contact_uri(contact) {
            self.remote_target = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_sip::Message;
    use session_types::StatusCode;

    fn parse_request(text: &str) -> Request {
        match Message::parse(text.to_owned()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn invite() -> Request {
        parse_request(
            "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
             Record-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr>\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: c@x\r\nCSeq: 4711 INVITE\r\nContact: <sip:alice@192.0.2.1:5062>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
    }

    fn peer() -> SocketAddr {
        "192.0.2.1:5060".parse().unwrap()
    }

    #[test]
    fn validated_contacts_give_the_uri_the_full_parse_gives() {
        let values = [
            "<sip:alice@192.0.2.1:5062>",
            "<sip:alice@192.0.2.1:5062;transport=tcp>;expires=60;q=0.5",
            "<sips:alice@example.com>",
            "sip:sipp@127.0.0.1:5061",
            "sip:sipp@127.0.0.1:5061;expires=3600",
            "sip:sipp@127.0.0.1 ;expires=3600",
            "  <sip:a@b>  ",
            "Alice <sip:alice@192.0.2.1>",
            "\"Alice <x>\" <sip:alice@192.0.2.1>;expires=1",
            "<tel:+15551234567>",
            "*",
            "",
            "sip:a*b@example.com",
            "<sip:a@b",
        ];
        for value in values {
            let full = contact_uri(Some(value));
            assert_eq!(validated_contact_uri(Some(value)), full, "{value:?}");
        }
        let uri = |value| validated_contact_uri(Some(value)).map(|uri| uri.to_string());
        assert_eq!(
            uri("<sip:alice@192.0.2.1:5062;transport=tcp>;expires=60").as_deref(),
            Some("sip:alice@192.0.2.1:5062;transport=tcp")
        );
        assert_eq!(
            uri("sip:sipp@127.0.0.1:5061;expires=3600").as_deref(),
            Some("sip:sipp@127.0.0.1:5061")
        );
        assert_eq!(uri("*"), None);
        assert_eq!(validated_contact_uri(None), None);
    }

    #[test]
    fn uas_dialog_routes_through_the_record_route_in_order() {
        let req = invite();
        let ok = Response::from_request_with_tag(&req, StatusCode::OK, Some("b"));
        let mut dialog = Dialog::from_uas(&req, &ok, peer(), Protocol::Udp).unwrap();
        assert_eq!(dialog.id, DialogId::new(CallId::from("c@x"), "b", "a"));
        assert_eq!(dialog.remote_seq, Some(4711));
        let bye = dialog.request(
            Method::Bye,
            "SIP/2.0/UDP me;branch=z9hG4bK2".into(),
            None,
            None,
        );
        assert_eq!(
            bye.uri.as_str(),
            "sip:alice@192.0.2.1:5062",
            "loose routing keeps the remote target"
        );
        let routes: Vec<&str> = bye.headers.values(HeaderName::Route).collect();
        assert_eq!(
            routes,
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        assert_eq!(bye.from().unwrap().tag(), Some("b"));
        assert_eq!(bye.to().unwrap().tag(), Some("a"));
        assert_eq!(bye.cseq().unwrap().seq, 1);
        // The proxies are host names: the next hop falls back to the peer address.
        assert_eq!(dialog.next_hop(), peer());
    }

    #[test]
    fn uac_dialog_reverses_the_route_set_and_counts_cseq() {
        let req = invite();
        let mut ok = Response::from_request_with_tag(&req, StatusCode::OK, Some("b"));
        ok.headers
            .push(Header::new(HeaderName::Contact, "<sip:bob@192.0.2.4:5080>"));
        assert_eq!(
            ok.headers.count(HeaderName::RecordRoute),
            2,
            "the 2xx carries the INVITE's Record-Route (§12.1.1)"
        );
        let mut dialog = Dialog::from_uac(&req, &ok, peer(), Protocol::Udp).unwrap();
        assert_eq!(dialog.id, DialogId::new(CallId::from("c@x"), "a", "b"));
        assert_eq!(
            dialog.route_set,
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        let info = dialog.request(
            Method::Info,
            "SIP/2.0/UDP me;branch=z9hG4bK3".into(),
            None,
            None,
        );
        assert_eq!(info.cseq().unwrap().seq, 4712);
        let ack = dialog.request(
            Method::Ack,
            "SIP/2.0/UDP me;branch=z9hG4bK4".into(),
            None,
            Some(4711),
        );
        assert_eq!(ack.cseq().unwrap().seq, 4711);
        assert_eq!(ack.uri.as_str(), "sip:bob@192.0.2.4:5080");
    }

    #[test]
    fn strict_route_becomes_the_request_uri() {
        let req = parse_request(
            "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             Record-Route: <sip:192.0.2.9:5070>\r\nFrom: <sip:a@x>;tag=a\r\nTo: <sip:b@y>\r\n\
             Call-ID: c2\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        );
        let ok = Response::from_request_with_tag(&req, StatusCode::OK, Some("b"));
        let mut dialog = Dialog::from_uas(&req, &ok, peer(), Protocol::Udp).unwrap();
        let bye = dialog.request(
            Method::Bye,
            "SIP/2.0/UDP me;branch=z9hG4bK2".into(),
            None,
            None,
        );
        assert_eq!(bye.uri.as_str(), "sip:192.0.2.9:5070");
        assert_eq!(
            bye.headers.values(HeaderName::Route).collect::<Vec<_>>(),
            ["<sip:a@192.0.2.1>"]
        );
        assert_eq!(dialog.next_hop(), "192.0.2.9:5070".parse().unwrap());
    }

    #[test]
    fn remote_cseq_must_grow() {
        let req = invite();
        let ok = Response::from_request_with_tag(&req, StatusCode::OK, Some("b"));
        let mut dialog = Dialog::from_uas(&req, &ok, peer(), Protocol::Udp).unwrap();
        assert!(!dialog.accept_remote_seq(4711));
        assert!(dialog.accept_remote_seq(4712));
        assert!(!dialog.accept_remote_seq(4700));
    }
}
