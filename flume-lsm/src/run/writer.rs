//! Writing a run: entries in storage order into blocks, then the block index, the bloom
//! filter and the footer (see the layout in the parent module).

use std::io::{self, Write};

use flume_core::Seq;

use super::{kind_bit, RunStats, FOOTER_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC};
use crate::bloom::{self, key_hash, BLOOM_BLOCK};
use crate::coding::put_varint;
use crate::entry::Kind;

/// How a run's blocks and bloom filter are sized.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunParams {
    pub(crate) block_bytes: usize,
    pub(crate) bloom_bits_per_key: u32,
}

pub(crate) struct RunWriter<W: Write> {
    out: W,
    pos: u64,
    params: RunParams,
    block: Vec<u8>,
    block_entries: u32,
    /// Which kinds the current block holds (`KINDS_*` bits).
    block_kinds: u8,
    /// Where each entry of the current block starts.
    offsets: Vec<u32>,
    blocks: u32,
    index: Vec<u8>,
    bloom: Vec<u8>,
    bloom_k: u32,
    last_key: Vec<u8>,
    entries: u64,
    keys: u64,
    min_seq: Seq,
    max_seq: Seq,
}

impl<W: Write> RunWriter<W> {
    /// Starts a run for at most `max_keys` distinct keys (sizes the bloom filter).
    pub(crate) fn new(mut out: W, params: RunParams, max_keys: u64) -> io::Result<Self> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes());
        out.write_all(&header)?;
        let blocks = bloom::blocks_for(max_keys, params.bloom_bits_per_key);
        let bloom_k = bloom::probes_for(params.bloom_bits_per_key);
        Ok(RunWriter {
            out,
            pos: HEADER_LEN as u64,
            params,
            block: Vec::with_capacity(params.block_bytes + 256),
            block_entries: 0,
            block_kinds: 0,
            offsets: Vec::new(),
            blocks: 0,
            index: Vec::new(),
            bloom: vec![0; blocks as usize * BLOOM_BLOCK],
            bloom_k,
            last_key: Vec::new(),
            entries: 0,
            keys: 0,
            min_seq: Seq::MAX,
            max_seq: 0,
        })
    }

    /// Adds the next entry; entries must come in storage order, without duplicates.
    pub(crate) fn add(&mut self, key: &[u8], seq: Seq, kind: Kind) -> io::Result<()> {
        if self.entries == 0 || self.last_key != key {
            self.keys += 1;
            bloom::insert(&mut self.bloom, key_hash(key), self.bloom_k);
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        self.offsets.push(self.block.len() as u32);
        self.block_kinds |= kind_bit(kind);
        self.block.push(kind as u8);
        self.block.extend_from_slice(&seq.to_le_bytes());
        put_varint(&mut self.block, key.len() as u64);
        self.block.extend_from_slice(key);
        self.block_entries += 1;
        self.entries += 1;
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        if self.block.len() + 4 * self.offsets.len() >= self.params.block_bytes
            || self.block.len() >= u32::MAX as usize / 2
        {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        if self.block_entries == 0 {
            return Ok(());
        }
        for offset in &self.offsets {
            self.block.extend_from_slice(&offset.to_le_bytes());
        }
        self.offsets.clear();
        self.block
            .extend_from_slice(&self.block_entries.to_le_bytes());
        let crc = crc32c::crc32c(&self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.block)?;
        self.index.extend_from_slice(&self.pos.to_le_bytes());
        self.index
            .extend_from_slice(&(self.block.len() as u32).to_le_bytes());
        self.index.push(self.block_kinds);
        put_varint(&mut self.index, self.last_key.len() as u64);
        self.index.extend_from_slice(&self.last_key);
        self.pos += self.block.len() as u64;
        self.blocks += 1;
        self.block.clear();
        self.block_entries = 0;
        self.block_kinds = 0;
        Ok(())
    }

    /// How many entries were added.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the index, the bloom filter and the footer. Returns the sink and what the
    /// run holds. A run must hold at least one entry.
    pub(crate) fn finish(mut self) -> io::Result<(W, RunStats)> {
        self.finish_block()?;
        let index_offset = self.pos;
        let crc = crc32c::crc32c(&self.index);
        self.index.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.index)?;
        let index_len = self.index.len() as u64;
        // The bloom filter starts at a multiple of 64 bytes: with the file mapped at a
        // page boundary, each of its blocks is one cache line.
        let index_end = index_offset + index_len;
        let bloom_offset = index_end.next_multiple_of(BLOOM_BLOCK as u64);
        self.out
            .write_all(&[0u8; BLOOM_BLOCK][..(bloom_offset - index_end) as usize])?;
        let crc = crc32c::crc32c(&self.bloom);
        self.bloom.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.bloom)?;
        let bloom_len = self.bloom.len() as u64;
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(&index_offset.to_le_bytes());
        footer.extend_from_slice(&index_len.to_le_bytes());
        footer.extend_from_slice(&bloom_offset.to_le_bytes());
        footer.extend_from_slice(&bloom_len.to_le_bytes());
        footer.extend_from_slice(&self.bloom_k.to_le_bytes());
        footer.extend_from_slice(&self.blocks.to_le_bytes());
        footer.extend_from_slice(&self.entries.to_le_bytes());
        footer.extend_from_slice(&self.keys.to_le_bytes());
        footer.extend_from_slice(&self.min_seq.to_le_bytes());
        footer.extend_from_slice(&self.max_seq.to_le_bytes());
        footer.extend_from_slice(&MAGIC);
        let crc = crc32c::crc32c(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(&footer)?;
        self.out.flush()?;
        let bytes = bloom_offset + bloom_len + FOOTER_LEN as u64;
        Ok((
            self.out,
            RunStats {
                entries: self.entries,
                keys: self.keys,
                min_seq: self.min_seq,
                max_seq: self.max_seq,
                bytes,
            },
        ))
    }
}
