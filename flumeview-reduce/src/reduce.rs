//! `Reduce`: the view, its builder methods, and its `View` implementation.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use flume_core::{
    BoxError, Checkpoint, CheckpointPolicy, Error, ReaderContext, Record, Records, Seq, View,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode_state, encode_state};
use crate::file;
use crate::{ReduceReader, StateCodec};

/// The reducer every constructor compiles down to: it sees the raw record.
type Reducer<T, S> = Box<dyn FnMut(&mut S, &Record<'_, T>) -> Result<(), BoxError> + Send>;
/// A predicate on decoded values.
type Filter<T> = Box<dyn Fn(&T) -> bool + Send>;

/// The state and the seq of the last record it reflects, always changed together.
#[derive(Debug)]
pub(crate) struct Current<S> {
    pub(crate) state: S,
    pub(crate) since: Option<Seq>,
}

/// The state shared between the view and its readers.
pub(crate) type Shared<S> = Arc<RwLock<Current<S>>>;

/// Locks for reading, ignoring poison: every writer leaves the state whole (see
/// [`Rollback`]), so a panic elsewhere never makes it unusable.
pub(crate) fn read<S>(shared: &RwLock<Current<S>>) -> std::sync::RwLockReadGuard<'_, Current<S>> {
    shared.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<S>(shared: &RwLock<Current<S>>) -> RwLockWriteGuard<'_, Current<S>> {
    shared.write().unwrap_or_else(PoisonError::into_inner)
}

/// How a persisted view stores its state.
struct Persistence<S> {
    /// The directory of the state file.
    dir: PathBuf,
    encode: fn(StateCodec, &S) -> Result<Bytes, BoxError>,
    decode: fn(StateCodec, &Bytes) -> Result<S, BoxError>,
    /// The `since` of the file on disk, when it matches the state in memory.
    saved: Option<Seq>,
}

/// A view that folds every record of the log into one state value: a count, a sum, the
/// latest value per key…
///
/// Build it with one of the constructors, then chain options:
///
/// | constructor | the reducer sees | decodes records |
/// |---|---|---|
/// | [`Reduce::new`] | each value, `&T` | yes |
/// | [`Reduce::filter_map`] | what `map` returns for each value, when it returns `Some` | yes |
/// | [`Reduce::from_records`] | each raw [`Record`]: seq, bytes, and the value on demand | only if the reducer calls [`Record::value`] |
/// | [`Reduce::count`] | nothing: counts records | no |
///
/// | option | default |
/// |---|---|
/// | [`.filter(pred)`](Reduce::filter) | every record reaches the reducer |
/// | [`.persist(dir)`](Reduce::persist) | in memory only: rebuilt from the log at every start |
/// | [`.codec(codec)`](Reduce::codec) | [`StateCodec::Json`] |
/// | [`.checkpoint_every(records, interval)`](Reduce::checkpoint_every) | [`CheckpointPolicy::default`]: 100,000 records or 1 second |
///
/// Every record advances the view's `since`, whether a filter or a `map` let it through
/// or not.
///
/// The reducer runs on a blocking thread, one batch of records at a time, holding the
/// state's write lock for the batch, so readers see the state before or after a batch,
/// never in between. If the reducer fails (or a record it asks for does not decode), the
/// state goes back to `initial` at once and the driver rebuilds the view.
pub struct Reduce<T, S> {
    version: u32,
    initial: S,
    reduce: Reducer<T, S>,
    filters: Vec<Filter<T>>,
    current: Shared<S>,
    codec: StateCodec,
    policy: CheckpointPolicy,
    persistence: Option<Persistence<S>>,
    _records: PhantomData<fn(&T)>,
}

