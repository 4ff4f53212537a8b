//! Reads of one key: a record's last operation on a key counts, versions are seqs,
//! history is newest first with deletes, and `get_at` below the kept history fails with
//! `HistoryTrimmed` by the rule of each `History` option.

use flume_core::{Error, Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{History, Kv, KvReader, Op, Versioned};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A record: (put?, key, value) operations, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec(Vec<(bool, String, u32)>);

fn put(key: &str, value: u32) -> Rec {
    Rec(vec![(true, key.into(), value)])
}

fn del(key: &str) -> Rec {
    Rec(vec![(false, key.into(), 0)])
}

fn view(history: History) -> Kv<Rec, String, u32> {
    Kv::new(1, |r: &Rec, e| {
        for (put, key, value) in &r.0 {
            if *put {
                e.put(key.clone(), *value);
            } else {
                e.delete(key.clone());
            }
        }
    })
    .history(history)
}

async fn open(history: History) -> flume_core::Result<(Flume<Rec>, KvReader<Rec, String, u32>)> {
    let db = Flume::<Rec>::new(MemoryLog::new());
    let kv = db.add_view("kv", view(history))?;
    Ok((db, kv))
}

fn k(s: &str) -> String {
    s.to_string()
}

fn v(value: u32, version: Seq) -> Option<Versioned<u32>> {
    Some(Versioned { value, version })
}

#[tokio::test]
async fn a_records_last_operation_on_a_key_counts() -> TestResult {
    let (db, kv) = open(History::All).await?;
    let both = Rec(vec![(true, k("a"), 1), (false, k("a"), 0)]);
    let seq = db.append(&both).await?;
    assert_eq!(kv.get(&k("a"), Wait::Log).await?, None);
    assert_eq!(kv.history(&k("a"), Wait::Log).await?, [(seq, Op::Delete)]);

    let both = Rec(vec![
        (false, k("b"), 0),
        (true, k("b"), 2),
        (true, k("b"), 3),
    ]);
    let seq = db.append(&both).await?;
    assert_eq!(kv.get(&k("b"), Wait::Log).await?, v(3, seq));
    assert_eq!(kv.history(&k("b"), Wait::Log).await?, [(seq, Op::Put(3))]);

    // Many operations in one record (past the linear de-duplication).
    let many = Rec((0..40)
        .map(|i| (i % 3 != 0, format!("m{}", i % 10), i))
        .collect());
    let seq = db.append(&many).await?;
    for key in 0..10u32 {
        let last = (0..40).rfind(|i| i % 10 == key).expect("a last op");
        let expected = (last % 3 != 0).then_some(Versioned {
            value: last,
            version: seq,
        });
        assert_eq!(kv.get(&format!("m{key}"), Wait::Log).await?, expected);
        assert_eq!(kv.history(&format!("m{key}"), Wait::Log).await?.len(), 1);
    }
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn versions_history_and_as_of_reads() -> TestResult {
    let (db, kv) = open(History::All).await?;
    let s0 = db.append(&put("x", 1)).await?;
    let s1 = db.append(&put("y", 9)).await?;
    let s2 = db.append(&put("x", 2)).await?;
    let s3 = db.append(&del("x")).await?;
    let s4 = db.append(&put("x", 4)).await?;
    assert_eq!(kv.get(&k("x"), Wait::Log).await?, v(4, s4));
    assert_eq!(kv.version(&k("x"), Wait::Log).await?, Some(s4));
    assert!(kv.contains(&k("y"), Wait::Log).await?);
    assert!(!kv.contains(&k("z"), Wait::Log).await?);
    assert_eq!(
        kv.history(&k("x"), Wait::Log).await?,
        [
            (s4, Op::Put(4)),
            (s3, Op::Delete),
            (s2, Op::Put(2)),
            (s0, Op::Put(1))
        ]
    );
    assert_eq!(kv.history(&k("z"), Wait::Log).await?, []);
    assert_eq!(kv.get_at(&k("x"), s0, Wait::Log).await?, v(1, s0));
    assert_eq!(kv.get_at(&k("x"), s1, Wait::Log).await?, v(1, s0));
    assert_eq!(kv.get_at(&k("x"), s2, Wait::Log).await?, v(2, s2));
    assert_eq!(kv.get_at(&k("x"), s3, Wait::Log).await?, None);
    assert_eq!(kv.get_at(&k("x"), s4, Wait::Log).await?, v(4, s4));
    assert_eq!(kv.get_at(&k("x"), 1000, Wait::Log).await?, v(4, s4));
    assert_eq!(kv.get_at(&k("y"), s0, Wait::Log).await?, None);
    assert_eq!(kv.get_at(&k("z"), s4, Wait::Log).await?, None);
    db.close().await?;
    Ok(())
}

fn trimmed<T: std::fmt::Debug>(result: flume_core::Result<T>) -> Option<(Seq, Seq)> {
    match result {
        Err(Error::HistoryTrimmed { seq, horizon }) => Some((seq, horizon)),
        other => panic!("expected HistoryTrimmed, got {other:?}"),
    }
}

/// x: put 0, put 1, delete 2, put 3; y: put 4, delete 5.
async fn written(history: History) -> flume_core::Result<(Flume<Rec>, KvReader<Rec, String, u32>)> {
    let (db, kv) = open(history).await?;
    for rec in [
        put("x", 10),
        put("x", 11),
        del("x"),
        put("x", 13),
        put("y", 14),
        del("y"),
    ] {
        db.append(&rec).await?;
    }
    Ok((db, kv))
}

#[tokio::test]
async fn latest_keeps_the_newest_entry_and_trims_below_it() -> TestResult {
    let (db, kv) = written(History::Latest).await?;
    assert_eq!(kv.history(&k("x"), Wait::Log).await?, [(3, Op::Put(13))]);
    assert_eq!(kv.history(&k("y"), Wait::Log).await?, [(5, Op::Delete)]);
    assert_eq!(kv.get_at(&k("x"), 3, Wait::Log).await?, v(13, 3));
    assert_eq!(kv.get_at(&k("x"), 9, Wait::Log).await?, v(13, 3));
    assert_eq!(
        trimmed(kv.get_at(&k("x"), 2, Wait::Log).await),
        Some((2, 3))
    );
    assert_eq!(
        trimmed(kv.get_at(&k("x"), 0, Wait::Log).await),
        Some((0, 3))
    );
    // A deleted key: its delete is its newest entry.
    assert_eq!(kv.get_at(&k("y"), 5, Wait::Log).await?, None);
    assert_eq!(
        trimmed(kv.get_at(&k("y"), 4, Wait::Log).await),
        Some((4, 5))
    );
    // A key never written.
    assert_eq!(kv.get_at(&k("z"), 0, Wait::Log).await?, None);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn since_keeps_what_came_after_its_seq_and_the_state_at_it() -> TestResult {
    let (db, kv) = written(History::Since(2)).await?;
    assert_eq!(
        kv.history(&k("x"), Wait::Log).await?,
        [(3, Op::Put(13)), (2, Op::Delete)]
    );
    assert_eq!(
        kv.history(&k("y"), Wait::Log).await?,
        [(5, Op::Delete), (4, Op::Put(14))]
    );
    assert_eq!(kv.get_at(&k("x"), 2, Wait::Log).await?, None);
    assert_eq!(kv.get_at(&k("x"), 3, Wait::Log).await?, v(13, 3));
    assert_eq!(
        trimmed(kv.get_at(&k("x"), 1, Wait::Log).await),
        Some((1, 2))
    );
    // The horizon holds for every key, written or not.
    assert_eq!(
        trimmed(kv.get_at(&k("z"), 0, Wait::Log).await),
        Some((0, 2))
    );
    assert_eq!(kv.get_at(&k("z"), 2, Wait::Log).await?, None);
    assert_eq!(kv.get_at(&k("y"), 4, Wait::Log).await?, v(14, 4));

    let (db2, kv) = written(History::Since(1)).await?;
    assert_eq!(
        kv.history(&k("x"), Wait::Log).await?,
        [(3, Op::Put(13)), (2, Op::Delete), (1, Op::Put(11))]
    );
    assert_eq!(kv.get_at(&k("x"), 1, Wait::Log).await?, v(11, 1));
    db.close().await?;
    db2.close().await?;
    Ok(())
}

#[tokio::test]
async fn all_never_trims() -> TestResult {
    let (db, kv) = written(History::All).await?;
    assert_eq!(kv.history(&k("x"), Wait::Log).await?.len(), 4);
    assert_eq!(kv.get_at(&k("x"), 0, Wait::Log).await?, v(10, 0));
    assert_eq!(kv.get_at(&k("y"), 0, Wait::Log).await?, None);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_map_that_no_longer_emits_the_key_is_a_codec_error() -> TestResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let emit = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&emit);
    let db = Flume::<u32>::new(MemoryLog::new());
    let kv: KvReader<u32, u32, u32> = db.add_view(
        "kv",
        Kv::new(1, move |n: &u32, e| {
            if flag.load(Ordering::SeqCst) {
                e.put(*n, *n);
            }
        }),
    )?;
    db.append(&7).await?;
    assert_eq!(kv.version(&7, Wait::Log).await?, Some(0));
    emit.store(false, Ordering::SeqCst);
    match kv.get(&7, Wait::Log).await {
        Err(Error::Codec { seq: Some(0), .. }) => {}
        other => panic!("expected a codec error, got {other:?}"),
    }
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn put_with_makes_a_value_only_for_a_read_that_needs_it() -> TestResult {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let made = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&made);
    let db = Flume::<u32>::new(MemoryLog::new());
    let kv: KvReader<u32, u32, String> = db.add_view(
        "kv",
        Kv::new(1, move |n: &u32, e| {
            e.put_with(n % 10, || {
                counter.fetch_add(1, Ordering::SeqCst);
                format!("value {n}")
            });
        }),
    )?;
    for n in 0..100 {
        db.append(&n).await?;
    }
    assert_eq!(kv.all().count(Wait::Log).await?, 10);
    assert_eq!(kv.version(&3, Wait::Log).await?, Some(93));
    assert_eq!(made.load(Ordering::SeqCst), 0, "indexing made no value");
    assert_eq!(kv.get(&3, Wait::Log).await?, v_string("value 93", 93));
    assert_eq!(made.load(Ordering::SeqCst), 1);
    db.close().await?;
    Ok(())
}

fn v_string(value: &str, version: Seq) -> Option<Versioned<String>> {
    Some(Versioned {
        value: value.to_string(),
        version,
    })
}

#[tokio::test]
async fn empty_and_inverted_ranges_find_nothing() -> TestResult {
    let db = Flume::<u32>::new(MemoryLog::new());
    let kv: KvReader<u32, u32, u32> = db.add_view("kv", Kv::new(1, |n: &u32, e| e.put(*n, *n)))?;
    db.append_batch(&[1, 2, 3, 4, 5, 6]).await?;
    let empty_start = 3;
    #[allow(clippy::reversed_empty_ranges)]
    let scans = [
        kv.range(5..3),
        kv.range(3..3),
        kv.range(empty_start..empty_start),
        kv.prefix([9u8]),
    ];
    for scan in scans {
        assert_eq!(scan.count(Wait::Log).await?, 0);
    }
    #[allow(clippy::reversed_empty_ranges)]
    let keys = kv.range(5..3).keys(Wait::Log).await?;
    assert_eq!(keys, []);
    assert_eq!(kv.range(3..=3).keys(Wait::Log).await?, [(3, 2)]);
    assert_eq!(kv.range(5..).count(Wait::Log).await?, 2);
    assert_eq!(
        kv.range(..=2).reverse().keys(Wait::Log).await?,
        [(2, 1), (1, 0)]
    );
    db.close().await?;
    Ok(())
}

/// The reads' futures can be spawned on a multi-threaded runtime.
#[tokio::test]
async fn read_futures_are_send() -> TestResult {
    fn spawnable<F: std::future::Future + Send>(f: F) -> F {
        f
    }
    let (db, kv) = written(History::All).await?;
    let key = k("x");
    spawnable(kv.get(&key, Wait::Log)).await?;
    spawnable(kv.version(&key, Wait::Log)).await?;
    spawnable(kv.history(&key, Wait::Log)).await?;
    spawnable(kv.get_at(&key, 2, Wait::Log)).await?;
    spawnable(kv.all().entries(Wait::Log)).await?;
    spawnable(kv.all().count(Wait::Log)).await?;
    let reader = kv.clone();
    let spawned = tokio::spawn(async move { reader.prefix("x").keys(Wait::Log).await });
    assert_eq!(spawned.await??, [(k("x"), 3)]);
    db.close().await?;
    Ok(())
}
