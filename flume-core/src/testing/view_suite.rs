//! The view suite: what a view tells the suite about itself, the one list of cases, and
//! the macro that runs them.

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Log, Result, Seq, View, Wait};

/// A view as the view suite sees it: how to make it, how to read its whole state, and what
/// that state must be after a list of records.
///
/// The suite appends `value(0)`, `value(1)`, … (stored as JSON, so that record `i` always
/// has seq `i`), wraps the view to count what it applies and to inject failures and
/// crashes, and compares every read with [`model`](ViewUnderTest::model) of the values the
/// log holds. The view's own logic stays as it is: the suite never reaches into it.
///
/// The example on [`view_conformance_tests!`](crate::view_conformance_tests) is a
/// complete implementation.
pub trait ViewUnderTest: Send + Sync + 'static {
    /// The log's records, as the view sees them.
    type Value: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The view.
    type View: View<Self::Value>;
    /// What a read of the whole state returns, compared with [`model`](Self::model).
    type State: PartialEq + Debug;
    /// The log the suite runs the view over.
    type Log: Log;

    /// The value the suite appends as record `i`. Make values differ, so that a record
    /// applied twice or skipped shows in the state.
    fn value(&self, i: Seq) -> Self::Value;

    /// A new view at `version` that persists itself in `dir` (an existing directory,
    /// empty for a new case; the same directory when the suite reopens the database).
    fn view(&self, dir: &Path, version: u32) -> Self::View;

    /// Reads the whole state through the view's reader, waiting as `wait` says.
    ///
    /// # Errors
    /// The reader's errors, unchanged: the suite checks their variants.
    fn read(
        &self,
        reader: &<Self::View as View<Self::Value>>::Reader,
        wait: Wait,
    ) -> impl Future<Output = Result<Self::State>>;

    /// The state after applying `values`, in order, to a new view.
    fn model(&self, values: &[Self::Value]) -> Self::State;

    /// A log holding `records` (seqs from 0), open: a new log on the first call of a case,
    /// and the same records again each time the suite reopens the database (as a durable
    /// log would show after a restart).
    fn log(&self, records: Vec<Bytes>) -> impl Future<Output = Self::Log>;

    /// Whether the view persists itself in `dir`. Default: `true`. A view that keeps its
    /// state in memory only answers `false`; the suite then expects it to apply every
    /// record again after a reopen, instead of resuming from a checkpoint.
    fn persistent(&self) -> bool {
        true
    }
}

/// The view suite's cases, each with the line the docs show about it: the one list that
/// [`view_conformance_tests!`](crate::view_conformance_tests) and the table in
/// [`testing`](crate::testing) are made from. Calls `$callback` with the tokens after it,
/// then `name: "line",` for every case.
#[doc(hidden)]
#[macro_export]
macro_rules! __view_conformance_list {
    ([$($callback:tt)+] $($args:tt)*) => {
        $($callback)+! {
            $($args)*
            view_reads_wait: "`Wait::Log` reflects every append before the read, `Wait::AtLeast` its seq, `NoWait` a loaded state; reads after close fail with `Closed`",
            view_resumes_from_checkpoint: "reopened over the same log and directory, the view answers `NoWait` from its checkpoint and applies only newer records",
            view_version_change_rebuilds: "a new version wipes the stored state and rebuilds from the log, then resumes at the new version",
            view_rebuild_applies_everything_again: "`Flume::rebuild` resets the view and applies every record once more; the rebuilt state persists",
            view_crash_after_apply_resumes: "records applied but never checkpointed (a crash) are applied again from the last checkpoint, never twice",
            view_ahead_of_log_rebuilds: "a checkpoint beyond the log's tail (a log that lost records) makes the view rebuild",
            view_revert_rebuilds: "`Flume::revert` below the view's position rebuilds it to the shorter log (skipped when the log returns `Unsupported`)",
            view_failure_heals_with_one_rebuild: "an `apply` that fails once is reset and rebuilt; reads answer the whole state",
            view_failing_twice_is_failed: "an `apply` that fails again after its rebuild: `Failed` status, reads and `ready` return `ViewFailed`; `rebuild` heals it",
        }
    };
}

