//! `Query`: a term with an order, a limit, a cursor and a filter; its plan, its
//! results as a stream or a page, and its live variant.

use std::fmt;
use std::sync::Arc;

use flume_core::{Error, LogReader, Result, Seq, Wait};
use flumeview_index::IndexReader;
use futures::stream::BoxStream;

use crate::exec::{
    And, Every, Halt, KeyPages, KeySource, Node, Not, Nothing, Or, SetSource, Source,
};
use crate::seqset::{SeqSet, SeqSetBuilder};
use crate::span::{Order, Span};
use crate::term::{Term, TermNode};

/// How many hits a prefix or range term reads from its index at once.
const CHUNK: usize = 1024;

type Filter<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// A query: a [`Term`], the order of its results, a limit, a cursor and a filter on
/// the values. Cheap to clone; run it as often as you like.
///
/// | builder | default |
/// |---|---|
/// | [`newest_first`](Query::newest_first) / [`oldest_first`](Query::oldest_first) | newest first |
/// | [`limit`](Query::limit) | no limit |
/// | [`after`](Query::after) | from the start (the newest record, or the oldest) |
/// | [`filter`](Query::filter) | every value the term matches |
///
/// Run it with [`stream`](Query::stream), [`page`](Query::page) or
/// [`live`](Query::live); [`explain`](Query::explain) shows its plan.
///
/// Every run first waits for every index of the term as its [`Wait`] says, with one
/// target for all (for [`Wait::Log`], the log's last seq when the run starts), then
/// answers as of one *horizon*: the lowest seq all of them have indexed. Records above
/// it are ignored, so every index is read as of the same record; entries that records
/// above the horizon have deleted are, however, already gone.
pub struct Query<T> {
    term: Term<T>,
    order: Order,
    limit: Option<usize>,
    after: Option<Seq>,
    filter: Option<Filter<T>>,
}

impl<T> Clone for Query<T> {
    fn clone(&self) -> Self {
        Query {
            term: self.term.clone(),
            order: self.order,
            limit: self.limit,
            after: self.after,
            filter: self.filter.clone(),
        }
    }
}

impl<T> fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("term", &self.term)
            .field("order", &self.order)
            .field("limit", &self.limit)
            .field("after", &self.after)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

/// One page of a query's results, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records, in the query's order, with their seqs.
    pub items: Vec<(Seq, T)>,
    /// The cursor of the next page ([`Query::after`]): the seq of the last item, when
    /// the query has more results as of [`horizon`](Page::horizon); `None` when this
    /// page is the last.
    pub next: Option<Seq>,
    /// The horizon the page was answered at: the last seq every index of the query had
    /// indexed (`None`: nothing yet).
    pub horizon: Option<Seq>,
}

impl<T> Query<T> {
    /// A query of `term`: newest first, no limit, no cursor, no filter.
    pub fn new(term: Term<T>) -> Self {
        Query {
            term,
            order: Order::NewestFirst,
            limit: None,
            after: None,
            filter: None,
        }
    }

    /// Newest records (highest seqs) first. The default.
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.order = Order::NewestFirst;
        self
    }

    /// Oldest records (lowest seqs) first: log order.
    #[must_use]
    pub fn oldest_first(mut self) -> Self {
        self.order = Order::OldestFirst;
        self
    }

    /// Results in this order.
    #[must_use]
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// At most `n` results. Default: no limit.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Only results strictly after `seq` in the query's order: below it newest first,
    /// above it oldest first. Pass a page's [`next`](Page::next) to get the next page.
    #[must_use]
    pub fn after(mut self, seq: Seq) -> Self {
        self.after = Some(seq);
        self
    }

    /// Sets or clears the cursor ([`Query::after`]).
    #[must_use]
    pub fn after_opt(mut self, seq: Option<Seq>) -> Self {
        self.after = seq;
        self
    }

    /// Only values `keep` returns true for: for what no index covers. The filter runs
    /// on each record the term matches, after it is read from the log, so it narrows
    /// the results but not the work; the limit counts what it keeps.
    #[must_use]
    pub fn filter(mut self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(keep));
        self
    }
}

