//! Runnable flume-rs examples. Each file in `examples/examples/` is a program:
//!
//! - `quickstart`: a memory log, a reduce view, append and read;
//! - `custom_view`: a hand-written view (latest message per author).
//!
//! Run one with `cargo run -p examples --example quickstart`.
