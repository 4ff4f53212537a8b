//! A key-value store at 1M keys on a file log: `get` (an engine lookup, then one record
//! read and one map call) and `put_if` (a compare-and-set append: wait for the view,
//! read the key's version, append only if the log's tail has not moved, then the
//! view applies it).
//!
//! The data is built once (1M `KvOp::Put` records, one key each); criterion then times
//! batches of 1000 operations, and a second pass times single operations to report p50
//! and p99 (printed as `kv get: …` and `kv put_if: …`). Not run by the tests:
//! `cargo bench -p flumeview-kv`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flume_core::{Flume, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_kv::{Cas, Expect, Kv, KvOp, KvStore};

/// Keys in the store (one record each).
const N: u64 = 1_000_000;
/// Operations per criterion iteration.
const BATCH: u64 = 1000;
/// Single gets timed for the percentiles (put_ifs: a tenth of it).
const SAMPLES: u64 = 100_000;

type Store = KvStore<String, u64>;

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
    store: Store,
    /// Each key's current version, so that every put_if expects the right one.
    versions: Vec<u64>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FileLog::open(dir.path().join("log"), FileLogOptions::default())
        .await
        .expect("log");
    let store = Store::new(
        Flume::new(log),
        "kv",
        Kv::ops(1).persist(dir.path().join("kv")),
    )
    .expect("view");
    let started = Instant::now();
    for start in (0..N).step_by(10_000) {
        let ops: Vec<KvOp<String, u64>> = (start..start + 10_000)
            .map(|i| KvOp::Put {
                key: key_of(i),
                value: i,
            })
            .collect();
        store.db().append_batch(&ops).await.expect("append");
    }
    store
        .reader()
        .version(&key_of(0), Wait::Log)
        .await
        .expect("built");
    eprintln!(
        "kv: wrote and indexed {N} keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Fixture {
        store,
        versions: (0..N).collect(),
        _dir: dir,
    }
}

/// Sets key `i` to `n`, expecting the version it last had; records the new one.
async fn put_if(store: &Store, versions: &mut [u64], i: u64, n: u64) {
    let slot = &mut versions[i as usize];
    let cas = store
        .put_if(key_of(i), n, Expect::Version(*slot))
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
    let mut f = rt.block_on(fixture());
    let mut group = c.benchmark_group("kv at 1M keys");
    group.throughput(Throughput::Elements(BATCH));

    let mut at = 0u64;
    group.bench_function("1000 gets", |b| {
        b.to_async(&rt).iter(|| {
            let start = at;
            at += BATCH;
            let store = &f.store;
            async move {
                for j in start..start + BATCH {
                    let i = pick(j);
                    let got = store.get(&key_of(i), Wait::NoWait).await.expect("get");
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
                    put_if(&f.store, &mut f.versions, pick(j), j).await;
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
            let got = f.store.get(&key, Wait::NoWait).await.expect("get");
            samples.push(t.elapsed());
            assert!(got.is_some());
        }
        report("get", samples);
        let mut samples = Vec::with_capacity((SAMPLES / 10) as usize);
        for j in 0..SAMPLES / 10 {
            let t = Instant::now();
            put_if(&f.store, &mut f.versions, pick(j + 9_000_000), j).await;
            samples.push(t.elapsed());
        }
        report("put_if", samples);
    });
    rt.block_on(f.store.db().close()).expect("close");
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
