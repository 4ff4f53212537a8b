//! The typed errors of the NATS log, convertible into [`flume_core::Error`].

use std::time::Duration;

use flume_core::Seq;

/// Everything that can go wrong talking to NATS JetStream.
///
/// Every variant converts into [`flume_core::Error`] (through `From`), so that the
/// [`Log`](flume_core::Log) methods return the workspace's one error type; the NATS-specific
/// variants travel inside [`flume_core::Error::Backend`] and can be recovered with
/// `downcast_ref::<NatsError>()` on its source. New variants may be added in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The client could not connect to any of the given servers.
    #[error(
        "cannot reach a NATS server at {url}: {reason}; check that nats-server is running \
         with JetStream enabled (-js) and that the URL is right"
    )]
    Unreachable {
        /// The server URL(s) tried.
        url: String,
        /// What the client reported.
        reason: String,
    },

    /// The stream does not exist and [`NatsOptions::create`](crate::NatsOptions::create) is off.
    #[error(
        "JetStream stream {stream:?} does not exist; create it (or open with \
         NatsOptions::create(true)) before opening the log"
    )]
    StreamMissing {
        /// The stream name.
        stream: String,
    },

    /// The stream exists but its configuration would break the log's guarantees.
    #[error(
        "JetStream stream {stream:?} is misconfigured: {problem}; fix the stream \
         (nats stream edit) or use another stream name"
    )]
    Misconfigured {
        /// The stream name.
        stream: String,
        /// What is wrong.
        problem: String,
    },

    /// A record (or a whole batch, which travels as one message) exceeds the server's
    /// `max_payload`.
    #[error(
        "a message of {size} bytes exceeds the server's max_payload of {max} bytes; split the \
         batch or raise max_payload in the server configuration"
    )]
    TooLarge {
        /// The message size in bytes (a batch's framed size).
        size: u64,
        /// The server's limit.
        max: u64,
    },

    /// No acknowledgement (or answer) arrived in time: the stream has no leader (a lost
    /// quorum), or the servers are unreachable. For an append, the record may or may not be
    /// committed; appending it again is safe within the duplicate window only through the
    /// same call, so the log itself retries until its append timeout.
    #[error(
        "JetStream stream {stream:?} did not answer {what} within {waited:?} (no stream leader: \
         a lost quorum, or the servers are unreachable; last error: {reason}); bring the \
         cluster's nodes back and retry"
    )]
    Unavailable {
        /// The stream name.
        stream: String,
        /// The operation that timed out.
        what: &'static str,
        /// How long it waited.
        waited: Duration,
        /// The last error seen while retrying.
        reason: String,
    },

    /// A conditional append found another last seq than the caller expected (nothing
    /// was appended). Converts into [`flume_core::Error::Conflict`].
    #[error(
        "conditional append expected the log to end at {expected:?}, but it ends at {actual:?}; \
         read the new records and try again"
    )]
    Conflict {
        /// The last seq the caller expected.
        expected: Option<Seq>,
        /// The last seq the log has (as far as this handle knows).
        actual: Option<Seq>,
    },

    /// Other writers kept taking the stream's tail first until the append timeout: every
    /// attempt of this append was refused because another message had just been stored
    /// where it expected to go. The system made progress (each refusal means another
    /// append succeeded) but this append did not, within its time.
    #[error(
        "JetStream stream {stream:?} refused this append {conflicts} times in {waited:?} because \
         other writers appended first; it was not stored{maybe}; retry it, or raise \
         NatsOptions::append_timeout if writers contend this much",
        maybe = if *maybe_stored { " unless an earlier attempt that timed out was" } else { "" }
    )]
    Contended {
        /// The stream name.
        stream: String,
        /// How long the append kept trying.
        waited: Duration,
        /// How many attempts were refused for a moved tail.
        conflicts: u32,
        /// An earlier attempt had no answer (a timeout), so it may have been stored.
        maybe_stored: bool,
    },

    /// The stream's tail, as read from its leader, is below a seq this handle has already
    /// seen acknowledged or visible: the stream lost acknowledged records (a replica that
    /// fell behind was elected leader), or it was deleted and recreated. Appending would
    /// give an already used seq to another record, so the log refuses to.
    #[error(
        "JetStream stream {stream:?} now ends at seq {tail:?}, below seq {seen} that this handle \
         already saw stored; the stream lost acknowledged records or was recreated, so \
         appending would reuse seqs; stop writing, check the cluster's state and reopen the log"
    )]
    TailBehind {
        /// The stream name.
        stream: String,
        /// The last seq the stream's leader now reports (`None`: it is empty).
        tail: Option<Seq>,
        /// The highest seq this handle saw acknowledged or visible.
        seen: Seq,
    },

    /// A message in the stream is not in this crate's format (another publisher wrote to
    /// the log's subject, or the data is damaged).
    #[error("JetStream stream {stream:?} holds a foreign or damaged message at stream sequence {sequence}: {reason}")]
    Foreign {
        /// The stream name.
        stream: String,
        /// The stream sequence of the message.
        sequence: u64,
        /// What is wrong.
        reason: String,
    },

    /// The log was closed; open it again.
    #[error("the NATS log is closed; open it again to continue")]
    Closed,

    /// Any other failure reported by the client or the server.
    #[error("NATS JetStream {what} failed: {reason}")]
    Other {
        /// The operation.
        what: &'static str,
        /// The client's or server's message.
        reason: String,
    },
}

impl From<NatsError> for flume_core::Error {
    fn from(e: NatsError) -> Self {
        match e {
            NatsError::TooLarge { size, max } => flume_core::Error::RecordTooLarge { size, max },
            NatsError::Foreign {
                stream,
                sequence,
                reason,
            } => flume_core::Error::Corrupt {
                path: stream.into(),
                offset: sequence,
                reason,
            },
            NatsError::Closed => flume_core::Error::Closed,
            NatsError::Conflict { expected, actual } => {
                flume_core::Error::Conflict { expected, actual }
            }
            other => flume_core::Error::Backend(Box::new(other)),
        }
    }
}

/// Shorthand for an [`NatsError::Other`].
pub(crate) fn other(what: &'static str, e: impl std::fmt::Display) -> NatsError {
    NatsError::Other {
        what,
        reason: e.to_string(),
    }
}
