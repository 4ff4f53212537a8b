//! The whole stack against a model, a `BTreeMap<K, Vec<(Seq, Option<V>)>>`: random
//! records of puts and deletes on tuple keys go through a database on the file log with
//! a persisted `Kv` (tiny memtable, frequent checkpoints, background compaction), with
//! reopens and version-change rebuilds in between, for each `History` option; every
//! read (get, version, contains, history, get_at, range, prefix, reverse, limit, count)
//! must match the model.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flume_core::{Error, Flume, Seq, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_kv::{key, History, Kv, KvReader, LsmOptions, Op, Versioned};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

type K = (String, u32);

/// A record: (put?, key, value) operations, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec(Vec<(bool, K, u32)>);

const NAMES: [&str; 3] = ["a", "ab", "b"];

fn universe() -> Vec<K> {
    NAMES
        .iter()
        .flat_map(|n| (0..3).map(move |i| (n.to_string(), i)))
        .collect()
}

fn kv(dir: &Path, version: u32, history: History) -> Kv<Rec, K, u32> {
    Kv::new(version, |r: &Rec, e| {
        for (put, key, value) in &r.0 {
            if *put {
                e.put(key.clone(), *value);
            } else {
                e.delete(key.clone());
            }
        }
    })
    .persist(dir)
    .history(history)
    .options(
        LsmOptions::default()
            .memtable_bytes(300)
            .block_bytes(64)
            .merge_fan_in(2)
            .checkpoint_every(5, Duration::from_millis(1)),
    )
}

/// Every key's operations, oldest first: `None` is a delete.
#[derive(Debug, Default)]
struct Model(BTreeMap<K, Vec<(Seq, Option<u32>)>>);

impl Model {
    fn apply(&mut self, seq: Seq, rec: &Rec) {
        // A record's last operation on a key is the one that counts.
        let mut last: BTreeMap<&K, Option<u32>> = BTreeMap::new();
        for (put, key, value) in &rec.0 {
            last.insert(key, put.then_some(*value));
        }
        for (key, op) in last {
            self.0.entry(key.clone()).or_default().push((seq, op));
        }
    }

    fn get(&self, key: &K) -> Option<Versioned<u32>> {
        match self.0.get(key)?.last()? {
            (version, Some(value)) => Some(Versioned {
                value: *value,
                version: *version,
            }),
            (_, None) => None,
        }
    }

    /// What `history` answers: newest first, as the option keeps.
    fn history(&self, key: &K, history: History) -> Vec<(Seq, Op<u32>)> {
        let all: Vec<(Seq, Op<u32>)> = self
            .0
            .get(key)
            .map(|h| {
                h.iter()
                    .rev()
                    .map(|(s, v)| (*s, v.map_or(Op::Delete, Op::Put)))
                    .collect()
            })
            .unwrap_or_default();
        match history {
            History::All => all,
            History::Latest => all.into_iter().take(1).collect(),
            History::Since(h) => {
                let mut kept: Vec<_> = all.iter().copied().filter(|e| e.0 > h).collect();
                kept.extend(all.iter().copied().find(|e| e.0 <= h));
                kept
            }
        }
    }

    /// What `get_at` answers.
    fn get_at(
        &self,
        key: &K,
        at: Seq,
        history: History,
    ) -> Result<Option<Versioned<u32>>, (Seq, Seq)> {
        let ops = self.0.get(key).map(Vec::as_slice).unwrap_or_default();
        match history {
            History::Since(h) if at < h => return Err((at, h)),
            History::Latest => {
                if let Some(&(newest, _)) = ops.last() {
                    if at < newest {
                        return Err((at, newest));
                    }
                }
            }
            _ => {}
        }
        Ok(match ops.iter().rev().find(|e| e.0 <= at) {
            Some(&(version, Some(value))) => Some(Versioned { value, version }),
            _ => None,
        })
    }

    fn live(&self) -> Vec<(K, Versioned<u32>)> {
        self.0
            .keys()
            .filter_map(|k| self.get(k).map(|v| (k.clone(), v)))
            .collect()
    }
}

