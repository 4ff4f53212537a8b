//! `Semantics` and `Retention`: what a put hides, and what a compaction keeps.

use flume_core::Seq;

/// What a put does to the older entries of its key, chosen at
/// [`Store::new`](crate::Store::new). A delete always hides every older entry of its key.
///
/// Either way, within one seq a put wins over a delete of the same key (a record that
/// deletes and then puts a key leaves it pointing at the record), and a
/// [`Kind::Remove`](crate::Kind::Remove) hides only the put it names: it does not undo
/// what that put hid, so in a `SingleValued` store removing the key's current put
/// leaves the key pointing at nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Semantics {
    /// A key points at every record that put it since its last delete: a secondary
    /// index (`flumeview-index`). A put hides nothing.
    #[default]
    MultiValued,
    /// A key points at most at one record, the newest that put it, unless a newer delete
    /// hides it: a key-value view (`flumeview-kv`). A put hides every older entry of its
    /// key, so a live scan yields at most one pair per key.
    SingleValued,
}

/// What a compaction keeps, chosen at [`Store::new`](crate::Store::new).
///
/// Reads are not filtered by the retention: [`Store::history`](crate::Store::history)
/// and [`Store::changes`](crate::Store::changes) return what is stored, which depends on
/// when compactions ran; a view that promises a horizon filters its answers itself. The
/// live answers ([`Store::scan`](crate::Store::scan), [`Store::latest`](crate::Store::latest),
/// …) are the same under every retention: only hidden entries are ever dropped.
///
/// The manifest records the retention (and the semantics) its runs were written under.
/// A store reopened with a retention that may need entries the stored one dropped
/// (`Live` reopened with `All` or `Since`; `Since(a)` with `All`, or with `Since(b)` for
/// `b < a`), or with other semantics, is rebuilt: [`Store::load`](crate::Store::load)
/// says so. Reopened with a narrower one (`All` with `Since` or `Live`; `Since(a)` with
/// `Since(b)` for `b >= a`, or with `Live`), it keeps its runs and compacts them under
/// the new retention from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Retention {
    /// Only what the live answers need: hidden entries are dropped, a remove together
    /// with the put it removes, and deletes and removes once no older run may hold
    /// their key.
    #[default]
    Live,
    /// Every entry, for ever: a key's whole history stays readable.
    All,
    /// Every entry above the seq, plus, for each key, its newest entry at or below it
    /// (what the key was at that seq), plus what [`Retention::Live`] keeps.
    Since(Seq),
}
