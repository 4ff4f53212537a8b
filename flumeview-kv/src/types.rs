//! The small value types of the view's answers and options.

use flume_core::Seq;
use serde::{Deserialize, Serialize};

/// One operation on a key: what a record did to it.
///
/// ```
/// use flumeview_kv::Op;
/// let op: Op<&str> = Op::Put("hello");
/// assert_eq!(op.value(), Some(&"hello"));
/// assert_eq!(Op::<&str>::Delete.into_value(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op<V> {
    /// The key was set to this value.
    Put(V),
    /// The key was removed.
    Delete,
}

impl<V> Op<V> {
    /// The value of a put, `None` for a delete.
    pub fn value(&self) -> Option<&V> {
        match self {
            Op::Put(v) => Some(v),
            Op::Delete => None,
        }
    }

    /// The value of a put, `None` for a delete.
    pub fn into_value(self) -> Option<V> {
        match self {
            Op::Put(v) => Some(v),
            Op::Delete => None,
        }
    }

    /// Whether this is a delete.
    pub fn is_delete(&self) -> bool {
        matches!(self, Op::Delete)
    }
}

/// A value with its version: the seq of the record that wrote it.
///
/// A version is what a compare-and-set compares against: a key's version changes with
/// every record that writes it, and never goes back.
///
/// ```
/// use flumeview_kv::Versioned;
/// let v = Versioned { value: "draft", version: 12 };
/// assert_eq!(v.map(str::len), Versioned { value: 5, version: 12 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Versioned<V> {
    /// The value.
    pub value: V,
    /// The seq of the record that wrote it.
    pub version: Seq,
}

impl<V> Versioned<V> {
    /// The same version of another value.
    pub fn map<U>(self, f: impl FnOnce(V) -> U) -> Versioned<U> {
        Versioned {
            value: f(self.value),
            version: self.version,
        }
    }
}

/// Which versions of each key a [`Kv`](crate::Kv) keeps readable
/// ([`Kv::history`](crate::Kv::history)).
///
/// Reads filter by this option, so that their answers never depend on whether
/// compaction has already dropped what the option does not keep:
///
/// | option | [`history`](crate::KvReader::history) answers | [`get_at(key, seq)`](crate::KvReader::get_at) fails with [`HistoryTrimmed`](flume_core::Error::HistoryTrimmed) when | storage |
/// |---|---|---|---|
/// | [`All`](History::All) (default) | every version, deletes included | never | every entry ever written |
/// | [`Latest`](History::Latest) | the newest entry only (a put or a delete) | `seq` is below the key's newest entry (the horizon) | one entry per key, deleted keys included |
/// | [`Since(h)`](History::Since) | the entries above `h`, and the newest at or below `h` | `seq < h` (the horizon is `h`) | the entries above `h`, and one per key at or below it |
///
/// ```
/// use flumeview_kv::History;
/// assert_eq!(History::default(), History::All);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum History {
    /// Every version of every key stays readable.
    #[default]
    All,
    /// Only each key's newest entry (its current value, or the delete that removed it).
    Latest,
    /// Every entry with a seq above this one, plus each key's newest entry at or below
    /// it: the state as of any seq from this one on stays readable.
    Since(Seq),
}

impl History {
    /// Keeps of `entries` (a key's, newest first) those this option keeps.
    pub(crate) fn filter<E>(self, entries: &mut Vec<E>, seq: impl Fn(&E) -> Seq) {
        let keep = match self {
            History::All => entries.len(),
            History::Latest => entries.len().min(1),
            History::Since(h) => {
                let above = entries.iter().take_while(|e| seq(e) > h).count();
                (above + 1).min(entries.len())
            }
        };
        entries.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_filters_newest_first_entries() {
        let entries = vec![9, 7, 5, 3, 1];
        let filtered = |h: History| {
            let mut e = entries.clone();
            h.filter(&mut e, |s| *s);
            e
        };
        assert_eq!(filtered(History::All), entries);
        assert_eq!(filtered(History::Latest), [9]);
        assert_eq!(filtered(History::Since(5)), [9, 7, 5]);
        assert_eq!(filtered(History::Since(4)), [9, 7, 5, 3]);
        assert_eq!(filtered(History::Since(0)), [9, 7, 5, 3, 1]);
        assert_eq!(filtered(History::Since(10)), [9]);
        let mut empty: Vec<u64> = Vec::new();
        History::Since(3).filter(&mut empty, |s| *s);
        assert!(empty.is_empty());
    }
}
