//! Combined queries against a naive filter over the whole log: random records (posts,
//! and deletes of earlier posts), random and/or/not trees over three indexes, both
//! orders, limits, filters and cursors resumed page by page; over a memory log, and
//! over a file log with persisted indexes across reopens; and live queries.

use std::path::Path;

use flume_core::{Flume, Seq, Wait};
use flumeview_index::{Index, IndexReader};
use flumeview_query::{and, eq, not, or, prefix, range, Query, Term};
use futures::{StreamExt, TryStreamExt};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fields {
    a: u64,
    tags: Vec<u64>,
    c: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Rec {
    Post(Fields),
    /// Removes the index entries of the post at `target` (the fields are the target's).
    Del {
        target: Seq,
        of: Fields,
    },
}

/// `a`: one u64 key per post; `b`: one per tag; `c`: `(c, seq)`, for prefix and range.
fn views(db: Flume<Rec>, dir: Option<&Path>) -> Flume<Rec> {
    let persist = |name: &str| dir.map(|d| d.join(name));
    let a = Index::<Rec, u64>::keyed(1, |_, r: &Rec, e| match r {
        Rec::Post(f) => e.put(f.a),
        Rec::Del { target, of } => e.remove(of.a, *target),
    });
    let b = Index::<Rec, u64>::keyed(1, |_, r: &Rec, e| match r {
        Rec::Post(f) => f.tags.iter().for_each(|t| e.put(*t)),
        Rec::Del { target, of } => of.tags.iter().for_each(|t| e.remove(*t, *target)),
    });
    let c = Index::<Rec, (u64, u64)>::keyed(1, |seq, r: &Rec, e| match r {
        Rec::Post(f) => e.put((f.c, seq)),
        Rec::Del { target, of } => e.remove((of.c, *target), *target),
    });
    let (a, b, c) = match (persist("a"), persist("b"), persist("c")) {
        (Some(pa), Some(pb), Some(pc)) => (a.persist(pa), b.persist(pb), c.persist(pc)),
        _ => (a, b, c),
    };
    db.use_view("a", a)
        .and_then(|db| db.use_view("b", b))
        .and_then(|db| db.use_view("c", c))
        .expect("views")
}

/// A term, and the same condition as a model.
#[derive(Debug, Clone)]
enum Cond {
    A(u64),
    B(u64),
    CPrefix(u64),
    CRange(u64, u64),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    fn holds(&self, f: Option<&Fields>) -> bool {
        match self {
            Cond::A(k) => f.is_some_and(|f| f.a == *k),
            Cond::B(k) => f.is_some_and(|f| f.tags.contains(k)),
            Cond::CPrefix(k) => f.is_some_and(|f| f.c == *k),
            Cond::CRange(lo, hi) => f.is_some_and(|f| (*lo..*hi).contains(&f.c)),
            Cond::And(c) => c.iter().all(|c| c.holds(f)),
            Cond::Or(c) => c.iter().any(|c| c.holds(f)),
            Cond::Not(c) => !c.holds(f),
        }
    }

    fn term(&self, r: &Readers) -> Term<Rec> {
        match self {
            Cond::A(k) => eq(&r.a, *k),
            Cond::B(k) => eq(&r.b, *k),
            Cond::CPrefix(k) => prefix(&r.c, (*k,)),
            Cond::CRange(lo, hi) => range(&r.c, (*lo, 0u64)..(*hi, 0u64)),
            Cond::And(c) => and(c.iter().map(|c| c.term(r))),
            Cond::Or(c) => or(c.iter().map(|c| c.term(r))),
            Cond::Not(c) => not(c.term(r)),
        }
    }
}

fn cond() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (0u64..4).prop_map(Cond::A),
        (0u64..4).prop_map(Cond::B),
        (0u64..6).prop_map(Cond::CPrefix),
        (0u64..6, 0u64..7).prop_map(|(lo, w)| Cond::CRange(lo, lo + w)),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(Cond::And),
            prop::collection::vec(inner.clone(), 1..4).prop_map(Cond::Or),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
}

#[derive(Debug, Clone)]
struct Ask {
    cond: Cond,
    newest: bool,
    limit: Option<usize>,
    after: Option<Seq>,
    page: usize,
    even_c: bool,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        cond(),
        any::<bool>(),
        prop::option::of(1usize..6),
        prop::option::of(0u64..40),
        1usize..5,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(cond, newest, limit, after, page, even_c)| Ask {
            cond,
            newest,
            limit,
            after,
            page,
            even_c,
        })
}

