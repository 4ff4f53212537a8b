//! # flume-core
//!
//! An embedded database made of one append-only log and any number of streaming views.
//! The log is the only source of truth; each view streams the log into its own
//! query-optimised model, remembers how far it got (`since`), and can always be thrown
//! away and rebuilt from the log.
//!
//! This crate is the glue: the [`Log`] and [`View`] traits, the codecs, the driver that
//! feeds every view from one scan of the log, and the [`Flume`] handle.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod codec;
mod driver;
mod error;
mod flume;
mod log;
mod reader;
mod status;
mod stream;
mod view;
mod wait;

pub use crate::codec::{Codec, Json, MsgPack, Raw};
pub use crate::error::{BoxError, Error, Result};
pub use crate::flume::{Flume, FlumeBuilder};
pub use crate::log::{Durability, Log, RawRecord, StreamOptions};
pub use crate::reader::{LogReader, ReaderContext};
pub use crate::status::{LogStatus, Status, ViewState, ViewStatus};
pub use crate::stream::{range_stream, ReadRange};
pub use crate::view::{Checkpoint, CheckpointPolicy, Mapper, Record, Records, View};
pub use crate::wait::{Wait, Waiter};

/// A record's position in the log: dense, from 0, assigned by the log, never changed.
pub type Seq = u64;

#[cfg(feature = "testing")]
pub mod testing;
