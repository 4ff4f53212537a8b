//! [`NatsLog`]: the [`Log`] implementation over one JetStream stream.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use flume_core::{Durability, Error, Log, RawRecord, Result, Seq, StreamOptions};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{other, NatsError};
use crate::format::{self, Entry, Shape};
use crate::Options;

/// How many records a stream reads per round of message gets.
const CHUNK: u64 = 256;

/// From how many records on a forward stream reads its history through an ordered
/// consumer rather than by message gets.
const CONSUMER_THRESHOLD: u64 = 1024;

/// How long the stream's tail must stay below this handle's `since` before appends are
/// refused with [`NatsError::TailBehind`] (see [`Inner::refresh`]).
const BEHIND_PATIENCE: Duration = Duration::from_secs(1);

/// Room left in a message for the headers this crate adds.
const HEADER_ROOM: usize = 512;

/// A [`Log`] stored in a NATS JetStream stream. Cheap to clone: clones share one
/// connection, one writer and one `since` channel.
///
/// See the [crate documentation](crate) for the mapping of seqs to stream sequences, how
/// batches stay all-or-nothing, and what an acknowledgement guarantees.
#[derive(Debug, Clone)]
pub struct NatsLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    js: jetstream::Context,
    stream: stream::Stream,
    name: String,
    subject: String,
    options: Options,
    max_payload: usize,
    since: Arc<Tails>,
    writer: tokio::sync::Mutex<Writer>,
    closed: CancellationToken,
    id_prefix: String,
    next_id: AtomicU64,
    fairness: Arc<Fairness>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// What the (one, in-process) writer believes about the stream's tail.
#[derive(Debug)]
struct Writer {
    /// The last stream sequence, which completes its batch (0: empty stream).
    tail: u64,
    /// The message id of the last message this writer sent since the last refresh: the
    /// next message must follow it directly (guards pipelined appends).
    last_id: Option<String>,
    /// The tail must be read again from the server before the next write.
    stale: bool,
    /// Incremented by every refresh.
    generation: u64,
}

/// Turn-taking between writers (of any process) on one stream.
///
/// Every write names the tail it expects, so a writer whose pipeline keeps the stream busy
/// wins every race for the tail, and another process's append, always one round trip
/// behind, could be refused until its timeout. So an append refused for a moved tail for
/// longer than a pause publishes a *yield request* (plain NATS, not stored) on
/// `_flume.yield.<stream>`, saying how long it has been waiting. Every other handle on the
/// stream then holds back, for that pause, each append that has waited less (new appends
/// included), and the oldest waiters take the tail in the gap: the oldest waiter of all
/// never holds back, so turns go roughly oldest first. A pause lasts ten of the
/// requester's acknowledgement round trips (between 10 ms and 500 ms).
#[derive(Debug)]
struct Fairness {
    /// The yield subject of the stream.
    subject: String,
    /// This handle's id prefix, so that it ignores its own requests.
    own: String,
    /// The yield asked of this handle: until when, and since when (on this machine's
    /// clock) the asking append has been waiting.
    hold: std::sync::Mutex<Option<(Instant, Instant)>>,
    /// When this handle last asked the others to yield.
    last_request: std::sync::Mutex<Option<Instant>>,
    /// Appends of this handle that lost a race and have not answered yet, by start time.
    losers: std::sync::Mutex<std::collections::BTreeSet<(Instant, u64)>>,
    next_loser: AtomicU64,
    /// Smoothed publish-to-acknowledgement time of this handle, in microseconds.
    rtt_micros: AtomicU64,
}

/// An append of this handle that lost a race for the tail, registered (for the age it
/// announces in yield requests) until it answers.
#[derive(Debug)]
struct Loser<'a> {
    fairness: &'a Fairness,
    key: (Instant, u64),
}

/// How one append has fared against other writers so far.
#[derive(Default)]
struct Race<'a> {
    /// Attempts refused because another writer took the tail.
    conflicts: u32,
    /// Registered at the first lost race, for the turn-taking (see `Fairness`); dropping
    /// it (when the append answers) leaves the queue of losers.
    loser: Option<Loser<'a>>,
}

impl Drop for Loser<'_> {
    fn drop(&mut self) {
        Fairness::lock(&self.fairness.losers).remove(&self.key);
    }
}

impl Fairness {
    fn new(subject: String, own: String) -> Self {
        Fairness {
            subject,
            own,
            hold: std::sync::Mutex::new(None),
            last_request: std::sync::Mutex::new(None),
            losers: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            next_loser: AtomicU64::new(0),
            rtt_micros: AtomicU64::new(0),
        }
    }

    fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pause this handle asks of the others.
    fn pause(&self) -> Duration {
        let rtt = Duration::from_micros(self.rtt_micros.load(Ordering::Relaxed));
        (rtt * 10).clamp(Duration::from_millis(10), Duration::from_millis(500))
    }

    fn acknowledged_in(&self, took: Duration) {
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.rtt_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.rtt_micros.store(new, Ordering::Relaxed);
    }

    /// Registers an append that started at `started` and just lost a race.
    fn lost(&self, started: Instant) -> Loser<'_> {
        let key = (started, self.next_loser.fetch_add(1, Ordering::Relaxed));
        Self::lock(&self.losers).insert(key);
        Loser {
            fairness: self,
            key,
        }
    }

    /// Since when this handle's oldest unanswered loser has been waiting.
    fn oldest_loser(&self) -> Option<Instant> {
        Self::lock(&self.losers).first().map(|(t, _)| *t)
    }

    /// Takes note of a yield request `<id prefix> <pause ms> <waiting ms>` of another
    /// handle.
    fn requested(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let mut fields = text.split(' ');
        let (Some(who), Some(ms), Some(age)) = (fields.next(), fields.next(), fields.next()) else {
            return;
        };
        let (Ok(ms), Ok(age)) = (ms.parse::<u64>(), age.parse::<u64>()) else {
            return;
        };
        if who == self.own {
            return;
        }
        let now = Instant::now();
        let until = now + Duration::from_millis(ms.min(500));
        let since = now.checked_sub(Duration::from_millis(age)).unwrap_or(now);
        let mut hold = Self::lock(&self.hold);
        *hold = match *hold {
            Some((u, s)) if u > now => Some((u.max(until), s.min(since))),
            _ => Some((until, since)),
        };
    }

    /// The request to send after a lost race by an append that started at `started`,
    /// unless it has waited less than a pause, or this handle asked within the last half
    /// pause.
    fn request(&self, started: Instant) -> Option<Bytes> {
        let pause = self.pause();
        let now = Instant::now();
        let waiting = now.saturating_duration_since(self.oldest_loser().unwrap_or(started));
        if waiting < pause {
            return None;
        }
        let mut last = Self::lock(&self.last_request);
        if last.is_some_and(|t| now < t + pause / 2) {
            return None;
        }
        *last = Some(now);
        Some(Bytes::from(format!(
            "{} {} {}",
            self.own,
            pause.as_millis(),
            waiting.as_millis()
        )))
    }

    /// Until when an append of this handle that started at `started` waits: while
    /// another handle's append that has waited longer asked for a pause.
    fn held_until(&self, started: Instant) -> Option<Instant> {
        let now = Instant::now();
        let (until, since) = Self::lock(&self.hold).filter(|(u, _)| *u > now)?;
        let ours = self.oldest_loser().map_or(started, |o| o.min(started));
        (since < ours).then_some(until)
    }
}

/// Receives other handles' yield requests (see [`Fairness`]) until the log closes.
async fn listen_for_yields(
    client: async_nats::Client,
    fairness: Arc<Fairness>,
    closed: CancellationToken,
) {
    let mut requests = match client.subscribe(fairness.subject.clone()).await {
        Ok(requests) => requests,
        Err(e) => {
            tracing::warn!(subject = %fairness.subject, error = %e, "cannot subscribe to yield requests; appends of other processes may wait longer");
            return;
        }
    };
    loop {
        tokio::select! {
            request = requests.next() => match request {
                Some(request) => fairness.requested(&request.payload),
                None => return,
            },
            _ = closed.cancelled() => return,
        }
    }
}

