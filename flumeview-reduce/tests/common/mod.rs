//! Helpers shared by the scenarios: reopening a memory log, counting `apply` calls.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use flume_core::{BoxError, Log, Record, StreamOptions};
use flumelog_memory::MemoryLog;
use futures::TryStreamExt;

/// What the tests return.
pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A new memory log holding the same records as `log`: what reopening a durable log gives.
/// Call it before closing `log` (a closed memory log answers nothing).
pub(crate) async fn reopen<L: Log + ?Sized>(log: &L) -> flume_core::Result<MemoryLog> {
    let records: Vec<(u64, Bytes)> = log.stream(StreamOptions::new()).try_collect().await?;
    Ok(records.into_iter().map(|(_, bytes)| bytes).collect())
}

/// A count whose reducer also counts, in `seen`, every record it was handed: proof of
/// what was (and was not) reprocessed.
pub(crate) fn counting<T: 'static>(
    version: u32,
    seen: &Arc<AtomicU64>,
) -> flumeview_reduce::Reduce<T, u64> {
    let seen = Arc::clone(seen);
    flumeview_reduce::Reduce::from_records(
        version,
        0,
        move |count: &mut u64, _: &Record<'_, T>| -> Result<(), BoxError> {
            seen.fetch_add(1, Ordering::Relaxed);
            *count += 1;
            Ok(())
        },
    )
}