impl<T, S> fmt::Debug for Reduce<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reduce")
            .field("version", &self.version)
            .field("since", &read(&self.current).since)
            .field("filters", &self.filters.len())
            .field("dir", &self.persistence.as_ref().map(|p| &p.dir))
            .field("codec", &self.codec)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<T: 'static, S: Clone + Send + Sync + 'static> Reduce<T, S> {
    /// A view whose reducer sees every decoded value.
    ///
    /// `version` is yours to choose: bump it whenever `reduce` (or a filter) changes,
    /// and the persisted state is thrown away and rebuilt. `initial` is the state before
    /// any record, and the state again after every reset.
    ///
    /// ```
    /// use flumeview_reduce::Reduce;
    /// let sum: Reduce<i64, i64> = Reduce::new(1, 0, |sum, value| *sum += value);
    /// ```
    ///
    /// A reducer that can fail is written with [`Reduce::from_records`].
    pub fn new<F>(version: u32, initial: S, mut reduce: F) -> Self
    where
        F: FnMut(&mut S, &T) + Send + 'static,
    {
        Self::from_records(version, initial, move |state, record| {
            reduce(state, record.value()?);
            Ok(())
        })
    }

    /// A view whose reducer sees `map(value)` for every value where it is `Some`, like
    /// [`Iterator::filter_map`]: pick the part of a record the state needs, skip the
    /// records it does not.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use flumeview_reduce::Reduce;
    ///
    /// #[derive(Debug)]
    /// struct Post { author: String, text: String }
    ///
    /// // Posts per author, ignoring empty posts.
    /// let per_author: Reduce<Post, HashMap<String, u64>> = Reduce::filter_map(
    ///     1,
    ///     HashMap::new(),
    ///     |post: &Post| (!post.text.is_empty()).then(|| post.author.clone()),
    ///     |counts, author| *counts.entry(author).or_default() += 1,
    /// );
    /// ```
    pub fn filter_map<M, F, R>(version: u32, initial: S, map: F, mut reduce: R) -> Self
    where
        F: Fn(&T) -> Option<M> + Send + 'static,
        R: FnMut(&mut S, M) + Send + 'static,
    {
        Self::from_records(version, initial, move |state, record| {
            if let Some(mapped) = map(record.value()?) {
                reduce(state, mapped);
            }
            Ok(())
        })
    }

    /// A view whose reducer sees each raw [`Record`]: its seq, its stored bytes, and its
    /// value through [`Record::value`], decoded only when asked for (and at most once
    /// across all views). The reducer may fail; the view is then reset and rebuilt once,
    /// and marked failed if it fails again.
    ///
    /// ```
    /// use flume_core::{BoxError, Record};
    /// use flumeview_reduce::Reduce;
    ///
    /// // Total bytes stored, without decoding a single record.
    /// let bytes: Reduce<String, u64> = Reduce::from_records(
    ///     1,
    ///     0,
    ///     |total: &mut u64, record: &Record<'_, String>| -> Result<(), BoxError> {
    ///         *total += record.bytes().len() as u64;
    ///         Ok(())
    ///     },
    /// );
    /// ```
    pub fn from_records<F>(version: u32, initial: S, reduce: F) -> Self
    where
        F: FnMut(&mut S, &Record<'_, T>) -> Result<(), BoxError> + Send + 'static,
    {
        Reduce {
            version,
            current: Arc::new(RwLock::new(Current {
                state: initial.clone(),
                since: None,
            })),
            initial,
            reduce: Box::new(reduce),
            filters: Vec::new(),
            codec: StateCodec::default(),
            policy: CheckpointPolicy::default(),
            persistence: None,
            _records: PhantomData,
        }
    }

    /// Only values for which `pred` returns `true` reach the reducer; the others still
    /// advance the view's `since`. Several filters must all pass; they run in the order
    /// added, before the reducer (and before the `map` of [`Reduce::filter_map`]).
    ///
    /// A filter needs the decoded value, so it makes every record decode, even for a
    /// [`Reduce::from_records`] reducer that would not have.
    ///
    /// ```
    /// use flumeview_reduce::Reduce;
    /// let even_sum: Reduce<i64, i64> =
    ///     Reduce::new(1, 0, |sum, value| *sum += value).filter(|value| value % 2 == 0);
    /// ```
    #[must_use]
    pub fn filter<P>(mut self, pred: P) -> Self
    where
        P: Fn(&T) -> bool + Send + 'static,
    {
        self.filters.push(Box::new(pred));
        self
    }

    /// Persists the state, with its version and `since`, in `dir` (created if missing),
    /// so that a restart resumes where the last checkpoint left off instead of
    /// rebuilding from the start of the log. Default: not persisted.
    ///
    /// The directory belongs to this view: it holds the file `reduce.state` (and, for a
    /// moment during each checkpoint, `reduce.state.tmp`). Give each view its own.
    /// The file format is described in `docs/format.md`.
    ///
    /// A state file that cannot be read — damaged, truncated, from an unknown format or
    /// codec, or not decoding as `S` — makes the view rebuild; it never stops the database.
    ///
    /// ```
    /// use flumeview_reduce::{Reduce, StateCodec};
    /// let count = Reduce::<String, u64>::count(1)
    ///     .persist("/var/lib/myapp/views/count")
    ///     .codec(StateCodec::MsgPack);
    /// ```
    #[must_use]
    pub fn persist(mut self, dir: impl Into<PathBuf>) -> Self
    where
        S: Serialize + DeserializeOwned,
    {
        self.persistence = Some(Persistence {
            dir: dir.into(),
            encode: encode_state::<S>,
            decode: decode_state::<S>,
            saved: None,
        });
        self
    }

    /// Chooses how the persisted state is encoded. Default: [`StateCodec::Json`].
    /// Accepts `flume_core::Json` and `flume_core::MsgPack` too. Has no effect without
    /// [`Reduce::persist`].
    ///
    /// A state file written with another codec is still read; the next checkpoint
    /// rewrites it with this one.
    #[must_use]
    pub fn codec(mut self, codec: impl Into<StateCodec>) -> Self {
        self.codec = codec.into();
        self
    }

    /// Checkpoints once `records` records have been applied since the last checkpoint,
    /// or `interval` has passed with unsaved records, whichever comes first, and always
    /// at close. Default: [`CheckpointPolicy::default`] (100,000 records, 1 second).
    /// Has no effect without [`Reduce::persist`].
    #[must_use]
    pub fn checkpoint_every(mut self, records: u64, interval: Duration) -> Self {
        self.policy = CheckpointPolicy { records, interval };
        self
    }

    /// The directory the state is persisted in, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.persistence.as_ref().map(|p| p.dir.as_path())
    }
}

