//! The executor: seq-ordered sources with `seek`, and the `and` / `or` / `not`
//! combinators that leapfrog over them.
//!
//! Every source walks one [`Span`] in its order and answers one question: "the first
//! seq at or beyond `t`". Targets never move backwards, so a source keeps a position
//! and a buffer, and a combinator only ever asks its children to catch up.

use std::collections::VecDeque;
use std::fmt::Write as _;

use flume_core::{Error, Seq};

use crate::seqset::SeqSet;
use crate::span::Span;

/// Why a source could not answer.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The index of this reader (numbered by the query) was reset while it was read:
    /// wait until it is back at the span's end, then ask again with the same target.
    Stale(usize),
    /// A read failed.
    Failed(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Failed(e)
    }
}

/// An answer of a source: the first seq at or beyond the target, `None` when there is
/// none left within the span.
pub(crate) type Step = std::result::Result<Option<Seq>, Halt>;

/// A seq-ordered source of a query.
pub(crate) trait Source: Send {
    /// The first seq of the source at or beyond `t` in the span's walk, within the span.
    /// `t` lies within the span and never moves backwards from one call to the next. A
    /// source that returns [`Halt`] has not moved: the same call may be repeated.
    fn seek(&mut self, t: Seq) -> Step;

    /// The share of the span's seqs the source holds (0 to 1), as far as it knows: the
    /// planner drives `and` with the sparsest child and probes the others in order.
    fn density(&self) -> f64;

    /// Appends the plan of this source to `out`, indented by `depth`.
    fn explain(&self, depth: usize, out: &mut String);

