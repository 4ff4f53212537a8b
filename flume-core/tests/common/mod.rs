//! A scriptable view for driver tests: it collects what it applies, can persist into a
//! store that outlives the database, and can be told to sleep, fail or block.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flume_core::{BoxError, Checkpoint, ReaderContext, Records, Result, Seq, View, Wait, Waiter};

/// What a `Collect` view persisted: its checkpoint and its values.
#[derive(Debug, Clone, Default)]
pub struct Saved {
    pub checkpoint: Option<Checkpoint>,
    pub values: Vec<(Seq, u64)>,
}

/// Storage that survives closing and reopening a database.
pub type Store = Arc<Mutex<Saved>>;

/// Counters a test can read while the view runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub applies: AtomicUsize,
    pub applied_records: AtomicU64,
    pub resets: AtomicUsize,
    pub loads: AtomicUsize,
    pub checkpoints: AtomicUsize,
}

/// When the view should fail.
pub type FailWhen = Arc<dyn Fn(Seq) -> bool + Send + Sync>;

/// Collects `(seq, value)` of every record it applies.
pub struct Collect {
    pub version: u32,
    pub values: Arc<Mutex<Vec<(Seq, u64)>>>,
    pub store: Option<Store>,
    pub counters: Arc<Counters>,
    pub sleep: Duration,
    pub fail_when: Option<FailWhen>,
    /// Whether to decode values (false: count records without decoding).
    pub decode: bool,
    /// Each apply takes one permit from this semaphore-like gate before working.
    pub gate: Option<Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>>,
}

impl Collect {
    pub fn new(version: u32) -> Self {
        Collect {
            version,
            values: Arc::default(),
            store: None,
            counters: Arc::default(),
            sleep: Duration::ZERO,
            fail_when: None,
            decode: true,
            gate: None,
        }
    }
    pub fn persisted(mut self, store: &Store) -> Self {
        self.store = Some(Arc::clone(store));
        self
    }
    pub fn sleeping(mut self, sleep: Duration) -> Self {
        self.sleep = sleep;
        self
    }
    pub fn failing(mut self, when: impl Fn(Seq) -> bool + Send + Sync + 'static) -> Self {
        self.fail_when = Some(Arc::new(when));
        self
    }
    pub fn raw(mut self) -> Self {
        self.decode = false;
        self
    }
    /// Every apply waits for one `()` on the returned sender.
    pub fn gated(mut self) -> (Self, std::sync::mpsc::Sender<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.gate = Some(Arc::new(std::sync::Mutex::new(rx)));
        (self, tx)
    }
}

/// The reader of a `Collect` view.
#[derive(Clone, Debug)]
pub struct CollectReader {
    values: Arc<Mutex<Vec<(Seq, u64)>>>,
    waiter: Waiter,
}

impl CollectReader {
    pub async fn get(&self, wait: Wait) -> Result<Vec<(Seq, u64)>> {
        self.waiter
            .read(wait, || self.values.lock().unwrap().clone())
            .await
    }
    pub async fn sum(&self, wait: Wait) -> Result<u64> {
        Ok(self.get(wait).await?.iter().map(|(_, v)| v).sum())
    }
    pub fn since(&self) -> Option<Seq> {
        self.waiter.since()
    }
    pub fn waiter(&self) -> &Waiter {
        &self.waiter
    }
}

impl View<u64> for Collect {
    type Reader = CollectReader;

    fn version(&self) -> u32 {
        self.version
    }

    fn reader(&self, ctx: ReaderContext<u64>) -> CollectReader {
        CollectReader {
            values: Arc::clone(&self.values),
            waiter: ctx.waiter,
        }
    }

    fn load(&mut self) -> std::result::Result<Option<Checkpoint>, BoxError> {
        self.counters.loads.fetch_add(1, Ordering::SeqCst);
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let saved = store.lock().unwrap().clone();
        *self.values.lock().unwrap() = saved.values;
        Ok(saved.checkpoint)
    }

