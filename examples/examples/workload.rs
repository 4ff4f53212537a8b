//! The benchmark driver: flume-rs as one more peer of the team's benchmark harness
//! ("flume workload v1", kept outside this repository; see BENCHMARKS.md).
//!
//! ```text
//! workload [--write-delay-ms D] --workload W1|W2|W3|W4 --n N --dir DIR --records FILE [--writers C --count K]
//! ```
//!
//! It prints exactly one JSON object on stdout (`{"error": "..."}` and exit code 1 on
//! failure) and uses the real stack: `flumelog-file` for the log, a `flumeview-reduce`
//! count view and a `flumeview-index` key index view driven by `flume-core`.
//!
//! - **W1**: append N records (raw JSON bytes), one call each, awaiting each, at the
//!   default (buffered) durability: every acknowledged append has been written to the
//!   OS. The final `sync` is inside the timing.
//!
//!   With `--write-delay-ms D` the log is opened with `FileLogOptions::max_write_delay(D ms)`:
//!   the explicit bulk-load mode, where an append is acknowledged once visible and its
//!   bytes reach the OS within D ms (a process crash may lose the younger ones). The
//!   harness runs it as a second peer, `flume-rs-bulk`, so that both semantics are
//!   reported side by side.
//! - **W2**: C concurrent writers (tokio tasks), K appends in all, each synced
//!   (fdatasync) before it is acknowledged; group commit shares the fsyncs (a lone
//!   append syncs on its own runtime thread).
//! - **W3**: open (which verifies every frame), a plain cold scan, then a count view
//!   and a key index view built from scratch, one pass each.
//! - **W4**: 100k point reads by seq and 100k lookups by key through the index view
//!   built in W3; every value is checked against the input.
//!
//! Run it through the harness with
//! `EXTRA_PEERS="flume-rs=$PWD/target/release/examples/workload" ./run_peers.sh`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use flume_core::{BoxError, Durability, Flume, Raw, Seq, StreamOptions, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_reduce::{Reduce, ReduceReader};
use futures::StreamExt;
use serde_json::{json, Value};

type Res<T> = Result<T, BoxError>;

#[derive(Debug, Default)]
struct Args {
    workload: String,
    n: usize,
    dir: PathBuf,
    records: PathBuf,
    writers: usize,
    count: usize,
    /// `--write-delay-ms D`: open the log with `FileLogOptions::max_write_delay(D ms)`, the
    /// explicit bulk-load relaxation (a process crash may lose appends younger than D).
    write_delay_ms: Option<u64>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        writers: 1,
        count: 5000,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--workload" => args.workload = value()?,
            "--n" => args.n = value()?.parse()?,
            "--dir" => args.dir = value()?.into(),
            "--records" => args.records = value()?.into(),
            "--writers" => args.writers = value()?.parse()?,
            "--count" => args.count = value()?.parse()?,
            "--write-delay-ms" => args.write_delay_ms = Some(value()?.parse()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if args.workload.is_empty() || args.dir.as_os_str().is_empty() {
        return Err("usage: workload --workload W1|W2|W3|W4 --n N --dir DIR --records FILE [--writers C --count K]".into());
    }
    Ok(args)
}

/// The first `n` lines of the records file, as the bytes to append.
fn load_records(path: &Path, n: usize) -> Res<Vec<Bytes>> {
    let data = Bytes::from(std::fs::read(path)?);
    let mut records = Vec::with_capacity(n);
    let mut start = 0;
    while records.len() < n && start < data.len() {
        let end = data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| start + i);
        if end > start {
            records.push(data.slice(start..end));
        }
        start = end + 1;
    }
    if records.len() < n {
        return Err(format!(
            "{} holds {} records, not {n}",
            path.display(),
            records.len()
        )
        .into());
    }
    Ok(records)
}

/// The W4 query plan next to the records file: record indices for point reads and for
/// key lookups.
fn load_queries(args: &Args) -> Res<(Vec<usize>, Vec<usize>)> {
    let path = args
        .records
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("queries_N{}.txt", args.n));
    let text = std::fs::read_to_string(&path)?;
    let (mut point, mut key) = (Vec::new(), Vec::new());
    let mut mode = 0;
    for line in text.lines() {
        match line {
            "point" => mode = 1,
            "key" => mode = 2,
            "" => {}
            x => {
                let i: usize = x.parse()?;
                if i >= args.n {
                    return Err(format!("query index {i} >= n {}", args.n).into());
                }
                if mode == 1 {
                    point.push(i)
                } else {
                    key.push(i)
                }
            }
        }
    }
    Ok((point, key))
}

