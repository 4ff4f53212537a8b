//! A hand-written view that persists itself: the latest message of each author.
//!
//! A view is a struct that implements `flume_core::View`: a version, a reader, `apply`
//! for a batch of records and `reset`. To survive restarts it also implements `load` and
//! `checkpoint`, here with `flume_core::durable::StateFile`: one file holding the state
//! (as JSON), the view's version and the seq the state reflects, checksummed and
//! replaced atomically. A few lines each.
//!
//! The example runs two sessions on one directory. The first appends five messages;
//! the second reopens the database, the view loads its state instead of re-reading the
//! log, and only the one new message is applied.
//!
//! Run with `cargo run -p examples --example custom_view`. The view also passes the view
//! conformance suite (`examples/tests/custom_view_conformance.rs`, which is why its items
//! are `pub(crate)`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use flume_core::durable::StateFile;
use flume_core::{BoxError, Checkpoint, Flume, ReaderContext, Records, Seq, View, Wait, Waiter};
use flumelog_file::{FileLog, FileLogOptions};
use serde::{Deserialize, Serialize};

/// A chat message, stored in the log as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Message {
    /// Who wrote it.
    pub(crate) author: String,
    /// What they wrote.
    pub(crate) text: String,
}

/// The state: author -> (seq, their latest message).
pub(crate) type Latest = Arc<RwLock<BTreeMap<String, (Seq, Message)>>>;

/// The view.
pub(crate) struct LatestByAuthor {
    latest: Latest,
    file: StateFile,
    /// Records applied in this session (to show what loading saved).
    applied: Arc<AtomicU64>,
}

/// The view's version. Bump it whenever `apply` changes: a state file written by another
/// version is not loaded, and the view is rebuilt from the log.
pub(crate) const VERSION: u32 = 1;

impl LatestByAuthor {
    /// The view at `version` (normally [`VERSION`]), saving its state in `dir`.
    pub(crate) fn new(dir: &Path, version: u32, applied: Arc<AtomicU64>) -> Self {
        LatestByAuthor {
            latest: Latest::default(),
            file: StateFile::new(dir.join("latest.state"), version),
            applied,
        }
    }
}

/// What readers get: the shared map and a waiter that makes reads wait for catch-up.
#[derive(Clone)]
pub(crate) struct LatestReader {
    latest: Latest,
    waiter: Waiter,
}

impl LatestReader {
    /// The latest message of `author`, with its seq.
    ///
    /// `Waiter::read` waits as `wait` says, then runs the closure while the view cannot
    /// be reset (by a rebuild, a revert or a failure), so the read never sees a wiped map.
    pub(crate) async fn get(
        &self,
        author: &str,
        wait: Wait,
    ) -> flume_core::Result<Option<(Seq, Message)>> {
        self.waiter
            .read(wait, || {
                let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
                latest.get(author).cloned()
            })
            .await
    }

    /// Every author's latest message, with its seq.
    pub(crate) async fn all(
        &self,
        wait: Wait,
    ) -> flume_core::Result<BTreeMap<String, (Seq, Message)>> {
        self.waiter
            .read(wait, || {
                let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
                latest.clone()
            })
            .await
    }
}

impl View<Message> for LatestByAuthor {
    type Reader = LatestReader;

    fn version(&self) -> u32 {
        self.file.version()
    }

    fn reader(&self, ctx: ReaderContext<Message>) -> LatestReader {
        LatestReader {
            latest: Arc::clone(&self.latest),
            waiter: ctx.waiter,
        }
    }

    /// The saved state, or `None` (nothing saved, saved by another version, or a
    /// damaged file): the driver then builds the view from the start of the log.
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        let Some(saved) = self.file.load()? else {
            return Ok(None);
        };
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) =
            serde_json::from_slice(&saved.bytes)?;
        Ok(Some(saved.checkpoint()))
    }

    fn apply(&mut self, records: Records<'_, Message>) -> Result<(), BoxError> {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        for record in records {
            let message = record.value()?;
            latest.insert(message.author.clone(), (record.seq(), message.clone()));
            self.applied.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Saves the state as of `since` (the last record applied), atomically.
    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError> {
        let latest = self.latest.read().unwrap_or_else(|p| p.into_inner());
        self.file.save(since, &serde_json::to_vec(&*latest)?)?;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.latest
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.file.remove()?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join("flume-rs-custom-view-example");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?; // every run starts fresh
    }
    let sessions: [&[(&str, &str)]; 2] = [
        &[
            ("alice", "hello"),
            ("bob", "hi alice"),
            ("alice", "how are you?"),
            ("carol", "morning all"),
            ("bob", "fine, thanks"),
        ],
        &[("dave", "sorry I'm late")],
    ];
    for (session, messages) in (1..).zip(sessions) {
        println!("session {session}");
        let applied = Arc::new(AtomicU64::new(0));
        let log = FileLog::open(dir.join("log"), FileLogOptions::default()).await?;
        let view = LatestByAuthor::new(&dir.join("latest"), VERSION, Arc::clone(&applied));
        let db = Flume::<Message>::new(log).use_view("latest", view)?;
        let latest: LatestReader = db.view("latest")?;

        for (author, text) in messages {
            let seq = db
                .append(&Message {
                    author: author.to_string(),
                    text: text.to_string(),
                })
                .await?;
            println!("  appended #{seq} {author}: {text}");
        }
        for author in ["alice", "bob", "carol", "dave"] {
            match latest.get(author, Wait::Log).await? {
                Some((seq, m)) => println!("  latest of {author}: #{seq} {:?}", m.text),
                None => println!("  latest of {author}: nothing yet"),
            }
        }
        let authors = latest.all(Wait::Log).await?;
        println!("  authors with a message: {}", authors.len());
        // Closing checkpoints the view: the next session loads it.
        db.close().await?;
        println!(
            "  records the view applied in this session: {}",
            applied.load(Ordering::Relaxed)
        );
    }
    Ok(())
}
