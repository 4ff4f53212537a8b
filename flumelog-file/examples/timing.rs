//! A rough single-run timing of `FileLog` appends (not a benchmark harness):
//!
//! ```text
//! cargo run --release -p flumelog-file --example timing [dir]
//! ```
//!
//! - W1: 1,000,000 buffered appends of 250-byte records, one call each, awaiting each;
//! - synced appends, 5000 in total, from 1 and from 16 concurrent writers.
//!
//! Without a directory argument it uses a temporary directory (often on the same disk
//! as `/tmp`).

use std::time::Instant;

use bytes::Bytes;
use flume_core::Log;
use flumelog_file::{Durability, FileLog, FileLogOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> flume_core::Result<()> {
    let base = match std::env::args().nth(1) {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let record = Bytes::from(vec![b'x'; 250]);

    let log = FileLog::open(base.path().join("w1"), FileLogOptions::default()).await?;
    let n = 1_000_000u64;
    let started = Instant::now();
    for _ in 0..n {
        log.append(record.clone()).await?;
    }
    let appended = started.elapsed();
    log.sync().await?;
    let synced = started.elapsed();
    println!(
        "W1 buffered: {n} appends in {:.3} s ({:.0} appends/s; {:.3} s including the final sync)",
        appended.as_secs_f64(),
        n as f64 / appended.as_secs_f64(),
        synced.as_secs_f64()
    );
    log.close().await?;

    let started = Instant::now();
    let log = FileLog::open(base.path().join("w1"), FileLogOptions::default()).await?;
    println!(
        "reopen of the W1 log (scan + verify): {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for seq in (0..n).step_by(7) {
        log.get(seq).await?;
    }
    println!(
        "get of {} records: {:.3} s",
        n / 7,
        started.elapsed().as_secs_f64()
    );
    log.close().await?;

    for writers in [1u64, 16] {
        let options = FileLogOptions::default().durability(Durability::Synced);
        let log = FileLog::open(base.path().join(format!("synced-{writers}")), options).await?;
        let total = 5000u64;
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let log = log.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    for _ in 0..total / writers {
                        log.append(record.clone()).await?;
                    }
                    Ok::<_, flume_core::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task")?;
        }
        let elapsed = started.elapsed();
        println!(
            "synced, {writers} writer(s): {total} appends in {:.3} s ({:.0} appends/s)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
        log.close().await?;
    }
    Ok(())
}
