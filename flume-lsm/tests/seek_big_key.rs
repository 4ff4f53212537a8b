//! A measurement, not a test of speed: paging through one key of a million entries
//! from its middle, both ways, in a persisted and fully compacted store. It checks the
//! answers and prints the timings; run it in release mode:
//!
//! ```text
//! cargo test --release -p flume-lsm --test seek_big_key -- --ignored --nocapture
//! ```

use std::ops::Bound;
use std::time::Instant;

use flume_core::Seq;
use flume_lsm::{LsmOptions, OpBuf, Query, Retention, Semantics, Store};

const ENTRIES: u64 = 1_000_000;
const PAGE: usize = 10;

/// Record `i` puts `big` (and a neighbour key, so the key has company on both sides);
/// every 7th record removes the put of the record before it.
fn build(store: &Store) -> flume_core::Result<()> {
    let mut ops = OpBuf::default();
    for start in (0..ENTRIES).step_by(10_000) {
        ops.clear();
        for seq in start..start + 10_000 {
            let mut e = ops.emit(seq);
            e.put(b"big");
            e.put(if seq % 2 == 0 { &b"a"[..] } else { &b"c"[..] });
            if seq % 7 == 6 {
                e.remove(b"big", seq - 1);
            }
        }
        store.apply(&ops, start + 9_999)?;
    }
    store.checkpoint(ENTRIES - 1)?;
    store.compact(true, &|| false)?;
    Ok(())
}

/// The live seqs of `big` strictly beyond `from`, in the given direction.
fn expected(from: Seq, reverse: bool) -> Vec<Seq> {
    let live = |s: &Seq| s % 7 != 5;
    if reverse {
        (0..from).rev().filter(live).take(PAGE).collect()
    } else {
        (from + 1..ENTRIES).filter(live).take(PAGE).collect()
    }
}

#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn seek_and_read_a_page_from_the_middle_of_a_million_entry_key() -> flume_core::Result<()> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::new(
        1,
        &LsmOptions::default().background_compaction(false),
        Some(tmp.path().to_path_buf()),
        Semantics::MultiValued,
        Retention::Live,
    );
    store.load()?;
    let t = Instant::now();
    build(&store)?;
    println!(
        "built {ENTRIES} records ({} live entries of one key) in {:?}; {} run(s)",
        ENTRIES - ENTRIES / 7,
        t.elapsed(),
        store.run_count()
    );
    let key = Bound::Included(b"big".to_vec());
    for reverse in [false, true] {
        let rounds = 2_000u64;
        let mut times = Vec::with_capacity(rounds as usize);
        for i in 0..rounds {
            // Cursors spread over the middle half of the key.
            let from = ENTRIES / 4 + i * (ENTRIES / 2 / rounds);
            let q = Query {
                reverse,
                limit: Some(PAGE),
                cursor: Some((b"big", from)),
                ..Query::default()
            };
            let t = Instant::now();
            let (page, _) = store.scan(&key, &key, q)?;
            times.push(t.elapsed());
            let seqs: Vec<Seq> = page.iter().map(|p| p.1).collect();
            assert_eq!(seqs, expected(from, reverse));
        }
        let first = times[0];
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
        println!(
            "{}: seek + read {PAGE} from the middle, {rounds} pages: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (the first, cold: {:.1} µs)",
            if reverse { "newest first" } else { "oldest first" },
            at(0.5),
            at(0.99),
            at(1.0),
            first.as_secs_f64() * 1e6,
        );
    }
    // For scale: counting the key walks all of it.
    let t = Instant::now();
    let (n, _) = store.count(&key, &key)?;
    println!("count of the key (a full walk): {n} in {:?}", t.elapsed());
    assert_eq!(n as u64, ENTRIES - ENTRIES / 7);
    Ok(())
}
