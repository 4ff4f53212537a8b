//! What the one writer of a handle knows about the stream's tail, and the steps every
//! append is made of: sending a message chained to the tail, classifying its answer,
//! backing off, reading the tail again (completing a half-written batch), looking for an
//! earlier attempt of a retried message, and sending a batch's fillers.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use flume_core::Seq;
use tokio::time::Instant;

use super::reader::no_message;
use super::{raise, Inner};
use crate::error::NatsError;
use crate::format::{self, Shape};

/// How long the stream's tail must stay below this handle's `since` before appends are
/// refused with [`NatsError::TailBehind`] (see [`Inner::refresh`]).
const BEHIND_PATIENCE: Duration = Duration::from_secs(1);

/// What the (one, in-process) writer believes about the stream's tail.
#[derive(Debug)]
pub(super) struct Writer {
    /// The last stream sequence, which completes its batch (0: empty stream).
    pub(super) tail: u64,
    /// The message id of the last message this writer sent since the last refresh: the
    /// next message must follow it directly (guards pipelined appends).
    pub(super) last_id: Option<String>,
    /// The tail must be read again from the server before the next write.
    pub(super) stale: bool,
    /// Incremented by every refresh.
    pub(super) generation: u64,
}

impl Writer {
    /// Makes the next write expect the tail a conditional append names (`expected`: the
    /// last seq it saw, `None` for an empty log), when this writer believes otherwise:
    /// its view may be old, and the server has the last word. Only for a tail known to
    /// end a batch (`Inner::aim` checks that first).
    pub(super) fn expect(&mut self, expected: Option<Seq>) {
        let want = expected.map_or(0, |s| s.saturating_add(1));
        if self.tail != want {
            self.tail = want;
            self.last_id = None;
            self.stale = true;
        }
    }
}

/// One message to append, under the id that all its attempts share.
#[derive(Debug)]
pub(super) struct Attempts {
    pub(super) id: String,
    /// The tails that earlier attempts without an answer (timed out, connection lost)
    /// expected: each may have been stored right after its tail (see
    /// [`Inner::find_attempt`]). Attempts the server refused are not listed.
    pub(super) tried: Vec<u64>,
}

impl Attempts {
    pub(super) fn new(id: String) -> Self {
        Attempts {
            id,
            tried: Vec::new(),
        }
    }
}

/// How one publish attempt ended.
pub(super) enum Attempt {
    /// The expected last sequence (or message id) did not match.
    Conflict,
    /// No answer, no leader, a broken connection: worth retrying.
    Transient(String),
    /// Retrying cannot help.
    Fatal(NatsError),
}

pub(super) fn classify(
    e: async_nats::jetstream::context::PublishError,
    size: usize,
    max: usize,
) -> Attempt {
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
    /// Sends one message that must follow the writer's tail directly.
    pub(super) async fn send(
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
    pub(super) async fn mark_stale(&self, generation: u64) {
        let mut w = self.writer.lock().await;
        if w.generation == generation {
            w.stale = true;
        }
    }

    /// Backs off before a retry, or fails once the deadline has passed.
    pub(super) async fn back_off(
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
    pub(super) async fn refresh(&self, w: &mut Writer, deadline: Instant) -> Result<(), NatsError> {
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
    pub(super) async fn find_attempt(
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
    pub(super) async fn pipeline_fillers(
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
    pub(super) async fn lock_writer(
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
    /// waits for: the documented bound of [`NatsOptions::append_timeout`] holds even if a
    /// request outlives its own timeout. A cut-off append leaves the writer in a state
    /// that the next write checks (every write names the tail it expects).
    pub(super) async fn bounded<T>(
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
}
