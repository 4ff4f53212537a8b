//! The background compaction thread of one store.

use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;

use crate::store::Store;

#[derive(Default)]
struct State {
    pending: bool,
    stop: bool,
}

#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    wake: Condvar,
}

impl Signal {
    fn stopped(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop
    }
}

/// Runs compactions on its own thread whenever poked; stopped and joined on drop.
pub struct Compactor {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor").finish_non_exhaustive()
    }
}

impl Compactor {
    /// Starts the thread. It holds the store weakly: once every handle is gone it ends.
    ///
    /// # Errors
    /// When the OS cannot start a thread.
    pub fn start(store: &Arc<Store>) -> std::io::Result<Compactor> {
        let signal = Arc::new(Signal::default());
        let weak: Weak<Store> = Arc::downgrade(store);
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("flume-lsm-compactor".into())
            .spawn(move || run(&weak, &thread_signal))?;
        Ok(Compactor {
            signal,
            thread: Some(thread),
        })
    }

    /// Asks for a compaction pass (the thread merges as long as the policy finds runs).
    pub fn poke(&self) {
        let mut state = self
            .signal
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.pending = true;
        self.signal.wake.notify_one();
    }
}

fn run(store: &Weak<Store>, signal: &Signal) {
    loop {
        {
            let mut state = signal.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.pending && !state.stop {
                state = signal
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            state.pending = false;
        }
        loop {
            let Some(store) = store.upgrade() else { return };
            match store.compact(false, &|| signal.stopped()) {
                Ok(true) if !signal.stopped() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "compaction failed; it is tried again after the next checkpoint");
                    break;
                }
            }
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        {
            let mut state = self
                .signal
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.stop = true;
            self.signal.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
