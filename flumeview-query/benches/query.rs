//! Combined queries at 1M records: "posts by X that mention Y, newest first" over two
//! indexes (author, mention), against the two ways to answer it without a query layer:
//! a hand-written filter over one index (walk X's posts newest first, read each record,
//! keep those that mention Y) and a full scan of the log.
//!
//! The data (built once, on a `FileLog`, both indexes persisted): 1M posts by 10,000
//! users. One user (`@user00000`) writes a tenth of the posts; the others share the
//! rest evenly (about 90 each). A post mentions 0 to 2 users; each mention is
//! `@user00001` with probability 1/10, else one of the other users (about 90 mentions
//! each). So:
//!
//! - **selective**: by `@user00000` (100k posts) mentioning `@user04242` (about 90
//!   mentions): about ten posts; the query asks for the newest 10.
//! - **unselective**: by `@user00000` mentioning `@user00001` (100k mentions): about
//!   10k posts; once the newest 10, once all of them.
//!
//! Criterion times each (query, method) pair; then a latency loop runs each pair on its
//! own, timing every call for p50/p99 and reading the peak live heap above the level
//! before the call from the counting global allocator below. The lines it prints start
//! with `query:`. Not run by the tests: `cargo bench -p flumeview-query`.

#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use flume_core::{Flume, StreamOptions, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_index::{Hit, Index, IndexReader};
use flumeview_query::{eq, Query};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Counts the bytes the process holds on the heap, and the peak since the last reset.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// The system allocator, counting.
    pub(crate) struct Counting;

    fn grew(n: usize) {
        let now = LIVE.fetch_add(n, Relaxed) + n;
        PEAK.fetch_max(now, Relaxed);
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged,
    // so `System`'s guarantees hold; the counters are plain atomics.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded as is (see the impl).
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded as is (see the impl).
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grew(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded as is (see the impl).
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Relaxed);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded as is (see the impl).
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_sub(layout.size(), Relaxed);
                grew(new_size);
            }
            p
        }
    }

    /// Starts a measurement: the peak is reset to what is live now, which is returned.
    pub(crate) fn start() -> usize {
        let now = LIVE.load(Relaxed);
        PEAK.store(now, Relaxed);
        now
    }

    /// The peak live heap since [`start`], above what was live then.
    pub(crate) fn peak_above(base: usize) -> usize {
        PEAK.load(Relaxed).saturating_sub(base)
    }
}

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// Posts in the log.
const N: u64 = 1_000_000;
/// Users writing and mentioned.
const USERS: u64 = 10_000;
/// Writes a tenth of the posts.
const PROLIFIC: u64 = 0;
/// Gets a tenth of the mentions.
const POPULAR: u64 = 1;
/// An ordinary user: about 90 mentions.
const ORDINARY: u64 = 4242;
/// Posts per page in the hand-written filter.
const PAGE: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    author: String,
    mentions: Vec<String>,
    text: String,
}

fn user(i: u64) -> String {
    format!("@user{i:05}")
}

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Another user than `PROLIFIC` and `POPULAR`, uniformly.
    fn ordinary(&mut self) -> u64 {
        2 + self.next() % (USERS - 2)
    }
}

/// Post `i` of the data set; the same every run.
fn post(i: u64, rng: &mut Rng) -> Post {
    let author = if rng.next().is_multiple_of(10) {
        PROLIFIC
    } else {
        1 + rng.next() % (USERS - 1)
    };
    let mut mentions = Vec::new();
    for _ in 0..rng.next() % 3 {
        let m = if rng.next().is_multiple_of(10) {
            POPULAR
        } else {
            rng.ordinary()
        };
        let m = user(m);
        if !mentions.contains(&m) {
            mentions.push(m);
        }
    }
    Post {
        author: user(author),
        mentions,
        text: format!("post {i}: something worth saying about the state of things"),
    }
}

/// The author index: author → their posts.
fn by_author() -> Index<Post, String> {
    Index::keyed(1, |_seq, p: &Post, e| e.put(p.author.as_str()))
}

