//! `KvReader::watch`: history replay or now, one key or a prefix, deletes included, in
//! seq order, with no gap or duplicate at the seam between replay and live changes, and
//! the end at close.

mod common_watch;

use common_watch::{kv, next, remove, set, Rec, TestResult};
use flume_core::{Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{Change, KvReader, Op, WatchFrom, WatchKeys};
use futures::StreamExt;

type Reader = KvReader<Rec, String, u64>;

fn change(seq: Seq, key: &str, op: Op<u64>) -> Change<String, u64> {
    Change {
        seq,
        key: key.to_string(),
        op,
    }
}

async fn db() -> flume_core::Result<(Flume<Rec>, Reader)> {
    let db = Flume::<Rec>::new(MemoryLog::new());
    let reader = db.add_view("kv", kv())?;
    Ok((db, reader))
}

#[tokio::test]
async fn history_replays_every_change_then_follows_new_ones() -> TestResult {
    let (db, kv) = db().await?;
    db.append(&set("a", 1)).await?; // 0
    db.append(&set("b", 2)).await?; // 1
    db.append(&set("a", 3)).await?; // 2
    db.append(&remove("b")).await?; // 3
    let mut watch = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut watch).await);
    }
    assert_eq!(
        got,
        vec![
            change(0, "a", Op::Put(1)),
            change(1, "b", Op::Put(2)),
            change(2, "a", Op::Put(3)),
            change(3, "b", Op::Delete),
        ]
    );
    db.append(&set("b", 4)).await?; // 4
    db.append(&remove("a")).await?; // 5
    assert_eq!(next(&mut watch).await, change(4, "b", Op::Put(4)));
    assert_eq!(next(&mut watch).await, change(5, "a", Op::Delete));
    db.close().await?;
    assert!(watch.next().await.is_none(), "the watch ends at close");
    Ok(())
}

#[tokio::test]
async fn now_skips_the_history() -> TestResult {
    let (db, kv) = db().await?;
    db.append(&set("a", 1)).await?;
    db.append(&set("a", 2)).await?;
    let mut watch = kv.watch(WatchKeys::All, WatchFrom::Now, Wait::Log);
    let seq = db.append(&set("a", 3)).await?;
    assert_eq!(seq, 2);
    assert_eq!(next(&mut watch).await, change(2, "a", Op::Put(3)));
    db.close().await?;
    assert!(watch.next().await.is_none());
    Ok(())
}

#[tokio::test]
async fn one_key_and_a_prefix_see_only_their_keys() -> TestResult {
    let (db, kv) = db().await?;
    let mut one = kv.watch(
        WatchKeys::key("user/1".into()),
        WatchFrom::History,
        Wait::Log,
    );
    let mut users = kv.watch(WatchKeys::prefix("user/"), WatchFrom::History, Wait::Log);
    let mut all = kv.watch(WatchKeys::All, WatchFrom::Now, Wait::Log);
    for rec in [
        set("post/1", 1),  // 0
        set("user/10", 2), // 1: not the key "user/1"
        set("user/1", 3),  // 2
        set("user", 4),    // 3: not under "user/"
        remove("user/1"),  // 4
        set("user/2", 5),  // 5
    ] {
        db.append(&rec).await?;
    }
    assert_eq!(next(&mut one).await, change(2, "user/1", Op::Put(3)));
    assert_eq!(next(&mut one).await, change(4, "user/1", Op::Delete));
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut users).await.seq);
    }
    assert_eq!(got, vec![1, 2, 4, 5]);
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next(&mut all).await.seq);
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    db.close().await?;
    for watch in [&mut one, &mut users, &mut all] {
        assert!(watch.next().await.is_none(), "nothing more, then the end");
    }
    Ok(())
}

#[tokio::test]
async fn a_record_touching_two_keys_gives_two_changes_in_key_order() -> TestResult {
    let (db, kv) = db().await?;
    db.append(&set("x", 7)).await?; // 0
    db.append(&Rec::Move("x".into(), "a".into(), 7)).await?; // 1
                                                             // Set then removed by one record: only its final op counts.
    db.append(&Rec::Move("b".into(), "b".into(), 9)).await?; // 2
    let mut watch = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut watch).await);
    }
    assert_eq!(
        got,
        vec![
            change(0, "x", Op::Put(7)),
            change(1, "a", Op::Put(7)),
            change(1, "x", Op::Delete),
            change(2, "b", Op::Put(9)),
        ]
    );
    db.close().await?;
    assert!(watch.next().await.is_none());
    Ok(())
}

