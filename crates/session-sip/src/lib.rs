//! The SIP message codec (RFC 3261): message model, zero-copy parser, serializer, validation. No I/O, no async runtime.
