//! Runnable flume-rs examples: see `examples/`.
