//! SDP offer/answer (RFC 3264) for one audio stream per session.
//!
//! [`OfferAnswer`] keeps the SDP state of one session: our codecs and hold state, the session
//! version of the `o=` line, the offer we are waiting to see answered and the media currently
//! agreed. It makes offers, answers offers (codec intersection in the offerer's order, the
//! offerer's payload type numbers, `telephone-event`, `ptime`, direction, `rtcp-mux`, every
//! stream we do not take answered with port 0), processes answers, and reports what a
//! re-offer changed ([`MediaChange`]: hold, resume, new address, new codec).
//!
//! ```
//! use session_media::sdp::negotiate::{MediaConfig, OfferAnswer};
//!
//! let mut alice = OfferAnswer::new(MediaConfig::default(), "192.0.2.1".parse().unwrap());
//! let mut bob = OfferAnswer::new(MediaConfig::default(), "192.0.2.2".parse().unwrap());
//! let offer = alice.create_offer(40_000);
//! let answered = bob.answer_offer(&offer, 50_000).unwrap();
//! let agreed = alice.process_answer(&answered.answer).unwrap();
//! assert_eq!(agreed.media.codec.name, "PCMU");
//! assert_eq!(agreed.media.remote_rtp().unwrap().port(), 50_000);
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sdp::view::{AttributeRef, MediaDescriptionRef, SessionDescriptionRef};
use crate::sdp::{
    AddrType, Attribute, Connection, Digits, Few, MediaDescription, MediaDirection, Origin, RtpMap,
    RtpMapRef, SessionDescription, fmtp_in, ptime_in, push_clean, push_number, push_rtpmap,
    push_token, rtcp_port_in, rtpmap_in, values_named,
};

/// Encoding name of RFC 4733 events.
pub const TELEPHONE_EVENT: &str = "telephone-event";

/// A codec we are able to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// Encoding name (`PCMU`).
    pub name: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channels.
    pub channels: u8,
    /// Payload type we use in our offers (a static one where RFC 3551 assigns it).
    pub payload_type: u8,
}

impl Codec {
    /// G.711 µ-law, payload type 0.
    pub fn pcmu() -> Self {
        Self {
            name: "PCMU".to_owned(),
            clock_rate: 8_000,
            channels: 1,
            payload_type: 0,
        }
    }

    /// G.711 A-law, payload type 8.
    pub fn pcma() -> Self {
        Self {
            name: "PCMA".to_owned(),
            clock_rate: 8_000,
            channels: 1,
            payload_type: 8,
        }
    }

    fn matches(&self, name: &str, clock_rate: u32, channels: u8) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && self.clock_rate == clock_rate
            && self.channels == channels
    }
}

/// The static payload types of RFC 3551 Table 4 that a peer may list without `rtpmap`.
fn static_rtpmap(payload_type: u8) -> Option<RtpMapRef<'static>> {
    let (name, rate) = match payload_type {
        0 => ("PCMU", 8_000),
        3 => ("GSM", 8_000),
        4 => ("G723", 8_000),
        8 => ("PCMA", 8_000),
        9 => ("G722", 8_000),
        18 => ("G729", 8_000),
        _ => return None,
    };
    Some(RtpMapRef {
        payload_type,
        encoding_name: name,
        clock_rate: rate,
        channels: 1,
    })
}

/// The rtpmap of a payload type in a media section: its `a=rtpmap`, else the static table.
fn effective_rtpmap(m: &MediaDescription, payload_type: u8) -> Option<RtpMap> {
    m.rtpmap(payload_type)
        .or_else(|| static_rtpmap(payload_type).map(RtpMap::from))
}

/// Local media preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaConfig {
    /// Codecs in our order of preference (used in offers; answers follow the offerer's order).
    pub codecs: Vec<Codec>,
    /// Offer and accept RFC 4733 `telephone-event`.
    pub telephone_event: bool,
    /// Payload type for `telephone-event` in our offers (dynamic, 96–127).
    pub telephone_event_pt: u8,
    /// Packet time in ms we send and announce.
    pub ptime: u32,
    /// Offer and accept `rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// User name in `o=`.
    pub username: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            codecs: vec![Codec::pcmu(), Codec::pcma()],
            telephone_event: true,
            telephone_event_pt: 101,
            ptime: 20,
            rtcp_mux: false,
            username: "-".to_owned(),
        }
    }
}

impl MediaConfig {
    /// Sets the codec list (preference order).
    pub fn codecs(mut self, codecs: Vec<Codec>) -> Self {
        self.codecs = codecs;
        self
    }

    /// Enables or disables `telephone-event`.
    pub fn telephone_event(mut self, on: bool) -> Self {
        self.telephone_event = on;
        self
    }

    /// Enables or disables offering `rtcp-mux`.
    pub fn rtcp_mux(mut self, on: bool) -> Self {
        self.rtcp_mux = on;
        self
    }

    /// Sets the packet time in ms.
    pub fn ptime(mut self, ms: u32) -> Self {
        self.ptime = ms;
        self
    }
}

/// A codec both sides agreed on, with the payload type to put in packets we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    /// Payload type the peer expects for this codec.
    pub payload_type: u8,
    /// Encoding name.
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
}

