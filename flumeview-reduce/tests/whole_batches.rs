//! Readers never see a half-applied batch, and a failing reducer is reported, not hidden.

mod common;

use std::time::Duration;

use common::TestResult;
use flume_core::{BoxError, Error, Flume, Record, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::Reduce;
use futures::StreamExt;

/// The state lists every seq applied; a reader seeing half a batch would find a list
/// longer than `since + 1` or one that does not end at `since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_batches() -> TestResult {
    let db = Flume::<u32>::new(MemoryLog::new());
    let seqs = db.add_view(
        "seqs",
        Reduce::from_records(
            1,
            Vec::<u64>::new(),
            |seqs: &mut Vec<u64>, record: &Record<'_, u32>| -> Result<(), BoxError> {
                seqs.push(record.seq());
                if seqs.len().is_multiple_of(64) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            },
        ),
    )?;
    let checker = {
        let mut changes = seqs.changes();
        tokio::spawn(async move {
            let mut checked = 0u32;
            while let Some((since, state)) = changes.next().await {
                assert_eq!(state.len() as u64, since.map_or(0, |s| s + 1));
                assert_eq!(state.last().copied(), since);
                checked += 1;
            }
            checked
        })
    };
    for _ in 0..5 {
        let batch: Vec<u32> = (0..1000).collect();
        db.append_batch(&batch).await?;
    }
    let all = seqs.get(Wait::Log).await?;
    assert_eq!(all, (0..5000).collect::<Vec<u64>>());
    db.close().await?;
    assert!(checker.await? >= 1);
    Ok(())
}

#[tokio::test]
async fn a_failing_reducer_fails_the_view_only() -> TestResult {
    let db = Flume::<i64>::new(MemoryLog::new());
    let picky = db.add_view(
        "picky",
        Reduce::from_records(
            1,
            0i64,
            |sum: &mut i64, record: &Record<'_, i64>| -> Result<(), BoxError> {
                let value = *record.value()?;
                if value == 13 {
                    return Err("13 is unlucky".into());
                }
                *sum += value;
                Ok(())
            },
        ),
    )?;
    let count = db.add_view("count", Reduce::count(1))?;
    for n in 10..15 {
        db.append(&n).await?;
    }
    assert_eq!(count.get(Wait::Log).await?, 5);
    let err = picky.get(Wait::Log).await.expect_err("13 fails the view");
    match err {
        Error::ViewFailed { name, source } => {
            assert_eq!(name, "picky");
            assert!(source.to_string().contains("unlucky"), "{source}");
        }
        other => return Err(format!("expected ViewFailed, got {other}").into()),
    }
    db.close().await?;
    Ok(())
}
