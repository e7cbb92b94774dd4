//! The room join/leave protocol.