/// One message to append, under the id that all its attempts share.
#[derive(Debug)]
struct Attempts {
    id: String,
    /// The tails that earlier attempts without an answer (timed out, connection lost)
    /// expected: each may have been stored right after its tail (see
    /// [`Inner::find_attempt`]). Attempts the server refused are not listed.
    tried: Vec<u64>,
}

impl Attempts {
    fn new(id: String) -> Self {
        Attempts {
            id,
            tried: Vec::new(),
        }
    }
}

/// How one publish attempt ended.
enum Attempt {
    /// The expected last sequence (or message id) did not match.
    Conflict,
    /// No answer, no leader, a broken connection: worth retrying.
    Transient(String),
    /// Retrying cannot help.
    Fatal(NatsError),
}

impl NatsLog {
    /// Connects to `url` (for example `"nats://127.0.0.1:4222"`, or several URLs separated
    /// by commas) and opens the log described by `options`.
    ///
    /// # Errors
    /// [`NatsError::Unreachable`] when no server answers within the request timeout; see
    /// [`NatsLog::open`] for the rest.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the connection; nothing is written, except that an
    /// interrupted batch may have been completed (see [`NatsLog::open`]).
    pub async fn connect(url: &str, options: Options) -> Result<NatsLog, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(options.request_timeout)
            .request_timeout(Some(options.request_timeout))
            .ping_interval(options.request_timeout)
            .max_reconnects(None)
            .connect(
                url.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| NatsError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        NatsLog::open(client, options).await
    }

    /// Opens the log described by `options` on an existing client connection, creating
    /// the stream when it is missing and [`Options::create`] is on.
    ///
    /// The stream is created with file storage, [`Options::replicas`] replicas, no limits
    /// (nothing expires), deletes and purges denied, direct gets allowed and the configured
    /// duplicate window. An existing stream is checked for the same properties.
    ///
    /// If a writer crashed in the middle of a batch (its batch message stored, some fillers
    /// missing), opening completes the batch, so that its records become visible.
    ///
    /// # Errors
    /// [`NatsError::StreamMissing`], [`NatsError::Misconfigured`] (limits, storage, deletes
    /// allowed, direct get off, gaps in the stream), [`NatsError::Unavailable`] (no
    /// JetStream, no leader), [`NatsError::Foreign`] when the stream's last message is not
    /// in this crate's format.
    ///
    /// # Cancel safety
    /// As for [`NatsLog::connect`].
    pub async fn open(client: async_nats::Client, options: Options) -> Result<NatsLog, NatsError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .ack_timeout(options.request_timeout)
            .build(client.clone());
        let name = options.stream.clone();
        let subject = options.subject();
        let stream = open_stream(&js, &options, &subject).await?;
        let max_payload = client.server_info().max_payload;
        let id_prefix = format!("{:016x}", rand::random::<u64>());
        let fairness = Arc::new(Fairness::new(
            format!("_flume.yield.{name}"),
            id_prefix.clone(),
        ));
        let inner = Arc::new(Inner {
            js,
            stream,
            name,
            subject,
            options,
            max_payload,
            since: Arc::new(Tails::default()),
            writer: tokio::sync::Mutex::new(Writer {
                tail: 0,
                last_id: None,
                stale: true,
                generation: 0,
            }),
            closed: CancellationToken::new(),
            id_prefix,
            next_id: AtomicU64::new(0),
            fairness: Arc::clone(&fairness),
        });
        tokio::spawn(listen_for_yields(client, fairness, inner.closed.clone()));
        let tail = {
            let mut w = inner.writer.lock().await;
            inner
                .refresh(&mut w, Instant::now() + inner.options.append_timeout)
                .await?;
            w.tail
        };
        tracing::debug!(stream = %inner.name, tail, "opened the NATS log");
        tokio::spawn(follow(
            inner.stream.clone(),
            Arc::clone(&inner.since),
            tail + 1,
            inner.closed.clone(),
            inner.name.clone(),
            inner.options.follow_interval,
        ));
        Ok(NatsLog { inner })
    }

    /// The JetStream stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.name
    }

    /// Appends `record` only if the log ends at `last` (`None`: the log is empty), for
    /// optimistic writers: read, decide, append if nothing changed meanwhile. Checked by
    /// the server (`Nats-Expected-Last-Sequence`), so it holds across processes.
    ///
    /// # Errors
    /// [`NatsError::Conflict`] when the log ends elsewhere (with the tail this handle then
    /// knows); the errors of [`Log::append`] otherwise.
    ///
    /// # Cancel safety
    /// If the future is dropped the record may or may not be appended.
    pub async fn append_if(&self, last: Option<Seq>, record: Bytes) -> Result<Seq, NatsError> {
        self.inner.append_one(record, Some(last)).await
    }

    /// [`NatsLog::append_if`] for a batch: appended, all or nothing, only if the log ends
    /// at `last`.
    ///
    /// # Errors
    /// As for [`NatsLog::append_if`]; [`NatsError::TooLarge`] when the framed batch exceeds
    /// the server's `max_payload`.
    ///
    /// # Cancel safety
    /// If the future is dropped the batch may or may not be appended (as a whole).
    pub async fn append_batch_if(
        &self,
        last: Option<Seq>,
        records: Vec<Bytes>,
    ) -> Result<Range<Seq>, NatsError> {
        self.inner.append_batch(records, Some(last)).await
    }

    fn reader(&self) -> Reader {
        Reader {
            stream: self.inner.stream.clone(),
            name: self.inner.name.clone(),
            since: self.inner.since.subscribe(),
            closed: self.inner.closed.clone(),
            concurrency: self.inner.options.read_concurrency.max(1),
            patience: self.inner.options.append_timeout,
            progress: self.inner.options.progress_timeout,
            cache: None,
        }
    }
}

/// Gets or creates the stream and checks its configuration.
async fn open_stream(
    js: &jetstream::Context,
    options: &Options,
    subject: &str,
) -> Result<stream::Stream, NatsError> {
    let name = &options.stream;
    let unavailable = |what: &'static str, e: &dyn std::fmt::Display| {
        tracing::warn!(stream = %name, error = %e, "{what} failed");
        NatsError::Unavailable {
            stream: name.clone(),
            what,
            waited: options.request_timeout,
            reason: e.to_string(),
        }
    };
    let mut stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(e) => match e.kind() {
            async_nats::jetstream::context::GetStreamErrorKind::JetStream(err)
                if err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                if !options.create {
                    return Err(NatsError::StreamMissing {
                        stream: name.clone(),
                    });
                }
                let config = stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.to_owned()],
                    storage: stream::StorageType::File,
                    num_replicas: options.replicas,
                    retention: stream::RetentionPolicy::Limits,
                    max_age: Duration::ZERO,
                    max_messages: -1,
                    max_bytes: -1,
                    max_messages_per_subject: -1,
                    discard: stream::DiscardPolicy::New,
                    duplicate_window: options.duplicate_window,
                    deny_delete: true,
                    deny_purge: true,
                    allow_direct: true,
                    description: Some("flume-rs log (flumelog-nats)".into()),
                    ..Default::default()
                };
                tracing::info!(stream = %name, replicas = options.replicas, "creating the JetStream stream");
                match js.create_stream(config).await {
                    Ok(stream) => stream,
                    // Another process created it meanwhile.
                    Err(_) => js
                        .get_stream(name)
                        .await
                        .map_err(|e| other("creating the stream", e))?,
                }
            }
            async_nats::jetstream::context::GetStreamErrorKind::Request => {
                return Err(unavailable("stream lookup", &e));
            }
            _ => return Err(other("stream lookup", e)),
        },
    };
    let info = stream
        .info()
        .await
        .map_err(|e| unavailable("stream info", &e))?;
    check_config(info, subject, options.append_timeout)?;
    Ok(stream)
}