fn fresh_dir(dir: &Path) -> Res<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Allocated bytes under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => total += disk_bytes(&entry.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

async fn open(args: &Args) -> Res<Flume<Bytes>> {
    let mut options = FileLogOptions::default();
    if let Some(ms) = args.write_delay_ms {
        options = options.max_write_delay(std::time::Duration::from_millis(ms));
    }
    let log = FileLog::open(log_dir(&args.dir), options).await?;
    Ok(Flume::builder(log, Raw).build())
}

/// What W1's acknowledgements promise, for the result's `extra`.
fn w1_api(args: &Args) -> String {
    match args.write_delay_ms {
        None => "Flume<Bytes> (Raw codec) over FileLog, default buffered durability \
                 (each acknowledged append was written to the OS), one append per record"
            .into(),
        Some(ms) => format!(
            "Flume<Bytes> (Raw codec) over FileLog with max_write_delay = {ms} ms (bulk mode: \
             appends are acknowledged once visible; written to the OS within {ms} ms), \
             one append per record"
        ),
    }
}

async fn w1(args: &Args) -> Res<Value> {
    let records = load_records(&args.records, args.n)?;
    fresh_dir(&args.dir)?;
    let started = Instant::now();
    let db = open(args).await?;
    for record in &records {
        db.append(record).await?;
    }
    let presync = started.elapsed().as_secs_f64();
    db.sync().await?;
    let secs = started.elapsed().as_secs_f64();
    db.close().await?;
    let bytes: usize = records.iter().map(Bytes::len).sum();
    Ok(json!({
        "secs": secs,
        "presync_secs": presync,
        "records_per_s": records.len() as f64 / secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
        "payload_bytes": bytes,
        "disk_bytes": disk_bytes(&args.dir),
        "extra": {"api": w1_api(args)},
    }))
}

async fn w2(args: &Args) -> Res<Value> {
    let records = load_records(&args.records, args.count.min(args.n.max(1)))?;
    fresh_dir(&args.dir)?;
    let db = open(args).await?;
    let writers = args.writers.max(1);
    let per = args.count / writers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let db = db.clone();
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per);
            for j in 0..per {
                let record = &records[(w * per + j) % records.len()];
                let t = Instant::now();
                db.append_with(record, Durability::Synced).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, flume_core::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    db.close().await?;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let total = latencies.len();
    Ok(json!({
        "appends_per_s": total as f64 / secs,
        "mean_latency_us": latencies.iter().sum::<f64>() / total as f64,
        "p50_latency_us": pct(0.5),
        "p99_latency_us": pct(0.99),
        "secs": secs,
        "extra": {"api": "Flume::append_with(Durability::Synced), one tokio task per writer"},
    }))
}

/// Waits until the view behind `since` has applied `last`, returning the seconds taken.
async fn time_until_caught_up(
    reader: &ReduceReader<u64>,
    last: Seq,
    started: Instant,
) -> Res<(f64, u64)> {
    let count = reader.get(Wait::AtLeast(last)).await?;
    Ok((started.elapsed().as_secs_f64(), count))
}

/// Samples the process's anonymous resident memory (`RssAnon`: heap and stacks, not
/// mapped files) on a thread, keeping the peak.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn rss_anon() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("RssAnon:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = Self::rss_anon();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                peak = peak.max(Self::rss_anon());
            }
            peak.max(Self::rss_anon())
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

async fn w3(args: &Args) -> Res<Value> {
    let n = args.n;
    let started = Instant::now();
    let db = open(args).await?;
    let open_secs = started.elapsed().as_secs_f64();
    let last = db.since().ok_or("the log is empty")?;
    if last + 1 != n as u64 {
        return Err(format!("the log holds {} records, not {n}", last + 1).into());
    }

    let started = Instant::now();
    let mut scan = db.log().stream(StreamOptions::new());
    let (mut scanned, mut scanned_bytes) = (0u64, 0u64);
    while let Some(record) = scan.next().await {
        scanned += 1;
        scanned_bytes += record?.1.len() as u64;
    }
    let cold_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(scanned_bytes);

    let started = Instant::now();
    let count: ReduceReader<u64> = db.add_view("count", Reduce::count(1))?;
    let (count_secs, counted) = time_until_caught_up(&count, last, started).await?;

    let sampler = RssSampler::start();
    let index = index::build(&db, &args.dir, last).await?;
    let peak_anon = sampler.stop();
    db.close().await?;
    if scanned != n as u64 || counted != n as u64 || index.1 != n as u64 {
        return Err(format!(
            "W3 saw {scanned}/{counted}/{} records, expected {n}",
            index.1
        )
        .into());
    }
    Ok(json!({
        "open_secs": open_secs,
        "cold_scan_secs": cold_secs,
        "cold_scan_rps": n as f64 / cold_secs,
        "count_secs": count_secs,
        "count_rps": n as f64 / count_secs,
        "index_secs": index.0,
        "index_rps": n as f64 / index.0,
        "index_peak_rss_anon_mb": peak_anon as f64 / 1e6,
        "extra": {
            "index_peak_rss_anon_mb": "peak anonymous RSS (RssAnon, sampled every 5 ms) while W3b ran: memory beyond mapped files",
            "open": "FileLog::open verifies every frame's CRC32C",
            "count": "flumeview-reduce Reduce::count (never decodes)",
            "index": index::DESCRIPTION,
        },
    }))
}