/// Appends race the start of the watch: the replay and the live changes together hold
/// every seq exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_or_duplicate_at_the_seam_under_concurrent_appends() -> TestResult {
    const RECORDS: u64 = 3000;
    for from in [WatchFrom::History, WatchFrom::Now] {
        let (db, kv) = db().await?;
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                for start in (0..RECORDS).step_by(10) {
                    let batch: Vec<Rec> = (start..start + 10)
                        .map(|i| {
                            if i % 7 == 3 {
                                remove(&format!("k{:02}", i % 20))
                            } else {
                                set(&format!("k{:02}", i % 20), i)
                            }
                        })
                        .collect();
                    db.append_batch(&batch).await?;
                    tokio::task::yield_now().await;
                }
                Ok::<(), flume_core::Error>(())
            })
        };
        // Start once some records are in, while the writer goes on.
        while db.since() < Some(RECORDS / 4) {
            tokio::task::yield_now().await;
        }
        // `History` replays from whatever the view has; `Now` starts after the seq the
        // log had here, whatever the view has applied yet.
        let at = db.since().expect("some records");
        let (mut watch, start) = match from {
            WatchFrom::History => (kv.watch(WatchKeys::All, from, Wait::NoWait), 0),
            WatchFrom::Now => (kv.watch(WatchKeys::All, from, Wait::AtLeast(at)), at + 1),
        };
        // Read while the writer goes on, up to a last record appended once it is done.
        let reader = tokio::spawn(async move {
            let mut seqs = Vec::new();
            loop {
                let c = next(&mut watch).await;
                seqs.push(c.seq);
                if c.seq == RECORDS {
                    assert_eq!(c, change(RECORDS, "end", Op::Put(RECORDS)));
                    return (seqs, watch);
                }
                let expected = if c.seq % 7 == 3 {
                    Op::Delete
                } else {
                    Op::Put(c.seq)
                };
                assert_eq!(c.op, expected, "at {}", c.seq);
                assert_eq!(c.key, format!("k{:02}", c.seq % 20));
            }
        });
        writer.await??;
        db.append(&set("end", RECORDS)).await?;
        let (seqs, mut watch) = reader.await?;
        assert_eq!(seqs, (start..=RECORDS).collect::<Vec<_>>(), "{from:?}");
        db.close().await?;
        assert!(
            watch.next().await.is_none(),
            "{from:?}: no duplicate at the end"
        );
    }
    Ok(())
}

/// A rebuild wipes the view and maps the log again: the watch reports nothing twice,
/// then goes on with new changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_survives_a_rebuild() -> TestResult {
    let (db, kv) = db().await?;
    for i in 0..50 {
        db.append(&set(&format!("k{}", i % 5), i)).await?;
    }
    let mut watch = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    for i in 0..50 {
        assert_eq!(next(&mut watch).await.seq, i);
    }
    db.rebuild().await?;
    db.append(&set("k0", 50)).await?;
    db.rebuild().await?;
    db.append(&remove("k1")).await?;
    assert_eq!(next(&mut watch).await, change(50, "k0", Op::Put(50)));
    assert_eq!(next(&mut watch).await, change(51, "k1", Op::Delete));
    db.close().await?;
    assert!(watch.next().await.is_none());
    Ok(())
}

/// A watch made before the view has anything waits, and a watch of a closed database
/// ends at once.
#[tokio::test]
async fn an_empty_view_then_a_closed_one() -> TestResult {
    let (db, kv) = db().await?;
    let mut watch = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    db.append(&set("a", 1)).await?;
    assert_eq!(next(&mut watch).await, change(0, "a", Op::Put(1)));
    db.close().await?;
    assert!(watch.next().await.is_none());
    let mut late = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    assert!(
        late.next().await.is_none(),
        "a closed database has nothing to watch"
    );
    Ok(())
}

/// The replay reports only what the view's `History` option keeps (so what it reports
/// does not depend on whether compaction has dropped the rest yet).
#[tokio::test]
async fn the_replay_follows_the_history_option() -> TestResult {
    use flumeview_kv::History;
    let cases = [
        (History::All, vec![0, 1, 2, 3, 4]),
        (History::Since(2), vec![1, 2, 3, 4]),
        (History::Latest, vec![1, 3, 4]),
    ];
    for (history, expected) in cases {
        let db = Flume::<Rec>::new(MemoryLog::new());
        let kv: Reader = db.add_view("kv", common_watch::kv().history(history))?;
        db.append(&set("a", 0)).await?; // 0
        db.append(&set("a", 1)).await?; // 1
        db.append(&set("b", 2)).await?; // 2
        db.append(&remove("b")).await?; // 3
        db.append(&set("c", 4)).await?; // 4
        let mut watch = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(next(&mut watch).await.seq);
        }
        assert_eq!(got, expected, "{history:?}");
        // Live changes follow as they come.
        db.append(&set("a", 5)).await?;
        assert_eq!(next(&mut watch).await, change(5, "a", Op::Put(5)));
        db.close().await?;
        assert!(watch.next().await.is_none(), "{history:?}");
    }
    Ok(())
}

/// After a reopen over a durable log, a persisted view replays the same history and
/// `Now` starts at the log's end.
#[tokio::test]
async fn a_reopened_view_replays_the_same_history() -> TestResult {
    use flumelog_file::{FileLog, FileLogOptions};
    let dir = tempfile::tempdir()?;
    let open = || async {
        let log = FileLog::open(dir.path().join("log"), FileLogOptions::default()).await?;
        let db = Flume::<Rec>::new(log);
        let kv: Reader = db.add_view("kv", common_watch::kv().persist(dir.path().join("kv")))?;
        flume_core::Result::<_>::Ok((db, kv))
    };
    let (db, kv) = open().await?;
    for i in 0..20u64 {
        let rec = if i % 4 == 3 {
            remove(&format!("k{}", i % 3))
        } else {
            set(&format!("k{}", i % 3), i)
        };
        db.append(&rec).await?;
    }
    let mut before = Vec::new();
    let mut watch = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    for _ in 0..20 {
        before.push(next(&mut watch).await);
    }
    db.close().await?;
    assert!(watch.next().await.is_none());

    let (db, kv) = open().await?;
    let mut replay = kv.watch(WatchKeys::All, WatchFrom::History, Wait::Log);
    let mut now = kv.watch(WatchKeys::All, WatchFrom::Now, Wait::Log);
    let mut after = Vec::new();
    for _ in 0..20 {
        after.push(next(&mut replay).await);
    }
    assert_eq!(after, before);
    db.append(&set("k9", 99)).await?;
    assert_eq!(next(&mut replay).await, change(20, "k9", Op::Put(99)));
    assert_eq!(next(&mut now).await, change(20, "k9", Op::Put(99)));
    db.close().await?;
    Ok(())
}
