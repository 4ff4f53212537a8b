//! The log conformance suite (feature `testing`). Being written.
