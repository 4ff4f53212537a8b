//! Run files: immutable sorted runs of entries, written once by a flush or a compaction
//! and read through a memory map (or, for a store without a directory, from memory).
//!
//! The layout is documented byte by byte in `docs/format.md`, section
//! "flumeview-index files"; `tests::snapshot_*` pin it.
//!
//! ```text
//! header   "FVIX" | format u16 | flags u16                                  8 bytes
//! blocks   { entry* | offset u32 * count | count u32 | crc32c u32 }*  each about block_bytes
//!          entry = kind u8 | seq u64 | key length (LEB128) | key
//!          kind = 1 put | 2 delete | 3 remove
//!          offset = where each entry starts in the block (lookups binary-search them)
//! index    { offset u64 | length u32 | kinds u8 | last key length (LEB128) | last key }* | crc32c u32
//!          kinds = which kinds the block holds: bit 0 a delete, bit 1 a remove (format 3;
//!          format 2 rows have no such byte and read as "may hold both")
//! padding  zero bytes up to a multiple of 64
//! bloom    { 64-byte block }* | crc32c u32          each key's bits in one block
//! footer   index offset, length | bloom offset, length | k u32 | blocks u32 |
//!          entries u64 | keys u64 | min seq u64 | max seq u64 | "FVIX" | crc32c u32   80 bytes
//! ```
//! All integers are little-endian.

mod cursor;
mod writer;

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use flume_core::{Error, Result, Seq};
use memmap2::Mmap;

pub(crate) use self::cursor::RunCursor;
pub(crate) use self::writer::{RunParams, RunWriter};
use crate::bloom::{self, BLOOM_BLOCK};
use crate::coding::{get_varint, u16_at, u32_at, u64_at};
use crate::entry::Kind;
use crate::key::key_prefix;

/// The first four bytes of a run file, and the four before its footer's CRC.
pub(crate) const MAGIC: [u8; 4] = *b"FVIX";
/// The run format version this crate writes. Version 3 adds a `kinds` byte to each
/// block index row (which kinds the block holds, so that a key's newest delete is found
/// without reading its other blocks) and the remove kind (3). This crate also reads
/// version 2 (no `kinds` byte: every block may hold deletes and removes). Version 1
/// (bloom filters of `k` bits anywhere in the filter, hashed with FNV-1a) is refused as
/// damaged: the view is then rebuilt from the log. Builds before version 3 refuse
/// version 3 runs the same way.
pub(crate) const FORMAT_VERSION: u16 = 3;
/// The older run format version this crate still reads.
const FORMAT_VERSION_2: u16 = 2;
/// `kinds` bit: the block holds a delete.
pub(crate) const KINDS_DELETE: u8 = 1;
/// `kinds` bit: the block holds a remove.
pub(crate) const KINDS_REMOVE: u8 = 2;

/// The `kinds` bit of an entry kind (none for a put).
pub(crate) fn kind_bit(kind: Kind) -> u8 {
    match kind {
        Kind::Put => 0,
        Kind::Delete => KINDS_DELETE,
        Kind::Remove => KINDS_REMOVE,
    }
}
/// Bytes of the header.
pub(crate) const HEADER_LEN: usize = 8;
/// Bytes of the footer.
pub(crate) const FOOTER_LEN: usize = 80;
/// Bytes after a block's entry offsets: count and CRC.
const BLOCK_TRAILER: usize = 8;
/// The smallest entry: kind, seq, a one-byte key length.
const MIN_ENTRY: usize = 10;

/// What a written run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunStats {
    pub(crate) entries: u64,
    pub(crate) keys: u64,
    pub(crate) min_seq: Seq,
    pub(crate) max_seq: Seq,
    pub(crate) bytes: u64,
}

/// Writes a run, entry by entry, in storage order.
/// Where a run's bytes live.
enum Data {
    Mapped(Mmap),
    Heap(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Heap(v) => v,
        }
    }
}

/// The run's sparse index, one row per block, held as parallel arrays so that a point
/// lookup's binary search walks a dense array of 8-byte key prefixes (8 bytes per block:
/// a run of a million entries has about 16,000 blocks, 128 KiB of prefixes, which stay
/// in the CPU caches) and follows a block's full last key only when prefixes tie.
#[derive(Debug, Default)]
struct Sparse {
    /// The first 8 bytes of each block's last key, big-endian, zero-padded: orders like
    /// the key whenever it differs.
    prefixes: Vec<u64>,
    /// Where each block starts in the run; one more row: where the last block ends.
    starts: Vec<usize>,
    /// Where each block's last key is in the run's bytes (in the index section).
    last_keys: Vec<(usize, usize)>,
    /// Which kinds each block holds (`KINDS_*` bits).
    kinds: Vec<u8>,
    /// For each block, the first block at or after it that holds a delete (the block
    /// count if none): a key's newest delete in one jump.
    next_delete: Vec<u32>,
}

