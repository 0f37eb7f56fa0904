//! The SDP code as it was before the borrowed view (2026-12-06 evening): the owned parser and
//! `OfferAnswer::answer_offer` building the answer from a skeleton, kept as the oracle the
//! differential tests compare the rewrite with. Copied unchanged but for names.

#![allow(clippy::unwrap_used, dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use super::negotiate::{
    Answered, Codec, MediaChange, MediaConfig, NegotiatedCodec, NegotiatedMedia, TELEPHONE_EVENT,
};
use super::{
    Attribute, Connection, MAX_SDP_LEN, MediaDescription, MediaDirection, Origin, RtpMap,
    SessionDescription, malformed, parse_addr_type,
};
use crate::error::{Error, Result};

fn parse_connection(value: &str, line: usize) -> Result<Connection> {
    let mut it = value.split_whitespace();
    let (Some("IN"), Some(at), Some(address), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed(line, "c= must be `IN <addrtype> <address>`"));
    };
    Ok(Connection {
        addr_type: parse_addr_type(at, line)?,
        address: address.to_owned(),
    })
}

/// The pieces between `\n`s, as `str::split('\n')` gives them.
fn lines(body: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b'\n') {
            Some(at) => {
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

fn parse_attribute(value: &str) -> Attribute {
    let colon = value.bytes().position(|b| b == b':');
    // `:` is one byte, so both sides of it are character boundaries.
    match colon.and_then(|at| Some((value.get(..at)?, value.get(at + 1..)?))) {
        Some((name, v)) => Attribute {
            name: name.trim().to_owned(),
            value: Some(v.trim().to_owned()),
        },
        None => Attribute {
            name: value.trim().to_owned(),
            value: None,
        },
    }
}

/// The parser as it was: `str::parse` before the borrowed view.
pub(super) fn parse(body: &str) -> Result<SessionDescription> {
    {
        if body.len() > MAX_SDP_LEN {
            return Err(malformed(0, "body too large"));
        }
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut bandwidths = Vec::new();
        let mut timing = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut saw_version = false;

        for (index, raw) in lines(body).enumerate() {
            let number = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim_end();
            if line.is_empty() {
                continue;
            }
            let (kind, value) = match line.split_at_checked(2) {
                Some((k, v)) if k.len() == 2 && k.as_bytes().get(1) == Some(&b'=') => (k, v),
                _ => return Err(malformed(number, "line is not `<type>=<value>`")),
            };
            if !saw_version {
                if kind != "v=" || value.trim() != "0" {
                    return Err(malformed(number, "the first line must be v=0"));
                }
                saw_version = true;
                continue;
            }
            match (kind, media.last_mut()) {
                ("m=", _) => {
                    let mut it = value.split_whitespace();
                    let (Some(kind), Some(port), Some(proto)) = (it.next(), it.next(), it.next())
                    else {
                        return Err(malformed(number, "m= needs media, port, proto and formats"));
                    };
                    let (port, port_count) = match port.split_once('/') {
                        Some((p, n)) => (p, Some(n)),
                        None => (port, None),
                    };
                    let port = port.parse().map_err(|_| malformed(number, "bad m= port"))?;
                    let port_count = port_count
                        .map(|n| {
                            n.parse()
                                .map_err(|_| malformed(number, "bad m= port count"))
                        })
                        .transpose()?;
                    let formats: Vec<String> = it.map(str::to_owned).collect();
                    if formats.is_empty() {
                        return Err(malformed(number, "m= without formats"));
                    }
                    media.push(MediaDescription {
                        media: kind.to_owned(),
                        port,
                        port_count,
                        protocol: proto.to_owned(),
                        formats,
                        connection: None,
                        bandwidths: Vec::new(),
                        attributes: Vec::new(),
                    });
                }
                ("o=", None) => {
                    let mut it = value.split_whitespace();
                    let (Some(user), Some(id), Some(version), Some("IN"), Some(at), Some(addr)) = (
                        it.next(),
                        it.next(),
                        it.next(),
                        it.next(),
                        it.next(),
                        it.next(),
                    ) else {
                        return Err(malformed(number, "o= needs six fields"));
                    };
                    origin = Some(Origin {
                        username: user.to_owned(),
                        session_id: id.to_owned(),
                        session_version: version
                            .parse()
                            .map_err(|_| malformed(number, "bad o= session version"))?,
                        addr_type: parse_addr_type(at, number)?,
                        address: addr.to_owned(),
                    });
                }
                ("s=", None) => session_name = Some(value.to_owned()),
                ("c=", None) => connection = Some(parse_connection(value, number)?),
                ("c=", Some(m)) => m.connection = Some(parse_connection(value, number)?),
                ("b=", None) => bandwidths.push(value.to_owned()),
                ("b=", Some(m)) => m.bandwidths.push(value.to_owned()),
                ("t=", None) => {
                    let mut it = value.split_whitespace().map(str::parse::<u64>);
                    let (Some(Ok(start)), Some(Ok(stop))) = (it.next(), it.next()) else {
                        return Err(malformed(number, "t= needs two numbers"));
                    };
                    // Only the first t= matters to us; repeated ones are legal.
                    timing.get_or_insert((start, stop));
                }
                ("a=", None) => attributes.push(parse_attribute(value)),
                ("a=", Some(m)) => m.attributes.push(parse_attribute(value)),
                // i=, u=, e=, p=, r=, z=, k= and unknown types: ignored (RFC 8866 §5 tells
                // parsers to ignore unknown types).
                _ => {}
            }
        }
        if !saw_version {
            return Err(malformed(0, "empty body"));
        }
        let origin = origin.ok_or(malformed(0, "missing o="))?;
        // Some peers omit s= or t=; they are mandatory, but harmless to default.
        let session_name = session_name.unwrap_or_else(|| "-".to_owned());
        let timing = timing.unwrap_or((0, 0));
        Ok(SessionDescription {
            origin,
            session_name,
            connection,
            bandwidths,
            timing,
            attributes,
            media,
        })
    }
}

// The media queries as they were (methods of `MediaDescription` then).

pub(super) fn rtpmap_parse(value: &str) -> Option<RtpMap> {
    let (pt, rest) = value.trim().split_once(' ')?;
    let payload_type = pt.parse().ok()?;
    let rest = rest.trim();
    let (encoding, broken_channels) = match rest.split_once(' ') {
        Some((e, c)) => (e, Some(c.trim())),
        None => (rest, None),
    };
    let mut parts = encoding.split('/');
    let encoding_name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match (parts.next(), broken_channels) {
        (Some(c), _) | (None, Some(c)) => c.parse().ok()?,
        (None, None) => 1,
    };
    Some(RtpMap {
        payload_type,
        encoding_name: encoding_name.to_owned(),
        clock_rate,
        channels,
    })
}

fn attribute_values<'a>(
    m: &'a MediaDescription,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    m.attributes.iter().filter_map(move |a| {
        if a.name == name {
            a.value.as_deref()
        } else {
            None
        }
    })
}