    /// Whether the source finds its next seq by stepping through the window one seq at
    /// a time (a `not`): such a source only drives an `and` when every child does.
    fn steps(&self) -> bool {
        false
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn percent(d: f64) -> String {
    if d >= 0.1 {
        format!("{:.0}%", d * 100.0)
    } else {
        format!("{:.2}%", d * 100.0)
    }
}

/// A source with its last answer remembered: asking again for a target at or before
/// that answer costs nothing. Every child of a combinator is wrapped in one.
pub(crate) struct Node {
    source: Box<dyn Source>,
    span: Span,
    /// The last answer, once there is one: the target asked and what came back.
    last: Option<(Seq, Option<Seq>)>,
}

impl Node {
    pub(crate) fn new(source: Box<dyn Source>, span: Span) -> Self {
        Node {
            source,
            span,
            last: None,
        }
    }
}

impl Source for Node {
    fn seek(&mut self, t: Seq) -> Step {
        if let Some((asked, answer)) = self.last {
            match answer {
                // Exhausted for every later target too.
                None if self.span.reached(t, asked) => return Ok(None),
                Some(a) if self.span.reached(t, asked) && self.span.reached(a, t) => {
                    return Ok(Some(a))
                }
                _ => {}
            }
        }
        let answer = self.source.seek(t)?;
        self.last = Some((t, answer));
        Ok(answer)
    }

    fn density(&self) -> f64 {
        self.source.density()
    }

    fn explain(&self, depth: usize, out: &mut String) {
        self.source.explain(depth, out);
    }

    fn steps(&self) -> bool {
        self.source.steps()
    }
}

/// Every seq of the span (the universe a lone `not` walks): `and` of nothing.
pub(crate) struct Every {
    pub(crate) span: Span,
}

impl Source for Every {
    fn seek(&mut self, t: Seq) -> Step {
        Ok(self.span.contains(t).then_some(t))
    }

    fn density(&self) -> f64 {
        1.0
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        out.push_str("every record (walks the whole window)\n");
    }

    fn steps(&self) -> bool {
        true
    }
}

/// No seq at all: `or` of nothing.
pub(crate) struct Nothing;

impl Source for Nothing {
    fn seek(&mut self, _: Seq) -> Step {
        Ok(None)
    }

    fn density(&self) -> f64 {
        0.0
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        out.push_str("nothing\n");
    }
}

/// A set materialised in memory (a prefix or range term, or a test's list).
pub(crate) struct SetSource {
    pub(crate) set: SeqSet,
    pub(crate) span: Span,
    pub(crate) label: String,
}

impl Source for SetSource {
    fn seek(&mut self, t: Seq) -> Step {
        Ok(self.set.seek(&self.span, t))
    }

    fn density(&self) -> f64 {
        self.set.len() as f64 / self.span.len() as f64
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        let _ = writeln!(
            out,
            "{}: set of {} seqs ({}, {} bytes), {} of the window",
            self.label,
            self.set.len(),
            if self.set.is_dense() {
                "bitmap"
            } else {
                "list"
            },
            self.set.heap_bytes(),
            percent(self.density()),
        );
    }
}

/// Reads pages of one key's seqs in seq order (an index, or a test's list).
pub(crate) trait KeyPages: Send {
    /// Up to `limit` seqs of the key strictly beyond `from` (`None`: from the start) in
    /// the given direction; no waiting.
    fn page(
        &self,
        from: Option<Seq>,
        newest_first: bool,
        limit: usize,
    ) -> flume_core::Result<Vec<Seq>>;
    /// The seq the index reflects.
    fn since(&self) -> Option<Seq>;
}

/// How many seqs the planner reads of each key before choosing a driver.
pub(crate) const SAMPLE: usize = 64;
/// The largest page a key source reads at once.
const MAX_PAGE: usize = 4096;
/// The page a key source reads after a jump (a probe moved far ahead).
const JUMP_PAGE: usize = 32;

/// One key's seqs, streamed from the index in pages in seq order: `eq` terms.
///
/// A seek within the buffered page costs nothing; a seek beyond it reads a new page
/// starting at the target (about `log n` block reads, whatever the key holds), so
/// leapfrogging skips what it does not need. Pages double while the walk reads on, up
/// to [`MAX_PAGE`] seqs; a seek that jumps further than the last page reached reads a
/// small page ([`JUMP_PAGE`]) again: a probe of an `and` rarely needs more.
pub(crate) struct KeySource<P> {
    pages: P,
    /// Which reader of the query this is (for [`Halt::Stale`]).
    reader: usize,
    span: Span,
    buf: VecDeque<Seq>,
    /// Nothing of the key lies beyond the buffer within the span.
    exhausted: bool,
    page: usize,
    /// The first and last seq of the last page read, if it held any.
    last_page: Option<(Seq, Seq)>,
    /// The density the first page showed.
    density: f64,
    label: String,
}

impl<P: KeyPages> KeySource<P> {
    /// Reads the first page (of [`SAMPLE`] seqs) to estimate how dense the key is where
    /// the walk starts.
    pub(crate) fn new(pages: P, reader: usize, span: Span, label: String) -> Result<Self, Halt> {
        let mut source = KeySource {
            pages,
            reader,
            span,
            buf: VecDeque::new(),
            exhausted: false,
            page: SAMPLE,
            last_page: None,
            density: 1.0,
            label,
        };
        source.fill(span.first())?;
        source.density = match (source.exhausted, source.buf.back()) {
            (true, _) | (_, None) => source.buf.len() as f64 / span.len() as f64,
            (false, Some(&last)) => {
                let covered = last.abs_diff(span.first()) + 1;
                source.buf.len() as f64 / covered as f64
            }
        };
        Ok(source)
    }

    /// Reads a page starting at `t`, replacing the buffer.
    fn fill(&mut self, t: Seq) -> Result<(), Halt> {
        if let Some((first, last)) = self.last_page {
            // Reading on: double the page. Jumping: a small one.
            let jumped = t.abs_diff(last) > last.abs_diff(first).max(JUMP_PAGE as u64);
            self.page = if jumped {
                JUMP_PAGE
            } else {
                (self.page * 2).min(MAX_PAGE)
            };
        }
        let from = self.span.cursor_before(t);
        let page = self.pages.page(from, self.span.newest_first(), self.page)?;
        if self.pages.since() < Some(self.span.hi) {
            // The index was reset under the read: what it returned may lack entries.
            return Err(Halt::Stale(self.reader));
        }
        self.exhausted = page.len() < self.page;
        self.buf.clear();
        for s in page {
            if !self.span.contains(s) {
                self.exhausted = true;
                break;
            }
            self.buf.push_back(s);
        }
        self.last_page = self.buf.front().zip(self.buf.back()).map(|(f, l)| (*f, *l));
        Ok(())
    }
}

impl<P: KeyPages> Source for KeySource<P> {
    fn seek(&mut self, t: Seq) -> Step {
        while let Some(&f) = self.buf.front() {
            if self.span.reached(f, t) {
                return Ok(Some(f));
            }
            self.buf.pop_front();
        }
        if self.exhausted {
            return Ok(None);
        }
        self.fill(t)?;
        Ok(self.buf.front().copied())
    }

    fn density(&self) -> f64 {
        self.density
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        let _ = writeln!(
            out,
            "{}: the key's seqs in pages, about {} of the window",
            self.label,
            percent(self.density)
        );
    }
}

/// Seqs the child does not hold.
pub(crate) struct Not {
    child: Node,
    span: Span,
}

impl Not {
    pub(crate) fn new(child: Node, span: Span) -> Self {
        Not { child, span }
    }
}

impl Source for Not {
    fn seek(&mut self, mut t: Seq) -> Step {
        loop {
            match self.child.seek(t)? {
                Some(c) if c == t => match self.span.next(t) {
                    Some(n) => t = n,
                    None => return Ok(None),
                },
                _ => return Ok(Some(t)),
            }
        }
    }

    fn density(&self) -> f64 {
        1.0 - self.child.density()
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        let _ = writeln!(
            out,
            "not (skips the child's seqs one by one), about {} of the window",
            percent(self.density())
        );
        self.child.explain(depth + 1, out);
    }

    fn steps(&self) -> bool {
        true
    }
}

/// Seqs every child holds: the sparsest child drives, the others are probed in order
/// of density with `seek`, and a probe that answers beyond the candidate moves the
/// driver there (leapfrog). A child that steps through the window (a `not`) comes
/// after those that skip, however sparse it is.
pub(crate) struct And {
    /// The driver first, then the probes.
    children: Vec<Node>,
}

impl And {
    /// Orders the children by density.
    pub(crate) fn new(mut children: Vec<Node>) -> Self {
        children
            .sort_by(|a, b| (a.steps().cmp(&b.steps())).then(a.density().total_cmp(&b.density())));
        And { children }
    }
}

impl Source for And {
    fn seek(&mut self, mut t: Seq) -> Step {
        let Some((driver, probes)) = self.children.split_first_mut() else {
            return Ok(None);
        };
        'candidates: loop {
            let Some(candidate) = driver.seek(t)? else {
                return Ok(None);
            };
            for probe in probes.iter_mut() {
                match probe.seek(candidate)? {
                    None => return Ok(None),
                    Some(p) if p != candidate => {
                        t = p;
                        continue 'candidates;
                    }
                    Some(_) => {}
                }
            }
            return Ok(Some(candidate));
        }
    }

    fn density(&self) -> f64 {
        self.children.iter().map(Source::density).product()
    }

    fn steps(&self) -> bool {
        self.children.iter().all(Source::steps)
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        let _ = writeln!(
            out,
            "and, about {} of the window: the first child drives, the others are probed in order",
            percent(self.density())
        );
        for child in &self.children {
            child.explain(depth + 1, out);
        }
    }
}

/// Seqs any child holds: the earliest of the children's answers (each child keeps its
/// own position, so a child is only read again once the walk passes its answer).
pub(crate) struct Or {
    children: Vec<Node>,
    span: Span,
}

impl Or {
    pub(crate) fn new(children: Vec<Node>, span: Span) -> Self {
        Or { children, span }
    }
}

impl Source for Or {
    fn seek(&mut self, t: Seq) -> Step {
        let mut best: Option<Seq> = None;
        for child in &mut self.children {
            if let Some(a) = child.seek(t)? {
                best = Some(best.map_or(a, |b| self.span.earlier(a, b)));
                if a == t {
                    // Nothing can come earlier.
                    break;
                }
            }
        }
        Ok(best)
    }