/// The mention index: mentioned user → the posts that mention them.
fn by_mention() -> Index<Post, String> {
    Index::keyed(1, |_seq, p: &Post, e| {
        p.mentions.iter().for_each(|m| e.put(m.as_str()))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

struct Fixture {
    db: Flume<Post>,
    by_author: IndexReader<Post, String>,
    by_mention: IndexReader<Post, String>,
    _dir: tempfile::TempDir,
}

/// Opens the database in `dir` with both indexes persisted there.
async fn open(
    dir: &std::path::Path,
) -> (
    Flume<Post>,
    IndexReader<Post, String>,
    IndexReader<Post, String>,
) {
    let log = FileLog::open(dir.join("log"), FileLogOptions::default())
        .await
        .expect("log");
    let db = Flume::new(log);
    let by_author: IndexReader<Post, String> = db
        .add_view("by_author", by_author().persist(dir.join("by_author")))
        .expect("view");
    let by_mention: IndexReader<Post, String> = db
        .add_view("by_mention", by_mention().persist(dir.join("by_mention")))
        .expect("view");
    (db, by_author, by_mention)
}

/// Writes and indexes the posts, closes, and opens again: the queries then read
/// persisted indexes, compacted at the close, with no background work going on.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, by_author, by_mention) = open(dir.path()).await;
    let started = Instant::now();
    let mut rng = Rng(0x5eed);
    for start in (0..N).step_by(10_000) {
        let posts: Vec<Post> = (start..start + 10_000).map(|i| post(i, &mut rng)).collect();
        db.append_batch(&posts).await.expect("append");
    }
    by_author.ready(Wait::Log).await.expect("built");
    by_mention.ready(Wait::Log).await.expect("built");
    let built = started.elapsed();
    db.close().await.expect("close");
    let (db, by_author, by_mention) = open(dir.path()).await;
    db.ready().await.expect("ready");
    let count = |r: &IndexReader<Post, String>, u: u64| {
        let r = r.clone();
        async move {
            r.count(user(u).as_str(), Wait::NoWait)
                .await
                .expect("count")
        }
    };
    eprintln!(
        "query: wrote and indexed {N} posts in {:.1} s; {} has {} posts; {} has {} mentions, {} {}",
        built.as_secs_f64(),
        user(PROLIFIC),
        count(&by_author, PROLIFIC).await,
        user(POPULAR),
        count(&by_mention, POPULAR).await,
        user(ORDINARY),
        count(&by_mention, ORDINARY).await,
    );
    Fixture {
        db,
        by_author,
        by_mention,
        _dir: dir,
    }
}

/// One question: posts by `author` that mention `mentioned`, newest first, at most
/// `limit`.
#[derive(Debug, Clone, Copy)]
struct Ask {
    name: &'static str,
    author: u64,
    mentioned: u64,
    limit: Option<usize>,
}

const ASKS: [Ask; 3] = [
    Ask {
        name: "selective, newest 10",
        author: PROLIFIC,
        mentioned: ORDINARY,
        limit: Some(10),
    },
    Ask {
        name: "unselective, newest 10",
        author: PROLIFIC,
        mentioned: POPULAR,
        limit: Some(10),
    },
    Ask {
        name: "unselective, all",
        author: PROLIFIC,
        mentioned: POPULAR,
        limit: None,
    },
];

/// The ways to answer an [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    /// `flumeview-query`: `eq(author) & eq(mention)`.
    Query,
    /// Walk the author's posts newest first, a page at a time, read each record and keep
    /// those that mention the user.
    FilterAuthor,
    /// The same over the mentioned user's posts, keeping those by the author.
    FilterMention,
    /// Stream the whole log newest first, decode every record, keep what matches.
    FullScan,
}

const METHODS: [Method; 4] = [
    Method::Query,
    Method::FilterAuthor,
    Method::FilterMention,
    Method::FullScan,
];

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Query => "query",
            Method::FilterAuthor => "filter over author index",
            Method::FilterMention => "filter over mention index",
            Method::FullScan => "full log scan",
        }
    }
}

/// What an answer is checked by: how many posts, and the sum of their seqs.
type Answer = (usize, u64);

fn matches(p: &Post, author: &str, mentioned: &str) -> bool {
    p.author == author && p.mentions.iter().any(|m| m == mentioned)
}

