//! Crash consistency with real processes: a child process (this test binary, re-executed
//! with `FLUME_CRASH_CHILD_DIR` set) appends concurrently and prints every seq it gets
//! acknowledged; the parent SIGKILLs it at a random moment, reopens the log and checks
//! that every acknowledged record is there and intact, that every record present is one
//! the child wrote (no garbage), and that batches are all-or-nothing. Then again, on the
//! same directory. Two plans (see [`Plan`]):
//!
//! - *mixed*: singles and batches, synced and buffered (a process crash must lose no
//!   acknowledged append, synced or buffered);
//! - *buffered*: the default durability — mostly single records, which take the fast
//!   path and are copied into the shared mapping of the active segment, some batches —
//!   with small segments and small reservation steps, so that the child rotates
//!   segments and reserves space all the time.
//!
//! - *adversarial* and *adversarial-pwrite*: records whose payloads embed valid frames
//!   and whole segment headers of this very format (what a record holding a copy of
//!   another log looks like), some of them 1 to 4 MiB, buffered and synced, written
//!   through the shared mapping and with `pwrite` only (`reserve(0)`). A crash in the
//!   middle of such a record must leave a torn tail, never a log that refuses to open.
//!   Each directory lives for [`Plan::cycles_per_dir`] cycles, which keeps the logs (and
//!   the time to verify them) small.
//!
//! `FLUME_CRASH_CYCLES` sets the number of cycles of every plan (default 50 mixed, 40
//! buffered, 100 adversarial, 50 adversarial-pwrite).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flume_core::{Durability, Error, Log};
use flumelog_file::{FileLog, FileLogOptions};
use rand::Rng;

mod support;
use support::{frame, segment_header};

const CHILD_ENV: &str = "FLUME_CRASH_CHILD_DIR";
const PLAN_ENV: &str = "FLUME_CRASH_PLAN";

/// What a child appends, and how the log is configured for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Task `t`'s operation `n` is a batch of `1 + n % 4` records; every third operation
    /// is buffered, the rest synced.
    Mixed,
    /// Operation `n` is a single record at the default durability, except every eighth,
    /// a batch of 2 to 4.
    Buffered,
    /// Payloads embed valid frames and segment headers; every sixteenth operation of a
    /// task (its first included) is a record of 1 to 4 MiB; every fifth a batch of 2 or
    /// 3; every third synced, the rest buffered. Writes through the mapping.
    Adversarial,
    /// As `Adversarial`, with mapped writes off: every write is a `pwrite`.
    AdversarialPwrite,
}

impl Plan {
    fn name(self) -> &'static str {
        match self {
            Plan::Mixed => "mixed",
            Plan::Buffered => "buffered",
            Plan::Adversarial => "adversarial",
            Plan::AdversarialPwrite => "adversarial-pwrite",
        }
    }

    fn from_name(name: &str) -> Plan {
        match name {
            "mixed" => Plan::Mixed,
            "buffered" => Plan::Buffered,
            "adversarial" => Plan::Adversarial,
            "adversarial-pwrite" => Plan::AdversarialPwrite,
            other => panic!("unknown crash plan {other:?}"),
        }
    }

    fn options(self) -> FileLogOptions {
        match self {
            Plan::Mixed => FileLogOptions::default().segment_size(256 << 10),
            Plan::Buffered => FileLogOptions::default()
                .segment_size(64 << 10)
                .reserve(16 << 10),
            Plan::Adversarial => FileLogOptions::default()
                .segment_size(6 << 20)
                .reserve(1 << 20),
            Plan::AdversarialPwrite => FileLogOptions::default().segment_size(6 << 20).reserve(0),
        }
    }

    fn tasks(self) -> u64 {
        match self {
            Plan::Mixed => 4,
            Plan::Buffered | Plan::Adversarial | Plan::AdversarialPwrite => 2,
        }
    }

    /// How many cycles share one directory before a fresh one starts.
    fn cycles_per_dir(self) -> u64 {
        match self {
            Plan::Mixed | Plan::Buffered => u64::MAX,
            Plan::Adversarial | Plan::AdversarialPwrite => 5,
        }
    }

    /// Operation `n`: how many records, at which durability (`None`: the default).
    fn op(self, n: u64) -> (u64, Option<Durability>) {
        match self {
            Plan::Mixed if n % 3 == 2 => (1 + n % 4, Some(Durability::Buffered)),
            Plan::Mixed => (1 + n % 4, Some(Durability::Synced)),
            Plan::Buffered if n % 8 == 7 => (2 + n % 3, None),
            Plan::Buffered => (1, None),
            Plan::Adversarial | Plan::AdversarialPwrite => {
                let k = if n % 5 == 4 { 2 + n % 2 } else { 1 };
                let durability = if n % 3 == 1 {
                    Durability::Synced
                } else {
                    Durability::Buffered
                };
                (k, Some(durability))
            }
        }
    }

    fn adversarial(self) -> bool {
        matches!(self, Plan::Adversarial | Plan::AdversarialPwrite)
    }
}

