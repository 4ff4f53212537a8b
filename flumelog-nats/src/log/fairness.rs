//! Turn-taking between writers: how an append that keeps losing the race for the tail asks
//! the other handles of the stream to yield, and how a handle holds back for another's
//! older append (see [`Fairness`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::error::NatsError;

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
pub(super) struct Fairness {
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
pub(super) struct Race<'a> {
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
    pub(super) fn new(subject: String, own: String) -> Self {
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

    pub(super) fn acknowledged_in(&self, took: Duration) {
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
pub(super) async fn listen_for_yields(
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

impl Inner {
    /// Before each attempt of an append that started at `started`: waits while another
    /// writer whose append has waited longer asked this one to yield (see [`Fairness`]).
    /// Returns whether it waited.
    pub(super) async fn yield_to_others(
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
    pub(super) async fn lost_race<'a>(
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
}
