//! The typed event bus every session-core layer publishes to: Arc-shared events, per-session indexed subscriptions, bounded receivers with lag reporting.
