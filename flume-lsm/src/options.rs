//! `LsmOptions`: every tuning knob of a store, with its default.

use std::time::Duration;

use flume_core::CheckpointPolicy;

/// Tuning for a [`Store`](crate::Store) (and for the views built on it:
/// `flumeview_index::IndexOptions` is this type). Every field has a documented default;
/// change them with the builder methods of the same name:
///
/// ```
/// use flume_lsm::LsmOptions;
/// let options = LsmOptions::default().memtable_bytes(4 << 20).merge_fan_in(8);
/// assert_eq!(options.block_bytes, 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LsmOptions {
    /// How many bytes (approximately: key bytes plus 64 per entry) the in-memory table
    /// may hold before it is written out as a run. Bounds the store's memory use while
    /// records are applied. Default: 16 MiB.
    pub memtable_bytes: usize,
    /// The size a run's blocks are cut at; each block has its own CRC and one entry in
    /// the run's sparse index. Default: 4096 bytes.
    pub block_bytes: usize,
    /// Bloom filter bits per distinct key in each run: 10 gives about 1% false
    /// positives on point lookups of absent keys. Default: 10.
    pub bloom_bits_per_key: u32,
    /// How many runs of the same level a compaction merges into one run of the next
    /// level (at least 2). Also: a checkpoint that finds at least this many runs
    /// flushed since the previous checkpoint (after a build or a long catch-up) merges
    /// them into one before committing it, so the checkpoint that ends a build (at
    /// close, say) reads and writes what the build wrote once more. Default: 4.
    pub merge_fan_in: usize,
    /// Whether a background thread compacts runs (see [`Compactor`](crate::Compactor)).
    /// Without it runs pile up (reads get slower) until the store is rebuilt.
    /// Default: true.
    pub background_compaction: bool,
    /// How often the driver checkpoints a view built on the store (flushes the memtable
    /// and writes the manifest). Default: [`CheckpointPolicy::default`] (100,000 records or 1 second).
    pub checkpoint: CheckpointPolicy,
}

impl Default for LsmOptions {
    fn default() -> Self {
        LsmOptions {
            memtable_bytes: 16 << 20,
            block_bytes: 4096,
            bloom_bits_per_key: 10,
            merge_fan_in: 4,
            background_compaction: true,
            checkpoint: CheckpointPolicy::default(),
        }
    }
}

impl LsmOptions {
    /// Sets [`LsmOptions::memtable_bytes`].
    #[must_use]
    pub fn memtable_bytes(mut self, bytes: usize) -> Self {
        self.memtable_bytes = bytes;
        self
    }

    /// Sets [`LsmOptions::block_bytes`] (at least 64).
    #[must_use]
    pub fn block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes.max(64);
        self
    }

    /// Sets [`LsmOptions::bloom_bits_per_key`] (at least 1).
    #[must_use]
    pub fn bloom_bits_per_key(mut self, bits: u32) -> Self {
        self.bloom_bits_per_key = bits.max(1);
        self
    }

    /// Sets [`LsmOptions::merge_fan_in`] (at least 2).
    #[must_use]
    pub fn merge_fan_in(mut self, runs: usize) -> Self {
        self.merge_fan_in = runs.max(2);
        self
    }

    /// Sets [`LsmOptions::background_compaction`].
    #[must_use]
    pub fn background_compaction(mut self, on: bool) -> Self {
        self.background_compaction = on;
        self
    }

    /// Sets [`LsmOptions::checkpoint`].
    #[must_use]
    pub fn checkpoint_every(mut self, records: u64, interval: Duration) -> Self {
        self.checkpoint = CheckpointPolicy { records, interval };
        self
    }
}
