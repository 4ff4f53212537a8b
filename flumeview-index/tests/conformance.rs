//! The view conformance suite (`flume_core::testing`) run against `Index`: every record
//! under its author (a key with many seqs) and under `(author, n)` (a key of its own),
//! with memtables small enough that applying flushes runs between checkpoints.

use std::path::Path;

use bytes::Bytes;
use flume_core::testing::ViewUnderTest;
use flume_core::{Result, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, Hit, Index, IndexReader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    author: String,
    n: u64,
}

/// The keys the index emits for a post.
fn keys(post: &Post) -> [Vec<u8>; 2] {
    [
        key::string(&post.author).to_vec(),
        key::tuple((&post.author, post.n)),
    ]
}

struct ByAuthor;

impl ViewUnderTest for ByAuthor {
    type Value = Post;
    type View = Index<Post>;
    type State = Vec<Hit>;
    type Log = MemoryLog;

    fn value(&self, i: Seq) -> Post {
        Post {
            author: format!("@{}", ["alice", "bob", "carol"][(i % 3) as usize]),
            n: i / 3,
        }
    }

    fn view(&self, dir: &Path, version: u32) -> Index<Post> {
        Index::new(version, |post: &Post, emit| {
            for key in keys(post) {
                emit.put(key);
            }
        })
        .persist(dir)
        .options(
            flumeview_index::IndexOptions::default()
                .memtable_bytes(1 << 10)
                .merge_fan_in(2),
        )
    }

    async fn read(&self, reader: &IndexReader<Post>, wait: Wait) -> Result<Vec<Hit>> {
        reader.all().hits(wait).await
    }

    fn model(&self, values: &[Post]) -> Vec<Hit> {
        let mut hits: Vec<Hit> = values
            .iter()
            .zip(0..)
            .flat_map(|(post, seq)| keys(post).map(|key| Hit { key, seq }))
            .collect();
        hits.sort();
        hits
    }

    async fn log(&self, records: Vec<Bytes>) -> MemoryLog {
        records.into_iter().collect()
    }
}

flume_core::view_conformance_tests!(ByAuthor);
