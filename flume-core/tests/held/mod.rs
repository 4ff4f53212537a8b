//! A view whose `load` or `checkpoint` stays inside until the test releases it, and tells
//! the test when it has entered: for checking that one view's slow I/O holds back no
//! other view.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flume_core::{
    BoxError, Checkpoint, CheckpointPolicy, ReaderContext, Records, Result, Seq, View, Wait, Waiter,
};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen at once before it fails
/// (instead of hanging): generous, so that a busy machine cannot make it flake.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// `what` within [`PATIENCE`], or a failure saying what did not happen.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

/// Where a [`Held`] view stops: a latch the test releases, and the calls that entered.
#[derive(Clone)]
pub struct Hold {
    released: Arc<(Mutex<bool>, Condvar)>,
    entered_tx: mpsc::UnboundedSender<Option<Seq>>,
    entered_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Option<Seq>>>>,
}

impl Hold {
    pub fn new() -> Self {
        let (entered_tx, entered_rx) = mpsc::unbounded_channel();
        Hold {
            released: Arc::default(),
            entered_tx,
            entered_rx: Arc::new(tokio::sync::Mutex::new(entered_rx)),
        }
    }

    /// Resolves when the held call has been entered (with the checkpoint's `since`;
    /// `None` for a load). Fails the test after [`PATIENCE`].
    pub async fn entered(&self) -> Option<Seq> {
        let mut rx = self.entered_rx.lock().await;
        within("entering the held call", rx.recv())
            .await
            .expect("the view is gone")
    }

    /// Lets every held call (now and later) return.
    pub fn release(&self) {
        let (released, wake) = &*self.released;
        *released.lock().unwrap() = true;
        wake.notify_all();
    }

    /// Whether the test has released the view yet.
    pub fn is_released(&self) -> bool {
        *self.released.0.lock().unwrap()
    }

    /// Called by the view: tells the test, then waits for the release.
    fn hold(&self, at: Option<Seq>) {
        let _ = self.entered_tx.send(at);
        let (released, wake) = &*self.released;
        let mut released = released.lock().unwrap();
        while !*released {
            released = wake.wait(released).unwrap();
        }
    }
}

/// Releases the hold when dropped, so that a failing test does not leave a blocking
/// thread waiting forever (and the runtime with it).
pub struct ReleaseOnDrop(pub Hold);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// What a [`Held`] view has done, for the test to look at.
#[derive(Debug, Default)]
pub struct Log {
    /// Records applied (the view's state).
    pub applied: u64,
    /// The `since` of every checkpoint that returned, in order.
    pub checkpoints: Vec<Seq>,
}

/// Counts the records it applies. Its load (which finds `stored` records applied up to
/// `stored - 1`) or its checkpoint (asked for after every record) holds until released.
pub struct Held {
    log: Arc<Mutex<Log>>,
    stored: u64,
    load: Option<Hold>,
    checkpoint: Option<Hold>,
}

impl Held {
    pub fn new() -> Self {
        Held {
            log: Arc::default(),
            stored: 0,
            load: None,
            checkpoint: None,
        }
    }

    /// The view's load finds `records` records applied, and holds until released.
    pub fn holding_load(mut self, hold: &Hold, records: u64) -> Self {
        self.stored = records;
        self.load = Some(hold.clone());
        self
    }

    /// Every checkpoint of the view holds until released.
    pub fn holding_checkpoint(mut self, hold: &Hold) -> Self {
        self.checkpoint = Some(hold.clone());
        self
    }

    /// What the view has done, readable while it runs.
    pub fn log(&self) -> Arc<Mutex<Log>> {
        Arc::clone(&self.log)
    }
}

/// Reads how many records a [`Held`] view has applied.
#[derive(Clone, Debug)]
pub struct HeldReader {
    log: Arc<Mutex<Log>>,
    waiter: Waiter,
}

impl HeldReader {
    pub async fn count(&self, wait: Wait) -> Result<u64> {
        self.waiter
            .read(wait, || self.log.lock().unwrap().applied)
            .await
    }
}

impl View<u64> for Held {
    type Reader = HeldReader;

    fn version(&self) -> u32 {
        1
    }

    fn reader(&self, ctx: ReaderContext<u64>) -> HeldReader {
        HeldReader {
            log: Arc::clone(&self.log),
            waiter: ctx.waiter,
        }
    }

    fn load(&mut self) -> std::result::Result<Option<Checkpoint>, BoxError> {
        if let Some(hold) = &self.load {
            hold.hold(None);
        }
        self.log.lock().unwrap().applied = self.stored;
        Ok(Some(Checkpoint {
            version: 1,
            since: self.stored.checked_sub(1),
        }))
    }

    fn apply(&mut self, records: Records<'_, u64>) -> std::result::Result<(), BoxError> {
        self.log.lock().unwrap().applied += records.len() as u64;
        Ok(())
    }

    fn checkpoint(&mut self, since: Seq) -> std::result::Result<(), BoxError> {
        if let Some(hold) = &self.checkpoint {
            hold.hold(Some(since));
        }
        self.log.lock().unwrap().checkpoints.push(since);
        Ok(())
    }

    fn reset(&mut self) -> std::result::Result<(), BoxError> {
        *self.log.lock().unwrap() = Log::default();
        Ok(())
    }

    fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            records: 1,
            interval: Duration::from_millis(1),
        }
    }
}
