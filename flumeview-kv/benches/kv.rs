//! A key-value view at 1M keys on a file log: `get` (an engine lookup, then one record
//! read and one map call) and `put_if` (`KvReader::append_if_version`: wait for the
//! view to apply the log's tail, read the key's version, append only if the tail has
//! not moved).
//!
//! The data is built once (1M records, one key each); criterion then times batches of
//! 1000 operations, and a second pass times single operations to report p50 and p99
//! (printed as `kv get: …` and `kv put_if: …`; then put_if again on a memory log, for
//! comparison). Not run by the tests: `cargo bench -p flumeview-kv`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flume_core::{Flume, Log, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumelog_memory::MemoryLog;
use flumeview_kv::{Cas, Expect, Kv, KvReader};
use serde::{Deserialize, Serialize};

/// Keys in the store (one record each).
const N: u64 = 1_000_000;
/// Operations per criterion iteration.
const BATCH: u64 = 1000;
/// Single gets timed for the percentiles (put_ifs: a tenth of it).
const SAMPLES: u64 = 100_000;

/// An application's record: a document's key and its new value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    key: String,
    n: u64,
}

type Reader = KvReader<Doc, String, u64>;

fn kv() -> Kv<Doc, String, u64> {
    Kv::new(1, |d: &Doc, e| e.put(d.key.clone(), d.n))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Key `i`: 52 characters, like the workload's message keys.
fn key_of(i: u64) -> String {
    format!(
        "%{:044}.sha256",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_007
    )
}

/// The `j`th key to touch: uniform over the keys, the same sequence every run.
fn pick(j: u64) -> u64 {
    j.wrapping_mul(0x2545_F491_4F6C_DD1D) % N
}

struct Fixture {
    db: Flume<Doc>,
    kv: Reader,
    /// Each key's current version, so that every put_if expects the right one.
    versions: Vec<u64>,
    _dir: tempfile::TempDir,
}

async fn file_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FileLog::open(dir.path().join("log"), FileLogOptions::default())
        .await
        .expect("log");
    fixture(log, dir).await
}

async fn fixture(log: impl Log, dir: tempfile::TempDir) -> Fixture {
    let db = Flume::new(log);
    let kv: Reader = db
        .add_view("kv", kv().persist(dir.path().join("kv")))
        .expect("view");
    let started = Instant::now();
    for start in (0..N).step_by(10_000) {
        let docs: Vec<Doc> = (start..start + 10_000)
            .map(|i| Doc {
                key: key_of(i),
                n: i,
            })
            .collect();
        db.append_batch(&docs).await.expect("append");
    }
    kv.version(&key_of(0), Wait::Log).await.expect("built");
    eprintln!(
        "kv: wrote and indexed {N} keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Fixture {
        db,
        kv,
        versions: (0..N).collect(),
        _dir: dir,
    }
}

/// Sets key `i` to `n`, expecting the version it last had; records the new one.
async fn put_if(f: &mut Fixture, i: u64, n: u64) {
    let slot = &mut f.versions[i as usize];
    let doc = Doc { key: key_of(i), n };
    let cas =
        f.kv.append_if_version(&f.db, &doc.key, Expect::Version(*slot), &doc)
            .await
            .expect("put_if");
    match cas {
        Cas::Written(seq) => *slot = seq,
        Cas::Conflict { current } => panic!("key {i}: a lone writer conflicted ({current:?})"),
    }
}

/// p50 and p99 of `samples`, in microseconds, and the rate they add up to.
fn report(name: &str, mut samples: Vec<Duration>) {
    let total: Duration = samples.iter().sum();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    eprintln!(
        "kv {name}: {} ops, {:.0} ops/s, p50 {:.1} µs, p99 {:.1} µs",
        samples.len(),
        samples.len() as f64 / total.as_secs_f64(),
        at(0.50),
        at(0.99)
    );
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut f = rt.block_on(file_fixture());
    let mut group = c.benchmark_group("kv at 1M keys");
    group.throughput(Throughput::Elements(BATCH));

    let mut at = 0u64;
    group.bench_function("1000 gets", |b| {
        b.to_async(&rt).iter(|| {
            let start = at;
            at += BATCH;
            let kv = &f.kv;
            async move {
                for j in start..start + BATCH {
                    let i = pick(j);
                    let got = kv.get(&key_of(i), Wait::NoWait).await.expect("get");
                    assert!(got.is_some());
                }
            }
        })
    });

    let mut at = 0u64;
    group.bench_function("1000 put_ifs", |b| {
        b.iter(|| {
            let start = at;
            at += BATCH;
            rt.block_on(async {
                for j in start..start + BATCH {
                    put_if(&mut f, pick(j), j).await;
                }
            })
        })
    });
    group.finish();

    // Percentiles: single operations, each timed.
    rt.block_on(async {
        let mut samples = Vec::with_capacity(SAMPLES as usize);
        for j in 0..SAMPLES {
            let key = key_of(pick(j + 7_000_000));
            let t = Instant::now();
            let got = f.kv.get(&key, Wait::NoWait).await.expect("get");
            samples.push(t.elapsed());
            assert!(got.is_some());
        }
        report("get", samples);
        let mut samples = Vec::with_capacity((SAMPLES / 10) as usize);
        for j in 0..SAMPLES / 10 {
            let t = Instant::now();
            put_if(&mut f, pick(j + 9_000_000), j).await;
            samples.push(t.elapsed());
        }
        report("put_if", samples);
    });
    rt.block_on(f.db.close()).expect("close");
    drop(f);

    // The same on the memory log, for the part of put_if's time that is the file log
    // waking the view (it wakes watchers of its `since` at most once a millisecond on
    // its fast path, and each put_if waits for the view to apply the one before).
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = fixture(MemoryLog::new(), dir).await;
        let mut samples = Vec::with_capacity((SAMPLES / 10) as usize);
        for j in 0..SAMPLES / 10 {
            let t = Instant::now();
            put_if(&mut f, pick(j + 9_000_000), j).await;
            samples.push(t.elapsed());
        }
        report("put_if (memory log)", samples);
        f.db.close().await.expect("close");
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
