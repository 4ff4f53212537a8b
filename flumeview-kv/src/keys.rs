//! `Key`: typed keys with an order-preserving byte encoding. They live in the engine,
//! `flume_lsm`, shared with `flumeview-index`; this crate re-exports them unchanged.

pub use flume_lsm::{Key, KeyPart};
