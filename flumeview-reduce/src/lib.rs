//! # flumeview-reduce
//!
//! A [flume-rs](flume_core) view that folds every record of the log into one state value —
//! a count, a sum, the latest value per author — like JavaScript's `flumeview-reduce`.
//! The state can be persisted, together with its view version and the seq of the last
//! record it reflects, so that a restart resumes instead of rebuilding.
//!
//! ```
//! use flume_core::{Flume, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_reduce::{Reduce, ReduceReader};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Flume::new(MemoryLog::new())
//!     .use_view("count", Reduce::count(1))?
//!     .use_view("sum", Reduce::new(1, 0i64, |sum: &mut i64, n: &i64| *sum += n))?;
//! for n in [3, 4, 5] {
//!     db.append(&n).await?;
//! }
//! let count = db.view::<ReduceReader<u64>>("count")?.get(Wait::Log).await?;
//! let sum = db.view::<ReduceReader<i64>>("sum")?.get(Wait::Log).await?;
//! assert_eq!((count, sum), (3, 12));
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Building a view
//!
//! [`Reduce::new`] gives the reducer each decoded value; [`Reduce::filter_map`] first
//! picks what it needs from each value (or skips it); [`Reduce::from_records`] gives it
//! the raw [`Record`](flume_core::Record), so a view that needs only seqs or sizes never
//! decodes; [`Reduce::count`] counts records. [`Reduce::filter`] skips values. Records
//! that are skipped still advance the view's `since`.
//!
//! ## Persistence
//!
//! [`Reduce::persist`] keeps the state in a directory of its own, in one file rewritten
//! atomically at each checkpoint (write a temporary file, fsync, rename, fsync the
//! directory): a crash leaves the previous checkpoint or the new one, never a mix. The
//! state, the view version and `since` are in the same file, so they always agree.
//! [`Reduce::codec`] picks JSON (the default) or MessagePack, and
//! [`Reduce::checkpoint_every`] how often the driver saves. A file from another view
//! version, a damaged or truncated file, or one whose state no longer decodes makes the
//! view rebuild from the log; it never stops the database. The byte layout is documented
//! in `docs/format.md`, section "flumeview-reduce state file".
//!
//! ## Reading
//!
//! [`ReduceReader::get`] copies the state out, [`ReduceReader::read`] borrows it, both
//! after waiting for the view to catch up as a [`Wait`](flume_core::Wait) says, and
//! [`ReduceReader::changes`] streams it as it changes, starting from the loaded state
//! (after a reopen, the checkpoint, never the initial value); [`ReduceReader::follow`]
//! adds a [`Live::Synced`](flume_core::Live::Synced) marker once the state has caught up
//! with the log.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod codec;
mod file;
mod reader;
mod reduce;

pub use crate::codec::StateCodec;
pub use crate::reader::ReduceReader;
pub use crate::reduce::Reduce;
