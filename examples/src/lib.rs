//! Runnable flume-rs examples. Each file in `examples/examples/` is a program:
//!
//! - `quickstart`: a memory log, a reduce view, append and read;
//! - `custom_view`: a hand-written view (latest message per author);
//! - `file_log`: a durable log with a persisted view that resumes where it stopped;
//! - `index`: SSB-style messages indexed by key and by (author, seq), with a rebuild
//!   progress bar;
//! - `workload`: the driver that runs flume-rs in the shared benchmark harness.
//!
//! Run one with `cargo run -p examples --example quickstart`.
