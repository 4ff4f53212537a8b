//! A persistent database: a file log and a persisted reduce view.
//!
//! Run it twice:
//!
//! ```sh
//! cargo run -p examples --example file_log            # creates the database
//! cargo run -p examples --example file_log            # resumes it
//! cargo run -p examples --example file_log -- --fresh # starts over
//! ```
//!
//! Each run appends five posts. The `count` view persists its state with its `since`, so
//! the second run applies only the five new records instead of the whole log. At the end
//! the example simulates a crash in the middle of a write (it appends half a record to
//! the last segment) and reopens the log, which cuts the torn tail and says so.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flume_core::{BoxError, Flume, Log, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_reduce::{Reduce, ReduceReader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    author: String,
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join("flume-rs-file-log-example");
    if std::env::args().any(|a| a == "--fresh") && dir.exists() {
        std::fs::remove_dir_all(&dir)?;
        println!("removed {}", dir.display());
    }
    let log_dir = dir.join("log");
    let log = FileLog::open(&log_dir, FileLogOptions::default()).await?;
    println!(
        "opened {} holding {} records",
        log_dir.display(),
        log.since().borrow().map_or(0, |s| s + 1)
    );

    // A count view that also counts how many records it applied in this run.
    let applied = Arc::new(AtomicU64::new(0));
    let count = Reduce::from_records(1, 0u64, {
        let applied = Arc::clone(&applied);
        move |count: &mut u64, _record| {
            applied.fetch_add(1, Ordering::Relaxed);
            *count += 1;
            Ok(())
        }
    })
    .persist(dir.join("views").join("count"));

    let db = Flume::<Post>::new(log).use_view("count", count)?;
    let reader: ReduceReader<u64> = db.view("count")?;

    let first = db.since().map_or(0, |s| s + 1);
    for i in 0..5 {
        db.append(&Post {
            author: format!("@author{}", i % 2),
            text: format!("post number {}", first + i),
        })
        .await?;
    }
    let total = reader.get(Wait::Log).await?;
    println!(
        "count view: {total} records in the log; it applied {} of them in this run",
        applied.load(Ordering::Relaxed)
    );
    if total > 5 {
        println!("(it resumed from its persisted since instead of reprocessing the log)");
    }
    db.close().await?;

    simulate_torn_write(&log_dir)?;
    let log = FileLog::open(&log_dir, FileLogOptions::default()).await?;
    match log.recovery() {
        Some(report) => println!(
            "after a simulated crash: cut {} bytes ({} partial record) at byte {} of {}",
            report.bytes_dropped,
            report.records_dropped,
            report.offset,
            report.segment.display()
        ),
        None => println!("after a simulated crash: nothing to cut"),
    }
    println!(
        "the log still holds all {} acknowledged records",
        log.since().borrow().map_or(0, |s| s + 1)
    );
    log.close().await?;
    Ok(())
}

/// Appends the first half of a record frame to the newest segment, as a process killed
/// in the middle of a write would leave it.
fn simulate_torn_write(log_dir: &std::path::Path) -> std::io::Result<()> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(log_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    if let Some(last) = segments.last() {
        let mut file = std::fs::OpenOptions::new().append(true).open(last)?;
        // A length word announcing 200 bytes, a checksum, and only 6 bytes of payload.
        file.write_all(&200u32.to_le_bytes())?;
        file.write_all(&[0xAB; 4])?;
        file.write_all(b"{\"auth")?;
    }
    Ok(())
}
