//! [`NatsLog`]: the [`Log`] implementation over one JetStream stream.
//!
//! The handle and its shared state live here; each job has a module of its own:
//!
//! - `open`: connecting, creating or checking the stream;
//! - `writer`: the writer's knowledge of the tail and the steps of a write (send, refresh,
//!   find an earlier attempt, fillers);
//! - `append`: the retry loops of single and batch appends, conditional or not;
//! - `fairness`: turn-taking between the writers of several processes;
//! - `follower`: the background task that raises `since` as the stream grows;
//! - `reader`: message gets and the ordered consumer behind `get` and streams.

mod append;
mod fairness;
mod follower;
mod open;
mod reader;
mod writer;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use flume_core::{Durability, Log, RawRecord, Result, Seq, StreamOptions};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::fairness::Fairness;
use self::reader::Reader;
use self::writer::Writer;
use crate::error::NatsError;
use crate::NatsOptions;

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
    options: NatsOptions,
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

impl NatsLog {
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

    /// Appends `records` (one message, or a batch message and its fillers) only if the
    /// stream ends at `expected`: the server checks it (`Nats-Expected-Last-Sequence`
    /// `expected + 1`, or an empty stream for `None`), so it holds across processes. A
    /// refusal is answered with [`Error::Conflict`](flume_core::Error::Conflict) naming the
    /// tail then read from the stream leader, after one read; it is never retried against
    /// another tail. An empty batch reads the tail from the stream leader.
    ///
    /// `durability` is accepted and ignored, as for [`Log::append_with`].
    fn append_batch_if_with(
        &self,
        records: Vec<Bytes>,
        expected: Option<Seq>,
        _durability: Option<Durability>,
    ) -> BoxFuture<'_, Result<Range<Seq>>> {
        Box::pin(async move { Ok(self.inner.append_batch(records, Some(expected)).await?) })
    }

    fn get(&self, seq: Seq) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(async move {
            self.inner.check_open()?;
            Reader::new(&self.inner).get(seq).await
        })
    }

    fn stream(&self, opts: StreamOptions) -> BoxStream<'static, Result<RawRecord>> {
        Reader::new(&self.inner).into_stream(opts)
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
    use std::time::Duration;

    use async_nats::HeaderMap;
    use flume_core::Error;
    use futures::StreamExt;
    use tokio::time::Instant;

    use super::writer::Attempts;
    use super::*;
    use crate::format;

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

    /// A server and a log on it holding one record.
    async fn log_with_one_record(test: &str, stream: &str) -> (support::Single, NatsLog) {
        let server = support::Single::start(support::server_binary(test));
        let log = open(&server.url(), stream).await;
        assert_eq!(log.append(Bytes::from("a")).await.unwrap(), 0);
        (server, log)
    }

    async fn open(url: &str, stream: &str) -> NatsLog {
        let options = NatsOptions::new(stream)
            .duplicate_window(Duration::from_secs(1))
            .append_timeout(Duration::from_millis(900));
        NatsLog::connect(url, options).await.unwrap()
    }

    async fn stored(log: &NatsLog) -> u64 {
        log.inner.stream.get_info().await.unwrap().state.messages
    }

    #[tokio::test]
    #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
    async fn nats_server_retry_finds_an_append_the_leader_forgot() {
        let (_server, log) = log_with_one_record(
            "nats_server_retry_finds_an_append_the_leader_forgot",
            "forgot",
        )
        .await;
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
    #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
    async fn nats_server_conditional_retry_finds_an_append_the_leader_forgot() {
        let (_server, log) = log_with_one_record(
            "nats_server_conditional_retry_finds_an_append_the_leader_forgot",
            "forgot_if",
        )
        .await;
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

    /// A conditional append whose expected seq is inside another writer's half-written
    /// batch (its batch message stored, its fillers not yet) names the stream's last
    /// sequence exactly, so the server would store it in a filler's place: it must be
    /// answered from a fresh read of the tail (which completes the batch) instead.
    #[tokio::test]
    #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
    async fn nats_server_conditional_append_never_lands_inside_a_half_written_batch() {
        let (_server, log) = log_with_one_record(
            "nats_server_conditional_append_never_lands_inside_a_half_written_batch",
            "half_written",
        )
        .await;
        let records: Vec<Bytes> = ["b", "c", "d"].map(Bytes::from).to_vec();
        let mut headers = HeaderMap::new();
        headers.insert(format::BATCH, "3");
        let publish = jetstream::message::PublishMessage::build()
            .payload(format::frame(&records).unwrap())
            .headers(headers)
            .message_id("another-writer-batch")
            .expected_last_sequence(1);
        let ack = log
            .inner
            .js
            .send_publish(log.inner.subject.clone(), publish)
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, 2, "the batch message of seqs 1..=3");
        let e = log.append_if(Some(1), Bytes::from("x")).await.unwrap_err();
        assert!(
            matches!(
                e,
                NatsError::Conflict {
                    expected: Some(1),
                    actual: Some(3)
                }
            ),
            "{e}"
        );
        assert_eq!(
            stored(&log).await,
            4,
            "the batch completed, nothing else stored"
        );
        assert_eq!(log.append_if(Some(3), Bytes::from("e")).await.unwrap(), 4);
        for (seq, want) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            assert_eq!(log.get(seq as Seq).await.unwrap(), Bytes::from(want));
        }
    }

    #[tokio::test]
    #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
    async fn nats_server_batch_retry_finds_a_batch_the_leader_forgot() {
        let (_server, log) = log_with_one_record(
            "nats_server_batch_retry_finds_a_batch_the_leader_forgot",
            "forgot_batch",
        )
        .await;
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
    #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
    async fn nats_server_get_of_a_seq_shown_by_since_waits_for_it() {
        let (server, log) = log_with_one_record(
            "nats_server_get_of_a_seq_shown_by_since_waits_for_it",
            "early",
        )
        .await;
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

    /// A live stream reads a long history through the ordered consumer and then the live
    /// tail by message gets (flume-core's range loop): no gap and no duplicate at the
    /// seam, bounds and the limit carried across it.
    #[tokio::test]
    #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
    async fn nats_server_history_then_live_tail_share_bounds_and_limit() {
        let (_server, log) = log_with_one_record(
            "nats_server_history_then_live_tail_share_bounds_and_limit",
            "seam",
        )
        .await;
        for i in 0..2 {
            let batch = (0..1000).map(|j| Bytes::from(format!("{i}.{j}"))).collect();
            log.append_batch(batch).await.unwrap();
        }
        let expected = |seq: Seq| match seq {
            1..=2000 => Bytes::from(format!("{}.{}", (seq - 1) / 1000, (seq - 1) % 1000)),
            _ => Bytes::from(format!("live{}", seq - 2001)),
        };
        let mut records = log.stream(StreamOptions::new().gt(0).limit(2003).live(true));
        for seq in 1..=2000 {
            let (got, bytes) = next(&mut records).await.unwrap().unwrap();
            assert_eq!((got, &bytes), (seq, &expected(seq)));
        }
        for k in 0..4 {
            let seq = log.append(Bytes::from(format!("live{k}"))).await.unwrap();
            assert_eq!(seq, 2001 + k);
        }
        for seq in 2001..=2003 {
            let (got, bytes) = next(&mut records).await.unwrap().unwrap();
            assert_eq!((got, &bytes), (seq, &expected(seq)));
        }
        assert!(
            next(&mut records).await.is_none(),
            "the limit ends the stream"
        );
    }

    /// The next item of `records`, within ten seconds.
    async fn next(
        records: &mut BoxStream<'static, Result<RawRecord>>,
    ) -> Option<Result<RawRecord>> {
        tokio::time::timeout(Duration::from_secs(10), records.next())
            .await
            .expect("a record in time")
    }
}
