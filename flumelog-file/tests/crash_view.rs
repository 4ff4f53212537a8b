//! A persisted reduce view resumed after a SIGKILL equals one rebuilt from scratch.
//!
//! The child (this test binary re-executed with `FLUME_CRASH_VIEW_DIR` set) runs a
//! `Flume` over a `FileLog` with a persisted, order-sensitive fold view that checkpoints
//! often, and appends synced singles and batches until the parent kills it. The parent
//! then opens the database with the persisted view (which resumes from its checkpoint,
//! or resets if the checkpoint is ahead of the recovered log) next to a fresh copy of the
//! same view, and compares their states. `FLUME_CRASH_CYCLES` sets the number of cycles
//! (default here: 20).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use flume_core::{BoxError, Durability, Flume, Log, Raw, Record, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_reduce::Reduce;
use rand::Rng;

const CHILD_ENV: &str = "FLUME_CRASH_VIEW_DIR";

/// An order- and content-sensitive fold (FNV-1a over seq and bytes).
fn fold_view() -> Reduce<Bytes, u64> {
    Reduce::from_records(
        1,
        0xcbf2_9ce4_8422_2325,
        |h: &mut u64, r: &Record<'_, Bytes>| -> Result<(), BoxError> {
            for b in r.seq().to_le_bytes().iter().chain(r.bytes().iter()) {
                *h = (*h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
            Ok(())
        },
    )
}

fn persisted(dir: &Path) -> Reduce<Bytes, u64> {
    fold_view()
        .persist(dir.join("view"))
        .checkpoint_every(25, Duration::from_millis(5))
}

#[test]
fn crash_view_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = FileLog::open(dir.join("log"), FileLogOptions::default())
            .await
            .unwrap();
        let db = Flume::<Bytes>::builder(log.clone(), Raw).build();
        let _view = db.add_view("fold", persisted(&dir)).unwrap();
        for n in 0u64.. {
            let k = 1 + n % 3;
            let batch: Vec<Bytes> = (0..k).map(|i| Bytes::from(format!("{n}/{i}"))).collect();
            log.append_batch_with(batch, Some(Durability::Synced))
                .await
                .unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_view_equals_a_rebuilt_one_after_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var("FLUME_CRASH_CHILD_DIR").is_ok() {
        return;
    }
    let cycles: u64 = std::env::var("FLUME_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut resumed_nonempty = 0;
    for _ in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_view_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..120)));
        child.kill().unwrap();
        child.wait().unwrap();

        let log = FileLog::open(dir.path().join("log"), FileLogOptions::default())
            .await
            .unwrap();
        let db = Flume::<Bytes>::builder(log, Raw).build();
        let resumed = db.add_view("resumed", persisted(dir.path())).unwrap();
        let scratch = db.add_view("scratch", fold_view()).unwrap();
        let a = tokio::time::timeout(Duration::from_secs(60), resumed.get(Wait::Log))
            .await
            .expect("the resumed view caught up")
            .unwrap();
        let b = tokio::time::timeout(Duration::from_secs(60), scratch.get(Wait::Log))
            .await
            .expect("the rebuilt view caught up")
            .unwrap();
        assert_eq!(a, b, "resumed view state != rebuilt view state");
        assert_eq!(resumed.since(), scratch.since());
        if resumed.since().is_some() {
            resumed_nonempty += 1;
        }
        db.close().await.unwrap();
    }
    assert!(resumed_nonempty > 0, "the child never got to append");
    assert!(
        dir.path().join("view").join("reduce.state").exists(),
        "the view was persisted"
    );
}
