//! A replicated key-value store: two application instances on one JetStream stream, both
//! serving reads from their own `Kv` view, racing to compare-and-set the same key.
//!
//! It needs NATS with JetStream. One server is enough to try it (`nats-server -js`, then
//! `cargo run -p examples --example replicated_kv`). For the real thing, a stream
//! replicated on three nodes, start a three-node cluster and pass every node's URL:
//!
//! ```sh
//! for i in 1 2 3; do
//!   nats-server -js -n n$i -a 127.0.0.1 -p 422$i -sd /tmp/nats-n$i --cluster_name kv \
//!     --cluster nats://127.0.0.1:623$i \
//!     --routes nats://127.0.0.1:6231,nats://127.0.0.1:6232,nats://127.0.0.1:6233 &
//! done
//! cargo run -p examples --example replicated_kv -- \
//!   nats://127.0.0.1:4221,nats://127.0.0.1:4222,nats://127.0.0.1:4223
//! ```
//!
//! With several URLs the stream gets three replicas. The two instances are two `Flume`
//! handles in one program, each on its own NATS connection, exactly as two processes on
//! two machines would be (the test `examples/tests/replicated_kv.rs` runs them as two
//! processes).

use std::time::{Duration, Instant};

use flume_core::{BoxError, Flume, Seq, Wait};
use flumelog_nats::{NatsLog, NatsOptions};
use flumeview_kv::{Cas, Expect, Kv, KvStore};

/// One application instance: its own connection, its own view of the shared stream.
async fn instance(urls: &str, stream: &str) -> Result<KvStore<String, u64>, BoxError> {
    let replicas = if urls.contains(',') { 3 } else { 1 };
    // A cluster that was just started may still be electing its leader: retry a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        match NatsLog::connect(urls, NatsOptions::new(stream).replicas(replicas)).await {
            Ok(log) => break log,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for NATS: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(KvStore::new(Flume::new(log), "kv", Kv::ops(1))?)
}

/// Adds one to `key` with a compare-and-set, reading again after each conflict; returns
/// the version written and how many conflicts it took.
async fn increment(store: &KvStore<String, u64>, key: &str) -> Result<(Seq, u32), BoxError> {
    let key = key.to_string();
    let mut conflicts = 0;
    loop {
        let read = store.get(&key, Wait::Log).await?;
        let (value, expected) = match read {
            Some(found) => (found.value, Expect::Version(found.version)),
            None => (0, Expect::Absent),
        };
        match store.put_if(key.clone(), value + 1, expected).await? {
            Cas::Written(version) => return Ok((version, conflicts)),
            Cas::Conflict { .. } => conflicts += 1,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let urls = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    // A fresh stream per run, so that the numbers below start from zero.
    let stream = format!("replicated-kv-example-{}", std::process::id());
    let a = match instance(&urls, &stream).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\n(start one with `nats-server -js`, or pass its URL as the first argument)"
            );
            std::process::exit(1);
        }
    };
    let b = instance(&urls, &stream).await?;
    println!("two instances share the JetStream stream {stream:?} at {urls}");

    // A write on one instance is read on the other (waiting until its view has it).
    let version = a.put("motd".into(), 1).await?;
    let seen = b
        .get(&"motd".to_string(), Wait::AtLeast(version))
        .await?
        .ok_or("b sees a's put")?;
    println!(
        "a puts motd = 1 at version {version}; b reads motd = {} at version {}",
        seen.value, seen.version
    );

    // Both go on from the version b read, at the same time: exactly one wins, the other
    // is told which version won.
    let expected = Expect::Version(seen.version);
    let (from_a, from_b) = tokio::join!(
        a.put_if("motd".into(), 2, expected),
        b.put_if("motd".into(), 3, expected)
    );
    let (from_a, from_b) = (from_a?, from_b?);
    println!("race on {expected:?}: a -> {from_a:?}, b -> {from_b:?}");
    assert!(
        from_a.is_written() != from_b.is_written(),
        "exactly one wins"
    );

    // Both instances count visits on one counter, 20 each, at the same time.
    let (done_a, done_b) = tokio::join!(
        async {
            let mut conflicts = 0;
            for _ in 0..20 {
                conflicts += increment(&a, "visits").await?.1;
            }
            Ok::<_, BoxError>(conflicts)
        },
        async {
            let mut conflicts = 0;
            for _ in 0..20 {
                conflicts += increment(&b, "visits").await?.1;
            }
            Ok::<_, BoxError>(conflicts)
        }
    );
    let (conflicts_a, conflicts_b) = (done_a?, done_b?);
    let tail = a
        .db()
        .since()
        .max(b.db().since())
        .ok_or("the log has records")?;
    for (name, store) in [("a", &a), ("b", &b)] {
        let visits = store
            .get(&"visits".to_string(), Wait::AtLeast(tail))
            .await?
            .ok_or("visits exists")?;
        println!(
            "instance {name} reads visits = {} (version {})",
            visits.value, visits.version
        );
        assert_eq!(visits.value, 40, "no increment is lost");
    }
    println!("40 increments, {conflicts_a} conflicts seen by a, {conflicts_b} by b");
    a.db().close().await?;
    b.db().close().await?;
    Ok(())
}
