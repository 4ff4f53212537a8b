//! The runs' bloom filters: blocked, one 64-byte block (a cache line) per key, so that a
//! lookup that the filter answers reads one cache line of it. The layout is part of the
//! run format (`docs/format.md`, section "flumeview-index files").

/// Bytes of one bloom filter block: a cache line, 512 bits.
pub(crate) const BLOOM_BLOCK: usize = 64;
/// At most this many bloom blocks per run (2^35 bits).
const MAX_BLOOM_BLOCKS: u64 = 1 << 26;
const GOLDEN32: u32 = 0x9e37_79b9;

/// The bloom filter hash of a key, computed once per lookup for every run: the key in
/// 8-byte little-endian words (the last one zero-padded), each folded in as
/// `h = (rotl(h, 5) ^ word) * 0x9e3779b97f4a7c15` starting from the key length, then
/// the SplitMix64 finalizer.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = key.len() as u64;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(M);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(M);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The block of a hash in a filter of `blocks` blocks: the high 32 bits scaled to the
/// block count.
fn bloom_block(hash: u64, blocks: usize) -> usize {
    (((hash >> 32) * blocks as u64) >> 32) as usize
}

/// The `k` bit positions (0..512) of a hash within its block: the top 9 bits of the low
/// 32 bits `x`, then of `x * 0x9e3779b9`, `x * 0x9e3779b9²`, ... (wrapping).
fn bloom_bits(hash: u64, k: u32) -> impl Iterator<Item = usize> {
    let mut x = hash as u32;
    (0..k).map(move |_| {
        let bit = (x >> 23) as usize;
        x = x.wrapping_mul(GOLDEN32);
        bit
    })
}

/// How many blocks a filter for at most `max_keys` keys at `bits_per_key` bits has.
pub(crate) fn blocks_for(max_keys: u64, bits_per_key: u32) -> u64 {
    max_keys
        .saturating_mul(u64::from(bits_per_key.max(1)))
        .div_ceil(BLOOM_BLOCK as u64 * 8)
        .clamp(1, MAX_BLOOM_BLOCKS)
}

/// How many bits a key sets at `bits_per_key` bits per key: `bits_per_key * ln 2`,
/// rounded, from 1 to 30.
pub(crate) fn probes_for(bits_per_key: u32) -> u32 {
    ((f64::from(bits_per_key.max(1)) * std::f64::consts::LN_2).round() as u32).clamp(1, 30)
}

/// Whether a filter of `blocks` blocks (at most [`MAX_BLOOM_BLOCKS`]) and `k` bits per key
/// is a layout this crate writes.
pub(crate) fn valid_layout(blocks: u64, k: u32) -> bool {
    (1..=MAX_BLOOM_BLOCKS).contains(&blocks) && (1..=30).contains(&k)
}

/// Sets the `k` bits of the key whose [`key_hash`] is `hash` in `filter` (whole blocks).
pub(crate) fn insert(filter: &mut [u8], hash: u64, k: u32) {
    let at = bloom_block(hash, filter.len() / BLOOM_BLOCK) * BLOOM_BLOCK;
    let block = &mut filter[at..at + BLOOM_BLOCK];
    for bit in bloom_bits(hash, k) {
        block[bit / 8] |= 1 << (bit % 8);
    }
}

/// Whether `filter` (whole blocks) may hold the key whose [`key_hash`] is `hash` (false:
/// it certainly does not). Reads one block.
pub(crate) fn may_contain(filter: &[u8], hash: u64, k: u32) -> bool {
    let at = bloom_block(hash, filter.len() / BLOOM_BLOCK) * BLOOM_BLOCK;
    let block = &filter[at..at + BLOOM_BLOCK];
    bloom_bits(hash, k).all(|bit| block[bit / 8] & (1 << (bit % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_sets_its_bits_in_a_single_block() {
        let hash = key_hash(b"x");
        assert!(bloom_bits(hash, 30).all(|bit| bit < BLOOM_BLOCK * 8));
        let mut filter = vec![0u8; 4 * BLOOM_BLOCK];
        insert(&mut filter, hash, 30);
        let touched: Vec<usize> = filter
            .chunks(BLOOM_BLOCK)
            .enumerate()
            .filter(|(_, b)| b.iter().any(|&x| x != 0))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(touched, [bloom_block(hash, 4)]);
        assert!(may_contain(&filter, hash, 30));
    }

    #[test]
    fn sizes_follow_the_bits_per_key() {
        assert_eq!(blocks_for(0, 10), 1);
        assert_eq!(blocks_for(1000, 10), 20);
        assert_eq!(blocks_for(u64::MAX, 10), MAX_BLOOM_BLOCKS);
        assert_eq!(probes_for(10), 7);
        assert_eq!(probes_for(0), 1);
        assert_eq!(probes_for(100), 30);
    }
}
