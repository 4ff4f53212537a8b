//! The view suite's cases: resuming, version changes, rebuilds, crashes, reads that wait,
//! failures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;

use super::support::within;
use super::view_suite::ViewUnderTest;
use crate::{
    BoxError, Checkpoint, CheckpointPolicy, Error, Flume, Log, ReaderContext, Records, Result, Seq,
    StreamOptions, View, ViewState, Wait,
};

/// The name the suite gives the view in its database.
const NAME: &str = "under_test";

/// The reader of the view under test.
type Reader<V> = <<V as ViewUnderTest>::View as View<<V as ViewUnderTest>::Value>>::Reader;

// ---------------------------------------------------------------------------------------
// The probe: the view, counted, with failures and crashes on demand

/// What the probe saw the view do.
#[derive(Debug, Default)]
struct Counters {
    /// Records applied (successfully, by the view).
    applied: AtomicU64,
    /// Calls of `reset`.
    resets: AtomicUsize,
}

/// What the probe does besides passing calls on.
#[derive(Debug, Clone, Default)]
struct Script {
    /// After the view applied a batch that reaches this seq, `apply` fails, as many times
    /// as the counter says.
    fail_at: Option<(Seq, Arc<AtomicUsize>)>,
    /// Checkpoints are acknowledged but never reach the view: what a crash right after
    /// `apply` leaves behind.
    drop_checkpoints: bool,
}

/// The view under test, wrapped: every call goes to it, and the probe counts and obeys
/// its script.
struct Probe<V> {
    view: V,
    counters: Arc<Counters>,
    script: Script,
}

