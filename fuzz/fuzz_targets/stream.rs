//! Any bytes fed to the stream decoder in chunks whose sizes come from the input: it must
//! never panic, and the messages must not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_sip::{Message, ParseLimits, StreamDecoder};

fn decode(chunks: &[&[u8]]) -> (Vec<Message>, bool) {
    let mut d = StreamDecoder::new(ParseLimits::default().max_message_size(4096));
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        loop {
            match d.decode() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) if e.is_framing() => return (out, true),
                Err(_) => {}
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 32) + 1;
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let (split, split_failed) = decode(&chunks);
    let (whole, whole_failed) = decode(&[rest]);
    // Errors may surface at different moments, but the messages before one must agree.
    if !split_failed && !whole_failed {
        assert_eq!(split, whole);
    }
});