/// The payload of item `i` of `k` of operation `n` of task `t` (`t` is unique per run).
fn payload(plan: Plan, t: u64, n: u64, k: u64, i: u64) -> Bytes {
    let mut v = format!("{t}:{n}:{k}:{i}:").into_bytes();
    let fill = (t * 31 + n * 17 + i) as u8;
    if plan.adversarial() {
        // A segment of this format, then frames: a single record, a batch, a large
        // record (1 to 4 MiB for every sixteenth operation), another header and frame.
        v.extend(segment_header(n * 8 + i));
        frame(&mut v, format!("inner {t}:{n}").as_bytes(), false);
        frame(&mut v, b"batch-a", true);
        frame(&mut v, b"batch-b", false);
        let big = if n.is_multiple_of(16) && i == 0 {
            (1 + ((t + n / 16) % 4) as usize) << 20
        } else {
            ((n * 7 + i * 13) % 300) as usize
        };
        frame(&mut v, &vec![fill; big], false);
        v.extend(segment_header(0));
        frame(&mut v, b"", false);
        frame(&mut v, b"the end", false);
        return Bytes::from(v);
    }
    let len = ((n * 7 + i * 13) % 300) as usize;
    v.extend(std::iter::repeat_n(fill, len));
    Bytes::from(v)
}

/// Parses a payload back to `(t, n, k, i)`, checking the rest; `None` for garbage.
fn parse(plan: Plan, b: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let mut fields = [0u64; 4];
    let mut at = 0;
    for f in &mut fields {
        let colon = b[at..].iter().position(|&c| c == b':')?;
        *f = std::str::from_utf8(&b[at..at + colon]).ok()?.parse().ok()?;
        at += colon + 1;
    }
    let [t, n, k, i] = fields;
    (payload(plan, t, n, k, i) == b).then_some((t, n, k, i))
}

