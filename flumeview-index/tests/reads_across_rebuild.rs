//! Index reads running alongside `rebuild()` never see the wiped index: every
//! `Wait::Log` read finds what the log held when it started.
//!
//! `FLUMEVIEW_INDEX_REBUILDS` sets the number of rebuilds (default 20).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{by_key, msg, Msg, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, IndexOptions, IndexReader};

const RECORDS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_rebuilds_never_see_a_wiped_index() -> TestResult {
    let rebuilds: usize = std::env::var("FLUMEVIEW_INDEX_REBUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let db = Flume::<Msg>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(16)
        .build();
    let options = IndexOptions::default().memtable_bytes(2 << 10);
    let idx: IndexReader<Msg> =
        db.add_view("by_key", by_key().persist(dir.path()).options(options))?;
    let all: Vec<Msg> = (0..RECORDS).map(msg).collect();
    db.append_batch(&all).await?;
    db.ready().await?;

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (idx, stop) = (idx.clone(), stop.clone());
            tokio::spawn(async move {
                let newest = msg(RECORDS - 1);
                let last = key::string(&newest.key);
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seq = idx.get_seq(&last, Wait::Log).await.unwrap();
                    assert_eq!(seq, Some(RECORDS - 1), "a read saw a wiped index");
                    let hits = idx.all().hits(Wait::Log).await.unwrap();
                    assert_eq!(hits.len() as u64, RECORDS, "a scan saw a wiped index");
                    reads += 2;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    for _ in 0..rebuilds {
        db.rebuild().await?;
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.await? > 0);
    }
    db.close().await?;
    Ok(())
}
