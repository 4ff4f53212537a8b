//! A tiny key-value store on the file log: Get, Put, Delete and compare-and-set.
//!
//! This is the shape of a replicated KV service's state machine: every write is a log
//! record (a `KvOp`), the state is the `Kv` view of the log, and a read returns a value
//! with its version (the seq of the record that wrote it), which a later compare-and-set
//! can expect.
//!
//! ```sh
//! cargo run -p examples --example kv            # creates the store, or reopens it
//! cargo run -p examples --example kv -- --fresh # starts over
//! ```
//!
//! Run it twice: the second run finds the keys of the first (the log is durable, and the
//! view persists its state, so it reopens without replaying the log).

use flume_core::{BoxError, Flume, Seq, Wait};
use flumelog_file::{FileLog, FileLogOptions};
use flumeview_kv::{Cas, Expect, Kv, KvStore};

/// The commands of the service's protocol, as a client would send them.
#[derive(Debug)]
enum Command {
    Get(&'static str),
    Put(&'static str, &'static str),
    Delete(&'static str),
    /// Put only if the key's version is the expected one (`None`: only if absent).
    CompareAndSet(&'static str, Option<Seq>, &'static str),
}

/// Applies one command and says what happened, as the service would answer.
async fn serve(store: &KvStore<String, String>, command: &Command) -> Result<String, BoxError> {
    Ok(match *command {
        Command::Get(key) => match store.get(&key.to_string(), Wait::Log).await? {
            Some(found) => format!("{:?} (version {})", found.value, found.version),
            None => "not found".to_string(),
        },
        Command::Put(key, value) => {
            let version = store.put(key.into(), value.into()).await?;
            format!("ok, version {version}")
        }
        Command::Delete(key) => {
            let seq = store.delete(key.into()).await?;
            format!("ok, deleted at {seq}")
        }
        Command::CompareAndSet(key, expected, value) => {
            let expected = Expect::from_version(expected);
            match store.put_if(key.into(), value.into(), expected).await? {
                Cas::Written(version) => format!("ok, version {version}"),
                Cas::Conflict {
                    current: Some(version),
                } => format!("conflict: the current version is {version}"),
                Cas::Conflict { current: None } => "conflict: the key is absent".to_string(),
            }
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join("flume-rs-kv-example");
    if std::env::args().any(|a| a == "--fresh") && dir.exists() {
        std::fs::remove_dir_all(&dir)?;
        println!("removed {}", dir.display());
    }
    let log = FileLog::open(dir.join("log"), FileLogOptions::default()).await?;
    let db = Flume::new(log);
    // `Kv::ops` is the view of a log whose records are `KvOp::Put` / `KvOp::Delete`.
    let store: KvStore<String, String> =
        KvStore::new(db, "kv", Kv::ops(1).persist(dir.join("kv")))?;
    store.db().ready().await?;
    let keys = store.reader().all().count(Wait::Log).await?;
    println!(
        "opened {}: {} records in the log, {keys} live keys",
        dir.display(),
        store.db().since().map_or(0, |s| s + 1)
    );
    if let Some(colour) = store.get(&"colour".to_string(), Wait::Log).await? {
        println!(
            "colour exists since an earlier run (version {}), so creating it conflicts",
            colour.version
        );
    }

    let script = [
        Command::Get("colour"),
        Command::CompareAndSet("colour", None, "red"), // create: only if absent
        Command::Put("size", "large"),
        Command::Get("size"),
        Command::Delete("size"),
        Command::Get("size"),
    ];
    for command in &script {
        println!("{command:?} -> {}", serve(&store, command).await?);
    }

    // Two clients read "colour" at the same version and both try to update it: exactly
    // one wins, the other is told the version that won and can read again.
    let read = store
        .get(&"colour".to_string(), Wait::Log)
        .await?
        .ok_or("colour was just created")?;
    println!(
        "both clients read colour = {:?} at version {}",
        read.value, read.version
    );
    for (client, value) in [("client 1", "green"), ("client 2", "blue")] {
        let command = Command::CompareAndSet("colour", Some(read.version), value);
        println!(
            "{client}: {command:?} -> {}",
            serve(&store, &command).await?
        );
    }

    // Every live key, in key order, with its value.
    for (key, value) in store.reader().all().entries(Wait::Log).await? {
        println!("  {key} = {:?} (version {})", value.value, value.version);
    }
    store.db().close().await?;
    Ok(())
}
