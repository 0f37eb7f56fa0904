//! G.711 µ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8), table-driven and
//! bit-exact to the ITU-T G.711 reference algorithm (as in the G.191 software tool library):
//! the encoder works on the one's-complement magnitude of the 16-bit sample (14 significant
//! bits for µ-law, 13 for A-law), so negative boundary values round as the reference does.
//!
//! All four tables are computed at compile time by `const fn`s that follow the standard's
//! segment description; encoding a sample is one shift and one table lookup.
//!
//! ```
//! use session_media::g711;
//! assert_eq!(g711::ulaw_decode(0x00), -32124);
//! assert_eq!(g711::alaw_decode(0xD5), 8);
//! assert_eq!(g711::ulaw_encode(0), 0xFF);
//! ```

use crate::frame::{AudioFrame, FRAME_SAMPLES};

/// µ-law code → linear sample, following G.711 Table 2a (bias 33 in 14-bit units).
const fn ulaw_expand(code: u8) -> i16 {
    let inverted = !code;
    let exponent = ((inverted >> 4) & 0x07) as i32;
    let mantissa = (inverted & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    if code < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// A-law code → linear sample, following G.711 Table 1a (even bits inverted).
const fn alaw_expand(code: u8) -> i16 {
    let ix = (code ^ 0x55) & 0x7F;
    let exponent = (ix >> 4) as i32;
    let mut mantissa = (ix & 0x0F) as i32;
    if exponent > 0 {
        mantissa += 16;
    }
    mantissa = (mantissa << 4) + 8;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    if code > 127 {
        mantissa as i16
    } else {
        -mantissa as i16
    }
}

/// µ-law code (sign bit clear, i.e. for a positive sample before the sign is added) of a
/// 14-bit magnitude `mag14` (0..=8191).
const fn ulaw_compress_magnitude(mag14: i32) -> u8 {
    let mut biased = mag14 + 33;
    if biased > 0x1FFF {
        biased = 0x1FFF;
    }
    // Segment number: 1 + position of the highest set bit above bit 5.
    let mut segment = 1;
    let mut rest = biased >> 6;
    while rest != 0 {
        segment += 1;
        rest >>= 1;
    }
    let high = 8 - segment;
    let low = 0x0F - ((biased >> segment) & 0x0F);
    ((high << 4) | low) as u8
}

/// A-law code (before the sign bit and the even-bit inversion) of a 12-bit magnitude.
const fn alaw_compress_magnitude(mag12: i32) -> u8 {
    let mut ix = mag12;
    if ix > 15 {
        let mut exponent = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            exponent += 1;
        }
        ix -= 16;
        ix += exponent << 4;
    }
    ix as u8
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_expand(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_expand(i as u8);
        i += 1;
    }
    t
}

const fn build_ulaw_encode() -> [u8; 8192] {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = ulaw_compress_magnitude(i as i32);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; 2048] {
    let mut t = [0u8; 2048];
    let mut i = 0;
    while i < 2048 {
        t[i] = alaw_compress_magnitude(i as i32);
        i += 1;
    }
    t
}

static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
static ALAW_DECODE: [i16; 256] = build_alaw_decode();
static ULAW_ENCODE: [u8; 8192] = build_ulaw_encode();
static ALAW_ENCODE: [u8; 2048] = build_alaw_encode();

/// Splits a sample into (one's-complement magnitude, sign bit 0x80 for non-negative).
#[inline]
fn magnitude_and_sign(sample: i16) -> (usize, u8) {
    let s = i32::from(sample);
    let mask = s >> 31; // -1 for negative, 0 otherwise
    let magnitude = (s ^ mask) as usize; // !s for negative = |s| - 1
    let sign = if mask == 0 { 0x80 } else { 0 };
    (magnitude, sign)
}

/// Encodes one linear sample to µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let (magnitude, sign) = magnitude_and_sign(sample);
    // `magnitude` is at most 32767, so `>> 2` is below 8192: always in the table.
    ULAW_ENCODE[(magnitude >> 2) & 0x1FFF] | sign
}

/// Encodes one linear sample to A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let (magnitude, sign) = magnitude_and_sign(sample);
    (ALAW_ENCODE[(magnitude >> 4) & 0x7FF] | sign) ^ 0x55
}

/// Decodes one µ-law byte.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

/// Which G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum G711Law {
    /// µ-law, PCMU, static payload type 0.
    Ulaw,
    /// A-law, PCMA, static payload type 8.
    Alaw,
}