/// Records from (delete?, pick, a, tags, c): a delete removes an earlier post still
/// standing (picked among them), or is a post when there is none.
fn records(raw: &[(bool, usize, u64, Vec<u64>, u64)], log: &mut Vec<Rec>) {
    for (del, pick, a, tags, c) in raw {
        let standing: Vec<Seq> = (0..log.len() as Seq)
            .filter(|s| matches!(log[*s as usize], Rec::Post(_)) && live(log, *s).is_some())
            .collect();
        if *del && !standing.is_empty() {
            let target = standing[pick % standing.len()];
            let Rec::Post(of) = log[target as usize].clone() else {
                unreachable!()
            };
            log.push(Rec::Del { target, of });
        } else {
            let mut tags = tags.clone();
            tags.sort_unstable();
            tags.dedup();
            log.push(Rec::Post(Fields { a: *a, tags, c: *c }));
        }
    }
}

/// The fields of the post at `seq`, unless it is a delete or a later record deleted it.
fn live(log: &[Rec], seq: Seq) -> Option<&Fields> {
    match &log[seq as usize] {
        Rec::Post(f) => {
            let deleted = log[seq as usize + 1..]
                .iter()
                .any(|r| matches!(r, Rec::Del { target, .. } if *target == seq));
            (!deleted).then_some(f)
        }
        Rec::Del { .. } => None,
    }
}

/// The naive answer: every record of the log, filtered, ordered, cut.
fn model(log: &[Rec], ask: &Ask, after: Option<Seq>, limit: Option<usize>) -> Vec<Seq> {
    let mut seqs: Vec<Seq> = (0..log.len() as Seq)
        .filter(|s| ask.cond.holds(live(log, *s)))
        .filter(|s| !ask.even_c || keep(&log[*s as usize]))
        .collect();
    if ask.newest {
        seqs.reverse();
    }
    seqs.retain(|s| match after {
        None => true,
        Some(a) if ask.newest => *s < a,
        Some(a) => *s > a,
    });
    seqs.truncate(limit.unwrap_or(usize::MAX));
    seqs
}

fn keep(r: &Rec) -> bool {
    match r {
        Rec::Post(f) => f.c % 2 == 0,
        Rec::Del { .. } => false,
    }
}

struct Readers {
    a: IndexReader<Rec, u64>,
    b: IndexReader<Rec, u64>,
    c: IndexReader<Rec, (u64, u64)>,
}

fn readers(db: &Flume<Rec>) -> Readers {
    Readers {
        a: db.view("a").unwrap(),
        b: db.view("b").unwrap(),
        c: db.view("c").unwrap(),
    }
}

fn query(ask: &Ask, r: &Readers) -> Query<Rec> {
    let mut q = ask.cond.term(r).query();
    q = if ask.newest {
        q.newest_first()
    } else {
        q.oldest_first()
    };
    if ask.even_c {
        q = q.filter(keep);
    }
    q
}

/// Every ask as a stream (with its limit and cursor) and page by page from its cursor
/// to the end, against the model.
async fn check(db: &Flume<Rec>, log: &[Rec], asks: &[Ask]) -> Result<(), TestCaseError> {
    let r = readers(db);
    for ask in asks {
        let mut q = query(ask, &r).after_opt(ask.after);
        if let Some(l) = ask.limit {
            q = q.limit(l);
        }
        let got: Vec<Seq> = q
            .stream(Wait::Log)
            .map_ok(|(s, v)| {
                assert_eq!(v, log[s as usize]);
                s
            })
            .try_collect()
            .await
            .unwrap();
        prop_assert_eq!(
            &got,
            &model(log, ask, ask.after, ask.limit),
            "stream of {:?}",
            ask
        );
        let count = q.count(Wait::Log).await.unwrap();
        prop_assert_eq!(count, got.len() as u64, "count of {:?}", ask);

        let mut pages = Vec::new();
        let mut cursor = ask.after;
        loop {
            let page = query(ask, &r)
                .limit(ask.page)
                .after_opt(cursor)
                .page(Wait::Log)
                .await
                .unwrap();
            prop_assert_eq!(page.horizon, (log.len() as Seq).checked_sub(1));
            prop_assert!(page.items.len() <= ask.page);
            pages.extend(page.items.iter().map(|(s, _)| *s));
            match page.next {
                Some(next) => {
                    prop_assert_eq!(page.items.len(), ask.page, "a page with a next is full");
                    prop_assert_eq!(Some(next), page.items.last().map(|(s, _)| *s));
                    cursor = Some(next);
                }
                None => break,
            }
        }
        prop_assert_eq!(
            &pages,
            &model(log, ask, ask.after, None),
            "pages of {:?}",
            ask
        );
    }
    Ok(())
}