impl<T: Send + Sync + 'static> Query<T> {
    /// The distinct indexes of the term, and the leaves' reader numbers in order.
    fn readers(&self) -> (Vec<IndexReader<T>>, Vec<usize>) {
        let mut readers: Vec<IndexReader<T>> = Vec::new();
        let mut numbers = Vec::new();
        self.term.leaves(&mut |leaf| {
            let reader = match leaf {
                TermNode::Key { reader, .. } | TermNode::Range { reader, .. } => reader,
                _ => unreachable!("leaves are lookups"),
            };
            let name = reader.waiter().name();
            let n = match readers.iter().position(|r| r.waiter().name() == name) {
                Some(n) => n,
                None => {
                    readers.push(reader.clone());
                    readers.len() - 1
                }
            };
            numbers.push(n);
        });
        (readers, numbers)
    }

    /// Everything a run needs, fixed when it starts.
    fn start(&self, wait: Wait) -> Run<T> {
        let (readers, leaf_readers) = self.readers();
        // One target for every index: the log's tail now, for `Wait::Log`.
        let wait = readers
            .first()
            .map_or(Wait::NoWait, |r| r.waiter().capture(wait));
        Run {
            query: self.clone(),
            readers,
            leaf_readers,
            wait,
        }
    }

    /// The results as a stream, in the query's order, `limit` at most.
    ///
    /// The run starts when `stream` is called: [`Wait::Log`] waits for the log as it is
    /// then. It holds one page of seqs per `eq` term (at most 4096), one set per prefix
    /// or range term (at most one bit per record of the window), and one value at a
    /// time, whatever the number of results.
    ///
    /// The stream ends with an error item when a wait or a read fails:
    /// [`Error::Closed`], [`Error::ViewFailed`], [`Error::ViewDamaged`], or the log's
    /// errors reading a record.
    ///
    /// ```
    /// # async fn demo(query: flumeview_query::Query<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use futures::TryStreamExt;
    /// let values: Vec<(u64, String)> = query.stream(Wait::Log).try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn stream(&self, wait: Wait) -> BoxStream<'static, Result<(Seq, T)>> {
        let run = self.start(wait);
        Box::pin(async_stream::try_stream! {
            let horizon = run.horizon().await?;
            let Some(span) = Span::new(run.query.order, horizon, run.query.after) else {
                return;
            };
            let mut walk = run.walk(span).await?;
            let mut remaining = run.query.limit.unwrap_or(usize::MAX);
            while remaining > 0 {
                let Some(item) = walk.next(&run).await? else {
                    break;
                };
                remaining -= 1;
                yield item;
            }
        })
    }

    /// One page of results: at most `limit` of them (all without a limit), with the
    /// cursor of the next page and the horizon it was answered at.
    ///
    /// Resuming with `.after(page.next)` walks on from where the page ended, at the
    /// horizon of the new call: records appended meanwhile come in a later page oldest
    /// first, and not at all newest first (they are newer than the cursor).
    ///
    /// ```
    /// # async fn demo(query: flumeview_query::Query<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// let mut cursor = None;
    /// loop {
    ///     let page = query.clone().limit(20).after_opt(cursor).page(Wait::Log).await?;
    ///     for (seq, value) in &page.items {
    ///         println!("{seq}: {value}");
    ///     }
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As the items of [`Query::stream`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the query; nothing else happens.
    pub async fn page(&self, wait: Wait) -> Result<Page<T>> {
        let run = self.start(wait);
        let horizon = run.horizon().await?;
        let mut page = Page {
            items: Vec::new(),
            next: None,
            horizon,
        };
        let Some(span) = Span::new(self.order, horizon, self.after) else {
            return Ok(page);
        };
        let mut walk = run.walk(span).await?;
        let limit = self.limit.unwrap_or(usize::MAX);
        while let Some(item) = walk.next(&run).await? {
            if page.items.len() == limit {
                // One more result exists: the page is not the last.
                page.next = page.items.last().map(|(s, _)| *s);
                break;
            }
            page.items.push(item);
        }
        Ok(page)
    }

    /// How many results the query has (at most `limit`), without reading the records
    /// from the log unless a [filter](Query::filter) needs their values.
    ///
    /// ```
    /// # async fn demo(query: flumeview_query::Query<String>) -> flume_core::Result<()> {
    /// let n = query.count(flume_core::Wait::Log).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Query::page`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the count; nothing else happens.
    pub async fn count(&self, wait: Wait) -> Result<u64> {
        let run = self.start(wait);
        let horizon = run.horizon().await?;
        let Some(span) = Span::new(self.order, horizon, self.after) else {
            return Ok(0);
        };
        let mut walk = run.walk(span).await?;
        let limit = self.limit.map_or(u64::MAX, |l| l as u64);
        let mut n = 0;
        while n < limit {
            let found = if self.filter.is_some() {
                walk.next(&run).await?.is_some()
            } else {
                walk.next_seq(&run).await?.is_some()
            };
            if !found {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// The query's plan, as text: the horizon and window, then the tree of sources
    /// with the one that drives each `and` first, each with what it costs and how
    /// dense it is in the window. Waits as `wait` says, like a run, and reads what
    /// planning reads (a first page of every key, every prefix and range set).
    ///
    /// ```
    /// # async fn demo(query: flumeview_query::Query<String>) -> flume_core::Result<()> {
    /// println!("{}", query.explain(flume_core::Wait::Log).await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Query::page`].
    ///
    /// # Cancel safety
    /// Dropping the future stops the planning; nothing else happens.
    pub async fn explain(&self, wait: Wait) -> Result<String> {
        let run = self.start(wait);
        let horizon = run.horizon().await?;
        let mut out = format!(
            "query: {}, limit {}, after {}, filter {}\n",
            match self.order {
                Order::NewestFirst => "newest first",
                Order::OldestFirst => "oldest first",
            },
            self.limit.map_or("none".into(), |l| l.to_string()),
            self.after.map_or("none".into(), |a| a.to_string()),
            if self.filter.is_some() { "yes" } else { "no" },
        );
        let Some(span) = Span::new(self.order, horizon, self.after) else {
            out.push_str(&format!(
                "horizon {horizon:?}: the window is empty, nothing is read\n"
            ));
            return Ok(out);
        };
        out.push_str(&format!(
            "horizon {}, window {}..={} ({} records)\n",
            horizon.unwrap_or(span.hi),
            span.lo,
            span.hi,
            span.len()
        ));
        let walk = run.walk(span).await?;
        walk.source.explain(0, &mut out);
        Ok(out)
    }

    /// New results as they arrive, oldest first, `limit` at most: every record after
    /// the starting point that the query matches, as soon as every index of the query
    /// has indexed it. The starting point is fixed when `live` is called: the log's
    /// last record for [`Wait::Log`], the seq given for [`Wait::AtLeast`], the lowest
    /// seq the indexes have indexed for [`Wait::NoWait`]; or the cursor, when
    /// [`Query::after`] is set (resume a subscription from the last seq it saw: the
    /// records since then come first).
    ///
    /// It evaluates the query over each new stretch of the log, `(horizon_old,
    /// horizon_new]`, as the indexes move on: a record is yielded once, if it matches
    /// when its stretch is evaluated. It ends when the database closes; with an error
    /// item when a view fails or a read fails, or when the query is newest first (a
    /// live query can only be oldest first).
    ///
    /// ```
    /// # async fn demo(query: flumeview_query::Query<String>) -> flume_core::Result<()> {
    /// use flume_core::Wait;
    /// use futures::StreamExt;
    /// let mut feed = query.oldest_first().live(Wait::Log);
    /// while let Some(item) = feed.next().await {
    ///     let (seq, value) = item?;
    ///     println!("new: {seq} {value}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn live(&self, wait: Wait) -> BoxStream<'static, Result<(Seq, T)>> {
        let run = self.start(wait);
        // The records up to here are history: the log's tail now for `Wait::Log`, the
        // seq given for `Wait::AtLeast`, what the indexes hold now for `Wait::NoWait`.
        let start = match run.wait {
            Wait::AtLeast(seq) => Some(seq),
            _ => run.readers.iter().map(|r| r.since()).min().flatten(),
        };
        Box::pin(async_stream::try_stream! {
            if run.query.order != Order::OldestFirst {
                Err(Error::InvalidArgument(
                    "a live query yields records as they arrive: make it oldest_first".into(),
                ))?;
            }
            let mut seen = run.query.after.or(start);
            let mut remaining = run.query.limit.unwrap_or(usize::MAX);
            while remaining > 0 {
                let from = match seen {
                    None => 0,
                    Some(s) => match s.checked_add(1) {
                        Some(f) => f,
                        None => return,
                    },
                };
                // Every index has indexed at least one new record.
                let horizon = match run.horizon_at(Wait::AtLeast(from)).await {
                    Err(Error::Closed) => return,
                    other => other?,
                };
                let Some(span) = horizon.and_then(|h| Span::between(from, h, Order::OldestFirst)) else {
                    continue;
                };
                let mut walk = run.walk(span).await?;
                while remaining > 0 {
                    let Some(item) = walk.next(&run).await? else {
                        break;
                    };
                    remaining -= 1;
                    yield item;
                }
                seen = Some(span.hi);
            }
        })
    }
}

/// A run of a query: its indexes and its captured wait.
struct Run<T> {
    query: Query<T>,
    /// The distinct indexes of the term (the first one's log is read).
    readers: Vec<IndexReader<T>>,
    /// For each leaf of the term, in order, its index in `readers`.
    leaf_readers: Vec<usize>,
    /// The wait, its target fixed when the run started.
    wait: Wait,
}

impl<T: Send + Sync + 'static> Run<T> {
    fn log(&self) -> &LogReader<T> {
        self.readers[0].log()
    }

    /// Waits for every index as the run's wait says; the horizon.
    async fn horizon(&self) -> Result<Option<Seq>> {
        self.horizon_at(self.wait).await
    }

    /// Waits for every index as `wait` says; the lowest seq they have all indexed.
    async fn horizon_at(&self, wait: Wait) -> Result<Option<Seq>> {
        if self.readers.is_empty() {
            return Err(Error::InvalidArgument(
                "a query needs at least one index lookup (eq, prefix or range)".into(),
            ));
        }
        let mut horizon = None;
        for (i, reader) in self.readers.iter().enumerate() {
            let since = reader.ready(wait).await?;
            horizon = if i == 0 { since } else { horizon.min(since) };
        }
        Ok(horizon)
    }

    /// Builds the sources for `span`: reads every prefix and range set, then the first
    /// page of every key. Waits again for an index that a reset lowered meanwhile.
    async fn walk(&self, span: Span) -> Result<Walk<T>> {
        loop {
            let mut sets = Vec::new();
            let mut ranges = Vec::new();
            self.query.term.leaves(&mut |leaf| {
                if let TermNode::Range { reader, lo, hi, .. } = leaf {
                    ranges.push((reader, lo, hi));
                }
            });
            for (reader, lo, hi) in ranges {
                sets.push(read_set(reader, lo, hi, span).await?);
            }
            let mut sets = sets.into_iter();
            let mut leaves = self.leaf_readers.iter().copied();
            match build(&self.query.term, span, &mut leaves, &mut sets) {
                Ok(source) => {
                    return Ok(Walk {
                        source: Node::new(source, span),
                        span,
                        next: Some(span.first()),
                        filter: self.query.filter.clone(),
                    })
                }
                Err(Halt::Stale(i)) => self.rewait(i, span).await?,
                Err(Halt::Failed(e)) => return Err(e),
            }
        }
    }

    /// Waits until index `i` is back at the span's end after a reset.
    async fn rewait(&self, i: usize, span: Span) -> Result<()> {
        self.readers[i].ready(Wait::AtLeast(span.hi)).await?;
        Ok(())
    }
}

/// Reads the seqs of a prefix or range term within the span, a chunk at a time.
async fn read_set<T: Send + Sync + 'static>(
    reader: &IndexReader<T>,
    lo: &std::ops::Bound<Vec<u8>>,
    hi: &std::ops::Bound<Vec<u8>>,
    span: Span,
) -> Result<SeqSet> {
    let mut set = SeqSetBuilder::new(span.lo, span.hi);
    let mut last = None;
    loop {
        let mut scan = reader.range((lo.clone(), hi.clone())).limit(CHUNK);
        if let Some(below) = span.lo.checked_sub(1) {
            scan = scan.after_seq(below);
        }
        if let Some(hit) = &last {
            scan = scan.after(hit);
        }
        // Waiting for the span's end keeps out a reset while the chunk is read.
        let mut hits = scan.hits(Wait::AtLeast(span.hi)).await?;
        for hit in &hits {
            set.insert(hit.seq);
        }
        if hits.len() < CHUNK {
            return Ok(set.finish());
        }
        last = hits.pop();
    }
}