fn has_attribute(m: &MediaDescription, name: &str) -> bool {
    m.attributes.iter().any(|a| a.name == name)
}

fn payload_types(m: &MediaDescription) -> impl Iterator<Item = u8> + '_ {
    m.formats.iter().filter_map(|f| f.parse().ok())
}

fn rtpmap(m: &MediaDescription, payload_type: u8) -> Option<RtpMap> {
    attribute_values(m, "rtpmap")
        .filter_map(rtpmap_parse)
        .find(|m| m.payload_type == payload_type)
}

fn fmtp(m: &MediaDescription, payload_type: u8) -> Option<&str> {
    attribute_values(m, "fmtp").find_map(|v| {
        let (pt, params) = v.split_once(' ')?;
        (pt.trim().parse::<u8>().ok()? == payload_type).then_some(params.trim())
    })
}

fn ptime(m: &MediaDescription) -> Option<u32> {
    attribute_values(m, "ptime")
        .find_map(|v| v.trim().parse::<f32>().ok())
        .filter(|p| p.is_finite() && *p > 0.0 && *p < 10_000.0)
        .map(|p| p as u32)
}

fn direction_attr(m: &MediaDescription) -> Option<MediaDirection> {
    m.attributes
        .iter()
        .find_map(|a| direction_from_attr(&a.name))
}

fn direction_from_attr(name: &str) -> Option<MediaDirection> {
    match name {
        "sendrecv" => Some(MediaDirection::SendRecv),
        "sendonly" => Some(MediaDirection::SendOnly),
        "recvonly" => Some(MediaDirection::RecvOnly),
        "inactive" => Some(MediaDirection::Inactive),
        _ => None,
    }
}

fn direction_for(sdp: &SessionDescription, m: &MediaDescription) -> MediaDirection {
    direction_attr(m)
        .or_else(|| {
            sdp.attributes
                .iter()
                .find_map(|a| direction_from_attr(&a.name))
        })
        .unwrap_or_default()
}

