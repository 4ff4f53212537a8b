//! The output of a small view of versioned documents, as a snapshot: the live entries
//! with their versions, a prefix scan, and every document's history with its deletes.

use flume_core::{Flume, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{key, Kv, KvReader};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Doc {
    Save {
        owner: String,
        id: u32,
        title: String,
    },
    Remove {
        owner: String,
        id: u32,
    },
}

#[tokio::test]
async fn documents_view_output() -> Result<(), Box<dyn std::error::Error>> {
    let db = Flume::<Doc>::new(MemoryLog::new());
    let docs: KvReader<Doc, (String, u32), String> = db.add_view(
        "docs",
        Kv::new(1, |doc: &Doc, e| match doc {
            Doc::Save { owner, id, title } => e.put((owner.clone(), *id), title.clone()),
            Doc::Remove { owner, id } => e.delete((owner.clone(), *id)),
        }),
    )?;
    let save = |owner: &str, id, title: &str| Doc::Save {
        owner: owner.into(),
        id,
        title: title.into(),
    };
    db.append_batch(&[
        save("alice", 1, "draft"),
        save("bob", 1, "notes"),
        save("alice", 2, "todo"),
        save("alice", 1, "final"),
        Doc::Remove {
            owner: "bob".into(),
            id: 1,
        },
        save("alicia", 1, "not alice's"),
    ])
    .await?;

    let live = docs.all().entries(Wait::Log).await?;
    let alice = docs
        .prefix(key::tuple(("alice",)))
        .reverse()
        .keys(Wait::Log)
        .await?;
    let mut histories = Vec::new();
    for (owner, id) in [("alice", 1), ("alice", 2), ("bob", 1), ("carol", 1)] {
        let key = (owner.to_string(), id);
        histories.push((key.clone(), docs.history(&key, Wait::Log).await?));
    }
    insta::assert_json_snapshot!(serde_json::json!({
        "live": live,
        "alice_newest_first": alice,
        "histories": histories,
    }));
    db.close().await?;
    Ok(())
}