impl Sparse {
    fn len(&self) -> usize {
        self.prefixes.len()
    }
}

/// One entry of a decoded block; the key is a range of the run's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEntry {
    key_at: usize,
    key_len: usize,
    pub(crate) seq: Seq,
    pub(crate) kind: Kind,
}

/// An open, validated run.
pub(crate) struct Run {
    pub(crate) id: u64,
    pub(crate) level: u32,
    pub(crate) path: Option<PathBuf>,
    data: Data,
    blocks: Sparse,
    bloom_at: usize,
    bloom_len: usize,
    bloom_k: u32,
    pub(crate) stats: RunStats,
    /// One bit per block whose checksum was verified: a run never changes, so each
    /// block's CRC is checked once, on its first read, not on every lookup.
    verified: Vec<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("level", &self.level)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// Opens and validates the run file at `path`.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Corrupt`] naming the file and the offset of the damage.
    pub(crate) fn open(path: &Path, id: u64, level: u32) -> Result<Run> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: len,
                reason: format!("the run file is truncated: {len} bytes"),
            });
        }
        let map = crate::mmap::map(&file).map_err(|e| Error::io(path, e))?;
        Run::parse(Data::Mapped(map), Some(path.to_path_buf()), id, level)
    }

    /// A run held in memory.
    pub(crate) fn from_vec(bytes: Vec<u8>, id: u64, level: u32) -> Result<Run> {
        Run::parse(Data::Heap(bytes), None, id, level)
    }

    fn parse(data: Data, path: Option<PathBuf>, id: u64, level: u32) -> Result<Run> {
        let shown = path
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("<memory run {id}>")));
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            path: shown.clone(),
            offset: offset as u64,
            reason,
        };
        let bytes = data.bytes();
        let len = bytes.len();
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(
                len,
                format!("the run file is truncated: {len} bytes"),
            ));
        }
        if bytes[0..4] != MAGIC {
            return Err(corrupt(
                0,
                "not a flume-lsm run file (wrong magic bytes)".into(),
            ));
        }
        let format = u16_at(bytes, 4);
        if format != FORMAT_VERSION && format != FORMAT_VERSION_2 {
            return Err(corrupt(
                4,
                format!("unknown run format version {format} (this build reads {FORMAT_VERSION})"),
            ));
        }
        if bytes[6..8] != [0, 0] {
            return Err(corrupt(6, "unknown run flags".into()));
        }
        let f = len - FOOTER_LEN;
        let stored = u32_at(bytes, f + 76);
        if bytes[f + 72..f + 76] != MAGIC || crc32c::crc32c(&bytes[f..f + 76]) != stored {
            return Err(corrupt(
                f,
                "the run footer is damaged (magic or checksum mismatch)".into(),
            ));
        }
        let index_at = u64_at(bytes, f);
        let index_len = u64_at(bytes, f + 8);
        let bloom_at = u64_at(bytes, f + 16);
        let bloom_len = u64_at(bytes, f + 24);
        let bloom_k = u32_at(bytes, f + 32);
        let block_count = u32_at(bytes, f + 36);
        let stats = RunStats {
            entries: u64_at(bytes, f + 40),
            keys: u64_at(bytes, f + 48),
            min_seq: u64_at(bytes, f + 56),
            max_seq: u64_at(bytes, f + 64),
            bytes: len as u64,
        };
        let index_end = index_at.checked_add(index_len);
        let sections_ok = index_at >= HEADER_LEN as u64
            && index_len >= 4
            && index_end.and_then(|e| e.checked_next_multiple_of(BLOOM_BLOCK as u64))
                == Some(bloom_at)
            && bloom_len >= (BLOOM_BLOCK + 4) as u64
            && (bloom_len - 4).is_multiple_of(BLOOM_BLOCK as u64)
            && bloom::valid_layout((bloom_len - 4) / BLOOM_BLOCK as u64, bloom_k)
            && bloom_at.checked_add(bloom_len) == Some(f as u64)
            && block_count >= 1
            && stats.entries >= u64::from(block_count)
            && stats.keys >= 1
            && stats.keys <= stats.entries
            && stats.min_seq <= stats.max_seq;
        if !sections_ok {
            return Err(corrupt(
                f,
                "the run footer describes an impossible layout".into(),
            ));
        }
        let (index_at, index_len) = (index_at as usize, index_len as usize);
        if bytes[index_at + index_len..bloom_at as usize]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(corrupt(
                index_at + index_len,
                "the padding before the bloom filter is not zero".into(),
            ));
        }
        let index = &bytes[index_at..index_at + index_len];
        let body = index_len - 4;
        if crc32c::crc32c(&index[..body]) != u32_at(index, body) {
            return Err(corrupt(
                index_at + body,
                "the run's block index checksum does not match".into(),
            ));
        }
        let (bloom_at, bloom_len) = (bloom_at as usize, bloom_len as usize - 4);
        if crc32c::crc32c(&bytes[bloom_at..bloom_at + bloom_len])
            != u32_at(bytes, bloom_at + bloom_len)
        {
            return Err(corrupt(
                bloom_at + bloom_len,
                "the run's bloom filter checksum does not match".into(),
            ));
        }
        // The index: blocks are contiguous from the header to the index, last keys ascend.
        let mut blocks = Sparse::default();
        let mut at = 0;
        let mut expect = HEADER_LEN;
        while at < body {
            let start = at;
            let bad = |why: &str| {
                corrupt(
                    index_at + start,
                    format!("block index entry {}: {why}", blocks.len()),
                )
            };
            let row = if format == FORMAT_VERSION { 14 } else { 13 };
            if body - at < row {
                return Err(bad("truncated"));
            }
            let offset = u64_at(index, at);
            let block_len = u64::from(u32_at(index, at + 8));
            at += 12;
            let kinds = if format == FORMAT_VERSION {
                at += 1;
                index[at - 1]
            } else {
                KINDS_DELETE | KINDS_REMOVE
            };
            if kinds & !(KINDS_DELETE | KINDS_REMOVE) != 0 {
                return Err(bad("unknown kinds bits"));
            }
            let key_len =
                get_varint(&index[..body], &mut at).ok_or_else(|| bad("bad key length"))?;
            if key_len > (body - at) as u64 {
                return Err(bad("key runs past the index"));
            }
            let key = &index[at..at + key_len as usize];
            if offset != expect as u64
                || block_len < (BLOCK_TRAILER + MIN_ENTRY + 4) as u64
                || offset + block_len > index_at as u64
            {
                return Err(bad("block out of place"));
            }
            if blocks
                .last_keys
                .last()
                .is_some_and(|&(k, n)| bytes[k..k + n] > *key)
            {
                return Err(bad("last keys out of order"));
            }
            blocks.prefixes.push(key_prefix(key));
            blocks.starts.push(expect);
            blocks.last_keys.push((index_at + at, key.len()));
            blocks.kinds.push(kinds);
            at += key_len as usize;
            expect += block_len as usize;
        }
        blocks.starts.push(expect);
        blocks.next_delete = vec![0; blocks.len()];
        let mut next = blocks.len() as u32;
        for i in (0..blocks.len()).rev() {
            if blocks.kinds[i] & KINDS_DELETE != 0 {
                next = i as u32;
            }
            blocks.next_delete[i] = next;
        }
        let verified = (0..blocks.len().div_ceil(64))
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        Ok(Run {
            id,
            level,
            path,
            data,
            blocks,
            bloom_at,
            bloom_len,
            bloom_k,
            stats,
            verified,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    fn shown_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("<memory run {}>", self.id)))
    }

    /// Whether the run may hold `key` (false: it certainly does not).
    #[cfg(test)]
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(bloom::key_hash(key))
    }

    /// Whether the run may hold the key whose [`bloom::key_hash`] is `hash`: reads one
    /// 64-byte block of the filter.
    pub(crate) fn may_contain_hash(&self, hash: u64) -> bool {
        let filter = &self.bytes()[self.bloom_at..self.bloom_at + self.bloom_len];
        bloom::may_contain(filter, hash, self.bloom_k)
    }

    /// Where block `i` starts, and its length.
    fn block_span(&self, i: usize) -> (usize, usize) {
        let start = self.blocks.starts[i];
        (start, self.blocks.starts[i + 1] - start)
    }

    /// Block `i`'s last key.
    fn last_key(&self, i: usize) -> &[u8] {
        let (at, len) = self.blocks.last_keys[i];
        &self.bytes()[at..at + len]
    }

    /// The first block whose last key is not `below` (a predicate that holds for a
    /// leading run of blocks): a binary search of the last keys.
    fn first_block_not(&self, below: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.blocks.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(self.last_key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The first block whose last key is at or above `key` (whose prefix is `prefix`):
    /// the only block that can hold `key`. Searches the prefixes, and the full last keys
    /// only of the blocks whose prefix ties with the key's.
    fn block_of(&self, key: &[u8], prefix: u64) -> usize {
        let prefixes = &self.blocks.prefixes;
        let lo = prefixes.partition_point(|&p| p < prefix);
        if prefixes.get(lo) != Some(&prefix) {
            return lo;
        }
        let hi = lo + prefixes[lo..].partition_point(|&p| p == prefix);
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.last_key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub(crate) fn key(&self, e: &RawEntry) -> &[u8] {
        &self.bytes()[e.key_at..e.key_at + e.key_len]
    }

    /// Block `i`'s offset, its bytes, where its entries end (its offsets array starts)
    /// and its entry count; its CRC checked on its first read.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the run file and the block's offset.
    fn verified_block(&self, i: usize) -> Result<(usize, &[u8], usize, usize)> {
        let (offset, len) = self.block_span(i);
        let bytes = &self.bytes()[offset..offset + len];
        let body = len - 4;
        let (word, bit) = (&self.verified[i / 64], 1u64 << (i % 64));
        if word.load(std::sync::atomic::Ordering::Relaxed) & bit == 0 {
            if crc32c::crc32c(&bytes[..body]) != u32_at(bytes, body) {
                // The damage is somewhere in the block: name where the block starts
                // (not where its checksum is stored).
                return Err(Error::Corrupt {
                    path: self.shown_path(),
                    offset: offset as u64,
                    reason: format!("block {i} checksum mismatch"),
                });
            }
            word.fetch_or(bit, std::sync::atomic::Ordering::Relaxed);
        }
        let count = u32_at(bytes, body - 4) as usize;
        let entries_end = (body - 4)
            .checked_sub(count.saturating_mul(4))
            .filter(|&e| count > 0 && e >= count.saturating_mul(MIN_ENTRY));
        let Some(entries_end) = entries_end else {
            return Err(Error::Corrupt {
                path: self.shown_path(),
                offset: (offset + body - 4) as u64,
                reason: format!("block {i}: impossible entry count {count}"),
            });
        };
        Ok((offset, bytes, entries_end, count))
    }

    /// The entry at `at` of a block whose entries end at `end`: kind, seq, the key's
    /// range in the block, and where the next entry starts. `None` when malformed.
    fn entry_at(bytes: &[u8], at: usize, end: usize) -> Option<(Kind, Seq, Range<usize>)> {
        if at >= end || end - at < MIN_ENTRY {
            return None;
        }
        let kind = Kind::from_byte(bytes[at])?;
        let seq = u64_at(bytes, at + 1);
        let mut key_at = at + 9;
        let key_len = get_varint(&bytes[..end], &mut key_at)?;
        if key_len > (end - key_at) as u64 {
            return None;
        }
        Some((kind, seq, key_at..key_at + key_len as usize))
    }

    /// Decodes block `i`, checking its CRC and that its offsets match its entries.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the run file and the block's offset.
    pub(crate) fn block(&self, i: usize, out: &mut Vec<RawEntry>) -> Result<()> {
        out.clear();
        let (offset, bytes, end, count) = self.verified_block(i)?;
        let mut at = 0;
        while at < end {
            let bad = || Error::Corrupt {
                path: self.shown_path(),
                offset: (offset + at) as u64,
                reason: format!("block {i}: malformed entry"),
            };
            if out.len() >= count || u32_at(bytes, end + 4 * out.len()) as usize != at {
                return Err(bad());
            }
            let (kind, seq, key) = Self::entry_at(bytes, at, end).ok_or_else(bad)?;
            out.push(RawEntry {
                key_at: offset + key.start,
                key_len: key.len(),
                seq,
                kind,
            });
            at = key.end;
        }
        if out.len() != count {
            return Err(Error::Corrupt {
                path: self.shown_path(),
                offset: (offset + end) as u64,
                reason: format!("block {i}: holds {} entries, says {count}", out.len()),
            });
        }
        Ok(())
    }

    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Entry `n` of block `i`: kind, seq and key, decoding only it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the block is damaged.
    fn entry_in(&self, i: usize, n: usize) -> Result<(Kind, Seq, &[u8])> {
        let (offset, bytes, end, count) = self.verified_block(i)?;
        let at = if n < count {
            u32_at(bytes, end + 4 * n) as usize
        } else {
            end
        };
        let (kind, seq, range) = Self::entry_at(bytes, at, end).ok_or_else(|| Error::Corrupt {
            path: self.shown_path(),
            offset: (offset + at.min(end)) as u64,
            reason: format!("block {i}: malformed entry {n}"),
        })?;
        Ok((kind, seq, &bytes[range]))
    }

    /// The number of entries of block `i`.
    fn entry_count(&self, i: usize) -> Result<usize> {
        Ok(self.verified_block(i)?.3)
    }

    /// The first block whose last entry is not before the position `(key, seq, kind)`
    /// in storage order (the block count if none): where the first entry at or after
    /// that position is. A binary search of the last keys, then, among the blocks whose
    /// last key is `key` (a key with many entries spans many blocks), of their last
    /// entries, decoding one entry per probe: O(log blocks) block reads.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a probed block is damaged.
    pub(crate) fn seek_block(&self, key: &[u8], seq: Seq, kind: Kind) -> Result<usize> {
        let first = self.first_block_not(|k| k < key);
        let past = first + self.blocks_of_key(first, key);
        let (mut lo, mut hi) = (first, past);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let n = self.entry_count(mid)?;
            let (last_kind, last_seq, _) = self.entry_in(mid, n - 1)?;
            // The last entry's key is `key`: compare (seq descending, then kind).
            let before = last_seq > seq || (last_seq == seq && last_kind < kind);
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// How many blocks from `first` (the first whose last key is not below `key`) on
    /// have `key` as their last key.
    fn blocks_of_key(&self, first: usize, key: &[u8]) -> usize {
        self.first_block_not(|k| k <= key).max(first) - first
    }

    /// The seq of `key`'s newest delete in the run, if it holds one: jumps to the
    /// blocks that hold deletes (the `kinds` bits), reading at most the key's first and
    /// last blocks besides the one that answers.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a block read is damaged.
    pub(crate) fn newest_delete(&self, key: &[u8]) -> Result<Option<Seq>> {
        let n = self.blocks.len();
        let first = self.first_block_not(|k| k < key);
        if first >= n {
            return Ok(None);
        }
        // The key's entries end in the first block whose last key is above it.
        let last = (first + self.blocks_of_key(first, key)).min(n - 1);
        let mut i = first;
        let mut entries = Vec::new();
        while i <= last {
            let j = self.blocks.next_delete[i] as usize;
            if j > last {
                return Ok(None);
            }
            self.block(j, &mut entries)?;
            let found = entries
                .iter()
                .find(|e| e.kind == Kind::Delete && self.key(e) == key);
            if let Some(e) = found {
                return Ok(Some(e.seq));
            }
            i = j + 1;
        }
        Ok(None)
    }

    /// The first entry of `key` in storage order (its highest seq, a put before a
    /// delete at the same seq), if the run holds the key. Reads one block: a binary
    /// search of its entry offsets, decoding only the entries it probes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when that block is damaged.
    pub(crate) fn first_of(&self, key: &[u8]) -> Result<Option<(Seq, Kind)>> {
        let prefix = key_prefix(key);
        let i = self.block_of(key, prefix);
        if i >= self.blocks.len() {
            return Ok(None);
        }
        let (offset, len) = self.block_span(i);
        load_lines(&self.bytes()[offset..offset + len]);
        let (offset, bytes, end, count) = self.verified_block(i)?;
        let entry = |n: usize| {
            let at = u32_at(bytes, end + 4 * n) as usize;
            Self::entry_at(bytes, at, end).ok_or_else(|| Error::Corrupt {
                path: self.shown_path(),
                offset: (offset + at.min(end)) as u64,
                reason: format!("block {i}: malformed entry {n}"),
            })
        };
        // The first entry whose key is not below `key`.
        let (mut lo, mut hi) = (0, count);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (kind, seq, range) = entry(mid)?;
            let here = &bytes[range];
            match key_prefix(here).cmp(&prefix).then_with(|| here.cmp(key)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Equal => {
                    found = Some((seq, kind));
                    hi = mid;
                }
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        // Entries are sorted, so the last probe that matched is the key's first entry
        // (nothing below it compares greater): `found` is the entry at `lo`.
        Ok(found)
    }
}

/// The most bytes [`load_lines`] loads: a block of the default size (4 KiB) and then
/// some; the block of an outsized key is searched without it.
const LOAD_LINES_MAX: usize = 16 << 10;

/// Reads one byte of every 64-byte cache line of `bytes` (at most [`LOAD_LINES_MAX`]).
/// The reads do not depend on each other, so the CPU waits for all of those lines at
/// once instead of for one line per step of the binary search that follows: a block
/// of a run bigger than the CPU caches then costs about one memory round trip.
fn load_lines(bytes: &[u8]) {
    if bytes.len() > LOAD_LINES_MAX {
        return;
    }
    let mut acc = 0u8;
    for b in bytes.iter().step_by(64) {
        acc |= *b;
    }
    std::hint::black_box(acc);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::ops::Bound;
    use std::sync::Arc;

    use super::*;
    use crate::entry::Entry;
    use crate::key::{above_lo, below_hi};
    use flume_core::durable::hexdump;
    use proptest::prelude::*;

    pub(crate) const SMALL: RunParams = RunParams {
        block_bytes: 64,
        bloom_bits_per_key: 10,
    };

    pub(crate) fn build(entries: &[Entry], params: RunParams) -> Vec<u8> {
        let mut w = RunWriter::new(Vec::new(), params, entries.len() as u64).expect("vec");
        for e in entries {
            w.add(&e.key, e.seq, e.kind).expect("vec");
        }
        w.finish().expect("vec").0
    }

    fn all(run: &Arc<Run>, reverse: bool) -> Vec<Entry> {
        let mut c = RunCursor::new(Arc::clone(run), Bound::Unbounded, Bound::Unbounded, reverse);
        let mut out = Vec::new();
        while let Some(e) = c.next_entry().expect("valid") {
            out.push(e);
        }
        out
    }

    #[test]
    fn snapshot_small_run() {
        let entries = vec![
            Entry::new(b"apple", 7, Kind::Put),
            Entry::new(b"apple", 2, Kind::Delete),
            Entry::new(b"pear", 3, Kind::Put),
        ];
        let params = RunParams {
            block_bytes: 16,
            bloom_bits_per_key: 10,
        };
        insta::assert_snapshot!(hexdump(&build(&entries, params)));
    }
    fn sorted_entries() -> impl Strategy<Value = Vec<Entry>> {
        proptest::collection::btree_set(
            (
                proptest::collection::vec(0u8..4, 0..4),
                0u64..20,
                prop_oneof![Just(Kind::Put), Just(Kind::Delete), Just(Kind::Remove)],
            )
                .prop_map(|(k, s, kind)| Entry::new(&k, s, kind)),
            1..60,
        )
        .prop_map(|set| set.into_iter().collect())
    }

    fn key_bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            Just(Bound::Unbounded),
            proptest::collection::vec(0u8..4, 0..3).prop_map(Bound::Included),
            proptest::collection::vec(0u8..4, 0..3).prop_map(Bound::Excluded),
        ]
    }

    proptest! {
        #[test]
        fn cursors_yield_exactly_the_entries_in_bounds(
            entries in sorted_entries(),
            lo in key_bound(),
            hi in key_bound(),
            reverse in any::<bool>(),
        ) {
            let run = Arc::new(Run::from_vec(build(&entries, SMALL), 1, 0).expect("valid"));
            prop_assert_eq!(run.stats.entries, entries.len() as u64);
            let mut expected: Vec<Entry> = entries
                .iter()
                .filter(|e| above_lo(&e.key, &lo) && below_hi(&e.key, &hi))
                .cloned()
                .collect();
            if reverse {
                expected.reverse();
            }
            let mut c = RunCursor::new(Arc::clone(&run), lo, hi, reverse);
            let mut got = Vec::new();
            while let Some(e) = c.next_entry().expect("valid") {
                got.push(e);
            }
            prop_assert_eq!(got, expected);
            for e in &entries {
                prop_assert!(run.may_contain(&e.key));
            }
        }

        #[test]
        fn first_of_finds_each_keys_newest_entry(
            entries in sorted_entries(),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 1..20),
            block_bytes in 32usize..200,
        ) {
            let params = RunParams { block_bytes, bloom_bits_per_key: 10 };
            let run = Run::from_vec(build(&entries, params), 1, 0).expect("valid");
            for key in probes.iter().chain(entries.iter().map(|e| &*e.key).map(<[u8]>::to_vec).collect::<Vec<_>>().iter()) {
                let expected = entries
                    .iter()
                    .find(|e| &*e.key == key.as_slice())
                    .map(|e| (e.seq, e.kind));
                prop_assert_eq!(run.first_of(key).expect("valid"), expected);
            }
        }

        #[test]
        fn damage_is_detected_never_a_panic(
            entries in sorted_entries(),
            bit in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let good = build(&entries, SMALL);
            let mut flipped = good.clone();
            let at = bit.index(good.len() * 8);
            flipped[at / 8] ^= 1 << (at % 8);
            // Either opening or reading every entry fails.
            if let Ok(run) = Run::from_vec(flipped, 1, 0) {
                let run = Arc::new(run);
                let mut c = RunCursor::new(Arc::clone(&run), Bound::Unbounded, Bound::Unbounded, false);
                let mut failed = false;
                loop {
                    match c.next_entry() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => { failed = true; break; }
                    }
                }
                prop_assert!(failed, "a flipped bit at {} went unnoticed", at);
            }
            let truncated = good[..cut.index(good.len())].to_vec();
            prop_assert!(Run::from_vec(truncated, 1, 0).is_err());
        }

        #[test]
        fn junk_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(run) = Run::from_vec(junk, 1, 0) {
                let _ = all(&Arc::new(run), false);
            }
        }
    }

    proptest! {
        /// A cursor started at a position yields the entries of its key from there, in
        /// either direction, and `newest_delete` finds the key's first delete, whatever
        /// the block size.
        #[test]
        fn seeks_within_a_key_find_the_position_and_the_newest_delete(
            entries in sorted_entries(),
            probe in (proptest::collection::vec(0u8..4, 0..4), 0u64..21, prop_oneof![Just(Kind::Put), Just(Kind::Delete), Just(Kind::Remove)]),
            reverse in any::<bool>(),
            block_bytes in 32usize..200,
        ) {
            let params = RunParams { block_bytes, bloom_bits_per_key: 10 };
            let run = Arc::new(Run::from_vec(build(&entries, params), 1, 0).expect("valid"));
            let (key, seq, kind) = probe;
            let at = Entry::new(&key, seq, kind);
            let mut expected: Vec<Entry> = entries
                .iter()
                .filter(|e| *e.key == *key && if reverse { **e <= at } else { **e >= at })
                .cloned()
                .collect();
            if reverse {
                expected.reverse();
            }
            let bound = Bound::Included(key.clone());
            let mut c = RunCursor::new(Arc::clone(&run), bound.clone(), bound, reverse)
                .starting_at(&key, seq, kind);
            let mut got = Vec::new();
            while let Some(e) = c.next_entry().expect("valid") {
                got.push(e);
            }
            prop_assert_eq!(got, expected);
            let newest = entries
                .iter()
                .find(|e| *e.key == *key && e.kind == Kind::Delete)
                .map(|e| e.seq);
            prop_assert_eq!(run.newest_delete(&key).expect("valid"), newest);
        }

        /// Keys longer than the 8-byte prefixes the block search compares first, all
        /// sharing them: every block's prefix ties, and the full last keys decide.
        #[test]
        fn first_of_and_cursors_with_keys_sharing_their_first_bytes(
            entries in sorted_entries(),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 1..20),
            lo in key_bound(),
            hi in key_bound(),
        ) {
            let long = |k: &[u8]| [b"shared-prefix/".as_slice(), k].concat();
            let entries: Vec<Entry> = entries.iter().map(|e| Entry::new(&long(&e.key), e.seq, e.kind)).collect();
            let run = Arc::new(Run::from_vec(build(&entries, SMALL), 1, 0).expect("valid"));
            prop_assert!(run.block_count() > 1 || entries.len() < 4);
            for key in probes.iter().map(|k| long(k)).chain([b"shared".to_vec(), b"shared-prefix0".to_vec()]) {
                let expected = entries
                    .iter()
                    .find(|e| *e.key == *key)
                    .map(|e| (e.seq, e.kind));
                prop_assert_eq!(run.first_of(&key).expect("valid"), expected);
            }
            let bound = |b: Bound<Vec<u8>>| match b {
                Bound::Included(k) => Bound::Included(long(&k)),
                Bound::Excluded(k) => Bound::Excluded(long(&k)),
                Bound::Unbounded => Bound::Unbounded,
            };
            let (lo, hi) = (bound(lo), bound(hi));
            for reverse in [false, true] {
                let mut expected: Vec<Entry> = entries
                    .iter()
                    .filter(|e| above_lo(&e.key, &lo) && below_hi(&e.key, &hi))
                    .cloned()
                    .collect();
                if reverse {
                    expected.reverse();
                }
                let mut c = RunCursor::new(Arc::clone(&run), lo.clone(), hi.clone(), reverse);
                let mut got = Vec::new();
                while let Some(e) = c.next_entry().expect("valid") {
                    got.push(e);
                }
                prop_assert_eq!(got, expected);
            }
        }
    }

    /// A block's checksum is checked on its first read only, but a damaged block fails
    /// every lookup that reads it (it is never marked checked), and only those.
    #[test]
    fn a_damaged_block_fails_every_lookup_in_it() {
        let entries: Vec<Entry> = (0..200u64)
            .map(|i| Entry::new(format!("key{i:04}").as_bytes(), i, Kind::Put))
            .collect();
        let mut bytes = build(&entries, SMALL);
        let good = Run::from_vec(bytes.clone(), 1, 0).expect("valid");
        assert!(good.block_count() > 10);
        // Damage the seq of the first entry of block 3.
        let (offset, _) = good.block_span(3);
        let first = std::str::from_utf8(&bytes[offset + 10..offset + 17])
            .expect("a key")
            .to_string();
        bytes[offset + 2] ^= 0x40;
        let run = Run::from_vec(bytes, 1, 0).expect("the sections still check out");
        for _ in 0..2 {
            let err = run.first_of(first.as_bytes()).expect_err("damaged");
            assert!(
                matches!(&err, Error::Corrupt { reason, offset: at, .. }
                    if reason.contains("block 3 checksum") && *at == offset as u64),
                "{err} (block 3 starts at {offset})"
            );
        }
        for e in entries
            .iter()
            .filter(|e| good.block_of(&e.key, key_prefix(&e.key)) != 3)
        {
            assert_eq!(
                run.first_of(&e.key).expect("undamaged block"),
                Some((e.seq, e.kind))
            );
        }
    }

    /// A run of format 2 (no kinds byte in its index) still reads: the seek treats
    /// every block as one that may hold a delete.
    #[test]
    fn version_2_runs_still_read() {
        let entries: Vec<Entry> = (0..50u64)
            .rev()
            .map(|i| Entry::new(b"k", i, if i == 20 { Kind::Delete } else { Kind::Put }))
            .collect();
        let v3 = build(&entries, SMALL);
        let run3 = Run::from_vec(v3.clone(), 1, 0).expect("valid");
        // Rewrite the index without the kinds bytes, as format 2 had it.
        let f = v3.len() - FOOTER_LEN;
        let index_at = u64_at(&v3, f) as usize;
        let index_len = u64_at(&v3, f + 8) as usize;
        let mut index = Vec::new();
        let mut at = index_at;
        while at < index_at + index_len - 4 {
            index.extend_from_slice(&v3[at..at + 12]);
            at += 13;
            let mut key_at = at;
            let n = get_varint(&v3, &mut key_at).expect("length") as usize;
            index.extend_from_slice(&v3[at..key_at + n]);
            at = key_at + n;
        }
        let crc = crc32c::crc32c(&index);
        index.extend_from_slice(&crc.to_le_bytes());
        let mut v2 = v3[..index_at].to_vec();
        v2[4..6].copy_from_slice(&2u16.to_le_bytes());
        v2.extend_from_slice(&index);
        let bloom_at = (index_at + index.len()).next_multiple_of(BLOOM_BLOCK);
        v2.resize(bloom_at, 0);
        let bloom_from = u64_at(&v3, f + 16) as usize;
        let bloom_len = u64_at(&v3, f + 24) as usize;
        v2.extend_from_slice(&v3[bloom_from..bloom_from + bloom_len]);
        let mut footer = v3[f..].to_vec();
        footer[8..16].copy_from_slice(&(index.len() as u64).to_le_bytes());
        footer[16..24].copy_from_slice(&(bloom_at as u64).to_le_bytes());
        let crc = crc32c::crc32c(&footer[..76]);
        footer[76..80].copy_from_slice(&crc.to_le_bytes());
        v2.extend_from_slice(&footer);
        let run2 = Arc::new(Run::from_vec(v2, 1, 0).expect("a format 2 run reads"));
        assert!(run2
            .blocks
            .kinds
            .iter()
            .all(|&k| k == KINDS_DELETE | KINDS_REMOVE));
        assert_eq!(run2.newest_delete(b"k").expect("valid"), Some(20));
        assert_eq!(run3.newest_delete(b"k").expect("valid"), Some(20));
        assert_eq!(all(&run2, false), entries);
    }

    #[test]
    fn version_1_runs_are_refused_as_damaged() {
        let mut bytes = build(&[Entry::new(b"a", 1, Kind::Put)], SMALL);
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        let err = Run::from_vec(bytes, 1, 0).expect_err("version 1");
        assert!(
            matches!(&err, Error::Corrupt { offset: 4, reason, .. } if reason.contains("unknown run format version 1")),
            "{err}"
        );
    }

    #[test]
    fn blocked_bloom_false_positive_rate_is_about_one_percent() {
        // 100,000 keys at 10 bits per key: a classic filter gives 0.8%, a blocked one
        // a little more.
        let n = 100_000u64;
        let mut w = RunWriter::new(
            Vec::new(),
            RunParams {
                block_bytes: 4096,
                bloom_bits_per_key: 10,
            },
            n,
        )
        .expect("vec");
        let keys: std::collections::BTreeSet<String> = (0..n)
            .map(|i| format!("%{:044}.sha256", i * 7919))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            w.add(k.as_bytes(), i as u64, Kind::Put).expect("vec");
        }
        let run = Run::from_vec(w.finish().expect("vec").0, 1, 0).expect("valid");
        assert_eq!(run.bloom_len, (n * 10).div_ceil(512) as usize * BLOOM_BLOCK);
        assert!(keys.iter().all(|k| run.may_contain(k.as_bytes())));
        let probes = 200_000u64;
        let false_positives = (0..probes)
            .filter(|i| run.may_contain(format!("%{:044}.sha256", i * 7919 + 1).as_bytes()))
            .count();
        let rate = false_positives as f64 / probes as f64;
        assert!(rate < 0.02, "false positive rate {rate}");
    }

    #[test]
    fn bloom_rejects_most_absent_keys() {
        let entries: Vec<Entry> = (0..1000u64)
            .map(|i| Entry::new(format!("key{i:05}").as_bytes(), i, Kind::Put))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let run = Run::from_vec(
            build(
                &entries,
                RunParams {
                    block_bytes: 4096,
                    bloom_bits_per_key: 10,
                },
            ),
            1,
            0,
        )
        .expect("valid");
        let false_positives = (0..10_000u64)
            .filter(|i| run.may_contain(format!("absent{i}").as_bytes()))
            .count();
        assert!(
            false_positives < 300,
            "{false_positives} false positives in 10,000"
        );
    }
}
