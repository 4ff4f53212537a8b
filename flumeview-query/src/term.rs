//! `Term`: what a query matches: index lookups combined with and / or / not.

use std::fmt;
use std::ops::{Bound, RangeBounds};

use flumeview_index::key::prefix_end;
use flumeview_index::{AsKey, IndexReader, Key, KeyPrefix};

use crate::Query;

/// What a query matches: records an index points at from a key ([`eq`]), a key prefix
/// ([`prefix`]) or a key range ([`range`]), combined with [`and`], [`or`] and [`not`]
/// (or the operators `&`, `|` and `!`) in any nesting.
///
/// Every index of one term must belong to the same database (the query reads the
/// records from the first one's log).
///
/// ```
/// use flumeview_index::IndexReader;
/// use flumeview_query::{eq, Term};
///
/// # fn demo(by_author: IndexReader<String, String>, by_mention: IndexReader<String, String>) {
/// // Posts by alice that mention bob and do not mention carol.
/// let term: Term<String> =
///     eq(&by_author, "@alice") & eq(&by_mention, "@bob") & !eq(&by_mention, "@carol");
/// let query = term.query().newest_first().limit(10);
/// # }
/// ```
pub struct Term<T> {
    pub(crate) node: TermNode<T>,
}

pub(crate) enum TermNode<T> {
    /// The seqs of one key.
    Key {
        reader: IndexReader<T>,
        key: Vec<u8>,
        label: String,
    },
    /// The seqs of every key within bounds.
    Range {
        reader: IndexReader<T>,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        label: String,
    },
    And(Vec<Term<T>>),
    Or(Vec<Term<T>>),
    Not(Box<Term<T>>),
}

impl<T> Clone for Term<T> {
    fn clone(&self) -> Self {
        let node = match &self.node {
            TermNode::Key { reader, key, label } => TermNode::Key {
                reader: reader.clone(),
                key: key.clone(),
                label: label.clone(),
            },
            TermNode::Range {
                reader,
                lo,
                hi,
                label,
            } => TermNode::Range {
                reader: reader.clone(),
                lo: lo.clone(),
                hi: hi.clone(),
                label: label.clone(),
            },
            TermNode::And(c) => TermNode::And(c.clone()),
            TermNode::Or(c) => TermNode::Or(c.clone()),
            TermNode::Not(c) => TermNode::Not(c.clone()),
        };
        Term { node }
    }
}

impl<T> fmt::Debug for Term<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            TermNode::Key { label, .. } | TermNode::Range { label, .. } => f.write_str(label),
            TermNode::And(c) => f.debug_tuple("and").field(c).finish(),
            TermNode::Or(c) => f.debug_tuple("or").field(c).finish(),
            TermNode::Not(c) => f.debug_tuple("not").field(c).finish(),
        }
    }
}

/// Shows key bytes as text where they are printable, `\xNN` elsewhere.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            if b == b'"' || b == b'\\' {
                out.push('\\');
            }
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

fn show_bound(b: &Bound<Vec<u8>>) -> String {
    match b {
        Bound::Included(k) => format!("{} (incl.)", show_bytes(k)),
        Bound::Excluded(k) => format!("{} (excl.)", show_bytes(k)),
        Bound::Unbounded => "unbounded".into(),
    }
}

/// The records `reader`'s index points at from `key`, the key given in the index's
/// key type `K` or a borrowed form of it (`&str` for `String`, `(&str, u64)` for
/// `(String, u64)`, any bytes for `Vec<u8>`).
///
/// An `eq` term streams the key's seqs from the index in seq order, a page at a time,
/// and can seek: the cheapest kind of term to drive or to probe a query with.
///
/// ```
/// # fn demo(by_author: flumeview_index::IndexReader<String, String>) {
/// let term = flumeview_query::eq(&by_author, "@alice");
/// # }
/// ```
pub fn eq<T, K: Key>(reader: &IndexReader<T, K>, key: impl AsKey<K>) -> Term<T>
where
    T: Send + Sync + 'static,
{
    let key = key.key_bytes();
    let label = format!("eq {} = {}", reader.waiter().name(), show_bytes(&key));
    Term {
        node: TermNode::Key {
            reader: reader.bytes(),
            key,
            label,
        },
    }
}

