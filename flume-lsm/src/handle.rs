//! `Engine`: a store as a view holds it, with its directory lock and compactor.

use std::fs::File;
use std::sync::Arc;

use flume_core::{Checkpoint, Result, Seq};

use crate::{Compactor, Store};

/// A [`Store`] as a view holds it: the store, the lock on its directory and its
/// background compactor, both taken on first use (the first `load`, `checkpoint` or
/// `reset`), so that building a view touches no file. A view's `View::load`,
/// `View::checkpoint` and `View::reset` are the methods of the same names.
///
/// Dropping it stops the compactor before the directory lock is released, so that a new
/// handle of the directory never sees this one's compaction finish.
///
/// ```
/// use flume_lsm::{Engine, LsmOptions, Retention, Semantics, Store};
///
/// let dir = tempfile::tempdir()?;
/// let options = LsmOptions::default();
/// let store = Store::new(1, &options, Some(dir.path().into()), Semantics::MultiValued, Retention::Live);
/// let mut engine = Engine::new(store, &options);
/// assert_eq!(engine.load()?, None); // a new directory: build from the start of the log
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Engine {
    store: Arc<Store>,
    background_compaction: bool,
    compactor: Option<Compactor>,
    lock: Option<File>,
}

impl Engine {
    /// Holds `store`; runs a compactor if `options` ask for background compaction.
    pub fn new(store: Store, options: &crate::LsmOptions) -> Engine {
        Engine {
            store: Arc::new(store),
            background_compaction: options.background_compaction,
            compactor: None,
            lock: None,
        }
    }

    /// The store, for the view's readers and its `apply`.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Locks the directory and starts the compactor, once.
    fn open(&mut self) -> Result<()> {
        if let (Some(dir), None) = (self.store.dir(), &self.lock) {
            self.lock = Some(crate::lock_dir(dir)?);
        }
        if self.background_compaction && self.compactor.is_none() {
            let started = Compactor::start(&self.store);
            self.compactor = Some(started.map_err(|e| flume_core::Error::Backend(e.into()))?);
        }
        Ok(())
    }

    /// Locks the directory, then [`Store::load`]: reads the manifest and opens the runs
    /// it names, removing files a crash left behind.
    ///
    /// # Errors
    /// [`Error::Locked`](flume_core::Error::Locked) when another handle holds the
    /// directory; those of [`Store::load`].
    pub fn load(&mut self) -> Result<Option<Checkpoint>> {
        self.open()?;
        self.store.load()
    }

    /// [`Store::checkpoint`], then lets the compactor look for runs to merge.
    ///
    /// # Errors
    /// Those of [`Store::checkpoint`]; the previous checkpoint stays in force.
    pub fn checkpoint(&mut self, since: Seq) -> Result<()> {
        self.open()?;
        if self.store.checkpoint(since)? {
            if let Some(compactor) = &self.compactor {
                compactor.poke();
            }
        }
        Ok(())
    }

    /// [`Store::reset`]: deletes every run and the manifest, and empties the memtable.
    ///
    /// # Errors
    /// Those of [`Store::reset`].
    pub fn reset(&mut self) -> Result<()> {
        self.open()?;
        self.store.reset()
    }
}

impl Drop for Engine {
    /// Stops the compactor before the directory lock is released.
    fn drop(&mut self) {
        self.compactor.take();
    }
}
