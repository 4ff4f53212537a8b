//! `Emit`: the sink a map function writes its index operations to.

use std::fmt;
use std::ops::Range;

use flume_core::Seq;

use crate::entry::Kind;

/// The operations of a batch of records, gathered before they enter the memtable in one
/// go. Reused from batch to batch, so mapping a record allocates nothing once warm.
#[derive(Debug, Default)]
pub(crate) struct OpBuf {
    keys: Vec<u8>,
    ops: Vec<(Seq, Kind, Range<usize>)>,
}

impl OpBuf {
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.ops.clear();
    }

    /// A sink for the operations of the record at `seq`.
    pub(crate) fn emit(&mut self, seq: Seq) -> Emit<'_> {
        Emit { buf: self, seq }
    }

    /// The operations, in the order emitted.
    pub(crate) fn ops(&self) -> impl Iterator<Item = (&[u8], Seq, Kind)> + '_ {
        self.ops
            .iter()
            .map(|(seq, kind, range)| (&self.keys[range.clone()], *seq, *kind))
    }

    fn push(&mut self, seq: Seq, kind: Kind, key: &[u8]) {
        let start = self.keys.len();
        self.keys.extend_from_slice(key);
        self.ops.push((seq, kind, start..self.keys.len()));
    }
}

/// Where a map function sends the index operations of one record.
///
/// [`put`](Emit::put) makes a key point at the record; [`delete`](Emit::delete) removes
/// every earlier put of a key (a later record may put it again). A record may emit any
/// number of operations, on any keys; a delete and a put of the same key in the same
/// record replace the key's earlier values with this record.
///
/// ```
/// use flumeview_index::{key, Index};
///
/// #[derive(Debug)]
/// struct Edit { id: String, tags: Vec<String>, removed: bool }
///
/// let by_tag = Index::new(1, |edit: &Edit, e| {
///     for tag in &edit.tags {
///         e.put(key::tuple((tag, &edit.id)));
///     }
/// });
/// let latest_edit = Index::new(1, |edit: &Edit, e| {
///     e.delete(&edit.id);
///     if !edit.removed {
///         e.put(&edit.id);
///     }
/// });
/// # let _: (Index<Edit>, Index<Edit>) = (by_tag, latest_edit);
/// ```
pub struct Emit<'a> {
    buf: &'a mut OpBuf,
    seq: Seq,
}

impl fmt::Debug for Emit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emit").field("seq", &self.seq).finish()
    }
}

impl Emit<'_> {
    /// The seq of the record being mapped.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Makes `key` point at this record (as well as at any earlier record it points at:
    /// keys are multi-valued; see [`IndexReader::seqs`](crate::IndexReader::seqs)).
    pub fn put(&mut self, key: impl AsRef<[u8]>) {
        self.buf.push(self.seq, Kind::Put, key.as_ref());
    }

    /// Removes every put of `key` by an earlier record. Puts by this record and later
    /// ones count.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.buf.push(self.seq, Kind::Delete, key.as_ref());
    }
}
