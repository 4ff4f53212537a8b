//! The one error type of flume-core, shared by every log backend and view.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Seq;

/// A boxed error from user code: a view, a mapper, a backend's own failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in flume-core, a log backend or the view driver.
///
/// Variants carry the context needed to act on them (path, seq, byte offset).
/// New variants may be added in minor releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database or log was closed; the call cannot proceed. Open it again.
    #[error("the database is closed; reopen it to continue")]
    Closed,

    /// An earlier write or fsync failed, so the log no longer trusts its own tail.
    /// Every later append fails with this error; close and reopen the log to recover.
    ///
    /// `kind` tells why, when the failure was an OS error: match it to act, for example
    /// on a full disk (`std::io::ErrorKind::StorageFull`, `ENOSPC`, also reported for a
    /// quota, `EDQUOT`): free space, then close and reopen the log (reopening cuts
    /// whatever the failed write left half-written; every acknowledged record is kept).
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// use flume_core::Error;
    ///
    /// fn disk_full(e: &Error) -> bool {
    ///     matches!(e, Error::Poisoned { kind: Some(ErrorKind::StorageFull), .. })
    /// }
    /// # assert!(disk_full(&Error::Poisoned { reason: "write failed".into(), kind: Some(ErrorKind::StorageFull) }));
    /// ```
    #[error("the log is poisoned by an earlier failed write ({reason}); {}", poisoned_advice(*kind))]
    Poisoned {
        /// What failed first.
        reason: String,
        /// The kind of the OS error that failed the write or sync, when there was one.
        kind: Option<std::io::ErrorKind>,
    },

    /// Stored data is damaged somewhere other than a torn tail.
    #[error("corrupt data in {} at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The file (or, for a remote backend, the stream name) holding the damage.
        path: PathBuf,
        /// Byte offset of the first damaged byte, or of the record that contains it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A file the log needs is gone: for example its last segment, which the log's own
    /// records say exists. Nothing was opened or changed. Restore the file from a
    /// backup, or accept the loss with the backend's repair (for `flumelog-file`:
    /// `FileLog::repair`, which keeps every record before the missing file).
    #[error("{} is missing: {reason}", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// How the log knows it should exist, and what it held.
        reason: String,
    },

    /// Another handle (in this or another process) holds the log open.
    #[error("{} is locked by another open handle; close that one first", path.display())]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },

    /// A record exceeds the configured size limit.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The record's size in bytes.
        size: u64,
        /// The configured maximum.
        max: u64,
    },

    /// A value could not be encoded, or stored bytes could not be decoded.
    #[error("{}codec error: {source}", match seq { Some(s) => format!("record {s}: "), None => String::new() })]
    Codec {
        /// The record concerned, when known.
        seq: Option<Seq>,
        /// The codec's own error.
        #[source]
        source: BoxError,
    },

    /// No record has this seq (it is past the end of the log, or was reverted).
    #[error("no record with seq {seq}")]
    NotFound {
        /// The seq asked for.
        seq: Seq,
    },

    /// A view failed twice (once, then again after being rebuilt) and stopped.
    /// The other views keep running; `Flume::rebuild` tries it again.
    #[error("view {name:?} failed: {source}")]
    ViewFailed {
        /// The view's name.
        name: String,
        /// Why it failed.
        #[source]
        source: Arc<BoxError>,
    },

    /// A view found its own stored data damaged while answering a read (a checksum
    /// mismatch in one of its files, say).
    ///
    /// A view's read returns it (made with [`Error::view_damaged`]) from the closure it
    /// gives [`Waiter::try_read`](crate::Waiter::try_read), which then has the view
    /// reset and rebuilt from the log and reads again. Callers see it only when the data
    /// is still damaged after that rebuild; `Flume::rebuild` tries again.
    #[error("view {name:?} found its stored data damaged ({source}); it is rebuilt from the log, retry the read")]
    ViewDamaged {
        /// The view's name (empty until the view's `Waiter` fills it in).
        name: String,
        /// What is damaged.
        #[source]
        source: Arc<BoxError>,
    },

    /// `use_view` was given a name that is already taken.
    #[error("a view named {name:?} already exists; view names must be unique")]
    DuplicateView {
        /// The name.
        name: String,
    },

    /// No view has this name.
    #[error("no view named {name:?}")]
    NoSuchView {
        /// The name.
        name: String,
    },

    /// A view exists under this name, but its reader is not of the requested type.
    #[error("view {name:?} has a reader of type {actual}, not {requested}")]
    ViewType {
        /// The name.
        name: String,
        /// The reader type asked for.
        requested: &'static str,
        /// The reader type the view provides.
        actual: &'static str,
    },

    /// A conditional append ([`Log::append_if`](crate::Log::append_if),
    /// [`Flume::append_if`](crate::Flume::append_if)) found the log's last seq at `actual`
    /// instead of the `expected` one, so nothing was appended. Someone else appended in
    /// between: read again (waiting for `actual`), decide again, and retry.
    ///
    /// ```
    /// use flume_core::Error;
    /// let e = Error::Conflict { expected: Some(4), actual: Some(6) };
    /// assert!(matches!(e, Error::Conflict { actual: Some(6), .. }));
    /// assert_eq!(e.to_string(), "conditional append expected the log to end at seq 4, but it ends at seq 6; nothing was appended");
    /// ```
    #[error("conditional append expected the log to end at {}, but it ends at {}; nothing was appended", tail_name(*expected), tail_name(*actual))]
    Conflict {
        /// The last seq the caller expected (`None`: an empty log).
        expected: Option<Seq>,
        /// The log's actual last seq when the append was tried (`None`: empty).
        actual: Option<Seq>,
    },

    /// A read asked for the state as of `seq`, but the view keeps history only from
    /// `horizon` on (its retention option dropped what came before).
    #[error("seq {seq} is older than the history this view keeps, which starts at seq {horizon}")]
    HistoryTrimmed {
        /// The seq asked for.
        seq: Seq,
        /// The oldest seq whose state the view can still answer for.
        horizon: Seq,
    },

    /// The caller passed arguments that make no sense (for example a reverse live stream).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The backend does not support this operation.
    #[error("{0} is not supported by this log backend")]
    Unsupported(&'static str),

    /// An I/O error, with the path it concerns.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A backend-specific failure (network, remote server, ...).
    #[error("log backend error: {0}")]
    Backend(#[source] BoxError),
}

/// What to do about a poisoned log, by the kind of error that poisoned it.
fn poisoned_advice(kind: Option<std::io::ErrorKind>) -> &'static str {
    match kind {
        Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) => {
            "the disk is full: free space, then close and reopen the log"
        }
        _ => "close and reopen it",
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a codec error.
    pub fn codec(seq: Option<Seq>, source: impl Into<BoxError>) -> Self {
        Error::Codec {
            seq,
            source: source.into(),
        }
    }

    /// The error a view's read returns when it finds the view's own data damaged; see
    /// [`Error::ViewDamaged`].
    ///
    /// ```
    /// use flume_core::Error;
    /// let e = Error::view_damaged("run 7: block checksum mismatch");
    /// assert!(matches!(e, Error::ViewDamaged { .. }));
    /// ```
    pub fn view_damaged(source: impl Into<BoxError>) -> Self {
        Error::ViewDamaged {
            name: String::new(),
            source: Arc::new(source.into()),
        }
    }

    /// A copy of this error for a second recipient (waiters, status readers).
    ///
    /// Errors that own an OS error or a boxed source are flattened to their message,
    /// keeping the variant where the variant carries no such source.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Closed => Error::Closed,
            Error::Poisoned { reason, kind } => Error::Poisoned {
                reason: reason.clone(),
                kind: *kind,
            },
            Error::Missing { path, reason } => Error::Missing {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Corrupt {
                path,
                offset,
                reason,
            } => Error::Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::RecordTooLarge { size, max } => Error::RecordTooLarge {
                size: *size,
                max: *max,
            },
            Error::NotFound { seq } => Error::NotFound { seq: *seq },
            Error::Conflict { expected, actual } => Error::Conflict {
                expected: *expected,
                actual: *actual,
            },
            Error::HistoryTrimmed { seq, horizon } => Error::HistoryTrimmed {
                seq: *seq,
                horizon: *horizon,
            },
            Error::ViewFailed { name, source } => Error::ViewFailed {
                name: name.clone(),
                source: Arc::clone(source),
            },
            Error::ViewDamaged { name, source } => Error::ViewDamaged {
                name: name.clone(),
                source: Arc::clone(source),
            },
            Error::DuplicateView { name } => Error::DuplicateView { name: name.clone() },
            Error::NoSuchView { name } => Error::NoSuchView { name: name.clone() },
            Error::ViewType {
                name,
                requested,
                actual,
            } => Error::ViewType {
                name: name.clone(),
                requested,
                actual,
            },
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Unsupported(m) => Error::Unsupported(m),
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Codec { seq, source } => Error::Codec {
                seq: *seq,
                source: source.to_string().into(),
            },
            Error::Backend(source) => Error::Backend(source.to_string().into()),
        }
    }
}

/// How [`Error::Conflict`] names a log tail.
fn tail_name(tail: Option<Seq>) -> String {
    match tail {
        Some(seq) => format!("seq {seq}"),
        None => "nothing (an empty log)".to_string(),
    }
}
