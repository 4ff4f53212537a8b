//! Filtered records reach no reducer but still advance the view's `since`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::TestResult;
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::Reduce;

#[tokio::test]
async fn filter_skips_values_but_not_seqs() -> TestResult {
    let db = Flume::<i64>::new(MemoryLog::new());
    let reduced = Arc::new(AtomicU64::new(0));
    let even_sum = db.add_view("even_sum", {
        let reduced = Arc::clone(&reduced);
        Reduce::new(1, 0i64, move |s: &mut i64, v: &i64| {
            reduced.fetch_add(1, Ordering::Relaxed);
            *s += v;
        })
        .filter(|v| v % 2 == 0)
    })?;
    let big_even_count = db.add_view(
        "big_even_count",
        Reduce::count(1)
            .filter(|v: &i64| v % 2 == 0)
            .filter(|v| *v > 5),
    )?;

    for n in 1..=10 {
        db.append(&n).await?;
    }
    assert_eq!(even_sum.get(Wait::Log).await?, 2 + 4 + 6 + 8 + 10);
    assert_eq!(reduced.load(Ordering::Relaxed), 5);
    assert_eq!(big_even_count.get(Wait::Log).await?, 3);

    // Only odd values now: nothing reaches the reducers, yet `since` follows the log
    // and reads waiting for those records complete.
    let last = db.append_batch(&[11, 13, 15]).await?.end - 1;
    assert_eq!(even_sum.get(Wait::AtLeast(last)).await?, 30);
    assert_eq!(even_sum.since(), Some(last));
    assert_eq!(big_even_count.get(Wait::Log).await?, 3);
    assert_eq!(big_even_count.since(), Some(last));
    assert_eq!(reduced.load(Ordering::Relaxed), 5);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn filter_map_none_still_advances() -> TestResult {
    let db = Flume::<String>::new(MemoryLog::new());
    let lengths = db.add_view(
        "lengths",
        Reduce::filter_map(
            1,
            Vec::<usize>::new(),
            |s: &String| (!s.is_empty()).then_some(s.len()),
            |all: &mut Vec<usize>, len| all.push(len),
        ),
    )?;
    db.append(&"abc".to_string()).await?;
    db.append(&String::new()).await?;
    let last = db.append(&String::new()).await?;
    assert_eq!(lengths.get(Wait::Log).await?, vec![3]);
    assert_eq!(lengths.since(), Some(last));
    db.close().await?;
    Ok(())
}