/// Refuses a stream whose configuration would break the log's guarantees.
fn check_config(
    info: &stream::Info,
    subject: &str,
    append_timeout: Duration,
) -> Result<(), NatsError> {
    let c = &info.config;
    let problem = if c.subjects != [subject.to_owned()] {
        Some(format!(
            "it stores subjects {:?}, where the log needs exactly [{subject:?}]",
            c.subjects
        ))
    } else if c.storage != stream::StorageType::File {
        Some("it keeps messages in memory; the log needs file storage".into())
    } else if c.max_age != Duration::ZERO
        || c.max_messages > 0
        || c.max_bytes > 0
        || c.max_messages_per_subject > 0
    {
        Some("it has limits (max_age, max_msgs, max_bytes or max_msgs_per_subject) under which old records would expire".into())
    } else if c.retention != stream::RetentionPolicy::Limits {
        Some("its retention is not `limits`, so acknowledged records could disappear".into())
    } else if !c.deny_delete || !c.deny_purge {
        Some("it allows deletes or purges, which would leave gaps in the seqs".into())
    } else if !c.allow_direct {
        Some("direct gets are off (allow_direct: false)".into())
    } else if c.duplicate_window <= append_timeout {
        Some(format!(
            "its duplicate window ({:?}) is not longer than the append timeout ({append_timeout:?}), \
             so a retried append could be stored twice; raise the window or lower \
             Options::append_timeout",
            c.duplicate_window
        ))
    } else if info.state.messages != info.state.last_sequence {
        Some(format!(
            "it holds {} messages for {} sequences: some were deleted, so seqs would have gaps",
            info.state.messages, info.state.last_sequence
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(NatsError::Misconfigured {
            stream: c.name.clone(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The `since` and `durable` channels. Every acknowledged record is as durable as it
/// gets, so both always carry the same value; they are two channels all the same, so that
/// a caller holding a borrow of one may borrow the other while an append raises them.
#[derive(Debug)]
struct Tails {
    since: watch::Sender<Option<Seq>>,
    durable: watch::Sender<Option<Seq>>,
}

impl Default for Tails {
    fn default() -> Self {
        Tails {
            since: watch::channel(None).0,
            durable: watch::channel(None).0,
        }
    }
}

impl Tails {
    fn current(&self) -> Option<Seq> {
        *self.since.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Option<Seq>> {
        self.since.subscribe()
    }
}

/// Raises `since` (then `durable`) to `seq`, never lowering them.
fn raise(tails: &Tails, seq: Seq) {
    for tx in [&tails.since, &tails.durable] {
        tx.send_if_modified(|v| {
            if v.is_none_or(|x| seq > x) {
                *v = Some(seq);
                true
            } else {
                false
            }
        });
    }
}

fn classify(e: async_nats::jetstream::context::PublishError, size: usize, max: usize) -> Attempt {
    match e.kind() {
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
            Attempt::Conflict
        }
        PublishErrorKind::MaxPayloadExceeded => Attempt::Fatal(NatsError::TooLarge {
            size: size as u64,
            max: max as u64,
        }),
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::StreamNotFound
        | PublishErrorKind::MaxAckPending => Attempt::Transient(e.to_string()),
        PublishErrorKind::Other => {
            let text = e.to_string();
            let lower = text.to_lowercase();
            if lower.contains("maximum payload") || lower.contains("max payload") {
                Attempt::Fatal(NatsError::TooLarge {
                    size: size as u64,
                    max: max as u64,
                })
            } else {
                // "JetStream system temporarily unavailable", "no suitable peers", a leader
                // change...: anything else is retried until the append timeout, and then
                // reported with this message.
                Attempt::Transient(text)
            }
        }
    }
}

impl Inner {
    fn check_open(&self) -> Result<(), NatsError> {
        if self.closed.is_cancelled() {
            Err(NatsError::Closed)
        } else {
            Ok(())
        }
    }

    fn new_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id_prefix)
    }

    fn unavailable(&self, what: &'static str, reason: &str) -> NatsError {
        NatsError::Unavailable {
            stream: self.name.clone(),
            what,
            waited: self.options.append_timeout,
            reason: reason.to_owned(),
        }
    }

    /// Sends one message that must follow the writer's tail directly.
    async fn send(
        &self,
        w: &Writer,
        id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, Attempt> {
        let size = payload.len();
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(id);
        publish = if w.tail == 0 {
            // `Nats-Expected-Last-Sequence: 0` is ignored by the server; an empty subject
            // (the stream's only one) is how "expect an empty stream" is said.
            publish.expected_last_subject_sequence(0)
        } else {
            publish.expected_last_sequence(w.tail)
        };
        if let Some(last) = &w.last_id {
            publish = publish.expected_last_message_id(last);
        }
        self.js
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(|e| classify(e, size, self.max_payload))
    }

    /// Marks the writer's view of the tail stale after a failed write, unless a refresh
    /// has happened since that write was sent.
    async fn mark_stale(&self, generation: u64) {
        let mut w = self.writer.lock().await;
        if w.generation == generation {
            w.stale = true;
        }
    }

    /// Backs off before a retry, or fails once the deadline has passed.
    async fn back_off(
        &self,
        deadline: Instant,
        attempt: &mut u32,
        what: &'static str,
        reason: &str,
    ) -> Result<(), NatsError> {
        tracing::debug!(stream = %self.name, %reason, "{what}: retrying");
        if Instant::now() >= deadline {
            return Err(self.unavailable(what, reason));
        }
        if *attempt >= 1 && reason.contains("timed out") {
            // Acknowledgements keep timing out: the server this connection talks to may
            // hang (paused, partitioned) without the socket failing. Move to another one.
            tracing::info!(stream = %self.name, "acknowledgements time out; reconnecting to another server");
            let client = self.js.client();
            tokio::spawn(async move {
                let _ = client.force_reconnect().await;
            });
        }
        let delay = Duration::from_millis(25 << (*attempt).min(5));
        *attempt += 1;
        tokio::select! {
            _ = tokio::time::sleep(delay.min(deadline - Instant::now())) => Ok(()),
            _ = self.closed.cancelled() => Err(NatsError::Closed),
        }
    }

    /// Reads the tail from the stream leader and completes a half-written batch.
    ///
    /// A tail below this handle's `since` is reported ([`NatsError::TailBehind`]) only
    /// when it is still there after [`BEHIND_PATIENCE`] (or half the append timeout, if
    /// shorter): in a cluster, the leader may acknowledge a message, or a replica deliver
    /// it, a moment before the leader serves it.
    async fn refresh(&self, w: &mut Writer, deadline: Instant) -> Result<(), NatsError> {
        let mut attempt = 0;
        let mut behind_since: Option<Instant> = None;
        let patience = BEHIND_PATIENCE.min(self.options.append_timeout / 2);
        loop {
            match self.try_refresh(w).await {
                Ok(()) => {
                    w.stale = false;
                    w.last_id = None;
                    w.generation += 1;
                    if w.tail > 0 {
                        raise(&self.since, w.tail - 1);
                    }
                    return Ok(());
                }
                Err(Attempt::Fatal(e @ NatsError::TailBehind { .. })) => {
                    let first = *behind_since.get_or_insert_with(Instant::now);
                    if first.elapsed() >= patience {
                        tracing::error!(stream = %self.name, error = %e, "refusing to append");
                        return Err(e);
                    }
                    self.back_off(deadline, &mut attempt, "refresh", &e.to_string())
                        .await?
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Conflict) => {
                    self.back_off(deadline, &mut attempt, "refresh", "conflict")
                        .await?
                }
                Err(Attempt::Transient(reason)) => {
                    self.back_off(deadline, &mut attempt, "refresh", &reason)
                        .await?
                }
            }
        }
    }

    async fn try_refresh(&self, w: &mut Writer) -> Result<(), Attempt> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| Attempt::Transient(e.to_string()))?;
        let last = info.state.last_sequence;
        if let Some(seen) = self.since.current() {
            // `since` only ever shows stored records (acknowledged, or read from the
            // stream): a tail below it means the stream lost them, or is a new one. But
            // the stream's info can lag a moment behind its messages, so the message
            // itself is asked for before concluding.
            if last <= seen {
                match self.stream.get_raw_message(seen + 1).await {
                    Ok(_) => {
                        return Err(Attempt::Transient(
                            "the stream's info lags behind its messages".into(),
                        ))
                    }
                    Err(e) if no_message(&e) => {
                        tracing::debug!(stream = %self.name, last, seen, "the stream's tail is below a seq this handle saw stored");
                        return Err(Attempt::Fatal(NatsError::TailBehind {
                            stream: self.name.clone(),
                            tail: last.checked_sub(1),
                            seen,
                        }));
                    }
                    Err(e) => return Err(Attempt::Transient(e.to_string())),
                }
            }
        }
        if last == 0 {
            w.tail = 0;
            return Ok(());
        }
        let message = self
            .stream
            .get_raw_message(last)
            .await
            .map_err(|e| Attempt::Transient(e.to_string()))?;
        let shape = format::shape(Some(&message.headers), last).map_err(|reason| {
            Attempt::Fatal(NatsError::Foreign {
                stream: self.name.clone(),
                sequence: last,
                reason,
            })
        })?;
        let end = shape.batch_end(last);
        w.tail = last;
        w.last_id = None;
        if end > last {
            let (batch, len) = match shape {
                Shape::Batch { len } => (last, len),
                Shape::Filler { batch, len } => (batch, len),
                Shape::Record => unreachable!("a record ends its own batch"),
            };
            tracing::info!(stream = %self.name, batch, len, "completing a batch a writer left half-written");
            self.send_fillers(w, batch, len).await?;
        }
        Ok(())
    }

    /// Prepares a retry of the message `id`: reads the tail again and looks for an earlier
    /// attempt among the stored messages. Returns its stream sequence when one was stored.
    ///
    /// The server's duplicate window normally answers a retry with "duplicate", but not
    /// always: a new stream leader may not know an id its predecessor stored just before
    /// losing the lead, and then refuses the retry for a wrong last sequence instead. Each
    /// attempt names the tail it expects, so it can only have been stored right after that
    /// tail: one read per earlier attempt settles it. Without this check the retry would
    /// be sent again against the new tail and the record stored twice.
    async fn find_attempt(
        &self,
        w: &mut Writer,
        deadline: Instant,
        id: &str,
        tails: &[u64],
    ) -> Result<Option<u64>, NatsError> {
        let mut attempt = 0;
        'retry: loop {
            // Only a tail read from the server tells which messages are stored.
            self.refresh(w, deadline).await?;
            for &tail in tails {
                let sequence = tail + 1;
                if sequence > w.tail {
                    continue;
                }
                match self.stream.get_raw_message(sequence).await {
                    Ok(message) => {
                        let stored = message
                            .headers
                            .get(async_nats::header::NATS_MESSAGE_ID)
                            .map(|v| v.as_str());
                        if stored == Some(id) {
                            tracing::info!(stream = %self.name, sequence, "a retried append was already stored under a previous leader");
                            return Ok(Some(sequence));
                        }
                    }
                    Err(e) => {
                        w.stale = true;
                        self.back_off(deadline, &mut attempt, "checking a retry", &e.to_string())
                            .await?;
                        continue 'retry;
                    }
                }
            }
            return Ok(None);
        }
    }

    /// Sends the fillers of the batch at `batch` after the writer's tail (up to the
    /// batch's end) and waits for their acknowledgements. Filler ids depend only on their
    /// position, so that two processes completing one batch store each filler once.
    async fn send_fillers(&self, w: &mut Writer, batch: u64, len: u64) -> Result<(), Attempt> {
        let acks = self.pipeline_fillers(w, batch, len).await?;
        for ack in acks {
            ack.await.map_err(|e| classify(e, 0, self.max_payload))?;
        }
        Ok(())
    }

    /// Sends the fillers without waiting, advancing the writer's tail past them.
    async fn pipeline_fillers(
        &self,
        w: &mut Writer,
        batch: u64,
        len: u64,
    ) -> Result<Vec<jetstream::context::PublishAckFuture>, Attempt> {
        let end = batch + len - 1;
        let mut acks = Vec::new();
        while w.tail < end {
            let seq = w.tail + 1;
            let mut headers = HeaderMap::new();
            headers.insert(format::FILLER, format!("{batch}/{len}").as_str());
            let id = format!("flume-filler-{batch}-{seq}");
            // Fillers are chained by sequence only: any writer may have sent the previous one.
            let previous = w.last_id.take();
            let ack = self.send(w, &id, headers, Bytes::new()).await;
            w.last_id = previous;
            acks.push(ack?);
            w.tail = seq;
            w.last_id = Some(id);
        }
        Ok(acks)
    }

    /// Locks the writer, waiting for this process's other appends no later than `deadline`.
    async fn lock_writer(
        &self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<tokio::sync::MutexGuard<'_, Writer>, NatsError> {
        tokio::time::timeout_at(deadline, self.writer.lock())
            .await
            .map_err(|_| {
                self.unavailable(
                    what,
                    "this process's other appends held the writer until the deadline",
                )
            })
    }

    /// Runs an append, cutting it off one request timeout after `deadline` whatever it
    /// waits for: the documented bound of [`Options::append_timeout`] holds even if a
    /// request outlives its own timeout. A cut-off append leaves the writer in a state
    /// that the next write checks (every write names the tail it expects).
    async fn bounded<T>(
        &self,
        what: &'static str,
        deadline: Instant,
        append: impl std::future::Future<Output = Result<T, NatsError>>,
    ) -> Result<T, NatsError> {
        match tokio::time::timeout_at(deadline + self.options.request_timeout, append).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(stream = %self.name, "{what}: no answer within the append and request timeouts");
                Err(NatsError::Unavailable {
                    stream: self.name.clone(),
                    what,
                    waited: self.options.append_timeout + self.options.request_timeout,
                    reason: "no acknowledgement or error arrived in time; the record may or may \
                             not be stored"
                        .into(),
                })
            }
        }
    }

    /// Before each attempt of an append that started at `started`: waits while another
    /// writer whose append has waited longer asked this one to yield (see [`Fairness`]).
    /// Returns whether it waited.
    async fn yield_to_others(
        &self,
        deadline: Instant,
        started: Instant,
    ) -> Result<bool, NatsError> {
        let Some(until) = self.fairness.held_until(started) else {
            return Ok(false);
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until.min(deadline)) => Ok(true),
            _ = self.closed.cancelled() => Err(NatsError::Closed),
        }
    }

    /// After an attempt refused for a moved tail (another writer stored a message
    /// there): counts the conflict, registers the append as a loser (once) for the
    /// turn-taking, asks the other writers to yield, then waits a short random time
    /// (growing with the conflicts) before the next attempt, or fails once the deadline
    /// has passed.
    async fn lost_race<'a>(
        &'a self,
        deadline: Instant,
        started: Instant,
        race: &mut Race<'a>,
        maybe_stored: bool,
    ) -> Result<(), NatsError> {
        race.conflicts += 1;
        race.loser
            .get_or_insert_with(|| self.fairness.lost(started));
        let conflicts = race.conflicts;
        if Instant::now() >= deadline {
            return Err(NatsError::Contended {
                stream: self.name.clone(),
                waited: self.options.append_timeout,
                conflicts,
                maybe_stored,
            });
        }
        if let Some(request) = self.fairness.request(started) {
            let client = self.js.client();
            if let Err(e) = client.publish(self.fairness.subject.clone(), request).await {
                tracing::debug!(stream = %self.name, error = %e, "cannot ask the other writers to yield");
            }
        }
        let ceiling = Duration::from_millis(2 << conflicts.min(5));
        let delay = ceiling.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        tracing::trace!(stream = %self.name, conflicts, ?delay, "another writer took the tail; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay.min(deadline - Instant::now())) => Ok(()),
            _ = self.closed.cancelled() => Err(NatsError::Closed),
        }
    }

    /// The answer to a conditional append that found another tail: an earlier attempt of
    /// it, if one without an answer was stored after all, else a conflict naming the
    /// tail read from the stream leader.
    async fn settle_conflict(
        &self,
        deadline: Instant,
        expected: Option<Seq>,
        id: &str,
        tried: &[u64],
    ) -> Result<u64, NatsError> {
        let mut w = self.lock_writer(deadline, "conditional append").await?;
        w.stale = true;
        if let Some(sequence) = self.find_attempt(&mut w, deadline, id, tried).await? {
            return Ok(sequence);
        }
        Err(NatsError::Conflict {
            expected,
            actual: w.tail.checked_sub(1),
        })
    }

    /// [`settle_conflict`](Self::settle_conflict) for a single record: its seq when an
    /// earlier attempt was stored after all.
    async fn settle_one(
        &self,
        deadline: Instant,
        expected: Option<Seq>,
        id: &str,
        tried: &[u64],
    ) -> Result<Seq, NatsError> {
        let seq = self.settle_conflict(deadline, expected, id, tried).await? - 1;
        raise(&self.since, seq);
        Ok(seq)
    }

    async fn append_one(
        &self,
        record: Bytes,
        condition: Option<Option<Seq>>,
    ) -> Result<Seq, NatsError> {
        self.append_one_as(record, condition, Attempts::new(self.new_id()))
            .await
    }

    /// [`Inner::append_one`] for a message that may have been sent before (`attempts`).
    async fn append_one_as(
        &self,
        record: Bytes,
        condition: Option<Option<Seq>>,
        attempts: Attempts,
    ) -> Result<Seq, NatsError> {
        self.check_open()?;
        let size = record.len();
        if size + HEADER_ROOM > self.max_payload {
            return Err(NatsError::TooLarge {
                size: size as u64,
                max: self.max_payload.saturating_sub(HEADER_ROOM) as u64,
            });
        }
        let deadline = Instant::now() + self.options.append_timeout;
        self.bounded(
            "append",
            deadline,
            self.append_one_until(record, condition, attempts, deadline),
        )
        .await
    }

    async fn append_one_until(
        &self,
        record: Bytes,
        condition: Option<Option<Seq>>,
        attempts: Attempts,
        deadline: Instant,
    ) -> Result<Seq, NatsError> {
        let Attempts { id, mut tried } = attempts;
        let size = record.len();
        let mut attempt = 0;
        let started = deadline - self.options.append_timeout;
        let mut race = Race::default();
        loop {
            // A conditional append never waits for others: it either holds or conflicts.
            let waited = condition.is_none() && self.yield_to_others(deadline, started).await?;
            let (ack, generation, tail) = {
                let mut w = self.lock_writer(deadline, "append").await?;
                self.check_open()?;
                if waited {
                    // Another writer appended in the pause: read the tail it left.
                    w.stale = true;
                }
                if !tried.is_empty() {
                    if let Some(sequence) = self.find_attempt(&mut w, deadline, &id, &tried).await?
                    {
                        raise(&self.since, sequence - 1);
                        return Ok(sequence - 1);
                    }
                } else if w.stale {
                    self.refresh(&mut w, deadline).await?;
                }
                if let Some(expected) = condition {
                    let want = expected.map_or(0, |s| s.saturating_add(1));
                    if w.tail != want {
                        // Our view may be old: the server has the last word.
                        w.tail = want;
                        w.last_id = None;
                        w.stale = true;
                    }
                }
                let tail = w.tail;
                match self.send(&w, &id, HeaderMap::new(), record.clone()).await {
                    Ok(ack) => {
                        w.tail += 1;
                        w.last_id = Some(id.clone());
                        (ack, w.generation, tail)
                    }
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Conflict) => {
                        w.stale = true;
                        drop(w);
                        if let Some(expected) = condition {
                            return self.settle_one(deadline, expected, &id, &tried).await;
                        }
                        self.lost_race(deadline, started, &mut race, !tried.is_empty())
                            .await?;
                        continue;
                    }
                    Err(Attempt::Transient(reason)) => {
                        // Perhaps sent: a retry must look for it.
                        w.stale = true;
                        if tried.last() != Some(&tail) {
                            tried.push(tail);
                        }
                        drop(w);
                        self.back_off(deadline, &mut attempt, "append", &reason)
                            .await?;
                        continue;
                    }
                }
            };
            let sent = Instant::now();
            match ack.await {
                Ok(ack) if ack.sequence > 0 => {
                    self.fairness.acknowledged_in(sent.elapsed());
                    if ack.duplicate {
                        // An earlier attempt was stored: the writer's tail counted this one.
                        tracing::debug!(stream = %self.name, sequence = ack.sequence, "a retried append was already stored");
                        self.mark_stale(generation).await;
                    }
                    let seq = ack.sequence - 1;
                    raise(&self.since, seq);
                    return Ok(seq);
                }
                Ok(_) => {
                    // A duplicate still in flight on the server: ask again.
                    self.back_off(deadline, &mut attempt, "append", "duplicate in flight")
                        .await?;
                }
                Err(e) => match classify(e, size, self.max_payload) {
                    Attempt::Conflict => {
                        // Refused: this attempt is not stored.
                        self.mark_stale(generation).await;
                        if let Some(expected) = condition {
                            return self.settle_one(deadline, expected, &id, &tried).await;
                        }
                        self.lost_race(deadline, started, &mut race, !tried.is_empty())
                            .await?;
                    }
                    Attempt::Transient(reason) => {
                        // No answer: the attempt may be stored.
                        if tried.last() != Some(&tail) {
                            tried.push(tail);
                        }
                        self.mark_stale(generation).await;
                        self.back_off(deadline, &mut attempt, "append", &reason)
                            .await?;
                    }
                    Attempt::Fatal(e) => {
                        self.mark_stale(generation).await;
                        return Err(e);
                    }
                },
            }
        }
    }

    async fn append_batch(
        &self,
        records: Vec<Bytes>,
        condition: Option<Option<Seq>>,
    ) -> Result<Range<Seq>, NatsError> {
        self.append_batch_as(records, condition, Attempts::new(self.new_id()))
            .await
    }

    /// [`Inner::append_batch`] for a message that may have been sent before (`attempts`).
    async fn append_batch_as(
        &self,
        records: Vec<Bytes>,
        condition: Option<Option<Seq>>,
        attempts: Attempts,
    ) -> Result<Range<Seq>, NatsError> {
        self.check_open()?;
        let n = records.len() as u64;
        if n == 0 {
            let next = self.since.current().map_or(0, |s| s + 1);
            return match condition {
                Some(expected) if expected.map_or(0, |s| s.saturating_add(1)) != next => {
                    Err(NatsError::Conflict {
                        expected,
                        actual: next.checked_sub(1),
                    })
                }
                _ => Ok(next..next),
            };
        }
        if n == 1 {
            let record = records.into_iter().next().expect("one record");
            let seq = self.append_one_as(record, condition, attempts).await?;
            return Ok(seq..seq + 1);
        }
        let size = format::framed_len(&records);
        if size + HEADER_ROOM > self.max_payload {
            return Err(NatsError::TooLarge {
                size: size as u64,
                max: self.max_payload.saturating_sub(HEADER_ROOM) as u64,
            });
        }
        let payload = format::frame(&records).map_err(|e| other("framing a batch", e))?;
        let deadline = Instant::now() + self.options.append_timeout;
        self.bounded(
            "batch append",
            deadline,
            self.append_batch_until(n, payload, condition, attempts, deadline),
        )
        .await
    }

    async fn append_batch_until(
        &self,
        n: u64,
        payload: Bytes,
        condition: Option<Option<Seq>>,
        attempts: Attempts,
        deadline: Instant,
    ) -> Result<Range<Seq>, NatsError> {
        let size = payload.len();
        let Attempts { id, mut tried } = attempts;
        let mut attempt = 0;
        let started = deadline - self.options.append_timeout;
        let mut race = Race::default();
        let mut headers = HeaderMap::new();
        headers.insert(format::BATCH, n.to_string().as_str());
        loop {
            let waited = condition.is_none() && self.yield_to_others(deadline, started).await?;
            // The writer stays locked until the fillers are sent, so that no other append
            // of this process can take their places.
            let mut w = self.lock_writer(deadline, "batch append").await?;
            self.check_open()?;
            if waited {
                w.stale = true;
            }
            let found = if tried.is_empty() {
                if w.stale {
                    self.refresh(&mut w, deadline).await?;
                }
                None
            } else {
                self.find_attempt(&mut w, deadline, &id, &tried).await?
            };
            let (result, tail) = if let Some(batch) = found {
                (Ok(batch), None)
            } else {
                if let Some(expected) = condition {
                    let want = expected.map_or(0, |s| s.saturating_add(1));
                    if w.tail != want {
                        w.tail = want;
                        w.last_id = None;
                        w.stale = true;
                    }
                }
                let tail = w.tail;
                let sent = Instant::now();
                let result = match self.send(&w, &id, headers.clone(), payload.clone()).await {
                    Ok(ack) => ack
                        .await
                        .map(|ack| ack.sequence)
                        .map_err(|e| classify(e, size, self.max_payload)),
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    self.fairness.acknowledged_in(sent.elapsed());
                }
                (result, Some(tail))
            };
            let batch = match result {
                Ok(sequence) if sequence > 0 => sequence,
                Ok(_) => {
                    w.stale = true;
                    drop(w);
                    self.back_off(
                        deadline,
                        &mut attempt,
                        "batch append",
                        "duplicate in flight",
                    )
                    .await?;
                    continue;
                }
                Err(Attempt::Conflict) => {
                    // Refused: this attempt is not stored.
                    w.stale = true;
                    drop(w);
                    if let Some(expected) = condition {
                        self.settle_conflict(deadline, expected, &id, &tried)
                            .await?;
                        // An earlier attempt was stored: let the next round finish it.
                        continue;
                    }
                    self.lost_race(deadline, started, &mut race, !tried.is_empty())
                        .await?;
                    continue;
                }
                Err(Attempt::Transient(reason)) => {
                    // No answer: the attempt may be stored.
                    if let Some(tail) = tail.filter(|t| tried.last() != Some(t)) {
                        tried.push(tail);
                    }
                    w.stale = true;
                    drop(w);
                    self.back_off(deadline, &mut attempt, "batch append", &reason)
                        .await?;
                    continue;
                }
                Err(Attempt::Fatal(e)) => {
                    w.stale = true;
                    return Err(e);
                }
            };
            // The batch message is stored: the batch is committed. Now its fillers.
            let first = batch - 1;
            let range = first..first + n;
            if w.tail + 1 != batch || w.stale {
                // A retried batch found stored earlier (a duplicate), or a view of the tail
                // we cannot trust: let a refresh complete whatever is missing.
                w.stale = true;
                self.refresh(&mut w, deadline).await?;
                raise(&self.since, range.end - 1);
                return Ok(range);
            }
            w.tail = batch;
            w.last_id = Some(id.clone());
            let generation = w.generation;
            // Stale until every filler is sent: if this future is dropped (or cut off)
            // meanwhile, the next write reads the tail and completes the batch, rather
            // than taking a filler's place.
            w.stale = true;
            let acks = self.pipeline_fillers(&mut w, batch, n).await;
            if acks.is_ok() {
                w.stale = false;
            }
            drop(w);
            let mut complete = acks.is_ok();
            if let Ok(acks) = acks {
                for ack in acks {
                    if ack.await.is_err() {
                        complete = false;
                    }
                }
            }
            if !complete {
                self.mark_stale(generation).await;
                let mut w = self.lock_writer(deadline, "batch append").await?;
                while w.tail < range.end {
                    if Instant::now() >= deadline {
                        return Err(self.unavailable(
                            "batch append",
                            "the batch's fillers could not be completed",
                        ));
                    }
                    w.stale = true;
                    self.refresh(&mut w, deadline).await?;
                }
            }
            raise(&self.since, range.end - 1);
            return Ok(range);
        }
    }
}