impl<T: 'static> Reduce<T, u64> {
    /// Counts records, without decoding any.
    ///
    /// ```
    /// use flumeview_reduce::Reduce;
    /// let count: Reduce<String, u64> = Reduce::count(1);
    /// ```
    pub fn count(version: u32) -> Self {
        Reduce::from_records(version, 0, |count, _| {
            *count += 1;
            Ok(())
        })
    }
}

/// Puts the state back to `initial` unless the batch completed: a failed or panicking
/// reducer never leaves a half-applied batch for readers to see.
struct Rollback<'a, S: Clone> {
    current: RwLockWriteGuard<'a, Current<S>>,
    initial: &'a S,
    done: bool,
}

impl<S: Clone> Drop for Rollback<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            self.current.state = self.initial.clone();
            self.current.since = None;
        }
    }
}

impl<T: 'static, S: Clone + Send + Sync + 'static> View<T> for Reduce<T, S> {
    type Reader = ReduceReader<S>;

    fn version(&self) -> u32 {
        self.version
    }

    fn reader(&self, ctx: ReaderContext<T>) -> ReduceReader<S> {
        ReduceReader::new(Arc::clone(&self.current), ctx.waiter)
    }

    /// Reads the state file, if persisted. A file written by another view version is
    /// reported as such without decoding its state (the driver then resets the view).
    ///
    /// # Errors
    /// An unreadable file ([`Error::Io`]), or one that is damaged, truncated, of an
    /// unknown format or codec, or whose state does not decode as `S`
    /// ([`Error::Corrupt`]): the driver resets the view, which deletes the file.
    fn load(&mut self) -> Result<Option<Checkpoint>, BoxError> {
        let Some(persistence) = &mut self.persistence else {
            return Ok(None);
        };
        let state_file = file::state_file(&persistence.dir, self.version, self.codec);
        if state_file.remove_tmp()? {
            tracing::debug!(path = %state_file.tmp_path().display(), "removed the temporary file of an interrupted checkpoint");
        }
        let unreadable = |e: &Error| {
            tracing::warn!(error = %e, "unreadable reduce state file; the view will be rebuilt");
        };
        let Some(saved) = state_file.read().inspect_err(unreadable)? else {
            tracing::debug!(dir = %persistence.dir.display(), "no persisted state; building from the start of the log");
            return Ok(None);
        };
        let codec = file::codec_of(&state_file, &saved).inspect_err(unreadable)?;
        let checkpoint = saved.checkpoint();
        if saved.version != self.version {
            tracing::info!(
                path = %state_file.path().display(),
                stored = saved.version,
                current = self.version,
                "reduce state file has another view version; the view will be rebuilt"
            );
            return Ok(Some(checkpoint));
        }
        let state = (persistence.decode)(codec, &saved.bytes).map_err(|e| {
            let e = Error::Corrupt {
                path: state_file.path().to_path_buf(),
                offset: file::HEADER_LEN as u64,
                reason: format!("the stored state does not decode: {e}"),
            };
            unreadable(&e);
            e
        })?;
        *write(&self.current) = Current {
            state,
            since: saved.since,
        };
        persistence.saved = saved.since;
        tracing::debug!(path = %state_file.path().display(), since = ?saved.since, "loaded reduce state");
        Ok(Some(checkpoint))
    }

