//! The `Flume` handle: one log, any number of named views.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{Command, Driver, DriverOptions};
use crate::status::{Status, ViewState, ViewStatus};
use crate::view::Decoder;
use crate::wait::{Damage, ViewShared};
use crate::{
    BoxError, Codec, Durability, Error, Json, Log, LogReader, Mapper, ReaderContext, Result, Seq,
    StreamOptions, View, Waiter,
};

/// An embedded database: one append-only log of `T` records and any number of views.
///
/// Values are encoded by a [`Codec`] (JSON unless the builder says otherwise) and stored
/// in the log; the views stream the log and are always caught up before they answer a
/// read (see [`Wait`](crate::Wait)). `Flume` is cheap to clone; clones share everything.
///
/// ```
/// # use flume_core::{BoxError, Flume, ReaderContext, Records, View, Wait, Waiter};
/// # use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// # #[derive(Debug, Default)] struct Count(Arc<AtomicU64>);
/// # #[derive(Debug, Clone)] struct CountReader(Arc<AtomicU64>, Waiter);
/// # impl CountReader { async fn get(&self, w: Wait) -> flume_core::Result<u64> {
/// #     self.1.read(w, || self.0.load(Ordering::Acquire)).await } }
/// # impl<T: 'static> View<T> for Count {
/// #     type Reader = CountReader;
/// #     fn version(&self) -> u32 { 1 }
/// #     fn reader(&self, c: ReaderContext<T>) -> CountReader { CountReader(self.0.clone(), c.waiter) }
/// #     fn apply(&mut self, r: Records<'_, T>) -> Result<(), BoxError> {
/// #         self.0.fetch_add(r.len() as u64, Ordering::Release); Ok(()) }
/// #     fn reset(&mut self) -> Result<(), BoxError> { self.0.store(0, Ordering::Release); Ok(()) }
/// # }
/// # async fn demo(log: impl flume_core::Log) -> flume_core::Result<()> {
/// let db = Flume::<String>::new(log).use_view("count", Count::default())?;
/// db.append(&"hello".to_string()).await?;
/// let count: CountReader = db.view("count")?;
/// assert_eq!(count.get(Wait::Log).await?, 1);
/// db.close().await?;
/// # Ok(()) }
/// ```
pub struct Flume<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Flume<T> {
    fn clone(&self) -> Self {
        Flume {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> std::fmt::Debug for Flume<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flume")
            .field("since", &*self.inner.log_since.borrow())
            .field("closed", &self.inner.closed.load(Ordering::Acquire))
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

struct Inner<T> {
    log: Arc<dyn Log>,
    reader: LogReader<T>,
    decoder: Arc<Decoder<T>>,
    log_since: watch::Receiver<Option<Seq>>,
    closed: AtomicBool,
    commands: mpsc::UnboundedSender<Command<T>>,
    /// Given to every view, for its readers to report damaged data to the driver.
    damage: mpsc::UnboundedSender<Damage>,
    views: Mutex<HashMap<String, Registered>>,
    status_tx: Arc<watch::Sender<Status>>,
    status: watch::Receiver<Status>,
}

/// A view's reader as registered, for typed lookup by name.
struct Registered {
    reader: Box<dyn Any + Send + Sync>,
    type_id: TypeId,
    type_name: &'static str,
}

/// Configures a [`Flume`]: codec, mapper, batch size.
///
/// ```
/// # async fn demo(log: impl flume_core::Log) {
/// use flume_core::{Flume, MsgPack};
/// let db: Flume<(u32, String)> = Flume::builder(log, MsgPack)
///     .mapper(|(n, s): (u32, String)| Ok((n, s.to_uppercase())))
///     .batch_size(512)
///     .build();
/// # }
/// ```
pub struct FlumeBuilder<T> {
    log: Arc<dyn Log>,
    codec: Arc<dyn Codec<T>>,
    mapper: Option<Arc<Mapper<T>>>,
    batch: usize,
}

impl<T> std::fmt::Debug for FlumeBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlumeBuilder")
            .field("mapper", &self.mapper.is_some())
            .field("batch", &self.batch)
            .finish()
    }
}

impl<T: Send + Sync + 'static> FlumeBuilder<T> {
    /// Applies `mapper` to every decoded value before views and readers see it (JS flume
    /// used this to decrypt). An error from the mapper is a [`Error::Codec`] for that
    /// record. Default: none.
    pub fn mapper(
        mut self,
        mapper: impl Fn(T) -> Result<T, BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.mapper = Some(Arc::new(mapper));
        self
    }

