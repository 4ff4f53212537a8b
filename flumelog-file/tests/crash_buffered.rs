//! Crash consistency of the default durability with real processes: a child process
//! (this test binary, re-executed with `FLUME_BUFFERED_CRASH_CHILD_DIR` set) appends at
//! the default *buffered* durability — mostly single records, which take the fast path
//! and are copied into the shared mapping of the active segment, some batches — with
//! small segments and small reservation steps, so that it rotates segments and reserves
//! space all the time, and prints every seq it gets acknowledged. The parent SIGKILLs
//! it at a random moment, reopens the log and checks that every acknowledged record is
//! there and intact (a process crash loses no acknowledged buffered append), that every
//! record present is one the child wrote (no garbage), and that batches are
//! all-or-nothing. Then again, on the same directory.
//!
//! `FLUME_CRASH_CYCLES` sets the number of cycles (default 40).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flume_core::{Error, Log};
use flumelog_file::{FileLog, Options};
use rand::Rng;

const CHILD_ENV: &str = "FLUME_BUFFERED_CRASH_CHILD_DIR";
const TASKS: u64 = 2;

fn options() -> Options {
    Options::default().segment_size(64 << 10).reserve(16 << 10)
}

/// The payload of item `i` of `k` of operation `n` of task `t` (`t` is unique per run).
fn payload(t: u64, n: u64, k: u64, i: u64) -> Bytes {
    let mut v = format!("{t}:{n}:{k}:{i}:").into_bytes();
    let fill = (t * 31 + n * 17 + i) as u8;
    let len = ((n * 7 + i * 13) % 300) as usize;
    v.extend(std::iter::repeat_n(fill, len));
    Bytes::from(v)
}

/// Parses a payload back to `(t, n, k, i)`, checking its filler; `None` for garbage.
fn parse(b: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let mut fields = [0u64; 4];
    let mut at = 0;
    for f in &mut fields {
        let colon = b[at..].iter().position(|&c| c == b':')?;
        *f = std::str::from_utf8(&b[at..at + colon]).ok()?.parse().ok()?;
        at += colon + 1;
    }
    let [t, n, k, i] = fields;
    (payload(t, n, k, i) == b).then_some((t, n, k, i))
}

/// The child: appends until killed, at the default durability. Task `t`'s operation
/// `n` is a single record, except every eighth, a batch of 2 to 4.
#[test]
fn buffered_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let run: u64 = std::env::var("FLUME_CRASH_RUN").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = FileLog::open(&dir, options()).await.expect("child open");
        println!("OPEN");
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let log = log.clone();
                tokio::spawn(async move {
                    let t = run * TASKS + task;
                    for n in 0.. {
                        let k = if n % 8 == 7 { 2 + n % 3 } else { 1 };
                        let batch: Vec<Bytes> = (0..k).map(|i| payload(t, n, k, i)).collect();
                        let range = if k == 1 {
                            let seq = log.append(batch[0].clone()).await.unwrap();
                            seq..seq + 1
                        } else {
                            log.append_batch(batch).await.unwrap()
                        };
                        // A SIGKILL is a process crash: buffered appends (in the page
                        // cache before they are acknowledged) must survive it.
                        println!("ACK {t} {n} {} {}", range.start, range.end);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// Everything a child acknowledged: `(t, n, first seq, end seq)`.
type Acks = Arc<Mutex<Vec<(u64, u64, u64, u64)>>>;

fn spawn_child(dir: &Path, run: u64) -> (std::process::Child, Acks, std::thread::JoinHandle<()>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "buffered_crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env("FLUME_CRASH_RUN", run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let acks: Acks = Arc::default();
    let stdout = child.stdout.take().unwrap();
    let sink = Arc::clone(&acks);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                sink.lock().unwrap().push((v[0], v[1], v[2], v[3]));
            } else if line == "OPEN" {
                sink.lock().unwrap().push((u64::MAX, 0, 0, 0));
            }
        }
    });
    (child, acks, reader)
}

/// Reopens the log and checks it against everything ever acknowledged.
async fn verify(dir: &Path, all_acks: &[(u64, u64, u64, u64)]) -> u64 {
    let log = FileLog::open(dir, options())
        .await
        .expect("reopen after a crash");
    let count = log.since().borrow().map_or(0, |s| s + 1);
    let mut records = Vec::with_capacity(count as usize);
    for seq in 0..count {
        let b = log.get(seq).await.expect("get");
        let parsed = parse(&b).unwrap_or_else(|| panic!("seq {seq} is garbage: {b:?}"));
        records.push(parsed);
    }
    // Batches are whole and contiguous.
    let mut seq = 0;
    while seq < count {
        let (t, n, k, i) = records[seq as usize];
        assert_eq!(i, 0, "seq {seq} starts in the middle of a batch");
        for j in 0..k {
            let r = records.get((seq + j) as usize).copied();
            assert_eq!(
                r,
                Some((t, n, k, j)),
                "batch {t}:{n} of {k} broken at seq {}",
                seq + j
            );
        }
        seq += k;
    }
    for &(t, n, first, end) in all_acks {
        assert!(
            end <= count,
            "acknowledged {t}:{n} at {first}..{end} but the log has {count}"
        );
        for (i, s) in (first..end).enumerate() {
            assert_eq!(
                records[s as usize],
                (t, n, end - first, i as u64),
                "acknowledged seq {s}"
            );
        }
    }
    log.close().await.unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_buffered_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let cycles: u64 = std::env::var("FLUME_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let mut all_acks = Vec::new();
    let mut rng = rand::thread_rng();
    let mut total_acks = 0;
    for run in 0..cycles {
        let (mut child, acks, reader) = spawn_child(dir.path(), run);
        if run == 0 {
            // While the child holds the log, this process cannot open it.
            let started = Instant::now();
            while acks.lock().unwrap().len() < 2 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the child never appended"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            match FileLog::open(dir.path(), options()).await {
                Err(Error::Locked { .. }) => {}
                other => panic!("open while a child holds the log: {other:?}"),
            }
        }
        // Kill at a random moment: sometimes while opening, mostly while appending.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child must not finish on its own");
        reader.join().unwrap();
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        let acks: Vec<_> = acks.into_iter().filter(|a| a.0 != u64::MAX).collect();
        total_acks += acks.len();
        all_acks.extend(acks);
        verify(dir.path(), &all_acks).await;
    }
    eprintln!("{cycles} crash cycles, {total_acks} acknowledged buffered appends verified");
    assert!(total_acks > 0);
}
