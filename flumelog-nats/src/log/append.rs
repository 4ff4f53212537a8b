//! Appends, single and batched, conditional or not: the retry loop around the writer's
//! steps (see `writer`), with the turn-taking of `fairness` when another writer takes the
//! tail, bounded by the append timeout.

use std::ops::Range;

use async_nats::HeaderMap;
use bytes::Bytes;
use flume_core::Seq;
use tokio::time::Instant;

use super::fairness::Race;
use super::writer::{classify, Attempt, Attempts, Writer};
use super::{raise, Inner};
use crate::error::{other, NatsError};
use crate::format;

/// Room left in a message for the headers this crate adds.
const HEADER_ROOM: usize = 512;

/// How a refused conditional append ends, short of a conflict.
enum Settled {
    /// An earlier attempt was stored after all, at this stream sequence.
    Stored(u64),
    /// The stream does end where the append expected (the refusal was about something
    /// else: a half-written batch completed since, a stale chain of message ids): send it
    /// again.
    Retry,
}

/// The stream sequence a conditional append's expected last seq names (0: an empty
/// stream): record `seq` is stream sequence `seq + 1`.
fn stream_tail(expected: Option<Seq>) -> u64 {
    expected.map_or(0, |s| s.saturating_add(1))
}

impl Inner {
    /// The answer to a conditional append that found another tail: an earlier attempt of
    /// it, if one without an answer was stored after all, else a conflict naming the
    /// tail read from the stream leader (and shown by `since` from then on), unless that
    /// tail is the expected one after all.
    async fn settle_conflict(
        &self,
        deadline: Instant,
        expected: Option<Seq>,
        id: &str,
        tried: &[u64],
    ) -> Result<Settled, NatsError> {
        let mut w = self.lock_writer(deadline, "conditional append").await?;
        w.stale = true;
        if let Some(sequence) = self.find_attempt(&mut w, deadline, id, tried).await? {
            return Ok(Settled::Stored(sequence));
        }
        if w.tail == stream_tail(expected) {
            return Ok(Settled::Retry);
        }
        Err(NatsError::Conflict {
            expected,
            actual: w.tail.checked_sub(1),
        })
    }

    /// [`settle_conflict`](Self::settle_conflict) for a single record: its seq when an
    /// earlier attempt was stored after all, `None` when it must be sent again (after a
    /// back-off).
    async fn settle_one(
        &self,
        deadline: Instant,
        attempt: &mut u32,
        expected: Option<Seq>,
        id: &str,
        tried: &[u64],
    ) -> Result<Option<Seq>, NatsError> {
        match self.settle_conflict(deadline, expected, id, tried).await? {
            Settled::Stored(sequence) => {
                let seq = sequence - 1;
                raise(&self.since, seq);
                Ok(Some(seq))
            }
            Settled::Retry => {
                self.back_off(deadline, attempt, "append", "refused at the expected tail")
                    .await?;
                Ok(None)
            }
        }
    }

    /// Points the writer at the tail a conditional append expects, or answers its
    /// conflict without sending anything.
    ///
    /// The server checks only that the stream's last sequence is the expected one: it
    /// cannot tell the end of a batch from the middle of a half-written one (a batch
    /// message whose fillers are still to come), and a record stored there would take a
    /// filler's place. So the expected tail is sent only when it is known to end a batch:
    /// it is the writer's own tail, or the one `since` shows (both only ever stop at the
    /// end of a batch), or the tail read just now from the stream leader (`fresh`: in
    /// this round already), which completes a half-written batch first.
    async fn aim(
        &self,
        w: &mut Writer,
        expected: Option<Seq>,
        fresh: bool,
        deadline: Instant,
    ) -> Result<(), NatsError> {
        let want = stream_tail(expected);
        let shown = self.since.current().map_or(0, |s| s + 1);
        if want != w.tail && want != shown {
            if !fresh {
                w.stale = true;
                self.refresh(w, deadline).await?;
            }
            if want != w.tail {
                return Err(NatsError::Conflict {
                    expected,
                    actual: w.tail.checked_sub(1),
                });
            }
        }
        w.expect(expected);
        Ok(())
    }

    /// A conditional append of nothing: whether the stream ends at `expected`, read from
    /// the stream leader (this handle's `since` may lag behind other processes' appends).
    async fn check_tail(&self, expected: Option<Seq>) -> Result<Range<Seq>, NatsError> {
        let deadline = Instant::now() + self.options.append_timeout;
        self.bounded("conditional append", deadline, async {
            let mut w = self.lock_writer(deadline, "conditional append").await?;
            self.check_open()?;
            w.stale = true;
            self.refresh(&mut w, deadline).await?;
            let want = stream_tail(expected);
            if w.tail != want {
                return Err(NatsError::Conflict {
                    expected,
                    actual: w.tail.checked_sub(1),
                });
            }
            Ok(want..want)
        })
        .await
    }

    pub(super) async fn append_one(
        &self,
        record: Bytes,
        condition: Option<Option<Seq>>,
    ) -> Result<Seq, NatsError> {
        self.append_one_as(record, condition, Attempts::new(self.new_id()))
            .await
    }

    /// [`Inner::append_one`] for a message that may have been sent before (`attempts`).
    pub(super) async fn append_one_as(
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
                let fresh = w.stale || !tried.is_empty();
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
                    self.aim(&mut w, expected, fresh, deadline).await?;
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
                            if let Some(seq) = self
                                .settle_one(deadline, &mut attempt, expected, &id, &tried)
                                .await?
                            {
                                return Ok(seq);
                            }
                            continue;
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
                            if let Some(seq) = self
                                .settle_one(deadline, &mut attempt, expected, &id, &tried)
                                .await?
                            {
                                return Ok(seq);
                            }
                            continue;
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

    pub(super) async fn append_batch(
        &self,
        records: Vec<Bytes>,
        condition: Option<Option<Seq>>,
    ) -> Result<Range<Seq>, NatsError> {
        self.append_batch_as(records, condition, Attempts::new(self.new_id()))
            .await
    }

    /// [`Inner::append_batch`] for a message that may have been sent before (`attempts`).
    pub(super) async fn append_batch_as(
        &self,
        records: Vec<Bytes>,
        condition: Option<Option<Seq>>,
        attempts: Attempts,
    ) -> Result<Range<Seq>, NatsError> {
        self.check_open()?;
        let n = records.len() as u64;
        if n == 0 {
            if let Some(expected) = condition {
                return self.check_tail(expected).await;
            }
            let next = self.since.current().map_or(0, |s| s + 1);
            return Ok(next..next);
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
            let fresh = w.stale || !tried.is_empty();
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
                    self.aim(&mut w, expected, fresh, deadline).await?;
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
                        if let Settled::Retry = self
                            .settle_conflict(deadline, expected, &id, &tried)
                            .await?
                        {
                            self.back_off(
                                deadline,
                                &mut attempt,
                                "batch append",
                                "refused at the expected tail",
                            )
                            .await?;
                        }
                        // Or an earlier attempt was stored: the next round finishes it.
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
