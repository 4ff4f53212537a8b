//! What to do when a log is damaged: the error, the repair, and the views coming back.
//!
//! ```sh
//! cargo run -p examples --example recovery
//! ```
//!
//! The example builds a small database (a file log in small segments and a persisted
//! count view), closes it, and flips one byte in the middle of an older segment, as a
//! failing disk might. Opening then fails with `Corrupt`, naming the file and offset and
//! saying what to do; `FileLog::repair` keeps every record before the damage, moves the
//! damaged files aside (nothing is deleted) and reports what it did. The reopened
//! database's count view, persisted ahead of the repaired log, notices and rebuilds;
//! `Flume::ready` waits for that while a follower of the view's changes reports when it
//! has caught up.

use std::path::{Path, PathBuf};

use flume_core::{BoxError, Error, Flume, Live, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_reduce::{Reduce, ReduceReader};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile_dir()?;
    let log_dir = dir.join("log");
    let view_dir = dir.join("views").join("count");
    let options = FileLogOptions::default().segment_size(2 << 10);

    // 1. A database with 300 records, spread over several small segments.
    let db = open(&log_dir, &view_dir, &options).await?;
    // (A batch never spans two segments, so append in batches of ten.)
    for batch in 0..30 {
        let records: Vec<String> = (0..10)
            .map(|i| format!("record number {}", batch * 10 + i))
            .collect();
        db.append_batch(&records).await?;
    }
    db.ready().await?;
    let count: ReduceReader<u64> = db.view("count")?;
    println!("wrote {} records", count.get(Wait::Log).await?);
    db.close().await?;

    // 2. Damage: one flipped byte in the middle of the second segment.
    let segments = segment_files(&log_dir)?;
    println!("the log has {} segment files", segments.len());
    let damaged = &segments[1];
    flip_byte_in_the_middle(damaged)?;
    println!("flipped a byte in {}", file_name(damaged));

    // 3. Opening refuses, and says where and what to do.
    match FileLog::open(&log_dir, options.clone()).await {
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) => {
            println!(
                "open failed: {} at byte {offset}: {reason}",
                file_name(&path)
            )
        }
        Err(other) => return Err(other.into()),
        Ok(_) => return Err("a damaged log opened".into()),
    }

    // 4. Repair keeps the longest intact prefix and reports what it did.
    let report = FileLog::repair(&log_dir, &options)?.ok_or("repair found nothing")?;
    println!(
        "repair: kept seqs 0..{}, cut {} bytes of {} at byte {}",
        report.first_dropped_seq,
        report.bytes_dropped,
        file_name(&report.segment),
        report.offset
    );
    for moved in &report.quarantined {
        println!(
            "  moved aside ({}): {}",
            moved.why,
            file_name(&moved.moved_to)
        );
    }

    // 5. The database opens again; the count view was persisted at seq 299, ahead of the
    //    repaired log, so it is wiped and rebuilt from what the log holds.
    let db = open(&log_dir, &view_dir, &options).await?;
    let count: ReduceReader<u64> = db.view("count")?;
    let mut changes = count.follow();
    db.ready().await?;
    while let Some(change) = changes.next().await {
        if let Live::Synced = change {
            break;
        }
    }
    let status = db.status().borrow().clone();
    let view = &status.views["count"];
    println!(
        "reopened: the log holds {} records; the count view is {:?} at since {:?} and counts {}",
        db.since().map_or(0, |s| s + 1),
        view.state,
        view.since,
        count.get(Wait::Log).await?
    );
    db.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The database: a file log and a persisted count view.
async fn open(
    log_dir: &Path,
    view_dir: &Path,
    options: &FileLogOptions,
) -> Result<Flume<String>, BoxError> {
    let log = FileLog::open(log_dir, options.clone()).await?;
    Ok(Flume::<String>::new(log).use_view("count", Reduce::count(1).persist(view_dir))?)
}

/// The log's segment files, oldest first.
fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    Ok(segments)
}

fn flip_byte_in_the_middle(path: &Path) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("flume-rs-recovery-example-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