impl<T: 'static, V: View<T>> View<T> for Probe<V> {
    type Reader = V::Reader;

    fn version(&self) -> u32 {
        self.view.version()
    }

    fn reader(&self, ctx: ReaderContext<T>) -> V::Reader {
        self.view.reader(ctx)
    }

    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        self.view.load()
    }

    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError> {
        let (len, last) = (records.len() as u64, records.last_seq());
        self.view.apply(records)?;
        self.counters.applied.fetch_add(len, Ordering::SeqCst);
        if let Some((seq, failures)) = &self.script.fail_at {
            let reached = last >= Some(*seq);
            if reached
                && failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Err(format!(
                    "the conformance suite fails the apply that reached record {seq}"
                )
                .into());
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError> {
        if self.script.drop_checkpoints {
            return Ok(());
        }
        self.view.checkpoint(since)
    }

    fn reset(&mut self) -> Result<(), BoxError> {
        self.counters.resets.fetch_add(1, Ordering::SeqCst);
        self.view.reset()
    }

    fn checkpoint_policy(&self) -> CheckpointPolicy {
        self.view.checkpoint_policy()
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A directory of its own for one case, removed when the case ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(case: &str) -> Scratch {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "flume-view-conformance-{}-{n}-{case}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One open database with the view under test, probed.
struct Open<V: ViewUnderTest> {
    db: Flume<V::Value>,
    reader: Reader<V>,
    counters: Arc<Counters>,
}

impl<V: ViewUnderTest> Open<V> {
    /// Opens a database over a log holding `records`, with the view at `version` in `dir`.
    async fn new(
        under_test: &V,
        records: Vec<Bytes>,
        dir: &Path,
        version: u32,
        script: Script,
    ) -> Open<V> {
        let log = within("the log factory", under_test.log(records)).await;
        let db = Flume::<V::Value>::new(log);
        let counters = Arc::new(Counters::default());
        let probe = Probe {
            view: under_test.view(dir, version),
            counters: Arc::clone(&counters),
            script,
        };
        let reader = db
            .add_view(NAME, probe)
            .unwrap_or_else(|e| panic!("adding the view failed: {e}"));
        Open {
            db,
            reader,
            counters,
        }
    }

    fn applied(&self) -> u64 {
        self.counters.applied.load(Ordering::SeqCst)
    }

    fn resets(&self) -> usize {
        self.counters.resets.load(Ordering::SeqCst)
    }

    /// Appends `value(i)` for every `i` in `seqs`, one at a time, checking the seqs.
    async fn append_each(&self, under_test: &V, seqs: std::ops::Range<Seq>) {
        for i in seqs {
            let seq = within("append", self.db.append(&under_test.value(i)))
                .await
                .unwrap_or_else(|e| panic!("append of value {i} failed: {e}"));
            assert_eq!(seq, i, "the suite's log must assign seqs from 0");
        }
    }

    /// Appends `value(i)` for every `i` in `seqs` as one batch.
    async fn append_batch(&self, under_test: &V, seqs: std::ops::Range<Seq>) {
        let values: Vec<V::Value> = seqs.clone().map(|i| under_test.value(i)).collect();
        let got = within("append_batch", self.db.append_batch(&values))
            .await
            .unwrap_or_else(|e| panic!("append_batch of values {seqs:?} failed: {e}"));
        assert_eq!(got, seqs, "the suite's log must assign seqs from 0");
    }

    /// Reads the state, failing the test on an error.
    async fn read(&self, under_test: &V, wait: Wait) -> V::State {
        within("a view read", under_test.read(&self.reader, wait))
            .await
            .unwrap_or_else(|e| panic!("a read with {wait:?} failed: {e}"))
    }

    /// Checks that a read with `wait` answers the model of the first `len` values.
    async fn assert_state(&self, under_test: &V, wait: Wait, len: Seq, what: &str) {
        let got = self.read(under_test, wait).await;
        let want = model(under_test, len);
        assert!(
            got == want,
            "{what}: a read with {wait:?} answered {got:?}, but the model of the first {len} \
             values is {want:?}"
        );
    }

    /// The log's records, to reopen it later.
    async fn records(&self) -> Vec<Bytes> {
        let records: Vec<(Seq, Bytes)> = within(
            "reading the log back",
            self.db.log().stream(StreamOptions::new()).try_collect(),
        )
        .await
        .unwrap_or_else(|e| panic!("reading the log back failed: {e}"));
        records.into_iter().map(|(_, bytes)| bytes).collect()
    }

    /// Closes the database and returns the log's records.
    async fn close(self) -> Vec<Bytes> {
        let records = self.records().await;
        within("close", self.db.close())
            .await
            .unwrap_or_else(|e| panic!("close failed: {e}"));
        records
    }

    fn state(&self) -> ViewState {
        self.db.status().borrow().views[NAME].state
    }
}

/// The model of the first `len` values.
fn model<V: ViewUnderTest>(under_test: &V, len: Seq) -> V::State {
    let values: Vec<V::Value> = (0..len).map(|i| under_test.value(i)).collect();
    under_test.model(&values)
}

/// A closed database holding the values `0..len`, its view checkpointed at close.
async fn persisted<V: ViewUnderTest>(under_test: &V, dir: &Path, len: Seq) -> Vec<Bytes> {
    let db = Open::new(under_test, Vec::new(), dir, 1, Script::default()).await;
    db.append_each(under_test, 0..len / 2).await;
    db.append_batch(under_test, len / 2..len).await;
    db.assert_state(under_test, Wait::Log, len, "before closing")
        .await;
    db.close().await
}

/// How many records a view must apply after a reopen when `len` were checkpointed.
fn after_reopen<V: ViewUnderTest>(under_test: &V, len: Seq) -> u64 {
    if under_test.persistent() {
        0
    } else {
        len
    }
}

fn assert_view_failed<T: std::fmt::Debug>(what: &str, result: Result<T>) {
    match result {
        Err(Error::ViewFailed { name, .. }) if name == NAME => {}
        other => panic!("{what}: expected Err(ViewFailed {{ name: {NAME:?} }}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The cases

/// A new view answers the model of the empty log; `Wait::Log` reflects every append that
/// returned before the read (single appends and a batch); `Wait::AtLeast(seq)` waits for a
/// seq appended after the read was issued; `Wait::NoWait` answers a loaded state; after
/// `close`, reads with every level fail with [`Error::Closed`].
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_reads_wait<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("reads_wait");
    let db = Open::new(&under_test, Vec::new(), dir.path(), 1, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 0, "an empty log")
        .await;
    db.assert_state(&under_test, Wait::NoWait, 0, "an empty log")
        .await;
    for i in 0..10 {
        db.append_each(&under_test, i..i + 1).await;
        db.assert_state(&under_test, Wait::Log, i + 1, "after an append")
            .await;
    }
    db.append_batch(&under_test, 10..30).await;
    db.assert_state(&under_test, Wait::AtLeast(29), 30, "after a batch")
        .await;
    db.assert_state(&under_test, Wait::NoWait, 30, "once caught up")
        .await;

    // A read waiting for a seq that is not appended yet.
    let (state, ()) = within(
        "a read waiting for later appends",
        futures::future::join(under_test.read(&db.reader, Wait::AtLeast(34)), async {
            tokio::task::yield_now().await;
            db.append_each(&under_test, 30..35).await;
        }),
    )
    .await;
    let state = state.unwrap_or_else(|e| panic!("a read with AtLeast(34) failed: {e}"));
    assert!(
        state == model(&under_test, 35),
        "a read with AtLeast(34) issued before the appends answered {state:?}"
    );

    let reader = db.reader.clone();
    db.close().await;
    for wait in [Wait::Log, Wait::AtLeast(0), Wait::NoWait] {
        match within("a read after close", under_test.read(&reader, wait)).await {
            Err(Error::Closed) => {}
            other => {
                panic!("a read with {wait:?} after close: expected Err(Closed), got {other:?}")
            }
        }
    }
}

/// Reopened over the same log and directory, a persistent view answers `Wait::NoWait`
/// (issued before the driver has loaded it) from its checkpoint, applies no record again,
/// and applies the records appended after the reopen. A view that is not persistent
/// applies every record again.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_resumes_from_checkpoint<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("resumes");
    let records = persisted(&under_test, dir.path(), 20).await;

    let db = Open::new(&under_test, records, dir.path(), 1, Script::default()).await;
    if under_test.persistent() {
        db.assert_state(&under_test, Wait::NoWait, 20, "right after the reopen")
            .await;
    }
    db.assert_state(&under_test, Wait::Log, 20, "after the reopen")
        .await;
    assert_eq!(
        db.applied(),
        after_reopen(&under_test, 20),
        "records applied again after the reopen"
    );
    let status = db.db.status().borrow().views[NAME].clone();
    assert_eq!(
        (status.since, status.state),
        (Some(19), ViewState::Ready),
        "the view's status after the reopen"
    );
    db.append_each(&under_test, 20..25).await;
    db.assert_state(&under_test, Wait::Log, 25, "appends after the reopen")
        .await;
    assert_eq!(
        db.applied(),
        after_reopen(&under_test, 20) + 5,
        "records applied after the reopen, 5 appended"
    );
    db.close().await;
}

/// Reopened at another version, the view is reset and rebuilt from the whole log (its old
/// state is gone: nothing counts twice); reopened again at the new version, it resumes.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_version_change_rebuilds<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("version_change");
    let records = persisted(&under_test, dir.path(), 20).await;

    let db = Open::new(&under_test, records, dir.path(), 2, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 20, "at version 2")
        .await;
    assert_eq!(db.applied(), 20, "records applied at version 2");
    db.append_each(&under_test, 20..22).await;
    db.assert_state(&under_test, Wait::Log, 22, "appends at version 2")
        .await;
    let records = db.close().await;

    let db = Open::new(&under_test, records, dir.path(), 2, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 22, "reopened at version 2")
        .await;
    assert_eq!(
        db.applied(),
        after_reopen(&under_test, 22),
        "records applied again, reopened at version 2"
    );
    db.close().await;
}

/// [`Flume::rebuild`] resets the view once and applies every record once more; the state
/// is the same, appends go on, and the rebuilt state is what a reopen resumes from.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_rebuild_applies_everything_again<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("rebuild");
    let db = Open::new(&under_test, Vec::new(), dir.path(), 1, Script::default()).await;
    db.append_batch(&under_test, 0..20).await;
    db.assert_state(&under_test, Wait::Log, 20, "before the rebuild")
        .await;
    assert_eq!(db.applied(), 20);
    within("rebuild", db.db.rebuild())
        .await
        .unwrap_or_else(|e| panic!("rebuild failed: {e}"));
    assert_eq!(db.resets(), 1, "resets during one rebuild");
    assert_eq!(
        db.applied(),
        40,
        "records applied, 20 before and 20 by the rebuild"
    );
    db.assert_state(&under_test, Wait::NoWait, 20, "after the rebuild")
        .await;
    db.append_each(&under_test, 20..25).await;
    db.assert_state(&under_test, Wait::Log, 25, "appends after the rebuild")
        .await;
    let records = db.close().await;

    let db = Open::new(&under_test, records, dir.path(), 1, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 25, "reopened after the rebuild")
        .await;
    assert_eq!(db.applied(), after_reopen(&under_test, 25));
    db.close().await;
}

/// Records applied after the last checkpoint but never checkpointed (the database
/// crashed: the suite keeps every later checkpoint from reaching the view) are applied
/// again from that checkpoint at the next open, each exactly once: whatever the view wrote
/// while applying them is not taken for a checkpoint.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_crash_after_apply_resumes<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("crash");
    let records = persisted(&under_test, dir.path(), 20).await;

    let crashing = Script {
        drop_checkpoints: true,
        ..Script::default()
    };
    let db = Open::new(&under_test, records, dir.path(), 1, crashing).await;
    db.append_each(&under_test, 20..25).await;
    db.append_batch(&under_test, 25..300).await;
    db.assert_state(&under_test, Wait::Log, 300, "before the crash")
        .await;
    let records = db.close().await;

    let db = Open::new(&under_test, records, dir.path(), 1, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 300, "after the crash")
        .await;
    let again = if under_test.persistent() { 280 } else { 300 };
    assert_eq!(
        db.applied(),
        again,
        "records applied after the crash, from a checkpoint at seq 19"
    );
    db.close().await;
}

/// A view checkpointed beyond the tail of the log it is opened over (a log that lost
/// records, restored from an older copy) is reset and rebuilt from that log.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_ahead_of_log_rebuilds<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("ahead_of_log");
    let mut records = persisted(&under_test, dir.path(), 20).await;
    records.truncate(8);

    let db = Open::new(&under_test, records, dir.path(), 1, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 8, "over a log of 8 records")
        .await;
    assert_eq!(db.applied(), 8, "records applied over the shorter log");
    db.append_each(&under_test, 8..12).await;
    db.assert_state(&under_test, Wait::Log, 12, "appends over the shorter log")
        .await;
    db.close().await;
}

/// [`Flume::revert`] below the view's position makes the view answer the shorter log,
/// then the records appended after the revert, and a reopen resumes from that state.
/// Skipped, with a note on stderr, when the log returns [`Error::Unsupported`].
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_revert_rebuilds<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("revert");
    let db = Open::new(&under_test, Vec::new(), dir.path(), 1, Script::default()).await;
    db.append_batch(&under_test, 0..20).await;
    db.assert_state(&under_test, Wait::Log, 20, "before the revert")
        .await;
    match within("revert", db.db.revert(Some(9))).await {
        Ok(()) => {}
        Err(Error::Unsupported(_)) => {
            eprintln!("view_revert_rebuilds: skipped, the log cannot revert");
            db.close().await;
            return;
        }
        Err(e) => panic!("revert(Some(9)) failed: {e}"),
    }
    db.assert_state(&under_test, Wait::Log, 10, "after revert(Some(9))")
        .await;
    db.append_each(&under_test, 10..15).await;
    db.assert_state(&under_test, Wait::Log, 15, "appends after the revert")
        .await;
    let records = db.close().await;

    let db = Open::new(&under_test, records, dir.path(), 1, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 15, "reopened after the revert")
        .await;
    assert_eq!(db.applied(), after_reopen(&under_test, 15));
    db.close().await;
}

