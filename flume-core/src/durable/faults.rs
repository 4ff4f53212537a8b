//! [`Faults`]: the one fault-injection plan that the file layers of every crate consult
//! in tests.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Error, Result};

/// A fault-injection plan for tests, shared by every file a component writes: crash
/// points, short writes, a full disk, failing fsyncs, a file system without
/// `fallocate`, and counters of what was done.
///
/// A component keeps a `Faults` next to its files and calls it at each step that can
/// fail; the default value is inactive and every call on it is a no-op that costs a
/// branch, so production code carries it at no cost. Clones share one plan.
///
/// - Crash points: [`check`](Self::check) fails (as an I/O error that says "injected
///   crash at …") once the [`arm`](Self::arm)ed point has been reached a given number
///   of times; the test then throws the component away, as a crash would, and reopens
///   its files.
/// - Budgets: writes, fsyncs and reservations pass until their budget is spent, then
///   fail the way a full disk or a failing disk does. A file layer asks
///   [`write_allowance`](Self::write_allowance) and reports [`wrote`](Self::wrote),
///   and calls [`sync`](Self::sync) and [`reserve`](Self::reserve) before the real ones.
///
/// ```
/// use flume_core::durable::Faults;
///
/// let faults = Faults::new();
/// faults.arm("manifest.rename", 1); // the second time it is reached
/// assert!(faults.check("manifest.rename").is_ok());
/// assert!(faults.check("manifest.sync").is_ok());
/// assert!(faults.check("manifest.rename").is_err());
/// assert!(faults.fired());
///
/// faults.set_write_budget(5);
/// assert_eq!(faults.write_allowance(8), 5); // a short write, then ENOSPC
/// faults.wrote(5);
/// assert_eq!(faults.write_allowance(8), 0);
///
/// // The default plan is inactive: everything passes.
/// assert!(Faults::default().sync().is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Faults(Option<Arc<Plan>>);

#[derive(Debug)]
struct Plan {
    armed: Mutex<Option<(String, usize)>>,
    write_budget: AtomicU64,
    sync_budget: AtomicU64,
    reserve_budget: AtomicU64,
    reserve_unsupported: AtomicBool,
    counters: Mutex<BTreeMap<String, u64>>,
}

/// An unlimited budget.
const UNLIMITED: u64 = u64::MAX;

impl Faults {
    /// An active plan that lets everything through until told otherwise.
    pub fn new() -> Faults {
        Faults(Some(Arc::new(Plan {
            armed: Mutex::new(None),
            write_budget: UNLIMITED.into(),
            sync_budget: UNLIMITED.into(),
            reserve_budget: UNLIMITED.into(),
            reserve_unsupported: false.into(),
            counters: Mutex::new(BTreeMap::new()),
        })))
    }

    /// Whether this is an active plan (made by [`Faults::new`]).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }

    /// Arms `point` to fail the `(countdown + 1)`th time it is [`check`](Self::check)ed
    /// from now; replaces any point armed before. Does nothing on an inactive plan.
    pub fn arm(&self, point: &str, countdown: usize) {
        if let Some(plan) = &self.0 {
            *lock(&plan.armed) = Some((point.to_string(), countdown));
        }
    }

