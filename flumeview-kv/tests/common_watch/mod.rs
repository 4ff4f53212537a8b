//! Helpers of the watch and crash scenarios: a record type that touches one or two
//! keys, and the view over it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flumeview_kv::{Kv, KvEmit};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// What the tests return.
pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// An application record: the view maps it to key-value operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Rec {
    /// Sets a key.
    Set(String, u64),
    /// Removes a key.
    Remove(String),
    /// Moves a value: sets the second key and removes the first, in one record.
    Move(String, String, u64),
}

/// The map of the view: string keys, u64 values.
pub(crate) fn map(r: &Rec, e: &mut KvEmit<'_, String, u64>) {
    match r {
        Rec::Set(k, v) => e.put(k.clone(), *v),
        Rec::Remove(k) => e.delete(k.clone()),
        Rec::Move(from, to, v) => {
            e.delete(from.clone());
            e.put(to.clone(), *v);
        }
    }
}

/// The view.
pub(crate) fn kv() -> Kv<Rec, String, u64> {
    Kv::new(1, map)
}

/// The view, counting its map calls in `seen`.
pub(crate) fn counting_kv(seen: &Arc<AtomicU64>) -> Kv<Rec, String, u64> {
    let seen = Arc::clone(seen);
    Kv::new(1, move |r: &Rec, e: &mut KvEmit<'_, String, u64>| {
        seen.fetch_add(1, Ordering::Relaxed);
        map(r, e);
    })
}

pub(crate) fn set(k: &str, v: u64) -> Rec {
    Rec::Set(k.to_string(), v)
}

pub(crate) fn remove(k: &str) -> Rec {
    Rec::Remove(k.to_string())
}

/// The next item of a stream that must have one; a stream stalled for a minute fails
/// the test rather than hanging it (a guard, not a timing assertion).
pub(crate) async fn next<T>(stream: &mut BoxStream<'static, flume_core::Result<T>>) -> T {
    tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the stream stalled")
        .expect("the stream ended")
        .expect("the stream failed")
}

/// A key's history: (version, operation), newest first.
pub(crate) type KeyHistory = Vec<(flume_core::Seq, flumeview_kv::Op<u64>)>;

/// Everything a view answers about `keys`: each one's full history, and the live
/// entries of the whole view.
#[derive(Debug, PartialEq)]
pub(crate) struct Dump {
    pub(crate) histories: Vec<(String, KeyHistory)>,
    pub(crate) entries: Vec<(String, flumeview_kv::Versioned<u64>)>,
}

/// Dumps `kv` as of the log's end.
pub(crate) async fn dump(
    kv: &flumeview_kv::KvReader<Rec, String, u64>,
    keys: impl IntoIterator<Item = String>,
) -> flume_core::Result<Dump> {
    let mut histories = Vec::new();
    for k in keys {
        let history = kv.history(&k, flume_core::Wait::Log).await?;
        histories.push((k, history));
    }
    let entries = kv.all().entries(flume_core::Wait::Log).await?;
    Ok(Dump { histories, entries })
}
