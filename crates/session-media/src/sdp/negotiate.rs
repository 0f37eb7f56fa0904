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
use crate::sdp::{
    Attribute, Connection, MediaDescription, MediaDirection, Origin, RtpMap, SessionDescription,
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

    fn matches(&self, map: &RtpMap) -> bool {
        self.name.eq_ignore_ascii_case(&map.encoding_name)
            && self.clock_rate == map.clock_rate
            && self.channels == map.channels
    }
}

/// The static payload types of RFC 3551 Table 4 that a peer may list without `rtpmap`.
fn static_rtpmap(payload_type: u8) -> Option<RtpMap> {
    let (name, rate) = match payload_type {
        0 => ("PCMU", 8_000),
        3 => ("GSM", 8_000),
        4 => ("G723", 8_000),
        8 => ("PCMA", 8_000),
        9 => ("G722", 8_000),
        18 => ("G729", 8_000),
        _ => return None,
    };
    Some(RtpMap {
        payload_type,
        encoding_name: name.to_owned(),
        clock_rate: rate,
        channels: 1,
    })
}

/// The rtpmap of a payload type in a media section: its `a=rtpmap`, else the static table.
fn effective_rtpmap(m: &MediaDescription, payload_type: u8) -> Option<RtpMap> {
    m.rtpmap(payload_type)
        .or_else(|| static_rtpmap(payload_type))
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
    ///
    /// What is compared is a 64-bit fingerprint of the description with its version left out,
    /// not a kept copy: a copy cost more than the rest of an answer. Two different
    /// descriptions share a fingerprint with a chance of about 2⁻⁶⁴ per change; the cost of
    /// such a collision would be a peer not noticing one re-offer's change.
    fn stamp(&mut self, mut sdp: SessionDescription) -> SessionDescription {
        sdp.origin.session_version = 0;
        let fingerprint = fingerprint(&sdp);
        if self.last_sent.is_some_and(|last| last != fingerprint) {
            self.version = self.version.wrapping_add(1);
        }
        self.last_sent = Some(fingerprint);
        sdp.origin.session_version = self.version;
        sdp
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
    pub fn answer_offer(&mut self, offer: &SessionDescription, rtp_port: u16) -> Result<Answered> {
        let mut answer = self.skeleton();
        answer.media.reserve_exact(offer.media.len());
        let mut chosen: Option<NegotiatedMedia> = None;
        for (index, om) in offer.media.iter().enumerate() {
            let accepted = if chosen.is_none() {
                self.accept_stream(offer, index, om, rtp_port)
            } else {
                None
            };
            match accepted {
                Some((answer_m, media)) => {
                    answer.media.push(answer_m);
                    chosen = Some(media);
                }
                None => answer.media.push(rejected(om)),
            }
        }
        let media = chosen.ok_or(Error::NoCommonCodec)?;
        let answer = self.stamp(answer);
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

    fn accept_stream(
        &self,
        offer: &SessionDescription,
        index: usize,
        om: &MediaDescription,
        rtp_port: u16,
    ) -> Option<(MediaDescription, NegotiatedMedia)> {
        if om.media != "audio" || om.port == 0 {
            return None;
        }
        if om.protocol != "RTP/AVP" && om.protocol != "RTP/AVPF" {
            return None;
        }
        let connection = offer.connection_for(om)?;
        // Intersection in the offerer's order, with the offerer's payload type numbers.
        let mut codecs = Vec::new();
        for pt in om.payload_types() {
            let Some(map) = effective_rtpmap(om, pt) else {
                continue;
            };
            if self.config.codecs.iter().any(|c| c.matches(&map))
                && !codecs.iter().any(|c: &RtpMap| c.payload_type == pt)
            {
                codecs.push(map);
            }
        }
        let first = codecs.first()?;
        let telephone_event = if self.config.telephone_event {
            om.payload_types().find(|&pt| {
                om.rtpmap(pt).is_some_and(|m| {
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
        let direction = receivable.answer(self.local_direction);
        let ptime = om.ptime().unwrap_or(self.config.ptime);
        let rtcp_mux = self.config.rtcp_mux && om.rtcp_mux();

        let mut m = MediaDescription {
            media: "audio".to_owned(),
            port: rtp_port,
            port_count: None,
            protocol: om.protocol.clone(),
            // A format per codec and telephone-event; their rtpmaps, fmtp, ptime, rtcp-mux,
            // direction and mid.
            formats: Vec::with_capacity(codecs.len() + 1),
            connection: None,
            bandwidths: Vec::new(),
            attributes: Vec::with_capacity(codecs.len() + 6),
        };
        if let Some(mid) = om.mid() {
            m.attributes.push(Attribute::value("mid", mid));
        }
        for c in &codecs {
            m.formats.push(number_text(c.payload_type.into()));
            m.attributes.push(rtpmap_attr(
                c.payload_type,
                &c.encoding_name,
                c.clock_rate,
                c.channels,
            ));
        }
        if let Some(pt) = telephone_event {
            m.formats.push(number_text(pt.into()));
            m.attributes
                .push(rtpmap_attr(pt, TELEPHONE_EVENT, first.clock_rate, 1));
            let events = om.fmtp(pt).unwrap_or("0-15");
            let mut fmtp = number_text(pt.into());
            fmtp.push(' ');
            fmtp.push_str(events);
            m.attributes.push(Attribute::value("fmtp", fmtp));
        }
        m.attributes
            .push(Attribute::value("ptime", number_text(ptime.into())));
        if rtcp_mux {
            m.attributes.push(Attribute::flag("rtcp-mux"));
        }
        m.attributes.push(Attribute::flag(direction.as_str()));

        let to_negotiated = |c: &RtpMap| NegotiatedCodec {
            payload_type: c.payload_type,
            name: c.encoding_name.clone(),
            clock_rate: c.clock_rate,
        };
        let media = NegotiatedMedia {
            index,
            remote_host: connection.address.clone(),
            remote_port: om.port,
            remote_rtcp_port: rtcp_port_of(om, rtcp_mux),
            codec: to_negotiated(first),
            codecs: codecs.iter().map(to_negotiated).collect(),
            telephone_event,
            local_telephone_event: telephone_event,
            ptime,
            direction,
            remote_direction,
            rtcp_mux,
        };
        Some((m, media))
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
            let usable = self.config.codecs.iter().any(|c| c.matches(&map));
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
    super::push_rtpmap(&mut value, pt, name, rate, channels);
    Attribute::value("rtpmap", value)
}

/// An address as text: IPv4 without the formatting machinery (most of what an answer cost).
pub(super) fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    text.push('.');
                }
                super::push_number(&mut text, octet.into());
            }
            text
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// A number as decimal text, without the formatting machinery.
fn number_text(value: u64) -> String {
    let mut text = String::with_capacity(20);
    super::push_number(&mut text, value);
    text
}

/// A fingerprint of a description for `OfferAnswer::stamp`: a fixed, unkeyed hasher, so equal
/// descriptions give equal fingerprints.
fn fingerprint(sdp: &SessionDescription) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = Fingerprint(0);
    sdp.hash(&mut hasher);
    hasher.finish()
}

/// Folds eight bytes at a time: `state = (rotl(state, 5) ^ word) × K`. For a fixed word that
/// step is a bijection of the state (K is odd), so descriptions that differ in one word always
/// differ in fingerprint. Only our own answer's text goes in, and a collision could only make
/// a peer miss one change, so a keyed hash would buy nothing here.
struct Fingerprint(u64);

impl Fingerprint {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length goes in too, so trailing zero bytes are not lost.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

/// A rejected stream: same media and protocol, port 0, the offered formats (RFC 3264 §6).
fn rejected(om: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: om.media.clone(),
        port: 0,
        port_count: None,
        protocol: om.protocol.clone(),
        formats: om.formats.clone(),
        connection: None,
        bandwidths: Vec::new(),
        attributes: Vec::new(),
    }
}