    /// Folds the batch into the state under the write lock. Records at or below the
    /// state's `since` (which the driver never sends) are skipped, so nothing is ever
    /// counted twice.
    ///
    /// # Errors
    /// Whatever the reducer returns, or a decoding error ([`Error::Codec`]) for a value
    /// it or a filter needed. The state is then back at `initial`.
    fn apply(&mut self, records: Records<'_, T>) -> Result<(), BoxError> {
        let Some(last) = records.last_seq() else {
            return Ok(());
        };
        let mut batch = Rollback {
            current: write(&self.current),
            initial: &self.initial,
            done: false,
        };
        let after = batch.current.since;
        for record in records.iter() {
            if after.is_some_and(|since| record.seq() <= since) {
                tracing::warn!(seq = record.seq(), since = ?after, "skipping a record the reduce state already reflects");
                continue;
            }
            if !self.filters.is_empty() {
                let value = record.value()?;
                if !self.filters.iter().all(|pred| pred(value)) {
                    continue;
                }
            }
            (self.reduce)(&mut batch.current.state, &record)?;
        }
        if after.is_none_or(|since| last > since) {
            batch.current.since = Some(last);
        }
        batch.done = true;
        Ok(())
    }

    /// Writes the state, its version and `since` to the state file, atomically.
    /// Nothing is written when the file already holds this `since`, or when the state
    /// does not reflect exactly `since` (a state cannot be saved as of an earlier seq;
    /// a later checkpoint will save it).
    ///
    /// # Errors
    /// The state does not encode ([`Error::Codec`]), or writing fails ([`Error::Io`]);
    /// the previous state file is then intact.
    fn checkpoint(&mut self, since: Seq) -> Result<(), BoxError> {
        let Some(persistence) = &mut self.persistence else {
            return Ok(());
        };
        if persistence.saved == Some(since) {
            return Ok(());
        }
        let payload = {
            let current = read(&self.current);
            if current.since != Some(since) {
                tracing::debug!(
                    requested = since,
                    state = ?current.since,
                    "reduce state is not at the requested seq; checkpoint skipped"
                );
                return Ok(());
            }
            (persistence.encode)(self.codec, &current.state).map_err(|e| Error::codec(None, e))?
        };
        let state_file = file::state_file(&persistence.dir, self.version, self.codec);
        state_file.save(since, &payload)?;
        persistence.saved = Some(since);
        tracing::debug!(path = %state_file.path().display(), since, bytes = payload.len(), "checkpointed reduce state");
        Ok(())
    }

    /// Puts the state back to `initial` with nothing applied, and deletes the state file.
    ///
    /// # Errors
    /// [`Error::Io`] when the state file exists but cannot be deleted.
    fn reset(&mut self) -> Result<(), BoxError> {
        *write(&self.current) = Current {
            state: self.initial.clone(),
            since: None,
        };
        if let Some(persistence) = &mut self.persistence {
            persistence.saved = None;
            file::state_file(&persistence.dir, self.version, self.codec).remove()?;
            tracing::debug!(dir = %persistence.dir.display(), "reset reduce state");
        }
        Ok(())
    }

    fn checkpoint_policy(&self) -> CheckpointPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Stats {
        count: u64,
        total: i64,
    }

    fn stats(version: u32) -> Reduce<i64, Stats> {
        Reduce::new(
            version,
            Stats { count: 0, total: 0 },
            |s: &mut Stats, v: &i64| {
                s.count += 1;
                s.total += v;
            },
        )
    }

