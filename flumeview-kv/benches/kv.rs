//! The key-value view at 1M keys on a file log: `get` (an engine lookup, then one record
//! read and one map call) and `put_if` (a compare-and-set append: wait for the view,
//! read the key's version, append only if the log's tail has not moved).
//!
//! The data is built once (1M records, one key each, about 10 s); then criterion times
//! batches of operations, and a second pass times single operations to report p50 and
//! p99. Not run by the tests: `cargo bench -p flumeview-kv`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flume_core::{Flume, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_kv::{Kv, KvReader};
use serde::{Deserialize, Serialize};

/// Keys in the view (one record each).
const N: u64 = 1_000_000;
/// Operations per criterion iteration.
const BATCH: u64 = 1000;
/// Single operations timed for the percentiles.
const SAMPLES: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    key: String,
    n: u64,
}

type Reader = KvReader<Doc, String, u64>;

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

/// The `j`th key to look up: uniform over the keys, the same sequence every run.
fn pick(j: u64) -> u64 {
    j.wrapping_mul(0x2545_F491_4F6C_DD1D) % N
}

fn kv() -> Kv<Doc, String, u64> {
    Kv::new(1, |d: &Doc, e| e.put(d.key.clone(), d.n))
}

struct Fixture {
    db: Flume<Doc>,
    reader: Reader,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FileLog::open(dir.path().join("log"), FileLogOptions::default())
        .await
        .expect("log");
    let db = Flume::new(log);
    let reader: Reader = db
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
    reader.version(&key_of(0), Wait::Log).await.expect("built");
    eprintln!("built 1M keys in {:.1} s", started.elapsed().as_secs_f64());
    Fixture {
        db,
        reader,
        _dir: dir,
    }
}

/// p50 and p99 of `samples`, in microseconds, and the rate they add up to.
fn report(name: &str, mut samples: Vec<Duration>) {
    let total: Duration = samples.iter().sum();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    eprintln!(
        "{name}: {} ops, {:.0} ops/s, p50 {:.2} µs, p99 {:.2} µs",
        samples.len(),
        samples.len() as f64 / total.as_secs_f64(),
        at(0.50),
        at(0.99)
    );
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let f = rt.block_on(fixture());
    let mut group = c.benchmark_group("kv at 1M keys");
    group.throughput(Throughput::Elements(BATCH));

    let mut at = 0u64;
    group.bench_function("1000 gets", |b| {
        b.to_async(&rt).iter(|| {
            let start = at;
            at += BATCH;
            let reader = &f.reader;
            async move {
                for j in start..start + BATCH {
                    let i = pick(j);
                    let got = reader.get(&key_of(i), Wait::NoWait).await.expect("get");
                    assert_eq!(got.map(|v| v.value), Some(i));
                }
            }
        })
    });

    let mut at = 0u64;
    group.bench_function("1000 put_ifs", |b| {
        b.to_async(&rt).iter(|| {
            let start = at;
            at += BATCH;
            let (db, reader) = (&f.db, &f.reader);
            async move {
                for j in start..start + BATCH {
                    put_if(db, reader, pick(j), j).await;
                }
            }
        })
    });
    group.finish();

    // Percentiles: single operations, each timed.
    rt.block_on(async {
        let mut samples = Vec::with_capacity(SAMPLES);
        for j in 0..SAMPLES as u64 {
            let i = pick(j + 7_000_000);
            let t = Instant::now();
            let got = f.reader.get(&key_of(i), Wait::NoWait).await.expect("get");
            samples.push(t.elapsed());
            assert!(got.is_some());
        }
        report("get", samples);
        let mut samples = Vec::with_capacity(SAMPLES / 10);
        for j in 0..(SAMPLES / 10) as u64 {
            let t = Instant::now();
            put_if(&f.db, &f.reader, pick(j + 9_000_000), j).await;
            samples.push(t.elapsed());
        }
        report("put_if", samples);
    });
    rt.block_on(f.db.close()).expect("close");
}

/// Sets key `i` to `n` if nobody changed it since it was read.
async fn put_if(db: &Flume<Doc>, reader: &Reader, i: u64, n: u64) {
    let _ = (db, reader, i, n);
    todo!("the write helper")
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