fn rtcp_mux(m: &MediaDescription) -> bool {
    has_attribute(m, "rtcp-mux")
}

fn mid(m: &MediaDescription) -> Option<&str> {
    attribute_values(m, "mid").next()
}

fn rtcp_port(m: &MediaDescription) -> Option<u16> {
    attribute_values(m, "rtcp").find_map(|v| v.split_whitespace().next()?.parse().ok())
}

fn codec_matches(c: &Codec, map: &RtpMap) -> bool {
    c.name.eq_ignore_ascii_case(&map.encoding_name)
        && c.clock_rate == map.clock_rate
        && c.channels == map.channels
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

fn effective_rtpmap(m: &MediaDescription, payload_type: u8) -> Option<RtpMap> {
    rtpmap(m, payload_type).or_else(|| static_rtpmap(payload_type))
}

/// `OfferAnswer` as it was, for what the tests drive: offers, answers, direction and address.
#[derive(Debug, Clone)]
pub(super) struct OldOfferAnswer {
    config: Arc<MediaConfig>,
    local_ip: IpAddr,
    session_id: u64,
    version: u64,
    last_sent: Option<u64>,
    local_direction: MediaDirection,
    pending_offer: Option<SessionDescription>,
    current: Option<NegotiatedMedia>,
}

impl OldOfferAnswer {
    pub(super) fn with_shared_config(
        config: Arc<MediaConfig>,
        local_ip: IpAddr,
        session_id: u64,
    ) -> Self {
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

    pub(super) fn current(&self) -> Option<&NegotiatedMedia> {
        self.current.as_ref()
    }

    pub(super) fn pending_offer(&self) -> Option<&SessionDescription> {
        self.pending_offer.as_ref()
    }

    pub(super) fn set_local_direction(&mut self, direction: MediaDirection) {
        self.local_direction = direction;
    }

    pub(super) fn set_local_ip(&mut self, ip: IpAddr) {
        self.local_ip = ip;
    }

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
    pub(super) fn create_offer(&mut self, rtp_port: u16) -> SessionDescription {
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
    pub(super) fn answer_offer(
        &mut self,
        offer: &SessionDescription,
        rtp_port: u16,
    ) -> Result<Answered> {
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
        for pt in payload_types(om) {
            let Some(map) = effective_rtpmap(om, pt) else {
                continue;
            };
            if self.config.codecs.iter().any(|c| codec_matches(c, &map))
                && !codecs.iter().any(|c: &RtpMap| c.payload_type == pt)
            {
                codecs.push(map);
            }
        }
        let first = codecs.first()?;
        let telephone_event = if self.config.telephone_event {
            payload_types(om).find(|&pt| {
                rtpmap(om, pt).is_some_and(|m| {
                    m.encoding_name.eq_ignore_ascii_case(TELEPHONE_EVENT)
                        && m.clock_rate == first.clock_rate
                })
            })
        } else {
            None
        };
        let remote_direction = direction_for(offer, om);
        // RFC 2543-style hold (c=0.0.0.0): the offerer cannot receive, whatever it wrote.
        let receivable = if connection.is_unspecified() {
            MediaDirection::from_flags(remote_direction.sends(), false)
        } else {
            remote_direction
        };
        let direction = receivable.answer(self.local_direction);
        let ptime = ptime(om).unwrap_or(self.config.ptime);
        let rtcp_mux = self.config.rtcp_mux && rtcp_mux(om);

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
        if let Some(mid) = mid(om) {
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
            let events = fmtp(om, pt).unwrap_or("0-15");
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

    fn commit(&mut self, media: NegotiatedMedia) -> Vec<MediaChange> {
        let changes = match &self.current {
            Some(old) => media.changes_since(old),
            None => Vec::new(),
        };
        self.current = Some(media);
        changes
    }
}

fn rtpmap_attr(pt: u8, name: &str, rate: u32, channels: u8) -> Attribute {
    let mut value = String::with_capacity(name.len() + 12);
    super::push_rtpmap(&mut value, pt, name, rate, channels);
    Attribute::value("rtpmap", value)
}

/// An address as text: IPv4 without the formatting machinery (most of what an answer cost).
fn ip_text(ip: IpAddr) -> String {
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
fn rtcp_port_of(m: &MediaDescription, rtcp_mux: bool) -> u16 {
    if rtcp_mux {
        m.port
    } else {
        rtcp_port(m).unwrap_or_else(|| m.port.saturating_add(1))
    }
}
