//! Shared vocabulary of the session-core workspace: identifiers, call states with their legal
//! transitions, SIP status codes and the error taxonomy every crate classifies its errors into.
//!
//! This crate does no I/O and depends on no async runtime (architecture invariant 1), so every
//! layer — the SIP codec, the sans-IO protocol cores, the media engine and the umbrella
//! `session-core` — can share it.
//!
//! ```
//! use session_types::{CallState, FailureReason, SessionId, StatusCode};
//!
//! let id = SessionId::new();
//! let text = id.to_string();
//! assert_eq!(text.parse::<SessionId>().unwrap(), id);
//!
//! let state = CallState::Initiating.transition(CallState::Ringing).unwrap();
//! let state = state.transition(CallState::Active).unwrap();
//! // A call that is up cannot go back to ringing.
//! assert!(state.transition(CallState::Ringing).is_err());
//!
//! let busy = CallState::Failed(FailureReason::Rejected(StatusCode::BUSY_HERE));
//! assert!(busy.is_final());
//! ```

mod error;
mod id;
mod priority;
mod state;
mod status;

pub use error::{Classify, Error, ErrorKind, Result};
pub use id::{BridgeId, BridgeTechnology, CallId, DialogId, GroupId, ParseIdError, SessionId};
pub use priority::Priority;
pub use state::{CallState, Direction, FailureReason, StuckOn, TransitionError};
pub use status::{StatusClass, StatusCode};
