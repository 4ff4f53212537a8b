//! A run block found damaged by a read makes the index rebuild from the log: the read
//! waits for the rebuild and answers correctly, and the status shows the rebuild.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{counting_by_author, msg, Msg, TestResult};
use flume_core::{Flume, ViewState, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, IndexOptions, IndexReader};

const RECORDS: u64 = 300;

/// Flips one bit of byte `at` of `path` in place (the file is memory-mapped by the
/// index: it must keep its length).
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
async fn a_damaged_run_block_is_rebuilt_and_the_read_answers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let seen = Arc::new(AtomicU64::new(0));
    let db = Flume::<Msg>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(1)
        .build();
    let options = IndexOptions::default().memtable_bytes(2 << 10);
    let idx: IndexReader<Msg> = db.add_view(
        "by_author",
        counting_by_author(1, &seen)
            .persist(dir.path())
            .options(options),
    )?;
    let all: Vec<Msg> = (0..RECORDS).map(msg).collect();
    db.append_batch(&all).await?;
    db.ready().await?;
    assert_eq!(seen.load(Ordering::Relaxed), RECORDS);

    // Damage the first entry of the first block of the oldest run (the first record's).
    let mut runs: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "run"))
        .collect();
    runs.sort();
    let oldest = runs.first().expect("the index wrote runs");
    flip(oldest, 8 + 2)?;

    // Follow the status while the read heals the index.
    let states = Arc::new(Mutex::new(Vec::new()));
    let mut status = db.status();
    let follower = tokio::spawn({
        let states = Arc::clone(&states);
        async move {
            while status.changed().await.is_ok() {
                let state = status.borrow_and_update().views["by_author"].state;
                states.lock().unwrap().push(state);
                if state == ViewState::Closed {
                    break;
                }
            }
        }
    });

    let first = msg(0);
    let got = idx
        .get_seq(key::tuple((&first.author, first.seq)), Wait::Log)
        .await?;
    assert_eq!(got, Some(0), "the read answers from the rebuilt index");
    assert_eq!(
        seen.load(Ordering::Relaxed),
        2 * RECORDS,
        "the index was rebuilt from the log once"
    );
    // Every other answer is right too.
    for i in 0..RECORDS {
        let m = msg(i);
        assert_eq!(
            idx.get_seq(key::tuple((&m.author, m.seq)), Wait::Log)
                .await?,
            Some(i)
        );
    }
    assert_eq!(idx.all().hits(Wait::Log).await?.len() as u64, RECORDS);
    db.close().await?;
    follower.await?;
    let states = states.lock().unwrap().clone();
    assert!(
        states.contains(&ViewState::Rebuilding),
        "the status showed the rebuild: {states:?}"
    );
    Ok(())
}