/// An `apply` that fails once (after the view applied the batch: its state then holds
/// records the driver does not count) makes the driver reset the view and rebuild it
/// once; reads answer the whole state, the view is `Ready`, and a reopen resumes.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_failure_heals_with_one_rebuild<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("failure_heals");
    let records = persisted(&under_test, dir.path(), 20).await;

    let once = Script {
        fail_at: Some((25, Arc::new(AtomicUsize::new(1)))),
        ..Script::default()
    };
    let db = Open::new(&under_test, records, dir.path(), 1, once).await;
    db.append_each(&under_test, 20..30).await;
    db.assert_state(&under_test, Wait::Log, 30, "after a failed apply")
        .await;
    assert_eq!(db.resets(), 1, "resets after one failed apply");
    assert_eq!(db.state(), ViewState::Ready, "the view's state");
    db.append_batch(&under_test, 30..40).await;
    db.assert_state(&under_test, Wait::Log, 40, "appends after the heal")
        .await;
    let records = db.close().await;

    let db = Open::new(&under_test, records, dir.path(), 1, Script::default()).await;
    db.assert_state(&under_test, Wait::Log, 40, "reopened after the heal")
        .await;
    assert_eq!(db.applied(), after_reopen(&under_test, 40));
    db.close().await;
}

/// An `apply` that fails again after the rebuild marks the view [`ViewState::Failed`];
/// reads (with every level, also one waiting when the view fails) and [`Flume::ready`]
/// return [`Error::ViewFailed`] naming it. [`Flume::rebuild`] gives it another chance,
/// after which it answers the whole state.
///
/// # Panics
/// When the view breaks the contract.
pub async fn view_failing_twice_is_failed<V: ViewUnderTest>(under_test: V) {
    let dir = Scratch::new("failing_twice");
    let twice = Script {
        fail_at: Some((3, Arc::new(AtomicUsize::new(2)))),
        ..Script::default()
    };
    let db = Open::new(&under_test, Vec::new(), dir.path(), 1, twice).await;
    let (waiting, ()) = within(
        "a read waiting when the view fails",
        futures::future::join(under_test.read(&db.reader, Wait::AtLeast(9)), async {
            tokio::task::yield_now().await;
            db.append_each(&under_test, 0..10).await;
        }),
    )
    .await;
    assert_view_failed("a read waiting when the view failed", waiting);
    for wait in [Wait::Log, Wait::AtLeast(0), Wait::NoWait] {
        let result = within("a read of a failed view", under_test.read(&db.reader, wait)).await;
        assert_view_failed(&format!("a read with {wait:?} of a failed view"), result);
    }
    assert_view_failed("ready", within("ready", db.db.ready()).await);
    assert_eq!(db.state(), ViewState::Failed, "the view's state");

    within("rebuild", db.db.rebuild())
        .await
        .unwrap_or_else(|e| panic!("rebuild of a failed view failed: {e}"));
    db.assert_state(&under_test, Wait::Log, 10, "rebuilt after failing")
        .await;
    assert_eq!(
        db.state(),
        ViewState::Ready,
        "the view's state after the rebuild"
    );
    db.close().await;
}
