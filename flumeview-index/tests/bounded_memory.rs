//! Indexing 1,000,000 records with 1,000,000 distinct keys keeps the process's peak
//! resident memory, minus the run files it maps, under 100 MB. The log is synthetic (it
//! makes records from their seq on demand), so only the index and the driver use memory.
//!
//! Heavy: run it in release mode, alone:
//!
//! ```text
//! cargo test --release -p flumeview-index --test bounded_memory -- --ignored --nocapture
//! ```
//!
//! `FLUMEVIEW_INDEX_RECORDS` changes the record count (default 1,000,000).

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use flume_core::{Durability, Error, Flume, Log, Raw, RawRecord, Result, Seq, StreamOptions, Wait};
use flumeview_index::{Index, IndexReader};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::watch;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Record `seq`: a distinct 24-byte key (SplitMix64 is a bijection).
fn record(seq: Seq) -> Bytes {
    Bytes::from(format!("key-{:016x}{:04}", mix(seq), seq % 10_000))
}

/// A read-only log of `n` records made on demand.
struct Synthetic {
    n: u64,
    since: watch::Sender<Option<Seq>>,
}

impl Log for Synthetic {
    fn append_with(&self, _: Bytes, _: Option<Durability>) -> BoxFuture<'_, Result<Seq>> {
        Box::pin(async { Err(Error::Unsupported("append")) })
    }
    fn append_batch_with(
        &self,
        _: Vec<Bytes>,
        _: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        Box::pin(async { Err(Error::Unsupported("append")) })
    }
    fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>> {
        let n = self.n;
        Box::pin(async move {
            if seq < n {
                Ok(record(seq))
            } else {
                Err(Error::NotFound { seq })
            }
        })
    }
    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        let Some((first, last)) = opts.bounds() else {
            return futures::stream::empty().boxed();
        };
        let end = last.map_or(self.n, |l| (l + 1).min(self.n));
        let history = futures::stream::iter(first..end).map(|seq| Ok((seq, record(seq))));
        if opts.live {
            history.chain(futures::stream::pending()).boxed()
        } else {
            history.boxed()
        }
    }
    fn since(&self) -> watch::Receiver<Option<Seq>> {
        self.since.subscribe()
    }
    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: run in release mode, see the file's docs"]
async fn a_million_distinct_keys_in_bounded_memory(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::var("FLUMEVIEW_INDEX_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let log = Synthetic {
        n,
        since: watch::Sender::new(n.checked_sub(1)),
    };
    let start_rss = status_kb("VmRSS:");
    let started = Instant::now();
    let db = Flume::builder(log, Raw).build();
    let index: Index<Bytes> = Index::raw(1, |r, e| {
        e.put(r.bytes());
        Ok(())
    })
    .persist(dir.path());
    let idx: IndexReader<Bytes> = db.add_view("by_bytes", index)?;
    idx.get_seq("x", Wait::Log).await?;
    let indexing = started.elapsed();

    let lookups = 200_000u64;
    let started = Instant::now();
    for i in 0..lookups {
        let seq = mix(i) % n;
        let found = idx.get_seq(record(seq), Wait::NoWait).await?;
        assert_eq!(found, Some(seq));
    }
    let lookup = started.elapsed();
    let started = Instant::now();
    for i in 0..lookups {
        assert_eq!(
            idx.get_seq(format!("absent-{i}"), Wait::NoWait).await?,
            None
        );
    }
    let absent = started.elapsed();

    let files = dir_bytes(dir.path());
    let hwm = status_kb("VmHWM:");
    let anon = status_kb("RssAnon:");
    let file_rss = status_kb("RssFile:");
    println!(
        "{n} records: indexed in {:.1?} ({:.0} records/s); {lookups} hits in {:.1?} ({:.0}/s), {lookups} misses in {:.1?} ({:.0}/s)",
        indexing,
        n as f64 / indexing.as_secs_f64(),
        lookup,
        lookups as f64 / lookup.as_secs_f64(),
        absent,
        lookups as f64 / absent.as_secs_f64(),
    );
    println!(
        "VmHWM {} MB, RSS at start {} MB, RssAnon now {} MB, RssFile now {} MB, index files {} MB",
        hwm / 1024,
        start_rss / 1024,
        anon / 1024,
        file_rss / 1024,
        files >> 20
    );
    let beyond_files = (hwm * 1024).saturating_sub(files);
    println!("peak RSS beyond the index files: {} MB", beyond_files >> 20);
    assert!(
        beyond_files < 100 << 20,
        "peak RSS beyond the mapped files is {} MB",
        beyond_files >> 20
    );
    db.close().await?;
    Ok(())
}
