//! The whole stack against a `BTreeMap` model: random records of puts and deletes go
//! through a database with a persisted index (tiny memtable, frequent checkpoints,
//! background compaction), with reopens in between; every read must match the model.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Index, IndexOptions, IndexReader};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A record: (put?, key) operations.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec(Vec<(bool, Vec<u8>)>);

fn index(dir: &std::path::Path) -> Index<Rec> {
    Index::new(1, |r: &Rec, e| {
        for (put, key) in &r.0 {
            if *put {
                e.put(key);
            } else {
                e.delete(key);
            }
        }
    })
    .persist(dir)
    .options(
        IndexOptions::default()
            .memtable_bytes(400)
            .block_bytes(64)
            .merge_fan_in(2)
            .checkpoint_every(7, Duration::from_millis(1)),
    )
}

fn model(records: &[Rec]) -> BTreeMap<Vec<u8>, BTreeSet<u64>> {
    let mut m: BTreeMap<Vec<u8>, BTreeSet<u64>> = BTreeMap::new();
    for (seq, r) in records.iter().enumerate() {
        for (put, key) in &r.0 {
            if !put {
                m.remove(key);
            }
        }
        for (put, key) in &r.0 {
            if *put {
                m.entry(key.clone()).or_default().insert(seq as u64);
            }
        }
    }
    m
}

async fn check(idx: &IndexReader<Rec>, records: &[Rec]) -> Result<(), TestCaseError> {
    let m = model(records);
    let expected: Vec<(Vec<u8>, u64)> = m
        .iter()
        .flat_map(|(k, s)| s.iter().map(move |s| (k.clone(), *s)))
        .collect();
    let hits = idx.all().hits(Wait::Log).await.expect("scan");
    let got: Vec<(Vec<u8>, u64)> = hits.into_iter().map(|h| (h.key, h.seq)).collect();
    prop_assert_eq!(got, expected);
    for key in [vec![], vec![b'a'], vec![b'a', 0], vec![b'b']] {
        let live: Vec<u64> = m
            .get(&key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        prop_assert_eq!(idx.seqs(&key, Wait::Log).await.expect("seqs"), live.clone());
        prop_assert_eq!(
            idx.get_seq(&key, Wait::Log).await.expect("get"),
            live.last().copied()
        );
    }
    Ok(())
}

fn rec() -> impl Strategy<Value = Rec> {
    let key = proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..3);
    proptest::collection::vec((proptest::bool::weighted(0.8), key), 0..3).prop_map(Rec)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_the_model_across_reopens(
        chunks in proptest::collection::vec(proptest::collection::vec(rec(), 0..80), 1..4),
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = MemoryLog::new();
            let mut records = Vec::new();
            for chunk in chunks {
                let db = Flume::<Rec>::new(log.clone());
                let idx = db.add_view("idx", index(dir.path())).expect("view");
                check(&idx, &records).await?;
                for r in chunk {
                    db.append(&r).await.expect("append");
                    records.push(r);
                }
                check(&idx, &records).await?;
                let next = log.reopen();
                db.close().await.expect("close");
                log = next;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
