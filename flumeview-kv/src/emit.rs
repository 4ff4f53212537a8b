//! `KvEmit`: the sink a map function writes a record's key-value operations to.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use flume_core::Seq;

use crate::{Key, Op};

/// The operations one record emitted, as encoded keys, before only each key's final one
/// goes to the engine. Reused from record to record.
#[derive(Debug, Default)]
pub(crate) struct RecordOps {
    keys: Vec<u8>,
    /// (key bytes, whether it is a put), in the order emitted.
    ops: Vec<(Range<usize>, bool)>,
    /// Indexes of the final ops, scratch for [`RecordOps::finals`].
    keep: Vec<usize>,
}

/// Above this many operations in one record, the final op of each key is found with a
/// hash set instead of comparing every pair.
const LINEAR_DEDUPE: usize = 16;

impl RecordOps {
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.ops.clear();
    }

    fn push(&mut self, key: &impl Key, put: bool) {
        let start = self.keys.len();
        key.encode(&mut self.keys);
        self.ops.push((start..self.keys.len(), put));
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.keys[self.ops[i].0.clone()]
    }

    /// Calls `f` with each key's final operation (`true`: a put), in the order they were
    /// emitted: a put then a delete of a key is a delete, a delete then a put is a put.
    pub(crate) fn finals(&mut self, mut f: impl FnMut(&[u8], bool)) {
        let n = self.ops.len();
        if n <= 1 {
            if let Some((range, put)) = self.ops.first() {
                f(&self.keys[range.clone()], *put);
            }
            return;
        }
        let mut keep = std::mem::take(&mut self.keep);
        keep.clear();
        if n <= LINEAR_DEDUPE {
            for i in 0..n {
                if !(i + 1..n).any(|j| self.key(j) == self.key(i)) {
                    keep.push(i);
                }
            }
        } else {
            let mut seen = HashSet::with_capacity(n);
            for i in (0..n).rev() {
                if seen.insert(self.key(i)) {
                    keep.push(i);
                }
            }
            keep.reverse();
        }
        for &i in &keep {
            f(self.key(i), self.ops[i].1);
        }
        self.keep = keep;
    }
}

/// Where the operations go.
enum Sink<'a, V> {
    /// Into the engine, values dropped (they are read back from the log).
    Collect(&'a mut RecordOps),
    /// Looking for the final operation on one key, with its value.
    Find {
        target: &'a [u8],
        scratch: Vec<u8>,
        found: Option<Op<V>>,
    },
}

/// Where a [`Kv`](crate::Kv)'s map sends the key-value operations of one record.
///
/// [`put`](KvEmit::put) sets a key's value, [`delete`](KvEmit::delete) removes the key,
/// [`put_with`](KvEmit::put_with) is a put whose value is made only when a read needs it.
/// A record may touch any number of keys; when it touches one key several times, its
/// last operation on it counts (a put then a delete is a delete).
///
/// The values are not stored by the view: when a read needs a value, the view reads the
/// record back from the log and runs the map on it again, keeping the value it puts
/// (so the map must be deterministic: the same record must give the same operations).
///
/// ```
/// use flumeview_kv::Kv;
///
/// #[derive(Debug)]
/// enum Event { Rename { id: u64, name: String }, Merge { from: u64, into: u64, name: String } }
///
/// let names: Kv<Event, u64, String> = Kv::new(1, |event: &Event, e| match event {
///     Event::Rename { id, name } => e.put(*id, name.clone()),
///     Event::Merge { from, into, name } => {
///         e.delete(*from);
///         e.put(*into, name.clone());
///     }
/// });
/// ```
pub struct KvEmit<'a, K, V> {
    seq: Seq,
    sink: Sink<'a, V>,
    _key: PhantomData<fn(K)>,
}

impl<K, V> fmt::Debug for KvEmit<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvEmit").field("seq", &self.seq).finish()
    }
}

impl<'a, K: Key, V> KvEmit<'a, K, V> {
    /// A sink that collects the keys of the record at `seq`.
    pub(crate) fn collect(seq: Seq, ops: &'a mut RecordOps) -> Self {
        KvEmit {
            seq,
            sink: Sink::Collect(ops),
            _key: PhantomData,
        }
    }

    /// A sink that looks for the final operation on the key encoded as `target`.
    pub(crate) fn find(seq: Seq, target: &'a [u8]) -> Self {
        KvEmit {
            seq,
            sink: Sink::Find {
                target,
                scratch: Vec::with_capacity(target.len()),
                found: None,
            },
            _key: PhantomData,
        }
    }

    /// What [`KvEmit::find`] found.
    pub(crate) fn found(self) -> Option<Op<V>> {
        match self.sink {
            Sink::Collect(_) => None,
            Sink::Find { found, .. } => found,
        }
    }

    /// The seq of the record being mapped: the version its puts will have.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Sets `key` to `value` as of this record.
    pub fn put(&mut self, key: K, value: V) {
        self.op(&key, Some(|| value));
    }

    /// Sets `key` to the value `value` makes, as of this record, calling `value` only
    /// when the value is needed: while the view indexes records it never is (values
    /// are not stored), only when a read looks for this key's value in this record.
    ///
    /// ```
    /// use flumeview_kv::Kv;
    ///
    /// #[derive(Debug)]
    /// struct Doc { id: u64, body: String }
    ///
    /// // Indexing does not copy any body; a read of a document copies its body once.
    /// let docs: Kv<Doc, u64, String> = Kv::new(1, |doc: &Doc, e| {
    ///     e.put_with(doc.id, || doc.body.clone())
    /// });
    /// ```
    pub fn put_with(&mut self, key: K, value: impl FnOnce() -> V) {
        self.op(&key, Some(value));
    }

    /// Removes `key` as of this record (a later record may put it again).
    pub fn delete(&mut self, key: K) {
        self.op(&key, None::<fn() -> V>);
    }

    /// A put (with the function that makes its value) or a delete (`None`).
    fn op(&mut self, key: &K, put: Option<impl FnOnce() -> V>) {
        match &mut self.sink {
            Sink::Collect(ops) => ops.push(key, put.is_some()),
            Sink::Find {
                target,
                scratch,
                found,
            } => {
                scratch.clear();
                key.encode(scratch);
                if scratch == target {
                    *found = Some(put.map_or(Op::Delete, |value| Op::Put(value())));
                }
            }
        }
    }
}
