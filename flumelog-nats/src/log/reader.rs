//! Reading: message gets from the stream leader (behind `get` and streams) and, for a long
//! forward history, an ordered consumer. Streams run flume-core's shared range loop
//! ([`flume_core::async_range_chunks`]) over a [`Reader`], which reads each chunk by
//! concurrent message gets.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use bytes::Bytes;
use flume_core::{AsyncReadRange, Error, RawRecord, Result, Seq, StreamOptions};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::error::NatsError;
use crate::format::{self, Entry};

/// How many records a stream reads per round of message gets.
const CHUNK: usize = 256;

/// From how many records on a forward stream reads its history through an ordered
/// consumer rather than by message gets.
const CONSUMER_THRESHOLD: u64 = 1024;

/// Whether a message get failed because the stream has no message there.
pub(super) fn no_message(e: &async_nats::jetstream::stream::RawMessageError) -> bool {
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
pub(super) struct Reader {
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
    /// A reader of the log `inner`, which it does not keep open.
    pub(super) fn new(inner: &Inner) -> Reader {
        Reader {
            stream: inner.stream.clone(),
            name: inner.name.clone(),
            since: inner.since.subscribe(),
            closed: inner.closed.clone(),
            concurrency: inner.options.read_concurrency.max(1),
            patience: inner.options.append_timeout,
            progress: inner.options.progress_timeout,
            cache: None,
        }
    }

    /// The record `seq` (a batch's record reads its batch message).
    pub(super) async fn get(mut self, seq: Seq) -> Result<Bytes> {
        let Some(sequence) = seq.checked_add(1) else {
            return Err(Error::NotFound { seq });
        };
        match Self::fetch(
            &self.stream,
            &self.name,
            self.patience,
            &self.closed,
            &self.since,
            sequence,
        )
        .await?
        {
            None => Err(Error::NotFound { seq }),
            Some(Entry::Record(bytes)) => Ok(bytes),
            Some(Entry::Batch(records)) => Ok(records[0].clone()),
            Some(Entry::Filler { batch, len }) => {
                let records = self.batch(batch, len).await?;
                Ok(records[(sequence - batch) as usize].clone())
            }
        }
    }

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

    /// The records selected by `opts`. A long forward history streams through an ordered
    /// consumer (one request per batch of messages rather than one per record); what is
    /// left, and the live tail, by message gets as `since` advances, in flume-core's range
    /// loop. Both read by seq, so the seam has no gap and no duplicate.
    pub(super) fn into_stream(
        mut self,
        opts: StreamOptions,
    ) -> BoxStream<'static, Result<RawRecord>> {
        async_stream::stream! {
            if self.closed.is_cancelled() {
                yield Err(Error::Closed);
                return;
            }
            let mut rest = opts.clone();
            if let (false, Ok(()), Some((first, last))) = (opts.reverse, opts.validate(), opts.bounds()) {
                let mut next = first;
                let mut remaining = opts.limit.map_or(u64::MAX, |l| l as u64);
                let upto = self.since.borrow().map(|tail| last.map_or(tail, |l| l.min(tail)));
                if let Some(upto) = upto.filter(|&upto| upto >= next && upto - next >= CONSUMER_THRESHOLD && remaining > CONSUMER_THRESHOLD) {
                    let closed = self.closed.clone();
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
                    // The rest: from where the consumer stopped, within what is left of the limit.
                    rest = StreamOptions {
                        gt: None,
                        gte: Some(next),
                        lt: None,
                        lte: last,
                        limit: opts.limit.map(|_| remaining as usize),
                        ..opts
                    };
                }
            }
            let since = self.since.clone();
            let mut chunks = flume_core::async_range_chunks(self, since, rest, CHUNK);
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(records) => {
                        for record in records {
                            yield Ok(record);
                        }
                    }
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                }
            }
        }
        .boxed()
    }
}

impl AsyncReadRange for Reader {
    /// Reads by message gets, `read_concurrency` in flight; a read still running when the
    /// log closes ends with [`Error::Closed`].
    async fn read_range(
        &mut self,
        first: Seq,
        last: Seq,
        reverse: bool,
        out: &mut Vec<RawRecord>,
    ) -> Result<()> {
        let closed = self.closed.clone();
        let records = tokio::select! {
            records = self.read(first, last) => records?,
            _ = closed.cancelled() => return Err(Error::Closed),
        };
        if reverse {
            out.extend(records.into_iter().rev());
        } else {
            out.extend(records);
        }
        Ok(())
    }

    fn closed(&self) -> impl std::future::Future<Output = ()> + Send {
        self.closed.cancelled()
    }
}
