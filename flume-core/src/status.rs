//! What `Flume::status` reports: the log's position and each view's progress.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Seq;

/// A snapshot of the database: the log's `since`/`durable` and every view's state.
///
/// Watch it with [`Flume::status`](crate::Flume::status) to drive a progress bar.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Status {
    /// The log's position.
    pub log: LogStatus,
    /// Each view, by name.
    pub views: BTreeMap<String, ViewStatus>,
}

impl Status {
    /// Whether every view has applied every record the log shows.
    ///
    /// Every view is listed (as [`ViewState::Loading`]) from the moment it is added, so
    /// this is false until every added view has loaded and caught up. To wait for that,
    /// use [`Flume::ready`](crate::Flume::ready) rather than polling.
    pub fn is_ready(&self) -> bool {
        self.views.values().all(|v| v.state == ViewState::Ready)
    }
}

/// The log's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct LogStatus {
    /// The last record visible to readers.
    pub since: Option<Seq>,
    /// The last record that survives a power loss.
    pub durable: Option<Seq>,
}

/// One view's position and state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewStatus {
    /// The last record the view has applied.
    pub since: Option<Seq>,
    /// What the view is doing.
    pub state: ViewState,
    /// The fraction of the log the view has applied, from 0.0 to 1.0 (1.0 for an empty
    /// log). During a rebuild this is the rebuild's progress.
    pub progress: f64,
    /// Why the view failed, when it has.
    pub error: Option<String>,
}

/// What a view is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ViewState {
    /// Loading its persisted state.
    Loading,
    /// Applying records it has not seen yet.
    CatchingUp,
    /// Rebuilding from the start of the log after a reset.
    Rebuilding,
    /// Caught up with the log.
    Ready,
    /// Failed twice; see `error`. Reads return `Error::ViewFailed`.
    Failed,
    /// The database is closed.
    Closed,
}
