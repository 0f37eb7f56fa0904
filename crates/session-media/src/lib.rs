//! SDP offer/answer, RTP/RTCP endpoints, G.711, DTMF, jitter buffer and mixer for session-core.