/// The audio stream as agreed by the last complete offer/answer exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// Index of the `m=` line.
    pub index: usize,
    /// Where the peer wants RTP: its `c=` address as written (IP literal or host name).
    pub remote_host: String,
    /// The peer's RTP port.
    pub remote_port: u16,
    /// The peer's RTCP port (`a=rtcp`, else RTP + 1; equal to RTP with rtcp-mux).
    pub remote_rtcp_port: u16,
    /// The codec to send with (the first common one in the offerer's order).
    pub codec: NegotiatedCodec,
    /// Every common codec.
    pub codecs: Vec<NegotiatedCodec>,
    /// Payload type for RFC 4733 events we send, when both sides support them.
    pub telephone_event: Option<u8>,
    /// Payload type the peer uses for events it sends us: the number in our own description
    /// (an answerer may number a dynamic type differently from the offer, RFC 3264 §6.1).
    pub local_telephone_event: Option<u8>,
    /// Packet time in ms.
    pub ptime: u32,
    /// Our direction.
    pub direction: MediaDirection,
    /// The peer's direction, as it wrote it.
    pub remote_direction: MediaDirection,
    /// RTP and RTCP share one port.
    pub rtcp_mux: bool,
}

impl NegotiatedMedia {
    /// The peer's RTP address, when its `c=` is an IP literal (host names are for the caller to
    /// resolve).
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.remote_host.parse().ok()?;
        Some(SocketAddr::new(ip, self.remote_port))
    }

    /// The peer's RTCP address.
    pub fn remote_rtcp(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.remote_host.parse().ok()?;
        Some(SocketAddr::new(ip, self.remote_rtcp_port))
    }

    /// True when the peer has put us on hold: it does not want to receive (sendonly or
    /// inactive), or it used the old `c=0.0.0.0` form (RFC 3264 §8.4).
    pub fn is_held_by_remote(&self) -> bool {
        !self.remote_direction.receives()
            || self
                .remote_host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
    }

    /// What changed from `old` to `self` (empty when nothing did).
    pub fn changes_since(&self, old: &Self) -> Vec<MediaChange> {
        let mut changes = Vec::new();
        match (old.is_held_by_remote(), self.is_held_by_remote()) {
            (false, true) => changes.push(MediaChange::HeldByRemote),
            (true, false) => changes.push(MediaChange::ResumedByRemote),
            _ => {}
        }
        if old.direction != self.direction {
            changes.push(MediaChange::DirectionChanged {
                from: old.direction,
                to: self.direction,
            });
        }
        let unspecified = |h: &str| h.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if (old.remote_host != self.remote_host || old.remote_port != self.remote_port)
            && !unspecified(&self.remote_host)
            && !unspecified(&old.remote_host)
        {
            changes.push(MediaChange::RemoteAddressChanged {
                host: self.remote_host.clone(),
                port: self.remote_port,
            });
        }
        if old.codec != self.codec {
            changes.push(MediaChange::CodecChanged(self.codec.clone()));
        }
        if old.telephone_event != self.telephone_event {
            changes.push(MediaChange::TelephoneEventChanged(self.telephone_event));
        }
        changes
    }
}

/// A change a re-offer (or its answer) brought to an established stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaChange {
    /// The peer put us on hold.
    HeldByRemote,
    /// The peer took us off hold.
    ResumedByRemote,
    /// Our own direction changed (we held or resumed, or the peer's direction limits us).
    DirectionChanged {
        /// Before.
        from: MediaDirection,
        /// After.
        to: MediaDirection,
    },
    /// The peer moved its media to a new address or port.
    RemoteAddressChanged {
        /// New host.
        host: String,
        /// New port.
        port: u16,
    },
    /// The codec to send with changed.
    CodecChanged(NegotiatedCodec),
    /// `telephone-event` appeared, disappeared or changed payload type.
    TelephoneEventChanged(Option<u8>),
}

/// Result of a completed exchange: the agreed media and what changed since the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The agreed stream.
    pub media: NegotiatedMedia,
    /// Changes against the previous agreement (empty for the first one).
    pub changes: Vec<MediaChange>,
}

/// Result of [`OfferAnswer::answer_offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The answer to send.
    pub answer: SessionDescription,
    /// The agreed stream.
    pub media: NegotiatedMedia,
    /// Changes against the previous agreement (empty for the first one).
    pub changes: Vec<MediaChange>,
}

/// Result of [`OfferAnswer::answer_offer_text`]: the answer as it is sent, and the agreed
/// stream as [`OfferAnswer::current`] now holds it.
#[derive(Debug)]
pub struct AnswerText<'s> {
    /// The answer's text (CRLF line ends), what `answer_offer(..).answer.to_text()` gives.
    pub text: String,
    /// The agreed stream.
    pub media: &'s NegotiatedMedia,
    /// Changes against the previous agreement (empty for the first one).
    pub changes: Vec<MediaChange>,
}

/// The SDP offer/answer state of one session.
#[derive(Debug, Clone)]
pub struct OfferAnswer {
    config: Arc<MediaConfig>,
    local_ip: IpAddr,
    session_id: u64,
    version: u64,
    /// A fingerprint of the last description we sent, its version left out (see `stamp`).
    last_sent: Option<u64>,
    local_direction: MediaDirection,
    pending_offer: Option<SessionDescription>,
    current: Option<NegotiatedMedia>,
}

