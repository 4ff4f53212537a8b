//! The view conformance suite (`flume_core::testing`) run against the hand-written view
//! of `examples/custom_view.rs`: what holds for the built-in views holds for a view a
//! user writes in a few dozen lines with `Waiter::read` and `durable::StateFile`.

#[path = "../examples/custom_view.rs"]
#[allow(dead_code)] // the example's `main`
mod custom_view;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use custom_view::{LatestByAuthor, LatestReader, Message};
use flume_core::testing::ViewUnderTest;
use flume_core::{Result, Seq, Wait};
use flumelog_memory::MemoryLog;

/// The latest message of each of three authors.
struct Latest;

impl ViewUnderTest for Latest {
    type Value = Message;
    type View = LatestByAuthor;
    type State = BTreeMap<String, (Seq, Message)>;
    type Log = MemoryLog;

    fn value(&self, i: Seq) -> Message {
        Message {
            author: format!("author-{}", i % 3),
            text: format!("message {i}"),
        }
    }

    fn view(&self, dir: &Path, version: u32) -> LatestByAuthor {
        LatestByAuthor::new(dir, version, Arc::new(AtomicU64::new(0)))
    }

    async fn read(&self, reader: &LatestReader, wait: Wait) -> Result<Self::State> {
        reader.all(wait).await
    }

    fn model(&self, values: &[Message]) -> Self::State {
        let mut latest = BTreeMap::new();
        for (seq, m) in (0..).zip(values) {
            latest.insert(m.author.clone(), (seq, m.clone()));
        }
        latest
    }

    async fn log(&self, records: Vec<Bytes>) -> MemoryLog {
        records.into_iter().collect()
    }
}

flume_core::view_conformance_tests!(latest_by_author => Latest);
