//! Whatever the parser accepts serializes to bytes that parse to the same message, and
//! serializing is idempotent.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use session_sip::{ParseLimits, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits::default();
    if let Ok(m) = parse_datagram(&Bytes::copy_from_slice(data), &limits) {
        let wire = m.to_bytes();
        let again = parse_datagram(&wire, &limits).expect("serialized message parses");
        assert_eq!(again, m);
        assert_eq!(again.to_bytes(), wire);
    }
});
