//! 100 readers waiting on random seqs, registered in random order, all complete exactly once.
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;

use common::{Collect, CollectReader};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_readers_on_random_seqs_complete_exactly_once() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(3)
        .build()
        .use_view("v", Collect::new(1))
        .unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    let mut targets: Vec<(usize, u64)> = (0..100).map(|i| (i, rng.gen_range(0..200))).collect();
    targets.shuffle(&mut rng);
    let completed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (id, target) in targets.clone() {
        let reader = reader.clone();
        let completed = Arc::clone(&completed);
        tasks.push(tokio::spawn(async move {
            reader.get(Wait::AtLeast(target)).await.unwrap();
            let since = reader.since().unwrap();
            assert!(since >= target, "reader {id} woke at {since} < {target}");
            completed.lock().unwrap().push(id);
        }));
    }
    let writer = tokio::spawn({
        let db = db.clone();
        async move {
            for i in 0..200u64 {
                db.append(&i).await.unwrap();
                if i % 17 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    writer.await.unwrap();
    for task in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("a reader hung")
            .unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 100);
    let unique: HashSet<_> = completed.iter().collect();
    assert_eq!(unique.len(), 100, "a reader completed twice");
    db.close().await.unwrap();
}
