//! A view added to a running database whose `load` is slow (a large state to read)
//! holds back neither the scan nor the other views; its own reads wait for the load.
mod held;

use flume_core::{Flume, ViewState, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};
use held::{within, Held, HeldReader, Hold, ReleaseOnDrop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_views_answer_reads_while_one_view_loads() {
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("count", Reduce::count(1))
        .unwrap();
    let count: ReduceReader<u64> = db.view("count").unwrap();
    db.append_batch(&[0, 1, 2]).await.unwrap();
    assert_eq!(count.get(Wait::Log).await.unwrap(), 3);

    // A view whose stored state holds the 3 records, and whose load takes its time.
    let hold = Hold::new();
    let _release = ReleaseOnDrop(hold.clone());
    let slow: HeldReader = db
        .add_view("slow", Held::new().holding_load(&hold, 3))
        .unwrap();
    assert_eq!(hold.entered().await, None);
    let early = tokio::spawn({
        let slow = slow.clone();
        async move { slow.count(Wait::NoWait).await }
    });

    for i in 3..23u64 {
        db.append(&i).await.unwrap();
        let n = within("a read of the other view", count.get(Wait::Log)).await;
        assert_eq!(n.unwrap(), i + 1);
    }
    // All of that while the load was still held: the slow view's reads still wait.
    assert!(!hold.is_released());
    assert!(
        !early.is_finished(),
        "a read answered before the view loaded"
    );
    assert_eq!(db.status().borrow().views["slow"].state, ViewState::Loading);

    hold.release();
    // The early read answers from the loaded state (or later), never from the empty one.
    let early = within("the early read", early).await.unwrap().unwrap();
    assert!((3..=23).contains(&early), "the early read saw {early}");
    let n = within("the slow view catching up", slow.count(Wait::Log)).await;
    assert_eq!(n.unwrap(), 23);
    db.ready().await.unwrap();
    db.close().await.unwrap();
}
