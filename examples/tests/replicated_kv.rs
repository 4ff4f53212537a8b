//! No lost update across processes: two processes, each with its own `Flume` and `Kv`
//! view on one JetStream stream replicated on a three-node cluster, increment one counter
//! with `put_if` in a retry loop. Afterwards the counter equals the number of successful
//! compare-and-sets of both, the winners form one chain of versions (so the two processes
//! never both won on the same version), the stream holds exactly the winners, and every
//! conflict carried a version that won.
//!
//! The processes are this test binary run twice more (`std::env::current_exe`) with
//! `FLUME_KV_CAS_CHILD` set, which makes `cas_child` do its part and print what it saw.
//! `FLUME_KV_CAS_INCREMENTS` sets the increments per process (default 40).
//!
//! Needs `nats-server` (see flumelog-nats's tests: without one the test is reported as
//! ignored, under CI it fails).

#[path = "../../flumelog-nats/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flume_core::{Flume, Seq, StreamOptions, Wait};
use flumelog_nats::{NatsLog, NatsOptions};
use flumeview_kv::{Cas, Expect, Kv, KvOp, KvStore};
use futures::{StreamExt, TryStreamExt};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const CHILD_ENV: &str = "FLUME_KV_CAS_CHILD";
const STREAM: &str = "kv-lost-update";
const COUNTER: &str = "counter";
/// Core NATS subject on which the parent says go, so that both children race from the
/// start rather than one finishing before the other connected.
const GO: &str = "kv-lost-update.go";

fn increments() -> usize {
    std::env::var("FLUME_KV_CAS_INCREMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// Connects to the stream (creating it with three replicas), retrying while the cluster
/// elects its leaders.
async fn open(urls: &str) -> flume_core::Result<NatsLog> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let options = NatsOptions::new(STREAM)
            .replicas(3)
            .request_timeout(Duration::from_secs(2));
        match NatsLog::connect(urls, options).await {
            Ok(log) => return Ok(log),
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the cluster: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One process's part: waits for go, then increments the counter `increments()` times;
/// prints `won <expected> <seq>` and `conflict <expected> <current>` lines (`-` for
/// none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_child() -> TestResult {
    let Ok(urls) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let store = KvStore::<String, u64>::new(Flume::new(open(&urls).await?), "kv", Kv::ops(1))?;
    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>()).await?;
    let mut go = client.subscribe(GO).await?;
    client.flush().await?;
    println!("ready");
    go.next().await;
    let key = COUNTER.to_string();
    let show = |v: Option<Seq>| v.map_or("-".to_string(), |s| s.to_string());
    let mut won = 0;
    while won < increments() {
        let read = store.get(&key, Wait::Log).await?;
        let (value, version) = match read {
            Some(found) => (found.value, Some(found.version)),
            None => (0, None),
        };
        match store
            .put_if(key.clone(), value + 1, Expect::from_version(version))
            .await?
        {
            Cas::Written(seq) => {
                won += 1;
                println!("won {} {seq}", show(version));
            }
            Cas::Conflict { current } => println!("conflict {} {}", show(version), show(current)),
        }
    }
    store.db().close().await?;
    Ok(())
}

/// What a child printed.
#[derive(Debug, Default)]
struct Outcome {
    won: Vec<(Option<Seq>, Seq)>,
    conflicts: Vec<(Option<Seq>, Option<Seq>)>,
}

fn parse(stdout: &str) -> Outcome {
    let seq = |s: &str| (s != "-").then(|| s.parse::<Seq>().expect("a seq"));
    let mut outcome = Outcome::default();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["won", expected, written] => outcome
                .won
                .push((seq(expected), seq(written).expect("a written seq"))),
            ["conflict", expected, current] => {
                outcome.conflicts.push((seq(expected), seq(current)))
            }
            _ => {}
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_two_processes_never_both_win() -> TestResult {
    let binary = support::server_binary("nats_server_two_processes_never_both_win");
    let cluster = support::Cluster::start(binary);
    let urls = cluster.urls();
    // Create the stream before the children race to.
    let log = open(&urls).await?;

    let exe = std::env::current_exe()?;
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["cas_child", "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, &urls)
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    // Say go until both children are running their loops (a child subscribes before it
    // prints "ready"; a go sent before that is lost, so it is sent again).
    let client = async_nats::connect(urls.split(',').collect::<Vec<_>>()).await?;
    let waiting = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output())
            .collect::<Result<Vec<_>, _>>()
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    while !waiting.is_finished() {
        client.publish(GO, "go".into()).await?;
        client.flush().await?;
        assert!(Instant::now() < deadline, "the children did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outputs = waiting.await??;

    let mut won = Vec::new();
    let mut conflicts = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        assert!(
            output.status.success(),
            "child {i} failed: {}",
            output.status
        );
        let outcome = parse(&String::from_utf8_lossy(&output.stdout));
        eprintln!(
            "process {i}: {} successful compare-and-sets, {} conflicts",
            outcome.won.len(),
            outcome.conflicts.len()
        );
        assert_eq!(outcome.won.len(), increments(), "child {i}'s output");
        won.extend(outcome.won);
        conflicts.extend(outcome.conflicts);
    }
    won.sort_by_key(|&(_, seq)| seq);

    // One chain: each winner expected exactly what the previous winner wrote, so no two
    // winners (of either process) expected the same version.
    let mut previous = None;
    for &(expected, seq) in &won {
        assert_eq!(
            expected, previous,
            "winner at {seq} expected a stale version"
        );
        previous = Some(seq);
    }
    // The stream holds the winners and nothing else, counting 1, 2, 3, …
    let db = Flume::<KvOp<String, u64>>::new(log);
    let records: Vec<(Seq, KvOp<String, u64>)> =
        db.stream(StreamOptions::new()).try_collect().await?;
    assert_eq!(records.len(), won.len(), "a conflict appended a record");
    for (i, ((seq, op), &(_, won_seq))) in records.iter().zip(&won).enumerate() {
        assert_eq!(*seq, won_seq);
        assert_eq!(
            *op,
            KvOp::Put {
                key: COUNTER.to_string(),
                value: i as u64 + 1
            }
        );
    }
    // Every conflict carried a version that won, newer than the one expected.
    let winners: BTreeSet<Seq> = won.iter().map(|&(_, seq)| seq).collect();
    for &(expected, current) in &conflicts {
        let current = current.expect("the counter is never deleted");
        assert!(
            winners.contains(&current),
            "conflict reported {current}, which did not win"
        );
        assert!(Some(current) > expected);
    }
    // A third instance's view agrees.
    let store = KvStore::new(db, "kv", Kv::ops(1))?;
    let counter = store
        .get(&COUNTER.to_string(), Wait::Log)
        .await?
        .expect("the counter");
    assert_eq!(counter.value, won.len() as u64);
    assert_eq!(Some(counter.version), winners.last().copied());
    store.db().close().await?;
    drop(cluster);
    Ok(())
}
