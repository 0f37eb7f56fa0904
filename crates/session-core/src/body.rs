//! Small bodies carried by in-dialog requests: `application/dtmf-relay` (DTMF by SIP INFO, the
//! de-facto format of Cisco and most PBXes) and `message/sipfrag` (transfer progress in NOTIFY,
//! RFC 3515 §2.4.5 and RFC 3420).

use session_types::StatusCode;

/// The content type of DTMF by INFO.
pub(crate) const DTMF_RELAY: &str = "application/dtmf-relay";
/// The content type of transfer progress.
pub(crate) const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// Builds a `dtmf-relay` body for `digit` held `duration_ms`.
pub(crate) fn dtmf_relay(digit: char, duration_ms: u32) -> String {
    format!("Signal={digit}\r\nDuration={duration_ms}\r\n")
}

/// Reads the digit and duration (ms, default 160) of a `dtmf-relay` body. `None` when it names
/// no valid digit. `Signal=10`/`11` are the common spellings of `*` and `#`.
pub(crate) fn parse_dtmf_relay(body: &[u8]) -> Option<(char, u32)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut digit = None;
    let mut duration = 160;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "signal" => {
                digit = match value {
                    "10" => Some('*'),
                    "11" => Some('#'),
                    v if v.len() == 1 => v
                        .chars()
                        .next()
                        .map(|c| c.to_ascii_uppercase())
                        .filter(|c| matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')),
                    _ => None,
                }
            }
            "duration" => duration = value.parse().unwrap_or(duration),
            _ => {}
        }
    }
    digit.map(|d| (d, duration))
}

/// A `message/sipfrag` body holding just a status line.
pub(crate) fn sipfrag(status: StatusCode) -> String {
    format!("SIP/2.0 {} {}\r\n", status.as_u16(), status.reason_phrase())
}

/// The status code and reason phrase of a `message/sipfrag` body's status line (RFC 3420;
/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase`, RFC 3261 §7.2).
pub(crate) fn parse_sipfrag(body: &[u8]) -> Option<(StatusCode, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim_end();
    let rest = line.strip_prefix("SIP/2.0 ")?.trim_start();
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = StatusCode::new(code.parse().ok()?)?;
    Some((status, reason.trim().to_owned()))
}

/// A URI without its `?headers` part, and those headers decoded (RFC 3261 §19.1.1: `hname=hvalue`
/// pairs joined by `&`, percent-escaped). A URI without headers comes back as it was.
pub(crate) fn split_uri_headers(
    uri: &session_sip::Uri,
) -> (session_sip::Uri, Vec<(String, String)>) {
    let text = uri.as_str();
    let Some((bare, headers)) = text.split_once('?') else {
        return (uri.clone(), Vec::new());
    };
    let Ok(bare) = session_sip::Uri::parse(bare) else {
        return (uri.clone(), Vec::new());
    };
    let headers = headers
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (percent_decode(name), percent_decode(value)))
        .collect();
    (bare, headers)
}

/// `text` with every `%XX` escape decoded (an invalid escape is kept as written).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                // Both digits checked just above.
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` escaped for a URI header value: everything but unreserved characters (RFC 3986 §2.3)
/// as `%XX`.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_relay_round_trips_and_reads_common_spellings() {
        assert_eq!(
            parse_dtmf_relay(dtmf_relay('5', 250).as_bytes()),
            Some(('5', 250))
        );
        assert_eq!(parse_dtmf_relay(b"Signal=10\r\n"), Some(('*', 160)));
        assert_eq!(
            parse_dtmf_relay(b"signal = #\nduration= 100"),
            Some(('#', 100))
        );
        assert_eq!(parse_dtmf_relay(b"Signal=d\r\n"), Some(('D', 160)));
        assert_eq!(parse_dtmf_relay(b"Signal=X\r\n"), None);
        assert_eq!(parse_dtmf_relay(b"Duration=100\r\n"), None);
        assert_eq!(parse_dtmf_relay(&[0xff, 0xfe]), None);
    }

    #[test]
    fn uri_headers_are_split_off_and_decoded() {
        let value = "abc@host;to-tag=1;from-tag=2";
        let uri = session_sip::Uri::parse(&format!(
            "sip:carol@192.0.2.1:5070?Replaces={}&Subject=hi",
            percent_encode(value)
        ))
        .unwrap();
        let (bare, headers) = split_uri_headers(&uri);
        assert_eq!(bare.as_str(), "sip:carol@192.0.2.1:5070");
        assert_eq!(
            headers,
            [
                ("Replaces".to_owned(), value.to_owned()),
                ("Subject".to_owned(), "hi".to_owned())
            ]
        );
        let plain = session_sip::Uri::parse("sip:carol@192.0.2.1").unwrap();
        assert_eq!(split_uri_headers(&plain), (plain.clone(), Vec::new()));
        assert_eq!(percent_decode("100%"), "100%", "a broken escape stays");
    }

    #[test]
    fn sipfrag_round_trips_and_refuses_other_text() {
        assert_eq!(
            parse_sipfrag(sipfrag(StatusCode::OK).as_bytes()),
            Some((StatusCode::OK, "OK".to_owned()))
        );
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 486 Gone Fishing\r\nContent-Length: 0\r\n"),
            Some((StatusCode::BUSY_HERE, "Gone Fishing".to_owned()))
        );
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 100 Trying"),
            Some((StatusCode::TRYING, "Trying".to_owned()))
        );
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 603"),
            Some((StatusCode::DECLINE, String::new())),
            "an empty reason phrase is legal"
        );
        assert_eq!(parse_sipfrag(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse_sipfrag(b"SIP/2.0 abc"), None);
        assert_eq!(parse_sipfrag(b""), None);
    }
}