    /// Whether the armed point has fired (or nothing is armed).
    pub fn fired(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|plan| lock(&plan.armed).is_none())
    }

    /// Passes, or fails with [`Error::Io`] (path: `point`, message "injected crash at
    /// `point`") when the armed point is reached for the armed time.
    ///
    /// # Errors
    /// The injected crash.
    #[inline]
    pub fn check(&self, point: &str) -> Result<()> {
        let Some(plan) = &self.0 else {
            return Ok(());
        };
        let mut armed = lock(&plan.armed);
        if let Some((name, countdown)) = armed.as_mut() {
            if name == point {
                if *countdown == 0 {
                    *armed = None;
                    return Err(Error::io(
                        point,
                        io::Error::other(format!("injected crash at {point}")),
                    ));
                }
                *countdown -= 1;
            }
        }
        Ok(())
    }

    /// Lets `bytes` more bytes be written; the write that crosses the budget writes
    /// what fits and then fails. `u64::MAX`: unlimited (the initial value).
    pub fn set_write_budget(&self, bytes: u64) {
        if let Some(plan) = &self.0 {
            plan.write_budget.store(bytes, Ordering::SeqCst);
        }
    }

    /// Lets `syncs` more fsyncs succeed; the next one fails with `EIO`. `u64::MAX`:
    /// unlimited (the initial value).
    pub fn set_sync_budget(&self, syncs: u64) {
        if let Some(plan) = &self.0 {
            plan.sync_budget.store(syncs, Ordering::SeqCst);
        }
    }

    /// Lets `bytes` more bytes of new disk space be reserved; a reservation beyond
    /// fails whole with `ENOSPC`. `u64::MAX`: unlimited (the initial value).
    pub fn set_reserve_budget(&self, bytes: u64) {
        if let Some(plan) = &self.0 {
            plan.reserve_budget.store(bytes, Ordering::SeqCst);
        }
    }

    /// Makes every reservation fail with `EOPNOTSUPP`, as on a file system without
    /// `fallocate`.
    pub fn set_reserve_unsupported(&self, unsupported: bool) {
        if let Some(plan) = &self.0 {
            plan.reserve_unsupported
                .store(unsupported, Ordering::SeqCst);
        }
    }

    /// How many bytes of a `len`-byte write may go through now: `len`, or less when the
    /// write budget is nearly spent (the layer then writes that much and fails with
    /// `ENOSPC`). Report what was written with [`wrote`](Self::wrote).
    pub fn write_allowance(&self, len: usize) -> usize {
        match &self.0 {
            None => len,
            Some(plan) => {
                let budget = plan.write_budget.load(Ordering::SeqCst);
                budget.min(len as u64) as usize
            }
        }
    }

    /// Takes `bytes` written from the write budget.
    pub fn wrote(&self, bytes: usize) {
        if let Some(plan) = &self.0 {
            let _ = plan
                .write_budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |budget| {
                    (budget != UNLIMITED).then(|| budget.saturating_sub(bytes as u64))
                });
        }
    }

    /// Takes one fsync from the sync budget, or fails with `EIO` when it is spent.
    ///
    /// # Errors
    /// The injected `EIO`.
    pub fn sync(&self) -> io::Result<()> {
        let Some(plan) = &self.0 else {
            return Ok(());
        };
        let taken = plan
            .sync_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |budget| match budget {
                0 => None,
                UNLIMITED => Some(UNLIMITED),
                n => Some(n - 1),
            });
        match taken {
            Ok(_) => Ok(()),
            Err(_) => Err(io::Error::from_raw_os_error(5)), // EIO
        }
    }

    /// Takes `new_bytes` of new disk space from the reserve budget, or fails with
    /// `EOPNOTSUPP` (see [`set_reserve_unsupported`](Self::set_reserve_unsupported)) or,
    /// when the budget is smaller, `ENOSPC`.
    ///
    /// # Errors
    /// The injected error.
    pub fn reserve(&self, new_bytes: u64) -> io::Result<()> {
        let Some(plan) = &self.0 else {
            return Ok(());
        };
        if plan.reserve_unsupported.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(95)); // EOPNOTSUPP
        }
        let taken =
            plan.reserve_budget
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |budget| match budget {
                    UNLIMITED => Some(UNLIMITED),
                    n => n.checked_sub(new_bytes),
                });
        match taken {
            Ok(_) => Ok(()),
            Err(_) => Err(io::Error::from_raw_os_error(28)), // ENOSPC
        }
    }

    /// Whether reserves are budgeted (a layer then needs to know how many of the bytes
    /// it reserves are new).
    pub fn reserve_is_limited(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|plan| plan.reserve_budget.load(Ordering::SeqCst) != UNLIMITED)
    }

    /// Adds one to the counter `name` (for tests that check which path ran).
    pub fn count(&self, name: &str) {
        if let Some(plan) = &self.0 {
            *lock(&plan.counters).entry(name.to_string()).or_insert(0) += 1;
        }
    }

    /// The counter `name`.
    pub fn counted(&self, name: &str) -> u64 {
        self.0
            .as_ref()
            .and_then(|plan| lock(&plan.counters).get(name).copied())
            .unwrap_or(0)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Faults(off)"),
            Some(plan) => f.debug_tuple("Faults").field(plan).finish(),
        }
    }
}