/// The child: appends until killed, following its [`Plan`].
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let plan = Plan::from_name(&std::env::var(PLAN_ENV).unwrap());
    let tasks = plan.tasks();
    let run: u64 = std::env::var("FLUME_CRASH_RUN").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = FileLog::open(&dir, plan.options())
            .await
            .expect("child open");
        println!("OPEN");
        let tasks: Vec<_> = (0..tasks)
            .map(|task| {
                let log = log.clone();
                tokio::spawn(async move {
                    let t = run * tasks + task;
                    for n in 0.. {
                        if plan.adversarial() && n == 64 {
                            // Enough (these records are large): wait to be killed.
                            std::future::pending::<()>().await;
                        }
                        let (k, durability) = plan.op(n);
                        let batch: Vec<Bytes> = (0..k).map(|i| payload(plan, t, n, k, i)).collect();
                        let range = if k == 1 {
                            let seq = log.append_with(batch[0].clone(), durability).await.unwrap();
                            seq..seq + 1
                        } else {
                            log.append_batch_with(batch, durability).await.unwrap()
                        };
                        // A SIGKILL is a process crash: buffered appends (in the page
                        // cache before they are acknowledged) must survive it too.
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

fn spawn_child(
    dir: &Path,
    run: u64,
    plan: Plan,
) -> (std::process::Child, Acks, std::thread::JoinHandle<()>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(PLAN_ENV, plan.name())
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
            } else if line.ends_with("OPEN") {
                sink.lock().unwrap().push((u64::MAX, 0, 0, 0));
            }
        }
    });
    (child, acks, reader)
}

/// Reopens the log and checks it against everything ever acknowledged; returns whether
/// the open cut a torn tail.
async fn verify(dir: &Path, plan: Plan, all_acks: &[(u64, u64, u64, u64)]) -> bool {
    let log = FileLog::open(dir, plan.options())
        .await
        .unwrap_or_else(|e| panic!("reopen after a crash ({} plan): {e}", plan.name()));
    let torn = log.recovery().is_some();
    let count = log.since().borrow().map_or(0, |s| s + 1);
    let mut records = Vec::with_capacity(count as usize);
    for seq in 0..count {
        let b = log.get(seq).await.expect("get");
        let parsed = parse(plan, &b)
            .unwrap_or_else(|| panic!("seq {seq} is garbage: {:?}", &b[..b.len().min(64)]));
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
    torn
}

/// Kills children following `plan` again and again (`FLUME_CRASH_CYCLES` times, else
/// `default_cycles`) and checks the log after each; returns the acknowledgements checked.
async fn crash_cycles(plan: Plan, default_cycles: u64) -> usize {
    let cycles: u64 = std::env::var("FLUME_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cycles);
    let mut dir = tempfile::tempdir().unwrap();
    let mut all_acks = Vec::new();
    let mut rng = rand::thread_rng();
    let mut total_acks = 0;
    let mut torn_tails = 0;
    for run in 0..cycles {
        if run > 0 && run % plan.cycles_per_dir() == 0 {
            dir = tempfile::tempdir().unwrap();
            all_acks.clear();
        }
        let (mut child, acks, reader) = spawn_child(dir.path(), run, plan);
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
            match FileLog::open(dir.path(), plan.options()).await {
                Err(Error::Locked { .. }) => {}
                other => panic!("open while a child holds the log: {other:?}"),
            }
        }
        // Kill at a random moment: sometimes while opening, mostly while appending.
        // The adversarial plans aim at the appends (their first record is a large one):
        // seven cycles in eight wait for the child's open first.
        if plan.adversarial() && run % 8 != 0 {
            let started = Instant::now();
            while !acks.lock().unwrap().iter().any(|a| a.0 == u64::MAX)
                && started.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..25)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..60)));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child must not finish on its own");
        reader.join().unwrap();
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        let acks: Vec<_> = acks.into_iter().filter(|a| a.0 != u64::MAX).collect();
        total_acks += acks.len();
        all_acks.extend(acks);
        if verify(dir.path(), plan, &all_acks).await {
            torn_tails += 1;
        }
    }
    eprintln!(
        "{} plan: {cycles} crash cycles (every open succeeded, {torn_tails} cut a torn \
         tail), {total_acks} acknowledged appends verified",
        plan.name()
    );
    total_acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    assert!(crash_cycles(Plan::Mixed, 50).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_buffered_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    assert!(crash_cycles(Plan::Buffered, 40).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_records_embedding_frames_never_refuses_an_open() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    assert!(crash_cycles(Plan::Adversarial, 100).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_records_embedding_frames_never_refuses_an_open_with_pwrite() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    assert!(crash_cycles(Plan::AdversarialPwrite, 50).await > 0);
}
