//! The conformance suites (feature `testing`): the [`Log`](crate::Log) and
//! [`View`](crate::View) contracts as executable checks, run by every backend and every view.
//!
//! Each public function checks one behaviour. A function panics, failing the test, at the
//! first breach of the contract, and waits at most 30 seconds for anything, so that a hung
//! stream or read fails instead of hanging the test run.
//!
//! # The log suite
//!
//! The log cases take a **factory**: a closure (`FnMut() -> impl Future<Output = L>`) that
//! returns a fresh, **empty** log each time it is called. A backend runs the whole suite
//! with one line in a file under `tests/`, with
//! [`log_conformance_tests!`](crate::log_conformance_tests), which writes one
//! `#[tokio::test]` per case:
//!
//! ```
//! flume_core::log_conformance_tests!(|| async { flumelog_memory::MemoryLog::new() });
//! # fn main() {}
//! ```
//!
//! A single case can also be called directly:
//!
//! ```
//! use flumelog_memory::MemoryLog;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! flume_core::testing::append_batch_assigns_consecutive_seqs(|| async { MemoryLog::new() })
//!     .await;
//! # }
//! ```
//!
//! The log cases:
//!
#![doc = crate::__log_conformance_list!([crate::__conformance_table])]
//!
//! # The view suite
//!
//! The view cases take a [`ViewUnderTest`]: how to make the view (in a directory, at a
//! version), how to read its state, and what that state must be after a list of records.
//! A view runs the whole suite with
//! [`view_conformance_tests!`](crate::view_conformance_tests); the example there is
//! complete. The view cases:
//!
#![doc = crate::__view_conformance_list!([crate::__conformance_table])]

mod appends;
mod close;
mod conditional;
mod durability;
mod live;
mod log_suite;
mod streams;
mod support;
mod view_cases;
mod view_suite;

pub use self::appends::*;
pub use self::close::*;
pub use self::conditional::*;
pub use self::durability::*;
pub use self::live::*;
pub use self::streams::*;
pub use self::view_cases::*;
pub use self::view_suite::ViewUnderTest;
pub use crate::durable::hexdump;

/// How long the suites wait for anything before failing instead of hanging.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes the table of a case list for the docs: one row per case, linked.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_table {
    ($($case:ident: $checks:literal,)*) => {
        concat!(
            "| case | checks |\n|---|---|\n",
            $("| [`", stringify!($case), "`] | ", $checks, " |\n",)*
        )
    };
}