impl OfferAnswer {
    /// New state for a session whose media is at `local_ip`.
    ///
    /// The `o=` session id is drawn from `fastrand`'s thread-local generator; an application
    /// that replays runs from a seed gives it with [`OfferAnswer::with_shared_config`].
    pub fn new(config: MediaConfig, local_ip: IpAddr) -> Self {
        // NTP-style session ids are conventional; any unique number is allowed (RFC 8866 §5.2).
        let session_id = fastrand::u64(1..u64::from(u32::MAX));
        Self::with_shared_config(Arc::new(config), local_ip, session_id)
    }

    /// New state sharing one configuration with other sessions (no copy of it per call), with
    /// the `o=` line's session id (also its first version) given by the caller, e.g. from a
    /// seeded generator.
    pub fn with_shared_config(config: Arc<MediaConfig>, local_ip: IpAddr, session_id: u64) -> Self {
        Self {
            config,
            local_ip,
            session_id,
            version: session_id,
            last_sent: None,
            local_direction: MediaDirection::SendRecv,
            pending_offer: None,
            current: None,
        }
    }

    /// The media agreed by the last complete exchange.
    pub fn current(&self) -> Option<&NegotiatedMedia> {
        self.current.as_ref()
    }

    /// Our own offer still waiting for an answer.
    pub fn pending_offer(&self) -> Option<&SessionDescription> {
        self.pending_offer.as_ref()
    }

    /// Sets the direction we want: `SendOnly` to hold the peer, `SendRecv` to resume,
    /// `Inactive` to stop both ways. Takes effect in the next offer or answer.
    pub fn set_local_direction(&mut self, direction: MediaDirection) {
        self.local_direction = direction;
    }

    /// Changes the local address (e.g. the media moved); next offer carries it.
    pub fn set_local_ip(&mut self, ip: IpAddr) {
        self.local_ip = ip;
    }

    /// Gives a description the next `o=` version: the same as last time when nothing else
    /// changed, one more otherwise (RFC 3264 §8).
    fn stamp(&mut self, mut sdp: SessionDescription) -> SessionDescription {
        sdp.origin.session_version = self.next_version(fingerprint(&sdp));
        sdp
    }

    /// The version for a description with this fingerprint (its version left out).
    ///
    /// What is compared is a 64-bit fingerprint, not a kept copy: a copy cost more than the
    /// rest of an answer. Two different descriptions share a fingerprint with a chance of
    /// about 2⁻⁶⁴ per change; the cost of such a collision would be a peer not noticing one
    /// re-offer's change.
    fn next_version(&mut self, fingerprint: u64) -> u64 {
        if self.last_sent.is_some_and(|last| last != fingerprint) {
            self.version = self.version.wrapping_add(1);
        }
        self.last_sent = Some(fingerprint);
        self.version
    }

