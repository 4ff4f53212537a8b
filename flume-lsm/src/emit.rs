//! `OpBuf` and `Emit`: the operations of a batch of records, gathered before they are
//! applied to a store.

use std::fmt;
use std::ops::Range;

use flume_core::Seq;

use crate::entry::Kind;

/// The operations of a batch of records, gathered before they enter the memtable in one
/// go ([`Store::apply`](crate::Store::apply)). Reused from batch to batch, so mapping a
/// record allocates nothing once warm.
///
/// ```
/// use flume_lsm::{Kind, OpBuf};
///
/// let mut ops = OpBuf::default();
/// let mut emit = ops.emit(7);
/// emit.delete(b"draft");
/// emit.put(b"post");
/// let gathered: Vec<(&[u8], u64, Kind)> = ops.ops().collect();
/// assert_eq!(gathered, [(&b"draft"[..], 7, Kind::Delete), (&b"post"[..], 7, Kind::Put)]);
/// ops.clear();
/// assert!(ops.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct OpBuf {
    keys: Vec<u8>,
    ops: Vec<(Seq, Kind, Range<usize>)>,
}

impl OpBuf {
    /// Forgets every operation, keeping the buffers' capacity.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.ops.clear();
    }

    /// Whether no operation was gathered since the last [`clear`](OpBuf::clear).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many operations were gathered since the last [`clear`](OpBuf::clear).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// A sink for the operations of the record at `seq`.
    pub fn emit(&mut self, seq: Seq) -> Emit<'_> {
        Emit { buf: self, seq }
    }

    /// Adds one operation directly (what [`Emit::put`], [`Emit::delete`] and
    /// [`Emit::remove`] do). For a [`Kind::Remove`], `seq` is the seq of the put it
    /// removes (at most the seq of the record removing it).
    pub fn push(&mut self, seq: Seq, kind: Kind, key: &[u8]) {
        let start = self.keys.len();
        self.keys.extend_from_slice(key);
        self.ops.push((seq, kind, start..self.keys.len()));
    }

    /// The operations, in the order emitted.
    pub fn ops(&self) -> impl Iterator<Item = (&[u8], Seq, Kind)> + '_ {
        self.ops
            .iter()
            .map(|(seq, kind, range)| (&self.keys[range.clone()], *seq, *kind))
    }
}

/// Where a map function sends the operations of one record (made by
/// [`OpBuf::emit`]).
///
/// [`put`](Emit::put) makes a key point at the record; [`delete`](Emit::delete) removes
/// every earlier put of a key (a later record may put it again); [`remove`](Emit::remove)
/// removes one put: the key's put by one record. A record may emit any
/// number of operations, on any keys; a delete and a put of the same key in the same
/// record replace the key's earlier values with this record. What a put does to the
/// key's earlier puts depends on the store's [`Semantics`](crate::Semantics): in a
/// multi-valued store (an index) they stay, in a single-valued one (a key-value view)
/// the put replaces them.
///
/// A view hands its map one per record; for an index of posts by tag:
///
/// ```
/// use flume_lsm::{key, Emit, Kind, OpBuf};
///
/// struct Post { id: String, tags: Vec<String>, removed: bool }
///
/// fn by_tag(post: &Post, e: &mut Emit<'_>) {
///     for tag in &post.tags {
///         if post.removed {
///             e.delete(key::tuple((tag, &post.id)));
///         } else {
///             e.put(key::tuple((tag, &post.id)));
///         }
///     }
/// }
///
/// let mut ops = OpBuf::default();
/// let post = Post { id: "%1".into(), tags: vec!["rust".into(), "lsm".into()], removed: false };
/// by_tag(&post, &mut ops.emit(0));
/// assert_eq!(ops.len(), 2);
/// assert!(ops.ops().all(|(_, seq, kind)| seq == 0 && kind == Kind::Put));
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

    /// Makes `key` point at this record: as well as at any earlier record it points at in
    /// a [`MultiValued`](crate::Semantics::MultiValued) store, instead of them in a
    /// [`SingleValued`](crate::Semantics::SingleValued) one.
    pub fn put(&mut self, key: impl AsRef<[u8]>) {
        self.buf.push(self.seq, Kind::Put, key.as_ref());
    }

    /// Removes every put of `key` by an earlier record. Puts by this record and later
    /// ones count.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.buf.push(self.seq, Kind::Delete, key.as_ref());
    }

    /// Removes exactly one entry: the put of `key` by the record at `seq` (this record
    /// or an earlier one). Other puts of the key stay, and nothing is revealed: in a
    /// [`SingleValued`](crate::Semantics::SingleValued) store the removed put still
    /// hides the older entries of its key, so the key then points at nothing. A `seq`
    /// above this record's is ignored (a record cannot remove what a later one puts);
    /// removing a put that does not exist does nothing. Emitting the same remove twice
    /// (a record mapped again after a crash) is harmless.
    ///
    /// The entry is stored at `seq` (the [`Kind::Remove`] shows in
    /// [`Store::history`](crate::Store::history) and
    /// [`Store::changes`](crate::Store::changes) at that seq), so that it meets its put
    /// in every merge; a follower of `changes` past `seq` does not see it.
    ///
    /// A "delete post" record removing the post's entry from an index of posts by
    /// author:
    ///
    /// ```
    /// use flume_lsm::{Kind, OpBuf};
    ///
    /// let mut ops = OpBuf::default();
    /// ops.emit(3).put(b"alice");
    /// let mut e = ops.emit(9);
    /// e.remove(b"alice", 3); // the post at seq 3 is deleted by the record at seq 9
    /// e.remove(b"alice", 12); // above 9: ignored
    /// let gathered: Vec<(&[u8], u64, Kind)> = ops.ops().collect();
    /// assert_eq!(gathered, [(&b"alice"[..], 3, Kind::Put), (&b"alice"[..], 3, Kind::Remove)]);
    /// ```
    pub fn remove(&mut self, key: impl AsRef<[u8]>, seq: Seq) {
        if seq <= self.seq {
            self.buf.push(seq, Kind::Remove, key.as_ref());
        }
    }
}