impl G711Law {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
        }
    }

    /// The encoding name used in SDP `rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Self::Ulaw => "PCMU",
            Self::Alaw => "PCMA",
        }
    }

    /// The law for an encoding name (case-insensitive), if it is G.711.
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Self::Ulaw)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Self::Alaw)
        } else {
            None
        }
    }

    /// Encodes a frame into `out` (160 bytes); returns the payload.
    pub fn encode_frame<'a>(
        self,
        frame: &AudioFrame,
        out: &'a mut [u8; FRAME_SAMPLES],
    ) -> &'a [u8] {
        match self {
            Self::Ulaw => {
                for (o, &s) in out.iter_mut().zip(frame.samples()) {
                    *o = ulaw_encode(s);
                }
            }
            Self::Alaw => {
                for (o, &s) in out.iter_mut().zip(frame.samples()) {
                    *o = alaw_encode(s);
                }
            }
        }
        out
    }

    /// Decodes one 20 ms payload into a frame; a short payload is padded with silence, bytes
    /// beyond 160 are ignored. For packets of other durations use [`crate::reframe::Reframer`],
    /// which loses no sample.
    pub fn decode_frame(self, payload: &[u8]) -> AudioFrame {
        let mut frame = AudioFrame::silence();
        let table = match self {
            Self::Ulaw => &ULAW_DECODE,
            Self::Alaw => &ALAW_DECODE,
        };
        for (s, &b) in frame.samples_mut().iter_mut().zip(payload) {
            *s = table[usize::from(b)];
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known points of the G.711 decoding tables (ITU-T G.711 Tables 1a/2a, in 16-bit scale).
    #[test]
    fn ulaw_decode_known_points() {
        let vectors: &[(u8, i16)] = &[
            (0x00, -32124),
            (0x01, -31100),
            (0x0E, -17788),
            (0x0F, -16764),
            (0x10, -15996),
            (0x1F, -8316),
            (0x20, -7932),
            (0x3F, -1980),
            (0x40, -1884),
            (0x5F, -396),
            (0x70, -120),
            (0x7E, -8),
            (0x7F, 0),
            (0x80, 32124),
            (0xEF, 132),
            (0xF0, 120),
            (0xFE, 8),
            (0xFF, 0),
        ];
        for &(code, value) in vectors {
            assert_eq!(ulaw_decode(code), value, "code {code:#04x}");
        }
    }

    #[test]
    fn alaw_decode_known_points() {
        let vectors: &[(u8, i16)] = &[
            (0x55, -8),
            (0xD5, 8),
            (0x54, -24),
            (0xD4, 24),
            (0x2A, -32256),
            (0xAA, 32256),
            (0x80, 5504),
            (0x00, -5504),
            (0x5A, -248),
            (0xDA, 248),
            (0xFF, 848),
        ];
        for &(code, value) in vectors {
            assert_eq!(alaw_decode(code), value, "code {code:#04x}");
        }
    }

    #[test]
    fn decode_tables_are_odd_symmetric_and_monotonic() {
        for code in 0u8..=0x7F {
            assert_eq!(ulaw_decode(code), -ulaw_decode(code | 0x80));
            assert_eq!(alaw_decode(code), -alaw_decode(code | 0x80));
        }
        // µ-law: codes 0x80..=0xFF decrease in magnitude as the code grows.
        for code in 0x80u8..0xFF {
            assert!(ulaw_decode(code) > ulaw_decode(code + 1));
        }
    }

    #[test]
    fn encode_boundaries() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(-4), 0x7F); // reference rounds through the 1's complement
        assert_eq!(ulaw_encode(-5), 0x7E);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_encode(15), 0xD5);
        assert_eq!(alaw_encode(16), 0xD4);
    }

    /// Encoder outputs at segment and rounding boundaries, from an independent transcription
    /// of the G.191 STL reference compressors.
    #[test]
    fn encode_reference_points() {
        let vectors: &[(i16, u8, u8)] = &[
            (-32768, 0x00, 0x2A),
            (-32124, 0x00, 0x2A),
            (-8159, 0x1F, 0x0A),
            (-4064, 0x2F, 0x1A),
            (-33, 0x7B, 0x57),
            (-32, 0x7B, 0x54),
            (-5, 0x7E, 0x55),
            (-4, 0x7F, 0x55),
            (-1, 0x7F, 0x55),
            (0, 0xFF, 0xD5),
            (3, 0xFF, 0xD5),
            (4, 0xFE, 0xD5),
            (31, 0xFB, 0xD4),
            (32, 0xFB, 0xD7),
            (4063, 0xAF, 0x9A),
            (8159, 0x9F, 0x8A),
            (32124, 0x80, 0xAA),
            (32767, 0x80, 0xAA),
        ];
        for &(sample, mu, a) in vectors {
            assert_eq!(ulaw_encode(sample), mu, "ulaw {sample}");
            assert_eq!(alaw_encode(sample), a, "alaw {sample}");
        }
    }

    /// The encoders over all 65 536 inputs, summarised by CRC-32 (IEEE) of the output bytes in
    /// input order, equal to the same summary of the reference transcription.
    #[test]
    fn encode_all_inputs_match_reference_checksum() {
        fn crc32(bytes: impl Iterator<Item = u8>) -> u32 {
            let mut crc = !0u32;
            for b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        assert_eq!(crc32((i16::MIN..=i16::MAX).map(ulaw_encode)), 0x6399_D432);
        assert_eq!(crc32((i16::MIN..=i16::MAX).map(alaw_encode)), 0x9133_796E);
    }

    #[test]
    fn decode_then_encode_is_identity_for_every_code() {
        for code in 0u8..=255 {
            // µ-law 0x7F (negative zero) decodes to 0, which encodes to 0xFF.
            if code != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(code)), code, "ulaw {code:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "alaw {code:#04x}");
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            let bound = (i32::from(s).abs() / 16).max(16) + 8;
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= bound,
                "ulaw {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= bound,
                "alaw {s} -> {a}"
            );
        }
    }

    #[test]
    fn frame_round_trip() {
        let mut samples = [0i16; FRAME_SAMPLES];
        for (i, s) in samples.iter_mut().enumerate() {
            *s = (i as i16 - 80) * 300;
        }
        let frame = AudioFrame::from_samples(&samples);
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            let mut buf = [0u8; FRAME_SAMPLES];
            let payload = law.encode_frame(&frame, &mut buf).to_vec();
            let back = law.decode_frame(&payload);
            let again = law.decode_frame(law.encode_frame(&back, &mut buf));
            assert_eq!(back, again, "decode∘encode is idempotent");
        }
        assert!(G711Law::Ulaw.decode_frame(&[]).is_silent());
    }
}