    fn skeleton(&self) -> SessionDescription {
        let address = ip_text(self.local_ip);
        let addr_type = super::AddrType::of(self.local_ip);
        SessionDescription {
            origin: Origin {
                username: self.config.username.clone(),
                session_id: number_text(self.session_id),
                session_version: self.version,
                addr_type,
                address: address.clone(),
            },
            session_name: "-".to_owned(),
            connection: Some(Connection { addr_type, address }),
            bandwidths: Vec::new(),
            timing: (0, 0),
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Makes an offer with one audio stream on `rtp_port`, and remembers it until the answer.
    pub fn create_offer(&mut self, rtp_port: u16) -> SessionDescription {
        let mut m = MediaDescription {
            media: "audio".to_owned(),
            port: rtp_port,
            port_count: None,
            protocol: "RTP/AVP".to_owned(),
            formats: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            attributes: Vec::new(),
        };
        for c in &self.config.codecs {
            m.formats.push(number_text(c.payload_type.into()));
            m.attributes.push(rtpmap_attr(
                c.payload_type,
                &c.name,
                c.clock_rate,
                c.channels,
            ));
        }
        if self.config.telephone_event {
            let pt = self.config.telephone_event_pt;
            m.formats.push(number_text(pt.into()));
            m.attributes
                .push(rtpmap_attr(pt, TELEPHONE_EVENT, 8_000, 1));
            m.attributes
                .push(Attribute::value("fmtp", format!("{pt} 0-16")));
        }
        m.attributes
            .push(Attribute::value("ptime", self.config.ptime.to_string()));
        if self.config.rtcp_mux {
            m.attributes.push(Attribute::flag("rtcp-mux"));
        }
        m.attributes
            .push(Attribute::flag(self.local_direction.as_str()));
        let mut sdp = self.skeleton();
        sdp.media.push(m);
        let sdp = self.stamp(sdp);
        self.pending_offer = Some(sdp.clone());
        sdp
    }

    /// Answers an offer (initial or re-offer) with our audio stream on `rtp_port`.
    ///
    /// The first offered audio stream over RTP/AVP(F) that has a codec in common is accepted;
    /// every other stream is answered with port 0. Without any such stream the result is
    /// [`Error::NoCommonCodec`], which the session layer answers with 488.
    ///
    /// [`OfferAnswer::answer_offer_text`] does the same from a borrowed offer straight to the
    /// answer's text, without building either description.
    pub fn answer_offer(&mut self, offer: &SessionDescription, rtp_port: u16) -> Result<Answered> {
        let view = SessionDescriptionRef::of(offer);
        let accepted = self.accept_first(&view)?;
        let mut answer = self.skeleton();
        answer.media = view
            .media()
            .iter()
            .enumerate()
            .map(|(index, om)| {
                if index == accepted.index {
                    accepted.description(rtp_port)
                } else {
                    rejected(om)
                }
            })
            .collect();
        let answer = self.stamp(answer);
        let media = accepted.negotiated();
        let changes = self.commit(media.clone());
        // An offer from the peer supersedes (glares with) any of ours; the dialog layer
        // resolves glare with 491 before we get here, so there is none left to answer.
        self.pending_offer = None;
        Ok(Answered {
            answer,
            media,
            changes,
        })
    }

    /// [`OfferAnswer::answer_offer`] for a borrowed offer, giving the answer as text: the same
    /// decisions, the same state afterwards, `text` byte for byte what
    /// `answer_offer(..).answer.to_text()` gives, at a fraction of the cost (no description is
    /// built, the text is written once).
    pub fn answer_offer_text(
        &mut self,
        offer: &SessionDescriptionRef<'_>,
        rtp_port: u16,
    ) -> Result<AnswerText<'_>> {
        let accepted = self.accept_first(offer)?;
        let mut text = String::with_capacity(ANSWER_CAPACITY);
        let mut fingerprint = Fingerprint::default();
        let version_at = self.write_answer(offer, &accepted, rtp_port, &mut text, &mut fingerprint);
        let version = Digits::of(self.next_version(fingerprint.finish()));
        // `version_at` follows the space written after the session id: a character boundary
        // (`insert_str` would panic on any other, so it is checked all the same).
        if text.is_char_boundary(version_at) {
            text.insert_str(version_at, version.as_str());
        }
        let media = accepted.negotiated();
        let changes = match &self.current {
            Some(old) => media.changes_since(old),
            None => Vec::new(),
        };
        self.pending_offer = None;
        Ok(AnswerText {
            text,
            media: self.current.insert(media),
            changes,
        })
    }

    /// The first stream we can accept (RFC 3264 §6: the others are answered with port 0).
    fn accept_first<'a>(&self, offer: &SessionDescriptionRef<'a>) -> Result<Accepted<'a>> {
        offer
            .media()
            .iter()
            .enumerate()
            .find_map(|(index, om)| self.accept_stream(offer, index, om))
            .ok_or(Error::NoCommonCodec)
    }

    fn accept_stream<'a>(
        &self,
        offer: &SessionDescriptionRef<'a>,
        index: usize,
        om: &MediaDescriptionRef<'a>,
    ) -> Option<Accepted<'a>> {
        if om.media != "audio" || om.port == 0 {
            return None;
        }
        if om.protocol != "RTP/AVP" && om.protocol != "RTP/AVPF" {
            return None;
        }
        let connection = offer.connection_for(om)?;
        let attributes = offer.attributes_of(om);
        let pairs = || attributes.iter().map(AttributeRef::pair);
        let rtpmaps = RtpMaps::of(attributes);
        // Intersection in the offerer's order, with the offerer's payload type numbers.
        let mut codecs: Few<RtpMapRef<'a>, 4> = Few::new();
        for pt in om.payload_types() {
            let Some(map) = rtpmaps.find(pt).or_else(|| static_rtpmap(pt)) else {
                continue;
            };
            if self
                .config
                .codecs
                .iter()
                .any(|c| c.matches(map.encoding_name, map.clock_rate, map.channels))
                && !codecs.as_slice().iter().any(|c| c.payload_type == pt)
            {
                codecs.push(map);
            }
        }
        let first = *codecs.as_slice().first()?;
        let telephone_event = if self.config.telephone_event {
            om.payload_types().find(|&pt| {
                rtpmaps.find(pt).is_some_and(|m| {
                    m.encoding_name.eq_ignore_ascii_case(TELEPHONE_EVENT)
                        && m.clock_rate == first.clock_rate
                })
            })
        } else {
            None
        };
        let remote_direction = offer.direction_for(om);
        // RFC 2543-style hold (c=0.0.0.0): the offerer cannot receive, whatever it wrote.
        let receivable = if connection.is_unspecified() {
            MediaDirection::from_flags(remote_direction.sends(), false)
        } else {
            remote_direction
        };
        let rtcp_mux = self.config.rtcp_mux && pairs().any(|(name, _)| name == "rtcp-mux");
        Some(Accepted {
            index,
            protocol: om.protocol,
            mid: values_named(pairs(), "mid").next(),
            first,
            codecs,
            telephone_event: telephone_event.map(|pt| (pt, fmtp_in(pairs(), pt).unwrap_or("0-15"))),
            ptime: ptime_in(pairs()).unwrap_or(self.config.ptime),
            rtcp_mux,
            direction: receivable.answer(self.local_direction),
            remote_direction,
            remote_host: connection.address,
            remote_port: om.port,
            remote_rtcp_port: if rtcp_mux {
                om.port
            } else {
                rtcp_port_in(pairs()).unwrap_or_else(|| om.port.saturating_add(1))
            },
        })
    }

    /// Writes the answer `accepted` describes (what `answer_offer` builds, as `to_text`
    /// writes it) and feeds `fingerprint` what [`fingerprint`] reads of that description.
    /// Returns where the `o=` version goes: it depends on the fingerprint.
    fn write_answer(
        &self,
        offer: &SessionDescriptionRef<'_>,
        accepted: &Accepted<'_>,
        rtp_port: u16,
        out: &mut String,
        fp: &mut Fingerprint,
    ) -> usize {
        let addr_type = AddrType::of(self.local_ip);
        out.push_str("v=0\r\no=");
        push_token(out, &self.config.username);
        fp.text(&self.config.username);
        out.push(' ');
        let id_at = out.len();
        push_number(out, self.session_id);
        fp.text(out.get(id_at..).unwrap_or_default());
        out.push(' ');
        let version_at = out.len();
        out.push_str(" IN ");
        out.push_str(addr_type.as_str());
        fp.addr_type(addr_type);
        out.push(' ');
        let address_at = out.len();
        push_ip(out, self.local_ip);
        let address = address_at..out.len();
        fp.text(out.get(address.clone()).unwrap_or_default());
        out.push_str("\r\ns=-\r\nc=IN ");
        fp.text("-");
        out.push_str(addr_type.as_str());
        out.push(' ');
        out.extend_from_within(address.clone());
        out.push_str("\r\nt=0 0\r\n");
        fp.flag(true);
        fp.addr_type(addr_type);
        fp.text(out.get(address).unwrap_or_default());
        // No b=, t=0 0, no session attributes.
        fp.number(0);
        fp.number(0);
        fp.number(0);
        fp.number(0);
        fp.length(offer.media_count());
        for (index, om) in offer.media().iter().enumerate() {
            if index == accepted.index {
                accepted.write(rtp_port, out, fp);
            } else {
                write_rejected(om, out, fp);
            }
        }
        version_at
    }

    /// Processes the answer to our pending offer.
    pub fn process_answer(&mut self, answer: &SessionDescription) -> Result<Negotiated> {
        let offer = self
            .pending_offer
            .take()
            .ok_or(Error::InvalidConfig("no offer is waiting for an answer"))?;
        let result = self.match_answer(&offer, answer);
        if result.is_err() {
            // Keep the offer so a retransmitted or corrected answer can still be processed.
            self.pending_offer = Some(offer);
        }
        let media = result?;
        let changes = self.commit(media.clone());
        Ok(Negotiated { media, changes })
    }

    fn match_answer(
        &self,
        offer: &SessionDescription,
        answer: &SessionDescription,
    ) -> Result<NegotiatedMedia> {
        if answer.media.len() != offer.media.len() {
            return Err(Error::AnswerMismatch(
                "number of m= lines differs from the offer",
            ));
        }
        let (index, am) = answer
            .media
            .iter()
            .enumerate()
            .find(|(_, m)| m.media == "audio")
            .ok_or(Error::AnswerMismatch("audio m= line missing"))?;
        let om = offer
            .media
            .get(index)
            .ok_or(Error::AnswerMismatch("audio m= line missing"))?;
        if am.port == 0 {
            return Err(Error::StreamRejected);
        }
        let connection = answer
            .connection_for(am)
            .ok_or(Error::AnswerMismatch("no c= line for the audio stream"))?;
        let mut codecs = Vec::new();
        for pt in am.payload_types() {
            let Some(map) = effective_rtpmap(am, pt) else {
                continue;
            };
            let offered = om.payload_types().any(|opt| {
                effective_rtpmap(om, opt).is_some_and(|o| {
                    o.encoding_name.eq_ignore_ascii_case(&map.encoding_name)
                        && o.clock_rate == map.clock_rate
                })
            });
            let usable = self
                .config
                .codecs
                .iter()
                .any(|c| c.matches(&map.encoding_name, map.clock_rate, map.channels));
            if offered && usable {
                codecs.push(NegotiatedCodec {
                    payload_type: pt,
                    name: map.encoding_name,
                    clock_rate: map.clock_rate,
                });
            }
        }
        let codec = codecs.first().cloned().ok_or(Error::AnswerMismatch(
            "the answer accepts no codec we offered",
        ))?;
        let telephone_event = if self.config.telephone_event {
            am.payload_types().find(|&pt| {
                am.rtpmap(pt).is_some_and(|m| {
                    m.encoding_name.eq_ignore_ascii_case(TELEPHONE_EVENT)
                        && m.clock_rate == codec.clock_rate
                })
            })
        } else {
            None
        };
        // What we offered for events at that clock rate is what the peer sends us.
        let local_telephone_event = telephone_event.and_then(|_| {
            om.payload_types().find(|&pt| {
                om.rtpmap(pt).is_some_and(|m| {
                    m.encoding_name.eq_ignore_ascii_case(TELEPHONE_EVENT)
                        && m.clock_rate == codec.clock_rate
                })
            })
        });
        let remote_direction = answer.direction_for(am);
        let offered_direction = offer.direction_for(om);
        let direction = MediaDirection::from_flags(
            offered_direction.sends()
                && remote_direction.receives()
                && !connection.is_unspecified(),
            offered_direction.receives() && remote_direction.sends(),
        );
        let rtcp_mux = om.rtcp_mux() && am.rtcp_mux();
        Ok(NegotiatedMedia {
            index,
            remote_host: connection.address.clone(),
            remote_port: am.port,
            remote_rtcp_port: rtcp_port_of(am, rtcp_mux),
            codec,
            codecs,
            telephone_event,
            local_telephone_event,
            ptime: am.ptime().unwrap_or(self.config.ptime),
            direction,
            remote_direction,
            rtcp_mux,
        })
    }

    fn commit(&mut self, media: NegotiatedMedia) -> Vec<MediaChange> {
        let changes = match &self.current {
            Some(old) => media.changes_since(old),
            None => Vec::new(),
        };
        self.current = Some(media);
        changes
    }
}