/// Follows the stream's tail (including other processes' appends) with an ordered,
/// headers-only consumer and raises `since` at every completed batch. A poll of the
/// stream's state every `interval` backs the consumer up: it raises `since` too, and a
/// consumer found behind at two polls in a row (stuck after a leader change, say) is
/// recreated from the tail.
async fn follow(
    stream: stream::Stream,
    since: Arc<Tails>,
    mut next: u64,
    closed: CancellationToken,
    name: String,
    interval: Duration,
) {
    loop {
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                headers_only: true,
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.reset();
        let mut behind = 0;
        match messages {
            Ok(mut messages) => loop {
                let item = tokio::select! {
                    item = messages.next() => item,
                    _ = ticker.tick() => {
                        match poll_tail(&stream).await {
                            Some((complete, last)) if complete.is_some_and(|c| since.current().is_none_or(|s| c > s)) => {
                                if let Some(c) = complete {
                                    raise(&since, c);
                                }
                                behind += 1;
                                if behind >= 2 {
                                    tracing::debug!(stream = %name, "follower: the consumer fell behind, recreating it");
                                    next = next.max(last + 1);
                                    break;
                                }
                            }
                            _ => behind = 0,
                        }
                        continue;
                    }
                    _ = closed.cancelled() => return,
                };
                match item {
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let sequence = info.stream_sequence;
                        match format::shape(message.headers.as_ref(), sequence) {
                            Ok(shape) if shape.batch_end(sequence) == sequence => {
                                raise(&since, sequence - 1);
                            }
                            Ok(_) => {}
                            Err(reason) => {
                                tracing::warn!(stream = %name, sequence, %reason, "foreign message in the log's stream");
                            }
                        }
                        next = next.max(sequence + 1);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(stream = %name, error = %e, "follower: consumer failed, recreating");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => {
                tracing::debug!(stream = %name, error = %e, "follower: cannot create the consumer");
                if let Some((Some(complete), last)) = poll_tail(&stream).await {
                    raise(&since, complete);
                    next = next.max(last + 1);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = closed.cancelled() => return,
        }
    }
}

/// The stream's last sequence, and the last seq whose batch is complete (as far as the
/// leader knows), or `None` when the leader cannot be asked.
async fn poll_tail(stream: &stream::Stream) -> Option<(Option<Seq>, u64)> {
    let last = stream.get_info().await.ok()?.state.last_sequence;
    if last == 0 {
        return Some((None, 0));
    }
    let message = stream.get_raw_message(last).await.ok()?;
    let shape = format::shape(Some(&message.headers), last).ok()?;
    let complete = match shape {
        Shape::Record => Some(last - 1),
        Shape::Batch { .. } => last.checked_sub(2),
        Shape::Filler { batch, len } if batch + len - 1 == last => Some(last - 1),
        Shape::Filler { batch, .. } => batch.checked_sub(2),
    };
    Some((complete, last))
}

/// Whether a message get failed because the stream has no message there.
fn no_message(e: &async_nats::jetstream::stream::RawMessageError) -> bool {
    if matches!(
        e.kind(),
        async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
    ) {
        return true;
    }
    let reason = e.to_string();
    reason.contains("no message found") || reason.contains("not found")
}

/// What a stream needs to read, without keeping the log open.
struct Reader {
    stream: stream::Stream,
    name: String,
    since: watch::Receiver<Option<Seq>>,
    closed: CancellationToken,
    concurrency: usize,
    /// How long a read keeps retrying (the append timeout).
    patience: Duration,
    /// How long the ordered consumer may deliver nothing (the progress timeout).
    progress: Duration,
    /// The last batch read: its stream sequence and records.
    cache: Option<(u64, Arc<Vec<Bytes>>)>,
}

impl Reader {
    /// The entry at stream sequence `sequence`, or `None` when there is none.
    ///
    /// A failed read ("JetStream system temporarily unavailable" during a leader
    /// election, a timeout while the leader is paused) is retried with back-off until
    /// `patience` has passed, and then reported as [`NatsError::Unavailable`]. So is a
    /// "no message" answer for a seq that `since` already shows: `since` may learn of a
    /// record (from an acknowledgement, or the follower's consumer) a moment before the
    /// stream leader serves it, and a seq shown by `since` is never reported missing.
    async fn fetch(
        stream: &stream::Stream,
        name: &str,
        patience: Duration,
        closed: &CancellationToken,
        since: &watch::Receiver<Option<Seq>>,
        sequence: u64,
    ) -> Result<Option<Entry>, Error> {
        let deadline = Instant::now() + patience;
        let mut attempt = 0u32;
        // Reads go to the stream leader ($JS.API.STREAM.MSG.GET), not to any replica (a
        // direct get): right after a leader change, a replica answering a direct get was
        // seen returning the message of the next sequence (nats-server 2.9.10, a paused
        // leader that came back), which a leader read never does.
        let message = loop {
            let reason = match stream.get_raw_message(sequence).await {
                Ok(m) => break m,
                Err(e) => {
                    let reason = e.to_string();
                    if !no_message(&e) {
                        reason
                    } else if since.borrow().is_some_and(|s| s >= sequence - 1) {
                        format!(
                            "the stream leader has no message at stream sequence {sequence}, \
                             though the log's since shows it"
                        )
                    } else {
                        return Ok(None);
                    }
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(NatsError::Unavailable {
                    stream: name.to_owned(),
                    what: "a read",
                    waited: patience,
                    reason,
                }
                .into());
            }
            tracing::debug!(stream = %name, sequence, %reason, "read failed; retrying");
            let delay = Duration::from_millis(25 << attempt.min(5));
            attempt += 1;
            tokio::select! {
                _ = tokio::time::sleep(delay.min(deadline - now)) => {}
                _ = closed.cancelled() => return Err(NatsError::Closed.into()),
            }
        };
        format::decode(Some(&message.headers), sequence, message.payload)
            .map(Some)
            .map_err(|reason| {
                NatsError::Foreign {
                    stream: name.to_owned(),
                    sequence,
                    reason,
                }
                .into()
            })
    }

    /// The records of a batch message.
    async fn batch(&mut self, batch: u64, len: u64) -> Result<Arc<Vec<Bytes>>, Error> {
        if let Some((b, records)) = &self.cache {
            if *b == batch {
                return Ok(Arc::clone(records));
            }
        }
        match Self::fetch(
            &self.stream,
            &self.name,
            self.patience,
            &self.closed,
            &self.since,
            batch,
        )
        .await?
        {
            Some(Entry::Batch(records)) if records.len() as u64 == len => {
                let records = Arc::new(records);
                self.cache = Some((batch, Arc::clone(&records)));
                Ok(records)
            }
            _ => Err(NatsError::Foreign {
                stream: self.name.clone(),
                sequence: batch,
                reason: format!("a filler points here, but there is no batch of {len} records"),
            }
            .into()),
        }
    }

    /// Records `first..=last` (which exist), oldest first.
    async fn read(&mut self, first: Seq, last: Seq) -> Result<Vec<RawRecord>, Error> {
        let (stream, name, closed) = (&self.stream, self.name.as_str(), &self.closed);
        let (patience, since) = (self.patience, &self.since);
        let entries: Vec<(Seq, Option<Entry>)> = futures::stream::iter(first..=last)
            .map(|seq| async move {
                let entry = Self::fetch(stream, name, patience, closed, since, seq + 1).await?;
                Ok::<_, Error>((seq, entry))
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for (seq, entry) in entries {
            let sequence = seq + 1;
            let bytes = match entry {
                None => return Err(Error::NotFound { seq }),
                Some(Entry::Record(bytes)) => bytes,
                Some(Entry::Batch(records)) => {
                    let first = records[0].clone();
                    self.cache = Some((sequence, Arc::new(records)));
                    first
                }
                Some(Entry::Filler { batch, len }) => {
                    let records = self.batch(batch, len).await?;
                    records[(sequence - batch) as usize].clone()
                }
            };
            out.push((seq, bytes));
        }
        Ok(out)
    }

    /// Records `next..=upto` (which exist) through an ordered consumer, in order. Ends
    /// early, without an error, if the consumer cannot be created, skips a sequence or
    /// delivers nothing for the progress timeout; the caller reads the rest by message
    /// gets.
    fn consume(&mut self, next: Seq, upto: Seq) -> BoxStream<'_, Result<RawRecord>> {
        async_stream::stream! {
            let consumer = self
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: next + 1,
                    },
                    ..Default::default()
                })
                .await;
            let messages = match consumer {
                Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::debug!(stream = %self.name, error = %e, "no ordered consumer; reading by message gets");
                    return;
                }
            };
            let mut expected = next;
            while expected <= upto {
                // A consumer that delivers nothing for the progress timeout (one placed on
                // a replica that stopped applying the stream, say) is left for message
                // gets, which go to the stream leader and fail within the read timeout.
                let next = match tokio::time::timeout(self.progress, messages.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::warn!(stream = %self.name, seq = expected, progress = ?self.progress, "the ordered consumer delivered nothing within the progress timeout; reading by message gets");
                        return;
                    }
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::debug!(stream = %self.name, error = %e, "ordered consumer failed; reading by message gets");
                        return;
                    }
                    None => return,
                };
                let Ok(sequence) = message.info().map(|i| i.stream_sequence) else { return };
                if sequence != expected + 1 {
                    return;
                }
                let message = message.message;
                let entry = format::decode(message.headers.as_ref(), sequence, message.payload)
                    .map_err(|reason| Error::from(NatsError::Foreign {
                        stream: self.name.clone(),
                        sequence,
                        reason,
                    }));
                let bytes = match entry {
                    Ok(Entry::Record(bytes)) => bytes,
                    Ok(Entry::Batch(records)) => {
                        let first = records[0].clone();
                        self.cache = Some((sequence, Arc::new(records)));
                        first
                    }
                    Ok(Entry::Filler { batch, len }) => match self.batch(batch, len).await {
                        Ok(records) => records[(sequence - batch) as usize].clone(),
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    },
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                yield Ok((expected, bytes));
                expected += 1;
            }
        }
        .boxed()
    }

    fn into_stream(mut self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        async_stream::stream! {
            if self.closed.is_cancelled() {
                yield Err(Error::Closed);
                return;
            }
            if let Err(e) = opts.validate() {
                yield Err(e);
                return;
            }
            let Some((first, last)) = opts.bounds() else { return };
            let closed = self.closed.clone();
            let mut remaining = opts.limit.map_or(u64::MAX, |l| l as u64);
            if opts.reverse {
                let tail = *self.since.borrow_and_update();
                let Some(top) = clamp(tail, last) else { return };
                if top < first {
                    return;
                }
                let mut hi = top;
                while remaining > 0 {
                    let lo = hi
                        .saturating_sub(CHUNK - 1)
                        .max(first)
                        .max(hi.saturating_sub(remaining - 1));
                    let chunk = tokio::select! {
                        chunk = self.read(lo, hi) => chunk,
                        _ = closed.cancelled() => Err(Error::Closed),
                    };
                    match chunk {
                        Ok(records) => {
                            for record in records.into_iter().rev() {
                                remaining -= 1;
                                yield Ok(record);
                            }
                        }
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    }
                    if lo == first {
                        break;
                    }
                    hi = lo - 1;
                }
                return;
            }
            let mut next = first;
            // A long history streams through an ordered consumer (one request per batch of
            // messages rather than one per record); what is left, and the live tail, by
            // message gets driven by `since`. Both read by seq, so the seam has no gap and
            // no duplicate.
            let tail = *self.since.borrow();
            if let Some(upto) = clamp(tail, last) {
                if upto >= next && upto - next >= CONSUMER_THRESHOLD && remaining > CONSUMER_THRESHOLD {
                    let mut consumed = self.consume(next, upto);
                    loop {
                        let item = tokio::select! {
                            item = consumed.next() => item,
                            _ = closed.cancelled() => Some(Err(Error::Closed)),
                        };
                        match item {
                            Some(Ok((seq, bytes))) => {
                                remaining -= 1;
                                next = seq + 1;
                                yield Ok((seq, bytes));
                                if remaining == 0 {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                yield Err(e);
                                return;
                            }
                            None => break,
                        }
                    }
                }
            }
            loop {
                let tail = *self.since.borrow_and_update();
                if let Some(upto) = clamp(tail, last) {
                    if next <= upto && remaining > 0 {
                        let hi = upto
                            .min(next.saturating_add(CHUNK - 1))
                            .min(next.saturating_add(remaining - 1));
                        let chunk = tokio::select! {
                            chunk = self.read(next, hi) => chunk,
                            _ = closed.cancelled() => Err(Error::Closed),
                        };
                        match chunk {
                            Ok(records) => {
                                for record in records {
                                    remaining -= 1;
                                    yield Ok(record);
                                }
                            }
                            Err(e) => {
                                yield Err(e);
                                return;
                            }
                        }
                        match hi.checked_add(1) {
                            Some(n) => next = n,
                            None => return,
                        }
                        continue;
                    }
                }
                let done = remaining == 0 || last.is_some_and(|l| next > l);
                if done || !opts.live {
                    return;
                }
                let closed = tokio::select! {
                    changed = self.since.changed() => changed.is_err(),
                    _ = closed.cancelled() => true,
                };
                if closed {
                    yield Err(Error::Closed);
                    return;
                }
            }
        }
        .boxed()
    }
}

/// The highest seq readable now: the log's tail capped by the stream's upper bound.
fn clamp(tail: Option<Seq>, last: Option<Seq>) -> Option<Seq> {
    match (tail, last) {
        (None, _) => None,
        (Some(t), None) => Some(t),
        (Some(t), Some(l)) => Some(t.min(l)),
    }
}

impl Log for NatsLog {
    /// Appends one record (one message, with a fresh message id, chained to the tail).
    ///
    /// `durability` is accepted and ignored: an acknowledgement always means the record
    /// is stored by a quorum of the stream's replicas (see the crate docs for fsync).
    fn append_with(
        &self,
        record: Bytes,
        _durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Seq>> {
        Box::pin(async move { Ok(self.inner.append_one(record, None).await?) })
    }

    fn append_batch_with(
        &self,
        records: Vec<Bytes>,
        _durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        Box::pin(async move { Ok(self.inner.append_batch(records, None).await?) })
    }

    fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(async move {
            self.inner.check_open()?;
            let Some(sequence) = seq.checked_add(1) else {
                return Err(Error::NotFound { seq });
            };
            let mut reader = self.reader();
            match Reader::fetch(
                &reader.stream,
                &reader.name,
                reader.patience,
                &reader.closed,
                &reader.since,
                sequence,
            )
            .await?
            {
                None => Err(Error::NotFound { seq }),
                Some(Entry::Record(bytes)) => Ok(bytes),
                Some(Entry::Batch(records)) => Ok(records[0].clone()),
                Some(Entry::Filler { batch, len }) => {
                    let records = reader.batch(batch, len).await?;
                    Ok(records[(sequence - batch) as usize].clone())
                }
            }
        })
    }

    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        self.reader().into_stream(opts)
    }

    fn since(&self) -> watch::Receiver<Option<Seq>> {
        self.inner.since.subscribe()
    }

    /// The same value as `since` (see the crate docs on durability), on a channel of its own.
    fn durable(&self) -> watch::Receiver<Option<Seq>> {
        self.inner.since.durable.subscribe()
    }

    /// Returns at once: every acknowledged append is already as durable as the server
    /// makes it (see the crate docs).
    fn sync(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(self.inner.check_open()?) })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner.check_open()?;
            self.inner.closed.cancel();
            tracing::debug!(stream = %self.inner.name, "closed the NATS log");
            Ok(())
        })
    }
}

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose duplicate window has forgotten `id`, which an earlier attempt stored
    /// right after `tail`: what a new stream leader can look like to a retry.
    async fn forgotten_attempt(
        log: &NatsLog,
        id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Attempts {
        let tail = log.inner.writer.lock().await.tail;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(id)
            .expected_last_sequence(tail);
        let ack = log
            .inner
            .js
            .send_publish(log.inner.subject.clone(), publish)
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, tail + 1);
        // Outlive the duplicate window, so that the server answers a re-send of `id` with
        // a wrong last sequence, as a leader that never saw it would.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Attempts {
            id: id.into(),
            tried: vec![tail],
        }
    }

    /// A server and a log on it holding one record, or `None` when the test is skipped.
    async fn log_with_one_record(test: &str, stream: &str) -> Option<(support::Single, NatsLog)> {
        let server = support::Single::start(support::binary_or_skip(test)?);
        let log = open(&server.url(), stream).await;
        assert_eq!(log.append(Bytes::from("a")).await.unwrap(), 0);
        Some((server, log))
    }

    async fn open(url: &str, stream: &str) -> NatsLog {
        let options = Options::new(stream)
            .duplicate_window(Duration::from_secs(1))
            .append_timeout(Duration::from_millis(900));
        NatsLog::connect(url, options).await.unwrap()
    }

    async fn stored(log: &NatsLog) -> u64 {
        log.inner.stream.get_info().await.unwrap().state.messages
    }

    #[tokio::test]
    async fn nats_server_retry_finds_an_append_the_leader_forgot() {
        let Some((_server, log)) = log_with_one_record(
            "nats_server_retry_finds_an_append_the_leader_forgot",
            "forgot",
        )
        .await
        else {
            return;
        };
        let attempts = forgotten_attempt(&log, "retried", HeaderMap::new(), Bytes::from("b")).await;
        let seq = log
            .inner
            .append_one_as(Bytes::from("b"), None, attempts)
            .await
            .unwrap();
        assert_eq!(
            seq, 1,
            "the retry reports where the first attempt was stored"
        );
        assert_eq!(stored(&log).await, 2, "and does not store the record again");
        assert_eq!(log.append(Bytes::from("c")).await.unwrap(), 2);
        assert_eq!(log.get(1).await.unwrap(), Bytes::from("b"));
    }

    #[tokio::test]
    async fn nats_server_conditional_retry_finds_an_append_the_leader_forgot() {
        let Some((_server, log)) = log_with_one_record(
            "nats_server_conditional_retry_finds_an_append_the_leader_forgot",
            "forgot_if",
        )
        .await
        else {
            return;
        };
        let attempts = forgotten_attempt(&log, "retried", HeaderMap::new(), Bytes::from("b")).await;
        // The log no longer ends at 0, but only because this very append was stored.
        let seq = log
            .inner
            .append_one_as(Bytes::from("b"), Some(Some(0)), attempts)
            .await
            .unwrap();
        assert_eq!(seq, 1);
        assert_eq!(stored(&log).await, 2);
        // A true conflict is still one.
        let conflict = log.append_if(Some(0), Bytes::from("x")).await.unwrap_err();
        assert!(matches!(conflict, NatsError::Conflict { .. }), "{conflict}");
    }

    #[tokio::test]
    async fn nats_server_batch_retry_finds_a_batch_the_leader_forgot() {
        let Some((_server, log)) = log_with_one_record(
            "nats_server_batch_retry_finds_a_batch_the_leader_forgot",
            "forgot_batch",
        )
        .await
        else {
            return;
        };
        let records: Vec<Bytes> = ["b", "c", "d"].map(Bytes::from).to_vec();
        let mut headers = HeaderMap::new();
        headers.insert(format::BATCH, "3");
        // Only the batch message was stored before the leader changed: no fillers yet.
        let attempts =
            forgotten_attempt(&log, "retried", headers, format::frame(&records).unwrap()).await;
        let range = log
            .inner
            .append_batch_as(records, None, attempts)
            .await
            .unwrap();
        assert_eq!(range, 1..4);
        assert_eq!(stored(&log).await, 4, "one batch message and two fillers");
        assert_eq!(log.append(Bytes::from("e")).await.unwrap(), 4);
        assert_eq!(log.get(3).await.unwrap(), Bytes::from("d"));
    }

    /// `since` may show a record a moment before the stream leader serves it (it learns
    /// of it from an acknowledgement or from its follower's consumer); a get of a seq that
    /// `since` shows waits for it rather than saying NotFound. A seq beyond `since` is
    /// still NotFound at once.
    #[tokio::test]
    async fn nats_server_get_of_a_seq_shown_by_since_waits_for_it() {
        let Some((server, log)) = log_with_one_record(
            "nats_server_get_of_a_seq_shown_by_since_waits_for_it",
            "early",
        )
        .await
        else {
            return;
        };
        let other = open(&server.url(), "early").await;
        // What the follower does when it sees seq 1 before the leader serves it.
        raise(&log.inner.since, 1);
        let get = tokio::spawn({
            let log = log.clone();
            async move { log.get(1).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(other.append(Bytes::from("b")).await.unwrap(), 1);
        assert_eq!(get.await.unwrap().unwrap(), Bytes::from("b"));
        let started = Instant::now();
        let e = log.get(2).await.unwrap_err();
        assert!(matches!(e, Error::NotFound { seq: 2 }), "{e:?}");
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