/// Runs every case of the view suite against a [`ViewUnderTest`], one `#[tokio::test]` per
/// case.
///
/// The argument is an expression, evaluated anew in each test, that gives the
/// [`ViewUnderTest`]. The tests go into a module, `view_conformance` by default; name it
/// with `name => view` to run the suite twice in one file (say, with two configurations).
///
/// The calling crate needs `tokio` with the `macros` and `rt` features, `serde`, and
/// `flume-core` with the `testing` feature, among its dev-dependencies. Each test runs on
/// a current-thread runtime, so that a read issued right after opening a database is
/// issued before the driver has loaded the view. Each case works in its own directory
/// under the system's temporary directory, removed when the case ends.
///
/// A view that keeps the sum of the records in memory, checked by the suite:
///
/// ```
/// use std::path::Path;
/// use std::sync::{Arc, Mutex};
///
/// use bytes::Bytes;
/// use flume_core::testing::ViewUnderTest;
/// use flume_core::{BoxError, ReaderContext, Records, Result, Seq, View, Wait, Waiter};
/// use flumelog_memory::MemoryLog;
///
/// #[derive(Debug, Default)]
/// struct Sum(Arc<Mutex<u64>>);
///
/// #[derive(Debug, Clone)]
/// struct SumReader(Arc<Mutex<u64>>, Waiter);
///
/// impl View<u64> for Sum {
///     type Reader = SumReader;
///     fn version(&self) -> u32 { 1 }
///     fn reader(&self, ctx: ReaderContext<u64>) -> SumReader { SumReader(self.0.clone(), ctx.waiter) }
///     fn apply(&mut self, records: Records<'_, u64>) -> Result<(), BoxError> {
///         for record in records {
///             *self.0.lock().unwrap() += *record.value()?;
///         }
///         Ok(())
///     }
///     fn reset(&mut self) -> Result<(), BoxError> {
///         *self.0.lock().unwrap() = 0;
///         Ok(())
///     }
/// }
///
/// struct SumUnderTest;
///
/// impl ViewUnderTest for SumUnderTest {
///     type Value = u64;
///     type View = Sum;
///     type State = u64;
///     type Log = MemoryLog;
///     fn value(&self, i: Seq) -> u64 { 1000 + i }
///     fn view(&self, _dir: &Path, _version: u32) -> Sum { Sum::default() }
///     async fn read(&self, reader: &SumReader, wait: Wait) -> Result<u64> {
///         reader.1.read(wait, || *reader.0.lock().unwrap()).await
///     }
///     fn model(&self, values: &[u64]) -> u64 { values.iter().sum() }
///     async fn log(&self, records: Vec<Bytes>) -> MemoryLog { records.into_iter().collect() }
///     // In memory only: everything is applied again after a reopen.
///     fn persistent(&self) -> bool { false }
/// }
///
/// // In tests/conformance.rs:
/// flume_core::view_conformance_tests!(SumUnderTest);
/// # fn main() {}
/// ```
///
/// This `Sum` ignores the version the suite asks for: a view that persists itself must
/// use it (its [`View::version`] returns it), or the version case fails.
#[macro_export]
macro_rules! view_conformance_tests {
    ($name:ident => $view:expr $(,)?) => {
        mod $name {
            $crate::__view_conformance_list! { [$crate::__view_conformance_cases] ($view) }
        }
    };
    ($view:expr $(,)?) => {
        $crate::view_conformance_tests!(view_conformance => $view);
    };
}

/// Implementation detail of [`view_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __view_conformance_cases {
    (($view:expr) $($case:ident: $checks:literal,)*) => {
        #[allow(unused_imports)]
        use super::*;
        $(
            #[tokio::test(flavor = "current_thread")]
            async fn $case() {
                $crate::testing::$case($view).await;
            }
        )*
    };
}
