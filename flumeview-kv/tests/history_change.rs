//! A persisted view opened with another `History` option is rebuilt from the log (what
//! compaction dropped under a shorter history cannot be read under a longer one); opened
//! again with the same option, it resumes from its checkpoint.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{History, Kv, KvReader, Op};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn open(
    log: MemoryLog,
    dir: &Path,
    history: History,
    mapped: &Arc<AtomicU64>,
) -> flume_core::Result<(Flume<u32>, KvReader<u32, String, u32>)> {
    let counter = Arc::clone(mapped);
    let db = Flume::<u32>::new(log);
    let kv = db.add_view(
        "kv",
        Kv::new(1, move |n: &u32, e| {
            counter.fetch_add(1, Ordering::SeqCst);
            e.put("counter".to_string(), *n);
        })
        .persist(dir)
        .history(history),
    )?;
    Ok((db, kv))
}

#[tokio::test]
async fn another_history_option_rebuilds_the_same_one_resumes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = MemoryLog::new();
    let key = "counter".to_string();
    let mapped = Arc::new(AtomicU64::new(0));

    let (db, kv) = open(log.clone(), dir.path(), History::Latest, &mapped).await?;
    db.append_batch(&[1, 2, 3]).await?;
    assert_eq!(kv.history(&key, Wait::Log).await?, [(2, Op::Put(3))]);
    let next = log.reopen();
    db.close().await?;
    let mut log = next;
    // Indexed 3 records; the history read ran the map once more.
    assert_eq!(mapped.swap(0, Ordering::SeqCst), 4);

    for (history, rebuilt) in [
        (History::Latest, false),
        (History::All, true),
        (History::All, false),
        (History::Since(1), true),
        (History::Since(2), true),
        (History::Since(2), false),
    ] {
        let (db, kv) = open(log.clone(), dir.path(), history, &mapped).await?;
        let got = kv.history(&key, Wait::Log).await?;
        let expected = match history {
            History::All => vec![(2, Op::Put(3)), (1, Op::Put(2)), (0, Op::Put(1))],
            History::Latest => vec![(2, Op::Put(3))],
            History::Since(1) => vec![(2, Op::Put(3)), (1, Op::Put(2))],
            History::Since(_) => vec![(2, Op::Put(3))],
        };
        assert_eq!(got, expected, "{history:?}");
        let reads = expected.len() as u64;
        let indexed = mapped.swap(0, Ordering::SeqCst) - reads;
        assert_eq!(indexed, if rebuilt { 3 } else { 0 }, "{history:?}");
        let next = log.reopen();
        db.close().await?;
        log = next;
    }
    Ok(())
}
