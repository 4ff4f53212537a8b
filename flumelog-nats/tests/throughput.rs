//! A first append-throughput figure, on one node and on a three-node cluster (loopback).
//! Not run by default: `cargo test -p flumelog-nats --release --test throughput -- --ignored --nocapture`.
//! `FLUME_NATS_BENCH_APPENDS` (default 4000) sets the appends per measurement.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flume_core::{Log, StreamOptions};
use flumelog_nats::{NatsLog, Options};
use futures::StreamExt;

async fn measure(label: &str, log: NatsLog) {
    let n: u64 = std::env::var("FLUME_NATS_BENCH_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let record = Bytes::from(vec![b'x'; 100]);
    // One appender, one append at a time.
    let started = Instant::now();
    for _ in 0..n / 4 {
        log.append(record.clone()).await.unwrap();
    }
    let one = (n / 4) as f64 / started.elapsed().as_secs_f64();
    // 16 concurrent appenders (pipelined on one connection).
    let log = Arc::new(log);
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (log, record) = (Arc::clone(&log), record.clone());
            tokio::spawn(async move {
                for _ in 0..n / 16 {
                    log.append(record.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let concurrent = (n / 16 * 16) as f64 / started.elapsed().as_secs_f64();
    // Batches of 100.
    let started = Instant::now();
    for _ in 0..n / 100 {
        log.append_batch(vec![record.clone(); 100]).await.unwrap();
    }
    let batched = (n / 100 * 100) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let read = log.stream(StreamOptions::new()).count().await;
    let streamed = read as f64 / started.elapsed().as_secs_f64();
    println!(
        "{label}: 100-byte records/s: {one:.0} (1 appender), {concurrent:.0} (16 concurrent appenders), {batched:.0} (batches of 100); stream read {streamed:.0} records/s over {read}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn nats_server_append_throughput() {
    let Some(binary) = support::binary_or_skip("nats_server_append_throughput") else {
        return;
    };
    let single = support::Single::start(binary.clone());
    let log = NatsLog::connect(&single.url(), Options::new("bench"))
        .await
        .unwrap();
    measure("one node, R1", log).await;

    let cluster = support::Cluster::start(binary);
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        match NatsLog::connect(&cluster.urls(), Options::new("bench").replicas(3)).await {
            Ok(log) => break log,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    measure("three nodes, R3", log).await;
}
