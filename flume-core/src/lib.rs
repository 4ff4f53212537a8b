//! # flume-core
//!
//! An embedded database made of one append-only log and any number of streaming views.
//! The log is the only source of truth; each view streams the log into its own
//! query-optimised model, remembers how far it got (`since`), and can always be thrown
//! away and rebuilt from the log.
//!
//! This crate is the glue: the [`Log`] and [`View`] traits, the codecs, the driver that
//! feeds every view from one scan of the log, and the [`Flume`] handle.
//!
//! ```
//! use flume_core::{Flume, StreamOptions, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_reduce::{Reduce, ReduceReader};
//! use futures::TryStreamExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), flume_core::BoxError> {
//! // One log (here in memory; `flumelog-file` for a durable one), two views.
//! let db = Flume::<u64>::new(MemoryLog::new())
//!     .use_view("count", Reduce::count(1))?
//!     .use_view("sum", Reduce::new(1, 0u64, |sum: &mut u64, n: &u64| *sum += n))?;
//!
//! // Appends return the record's seq: dense, from 0, never changed.
//! assert_eq!(db.append(&20).await?, 0);
//! assert_eq!(db.append_batch(&[1, 2]).await?, 1..3);
//!
//! // View reads wait until the view has applied what the log held at call time.
//! let sum: ReduceReader<u64> = db.view("sum")?;
//! assert_eq!(sum.get(Wait::Log).await?, 23);
//!
//! // The log itself: by seq, or as a stream (live streams follow new appends).
//! assert_eq!(db.get(1).await?, 1);
//! let newest: Vec<(u64, u64)> = db
//!     .stream(StreamOptions::new().reverse(true).limit(2))
//!     .try_collect()
//!     .await?;
//! assert_eq!(newest, vec![(2, 2), (1, 1)]);
//!
//! // Every view's position and state, for progress bars.
//! assert!(db.status().borrow().views.contains_key("count"));
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Where to start
//!
//! - Compose a database: [`Flume::new`] / [`Flume::builder`], then [`Flume::use_view`].
//! - Read views: every read takes a [`Wait`] level (the table on [`Wait`] says what each
//!   waits for); [`Flume::follow`] and the views' `follow` streams yield [`Live`] items
//!   with a marker once they have caught up.
//! - Write a view: implement [`View`] (a version, `apply`, `reset`, a reader made from a
//!   [`ReaderContext`]); see the example on the trait.
//! - Wait for a database to be usable after opening it: [`Flume::ready`]. Close it with
//!   [`Flume::close`] (dropping the last handle also closes it, best effort).
//! - Keep a view's state in files: [`durable`] has a versioned, checksummed state file
//!   that a view saves and loads in a line each, a directory lock, atomic file
//!   replacement and the coding helpers the workspace's own file formats use.
//! - Write a log backend: implement [`Log`] (or [`ReadRange`] / [`AsyncReadRange`] plus
//!   [`range_stream`] / [`async_range_chunks`], the one range loop) and run the log
//!   conformance suite in `testing` (feature `testing`); a view runs the view suite.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod codec;
mod driver;
pub mod durable;
mod error;
mod flume;
mod live;
mod log;
mod reader;
mod status;
mod stream;
mod view;
mod wait;

pub use crate::codec::{Codec, Json, MsgPack, Raw};
pub use crate::error::{BoxError, Error, Result};
pub use crate::flume::{Flume, FlumeBuilder};
pub use crate::live::Live;
pub use crate::log::{Durability, Log, RawRecord, StreamOptions};
pub use crate::reader::{LogReader, ReaderContext};
pub use crate::status::{LogStatus, Status, ViewState, ViewStatus};
pub use crate::stream::{
    async_range_chunks, range_chunks, range_stream, AsyncReadRange, ReadRange,
};
pub use crate::view::{Checkpoint, CheckpointPolicy, Mapper, Record, Records, View};
pub use crate::wait::{Wait, Waiter};

/// A record's position in the log: dense, from 0, assigned by the log, never changed.
pub type Seq = u64;

#[cfg(feature = "testing")]
pub mod testing;