type RawRecords = Vec<(bool, usize, u64, Vec<u64>, u64)>;

fn raw_records(n: std::ops::Range<usize>) -> impl Strategy<Value = RawRecords> {
    prop::collection::vec(
        (
            prop::bool::weighted(0.2),
            any::<usize>(),
            0u64..4,
            prop::collection::vec(0u64..4, 0..3),
            0u64..6,
        ),
        n,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_a_naive_filter(raw in raw_records(0..40), asks in prop::collection::vec(ask(), 1..5)) {
        runtime().block_on(async {
            let mut log = Vec::new();
            records(&raw, &mut log);
            let db = views(Flume::<Rec>::new(flumelog_memory::MemoryLog::new()), None);
            for rec in &log {
                db.append(rec).await.unwrap();
            }
            check(&db, &log, &asks).await?;
            db.close().await.unwrap();
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A live query started between two batches yields exactly the records of the
    /// second batch the naive filter matches, in log order.
    #[test]
    fn live_queries_match_a_naive_filter_over_new_records(
        first in raw_records(0..20),
        second in raw_records(1..20),
        asks in prop::collection::vec(ask(), 1..4),
    ) {
        runtime().block_on(async {
            let mut log = Vec::new();
            records(&first, &mut log);
            let db = views(Flume::<Rec>::new(flumelog_memory::MemoryLog::new()), None);
            for rec in &log {
                db.append(rec).await.unwrap();
            }
            let r = readers(&db);
            let feeds: Vec<_> = asks
                .iter()
                .map(|ask| {
                    let mut q = query(ask, &r).oldest_first();
                    if let Some(l) = ask.limit {
                        q = q.limit(l);
                    }
                    q.live(Wait::Log)
                })
                .collect();
            let before = log.len() as Seq;
            records(&second, &mut log);
            for rec in &log[before as usize..] {
                db.append(rec).await.unwrap();
            }
            for (ask, feed) in asks.iter().zip(feeds) {
                let ask = Ask { newest: false, ..ask.clone() };
                let want = model(&log, &ask, before.checked_sub(1), ask.limit);
                // A hang guard, not a timing: a missed record would stall `take`.
                let got: Vec<Seq> = tokio::time::timeout(
                    std::time::Duration::from_secs(60),
                    feed.take(want.len()).map_ok(|(s, _)| s).try_collect(),
                )
                .await
                .expect("the live query yields every new match")
                .unwrap();
                prop_assert_eq!(got, want, "live {:?}", ask);
            }
            db.close().await.unwrap();
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_across_reopens_of_persisted_indexes(
        first in raw_records(0..30),
        second in raw_records(0..30),
        asks in prop::collection::vec(ask(), 1..4),
    ) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let open = || async {
                let log = flumelog_file::FileLog::open(dir.path().join("log"), Default::default())
                    .await
                    .unwrap();
                views(Flume::<Rec>::new(log), Some(dir.path()))
            };
            let mut log = Vec::new();
            records(&first, &mut log);
            let db = open().await;
            for rec in &log {
                db.append(rec).await.unwrap();
            }
            check(&db, &log, &asks).await?;
            db.close().await.unwrap();

            // Reopened: the indexes resume from their checkpoints.
            let db = open().await;
            check(&db, &log, &asks).await?;
            let before = log.len();
            records(&second, &mut log);
            for rec in &log[before..] {
                db.append(rec).await.unwrap();
            }
            check(&db, &log, &asks).await?;
            db.close().await.unwrap();

            let db = open().await;
            check(&db, &log, &asks).await?;
            db.close().await.unwrap();
            Ok::<(), TestCaseError>(())
        })?;
    }
}