/// Walks `key`'s posts in `index` newest first, `PAGE` at a time, keeping those `keep`
/// accepts, until `limit` are kept.
async fn filter_over(
    index: &IndexReader<Post, String>,
    key: &str,
    limit: Option<usize>,
    keep: impl Fn(&Post) -> bool,
) -> Answer {
    let limit = limit.unwrap_or(usize::MAX);
    let (mut count, mut sum) = (0usize, 0u64);
    let mut cursor: Option<Hit<String>> = None;
    loop {
        let mut scan = index.range(key..=key).reverse().limit(PAGE);
        if let Some(hit) = &cursor {
            scan = scan.after(hit);
        }
        let page = scan.values(Wait::NoWait).await.expect("page");
        let full = page.len() == PAGE;
        for (hit, post) in &page {
            if keep(post) {
                count += 1;
                sum += hit.seq;
                if count == limit {
                    return (count, sum);
                }
            }
        }
        match page.into_iter().last() {
            Some((hit, _)) if full => cursor = Some(hit),
            _ => return (count, sum),
        }
    }
}

async fn answer(f: &Fixture, method: Method, ask: Ask) -> Answer {
    let (author, mentioned) = (user(ask.author), user(ask.mentioned));
    let limit = ask.limit.unwrap_or(usize::MAX);
    match method {
        Method::Query => {
            let mut query = Query::new(
                eq(&f.by_author, author.as_str()) & eq(&f.by_mention, mentioned.as_str()),
            )
            .newest_first();
            if let Some(l) = ask.limit {
                query = query.limit(l);
            }
            let mut results = query.stream(Wait::NoWait);
            let (mut count, mut sum) = (0usize, 0u64);
            while let Some(item) = results.next().await {
                let (seq, _post) = item.expect("query");
                count += 1;
                sum += seq;
            }
            (count, sum)
        }
        Method::FilterAuthor => {
            filter_over(&f.by_author, &author, ask.limit, |p| {
                p.mentions.contains(&mentioned)
            })
            .await
        }
        Method::FilterMention => {
            filter_over(&f.by_mention, &mentioned, ask.limit, |p| p.author == author).await
        }
        Method::FullScan => {
            let mut all = f.db.stream(StreamOptions::new().reverse(true));
            let (mut count, mut sum) = (0usize, 0u64);
            while let Some(item) = all.next().await {
                let (seq, post) = item.expect("scan");
                if matches(&post, &author, &mentioned) {
                    count += 1;
                    sum += seq;
                    if count == limit {
                        break;
                    }
                }
            }
            (count, sum)
        }
    }
}

/// p50 and p99 of `samples` in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let f = rt.block_on(fixture());

    // Every method gives the same answer; the query's plan.
    for ask in ASKS {
        let want = rt.block_on(answer(&f, Method::FullScan, ask));
        eprintln!("query: {}: {} posts", ask.name, want.0);
        let (author, mentioned) = (user(ask.author), user(ask.mentioned));
        let query =
            Query::new(eq(&f.by_author, author.as_str()) & eq(&f.by_mention, mentioned.as_str()))
                .limit(ask.limit.unwrap_or(usize::MAX));
        let plan = rt.block_on(query.explain(Wait::NoWait)).expect("explain");
        for line in plan.lines() {
            eprintln!("query:   | {line}");
        }
        for method in METHODS {
            assert_eq!(
                rt.block_on(answer(&f, method, ask)),
                want,
                "{} by {}",
                ask.name,
                method.name()
            );
        }
    }

    for ask in ASKS {
        let mut group = c.benchmark_group(format!("query at 1M, {}", ask.name));
        for method in METHODS {
            group.bench_function(method.name(), |b| {
                b.to_async(&rt).iter(|| answer(&f, method, ask))
            });
        }
        group.finish();
    }

    // The latency loop: each (ask, method) for about 3 s (20 to 1000 calls), every
    // call timed, with the peak live heap above the level before it.
    for ask in ASKS {
        for method in METHODS {
            let once = Instant::now();
            rt.block_on(answer(&f, method, ask));
            let calls = (3.0 / once.elapsed().as_secs_f64()).clamp(20.0, 1000.0) as usize;
            let mut samples = Vec::with_capacity(calls);
            let mut peak = 0usize;
            for _ in 0..calls {
                let base = heap::start();
                let t = Instant::now();
                rt.block_on(answer(&f, method, ask));
                samples.push(t.elapsed());
                peak = peak.max(heap::peak_above(base));
            }
            let (p50, p99) = percentiles(&mut samples);
            eprintln!(
                "query: {} | {} | {calls} calls | p50 {p50:.1} µs | p99 {p99:.1} µs | peak heap +{:.1} KiB",
                ask.name,
                method.name(),
                peak as f64 / 1024.0
            );
        }
    }
    rt.block_on(f.db.close()).expect("close");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