fn rtcp_port_of(m: &MediaDescription, rtcp_mux: bool) -> u16 {
    if rtcp_mux {
        m.port
    } else {
        m.rtcp_port().unwrap_or_else(|| m.port.saturating_add(1))
    }
}

fn rtpmap_attr(pt: u8, name: &str, rate: u32, channels: u8) -> Attribute {
    let mut value = String::with_capacity(name.len() + 12);
    push_rtpmap(&mut value, pt, name, rate, channels);
    Attribute::value("rtpmap", value)
}

/// An address as text: IPv4 without the formatting machinery (most of what an answer cost).
pub(super) fn ip_text(ip: IpAddr) -> String {
    let mut text = String::with_capacity(15);
    push_ip(&mut text, ip);
    text
}

/// Appends an address as `Display` writes it.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    out.push('.');
                }
                push_number(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing into a `String` cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// A number as decimal text, without the formatting machinery.
fn number_text(value: u64) -> String {
    let mut text = String::with_capacity(20);
    push_number(&mut text, value);
    text
}

/// What an answer's text usually needs: SIPp's is 150 bytes, baresip's 270.
const ANSWER_CAPACITY: usize = 320;

/// The fingerprint `OfferAnswer::stamp` compares: every field of the description but the
/// `o=` version, in the order of the struct, lists with their lengths, options with a tag.
/// `OfferAnswer::write_answer` feeds the same for the description it writes as text.
fn fingerprint(sdp: &SessionDescription) -> u64 {
    let mut fp = Fingerprint::default();
    let o = &sdp.origin;
    fp.text(&o.username);
    fp.text(&o.session_id);
    fp.addr_type(o.addr_type);
    fp.text(&o.address);
    fp.text(&sdp.session_name);
    fp.connection(sdp.connection.as_ref());
    fp.texts(&sdp.bandwidths);
    fp.number(sdp.timing.0);
    fp.number(sdp.timing.1);
    fp.attributes(&sdp.attributes);
    fp.length(sdp.media.len());
    for m in &sdp.media {
        fp.text(&m.media);
        fp.number(m.port.into());
        match m.port_count {
            Some(count) => {
                fp.flag(true);
                fp.number(count.into());
            }
            None => fp.flag(false),
        }
        fp.text(&m.protocol);
        fp.texts(&m.formats);
        fp.connection(m.connection.as_ref());
        fp.texts(&m.bandwidths);
        fp.attributes(&m.attributes);
    }
    fp.finish()
}

/// A streaming 64-bit fingerprint: numbers are folded in as words, texts as their length then
/// their bytes eight at a time (a text may come in pieces: only the bytes count, not where
/// the pieces end). Each fold is `state = (rotl(state, 5) ^ word) × K`: for a fixed word a
/// bijection of the state (K is odd), so descriptions that differ in one word always differ
/// in fingerprint, and the length prefixes keep texts from running into each other. Only our
/// own descriptions go in, and a collision could only make a peer miss one change, so a keyed
/// hash would buy nothing here.
#[derive(Debug, Default)]
struct Fingerprint {
    state: u64,
    /// Bytes of the current text not folded in yet, little-endian.
    word: u64,
    /// How many bytes `word` holds (below 8).
    filled: u32,
}

impl Fingerprint {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }

    fn finish(&self) -> u64 {
        self.state
    }

    fn number(&mut self, value: u64) {
        self.mix(value);
    }

    fn length(&mut self, len: usize) {
        self.mix(len as u64);
    }

    fn flag(&mut self, on: bool) {
        self.mix(u64::from(on));
    }

    fn addr_type(&mut self, addr_type: AddrType) {
        self.flag(addr_type == AddrType::Ip6);
    }

    fn text(&mut self, text: &str) {
        self.text_start(text.len());
        self.text_bytes(text.as_bytes());
        self.text_end();
    }

    /// Starts a text of `len` bytes, given next by `text_bytes` in one piece or more.
    fn text_start(&mut self, len: usize) {
        self.length(len);
    }

    fn text_bytes(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while self.filled != 0 {
            let Some((&byte, tail)) = rest.split_first() else {
                return;
            };
            self.push_byte(byte);
            rest = tail;
        }
        let mut chunks = rest.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.push_byte(byte);
        }
    }

    fn push_byte(&mut self, byte: u8) {
        self.word |= u64::from(byte) << (8 * self.filled);
        self.filled += 1;
        if self.filled == 8 {
            self.mix(self.word);
            self.word = 0;
            self.filled = 0;
        }
    }

    /// Ends a text: its last bytes go in (the length came first, so zero bytes count).
    fn text_end(&mut self) {
        if self.filled > 0 {
            self.mix(self.word);
        }
        self.word = 0;
        self.filled = 0;
    }

    fn texts(&mut self, texts: &[String]) {
        self.length(texts.len());
        for text in texts {
            self.text(text);
        }
    }

    fn connection(&mut self, connection: Option<&Connection>) {
        self.flag(connection.is_some());
        if let Some(c) = connection {
            self.addr_type(c.addr_type);
            self.text(&c.address);
        }
    }

    fn attributes(&mut self, attributes: &[Attribute]) {
        self.length(attributes.len());
        for a in attributes {
            self.attribute(&a.name, a.value.as_deref());
        }
    }

    fn attribute(&mut self, name: &str, value: Option<&str>) {
        self.text(name);
        self.flag(value.is_some());
        if let Some(value) = value {
            self.text(value);
        }
    }
}

