//! Two processes appending flat out to one stream: every append answers (with its seq or
//! a typed error) within `append_timeout + request_timeout`, and neither process starves
//! the other.
//!
//! The second process is this test binary run again (`std::env::current_exe`) with
//! `FLUME_NATS_CONTENTION_CHILD` set, which makes `contention_child` do its part and print
//! its results. `FLUME_NATS_CONTENTION_APPENDS` sets the appends per task (default 2,000;
//! each process runs 4 tasks).

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flume_core::{Error, Log, StreamOptions};
use flumelog_nats::{NatsError, NatsLog, NatsOptions};
use futures::StreamExt;

const CHILD_ENV: &str = "FLUME_NATS_CONTENTION_CHILD";
/// Core NATS subjects on which the processes agree to start together: the second one
/// says it is ready (again and again) until the first one says go.
const READY: &str = "contention.ready";
const GO: &str = "contention.go";
const TASKS: u64 = 4;
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Room for the scheduler on a loaded 2-core CI machine, beyond the documented bound.
const SLACK: Duration = Duration::from_millis(250);

fn appends_per_task() -> u64 {
    std::env::var("FLUME_NATS_CONTENTION_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn options() -> NatsOptions {
    NatsOptions::new("contend")
        .append_timeout(APPEND_TIMEOUT)
        .request_timeout(REQUEST_TIMEOUT)
        .duplicate_window(Duration::from_secs(30))
}

/// What one process saw of its own appends.
#[derive(Debug, Default)]
struct Outcome {
    acknowledged: u64,
    /// The errors, as `Debug` text.
    errors: Vec<String>,
    /// Errors other than the two an append may answer with under contention
    /// ([`NatsError::Contended`], [`NatsError::Unavailable`]).
    untyped: u64,
    /// The slowest answer, acknowledgement or error.
    slowest: Duration,
    /// Answers slower than the bound (plus slack).
    late: u64,
}

/// Waits until both processes are connected, so that they start appending together.
async fn start_together(url: &str, tag: &str) {
    let client = async_nats::connect(url).await.unwrap();
    if tag == "a" {
        let mut ready = client.subscribe(READY).await.unwrap();
        ready.next().await.unwrap();
        client.publish(GO, "".into()).await.unwrap();
        client.flush().await.unwrap();
    } else {
        let mut go = client.subscribe(GO).await.unwrap();
        client.flush().await.unwrap();
        loop {
            client.publish(READY, "".into()).await.unwrap();
            client.flush().await.unwrap();
            if tokio::time::timeout(Duration::from_millis(50), go.next())
                .await
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Appends `TASKS × appends_per_task()` records `<tag>-<task>-<i>` from one handle,
/// starting with the other process, and times every answer.
async fn contend(url: &str, tag: &str) -> Outcome {
    let log = NatsLog::connect(url, options()).await.unwrap();
    start_together(url, tag).await;
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let bound = APPEND_TIMEOUT + REQUEST_TIMEOUT + SLACK;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (log, outcome, tag) = (log.clone(), Arc::clone(&outcome), tag.to_owned());
            tokio::spawn(async move {
                for i in 0..appends_per_task() {
                    let started = Instant::now();
                    let result = log.append(Bytes::from(format!("{tag}-{task}-{i}"))).await;
                    let took = started.elapsed();
                    let mut o = outcome.lock().unwrap();
                    o.slowest = o.slowest.max(took);
                    if took > bound {
                        o.late += 1;
                    }
                    match result {
                        Ok(_) => o.acknowledged += 1,
                        Err(e) => {
                            if !typed(&e) {
                                o.untyped += 1;
                            }
                            o.errors.push(format!("{e:?}"));
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    log.close().await.unwrap();
    Arc::try_unwrap(outcome).unwrap().into_inner().unwrap()
}

/// The second process's part; does nothing unless started by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn contention_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let o = contend(&url, "b").await;
    println!(
        "\nRESULT acknowledged={} errors={} untyped={} slowest_us={} late={}",
        o.acknowledged,
        o.errors.len(),
        o.untyped,
        o.slowest.as_micros(),
        o.late
    );
    for e in &o.errors {
        println!("ERROR {e}");
    }
}

/// Whether an error is one an append may answer with under contention.
fn typed(e: &Error) -> bool {
    let Error::Backend(source) = e else {
        return false;
    };
    matches!(
        source.downcast_ref::<NatsError>(),
        Some(NatsError::Contended { .. } | NatsError::Unavailable { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_two_processes_contend_fairly() {
    let binary = support::server_binary("nats_server_two_processes_contend_fairly");
    let server = support::Single::start(binary);
    // Create the stream before both processes race to.
    NatsLog::connect(&server.url(), options())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "contention_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the second process");
    let started = Instant::now();
    let a = contend(&server.url(), "a").await;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("the second process");
    assert!(output.status.success(), "the second process failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("RESULT "))
            .unwrap_or_else(|| panic!("no RESULT line from the second process:\n{stdout}"));
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    let b_errors: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ERROR "))
        .collect();
    let b_slowest = Duration::from_micros(field("slowest_us"));
    eprintln!(
        "contention: {:?} in all; a: {} acknowledged, {} errors, slowest {:?}; b: {} acknowledged, {} errors, slowest {:?}",
        started.elapsed(),
        a.acknowledged,
        a.errors.len(),
        a.slowest,
        field("acknowledged"),
        b_errors.len(),
        b_slowest
    );

    // Every append answered within its bound, in both processes.
    let per_process = TASKS * appends_per_task();
    assert_eq!(a.acknowledged + a.errors.len() as u64, per_process);
    assert_eq!(field("acknowledged") + field("errors"), per_process);
    assert_eq!(
        a.late, 0,
        "a: answers slower than the bound, slowest {:?}",
        a.slowest
    );
    assert_eq!(
        field("late"),
        0,
        "b: answers slower than the bound, slowest {b_slowest:?}"
    );
    // Errors, if any, are typed; and they are rare: both processes make progress.
    assert_eq!(a.untyped, 0, "a: untyped errors: {:?}", a.errors);
    assert_eq!(field("untyped"), 0, "b: untyped errors: {b_errors:?}");
    assert!(a.acknowledged * 10 >= per_process * 9, "a starved: {a:?}");
    assert!(
        field("acknowledged") * 10 >= per_process * 9,
        "b starved: {} of {per_process} acknowledged",
        field("acknowledged")
    );

    // Fairness: the processes' records interleave. Neither waited for the other to
    // finish: in the first half of the log, each process has a fair share.
    let log = NatsLog::connect(&server.url(), options()).await.unwrap();
    let records: Vec<_> = log
        .stream(StreamOptions::new())
        .map(|r| r.unwrap().1)
        .collect()
        .await;
    let half = &records[..records.len() / 2];
    let from_b = half.iter().filter(|r| r.starts_with(b"b-")).count();
    let share = from_b as f64 / half.len() as f64;
    let longest_run = records
        .chunk_by(|x, y| x[0] == y[0])
        .map(<[Bytes]>::len)
        .max()
        .unwrap_or(0);
    eprintln!(
        "contention: b holds {:.0}% of the log's first half; the longest run of one process's records is {longest_run}",
        share * 100.0
    );
    assert!(
        (0.05..=0.95).contains(&share),
        "one process starved the other: b holds {:.0}% of the first half of the log",
        share * 100.0
    );
    // Nothing duplicated.
    let mut sorted = records.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), records.len());
}
