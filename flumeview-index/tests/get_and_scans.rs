//! Point lookups, multi-valued keys, deletes, and range and prefix scans through a
//! running database.

mod common;

use common::{by_author, by_key, msg, Msg, TestResult};
use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_index::{key, Hit, Index, IndexOptions, IndexReader};

#[tokio::test]
async fn get_returns_the_record_a_key_points_at() -> TestResult {
    let db = Flume::<Msg>::new(MemoryLog::new()).use_view("by_key", by_key())?;
    for i in 0..30 {
        db.append(&msg(i)).await?;
    }
    let idx: IndexReader<Msg> = db.view("by_key")?;
    assert_eq!(idx.get("%0007.sha256", Wait::Log).await?, Some((7, msg(7))));
    assert_eq!(idx.get_seq("%0029.sha256", Wait::Log).await?, Some(29));
    assert_eq!(idx.get("%9999.sha256", Wait::Log).await?, None);
    assert_eq!(idx.since(), Some(29));
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn prefix_and_range_scans_in_key_order() -> TestResult {
    let db = Flume::<Msg>::new(MemoryLog::new()).use_view("by_author", by_author())?;
    for i in 0..30 {
        db.append(&msg(i)).await?;
    }
    let idx: IndexReader<Msg> = db.view("by_author")?;
    let bob = key::tuple(("@bob.ed25519",));
    let hits = idx.prefix(&bob).hits(Wait::Log).await?;
    assert_eq!(
        hits.iter().map(|h| h.seq).collect::<Vec<_>>(),
        (0..10).map(|i| i * 3 + 1).collect::<Vec<_>>()
    );
    let newest = idx
        .prefix(&bob)
        .reverse()
        .limit(2)
        .values(Wait::Log)
        .await?;
    assert_eq!(
        newest.iter().map(|(_, m)| m.seq).collect::<Vec<_>>(),
        vec![9, 8]
    );
    let lo = key::tuple(("@carol.ed25519", 3u64));
    let hi = key::tuple(("@carol.ed25519", 6u64));
    let page = idx.range(lo.clone()..hi.clone()).hits(Wait::Log).await?;
    assert_eq!(
        page.iter().map(|h| h.seq).collect::<Vec<_>>(),
        vec![11, 14, 17]
    );
    let page = idx.range(lo..=hi).reverse().hits(Wait::Log).await?;
    assert_eq!(
        page.iter().map(|h| h.seq).collect::<Vec<_>>(),
        vec![20, 17, 14, 11]
    );
    let mut parts = key::Parts::new(&page[0].key);
    assert_eq!(parts.string().as_deref(), Some("@carol.ed25519"));
    assert_eq!(parts.u64(), Some(6));
    assert_eq!(idx.all().limit(3).hits(Wait::Log).await?.len(), 3);
    assert_eq!(idx.all().hits(Wait::Log).await?.len(), 30);
    db.close().await?;
    Ok(())
}

/// A tag index: many records per key, deletes, and a record that replaces a key.
#[tokio::test]
async fn multi_valued_keys_and_deletes() -> TestResult {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    enum Op {
        Tag(String),
        Untag(String),
        Retag(String),
    }
    let tags = Index::new(1, |op: &Op, e| match op {
        Op::Tag(t) => e.put(t),
        Op::Untag(t) => e.delete(t),
        Op::Retag(t) => {
            e.put(t);
            e.delete(t);
        }
    })
    // Tiny runs: the scans cross the memtable and several runs.
    .options(IndexOptions::default().memtable_bytes(200).merge_fan_in(2));
    let db = Flume::<Op>::new(MemoryLog::new()).use_view("tags", tags)?;
    let tag = |t: &str| Op::Tag(t.into());
    for op in [
        tag("a"),
        tag("b"),
        tag("a"),
        Op::Untag("a".into()),
        tag("a"),
        tag("a"),
        Op::Retag("b".into()),
        tag("c"),
    ] {
        db.append(&op).await?;
    }
    let idx: IndexReader<Op> = db.view("tags")?;
    assert_eq!(idx.seqs("a", Wait::Log).await?, vec![4, 5]);
    assert_eq!(idx.seqs("b", Wait::Log).await?, vec![6]);
    assert_eq!(idx.get_seq("a", Wait::Log).await?, Some(5));
    let all: Vec<(Vec<u8>, u64)> = idx
        .all()
        .hits(Wait::Log)
        .await?
        .into_iter()
        .map(|Hit { key, seq }| (key, seq))
        .collect();
    assert_eq!(
        all,
        vec![
            (b"a".to_vec(), 4),
            (b"a".to_vec(), 5),
            (b"b".to_vec(), 6),
            (b"c".to_vec(), 7)
        ]
    );
    let rev = idx.all().reverse().limit(3).hits(Wait::Log).await?;
    assert_eq!(rev.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![7, 6, 5]);
    db.append(&Op::Untag("a".into())).await?;
    assert_eq!(idx.get_seq("a", Wait::Log).await?, None);
    assert!(idx.prefix("a").hits(Wait::Log).await?.is_empty());
    db.close().await?;
    Ok(())
}

/// A raw index never decodes: here the records are not even valid JSON for `Msg`.
#[tokio::test]
async fn raw_index_reads_bytes() -> TestResult {
    let by_len: Index<Msg> = Index::raw(1, |r, e| {
        e.put(key::u64(r.bytes().len() as u64));
        Ok(())
    });
    let db = Flume::<Msg>::new(MemoryLog::new()).use_view("by_len", by_len)?;
    db.log().append(bytes::Bytes::from_static(b"xx")).await?;
    db.log().append(bytes::Bytes::from_static(b"xxxx")).await?;
    let idx: IndexReader<Msg> = db.view("by_len")?;
    assert_eq!(idx.get_seq(key::u64(4), Wait::Log).await?, Some(1));
    assert_eq!(
        idx.range(key::u64(0)..key::u64(3))
            .hits(Wait::Log)
            .await?
            .len(),
        1
    );
    db.close().await?;
    Ok(())
}

#[tokio::test]
async fn reads_after_close_fail() -> TestResult {
    let db = Flume::<Msg>::new(MemoryLog::new()).use_view("by_key", by_key())?;
    let idx: IndexReader<Msg> = db.view("by_key")?;
    db.close().await?;
    assert!(matches!(
        idx.get_seq("x", Wait::NoWait).await,
        Err(flume_core::Error::Closed)
    ));
    Ok(())
}
