//! Typed keys against a `BTreeMap` model over the whole log: random records of puts,
//! deletes and removes on `(String, u32)` keys go through a database with a persisted
//! typed index (tiny memtable, frequent checkpoints, background compaction), with
//! reopens in between. Every typed read must match the model: get, seqs, count, prefix,
//! range, all (both directions), and every page of a cursor walk (both directions).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::time::Duration;

use flume_core::{Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{Hit, Index, IndexOptions, IndexReader, Scan};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

type K = (String, u32);

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    Put(String, u32),
    Delete(String, u32),
    /// Removes the key's put by the record this many records back (0: this record).
    Remove(String, u32, u64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec(Vec<Op>);

fn index(dir: &std::path::Path) -> Index<Rec, K> {
    Index::keyed(1, |seq, r: &Rec, e| {
        for op in &r.0 {
            match op {
                Op::Put(a, n) => e.put((a, *n)),
                Op::Delete(a, n) => e.delete((a.as_str(), n)),
                Op::Remove(a, n, back) => e.remove(&(a.clone(), *n), seq.saturating_sub(*back)),
            }
        }
    })
    .persist(dir)
    .options(
        IndexOptions::default()
            .memtable_bytes(300)
            .block_bytes(64)
            .merge_fan_in(2)
            .checkpoint_every(5, Duration::from_millis(1)),
    )
}

/// Every key's live seqs after the whole log: a delete drops the key's earlier puts, a
/// put adds its record, a remove drops one put (its own record's too).
fn model(records: &[Rec]) -> BTreeMap<K, BTreeSet<Seq>> {
    let mut m: BTreeMap<K, BTreeSet<Seq>> = BTreeMap::new();
    for (seq, r) in records.iter().enumerate() {
        let seq = seq as Seq;
        for op in &r.0 {
            if let Op::Delete(a, n) = op {
                if let Some(s) = m.get_mut(&(a.clone(), *n)) {
                    s.retain(|&s| s >= seq);
                }
            }
        }
        for op in &r.0 {
            if let Op::Put(a, n) = op {
                m.entry((a.clone(), *n)).or_default().insert(seq);
            }
        }
        for op in &r.0 {
            if let Op::Remove(a, n, back) = op {
                if let Some(s) = m.get_mut(&(a.clone(), *n)) {
                    s.remove(&seq.saturating_sub(*back));
                }
            }
        }
    }
    m.retain(|_, s| !s.is_empty());
    m
}

fn pairs<'a>(m: impl Iterator<Item = (&'a K, &'a BTreeSet<Seq>)>) -> Vec<(K, Seq)> {
    m.flat_map(|(k, s)| s.iter().map(move |s| (k.clone(), *s)))
        .collect()
}

fn plain(hits: Vec<Hit<K>>) -> Vec<(K, Seq)> {
    hits.into_iter().map(|h| (h.key, h.seq)).collect()
}

/// Walks a scan page by page with `after`, `page` hits at a time.
async fn walk(
    scan: impl Fn() -> Scan<Rec, K>,
    page: usize,
) -> Result<Vec<(K, Seq)>, TestCaseError> {
    let mut out = Vec::new();
    let mut cursor: Option<Hit<K>> = None;
    loop {
        let s = scan().limit(page);
        let s = match &cursor {
            Some(hit) => s.after(hit),
            None => s,
        };
        let hits = s.hits(Wait::Log).await.expect("page");
        prop_assert!(hits.len() <= page);
        let Some(last) = hits.last().cloned() else {
            break;
        };
        out.extend(plain(hits));
        cursor = Some(last);
    }
    Ok(out)
}

async fn check(idx: &IndexReader<Rec, K>, records: &[Rec]) -> Result<(), TestCaseError> {
    let m = model(records);
    let all = pairs(m.iter());
    let mut all_rev = all.clone();
    all_rev.reverse();

    prop_assert_eq!(
        plain(idx.all().hits(Wait::Log).await.expect("all")),
        all.clone()
    );
    prop_assert_eq!(
        plain(idx.all().reverse().hits(Wait::Log).await.expect("rev")),
        all_rev.clone()
    );
    prop_assert_eq!(idx.all().count(Wait::Log).await.expect("count"), all.len());
    prop_assert_eq!(
        idx.all().limit(3).count(Wait::Log).await.expect("count"),
        all.len().min(3)
    );
    for page in [1, 2, 5] {
        prop_assert_eq!(walk(|| idx.all(), page).await?, all.clone());
        prop_assert_eq!(walk(|| idx.all().reverse(), page).await?, all_rev.clone());
    }

    for a in ["", "a", "a\0", "b"] {
        let want = pairs(m.iter().filter(|((k, _), _)| k == a));
        prop_assert_eq!(
            plain(idx.prefix((a,)).hits(Wait::Log).await.expect("prefix")),
            want.clone()
        );
        prop_assert_eq!(
            idx.prefix((a.to_string(),))
                .count(Wait::Log)
                .await
                .expect("count"),
            want.len()
        );
        prop_assert_eq!(walk(|| idx.prefix((a,)), 2).await?, want.clone());
        let mut rev = want.clone();
        rev.reverse();
        prop_assert_eq!(walk(|| idx.prefix((a,)).reverse(), 2).await?, rev);
        for n in 0..3u32 {
            let key = (a.to_string(), n);
            let live: Vec<Seq> = m
                .get(&key)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            prop_assert_eq!(
                idx.seqs((a, n), Wait::Log).await.expect("seqs"),
                live.clone()
            );
            prop_assert_eq!(idx.count(&key, Wait::Log).await.expect("count"), live.len());
            prop_assert_eq!(
                idx.get_seq((a, n), Wait::Log).await.expect("get"),
                live.last().copied()
            );
            // One key's seqs, a page at a time, both ways.
            for newest_first in [false, true] {
                let bytes = flumeview_index::AsKey::<K>::key_bytes(&(a, n));
                let (mut got, mut from) = (Vec::new(), None);
                loop {
                    let page = idx.key_seqs(&bytes, from, newest_first, 2).expect("page");
                    let Some(&last) = page.last() else { break };
                    got.extend(page);
                    from = Some(last);
                }
                let mut want = live.clone();
                if newest_first {
                    want.reverse();
                }
                prop_assert_eq!(got, want);
            }
        }
    }

    // A typed range: ("a", 1) inclusive to ("b", 1) exclusive.
    let lo = ("a".to_string(), 1u32);
    let hi = ("b".to_string(), 1u32);
    let want = pairs(m.range((Bound::Included(&lo), Bound::Excluded(&hi))));
    prop_assert_eq!(
        plain(
            idx.range(("a", 1)..("b", 1))
                .hits(Wait::Log)
                .await
                .expect("range")
        ),
        want.clone()
    );
    prop_assert_eq!(
        idx.range(lo.clone()..hi.clone())
            .count(Wait::Log)
            .await
            .expect("count"),
        want.len()
    );
    prop_assert_eq!(walk(|| idx.range(("a", 1)..("b", 1)), 2).await?, want);
    Ok(())
}

fn rec() -> impl Strategy<Value = Rec> {
    let author = prop_oneof![Just(""), Just("a"), Just("a\0"), Just("b")].prop_map(String::from);
    let op = prop_oneof![
        5 => (author.clone(), 0..3u32).prop_map(|(a, n)| Op::Put(a, n)),
        1 => (author.clone(), 0..3u32).prop_map(|(a, n)| Op::Delete(a, n)),
        3 => (author, 0..3u32, 0..12u64).prop_map(|(a, n, b)| Op::Remove(a, n, b)),
    ];
    proptest::collection::vec(op, 0..3).prop_map(Rec)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn typed_index_matches_the_model_across_reopens(
        chunks in proptest::collection::vec(proptest::collection::vec(rec(), 0..60), 1..4),
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = MemoryLog::new();
            let mut records = Vec::new();
            for chunk in chunks {
                let db = Flume::<Rec>::new(log.clone());
                let idx: IndexReader<Rec, K> = db.add_view("idx", index(dir.path())).expect("view");
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