    fn steps(&self) -> bool {
        self.children.iter().any(Source::steps)
    }

    fn density(&self) -> f64 {
        1.0 - self
            .children
            .iter()
            .map(|c| 1.0 - c.density())
            .product::<f64>()
    }

    fn explain(&self, depth: usize, out: &mut String) {
        indent(out, depth);
        let _ = writeln!(
            out,
            "or, about {} of the window: merges the children",
            percent(self.density())
        );
        for child in &self.children {
            child.explain(depth + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seqset::SeqSetBuilder;
    use crate::span::Order;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A key's seqs in memory, read the way an index is, counting pages and seqs read.
    struct ListPages {
        seqs: Vec<Seq>,
        reads: Arc<AtomicUsize>,
        returned: Arc<AtomicUsize>,
    }

    impl KeyPages for ListPages {
        fn page(
            &self,
            from: Option<Seq>,
            newest_first: bool,
            limit: usize,
        ) -> flume_core::Result<Vec<Seq>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let page: Vec<Seq> = if newest_first {
                self.seqs
                    .iter()
                    .rev()
                    .filter(|s| from.is_none_or(|f| **s < f))
                    .take(limit)
                    .copied()
                    .collect()
            } else {
                self.seqs
                    .iter()
                    .filter(|s| from.is_none_or(|f| **s > f))
                    .take(limit)
                    .copied()
                    .collect()
            };
            self.returned.fetch_add(page.len(), Ordering::Relaxed);
            Ok(page)
        }

        fn since(&self) -> Option<Seq> {
            Some(u64::MAX)
        }
    }

    /// A boolean tree over in-memory seq lists.
    #[derive(Debug, Clone)]
    enum Tree {
        Key(BTreeSet<Seq>),
        Set(BTreeSet<Seq>),
        And(Vec<Tree>),
        Or(Vec<Tree>),
        Not(Box<Tree>),
    }

    impl Tree {
        fn holds(&self, s: Seq) -> bool {
            match self {
                Tree::Key(l) | Tree::Set(l) => l.contains(&s),
                Tree::And(c) => c.iter().all(|c| c.holds(s)),
                Tree::Or(c) => c.iter().any(|c| c.holds(s)),
                Tree::Not(c) => !c.holds(s),
            }
        }

        fn build(&self, span: Span) -> Box<dyn Source> {
            let node = |t: &Tree| Node::new(t.build(span), span);
            match self {
                Tree::Key(l) => Box::new(
                    KeySource::new(
                        ListPages {
                            seqs: l.iter().copied().collect(),
                            reads: Arc::default(),
                            returned: Arc::default(),
                        },
                        0,
                        span,
                        "key".into(),
                    )
                    .unwrap(),
                ),
                Tree::Set(l) => {
                    let mut b = SeqSetBuilder::new(span.lo, span.hi);
                    l.iter().for_each(|s| b.insert(*s));
                    Box::new(SetSource {
                        set: b.finish(),
                        span,
                        label: "set".into(),
                    })
                }
                Tree::And(c) if c.is_empty() => Box::new(Every { span }),
                Tree::Or(c) if c.is_empty() => Box::new(Nothing),
                Tree::And(c) => Box::new(And::new(c.iter().map(node).collect())),
                Tree::Or(c) => Box::new(Or::new(c.iter().map(node).collect(), span)),
                Tree::Not(c) => Box::new(Not::new(node(c), span)),
            }
        }
    }

    fn tree() -> impl Strategy<Value = Tree> {
        let list = prop::collection::btree_set(0u64..120, 0..60);
        let leaf = prop_oneof![list.clone().prop_map(Tree::Key), list.prop_map(Tree::Set)];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::And),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Tree::Or),
                inner.prop_map(|t| Tree::Not(Box::new(t))),
            ]
        })
    }

    fn walk(source: &mut dyn Source, span: Span) -> Vec<Seq> {
        let mut out = Vec::new();
        let mut t = Some(span.first());
        while let Some(target) = t {
            match source.seek(target).unwrap() {
                Some(s) => {
                    assert!(span.contains(s) && span.reached(s, target));
                    out.push(s);
                    t = span.next(s);
                }
                None => break,
            }
        }
        out
    }

    proptest! {
        #[test]
        fn trees_match_a_naive_filter(t in tree(), lo in 0u64..40, width in 0u64..130, newest in any::<bool>()) {
            let order = if newest { Order::NewestFirst } else { Order::OldestFirst };
            let span = Span::between(lo, lo + width, order).unwrap();
            let mut want: Vec<Seq> = (span.lo..=span.hi).filter(|s| t.holds(*s)).collect();
            if newest {
                want.reverse();
            }
            let mut source = t.build(span);
            prop_assert_eq!(walk(source.as_mut(), span), want);
        }
    }

    #[test]
    fn leapfrog_reads_few_pages_of_a_big_key() {
        let reads = Arc::new(AtomicUsize::new(0));
        let returned = Arc::new(AtomicUsize::new(0));
        let span = Span::between(0, 1_000_000, Order::NewestFirst).unwrap();
        let big = KeySource::new(
            ListPages {
                seqs: (0..1_000_000).collect(),
                reads: Arc::clone(&reads),
                returned: Arc::clone(&returned),
            },
            0,
            span,
            "big".into(),
        )
        .unwrap();
        let small = KeySource::new(
            ListPages {
                seqs: vec![10, 500_000, 999_999],
                reads: Arc::default(),
                returned: Arc::default(),
            },
            0,
            span,
            "small".into(),
        )
        .unwrap();
        let mut and = And::new(vec![
            Node::new(Box::new(big), span),
            Node::new(Box::new(small), span),
        ]);
        let mut explained = String::new();
        and.explain(0, &mut explained);
        assert!(
            explained.lines().nth(1).unwrap().contains("small"),
            "the sparse key drives:\n{explained}"
        );
        assert_eq!(walk(&mut and, span), vec![999_999, 500_000, 10]);
        assert!(reads.load(Ordering::Relaxed) <= 3, "{reads:?}");
        // The first page, then small pages for the probes that jumped.
        assert!(
            returned.load(Ordering::Relaxed) <= SAMPLE + 2 * JUMP_PAGE,
            "{returned:?}"
        );
    }

    #[test]
    fn a_stale_index_halts_without_moving() {
        struct Resetting(std::sync::atomic::AtomicBool);
        impl KeyPages for Resetting {
            fn page(
                &self,
                from: Option<Seq>,
                _: bool,
                limit: usize,
            ) -> flume_core::Result<Vec<Seq>> {
                let start = from.map_or(0, |f| f + 1);
                Ok((start..start + limit as u64).collect())
            }
            fn since(&self) -> Option<Seq> {
                // Reset once: the first read after the sample sees the index lowered.
                if self.0.swap(false, Ordering::Relaxed) {
                    Some(u64::MAX)
                } else {
                    None
                }
            }
        }
        let span = Span::between(0, 10_000, Order::OldestFirst).unwrap();
        let pages = Resetting(true.into());
        let mut key = KeySource::new(pages, 7, span, "k".into()).unwrap();
        assert_eq!(key.seek(3).unwrap(), Some(3));
        assert!(matches!(key.seek(5_000), Err(Halt::Stale(7))));
        key.pages.0.store(true, Ordering::Relaxed);
        assert_eq!(key.seek(5_000).unwrap(), Some(5_000));
    }
}
