//! Hot paths of the file log: append (one record at the default buffered durability,
//! in bulk mode, and in batches), `get`, a stream scan, and `open` (which parses and
//! checks every frame). Quick by design: `cargo bench -p flumelog-file`.

#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flume_core::{Log, StreamOptions};
use flumelog_file::{FileLog, FileLogOptions};
use futures::StreamExt;

/// A record shaped like the shared workload's (about 250 bytes of JSON).
fn record(i: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"key":"%{i:044}.sha256","author":"@{:044}.ed25519","seq":{i},"type":"post","ts":1717200000000,"text":"{}"}}"#,
        i % 1000,
        "x".repeat(60 + (i % 64) as usize)
    ))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn filled(rt: &tokio::runtime::Runtime, n: u64) -> (tempfile::TempDir, FileLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = rt.block_on(async {
        let log = FileLog::open(dir.path(), FileLogOptions::default())
            .await
            .expect("open");
        log.append_batch((0..n).map(record).collect())
            .await
            .expect("append");
        log
    });
    (dir, log)
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let records: Vec<Bytes> = (0..1000).map(record).collect();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(records.len() as u64));
    let modes = [
        ("buffered (default)", FileLogOptions::default()),
        (
            "bulk (max_write_delay 2 ms)",
            FileLogOptions::default().max_write_delay(Duration::from_millis(2)),
        ),
    ];
    for (name, options) in modes {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = rt
            .block_on(FileLog::open(dir.path(), options))
            .expect("open");
        group.bench_function(format!("1000 single appends, {name}"), |b| {
            b.to_async(&rt).iter(|| async {
                for r in &records {
                    log.append(r.clone()).await.expect("append");
                }
            })
        });
        rt.block_on(log.close()).expect("close");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = rt
        .block_on(FileLog::open(dir.path(), FileLogOptions::default()))
        .expect("open");
    group.bench_function(
        "1000 records in batches of 100 (framing + one write each)",
        |b| {
            b.to_async(&rt).iter(|| async {
                for chunk in records.chunks(100) {
                    log.append_batch(chunk.to_vec()).await.expect("append");
                }
            })
        },
    );
    rt.block_on(log.close()).expect("close");
    group.finish();
}

fn read(c: &mut Criterion) {
    let rt = runtime();
    let n = 20_000;
    let (dir, log) = filled(&rt, n);
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 gets (mmap, CRC checked)", |b| {
        let mut seq = 0u64;
        b.to_async(&rt).iter(|| {
            let log = &log;
            let start = seq;
            seq = (seq + 7919) % n;
            async move {
                for k in 0..1000 {
                    log.get((start + k * 13) % n).await.expect("get");
                }
            }
        })
    });
    group.throughput(Throughput::Elements(n));
    group.bench_function("stream 20k records", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = log.stream(StreamOptions::new());
            let mut bytes = 0;
            while let Some(r) = s.next().await {
                bytes += r.expect("record").1.len();
            }
            bytes
        })
    });
    rt.block_on(log.close()).expect("close");
    group.bench_function("open 20k records (every frame parsed and checked)", |b| {
        b.iter_batched(
            || (),
            |()| {
                let log =
                    FileLog::open_blocking(dir.path(), FileLogOptions::default()).expect("open");
                drop(log);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = append, read
}
criterion_main!(benches);
