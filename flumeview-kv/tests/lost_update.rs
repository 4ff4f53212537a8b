//! No lost update: 16 tasks increment one counter with `put_if` in a retry loop, on the
//! memory log and on the file log. Afterwards the counter equals the number of successful
//! compare-and-sets, the winners form one chain of versions (each expected the version
//! the previous one wrote), the log holds exactly the winners, and every conflict carried
//! a version that had won.
//!
//! A second scenario has writers of different keys share the log: their conditional
//! appends race on the tail all the time, but a tail that moved for another key must never
//! be reported as a conflict.
//!
//! The logs are wrapped in [`Counting`], which counts the conditional appends tried and
//! those refused because the tail had moved: the retries the helper made, printed with
//! the outcome (run with `--nocapture` to see them).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flume_core::{
    Durability, Error, Flume, Log, RawRecord, Result as FlumeResult, Seq, StreamOptions, Wait,
};
use flumelog_file::{FileLog, FileLogOptions};
use flumelog_memory::MemoryLog;
use flumeview_kv::{Cas, Expect, Kv, KvOp, KvStore};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::TryStreamExt;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TASKS: usize = 16;
const INCREMENTS_PER_TASK: usize = 25;
const COUNTER: &str = "counter";

/// How many conditional appends a [`Counting`] log was asked for, and how many it refused
/// with a conflict (the log had moved past the expected tail).
#[derive(Debug, Default)]
struct Counts {
    conditional: AtomicU64,
    refused: AtomicU64,
}