/// The `rtpmap`s of a media section parsed once, in order: the first 16 kept, the rest
/// looked up in the attributes when needed. [`RtpMaps::find`] answers as [`rtpmap_in`].
struct RtpMaps<'s, 'a> {
    attributes: &'s [AttributeRef<'a>],
    maps: Few<RtpMapRef<'a>, 16>,
    /// Whether every `rtpmap` of `attributes` is in `maps`.
    complete: bool,
}

impl<'s, 'a> RtpMaps<'s, 'a> {
    fn of(attributes: &'s [AttributeRef<'a>]) -> Self {
        let mut maps = Few::new();
        let mut complete = true;
        let parsed = values_named(attributes.iter().map(AttributeRef::pair), "rtpmap")
            .filter_map(RtpMapRef::parse);
        for map in parsed {
            if maps.len() == 16 {
                complete = false;
                break;
            }
            maps.push(map);
        }
        Self {
            attributes,
            maps,
            complete,
        }
    }

    /// The first `rtpmap` of `payload_type`.
    fn find(&self, payload_type: u8) -> Option<RtpMapRef<'a>> {
        let kept = self
            .maps
            .as_slice()
            .iter()
            .find(|m| m.payload_type == payload_type);
        match kept {
            Some(map) => Some(*map),
            None if self.complete => None,
            None => rtpmap_in(self.attributes.iter().map(AttributeRef::pair), payload_type),
        }
    }
}

