//! A real crash: a child process writing key-value records to a file log, with a
//! persisted view checkpointing and compacting as it goes, is killed with SIGKILL at a
//! random moment; the reopened view must equal one rebuilt from the log from scratch,
//! compared on every key's full history and on the live entries.
//!
//! The test binary re-executes itself: `sigkill_child` does the work when
//! `FLUMEVIEW_KV_SIGKILL_DIR` is set, and nothing otherwise. Three kills by default;
//! `FLUMEVIEW_KV_SIGKILL_ROUNDS` asks for more (each a little later than the last).

mod common_watch;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common_watch::{counting_kv, dump as dump_view, Dump, Rec, TestResult};
use flume_core::{Flume, Seq, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_kv::{KvReader, LsmOptions};

const CHILD_DIR: &str = "FLUMEVIEW_KV_SIGKILL_DIR";
const ROUNDS: &str = "FLUMEVIEW_KV_SIGKILL_ROUNDS";
const RECORDS: u64 = 20_000;
const KEYS: u64 = 300;

fn key(i: u64) -> String {
    format!("k{:03}", i.wrapping_mul(7919) % KEYS)
}

/// Record `i`: mostly sets, some removes, some moves (a delete and a put in one record).
fn rec(i: u64) -> Rec {
    match i % 13 {
        5 => Rec::Remove(key(i)),
        7 => Rec::Move(key(i), key(i + 1), i),
        _ => Rec::Set(key(i), i),
    }
}

fn options() -> LsmOptions {
    LsmOptions::default()
        .memtable_bytes(32 << 10)
        .merge_fan_in(2)
        .checkpoint_every(300, Duration::from_millis(5))
}

async fn open_log(dir: &Path) -> flume_core::Result<FileLog> {
    FileLog::open(dir.join("log"), FileLogOptions::default()).await
}

/// The child: appends every record in small batches, checkpointing and compacting as
/// it goes, until it is killed (or done).
#[test]
fn sigkill_child() -> TestResult {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return Ok(());
    };
    let dir = Path::new(&dir);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let seen = Arc::new(AtomicU64::new(0));
        let db = Flume::<Rec>::new(open_log(dir).await?).use_view(
            "kv",
            counting_kv(&seen)
                .options(options())
                .persist(dir.join("kv")),
        )?;
        let all: Vec<Rec> = (0..RECORDS).map(rec).collect();
        for chunk in all.chunks(50) {
            db.append_batch(chunk).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        db.close().await?;
        Ok(())
    })
}

/// Opens the log with the view (persisted in `kv_dir`, or in memory), and dumps it;
/// also returns the log's length and how many records the view mapped to catch up.
async fn dump(dir: &Path, kv_dir: Option<&Path>) -> flume_core::Result<(Dump, Option<Seq>, u64)> {
    let seen = Arc::new(AtomicU64::new(0));
    let view = match kv_dir {
        Some(d) => counting_kv(&seen).options(options()).persist(d),
        None => counting_kv(&seen).options(options()),
    };
    let db = Flume::<Rec>::new(open_log(dir).await?);
    let kv: KvReader<Rec, String, u64> = db.add_view("kv", view)?;
    // Caught up without reading a value (which maps a record too).
    kv.version(&key(0), Wait::Log).await?;
    let remapped = seen.load(Ordering::Relaxed);
    let found = dump_view(&kv, (0..KEYS).map(key)).await?;
    let since = db.since();
    db.close().await?;
    Ok((found, since, remapped))
}

fn rounds() -> u64 {
    std::env::var(ROUNDS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_writes_reopens_equal_to_a_rebuild() -> TestResult {
    let exe = std::env::current_exe()?;
    for round in 0..rounds() {
        // 0, 40, 150 ms after the first checkpoint, then on, wrapping at 400 ms.
        let delay_ms = [0, 40, 150]
            .get(round as usize)
            .copied()
            .unwrap_or(round * 37 % 400);
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(&exe)
            .args([
                "sigkill_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        // Kill once there is a checkpoint to recover, a little later each round.
        let manifest = dir.path().join("kv").join("MANIFEST");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !manifest.exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.kill()?;
        let status = child.wait()?;

        let (reopened, since, remapped) = dump(dir.path(), Some(&dir.path().join("kv"))).await?;
        let (rebuilt, since_again, mapped) = dump(dir.path(), None).await?;
        let records = since.map_or(0, |s| s + 1);
        eprintln!(
            "round {round}: killed after +{delay_ms} ms ({status}); the log held {records} \
             records; {remapped} mapped on reopen, {mapped} by the rebuild"
        );
        assert_eq!(since, since_again);
        assert!(records > 0, "round {round}: the child wrote nothing");
        assert_eq!(
            mapped, records,
            "round {round}: the rebuild maps every record"
        );
        assert!(remapped <= records, "round {round}");
        assert_eq!(reopened, rebuilt, "round {round}");
    }
    Ok(())
}