    fn apply(&mut self, records: Records<'_, u64>) -> std::result::Result<(), BoxError> {
        if let Some(gate) = &self.gate {
            gate.lock().unwrap().recv()?;
        }
        self.counters.applies.fetch_add(1, Ordering::SeqCst);
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep);
        }
        let mut values = self.values.lock().unwrap();
        for record in records {
            if let Some(fail) = &self.fail_when {
                if fail(record.seq()) {
                    return Err(format!("refusing record {}", record.seq()).into());
                }
            }
            let value = if self.decode { *record.value()? } else { 1 };
            values.push((record.seq(), value));
            self.counters.applied_records.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn checkpoint(&mut self, since: Seq) -> std::result::Result<(), BoxError> {
        self.counters.checkpoints.fetch_add(1, Ordering::SeqCst);
        if let Some(store) = &self.store {
            *store.lock().unwrap() = Saved {
                checkpoint: Some(Checkpoint {
                    version: self.version,
                    since: Some(since),
                }),
                values: self.values.lock().unwrap().clone(),
            };
        }
        Ok(())
    }

    fn reset(&mut self) -> std::result::Result<(), BoxError> {
        self.counters.resets.fetch_add(1, Ordering::SeqCst);
        self.values.lock().unwrap().clear();
        if let Some(store) = &self.store {
            *store.lock().unwrap() = Saved::default();
        }
        Ok(())
    }
}

/// Waits (polling the status watch) until every view is ready, with a timeout.
pub async fn ready<T: Send + Sync + 'static>(db: &flume_core::Flume<T>) {
    let mut status = db.status();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            {
                let s = status.borrow_and_update();
                if s.is_ready() && s.log.since == db.since() {
                    return;
                }
            }
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("views did not become ready in 10s");
}

/// Wraps a log and counts the streams opened and the records they yielded.
#[derive(Clone)]
pub struct CountingLog<L> {
    pub inner: L,
    pub streams: Arc<AtomicUsize>,
    pub streamed: Arc<AtomicU64>,
}

impl<L> CountingLog<L> {
    pub fn new(inner: L) -> Self {
        CountingLog {
            inner,
            streams: Arc::default(),
            streamed: Arc::default(),
        }
    }
}

impl<L: flume_core::Log> flume_core::Log for CountingLog<L> {
    fn append_with(
        &self,
        record: bytes::Bytes,
        durability: Option<flume_core::Durability>,
    ) -> futures::future::BoxFuture<'_, Result<Seq>> {
        self.inner.append_with(record, durability)
    }
    fn append_batch_with(
        &self,
        records: Vec<bytes::Bytes>,
        durability: Option<flume_core::Durability>,
    ) -> futures::future::BoxFuture<'_, Result<std::ops::Range<Seq>>> {
        self.inner.append_batch_with(records, durability)
    }
    fn get(&self, seq: Seq) -> futures::future::BoxFuture<'_, Result<bytes::Bytes>> {
        self.inner.get(seq)
    }
    fn stream(
        &self,
        opts: flume_core::StreamOptions,
    ) -> futures::stream::BoxStream<'static, Result<flume_core::RawRecord>> {
        use futures::StreamExt;
        self.streams.fetch_add(1, Ordering::SeqCst);
        let streamed = Arc::clone(&self.streamed);
        self.inner
            .stream(opts)
            .inspect(move |_| {
                streamed.fetch_add(1, Ordering::SeqCst);
            })
            .boxed()
    }
    fn since(&self) -> tokio::sync::watch::Receiver<Option<Seq>> {
        self.inner.since()
    }
    fn sync(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        self.inner.sync()
    }
    fn revert(&self, last: Option<Seq>) -> futures::future::BoxFuture<'_, Result<()>> {
        self.inner.revert(last)
    }
    fn close(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        self.inner.close()
    }
}

/// JSON, counting how many values it decodes.
#[derive(Clone, Default)]
pub struct CountingJson(pub Arc<AtomicUsize>);

impl flume_core::Codec<u64> for CountingJson {
    fn encode(&self, value: &u64) -> std::result::Result<bytes::Bytes, BoxError> {
        flume_core::Codec::<u64>::encode(&flume_core::Json, value)
    }
    fn decode(&self, bytes: &bytes::Bytes) -> std::result::Result<u64, BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        flume_core::Codec::<u64>::decode(&flume_core::Json, bytes)
    }
}