impl Counts {
    fn report(&self) -> (u64, u64) {
        (
            self.conditional.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// A log that forwards everything to `inner` and counts conditional appends.
struct Counting<L> {
    inner: L,
    counts: Arc<Counts>,
}

impl<L: Log> Log for Counting<L> {
    fn append_with(
        &self,
        record: Bytes,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, FlumeResult<Seq>> {
        self.inner.append_with(record, durability)
    }
    fn append_batch_with(
        &self,
        records: Vec<Bytes>,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, FlumeResult<Range<Seq>>> {
        self.inner.append_batch_with(records, durability)
    }
    fn append_batch_if_with(
        &self,
        records: Vec<Bytes>,
        expected: Option<Seq>,
        durability: Option<Durability>,
    ) -> BoxFuture<'_, FlumeResult<Range<Seq>>> {
        Box::pin(async move {
            self.counts.conditional.fetch_add(1, Ordering::Relaxed);
            let result = self
                .inner
                .append_batch_if_with(records, expected, durability)
                .await;
            if matches!(result, Err(Error::Conflict { .. })) {
                self.counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }
    fn get(&self, seq: Seq) -> BoxFuture<'_, FlumeResult<Bytes>> {
        self.inner.get(seq)
    }
    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, FlumeResult<RawRecord>> {
        self.inner.stream(opts)
    }
    fn stream_chunks(
        &self,
        opts: StreamOptions,
        max: usize,
    ) -> BoxStream<'static, FlumeResult<Vec<RawRecord>>> {
        self.inner.stream_chunks(opts, max)
    }
    fn since(&self) -> tokio::sync::watch::Receiver<Option<Seq>> {
        self.inner.since()
    }
    fn durable(&self) -> tokio::sync::watch::Receiver<Option<Seq>> {
        self.inner.durable()
    }
    fn sync(&self) -> BoxFuture<'_, FlumeResult<()>> {
        self.inner.sync()
    }
    fn revert(&self, last: Option<Seq>) -> BoxFuture<'_, FlumeResult<()>> {
        self.inner.revert(last)
    }
    fn close(&self) -> BoxFuture<'_, FlumeResult<()>> {
        self.inner.close()
    }
}

/// `log`, counted.
fn counting<L: Log>(log: L) -> (Counting<L>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let log = Counting {
        inner: log,
        counts: Arc::clone(&counts),
    };
    (log, counts)
}

/// What one task saw: the versions it expected when it won (with the seq it wrote), and
/// the (expected, current) pair of every conflict.
#[derive(Debug, Default)]
struct Outcome {
    won: Vec<(Option<Seq>, Seq)>,
    conflicts: Vec<(Option<Seq>, Option<Seq>)>,
}

/// Increments the counter `INCREMENTS_PER_TASK` times: read, add one, `put_if` the
/// version read; on a conflict read again.
async fn incrementer(store: KvStore<String, u64>) -> flume_core::Result<Outcome> {
    let key = COUNTER.to_string();
    let mut outcome = Outcome::default();
    while outcome.won.len() < INCREMENTS_PER_TASK {
        let read = store.get(&key, Wait::Log).await?;
        let (value, version) = match read {
            Some(v) => (v.value, Some(v.version)),
            None => (0, None),
        };
        let cas = store
            .put_if(key.clone(), value + 1, Expect::from_version(version))
            .await?;
        match cas {
            Cas::Written(seq) => outcome.won.push((version, seq)),
            Cas::Conflict { current } => outcome.conflicts.push((version, current)),
        }
    }
    Ok(outcome)
}

/// Runs the race on `db` and checks everything the log and the view say afterwards.
async fn race(name: &str, log: impl Log, view: Kv<KvOp<String, u64>, String, u64>) -> TestResult {
    let (log, counts) = counting(log);
    let db = Flume::new(log);
    let store = KvStore::new(db.clone(), "kv", view)?;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| tokio::spawn(incrementer(store.clone())))
        .collect();
    let mut won = Vec::new();
    let mut conflicts = Vec::new();
    for task in tasks {
        let outcome = task.await??;
        won.extend(outcome.won);
        conflicts.extend(outcome.conflicts);
    }
    won.sort_by_key(|&(_, seq)| seq);
    let total = TASKS * INCREMENTS_PER_TASK;
    let (conditional, refused) = counts.report();
    eprintln!(
        "{name}: {total} increments by {TASKS} tasks: {} successful compare-and-sets, {} conflicts \
         reported; {conditional} conditional appends tried, {refused} refused (tail moved)",
        won.len(),
        conflicts.len()
    );
    // Each compare-and-set that was written made exactly one conditional append that
    // succeeded; every other one was refused.
    assert_eq!(conditional - refused, won.len() as u64);

    // The counter counts every success, and its version is the last one.
    assert_eq!(won.len(), total);
    let key = COUNTER.to_string();
    let last = store
        .get(&key, Wait::Log)
        .await?
        .expect("the counter exists");
    assert_eq!(last.value, total as u64, "an update was lost");
    assert_eq!(last.version, won.last().expect("winners").1);

    // One chain: each winner expected exactly what the previous winner wrote.
    let mut previous = None;
    for &(expected, seq) in &won {
        assert_eq!(
            expected, previous,
            "winner at {seq} expected a stale version"
        );
        previous = Some(seq);
    }

    // The log holds the winners and nothing else, with the values 1, 2, 3, …
    let records: Vec<(Seq, KvOp<String, u64>)> =
        db.stream(Default::default()).try_collect().await?;
    assert_eq!(records.len(), total, "a conflict appended a record");
    for (i, ((seq, op), &(_, won_seq))) in records.iter().zip(&won).enumerate() {
        assert_eq!(*seq, won_seq);
        assert_eq!(
            *op,
            KvOp::Put {
                key: key.clone(),
                value: i as u64 + 1
            }
        );
    }

    // Every conflict carried a version that won, later than the one expected.
    let winners: BTreeSet<Seq> = won.iter().map(|&(_, seq)| seq).collect();
    for &(expected, current) in &conflicts {
        let current = current.expect("the counter is never deleted, so a conflict has a version");
        assert!(
            winners.contains(&current),
            "conflict reported {current}, which did not win"
        );
        assert!(
            Some(current) > expected,
            "conflict reported {current}, not newer than {expected:?}"
        );
    }

    // The view's history of the counter is the chain, newest first.
    let history = store.reader().history(&key, Wait::Log).await?;
    let seqs: Vec<Seq> = history.iter().map(|(seq, _)| *seq).collect();
    let mut chain: Vec<Seq> = winners.into_iter().collect();
    chain.reverse();
    assert_eq!(seqs, chain);
    db.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_update_on_the_memory_log() -> TestResult {
    race("memory log", MemoryLog::new(), Kv::ops(1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_update_on_the_file_log() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = FileLog::open(dir.path().join("log"), FileLogOptions::default()).await?;
    race("file log", log, Kv::ops(1).persist(dir.path().join("kv"))).await
}

/// Writers of different keys: each expects the version it wrote last, which nobody else
/// touches, so every compare-and-set must be written, however often the shared tail moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tail_moved_by_other_keys_is_not_a_conflict() -> TestResult {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 30;
    let (log, counts) = counting(MemoryLog::new());
    let db = Flume::new(log);
    let store = KvStore::<u64, u64>::new(db.clone(), "kv", Kv::ops(1))?;
    let tasks: Vec<tokio::task::JoinHandle<flume_core::Result<Option<Seq>>>> = (0..WRITERS)
        .map(|key| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut version = None;
                for n in 0..WRITES {
                    match store.put_if(key, n, Expect::from_version(version)).await? {
                        Cas::Written(seq) => version = Some(seq),
                        Cas::Conflict { current } => {
                            panic!(
                                "key {key}: conflict at version {current:?}, expected {version:?}"
                            )
                        }
                    }
                }
                flume_core::Result::Ok(version)
            })
        })
        .collect();
    let mut last = BTreeMap::new();
    for (key, task) in tasks.into_iter().enumerate() {
        last.insert(key as u64, task.await??);
    }
    assert_eq!(db.since(), Some(WRITERS * WRITES - 1));
    let (conditional, refused) = counts.report();
    eprintln!(
        "{WRITERS} writers of their own keys, {WRITES} writes each: {conditional} conditional \
         appends tried, {refused} refused (tail moved by another key), no conflict reported"
    );
    assert_eq!(conditional - refused, WRITERS * WRITES);
    for (key, version) in last {
        let read = store.get(&key, Wait::Log).await?.expect("written");
        assert_eq!((read.value, Some(read.version)), (WRITES - 1, version));
    }
    db.close().await?;
    Ok(())
}