    /// The most records the driver hands a view in one `apply`. Default: 8192. Larger
    /// batches rebuild faster; smaller ones let readers see progress sooner.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch = records.max(1);
        self
    }

    /// Starts the database: spawns its view driver on the current Tokio runtime.
    ///
    /// # Panics
    /// When called outside a Tokio runtime.
    pub fn build(self) -> Flume<T> {
        let decoder = Arc::new(Decoder {
            codec: self.codec,
            mapper: self.mapper,
        });
        let (commands, rx) = mpsc::unbounded_channel();
        let (damage, damage_rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status::default());
        let status_tx = Arc::new(status_tx);
        let driver = Driver::new(
            Arc::clone(&self.log),
            Arc::clone(&decoder),
            rx,
            damage_rx,
            Arc::clone(&status_tx),
            DriverOptions { batch: self.batch },
        );
        tokio::spawn(driver.run());
        Flume {
            inner: Arc::new(Inner {
                log_since: self.log.since(),
                reader: LogReader::new(Arc::clone(&self.log), Arc::clone(&decoder)),
                log: self.log,
                decoder,
                closed: AtomicBool::new(false),
                commands,
                damage,
                views: Mutex::new(HashMap::new()),
                status_tx,
                status,
            }),
        }
    }
}

impl<T: Send + Sync + 'static> Flume<T> {
    /// A database over `log` storing values as JSON.
    ///
    /// # Panics
    /// When called outside a Tokio runtime.
    pub fn new(log: impl Log) -> Self
    where
        Json: Codec<T>,
    {
        Self::builder(log, Json).build()
    }

    /// A builder for a database over `log` with the given codec.
    pub fn builder(log: impl Log, codec: impl Codec<T>) -> FlumeBuilder<T> {
        FlumeBuilder {
            log: Arc::new(log),
            codec: Arc::new(codec),
            mapper: None,
            batch: 8192,
        }
    }

    /// Adds a view under `name` and returns the database, builder style:
    /// `Flume::new(log).use_view("count", count)?.use_view("by_key", index)?`.
    ///
    /// # Errors
    /// [`Error::DuplicateView`] when the name is taken; [`Error::Closed`].
    pub fn use_view<V: View<T>>(self, name: impl Into<String>, view: V) -> Result<Self> {
        self.add_view(name, view)?;
        Ok(self)
    }

    /// Adds a view under `name`, at any time, and returns its reader. The view loads its
    /// persisted state and catches up from its own `since` in the background; reads wait
    /// for it.
    ///
    /// # Errors
    /// [`Error::DuplicateView`] when the name is taken; [`Error::Closed`].
    pub fn add_view<V: View<T>>(&self, name: impl Into<String>, view: V) -> Result<V::Reader> {
        self.check_open()?;
        let name = name.into();
        let shared = ViewShared::with_damage(name.clone(), Some(self.inner.damage.clone()));
        let waiter = Waiter::new(Arc::clone(&shared), self.inner.log_since.clone());
        let reader = view.reader(ReaderContext::new(waiter, self.inner.reader.clone()));
        {
            let mut views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
            if views.contains_key(&name) {
                return Err(Error::DuplicateView { name });
            }
            // In the status from now on, loading until the driver reaches it.
            self.inner.status_tx.send_modify(|status| {
                status.views.insert(
                    name.clone(),
                    ViewStatus {
                        since: None,
                        state: ViewState::Loading,
                        progress: 0.0,
                        error: None,
                    },
                );
            });
            views.insert(
                name.clone(),
                Registered {
                    reader: Box::new(reader.clone()),
                    type_id: TypeId::of::<V::Reader>(),
                    type_name: std::any::type_name::<V::Reader>(),
                },
            );
        }
        self.inner
            .commands
            .send(Command::AddView {
                name,
                view: Box::new(view),
                shared,
            })
            .map_err(|_| Error::Closed)?;
        Ok(reader)
    }

    /// The reader of the view named `name`, as the type its view declared.
    ///
    /// # Errors
    /// [`Error::NoSuchView`]; [`Error::ViewType`] when `R` is not the view's reader type.
    pub fn view<R: Clone + 'static>(&self, name: &str) -> Result<R> {
        let views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
        let registered = views.get(name).ok_or_else(|| Error::NoSuchView {
            name: name.to_owned(),
        })?;
        if registered.type_id != TypeId::of::<R>() {
            return Err(Error::ViewType {
                name: name.to_owned(),
                requested: std::any::type_name::<R>(),
                actual: registered.type_name,
            });
        }
        registered
            .reader
            .downcast_ref::<R>()
            .cloned()
            .ok_or_else(|| Error::ViewType {
                name: name.to_owned(),
                requested: std::any::type_name::<R>(),
                actual: registered.type_name,
            })
    }

    /// The names of the registered views, sorted.
    pub fn view_names(&self) -> Vec<String> {
        let views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = views.keys().cloned().collect();
        names.sort();
        names
    }

    /// Encodes and appends one value at the log's default durability; returns its seq.
    /// A view read issued after this returns (with [`Wait::Log`](crate::Wait::Log))
    /// reflects the value.
    ///
    /// # Errors
    /// [`Error::Codec`] when the value does not encode; the log's errors.
    ///
    /// # Cancel safety
    /// If the future is dropped the value may or may not be appended.
    pub async fn append(&self, value: &T) -> Result<Seq> {
        self.check_open()?;
        let bytes = self.encode(value)?;
        self.inner.log.append_with(bytes, None).await
    }

    /// Like [`Flume::append`] at the given durability.
    ///
    /// # Errors
    /// As [`Flume::append`].
    pub async fn append_with(&self, value: &T, durability: Durability) -> Result<Seq> {
        self.check_open()?;
        let bytes = self.encode(value)?;
        self.inner.log.append_with(bytes, Some(durability)).await
    }

    /// Appends values with consecutive seqs, all or nothing; returns their seq range.
    ///
    /// # Errors
    /// [`Error::Codec`] when any value does not encode (nothing is appended then); the
    /// log's errors.
    pub async fn append_batch(&self, values: &[T]) -> Result<Range<Seq>> {
        self.check_open()?;
        let encoded = values
            .iter()
            .map(|v| self.encode(v))
            .collect::<Result<Vec<_>>>()?;
        self.inner.log.append_batch_with(encoded, None).await
    }

    /// Appends `value` only if the log's last seq is exactly `expected` (`None`: only
    /// into an empty log); returns its seq. The check and the append are one atomic step,
    /// so of several writers expecting the same tail exactly one wins; see
    /// [`Log::append_batch_if_with`](crate::Log::append_batch_if_with).
    ///
    /// ```
    /// use flume_core::{Error, Flume};
    /// use flumelog_memory::MemoryLog;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> flume_core::Result<()> {
    /// let db = Flume::<String>::new(MemoryLog::new());
    /// let tail = db.since(); // None: empty
    /// db.append_if(&"mine".to_string(), tail).await?;
    /// let late = db.append_if(&"theirs".to_string(), tail).await;
    /// assert!(matches!(late, Err(Error::Conflict { actual: Some(0), .. })));
    /// # db.close().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] with the actual last seq (nothing appended); [`Error::Codec`]
    /// when the value does not encode; the log's errors.
    ///
    /// # Cancel safety
    /// If the future is dropped the value may or may not be appended.
    pub async fn append_if(&self, value: &T, expected: Option<Seq>) -> Result<Seq> {
        self.check_open()?;
        let bytes = self.encode(value)?;
        let range = self
            .inner
            .log
            .append_batch_if_with(vec![bytes], expected, None)
            .await?;
        Ok(range.start)
    }

    /// [`Flume::append_batch`] only if the log's last seq is exactly `expected`: all of
    /// `values` or nothing, with consecutive seqs.
    ///
    /// # Errors
    /// As [`Flume::append_if`].
    pub async fn append_batch_if(&self, values: &[T], expected: Option<Seq>) -> Result<Range<Seq>> {
        self.check_open()?;
        let encoded = values
            .iter()
            .map(|v| self.encode(v))
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .log
            .append_batch_if_with(encoded, expected, None)
            .await
    }

    /// The value stored at `seq`, decoded and mapped.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Codec`]; the log's errors.
    pub async fn get(&self, seq: Seq) -> Result<T> {
        self.check_open()?;
        self.inner.reader.get(seq).await
    }

    /// The values selected by `opts`, decoded and mapped, with their seqs.
    pub fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<(Seq, T)>> {
        if let Err(e) = self.check_open() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.reader.stream(opts)
    }

    /// The values selected by `opts` as a live stream, with one
    /// [`Live::Synced`](crate::Live::Synced) once every record the log holds now (within
    /// the bounds) has been yielded. See [`Live`](crate::Live) for an example.
    pub fn follow(&self, opts: StreamOptions) -> BoxStream<'static, Result<crate::Live<(Seq, T)>>> {
        if let Err(e) = self.check_open() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.reader.follow(opts)
    }

    /// The seq of the last record in the log (`None`: empty).
    pub fn since(&self) -> Option<Seq> {
        *self.inner.log_since.borrow()
    }

    /// The underlying log.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.inner.log
    }

    /// A watch of the log's position and every view's state and progress.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// Resolves when every view added so far has loaded its stored state and caught up
    /// with the log as it was when `ready` was called: the way to wait for a database to be usable after
    /// opening it (instead of polling [`Flume::status`]).
    ///
    /// ```
    /// # use flume_core::Flume;
    /// # use flumelog_memory::MemoryLog;
    /// # use flumeview_reduce::Reduce;
    /// # #[tokio::main] async fn main() -> flume_core::Result<()> {
    /// let db = Flume::<u64>::new(MemoryLog::new()).use_view("count", Reduce::count(1))?;
    /// db.append_batch(&[1, 2, 3]).await?;
    /// db.ready().await?;
    /// assert!(db.status().borrow().is_ready());
    /// # db.close().await }
    /// ```
    ///
    /// # Errors
    /// [`Error::ViewFailed`] when a view has failed (also while waiting);
    /// [`Error::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future stops the wait.
    pub async fn ready(&self) -> Result<()> {
        self.check_open()?;
        let target = self.since();
        let names: Vec<String> = {
            let views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
            views.keys().cloned().collect()
        };
        // The status is published before readers are woken, so it is what to watch.
        let mut status = self.status();
        let mut outcome = Ok(());
        let waited = status
            .wait_for(|s| {
                for name in &names {
                    let Some(view) = s.views.get(name) else {
                        return false;
                    };
                    match view.state {
                        ViewState::Failed => {
                            let why = view.error.clone().unwrap_or_default();
                            outcome = Err(Error::ViewFailed {
                                name: name.clone(),
                                source: Arc::new(why.into()),
                            });
                            return true;
                        }
                        ViewState::Closed => {
                            outcome = Err(Error::Closed);
                            return true;
                        }
                        ViewState::Loading => return false,
                        _ if view.since < target => return false,
                        _ => {}
                    }
                }
                true
            })
            .await;
        match waited {
            Ok(_) => outcome,
            Err(_) => Err(Error::Closed),
        }
    }

    /// Makes every appended record durable.
    ///
    /// # Errors
    /// The log's errors; [`Error::Closed`].
    pub async fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.inner.log.sync().await
    }

    /// Wipes every view and rebuilds it from the start of the log, while appends and reads
    /// go on (reads wait for the rebuild to reach their target). Returns once every view
    /// has caught up with the log as it was when `rebuild` was called. Also gives failed
    /// views a new chance.
    ///
    /// # Errors
    /// [`Error::ViewFailed`] when a view fails during the rebuild; [`Error::Closed`].
    pub async fn rebuild(&self) -> Result<()> {
        self.request(|done| Command::Rebuild { done }).await
    }

    /// Truncates the log after `last` (`None`: empties it) and rebuilds every view that
    /// had applied records beyond it.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the log cannot revert; the log's errors; [`Error::Closed`].
    pub async fn revert(&self, last: Option<Seq>) -> Result<()> {
        self.request(|done| Command::Revert { last, done }).await
    }

    /// Stops the view driver, syncs the log, checkpoints every view and closes the log.
    /// Pending reads fail with [`Error::Closed`], and so does every later call.
    ///
    /// Close is prompt: it lets what views are doing finish (a batch being applied, a
    /// load, a checkpoint) but does not wait for views to catch up with the log; they
    /// resume from their checkpoint at the next open. Read a view with
    /// [`Wait::Log`](crate::Wait::Log) first to close caught up.
    ///
    /// Dropping the last handle without calling `close` closes the database the same
    /// way, in the background: the driver stops, syncs the log and checkpoints every
    /// view. If the runtime ends before that is done (the program returns right after
    /// the drop), the driver still checkpoints, as the runtime shuts down, every view
    /// whose state the log holds durably (after trying to sync it for up to 5 seconds).
    /// Call `close` to know when it is done and whether it succeeded.
    ///
    /// # Errors
    /// [`Error::Closed`] when already closed; the log's errors from syncing or closing.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Closed);
        }
        let (done, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Close { done }).is_err() {
            // The driver already stopped because the log was closed under it.
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    async fn request(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<()>>) -> Command<T>,
    ) -> Result<()> {
        self.check_open()?;
        let (done, rx) = oneshot::channel();
        self.inner
            .commands
            .send(command(done))
            .map_err(|_| Error::Closed)?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn encode(&self, value: &T) -> Result<bytes::Bytes> {
        self.inner
            .decoder
            .codec
            .encode(value)
            .map_err(|e| Error::codec(None, e))
    }
}
