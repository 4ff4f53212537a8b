//! Unit tests that reach into the engine: reads answer the same before and after a full
//! compaction, whatever the history option, and compaction keeps what the option needs.

use std::time::Duration;

use flume_core::{Error, Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use serde::{Deserialize, Serialize};

use crate::{History, Kv, KvReader, LsmOptions, Op, Versioned};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec {
    key: u32,
    value: Option<u32>,
}

type Reader = KvReader<Rec, u32, u32>;

fn view(history: History, dir: &std::path::Path) -> Kv<Rec, u32, u32> {
    Kv::new(1, |r: &Rec, e| match r.value {
        Some(v) => e.put(r.key, v),
        None => e.delete(r.key),
    })
    .persist(dir)
    .history(history)
    .options(
        LsmOptions::default()
            .memtable_bytes(200)
            .background_compaction(false)
            .checkpoint_every(u64::MAX, Duration::from_secs(3600)),
    )
}

/// Every answer about keys 0..4: histories, as-of reads at every seq, live entries.
#[allow(clippy::type_complexity)]
async fn dump(
    kv: &Reader,
    len: Seq,
) -> (
    Vec<Vec<(Seq, Op<u32>)>>,
    Vec<Result<Option<Versioned<u32>>, (Seq, Seq)>>,
    Vec<(u32, Versioned<u32>)>,
) {
    let mut histories = Vec::new();
    let mut as_of = Vec::new();
    for key in 0..4 {
        histories.push(kv.history(&key, Wait::Log).await.expect("history"));
        for at in 0..len {
            as_of.push(match kv.get_at(&key, at, Wait::Log).await {
                Ok(v) => Ok(v),
                Err(Error::HistoryTrimmed { seq, horizon }) => Err((seq, horizon)),
                Err(e) => panic!("get_at: {e}"),
            });
        }
    }
    let live = kv.all().entries(Wait::Log).await.expect("entries");
    (histories, as_of, live)
}

#[tokio::test]
async fn answers_do_not_depend_on_compaction() {
    for history in [History::All, History::Latest, History::Since(9)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Flume::<Rec>::new(MemoryLog::new());
        let kv: Reader = db.add_view("kv", view(history, dir.path())).expect("view");
        // Record 24 deletes key 0: its newest entry is a delete.
        let len = 25;
        for i in 0..len {
            let rec = Rec {
                key: (i % 3) as u32,
                value: (i % 5 != 4).then_some(i as u32),
            };
            db.append(&rec).await.expect("append");
        }
        let before = dump(&kv, len).await;
        let store = kv.store();
        assert!(store.checkpoint(len - 1).expect("checkpoint"));
        store.compact(true, &|| false).expect("compact");
        let after = dump(&kv, len).await;
        assert_eq!(before, after, "{history:?}");

        // What compaction kept of key 0: seqs 0, 3, …, 24, deletes at 9 and 24.
        let stored = store.history(&0u32.to_be_bytes()).expect("stored");
        let expected = match history {
            History::All => 9,
            // The delete at 24.
            History::Latest => 1,
            // 12, 15, 18, 21, 24, and the newest at or below 9 (the delete at 9).
            History::Since(_) => 6,
        };
        assert_eq!(stored.len(), expected, "{history:?}: {stored:?}");
        db.close().await.expect("close");
    }
}
