//! # flumeview-query
//!
//! Queries over the [flumeview-index](flumeview_index) indexes of one
//! [flume-rs](flume_core) database: lookups of a key ([`eq`]), a key prefix ([`prefix`])
//! or a key range ([`range`]) in any number of indexes, combined with [`and`], [`or`]
//! and [`not`]; results ordered by seq (newest or oldest first), with a limit, a cursor
//! and an optional filter on the values; as a stream, as pages, or live.
//!
//! ```
//! use flume_core::{Flume, Wait};
//! use flumelog_memory::MemoryLog;
//! use flumeview_index::{Index, IndexReader};
//! use flumeview_query::eq;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Post { author: String, mentions: Vec<String>, text: String }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Flume::<Post>::new(MemoryLog::new())
//!     .use_view("author", Index::<Post, String>::keyed(1, |_seq, p, e| e.put(p.author.as_str())))?
//!     .use_view("mention", Index::<Post, String>::keyed(1, |_seq, p, e| {
//!         for m in &p.mentions {
//!             e.put(m.as_str());
//!         }
//!     }))?;
//! let post = |author: &str, mentions: &[&str], text: &str| Post {
//!     author: author.into(),
//!     mentions: mentions.iter().map(|m| m.to_string()).collect(),
//!     text: text.into(),
//! };
//! db.append(&post("@alice", &["@bob"], "hi bob")).await?;
//! db.append(&post("@alice", &[], "hi all")).await?;
//! db.append(&post("@carol", &["@bob"], "hey bob")).await?;
//! db.append(&post("@alice", &["@bob", "@carol"], "hi both")).await?;
//!
//! let author: IndexReader<Post, String> = db.view("author")?;
//! let mention: IndexReader<Post, String> = db.view("mention")?;
//!
//! // Alice's posts that mention bob, newest first.
//! let query = (eq(&author, "@alice") & eq(&mention, "@bob")).query().limit(10);
//! let page = query.page(Wait::Log).await?;
//! let texts: Vec<&str> = page.items.iter().map(|(_, p)| p.text.as_str()).collect();
//! assert_eq!(texts, ["hi both", "hi bob"]);
//! assert_eq!(page.next, None); // no more pages
//!
//! // Everything that mentions bob but is not by alice, oldest first.
//! let others = (eq(&mention, "@bob") & !eq(&author, "@alice")).query().oldest_first();
//! let page = others.page(Wait::Log).await?;
//! assert_eq!(page.items.len(), 1);
//! assert_eq!(page.items[0].1.text, "hey bob");
//! db.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## Running a query
//!
//! A [`Term`] says what matches; [`Term::query`] (or [`Query::new`]) makes a
//! [`Query`], whose builders set the order ([`Query::newest_first`], the default, or
//! [`Query::oldest_first`]), a [`limit`](Query::limit), a cursor
//! ([`after`](Query::after): only results after this seq in the query's order) and a
//! [`filter`](Query::filter) on the values, for what no index covers. Then:
//!
//! - [`Query::stream`] yields the results `(seq, value)` one at a time;
//! - [`Query::page`] returns at most `limit` of them with the cursor of the next page,
//!   to pass to [`Query::after`];
//! - [`Query::count`] counts the results, reading no record unless the filter needs it;
//! - [`Query::live`] yields new matching records as they are appended (oldest first),
//!   ending when the database closes;
//! - [`Query::explain`] returns the plan as text.
//!
//! Each run waits for every index of the term as its [`Wait`](flume_core::Wait) says,
//! with a single target for all of them (with `Wait::Log`, the log's last seq when the
//! run starts), then answers as of one *horizon*: the lowest seq every index has
//! indexed. Records above the horizon are ignored, so that every index answers about
//! the same records.
//!
//! ## How a query is planned
//!
//! A query walks seqs in its order within a *window*: from the horizon down to 0
//! (newest first) or from 0 up to the horizon (oldest first), narrowed by the cursor.
//! Every part of the term becomes a *source* that answers one question, "the first seq
//! at or beyond `t` that I hold", and whose targets only move forward:
//!
//! | term | source | cost |
//! |---|---|---|
//! | [`eq`] | the key's seqs, read from the index in seq order, a page at a time (64 seqs first, doubling to 4096 while the walk reads on, 32 after a jump) | a seek beyond the page reads one new page from the target: about `log n` block reads, whatever the key holds |
//! | [`prefix`], [`range`] | a set of the seqs of every key within the bounds, read once when the run starts, a chunk of 1024 hits at a time: a sorted list, or a bitmap of one bit per record of the window once that is smaller | reading every hit of the bounds in the window; then a seek is a search in memory |
//! | [`and`] | leapfrog: the sparsest child *drives* (proposes a candidate), the others are *probed* in order of density; a probe that answers beyond the candidate moves the driver there. A `not` steps through the window seq by seq, so it drives only when every child is one | about as many seeks as the driver has seqs in the walked part of the window |
//! | [`or`] | the earliest answer of its children, each keeping its position | the sum of its children |
//! | [`not`] | the next seq of the window its child does not hold | one probe of the child per seq skipped |
//!
//! The density of each source is estimated when the run starts, where the walk starts:
//! an `eq` from the share of the window its first page covers, a set exactly, an `and`
//! as the product of its children, an `or` and a `not` accordingly. So in
//! `eq(author, x) & eq(mention, y) & !eq(kind, "deleted")` the rarer of author and
//! mention drives, the other is probed, and the `not` comes last. A `not` alone, or
//! an `and` of nots only, has nothing that skips to drive with: it walks every seq of
//! the window and skips those its child holds. Results are read from the log only once
//! the sources agree; the [filter](Query::filter) then runs on each.
//!
//! Memory is bounded whatever the number of hits: one page of at most 4096 seqs per
//! `eq`, one set per `prefix` or `range` (at most about one bit per record of the
//! window), and one value at a time. Put selective conditions on keys (`eq`) where you
//! can: a `prefix` or `range` over many hits is read whole when the run starts, even
//! when a limit stops the walk early. [`Query::explain`] shows the chosen driver, the
//! order of the probes and the estimates:
//!
//! ```text
//! query: newest first, limit 3, after none, filter no
//! horizon 399, window 0..=399 (400 records)
//! and, about 1.51% of the window: the first child drives, the others are probed in order
//!   eq mention = "@bob": the key's seqs in pages, about 2.00% of the window
//!   eq author = "@common": the key's seqs in pages, about 75% of the window
//! ```
//!
//! A live query evaluates the same plan over each new stretch of the log, from the
//! previous horizon (exclusive) to the new one, once every index has indexed a new
//! record.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod exec;
mod query;
mod seqset;
mod span;
mod term;

pub use crate::query::{Page, Query};
pub use crate::span::Order;
pub use crate::term::{and, eq, not, or, prefix, range, Term};
