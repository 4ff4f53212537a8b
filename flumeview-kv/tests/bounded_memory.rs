//! Building a `Kv` of 1,000,000 distinct keys, each with a 120-byte value, keeps the
//! process's peak resident memory, minus the run files it maps, under 100 MB: values
//! are never held by the view (only `(key, seq, kind)` entries, in a bounded memtable),
//! and a read of a value reads its record back. The log is synthetic (it makes each
//! record from its seq on demand), so only the view and the driver use memory.
//!
//! Heavy: run it in release mode, alone:
//!
//! ```text
//! cargo test --release -p flumeview-kv --test bounded_memory -- --ignored --nocapture
//! ```
//!
//! `FLUMEVIEW_KV_RECORDS` changes the record count (default 1,000,000).

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use flume_core::{Durability, Error, Flume, Log, Raw, RawRecord, Result, Seq, StreamOptions, Wait};
use flumeview_kv::{Kv, KvReader};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::watch;

/// A bijection of u64 (SplitMix64's finaliser): distinct keys in no particular order.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

const VALUE_BYTES: usize = 120;

/// Record `seq`: its key (8 bytes, big-endian) and a value.
fn record(seq: Seq) -> Bytes {
    let mut bytes = scramble(seq).to_be_bytes().to_vec();
    bytes.resize(8 + VALUE_BYTES, (seq % 251) as u8);
    Bytes::from(bytes)
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
        let found = if seq < self.n {
            Ok(record(seq))
        } else {
            Err(Error::NotFound { seq })
        };
        Box::pin(async move { found })
    }

    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        let Some((first, last)) = opts.bounds() else {
            return futures::stream::empty().boxed();
        };
        let end = last.map_or(self.n, |l| self.n.min(l + 1));
        let records = futures::stream::iter(first..end).map(|seq| Ok((seq, record(seq))));
        if opts.live {
            records.chain(futures::stream::pending()).boxed()
        } else {
            records.boxed()
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

/// A field of `/proc/self/status`, in kB (0 where there is none).
fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn files_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy: run in release mode, see the file's docs"]
async fn a_million_keys_with_values_in_bounded_memory(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::var("FLUMEVIEW_KV_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let log = Synthetic {
        n,
        since: watch::Sender::new(n.checked_sub(1)),
    };
    let started = Instant::now();
    let db = Flume::builder(log, Raw).build();
    let view: Kv<Bytes, u64, Bytes> = Kv::new(1, |r: &Bytes, e| {
        let key = u64::from_be_bytes(r[..8].try_into().expect("8 key bytes"));
        e.put_with(key, || r.slice(8..));
    })
    .persist(dir.path());
    let kv: KvReader<Bytes, u64, Bytes> = db.add_view("kv", view)?;
    assert_eq!(kv.all().count(Wait::Log).await?, n as usize);
    let built = started.elapsed();

    let reads = 100_000u64.min(n);
    let started = Instant::now();
    for i in 0..reads {
        let seq = scramble(i ^ 0x5555) % n;
        let found = kv
            .get(&scramble(seq), Wait::NoWait)
            .await?
            .expect("a value");
        assert_eq!((found.version, found.value), (seq, record(seq).slice(8..)));
    }
    let read = started.elapsed();

    let files = files_bytes(dir.path());
    let peak = proc_status_kb("VmHWM:") * 1024;
    println!(
        "{n} keys: built in {built:.1?} ({:.0} records/s); {reads} gets in {read:.1?} ({:.0}/s)",
        n as f64 / built.as_secs_f64(),
        reads as f64 / read.as_secs_f64(),
    );
    println!(
        "peak RSS {} MB, view files {} MB, values never stored ({} MB of them in the log)",
        peak >> 20,
        files >> 20,
        (n * VALUE_BYTES as u64) >> 20
    );
    let beyond_files = peak.saturating_sub(files);
    assert!(
        beyond_files < 100 << 20,
        "peak RSS beyond the mapped files is {} MB",
        beyond_files >> 20
    );
    db.close().await?;
    Ok(())
}
