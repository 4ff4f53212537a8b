//! The view apply path: a count view (`Reduce::count`, never decodes) and a summing
//! view (decodes every record) catching up on 20k records through the driver.
//! Quick by design: `cargo bench -p flumeview-reduce`.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flume_core::{Flume, Json, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};

const N: u64 = 20_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn apply(c: &mut Criterion) {
    let rt = runtime();
    let log = MemoryLog::new();
    let db = rt.block_on(async {
        let db = Flume::builder(log.clone(), Json).build();
        let records: Vec<u64> = (0..N).collect();
        db.append_batch(&records).await.expect("append");
        db
    });
    let mut group = c.benchmark_group("view apply");
    group.throughput(Throughput::Elements(N));
    let mut made = 0;
    group.bench_function("count view catches up on 20k records", |b| {
        b.to_async(&rt).iter(|| {
            made += 1;
            let name = format!("count-{made}");
            let db = &db;
            async move {
                let count: ReduceReader<u64> = db.add_view(&name, Reduce::count(1)).expect("view");
                assert_eq!(count.get(Wait::AtLeast(N - 1)).await.expect("count"), N);
            }
        })
    });
    group.bench_function("summing view (decodes) catches up on 20k records", |b| {
        b.to_async(&rt).iter(|| {
            made += 1;
            let name = format!("sum-{made}");
            let db = &db;
            async move {
                let sum: ReduceReader<u64> = db
                    .add_view(&name, Reduce::new(1, 0u64, |s: &mut u64, v: &u64| *s += v))
                    .expect("view");
                sum.get(Wait::AtLeast(N - 1)).await.expect("sum")
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
    targets = apply
}
criterion_main!(benches);