    /// Stands in for `apply` (records cannot be built outside flume-core).
    fn set<T, S: Clone + Send + Sync + 'static>(view: &Reduce<T, S>, state: S, since: Seq) {
        *write(&view.current) = Current {
            state,
            since: Some(since),
        };
    }

    fn get<T, S: Clone>(view: &Reduce<T, S>) -> (Option<Seq>, S) {
        let current = read(&view.current);
        (current.since, current.state.clone())
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    #[test]
    fn in_memory_view_persists_nothing() -> Result<(), BoxError> {
        let mut view = stats(1);
        assert_eq!(view.load()?, None);
        set(&view, Stats { count: 1, total: 5 }, 0);
        view.checkpoint(0)?;
        view.reset()?;
        assert_eq!(get(&view), (None, Stats { count: 0, total: 0 }));
        assert_eq!(view.dir(), None);
        Ok(())
    }

    #[test]
    fn checkpoint_then_load_restores_state_and_since() -> Result<(), BoxError> {
        let dir = tempdir();
        for codec in [StateCodec::Json, StateCodec::MsgPack] {
            let mut view = stats(1).persist(dir.path()).codec(codec);
            assert_eq!(view.load()?, None);
            set(
                &view,
                Stats {
                    count: 3,
                    total: 42,
                },
                2,
            );
            view.checkpoint(2)?;

            let mut reopened = stats(1).persist(dir.path());
            let loaded = reopened.load()?;
            assert_eq!(
                loaded,
                Some(Checkpoint {
                    version: 1,
                    since: Some(2)
                })
            );
            assert_eq!(
                get(&reopened),
                (
                    Some(2),
                    Stats {
                        count: 3,
                        total: 42
                    }
                )
            );
            reopened.reset()?;
        }
        Ok(())
    }

    #[test]
    fn switching_codec_reads_the_old_file() -> Result<(), BoxError> {
        let dir = tempdir();
        let mut view = stats(1).persist(dir.path()).codec(flume_core::MsgPack);
        set(&view, Stats { count: 1, total: 7 }, 0);
        view.checkpoint(0)?;
        let mut reopened = stats(1).persist(dir.path()).codec(flume_core::Json);
        reopened.load()?;
        assert_eq!(get(&reopened), (Some(0), Stats { count: 1, total: 7 }));
        Ok(())
    }

    #[test]
    fn another_version_is_reported_without_decoding() -> Result<(), BoxError> {
        let dir = tempdir();
        let mut sum: Reduce<i64, i64> = Reduce::new(1, 0, |s, v| *s += v).persist(dir.path());
        set(&sum, -12, 4);
        sum.checkpoint(4)?;

        // A different state type would not even decode; it must not be tried.
        let mut count: Reduce<i64, u64> = Reduce::count(2).persist(dir.path());
        let loaded = count.load()?;
        assert_eq!(
            loaded,
            Some(Checkpoint {
                version: 1,
                since: Some(4)
            })
        );
        assert_eq!(get(&count), (None, 0));
        count.reset()?;
        assert!(!dir.path().join(file::STATE_FILE).exists());
        assert_eq!(count.load()?, None);
        Ok(())
    }

    #[test]
    fn a_state_that_does_not_decode_is_an_error_not_a_panic() -> Result<(), BoxError> {
        let dir = tempdir();
        let mut text: Reduce<i64, String> =
            Reduce::new(1, String::new(), |s, v: &i64| s.push_str(&v.to_string()))
                .persist(dir.path());
        set(&text, "12".to_string(), 1);
        text.checkpoint(1)?;
        let mut number: Reduce<i64, Stats> = stats(1).persist(dir.path());
        let err = number.load().expect_err("a string is not Stats");
        assert!(err.to_string().contains("does not decode"), "{err}");
        assert_eq!(get(&number), (None, Stats { count: 0, total: 0 }));
        number.reset()?;
        assert_eq!(number.load()?, None);
        Ok(())
    }

    #[test]
    fn damaged_files_are_errors_and_reset_recovers() -> Result<(), BoxError> {
        let dir = tempdir();
        let state = dir.path().join(file::STATE_FILE);
        let mut view = stats(1).persist(dir.path());
        set(&view, Stats { count: 2, total: 3 }, 1);
        view.checkpoint(1)?;
        let good = std::fs::read(&state)?;

        let mut damaged = Vec::new();
        for cut in [0, 1, 10, good.len() - 1] {
            damaged.push(good[..cut].to_vec());
        }
        for at in [0, 6, 9, 15, 22, 30, good.len() - 1] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x20;
            damaged.push(bytes);
        }
        for bytes in damaged {
            std::fs::write(&state, &bytes)?;
            let mut reopened = stats(1).persist(dir.path());
            assert!(reopened.load().is_err(), "{bytes:?} was accepted");
            assert_eq!(get(&reopened).0, None);
            reopened.reset()?;
            assert_eq!(reopened.load()?, None);
        }
        Ok(())
    }

    #[test]
    fn a_leftover_tmp_is_ignored_and_removed() -> Result<(), BoxError> {
        let dir = tempdir();
        let mut view = stats(1).persist(dir.path());
        set(&view, Stats { count: 1, total: 1 }, 0);
        view.checkpoint(0)?;
        let tmp = dir.path().join(file::TMP_FILE);
        std::fs::write(&tmp, b"a checkpoint cut short")?;

        let mut reopened = stats(1).persist(dir.path());
        assert_eq!(
            reopened.load()?,
            Some(Checkpoint {
                version: 1,
                since: Some(0)
            })
        );
        assert_eq!(get(&reopened), (Some(0), Stats { count: 1, total: 1 }));
        assert!(!tmp.exists());

        // A tmp file alone is not a state.
        std::fs::remove_file(dir.path().join(file::STATE_FILE))?;
        std::fs::write(&tmp, b"junk")?;
        assert_eq!(stats(1).persist(dir.path()).load()?, None);
        Ok(())
    }

    #[test]
    fn checkpoint_only_saves_the_exact_since() -> Result<(), BoxError> {
        let dir = tempdir();
        let state = dir.path().join(file::STATE_FILE);
        let mut view = stats(1).persist(dir.path());
        set(&view, Stats { count: 5, total: 5 }, 4);
        // The log is durable only up to 2: the state (at 4) cannot be saved as of 2.
        view.checkpoint(2)?;
        assert!(!state.exists());
        view.checkpoint(4)?;
        assert!(state.exists());
        // Same since again: nothing to write.
        std::fs::remove_file(&state)?;
        view.checkpoint(4)?;
        assert!(!state.exists(), "rewrote an unchanged checkpoint");
        Ok(())
    }

    #[test]
    fn reset_wipes_memory_and_disk() -> Result<(), BoxError> {
        let dir = tempdir();
        let mut view = stats(1).persist(dir.path());
        set(&view, Stats { count: 9, total: 9 }, 8);
        view.checkpoint(8)?;
        view.reset()?;
        assert_eq!(get(&view), (None, Stats { count: 0, total: 0 }));
        assert!(!dir.path().join(file::STATE_FILE).exists());
        // After a reset the same since is written again.
        set(&view, Stats { count: 9, total: 9 }, 8);
        view.checkpoint(8)?;
        assert!(dir.path().join(file::STATE_FILE).exists());
        Ok(())
    }

    #[test]
    fn an_unencodable_state_fails_the_checkpoint_and_keeps_the_old_file() -> Result<(), BoxError> {
        use std::collections::HashMap;
        let dir = tempdir();
        // JSON maps need string keys.
        let mut view: Reduce<i64, HashMap<(u8, u8), u8>> =
            Reduce::new(1, HashMap::new(), |_, _| {}).persist(dir.path());
        set(&view, HashMap::new(), 0);
        view.checkpoint(0)?;
        set(&view, HashMap::from([((1, 2), 3)]), 1);
        let err = view.checkpoint(1).expect_err("tuple keys are not JSON");
        assert!(err.to_string().contains("codec"), "{err}");
        let mut reopened: Reduce<i64, HashMap<(u8, u8), u8>> =
            Reduce::new(1, HashMap::new(), |_, _| {}).persist(dir.path());
        assert_eq!(reopened.load()?.and_then(|c| c.since), Some(0));
        Ok(())
    }

    #[test]
    fn options_reach_the_driver() {
        let view = Reduce::<i64, u64>::count(7)
            .checkpoint_every(10, Duration::from_millis(50))
            .persist("somewhere");
        assert_eq!(View::<i64>::version(&view), 7);
        assert_eq!(
            view.checkpoint_policy(),
            CheckpointPolicy {
                records: 10,
                interval: Duration::from_millis(50)
            }
        );
        assert_eq!(view.dir(), Some(Path::new("somewhere")));
        assert_eq!(
            Reduce::<i64, u64>::count(1).checkpoint_policy(),
            CheckpointPolicy::default()
        );
        let debug = format!("{view:?}");
        assert!(debug.contains("version: 7"), "{debug}");
    }
}