async fn w4(args: &Args) -> Res<Value> {
    let records = load_records(&args.records, args.n)?;
    let (points, keys) = load_queries(args)?;
    let started = Instant::now();
    let db = open(args).await?;
    let lookup = index::open(&db, &args.dir).await?;
    let setup_secs = started.elapsed().as_secs_f64();

    let mut wrong = 0usize;
    let started = Instant::now();
    for &i in &points {
        if db.get(i as Seq).await? != records[i] {
            wrong += 1;
        }
    }
    let point_secs = started.elapsed().as_secs_f64();

    let wanted: Vec<String> = keys
        .iter()
        .map(|&i| index::key_of(&records[i]))
        .collect::<Res<_>>()?;
    let started = Instant::now();
    for (j, &i) in keys.iter().enumerate() {
        match lookup.get(&wanted[j]).await? {
            Some(value) if value == records[i] => {}
            _ => wrong += 1,
        }
    }
    let key_secs = started.elapsed().as_secs_f64();
    db.close().await?;
    if wrong > 0 {
        return Err(format!("W4: {wrong} wrong values returned").into());
    }
    Ok(json!({
        "setup_secs": setup_secs,
        "point_ops": points.len(),
        "point_secs": point_secs,
        "point_ops_per_s": points.len() as f64 / point_secs,
        "key_ops": keys.len(),
        "key_secs": key_secs,
        "key_ops_per_s": keys.len() as f64 / key_secs,
        "extra": {"point": "Flume::get(seq) (mmap; frames verified at open)", "key": index::DESCRIPTION},
    }))
}

/// The key index view of W3b/W4b: `key` field -> seq, persisted next to the log.
mod index {
    use super::*;
    use flume_core::Record;
    use flumeview_index::{key, Emit, Index, IndexReader};

    pub(crate) const DESCRIPTION: &str =
        "flumeview-index (LSM: memtable, sorted runs, bloom filters), key field parsed with serde_json";

    /// The record's `key` field.
    fn key_field(record: &[u8]) -> Res<&str> {
        #[derive(serde::Deserialize)]
        struct KeyOnly<'a> {
            #[serde(borrow)]
            key: &'a str,
        }
        Ok(serde_json::from_slice::<KeyOnly<'_>>(record)?.key)
    }

    /// The record's `key` field, owned.
    pub(crate) fn key_of(record: &[u8]) -> Res<String> {
        key_field(record).map(str::to_owned)
    }

    fn view(dir: &Path) -> Index<Bytes> {
        Index::raw(1, |record: &Record<'_, Bytes>, emit: &mut Emit<'_>| {
            emit.put(key::string(key_field(record.bytes())?));
            Ok(())
        })
        .persist(dir.join("views").join("by_key"))
    }

    /// Builds the index view from scratch; returns (seconds, records indexed).
    pub(crate) async fn build(db: &Flume<Bytes>, dir: &Path, last: Seq) -> Res<(f64, u64)> {
        let views = dir.join("views").join("by_key");
        if views.exists() {
            std::fs::remove_dir_all(&views)?;
        }
        let started = Instant::now();
        let reader: IndexReader<Bytes> = db.add_view("by_key", view(dir))?;
        reader.get_seq(b"", Wait::AtLeast(last)).await?;
        let secs = started.elapsed().as_secs_f64();
        Ok((secs, reader.since().map_or(0, |s| s + 1)))
    }

    /// Key lookups through the index view built by W3.
    pub(crate) struct Lookup(IndexReader<Bytes>);

    impl Lookup {
        pub(crate) async fn get(&self, key: &str) -> Res<Option<Bytes>> {
            Ok(self
                .0
                .get(key::string(key), Wait::Log)
                .await?
                .map(|(_, v)| v))
        }
    }

    /// Opens the index view persisted by W3 (it resumes at its checkpoint).
    pub(crate) async fn open(db: &Flume<Bytes>, dir: &Path) -> Res<Lookup> {
        let reader: IndexReader<Bytes> = db.add_view("by_key", view(dir))?;
        reader.get_seq(b"", Wait::Log).await?;
        Ok(Lookup(reader))
    }
}

fn main() {
    let result = parse_args().and_then(|args| {
        // Multi-thread for every workload: there, a W2 writer whose append is alone syncs
        // on its own thread (`block_in_place`) instead of waiting for the log's writer
        // thread to sync and wake it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async {
            match args.workload.as_str() {
                "W1" => w1(&args).await,
                "W2" => w2(&args).await,
                "W3" => w3(&args).await,
                "W4" => w4(&args).await,
                other => Err(format!("n/a: unknown workload {other}").into()),
            }
        })
    });
    match result {
        Ok(value) => println!("{value}"),
        Err(e) => {
            println!("{}", json!({ "error": e.to_string() }));
            std::process::exit(1);
        }
    }
}