/// A rejected stream: same media and protocol, port 0, the offered formats (RFC 3264 §6).
fn rejected(om: &MediaDescriptionRef<'_>) -> MediaDescription {
    MediaDescription {
        media: om.media.to_owned(),
        port: 0,
        port_count: None,
        protocol: om.protocol.to_owned(),
        formats: om.formats().map(str::to_owned).collect(),
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
    }
}

/// Writes [`rejected`]'s stream as `to_text` does, feeding the fingerprint what
/// [`fingerprint`] reads of it.
fn write_rejected(om: &MediaDescriptionRef<'_>, out: &mut String, fp: &mut Fingerprint) {
    out.push_str("m=");
    push_token(out, om.media);
    out.push_str(" 0 ");
    push_token(out, om.protocol);
    fp.text(om.media);
    fp.number(0);
    fp.flag(false);
    fp.text(om.protocol);
    fp.length(om.formats().count());
    let mut any = false;
    for format in om.formats() {
        out.push(' ');
        push_token(out, format);
        fp.text(format);
        any = true;
    }
    if !any {
        // As `to_text`: a format list is mandatory.
        out.push_str(" 0");
    }
    out.push_str("\r\n");
    // No c=, b= or attributes.
    fp.flag(false);
    fp.number(0);
    fp.number(0);
}

/// The stream an answer accepts (RFC 3264 §6.1), every piece of text still the offer's.
#[derive(Debug)]
struct Accepted<'a> {
    /// Index of the `m=` line.
    index: usize,
    protocol: &'a str,
    mid: Option<&'a str>,
    /// The first of `codecs`, the one we send with.
    first: RtpMapRef<'a>,
    /// The common codecs in the offerer's order, with its payload types.
    codecs: Few<RtpMapRef<'a>, 4>,
    /// The offer's payload type for events at `first`'s clock rate, and its events.
    telephone_event: Option<(u8, &'a str)>,
    ptime: u32,
    rtcp_mux: bool,
    direction: MediaDirection,
    remote_direction: MediaDirection,
    remote_host: &'a str,
    remote_port: u16,
    remote_rtcp_port: u16,
}

