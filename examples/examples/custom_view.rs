//! A hand-written view: the latest message of each author.
//!
//! A view is a struct that implements `flume_core::View`: a version, a reader, `apply`
//! for a batch of records and `reset`. This one keeps its state in memory, so it rebuilds
//! from the log at every start; see `flumeview-reduce` for a view that persists itself.
//!
//! Run with `cargo run -p examples --example custom_view`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use flume_core::{BoxError, Flume, ReaderContext, Records, Seq, View, Wait, Waiter};
use flumelog_memory::MemoryLog;
use serde::{Deserialize, Serialize};

/// A chat message, stored in the log as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    author: String,
    text: String,
}

type Latest = Arc<RwLock<HashMap<String, (Seq, Message)>>>;

/// The view: author -> (seq, their latest message).
#[derive(Default)]
struct LatestByAuthor {
    latest: Latest,
}

/// What readers get: the shared map and a waiter that makes reads wait for catch-up.
#[derive(Clone)]
struct LatestReader {
    latest: Latest,
    waiter: Waiter,
}

impl LatestReader {
    /// The latest message of `author`, with its seq.
    ///
    /// `Waiter::read` waits as `wait` says, then runs the closure while the view cannot
    /// be reset (by a rebuild, a revert or a failure), so the read never sees a wiped map.
    async fn get(&self, author: &str, wait: Wait) -> flume_core::Result<Option<(Seq, Message)>> {
        self.waiter
            .read(wait, || {
                let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
                latest.get(author).cloned()
            })
            .await
    }
}

impl View<Message> for LatestByAuthor {
    type Reader = LatestReader;

    fn version(&self) -> u32 {
        1
    }

    fn reader(&self, ctx: ReaderContext<Message>) -> LatestReader {
        LatestReader {
            latest: Arc::clone(&self.latest),
            waiter: ctx.waiter,
        }
    }

    fn apply(&mut self, records: Records<'_, Message>) -> Result<(), BoxError> {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        for record in records {
            let message = record.value()?;
            latest.insert(message.author.clone(), (record.seq(), message.clone()));
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.latest
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let db =
        Flume::<Message>::new(MemoryLog::new()).use_view("latest", LatestByAuthor::default())?;
    let latest: LatestReader = db.view("latest")?;

    for (author, text) in [
        ("alice", "hello"),
        ("bob", "hi alice"),
        ("alice", "how are you?"),
        ("carol", "morning all"),
        ("bob", "fine, thanks"),
    ] {
        let seq = db
            .append(&Message {
                author: author.into(),
                text: text.into(),
            })
            .await?;
        println!("appended #{seq} {author}: {text}");
    }

    for author in ["alice", "bob", "carol", "dave"] {
        match latest.get(author, Wait::Log).await? {
            Some((seq, m)) => println!("latest of {author}: #{seq} {:?}", m.text),
            None => println!("latest of {author}: nothing yet"),
        }
    }
    db.close().await?;
    Ok(())
}
