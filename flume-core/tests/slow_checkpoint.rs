//! One view's slow checkpoint (an index merging runs and fsyncing) holds back neither
//! the scan nor the other views nor their readers; `close` still waits for it.
mod held;

use std::sync::{Arc, Mutex};

use flume_core::{Flume, ViewState, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};

use held::{within, Held, HeldReader, Hold, Log, ReleaseOnDrop};

/// A database with a view whose checkpoints wait for `hold`'s release ("slow", with its
/// log) and a count; the guard releases the hold when the test ends, however it ends.
fn slow_and_count() -> (Hold, ReleaseOnDrop, Arc<Mutex<Log>>, Flume<u64>) {
    let hold = Hold::new();
    let release = ReleaseOnDrop(hold.clone());
    let slow = Held::new().holding_checkpoint(&hold);
    let slow_log = slow.log();
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("slow", slow)
        .unwrap()
        .use_view("count", Reduce::count(1))
        .unwrap();
    (hold, release, slow_log, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_views_answer_reads_while_one_view_checkpoints() {
    let (hold, _release, slow_log, db) = slow_and_count();
    let count: ReduceReader<u64> = db.view("count").unwrap();
    let slow_reader: HeldReader = db.view("slow").unwrap();

    // The slow view applies record 0, then checkpoints it, and stays in that checkpoint.
    assert_eq!(db.append(&0).await.unwrap(), 0);
    assert_eq!(hold.entered().await, Some(0));

    // Meanwhile the other view follows every append, one at a time...
    for i in 1..=50u64 {
        db.append(&i).await.unwrap();
        let n = within("a read of the other view", count.get(Wait::Log)).await;
        assert_eq!(n.unwrap(), i + 1);
    }
    // ... and more records than the busy view may hold back, in one go: the scan leaves
    // the busy view behind and comes back for it later.
    let many: Vec<u64> = (0..100_000).collect();
    db.append_batch(&many).await.unwrap();
    let n = within("a read of the other view", count.get(Wait::Log)).await;
    assert_eq!(n.unwrap(), 100_051);
    let status = db.status().borrow().clone();
    assert_eq!(status.views["count"].state, ViewState::Ready);
    assert_eq!(status.views["count"].since, Some(100_050));
    // All of that while the checkpoint was still held.
    assert!(!hold.is_released());
    assert_eq!(slow_log.lock().unwrap().checkpoints, Vec::<u64>::new());
    assert_eq!(
        slow_log.lock().unwrap().applied,
        1,
        "applied during its checkpoint"
    );

    // Released, the slow view finishes its checkpoint and catches up with everything.
    hold.release();
    let n = within("the slow view catching up", slow_reader.count(Wait::Log)).await;
    assert_eq!(n.unwrap(), 100_051);
    assert_eq!(slow_log.lock().unwrap().checkpoints.first(), Some(&0));
    db.close().await.unwrap();
    // Close checkpointed the slow view where it stands.
    assert_eq!(slow_log.lock().unwrap().checkpoints.last(), Some(&100_050));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_checkpoint_in_progress() {
    let (hold, _release, slow_log, db) = slow_and_count();
    db.append(&0).await.unwrap();
    assert_eq!(hold.entered().await, Some(0));

    let close = tokio::spawn({
        let db = db.clone();
        async move { db.close().await }
    });
    // However long we wait, close does not return while the checkpoint is held.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!close.is_finished(), "close returned during a checkpoint");
    assert_eq!(slow_log.lock().unwrap().checkpoints, Vec::<u64>::new());

    hold.release();
    within("close", close).await.unwrap().unwrap();
    // The held checkpoint finished before close returned; there was nothing more to save.
    assert_eq!(slow_log.lock().unwrap().checkpoints, vec![0]);
    assert_eq!(db.status().borrow().views["slow"].state, ViewState::Closed);
}
