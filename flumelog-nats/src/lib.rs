//! A replicated [flume-rs](flume_core) log on NATS JetStream.
//!
//! [`NatsLog`] implements [`flume_core::Log`] over one JetStream stream, so that several
//! processes (or several `Flume` handles) share one log, each with its own views.
//!
//! ```no_run
//! use bytes::Bytes;
//! use flume_core::Log;
//! use flumelog_nats::{NatsLog, NatsOptions};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = NatsLog::connect("nats://127.0.0.1:4222", NatsOptions::new("orders").replicas(3)).await?;
//! let seq = log.append(Bytes::from_static(b"hello")).await?;
//! assert_eq!(log.get(seq).await?, Bytes::from_static(b"hello"));
//! // Optimistic writers: append only if nobody appended after `seq`.
//! let next = log.append_if(Some(seq), Bytes::from_static(b"world")).await?;
//! assert_eq!(next, seq + 1);
//! # Ok(())
//! # }
//! ```
//!
//! # The stream
//!
//! [`NatsLog::open`] creates (or checks) a stream with file storage, the configured
//! replicas, no limits (nothing expires), deletes and purges denied (so that numbering
//! stays gap-free), direct gets allowed and a configurable duplicate window. The stream
//! stores one subject (`flume.<stream>` by default) that belongs to the log: nothing else
//! may publish to it.
//!
//! # Seqs
//!
//! **Record `seq` is the message with stream sequence `seq + 1`**, always: JetStream's
//! sequences start at 1 and ours at 0, and both are dense. `get(seq)` is one message get
//! from the stream leader.
//!
//! Every write carries `Nats-Expected-Last-Sequence` (the tail the writer knows; on an
//! empty stream `Nats-Expected-Last-Subject-Sequence: 0`), so the server refuses a write
//! that does not follow the tail the writer saw. Appends of one process are pipelined:
//! each also carries `Nats-Expected-Last-Msg-Id` naming the previous message of the
//! pipeline, so that a write can never land after a message other than the one it was
//! meant to follow. A refused write refreshes the tail from the stream leader and is sent
//! again; appends from other processes therefore interleave safely.
//!
//! Why every write names its tail, even a single record (the stream numbers messages
//! densely by itself): a batch's fillers must follow its batch message directly (see
//! below), and only a condition on every write keeps another writer's record out of
//! their places. JetStream 2.9 has no other way to reserve consecutive sequences.
//!
//! # Contention: writers take turns
//!
//! A write names a tail, so when several processes append flat out, each refusal means
//! another writer's append succeeded: the stream as a whole always progresses. Each
//! append, though, must too. A refused append waits a short random time (growing from
//! 1–2 ms to 32–64 ms with each refusal) and tries again, and an append refused for
//! longer than a pause asks the others to yield: it publishes a small request (plain
//! NATS, not stored) on `_flume.yield.<stream>` saying how long it has waited, and every
//! other handle of the stream holds back, for a pause of about ten acknowledgement round
//! trips (10 ms to 500 ms), each of its appends that has waited less, new ones included.
//! The longest waiters take the tail in the gap (the oldest of all never holds back), so
//! turns go roughly oldest first, and a writer whose pipeline keeps the stream busy can
//! no longer keep another process waiting until its timeout. An append still refused at its deadline fails with
//! [`NatsError::Contended`] (it was not stored, unless an earlier attempt of it timed
//! out). A conditional append ([`NatsLog::append_if`], or [`Log::append_if`](flume_core::Log::append_if))
//! never waits for its turn and never retries against another tail: a refusal is
//! answered with [`NatsError::Conflict`] (as [`flume_core::Error::Conflict`]) after one
//! read of the tail, unless that read finds the tail it expected (the refusal was about
//! a half-written batch, completed by the read), and then it is sent again. It is only
//! sent against a tail known to end a batch (its writer's, the one `since` shows, or
//! one just read from the stream leader), so that it can never take a filler's place.
//!
//! # A tail that went backwards
//!
//! A handle never appends below a seq it has seen stored: if the stream's leader reports
//! a tail below the handle's `since` (a replica that had stopped applying the stream was
//! elected leader, or the stream was deleted and recreated), and its leader has no
//! message at the seq after `since` either, for one second (a cluster's leader can
//! acknowledge a message a moment before it serves it), appends fail with
//! [`NatsError::TailBehind`], naming both seqs, rather than give an acknowledged seq to
//! another record.
//!
//! # Retries never duplicate
//!
//! Every append carries a `Nats-Msg-Id` of its own, kept across its retries. A publish
//! whose acknowledgement timed out may still have been committed; the retry (with the same
//! id, within the stream's duplicate window, [`NatsOptions::duplicate_window`]) is then
//! answered with the original sequence instead of storing the record twice. An append keeps
//! retrying (through a leader election, say) for [`NatsOptions::append_timeout`], which must be
//! shorter than the duplicate window, then fails with [`NatsError::Unavailable`]: the
//! record may or may not be stored, and nothing is lost silently.
//!
//! # Batches: consecutive and all-or-nothing
//!
//! JetStream 2.9 has no atomic multi-message publish (the batch API arrived in 2.12), but
//! one message is stored atomically. A batch of `n` records is therefore **one batch
//! message** holding all `n` records (length-prefixed), at stream sequence `b`, followed by
//! `n - 1` empty **filler** messages at `b+1 ..= b+n-1` that keep seqs equal to stream
//! sequences: record `b - 1 + i` is the `i`-th record of the batch message.
//!
//! - The batch is committed, whole, when its batch message is acknowledged; before that
//!   it does not exist. There is no state in which some of its records exist and others
//!   are lost.
//! - Fillers carry no data. Each is chained to its predecessor by expected last sequence,
//!   and its message id depends only on its position, so any writer can write it and two
//!   writers completing the same batch store it once. Every writer completes a
//!   half-written batch (a writer crashed after the batch message) before it writes
//!   anything else, and so does [`NatsLog::open`]; no other message can take a filler's
//!   place.
//! - A batch becomes visible (`since`, streams) when its last filler is stored, all at
//!   once: readers never see part of a batch.
//! - The framed batch must fit in one message: a batch larger than the server's
//!   `max_payload` fails with [`NatsError::TooLarge`] (as
//!   [`flume_core::Error::RecordTooLarge`]); split it, or raise `max_payload`.
//!
//! # Since, streams and other processes
//!
//! `since()` is raised by this handle's own appends before they return, and by a background
//! task that follows the stream with an ordered, headers-only consumer, so it also follows
//! appends made by other processes (a poll of the stream's state every
//! [`NatsOptions::follow_interval`] backs the consumer up, and recreates it if it falls behind,
//! say after a leader change). Another process's append shows in this handle's `since`
//! shortly after it is acknowledged, not at once: wait for it
//! (`Wait::AtLeast(seq)` on a view, `since().wait_for(..)` on the log) when it matters.
//!
//! Streams read by seq. A forward stream reads a long history (over 1024 records) through
//! an ordered consumer, and the rest, and the live tail, by message gets
//! ([`NatsOptions::read_concurrency`] in flight) as `since` advances; reverse streams read
//! chunks of 256 the same way. Reading by seq means no gap and no duplicate at the
//! history/live seam. Gets go to the stream leader, not to any replica (JetStream's
//! "direct get", which the stream allows for other tools): right after a leader change a
//! replica was seen answering a direct get with the next sequence's message
//! (nats-server 2.9.10), and a log must never return a record under the wrong seq.
//!
//! A history consumer that delivers nothing for [`NatsOptions::progress_timeout`] (say, one
//! placed on a replica that stopped applying the stream) is abandoned for message gets.
//! A seq shown by `since` is never reported missing: `since` can learn of a record a
//! moment before the leader serves it, so a get of such a seq that finds nothing retries
//! within the read timeout. Closing the log (or dropping its last handle) ends the
//! follower and every live stream with [`flume_core::Error::Closed`].
//!
//! # Failures
//!
//! The client reconnects for ever and pings its server every
//! [`NatsOptions::request_timeout`], so a hung server (paused, partitioned) is left for
//! another one; acknowledgements that keep timing out also force a reconnect. An append
//! retries through leader elections for [`NatsOptions::append_timeout`] and then fails with
//! [`NatsError::Unavailable`], naming the last error; it never hangs and never panics.
//!
//! **Every append answers within `append_timeout + request_timeout`** of its call, with
//! its seq or a typed error: retries stop at the append timeout, the last request sent
//! before it may take up to one request timeout, and an append still waiting at that
//! bound (for this process's other appends, for a request that outlives its own timeout)
//! is cut off with [`NatsError::Unavailable`] (the record may or may not be stored).
//! Reads (`get`, streams, batch lookups) retry the same way: a read that fails during an
//! election ("JetStream system temporarily unavailable") or times out is retried with
//! back-off for up to [`NatsOptions::append_timeout`], then fails with
//! [`NatsError::Unavailable`].
//!
//! # Durability
//!
//! An acknowledgement means that a quorum of the stream's replicas stored the message.
//! `Durability` levels are accepted and change nothing; `sync` returns at once;
//! `durable()` equals `since()`. By default nats-server flushes its files to disk every
//! two minutes (`sync_interval`), so an acknowledged record survives a process crash,
//! and the loss of a minority of replicas, but **not a power loss of a quorum** within
//! that interval. For acknowledgements that survive a power loss, run nats-server ≥ 2.10
//! with
//!
//! ```text
//! jetstream {
//!     store_dir: "/var/lib/nats"
//!     sync_interval: always
//! }
//! ```
//!
//! # Errors
//!
//! [`NatsError`] names what went wrong and what to do: a server that cannot be reached, a
//! stream that is missing or misconfigured, a message too large, no acknowledgement in time
//! (a lost quorum), an append that lost every race for the tail until its deadline, a
//! stream whose tail went below what this handle saw, a conflict of a conditional
//! append. It converts into
//! [`flume_core::Error`]: `TooLarge` becomes `RecordTooLarge`, `Closed` becomes `Closed`,
//! a foreign message becomes `Corrupt`, the others `Backend`.
//!
//! # Limits
//!
//! - `revert` returns `Unsupported`: deletes are denied, by design.
//! - The log owns its subject. A message published there by anything else is reported as
//!   [`NatsError::Foreign`] (as [`flume_core::Error::Corrupt`]) when read.
//! - A batch travels as one message: at most the server's `max_payload` (see
//!   [`NatsOptions`]). Each of its later records still costs one (empty) filler message.
//! - Another process's appends reach this handle's `since` after a short delay (see
//!   above); this handle's own appends are visible when they return.
//! - No duplicate is stored as long as a retry comes within the stream's duplicate
//!   window; opening refuses a stream whose window is not longer than
//!   [`NatsOptions::append_timeout`].
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod error;
mod format;
mod log;
mod options;

pub use error::NatsError;
pub use log::NatsLog;
pub use options::NatsOptions;
