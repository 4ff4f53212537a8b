//! Versioned JSON documents: every document has a version (the seq of the record that
//! last wrote it), an update names the version it was based on, a stale update is a
//! conflict reported with the current version (never a lost update), and old versions stay
//! readable.
//!
//! `cargo run -p examples --example documents`
//!
//! The log holds the application's own records (`DocEvent`), not key-value operations:
//! the `Kv` view's map turns each event into a put or a delete of its document.

use flume_core::{BoxError, Flume, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{Cas, Expect, Kv, KvReader, Op};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the application appends: a document saved (created or updated) or removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum DocEvent {
    Saved { id: String, body: Value, by: String },
    Removed { id: String, by: String },
}

type Docs = KvReader<DocEvent, String, Value>;

/// Saves `body` as document `id` if the document is still at `expected`.
async fn save(
    db: &Flume<DocEvent>,
    docs: &Docs,
    id: &str,
    body: Value,
    by: &str,
    expected: Expect,
) -> Result<Cas, BoxError> {
    let event = DocEvent::Saved {
        id: id.to_string(),
        body,
        by: by.to_string(),
    };
    Ok(docs
        .append_if_version(db, &id.to_string(), expected, &event)
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let db = Flume::<DocEvent>::new(MemoryLog::new());
    let docs: Docs = db.add_view(
        "docs",
        Kv::new(1, |event: &DocEvent, kv| match event {
            DocEvent::Saved { id, body, .. } => kv.put_with(id.clone(), || body.clone()),
            DocEvent::Removed { id, .. } => kv.delete(id.clone()),
        }),
    )?;
    let id = "guide".to_string();

    // Create: only if no document has this id yet.
    let draft = json!({ "title": "Getting started", "status": "draft" });
    let created = save(&db, &docs, &id, draft, "ana", Expect::Absent).await?;
    println!("ana creates {id:?}: {created:?}");

    // Two editors open the document at the same version…
    let opened = docs.get(&id, Wait::Log).await?.ok_or("just created")?;
    println!("ana and bo both open {id:?} at version {}", opened.version);

    // …ana saves first, based on the version she read: it is written.
    let mut by_ana = opened.value.clone();
    by_ana["status"] = json!("review");
    let saved = save(
        &db,
        &docs,
        &id,
        by_ana,
        "ana",
        Expect::Version(opened.version),
    )
    .await?;
    println!(
        "ana saves status=review on version {}: {saved:?}",
        opened.version
    );

    // bo saves on the same (now stale) version: a conflict, naming the current version.
    let mut by_bo = opened.value.clone();
    by_bo["title"] = json!("Getting started with flume");
    let stale = save(
        &db,
        &docs,
        &id,
        by_bo,
        "bo",
        Expect::Version(opened.version),
    )
    .await?;
    println!(
        "bo saves a new title on version {}: {stale:?}",
        opened.version
    );
    if let Cas::Conflict {
        current: Some(current),
    } = stale
    {
        // bo reads the current document, merges his change and saves on that version.
        let now = docs
            .get(&id, Wait::Log)
            .await?
            .ok_or("the document exists")?;
        assert_eq!(now.version, current);
        let mut merged = now.value.clone();
        merged["title"] = json!("Getting started with flume");
        let retried = save(&db, &docs, &id, merged, "bo", Expect::Version(current)).await?;
        println!("bo merges into version {current} and saves: {retried:?}");
    }

    // Someone removes it; an old version is still readable.
    let removed = db
        .append(&DocEvent::Removed {
            id: id.clone(),
            by: "cy".into(),
        })
        .await?;
    println!("cy removes {id:?} at seq {removed}");
    println!("now: {:?}", docs.get(&id, Wait::Log).await?);

    // Every version, newest first, deletes included.
    println!("history of {id:?}:");
    for (seq, op) in docs.history(&id, Wait::Log).await? {
        let who = match db.get(seq).await? {
            DocEvent::Saved { by, .. } | DocEvent::Removed { by, .. } => by,
        };
        match op {
            Op::Put(body) => println!("  {seq}: saved by {who}: {body}"),
            Op::Delete => println!("  {seq}: removed by {who}"),
        }
    }

    // As-of read: the document as it was when ana's review status was written.
    let as_of: Seq = saved.written().ok_or("ana's save was written")?;
    let then = docs
        .get_at(&id, as_of, Wait::Log)
        .await?
        .ok_or("it existed then")?;
    println!(
        "as of seq {as_of}: {} (version {})",
        then.value, then.version
    );

    db.close().await?;
    Ok(())
}