async fn check(
    kv: &KvReader<Rec, K, u32>,
    model: &Model,
    history: History,
    len: u64,
) -> Result<(), TestCaseError> {
    let w = Wait::Log;
    for key in universe() {
        let expected = model.get(&key);
        prop_assert_eq!(kv.get(&key, w).await.expect("get"), expected);
        prop_assert_eq!(
            kv.version(&key, w).await.expect("version"),
            expected.map(|v| v.version)
        );
        prop_assert_eq!(
            kv.contains(&key, w).await.expect("contains"),
            expected.is_some()
        );
        prop_assert_eq!(
            kv.history(&key, w).await.expect("history"),
            model.history(&key, history),
            "history of {:?}",
            key
        );
        for at in 0..=len + 1 {
            let got = match kv.get_at(&key, at, w).await {
                Ok(found) => Ok(found),
                Err(Error::HistoryTrimmed { seq, horizon }) => Err((seq, horizon)),
                Err(e) => panic!("get_at: {e}"),
            };
            prop_assert_eq!(
                got,
                model.get_at(&key, at, history),
                "get_at({:?}, {})",
                key,
                at
            );
        }
    }

    let live = model.live();
    let keys = |v: &[(K, Versioned<u32>)]| -> Vec<(K, Seq)> {
        v.iter().map(|(k, v)| (k.clone(), v.version)).collect()
    };
    prop_assert_eq!(kv.all().entries(w).await.expect("entries"), live.clone());
    prop_assert_eq!(kv.all().keys(w).await.expect("keys"), keys(&live));
    let reversed: Vec<_> = live.iter().rev().cloned().collect();
    prop_assert_eq!(
        kv.all().reverse().entries(w).await.expect("reverse"),
        reversed.clone()
    );
    prop_assert_eq!(
        kv.all()
            .reverse()
            .limit(2)
            .keys(w)
            .await
            .expect("reverse limit"),
        keys(&reversed[..reversed.len().min(2)])
    );
    prop_assert_eq!(kv.all().count(w).await.expect("count"), live.len());
    prop_assert_eq!(
        kv.all().limit(2).count(w).await.expect("count"),
        live.len().min(2)
    );

    // A tuple prefix: exactly the keys whose name is "a".
    let only_a: Vec<_> = live.iter().filter(|(k, _)| k.0 == "a").cloned().collect();
    prop_assert_eq!(
        kv.prefix(key::tuple(("a",)))
            .entries(w)
            .await
            .expect("prefix"),
        only_a.clone()
    );
    prop_assert_eq!(
        kv.prefix(key::tuple(("a",)))
            .count(w)
            .await
            .expect("prefix count"),
        only_a.len()
    );
    // A byte prefix: the names that start with "a".
    let starts_a: Vec<_> = live
        .iter()
        .filter(|(k, _)| k.0.starts_with('a'))
        .cloned()
        .collect();
    prop_assert_eq!(
        kv.prefix("a").keys(w).await.expect("prefix"),
        keys(&starts_a)
    );

    // A range of typed keys.
    let (lo, hi): (K, K) = (("a".into(), 1), ("ab".into(), 2));
    let in_range: Vec<_> = live
        .iter()
        .filter(|(k, _)| *k >= lo && *k < hi)
        .cloned()
        .collect();
    prop_assert_eq!(
        kv.range(lo.clone()..hi.clone())
            .keys(w)
            .await
            .expect("range"),
        keys(&in_range)
    );
    prop_assert_eq!(
        kv.range(lo.clone()..hi.clone())
            .reverse()
            .limit(1)
            .keys(w)
            .await
            .expect("range"),
        keys(&in_range.iter().rev().take(1).cloned().collect::<Vec<_>>())
    );
    prop_assert_eq!(
        kv.range(lo..hi).count(w).await.expect("range count"),
        in_range.len()
    );
    Ok(())
}

fn rec() -> impl Strategy<Value = Rec> {
    let key = (0..NAMES.len(), 0..3u32).prop_map(|(n, i)| (NAMES[n].to_string(), i));
    let op = (proptest::bool::weighted(0.75), key, 0..1000u32);
    proptest::collection::vec(op, 0..4).prop_map(Rec)
}

fn history() -> impl Strategy<Value = History> {
    prop_oneof![
        Just(History::All),
        Just(History::Latest),
        (0..60u64).prop_map(History::Since),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn kv_matches_the_model_across_reopens_and_rebuilds(
        history in history(),
        chunks in proptest::collection::vec(
            (proptest::collection::vec(rec(), 0..30), proptest::bool::weighted(0.3)),
            1..4,
        ),
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut model = Model::default();
            let mut len = 0;
            let mut version = 1;
            for (chunk, bump) in chunks {
                if bump {
                    // A new version: the stored view is dropped and rebuilt from the log.
                    version += 1;
                }
                let log = FileLog::open(dir.path().join("log"), FileLogOptions::default())
                    .await
                    .expect("log");
                let db = Flume::<Rec>::new(log);
                let reader = db
                    .add_view("kv", kv(&dir.path().join("kv"), version, history))
                    .expect("view");
                check(&reader, &model, history, len).await?;
                for r in chunk {
                    let seq = db.append(&r).await.expect("append");
                    model.apply(seq, &r);
                    len += 1;
                }
                check(&reader, &model, history, len).await?;
                db.close().await.expect("close");
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