/// Plans compare by identity, so that the options that carry one can stay `Eq`.
impl PartialEq for Faults {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Faults {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_point_fires_once_after_its_countdown() {
        let faults = Faults::new();
        assert!(faults.fired());
        faults.arm("a", 2);
        assert!(!faults.fired());
        for _ in 0..2 {
            assert!(faults.check("a").is_ok());
            assert!(faults.check("b").is_ok());
        }
        match faults.check("a") {
            Err(Error::Io { path, source }) => {
                assert_eq!(path, std::path::Path::new("a"));
                assert_eq!(source.to_string(), "injected crash at a");
            }
            other => panic!("expected the injected crash, got {other:?}"),
        }
        assert!(faults.fired());
        assert!(faults.check("a").is_ok());
    }

    #[test]
    fn budgets_run_out_with_the_errors_of_a_full_or_failing_disk() {
        let faults = Faults::new();
        faults.set_sync_budget(1);
        assert!(faults.sync().is_ok());
        assert_eq!(faults.sync().map_err(|e| e.raw_os_error()), Err(Some(5)));
        faults.set_sync_budget(UNLIMITED);
        assert!(faults.sync().is_ok());

        assert!(!faults.reserve_is_limited());
        faults.set_reserve_budget(10);
        assert!(faults.reserve_is_limited());
        assert!(faults.reserve(6).is_ok());
        let full = faults.reserve(6).expect_err("4 bytes left");
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert!(faults.reserve(4).is_ok());
        faults.set_reserve_unsupported(true);
        assert_eq!(
            faults.reserve(0).map_err(|e| e.raw_os_error()),
            Err(Some(95))
        );

        assert_eq!(faults.write_allowance(usize::MAX), usize::MAX);
        faults.wrote(100); // unlimited stays unlimited
        assert_eq!(faults.write_allowance(7), 7);
        faults.set_write_budget(3);
        assert_eq!(faults.write_allowance(7), 3);
        faults.wrote(3);
        assert_eq!(faults.write_allowance(7), 0);
    }

    #[test]
    fn counters_and_identity() {
        let faults = Faults::new();
        faults.count("syncs");
        faults.clone().count("syncs");
        assert_eq!(faults.counted("syncs"), 2);
        assert_eq!(faults.counted("writes"), 0);
        assert_eq!(faults, faults.clone());
        assert_ne!(faults, Faults::new());
        assert_ne!(faults, Faults::default());
        assert_eq!(Faults::default(), Faults::default());
        assert_eq!(format!("{:?}", Faults::default()), "Faults(off)");
    }

    #[test]
    fn an_inactive_plan_passes_everything() {
        let off = Faults::default();
        off.arm("a", 0);
        off.set_sync_budget(0);
        off.set_write_budget(0);
        off.set_reserve_unsupported(true);
        assert!(off.check("a").is_ok());
        assert!(off.sync().is_ok());
        assert!(off.reserve(1).is_ok());
        assert_eq!(off.write_allowance(9), 9);
        off.count("x");
        assert_eq!(off.counted("x"), 0);
        assert!(!off.is_active());
    }
}
