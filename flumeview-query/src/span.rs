//! `Span`: the window of seqs a query looks at, and the order it walks them in.

use flume_core::Seq;

/// The order results come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// Newest (highest seq) first. The default: feeds show the latest records first.
    #[default]
    NewestFirst,
    /// Oldest (lowest seq) first: log order.
    OldestFirst,
}

/// A non-empty window of seqs `lo..=hi`, walked in one order.
///
/// Every source of a query answers within one span: "the first seq at or beyond `t`"
/// means the smallest seq `>= t` walking oldest first, the largest `<= t` walking newest
/// first, and never a seq outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) lo: Seq,
    pub(crate) hi: Seq,
    pub(crate) order: Order,
}

impl Span {
    /// The window between a cursor (exclusive, in the walk's order) and the horizon:
    /// `None` when it holds no seq.
    pub(crate) fn new(order: Order, horizon: Option<Seq>, after: Option<Seq>) -> Option<Span> {
        let hi = horizon?;
        let (lo, hi) = match (order, after) {
            (_, None) => (0, hi),
            (Order::OldestFirst, Some(a)) => (a.checked_add(1)?, hi),
            (Order::NewestFirst, Some(a)) => (0, hi.min(a.checked_sub(1)?)),
        };
        (lo <= hi).then_some(Span { lo, hi, order })
    }

    /// Seqs `lo..=hi` (both within the log), walked in `order`.
    pub(crate) fn between(lo: Seq, hi: Seq, order: Order) -> Option<Span> {
        (lo <= hi).then_some(Span { lo, hi, order })
    }

    /// How many seqs the window holds (saturating).
    pub(crate) fn len(&self) -> u64 {
        (self.hi - self.lo).saturating_add(1)
    }

    /// Where a walk starts.
    pub(crate) fn first(&self) -> Seq {
        match self.order {
            Order::OldestFirst => self.lo,
            Order::NewestFirst => self.hi,
        }
    }

    /// The seq after `s` in the walk, if still within the window.
    pub(crate) fn next(&self, s: Seq) -> Option<Seq> {
        match self.order {
            Order::OldestFirst => s.checked_add(1).filter(|n| *n <= self.hi),
            Order::NewestFirst => s.checked_sub(1).filter(|n| *n >= self.lo),
        }
    }

    /// Whether `s` lies within the window.
    pub(crate) fn contains(&self, s: Seq) -> bool {
        self.lo <= s && s <= self.hi
    }

    /// Whether `a` is `t` or comes after it in the walk.
    pub(crate) fn reached(&self, a: Seq, t: Seq) -> bool {
        match self.order {
            Order::OldestFirst => a >= t,
            Order::NewestFirst => a <= t,
        }
    }

    /// Whichever of `a` and `b` comes first in the walk.
    pub(crate) fn earlier(&self, a: Seq, b: Seq) -> Seq {
        match self.order {
            Order::OldestFirst => a.min(b),
            Order::NewestFirst => a.max(b),
        }
    }

    /// The index cursor that starts a key's page at `t` (inclusive): the seq just before
    /// `t` in the walk, or `None` when `t` is the walk's very first possible seq.
    pub(crate) fn cursor_before(&self, t: Seq) -> Option<Seq> {
        match self.order {
            Order::OldestFirst => t.checked_sub(1),
            Order::NewestFirst => t.checked_add(1),
        }
    }

    pub(crate) fn newest_first(&self) -> bool {
        self.order == Order::NewestFirst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_respect_cursor_and_horizon() {
        use Order::*;
        assert_eq!(Span::new(OldestFirst, None, None), None);
        let s = Span::new(OldestFirst, Some(9), Some(3)).unwrap();
        assert_eq!((s.lo, s.hi, s.first()), (4, 9, 4));
        let s = Span::new(NewestFirst, Some(9), Some(3)).unwrap();
        assert_eq!((s.lo, s.hi, s.first()), (0, 2, 2));
        let s = Span::new(NewestFirst, Some(9), Some(30)).unwrap();
        assert_eq!((s.lo, s.hi), (0, 9));
        assert_eq!(Span::new(NewestFirst, Some(9), Some(0)), None);
        assert_eq!(Span::new(OldestFirst, Some(9), Some(9)), None);
        assert_eq!(Span::new(OldestFirst, Some(9), Some(u64::MAX)), None);
        assert_eq!(s.next(0), None);
        assert_eq!(s.next(5), Some(4));
        assert!(s.reached(3, 5) && !s.reached(6, 5));
        assert_eq!(s.earlier(3, 5), 5);
        assert_eq!(s.cursor_before(5), Some(6));
    }
}
