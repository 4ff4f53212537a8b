//! Append throughput, and append latency under contention, on one node and on a
//! three-node cluster (loopback). Not run by default:
//! `cargo test -p flumelog-nats --release --test throughput -- --ignored --nocapture`.
//! `FLUME_NATS_BENCH_APPENDS` (default 4000) sets the appends per measurement.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flume_core::{Log, StreamOptions};
use flumelog_nats::{NatsLog, NatsOptions};
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
    let binary = support::server_binary("nats_server_append_throughput");
    let single = support::Single::start(binary.clone());
    let log = NatsLog::connect(&single.url(), NatsOptions::new("bench"))
        .await
        .unwrap();
    measure("one node, R1", log).await;

    let cluster = support::Cluster::start(binary);
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        match NatsLog::connect(&cluster.urls(), NatsOptions::new("bench").replicas(3)).await {
            Ok(log) => break log,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    measure("three nodes, R3", log).await;
}

/// Append latency with 1, 2 and 4 writers contending for one stream: each writer is a
/// handle of its own (its own connection, as another process would be) running 4 tasks
/// that append 100-byte records one after the other. Prints p50/p99/max per writer count.
async fn contended(label: &str, url: &str, replicas: usize) {
    let n: usize = std::env::var("FLUME_NATS_BENCH_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let record = Bytes::from(vec![b'x'; 100]);
    for writers in [1usize, 2, 4] {
        let stream = format!("contend{writers}");
        let mut logs = Vec::new();
        for _ in 0..writers {
            let options = NatsOptions::new(stream.as_str()).replicas(replicas);
            logs.push(NatsLog::connect(url, options).await.unwrap());
        }
        let per_task = n / writers / 4;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for log in &logs {
            for _ in 0..4 {
                let (log, record) = (log.clone(), record.clone());
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_task);
                    let mut errors = 0usize;
                    for _ in 0..per_task {
                        let t = Instant::now();
                        if let Err(e) = log.append(record.clone()).await {
                            if errors == 0 {
                                eprintln!("error: {e}");
                            }
                            errors += 1;
                        }
                        latencies.push(t.elapsed());
                    }
                    (latencies, errors)
                }));
            }
        }
        let mut latencies = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            latencies.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "{label}: {writers} writer(s) x 4 tasks, {} appends: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} appends/s, {errors} errors",
            latencies.len(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            latencies.len() as f64 / elapsed.as_secs_f64()
        );
        for log in logs {
            log.close().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn nats_server_contended_append_latency() {
    let binary = support::server_binary("nats_server_contended_append_latency");
    let single = support::Single::start(binary.clone());
    contended("one node, R1", &single.url(), 1).await;
    drop(single);

    let cluster = support::Cluster::start(binary);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match NatsLog::connect(&cluster.urls(), NatsOptions::new("warmup").replicas(3)).await {
            Ok(log) => break log.close().await.unwrap(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    contended("three nodes, R3", &cluster.urls(), 3).await;
}