impl Accepted<'_> {
    /// The answer's `m=` section.
    fn description(&self, rtp_port: u16) -> MediaDescription {
        let mut m = MediaDescription {
            media: "audio".to_owned(),
            port: rtp_port,
            port_count: None,
            protocol: self.protocol.to_owned(),
            // A format per codec and telephone-event; their rtpmaps, fmtp, ptime, rtcp-mux,
            // direction and mid.
            formats: Vec::with_capacity(self.codecs.as_slice().len() + 1),
            connection: None,
            bandwidths: Vec::new(),
            attributes: Vec::with_capacity(self.codecs.as_slice().len() + 6),
        };
        if let Some(mid) = self.mid {
            m.attributes.push(Attribute::value("mid", mid));
        }
        for c in self.codecs.as_slice() {
            m.formats.push(number_text(c.payload_type.into()));
            m.attributes.push(rtpmap_attr(
                c.payload_type,
                c.encoding_name,
                c.clock_rate,
                c.channels,
            ));
        }
        if let Some((pt, events)) = self.telephone_event {
            m.formats.push(number_text(pt.into()));
            m.attributes
                .push(rtpmap_attr(pt, TELEPHONE_EVENT, self.first.clock_rate, 1));
            let mut fmtp = number_text(pt.into());
            fmtp.push(' ');
            fmtp.push_str(events);
            m.attributes.push(Attribute::value("fmtp", fmtp));
        }
        m.attributes
            .push(Attribute::value("ptime", number_text(self.ptime.into())));
        if self.rtcp_mux {
            m.attributes.push(Attribute::flag("rtcp-mux"));
        }
        m.attributes.push(Attribute::flag(self.direction.as_str()));
        m
    }

    /// Writes [`Accepted::description`] as `to_text` does, feeding the fingerprint what
    /// [`fingerprint`] reads of it.
    fn write(&self, rtp_port: u16, out: &mut String, fp: &mut Fingerprint) {
        out.push_str("m=audio ");
        push_number(out, rtp_port.into());
        out.push(' ');
        push_token(out, self.protocol);
        fp.text("audio");
        fp.number(rtp_port.into());
        fp.flag(false);
        fp.text(self.protocol);
        let events = self.telephone_event.map(|(pt, _)| pt);
        fp.length(self.codecs.as_slice().len() + usize::from(events.is_some()));
        for pt in self
            .codecs
            .as_slice()
            .iter()
            .map(|c| c.payload_type)
            .chain(events)
        {
            out.push(' ');
            let at = out.len();
            push_number(out, pt.into());
            fp.text(out.get(at..).unwrap_or_default());
        }
        out.push_str("\r\n");
        // No c= or b=.
        fp.flag(false);
        fp.number(0);
        let count = usize::from(self.mid.is_some())
            + self.codecs.as_slice().len()
            + 2 * usize::from(events.is_some())
            + 1
            + usize::from(self.rtcp_mux)
            + 1;
        fp.length(count);
        if let Some(mid) = self.mid {
            out.push_str("a=mid:");
            push_clean(out, mid);
            out.push_str("\r\n");
            fp.attribute("mid", Some(mid));
        }
        // An rtpmap value is written as `push_rtpmap` makes it, which is also what `to_text`
        // writes again after parsing it.
        let mut rtpmap = |out: &mut String, pt: u8, name: &str, rate: u32, channels: u8| {
            out.push_str("a=rtpmap:");
            let at = out.len();
            push_rtpmap(out, pt, name, rate, channels);
            fp.attribute("rtpmap", Some(out.get(at..).unwrap_or_default()));
            out.push_str("\r\n");
        };
        for c in self.codecs.as_slice() {
            rtpmap(
                out,
                c.payload_type,
                c.encoding_name,
                c.clock_rate,
                c.channels,
            );
        }
        if let Some((pt, events)) = self.telephone_event {
            rtpmap(out, pt, TELEPHONE_EVENT, self.first.clock_rate, 1);
            out.push_str("a=fmtp:");
            let at = out.len();
            push_number(out, pt.into());
            let digits = out.get(at..).unwrap_or_default();
            fp.text("fmtp");
            fp.flag(true);
            fp.text_start(digits.len() + 1 + events.len());
            fp.text_bytes(digits.as_bytes());
            fp.text_bytes(b" ");
            fp.text_bytes(events.as_bytes());
            fp.text_end();
            out.push(' ');
            push_clean(out, events);
            out.push_str("\r\n");
        }
        out.push_str("a=ptime:");
        let at = out.len();
        push_number(out, self.ptime.into());
        fp.attribute("ptime", Some(out.get(at..).unwrap_or_default()));
        out.push_str("\r\n");
        if self.rtcp_mux {
            out.push_str("a=rtcp-mux\r\n");
            fp.attribute("rtcp-mux", None);
        }
        out.push_str("a=");
        out.push_str(self.direction.as_str());
        out.push_str("\r\n");
        fp.attribute(self.direction.as_str(), None);
    }

    /// The agreed stream.
    fn negotiated(&self) -> NegotiatedMedia {
        let to_negotiated = |c: &RtpMapRef<'_>| NegotiatedCodec {
            payload_type: c.payload_type,
            name: c.encoding_name.to_owned(),
            clock_rate: c.clock_rate,
        };
        let telephone_event = self.telephone_event.map(|(pt, _)| pt);
        NegotiatedMedia {
            index: self.index,
            remote_host: self.remote_host.to_owned(),
            remote_port: self.remote_port,
            remote_rtcp_port: self.remote_rtcp_port,
            codec: to_negotiated(&self.first),
            codecs: self.codecs.as_slice().iter().map(to_negotiated).collect(),
            telephone_event,
            local_telephone_event: telephone_event,
            ptime: self.ptime,
            direction: self.direction,
            remote_direction: self.remote_direction,
            rtcp_mux: self.rtcp_mux,
        }
    }
}