/// The records `reader`'s index points at from any key that starts with `prefix`: a
/// typed prefix of the key (`(A,)` of `(A, B)`, `&str` of `String`, bytes of `Vec<u8>`).
///
/// A prefix term covers many keys, whose entries the index holds in key order, not seq
/// order: the query reads them once into a set over its window (a list, or a bitmap of
/// one bit per record once that is smaller). See the [crate docs](crate#how-a-query-is-planned).
///
/// ```
/// # fn demo(by_author_ts: flumeview_index::IndexReader<String, (String, u64)>) {
/// // Every post of alice, from an index keyed (author, timestamp).
/// let term = flumeview_query::prefix(&by_author_ts, ("@alice",));
/// # }
/// ```
pub fn prefix<T, K: Key>(reader: &IndexReader<T, K>, prefix: impl KeyPrefix<K>) -> Term<T>
where
    T: Send + Sync + 'static,
{
    let p = prefix.prefix_bytes();
    let label = format!("prefix {} {}", reader.waiter().name(), show_bytes(&p));
    let hi = prefix_end(&p).map_or(Bound::Unbounded, Bound::Excluded);
    Term {
        node: TermNode::Range {
            reader: reader.bytes(),
            lo: Bound::Included(p),
            hi,
            label,
        },
    }
}

/// The records `reader`'s index points at from any key within `range`, bounds given in
/// the index's key type or a borrowed form of it. Planned like [`prefix`].
///
/// ```
/// # fn demo(by_ts: flumeview_index::IndexReader<String, u64>) {
/// let term = flumeview_query::range(&by_ts, 1_000u64..2_000);
/// # }
/// ```
pub fn range<T, K: Key, Q: AsKey<K>>(
    reader: &IndexReader<T, K>,
    range: impl RangeBounds<Q>,
) -> Term<T>
where
    T: Send + Sync + 'static,
{
    let enc = |b: Bound<&Q>| match b {
        Bound::Included(k) => Bound::Included(k.key_bytes()),
        Bound::Excluded(k) => Bound::Excluded(k.key_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    };
    let (lo, hi) = (enc(range.start_bound()), enc(range.end_bound()));
    let label = format!(
        "range {} from {} to {}",
        reader.waiter().name(),
        show_bound(&lo),
        show_bound(&hi)
    );
    Term {
        node: TermNode::Range {
            reader: reader.bytes(),
            lo,
            hi,
            label,
        },
    }
}

/// Records every term matches. `and` of no terms matches every record.
///
/// ```
/// # fn demo(a: flumeview_query::Term<String>, b: flumeview_query::Term<String>) {
/// let both = flumeview_query::and([a, b]); // the same as `a & b`
/// # }
/// ```
pub fn and<T>(terms: impl IntoIterator<Item = Term<T>>) -> Term<T> {
    Term {
        node: TermNode::And(terms.into_iter().collect()),
    }
}

/// Records any of the terms matches. `or` of no terms matches nothing.
///
/// ```
/// # fn demo(a: flumeview_query::Term<String>, b: flumeview_query::Term<String>) {
/// let either = flumeview_query::or([a, b]); // the same as `a | b`
/// # }
/// ```
pub fn or<T>(terms: impl IntoIterator<Item = Term<T>>) -> Term<T> {
    Term {
        node: TermNode::Or(terms.into_iter().collect()),
    }
}

/// Records the term does not match. Within an `and` with other terms, a `not` is only
/// probed; a query that is a `not` alone (or an `and` of nots) walks every record of
/// its window, skipping the ones the term matches.
///
/// ```
/// # fn demo(a: flumeview_query::Term<String>, b: flumeview_query::Term<String>) {
/// let a_but_not_b = flumeview_query::and([a, flumeview_query::not(b)]); // `a & !b`
/// # }
/// ```
pub fn not<T>(term: Term<T>) -> Term<T> {
    Term {
        node: TermNode::Not(Box::new(term)),
    }
}

impl<T> Term<T> {
    /// A query of this term, with the defaults of [`Query::new`].
    pub fn query(self) -> Query<T> {
        Query::new(self)
    }

    /// Calls `f` on every index lookup of the term, in order.
    pub(crate) fn leaves<'a>(&'a self, f: &mut impl FnMut(&'a TermNode<T>)) {
        match &self.node {
            TermNode::And(c) | TermNode::Or(c) => c.iter().for_each(|t| t.leaves(f)),
            TermNode::Not(c) => c.leaves(f),
            leaf => f(leaf),
        }
    }
}

impl<T> std::ops::BitAnd for Term<T> {
    type Output = Term<T>;

    /// `a & b`: [`and`], flattened (`a & b & c` is one `and` of three).
    fn bitand(self, rhs: Term<T>) -> Term<T> {
        match self.node {
            TermNode::And(mut c) => {
                c.push(rhs);
                and(c)
            }
            node => and([Term { node }, rhs]),
        }
    }
}

impl<T> std::ops::BitOr for Term<T> {
    type Output = Term<T>;

    /// `a | b`: [`or`], flattened (`a | b | c` is one `or` of three).
    fn bitor(self, rhs: Term<T>) -> Term<T> {
        match self.node {
            TermNode::Or(mut c) => {
                c.push(rhs);
                or(c)
            }
            node => or([Term { node }, rhs]),
        }
    }
}

impl<T> std::ops::Not for Term<T> {
    type Output = Term<T>;

    /// `!a`: [`not`].
    fn not(self) -> Term<T> {
        not(self)
    }
}
