//! A run block found damaged by a read makes the view rebuild from the log: the read
//! (a history read, then every other kind) waits for the rebuild and answers correctly.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{Kv, KvReader, LsmOptions, Op, Versioned};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const RECORDS: u64 = 300;

/// Flips one bit of byte `at` of `path` in place (the file is memory-mapped by the
/// view: it must keep its length).
fn flip(path: &std::path::Path, at: u64) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut byte)?;
    byte[0] ^= 0x10;
    file.seek(SeekFrom::Start(at))?;
    file.write_all(&byte)?;
    file.sync_all()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_run_block_is_rebuilt_and_the_reads_answer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mapped = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&mapped);
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(1)
        .build();
    // Record n puts key n % 100 to n: three versions per key.
    let kv: KvReader<u64, u64, u64> = db.add_view(
        "kv",
        Kv::new(1, move |n: &u64, e| {
            counter.fetch_add(1, Ordering::Relaxed);
            e.put(n % 100, *n);
        })
        .persist(dir.path())
        .options(LsmOptions::default().memtable_bytes(2 << 10)),
    )?;
    let all: Vec<u64> = (0..RECORDS).collect();
    db.append_batch(&all).await?;
    db.ready().await?;
    let indexed = mapped.load(Ordering::Relaxed);
    assert_eq!(indexed, RECORDS);

    // Damage the first entry of the first block of the oldest run (key 0's).
    let mut runs: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "run"))
        .collect();
    runs.sort();
    let oldest = runs.first().expect("the view wrote runs");
    flip(oldest, 8 + 2)?;

    let history = kv.history(&0, Wait::Log).await?;
    assert_eq!(
        history,
        [(200, Op::Put(200)), (100, Op::Put(100)), (0, Op::Put(0))]
    );
    // Rebuilt once (the reads also ran the map on the records they read back).
    let rebuilt = mapped.load(Ordering::Relaxed) - 3;
    assert_eq!(
        rebuilt,
        2 * RECORDS,
        "the view was rebuilt from the log once"
    );
    for key in 0..100 {
        assert_eq!(
            kv.get(&key, Wait::Log).await?,
            Some(Versioned {
                value: key + 200,
                version: key + 200
            })
        );
        assert_eq!(
            kv.get_at(&key, key + 150, Wait::Log)
                .await?
                .map(|v| v.version),
            Some(key + 100)
        );
    }
    assert_eq!(kv.all().count(Wait::Log).await?, 100);
    db.close().await?;
    Ok(())
}
