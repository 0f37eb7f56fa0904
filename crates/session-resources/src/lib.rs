//! Admission limits with RAII permits, an RTP port pool, and counters, gauges and histograms for session-core.
