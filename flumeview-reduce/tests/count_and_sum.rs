//! The basic views: a count that never decodes, a sum, per-key counts, with snapshots.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::TestResult;
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    author: String,
    likes: u32,
}

fn post(author: &str, likes: u32) -> Post {
    Post {
        author: author.into(),
        likes,
    }
}

#[tokio::test]
async fn count_sum_and_per_author() -> TestResult {
    let db = Flume::<Post>::new(MemoryLog::new())
        .use_view("count", Reduce::count(1))?
        .use_view(
            "likes",
            Reduce::new(1, 0u64, |sum: &mut u64, p: &Post| {
                *sum += u64::from(p.likes)
            }),
        )?
        .use_view(
            "per_author",
            Reduce::filter_map(
                1,
                BTreeMap::<String, u32>::new(),
                |p: &Post| (p.likes > 0).then(|| (p.author.clone(), p.likes)),
                |per: &mut BTreeMap<String, u32>, (author, likes)| {
                    *per.entry(author).or_default() += likes
                },
            ),
        )?;

    let count: ReduceReader<u64> = db.view("count")?;
    assert_eq!(count.get(Wait::Log).await?, 0);
    assert_eq!(count.since(), None);

    db.append(&post("ada", 3)).await?;
    db.append_batch(&[post("bob", 0), post("ada", 2), post("cy", 7)])
        .await?;
    let last = db.append(&post("bob", 1)).await?;

    let likes: ReduceReader<u64> = db.view("likes")?;
    let per_author: ReduceReader<BTreeMap<String, u32>> = db.view("per_author")?;
    let outputs = serde_json::json!({
        "count": count.get(Wait::Log).await?,
        "likes": likes.get(Wait::Log).await?,
        "per_author": per_author.get(Wait::Log).await?,
        "authors": per_author.read(Wait::Log, |per| per.len()).await?,
        "since": per_author.since(),
    });
    assert_eq!(per_author.since(), Some(last));
    insta::assert_json_snapshot!(outputs);
    db.close().await?;
    Ok(())
}

/// Records that are not valid JSON at all: the count sees them (it never decodes), a view
/// that needs values fails, and the count is unaffected.
#[tokio::test]
async fn count_never_decodes() -> TestResult {
    let log: MemoryLog = ["not json", "{also not", "3"]
        .into_iter()
        .map(Bytes::from)
        .collect();
    let db = Flume::<i64>::new(log);
    let count = db.add_view("count", Reduce::count(1))?;
    let sum = db.add_view("sum", Reduce::new(1, 0i64, |s: &mut i64, v: &i64| *s += v))?;
    assert_eq!(count.get(Wait::Log).await?, 3);
    let err = sum
        .get(Wait::Log)
        .await
        .expect_err("the sum must decode and fail");
    assert!(
        matches!(err, flume_core::Error::ViewFailed { ref name, .. } if name == "sum"),
        "{err}"
    );
    // The count keeps going.
    db.append(&4).await?;
    assert_eq!(count.get(Wait::Log).await?, 4);
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn views_added_later_catch_up() -> TestResult {
    let db = Flume::<i64>::new(MemoryLog::new());
    for n in 1..=100 {
        db.append(&n).await?;
    }
    let sum = db.add_view("sum", Reduce::new(1, 0i64, |s: &mut i64, v: &i64| *s += v))?;
    assert_eq!(sum.get(Wait::Log).await?, 5050);
    assert_eq!(sum.since(), Some(99));
    assert_eq!(sum.get(Wait::AtLeast(99)).await?, 5050);
    db.close().await?;
    assert!(matches!(
        sum.get(Wait::NoWait).await,
        Err(flume_core::Error::Closed)
    ));
    Ok(())
}