/// An index reader read one key at a time.
struct IndexPages<T> {
    reader: IndexReader<T>,
    key: Vec<u8>,
}

impl<T: Send + Sync + 'static> KeyPages for IndexPages<T> {
    fn page(&self, from: Option<Seq>, newest_first: bool, limit: usize) -> Result<Vec<Seq>> {
        self.reader.key_seqs(&self.key, from, newest_first, limit)
    }

    fn since(&self) -> Option<Seq> {
        self.reader.since()
    }
}

/// The source tree of a term; `leaves` numbers each leaf's index, `sets` holds the
/// range sets in leaf order.
fn build<T: Send + Sync + 'static>(
    term: &Term<T>,
    span: Span,
    leaves: &mut impl Iterator<Item = usize>,
    sets: &mut impl Iterator<Item = SeqSet>,
) -> std::result::Result<Box<dyn Source>, Halt> {
    let mut nodes = |children: &[Term<T>]| -> std::result::Result<Vec<Node>, Halt> {
        children
            .iter()
            .map(|c| Ok(Node::new(build(c, span, leaves, sets)?, span)))
            .collect()
    };
    Ok(match &term.node {
        TermNode::Key { reader, key, label } => {
            let i = leaves.next().expect("one number per leaf");
            let pages = IndexPages {
                reader: reader.clone(),
                key: key.clone(),
            };
            Box::new(KeySource::new(pages, i, span, label.clone())?)
        }
        TermNode::Range { label, .. } => {
            let _ = leaves.next();
            Box::new(SetSource {
                set: sets.next().expect("one set per range leaf"),
                span,
                label: label.clone(),
            })
        }
        TermNode::And(c) if c.is_empty() => Box::new(Every { span }),
        TermNode::Or(c) if c.is_empty() => Box::new(Nothing),
        TermNode::And(c) if c.len() == 1 => build(&c[0], span, leaves, sets)?,
        TermNode::Or(c) if c.len() == 1 => build(&c[0], span, leaves, sets)?,
        TermNode::And(c) => Box::new(And::new(nodes(c)?)),
        TermNode::Or(c) => Box::new(Or::new(nodes(c)?, span)),
        TermNode::Not(c) => {
            let child = Node::new(build(c, span, leaves, sets)?, span);
            Box::new(Not::new(child, span))
        }
    })
}

/// A walk over a span: the next result, read from the log and filtered.
struct Walk<T> {
    source: Node,
    span: Span,
    /// Where the walk goes on (`None`: done).
    next: Option<Seq>,
    filter: Option<Filter<T>>,
}

impl<T: Send + Sync + 'static> Walk<T> {
    /// The next seq the sources agree on, before the filter.
    async fn next_seq(&mut self, run: &Run<T>) -> Result<Option<Seq>> {
        while let Some(t) = self.next {
            match self.source.seek(t) {
                Ok(None) => self.next = None,
                Ok(Some(seq)) => {
                    self.next = self.span.next(seq);
                    return Ok(Some(seq));
                }
                Err(Halt::Stale(i)) => run.rewait(i, self.span).await?,
                Err(Halt::Failed(e)) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The next result: the next seq the sources agree on whose value the filter keeps.
    async fn next(&mut self, run: &Run<T>) -> Result<Option<(Seq, T)>> {
        while let Some(seq) = self.next_seq(run).await? {
            let value = run.log().get(seq).await?;
            if self.filter.as_ref().is_none_or(|keep| keep(&value)) {
                return Ok(Some((seq, value)));
            }
        }
        Ok(None)
    }
}
