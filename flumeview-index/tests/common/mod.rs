//! Helpers shared by the scenarios: an SSB-like message type and its indexes.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flumeview_index::{key, Index};
use serde::{Deserialize, Serialize};

/// What the tests return.
pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A message: its id, author, the author's sequence number, and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Msg {
    pub(crate) key: String,
    pub(crate) author: String,
    pub(crate) seq: u64,
    pub(crate) text: String,
}

pub(crate) fn msg(i: u64) -> Msg {
    Msg {
        key: format!("%{i:04}.sha256"),
        author: format!("@{}.ed25519", ["alice", "bob", "carol"][(i % 3) as usize]),
        seq: i / 3,
        text: format!("message {i}"),
    }
}

pub(crate) fn by_key() -> Index<Msg> {
    Index::new(1, |m: &Msg, e| e.put(key::string(&m.key)))
}

pub(crate) fn by_author() -> Index<Msg> {
    Index::new(1, |m: &Msg, e| e.put(key::tuple((&m.author, m.seq))))
}

/// An index by author that also counts, in `seen`, every record it maps.
pub(crate) fn counting_by_author(version: u32, seen: &Arc<AtomicU64>) -> Index<Msg> {
    let seen = Arc::clone(seen);
    Index::new(version, move |m: &Msg, e| {
        seen.fetch_add(1, Ordering::Relaxed);
        e.put(key::tuple((&m.author, m.seq)));
    })
}
