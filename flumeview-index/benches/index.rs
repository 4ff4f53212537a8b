//! The index view's hot paths: building (map, memtable, sorted runs on disk) over 20k
//! records, and point lookups (`get_seq`: bloom filters, one block per run).
//! Quick by design: `cargo bench -p flumeview-index`.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flume_core::{Flume, Json, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, Index, IndexOptions, IndexReader};

const N: u64 = 20_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The key of record `i`: 52 characters, like the workload's message keys.
fn key_of(i: u64) -> String {
    format!(
        "%{:044}.sha256",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_007
    )
}

fn by_key(dir: &std::path::Path) -> Index<String> {
    // Small memtables, so that lookups go through several sorted runs on disk.
    Index::new(1, |k: &String, e| e.put(key::string(k)))
        .options(IndexOptions::default().memtable_bytes(256 << 10))
        .persist(dir)
}

fn index(c: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = rt.block_on(async {
        let db = Flume::builder(MemoryLog::new(), Json).build();
        let keys: Vec<String> = (0..N).map(key_of).collect();
        db.append_batch(&keys).await.expect("append");
        db
    });
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(N));
    let mut made = 0;
    group.bench_function("build over 20k records", |b| {
        b.to_async(&rt).iter(|| {
            made += 1;
            let name = format!("by_key-{made}");
            let dir = tmp.path().join(&name);
            let db = &db;
            async move {
                let reader: IndexReader<String> = db.add_view(&name, by_key(&dir)).expect("view");
                reader
                    .get_seq(b"", Wait::AtLeast(N - 1))
                    .await
                    .expect("built");
            }
        })
    });
    let reader: IndexReader<String> = db
        .add_view("lookups", by_key(&tmp.path().join("lookups")))
        .expect("view");
    rt.block_on(reader.get_seq(b"", Wait::AtLeast(N - 1)))
        .expect("built");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 point lookups (get_seq)", |b| {
        let mut at = 0u64;
        b.to_async(&rt).iter(|| {
            let start = at;
            at = (at + 1000) % N;
            let reader = &reader;
            async move {
                for i in start..start + 1000 {
                    let k = key_of(i % N);
                    let seq = reader
                        .get_seq(key::string(&k), Wait::NoWait)
                        .await
                        .expect("lookup");
                    assert!(seq.is_some());
                }
            }
        })
    });
    group.finish();
    rt.block_on(db.close()).expect("close");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = index
}
criterion_main!(benches);
