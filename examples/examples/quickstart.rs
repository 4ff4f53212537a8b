//! Quickstart: an in-memory log, two reduce views, appends and reads.
//!
//! Run with `cargo run -p examples --example quickstart`.

use flume_core::{BoxError, Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader};
use serde::{Deserialize, Serialize};

/// One post in a tiny social feed, stored in the log as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    author: String,
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // One log, two views. `count` never decodes a record; `words` folds each post's word
    // count into a running total.
    let db = Flume::<Post>::new(MemoryLog::new())
        .use_view("count", Reduce::count(1))?
        .use_view(
            "words",
            Reduce::new(1, 0u64, |total: &mut u64, post: &Post| {
                *total += post.text.split_whitespace().count() as u64;
            }),
        )?;
    println!("opened a database with views {:?}", db.view_names());

    let posts = [
        ("alice", "hello flume"),
        ("bob", "an append-only log with streaming views"),
        (
            "alice",
            "views rebuild from the log whenever their version changes",
        ),
    ];
    for (author, text) in posts {
        let seq = db
            .append(&Post {
                author: author.into(),
                text: text.into(),
            })
            .await?;
        println!("appended #{seq} by {author}: {text:?}");
    }

    // Reads wait until the view has applied everything the log holds (Wait::Log).
    let count: ReduceReader<u64> = db.view("count")?;
    let words: ReduceReader<u64> = db.view("words")?;
    println!("count view: {} posts", count.get(Wait::Log).await?);
    println!("words view: {} words", words.get(Wait::Log).await?);

    // The log itself can be read back by seq.
    let first = db.get(0).await?;
    println!("post #0 is by {}: {:?}", first.author, first.text);

    // `ready()` waits until every view has caught up with the log; the status then
    // shows each view ready (the status watch is the thing to follow for progress bars).
    db.ready().await?;
    let status = db.status().borrow().clone();
    for (name, view) in &status.views {
        println!(
            "status: view {name} is {:?} at since {:?}",
            view.state, view.since
        );
    }
    db.close().await?;
    println!("closed");
    Ok(())
}