/// The generic form, on an application's own record type: a transfer record touches two
/// keys; the compare-and-set checks one of them and the record is appended whole.
#[tokio::test]
async fn append_if_version_checks_one_key_of_a_record_touching_several() -> TestResult {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Transfer {
        from: String,
        to: String,
        from_balance: u64,
        to_balance: u64,
    }
    let db = Flume::<Transfer>::new(MemoryLog::new());
    let balances = db.add_view(
        "balances",
        Kv::new(1, |t: &Transfer, kv| {
            kv.put(t.from.clone(), t.from_balance);
            kv.put(t.to.clone(), t.to_balance);
        }),
    )?;
    let t = |from_balance, to_balance| Transfer {
        from: "a".into(),
        to: "b".into(),
        from_balance,
        to_balance,
    };
    let a = "a".to_string();
    let first = balances
        .append_if_version(&db, &a, Expect::Absent, &t(10, 0))
        .await?;
    assert_eq!(first, Cas::Written(0));
    let second = balances
        .append_if_version(&db, &a, Expect::Version(0), &t(5, 5))
        .await?;
    assert_eq!(second, Cas::Written(1));
    // A writer still holding version 0 of "a" loses, and learns version 1.
    let stale = balances
        .append_if_version(&db, &a, Expect::Version(0), &t(0, 10))
        .await?;
    assert_eq!(stale, Cas::Conflict { current: Some(1) });
    let b = balances.get(&"b".to_string(), Wait::Log).await?.expect("b");
    assert_eq!((b.value, b.version), (5, 1));
    assert_eq!(db.since(), Some(1));
    // A batch: both records or none.
    let batch = balances
        .append_batch_if_version(&db, &a, Expect::Version(1), &[t(4, 6), t(3, 7)])
        .await?;
    assert_eq!(batch, Cas::Written(2));
    assert_eq!(balances.version(&a, Wait::Log).await?, Some(3));
    db.close().await?;
    Ok(())
}

/// `delete_if` and `Expect::Any` through the store.
#[tokio::test]
async fn delete_if_and_unconditional_writes() -> TestResult {
    let store = KvStore::<String, String>::new(Flume::new(MemoryLog::new()), "kv", Kv::ops(1))?;
    let k = "doc".to_string();
    assert_eq!(
        store.delete_if(k.clone(), Expect::Version(7)).await?,
        Cas::Conflict { current: None }
    );
    let v0 = store.put(k.clone(), "one".into()).await?;
    assert_eq!(
        store.put_if(k.clone(), "x".into(), Expect::Absent).await?,
        Cas::Conflict { current: Some(v0) }
    );
    let v1 = store.put_if(k.clone(), "two".into(), Expect::Any).await?;
    assert_eq!(v1, Cas::Written(v0 + 1));
    assert_eq!(
        store.delete_if(k.clone(), Expect::Version(v0)).await?,
        Cas::Conflict {
            current: Some(v0 + 1)
        }
    );
    let del = store.delete_if(k.clone(), Expect::Version(v0 + 1)).await?;
    assert_eq!(del, Cas::Written(v0 + 2));
    assert_eq!(store.get(&k, Wait::Log).await?, None);
    // Absent again: a create succeeds.
    assert!(store
        .put_if(k.clone(), "three".into(), Expect::Absent)
        .await?
        .is_written());
    let deleted = store.delete(k.clone()).await?;
    assert_eq!(store.reader().version(&k, Wait::Log).await?, None);
    assert!(deleted > v0 + 2);
    store.db().close().await?;
    Ok(())
}
