//! Building blocks for views and logs that keep their state in files: the pieces every
//! crate of this workspace used to write for itself, written once.
//!
//! - [`StateFile`]: a versioned, CRC32C-checked state file, replaced atomically. A view
//!   that fits its state in one buffer persists itself with it in a few lines; its byte
//!   layout is in `docs/format.md` ("State file").
//! - [`DirLock`]: one open handle per directory, across processes.
//! - [`TempFile`] and [`replace`]: write a file under a temporary name, fsync it, rename
//!   it over the old one, fsync the directory. A crash leaves the old file or the new one.
//! - [`sync_dir`], [`remove_if_present`]: the two directory chores that go with them.
//! - [`Reader`], [`put_varint`]: little-endian and LEB128 varint coding, with a reader
//!   that returns a [`DecodeError`] on short input instead of panicking.
//! - [`hexdump`]: the dump that snapshot tests pin file formats with.
//! - [`Faults`]: crash points, short writes, a full disk and failing fsyncs, for tests.
//!
//! A view persisting a counter:
//!
//! ```
//! use flume_core::durable::StateFile;
//!
//! # fn main() -> flume_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let file = StateFile::new(dir.path().join("count.state"), 1);
//! file.save(41, &42u64.to_le_bytes())?; // in `View::checkpoint(41)`
//!
//! // In `View::load`: the state and the seq it reflects, or `None` (nothing usable
//! // persisted: missing, written by another version, or damaged) to rebuild.
//! let saved = file.load()?.expect("saved above");
//! assert_eq!(saved.since, Some(41));
//! assert_eq!(saved.bytes[..], 42u64.to_le_bytes());
//! # Ok(()) }
//! ```

mod coding;
mod faults;
mod files;
mod hexdump;
mod lock;
mod state;

pub use self::coding::{put_varint, varint_len, DecodeError, Reader};
pub use self::faults::Faults;
pub use self::files::{remove_if_present, replace, sync_dir, TempFile};
pub use self::hexdump::hexdump;
pub use self::lock::DirLock;
pub use self::state::{Saved, StateFile};
