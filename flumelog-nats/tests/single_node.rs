//! Behaviour beyond the conformance suite on one nats-server: other processes' appends,
//! conditional appends, typed errors, completion of a half-written batch.

mod support;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use flume_core::{Error, Log, StreamOptions};
use flumelog_nats::{NatsError, NatsLog, NatsOptions};
use futures::StreamExt;

const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

fn nats_error(e: &Error) -> Option<&NatsError> {
    match e {
        Error::Backend(source) => source.downcast_ref::<NatsError>(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_appends_of_another_handle_are_followed() {
    let binary = support::server_binary("nats_server_appends_of_another_handle_are_followed");
    let server = support::Single::start(binary);
    // Two connections: as two processes would have.
    let a = NatsLog::connect(&server.url(), NatsOptions::new("shared"))
        .await
        .unwrap();
    let b = NatsLog::connect(&server.url(), NatsOptions::new("shared"))
        .await
        .unwrap();
    let mut live = b.stream(StreamOptions::new().live(true));
    for i in 0..10u64 {
        assert_eq!(a.append(Bytes::from(format!("a{i}"))).await.unwrap(), i);
    }
    assert_eq!(
        a.append_batch(vec![Bytes::from("x"), Bytes::from("y"), Bytes::from("z")])
            .await
            .unwrap(),
        10..13
    );
    // b's since follows a's appends (through its follower), in whole batches.
    let mut since = b.since();
    let seen = *within("b.since() to reach 12", since.wait_for(|s| *s == Some(12)))
        .await
        .unwrap();
    assert_eq!(seen, Some(12));
    for i in 0..13u64 {
        let (seq, _) = within("b's live stream", live.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seq, i);
    }
    // b appends after a: seqs continue, a sees them.
    assert_eq!(b.append(Bytes::from("b0")).await.unwrap(), 13);
    assert_eq!(a.append(Bytes::from("a10")).await.unwrap(), 14);
    assert_eq!(b.get(14).await.unwrap(), Bytes::from("a10"));
    assert_eq!(a.get(11).await.unwrap(), Bytes::from("y"));
    let mut since = a.since();
    within("a.since() to reach 14", since.wait_for(|s| *s == Some(14)))
        .await
        .unwrap();
    // Concurrent appenders on both handles: dense, distinct seqs.
    let (ra, rb) = tokio::join!(
        async {
            let mut v = Vec::new();
            for i in 0..100 {
                v.push(a.append(Bytes::from(format!("ca{i}"))).await.unwrap());
            }
            v
        },
        async {
            let mut v = Vec::new();
            for i in 0..20 {
                v.extend(
                    b.append_batch(vec![
                        Bytes::from(format!("cb{i}.0")),
                        Bytes::from(format!("cb{i}.1")),
                    ])
                    .await
                    .unwrap(),
                );
            }
            v
        },
    );
    let mut all: Vec<u64> = ra.into_iter().chain(rb).collect();
    all.sort_unstable();
    assert_eq!(all, (15..155).collect::<Vec<_>>());
    let streamed: Vec<_> = b.stream(StreamOptions::new()).collect().await;
    assert_eq!(streamed.len(), 155);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_conditional_append() {
    let binary = support::server_binary("nats_server_conditional_append");
    let server = support::Single::start(binary);
    let a = NatsLog::connect(&server.url(), NatsOptions::new("cond"))
        .await
        .unwrap();
    let b = NatsLog::connect(&server.url(), NatsOptions::new("cond"))
        .await
        .unwrap();
    assert_eq!(a.append_if(Bytes::from("first"), None).await.unwrap(), 0);
    match b.append_if(Bytes::from("also first"), None).await {
        Err(NatsError::Conflict {
            expected: None,
            actual: Some(0),
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        b.append_if(Bytes::from("second"), Some(0)).await.unwrap(),
        1
    );
    match a.append_if(Bytes::from("stale"), Some(0)).await {
        Err(NatsError::Conflict {
            expected: Some(0),
            actual: Some(1),
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    match a
        .append_batch_if(vec![Bytes::from("p"), Bytes::from("q")], Some(0))
        .await
    {
        Err(NatsError::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        a.append_batch_if(vec![Bytes::from("p"), Bytes::from("q")], Some(1))
            .await
            .unwrap(),
        2..4
    );
    // Plain appends still work after conflicts.
    assert_eq!(b.append(Bytes::from("plain")).await.unwrap(), 4);
    let all: Vec<_> = a
        .stream(StreamOptions::new())
        .map(|r| r.unwrap().1)
        .collect()
        .await;
    assert_eq!(all, ["first", "second", "p", "q", "plain"].map(Bytes::from));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_too_large_is_a_typed_error() {
    let binary = support::server_binary("nats_server_too_large_is_a_typed_error");
    let server = support::Single::start(binary);
    let log = NatsLog::connect(&server.url(), NatsOptions::new("big"))
        .await
        .unwrap();
    let huge = Bytes::from(vec![7u8; 9 << 20]);
    match log.append(huge.clone()).await {
        Err(Error::RecordTooLarge { size, max }) => assert!(size > max, "{size} <= {max}"),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    let batch = vec![Bytes::from(vec![1u8; 3 << 20]); 3];
    match log.append_batch(batch).await {
        Err(e @ Error::RecordTooLarge { .. }) => {
            assert!(e.to_string().contains("exceeds"), "{e}");
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // Nothing was written, and the log goes on.
    assert_eq!(*log.since().borrow(), None);
    assert_eq!(log.append(Bytes::from("small")).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_missing_and_misconfigured_streams() {
    let binary = support::server_binary("nats_server_missing_and_misconfigured_streams");
    let server = support::Single::start(binary);
    match NatsLog::connect(&server.url(), NatsOptions::new("absent").create(false)).await {
        Err(e @ NatsError::StreamMissing { .. }) => {
            assert!(e.to_string().contains("create"), "{e}")
        }
        other => panic!("expected StreamMissing, got {other:?}"),
    }
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "expiring".into(),
        subjects: vec!["flume.expiring".into()],
        max_age: Duration::from_secs(3600),
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    })
    .await
    .unwrap();
    match NatsLog::connect(&server.url(), NatsOptions::new("expiring")).await {
        Err(e @ NatsError::Misconfigured { .. }) => {
            assert!(e.to_string().contains("limits"), "{e}")
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "deletable".into(),
        subjects: vec!["flume.deletable".into()],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    match NatsLog::connect(&server.url(), NatsOptions::new("deletable")).await {
        Err(e @ NatsError::Misconfigured { .. }) => {
            assert!(e.to_string().contains("deletes"), "{e}")
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "short-window".into(),
        subjects: vec!["flume.short-window".into()],
        duplicate_window: Duration::from_secs(10),
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    })
    .await
    .unwrap();
    match NatsLog::connect(&server.url(), NatsOptions::new("short-window")).await {
        Err(e @ NatsError::Misconfigured { .. }) => {
            assert!(e.to_string().contains("duplicate window"), "{e}")
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    // With a shorter append timeout, the same stream is fine.
    let options = NatsOptions::new("short-window").append_timeout(Duration::from_secs(5));
    NatsLog::connect(&server.url(), options).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_typed_error() {
    // No server needed: nothing listens on this port.
    let port = support::free_port();
    let started = std::time::Instant::now();
    let result = NatsLog::connect(
        &format!("nats://127.0.0.1:{port}"),
        NatsOptions::new("nowhere").request_timeout(Duration::from_secs(2)),
    )
    .await;
    match result {
        Err(e @ NatsError::Unreachable { .. }) => {
            assert!(e.to_string().contains("nats-server is running"), "{e}");
            let e: Error = e.into();
            assert!(nats_error(&e).is_some());
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_half_written_batch_is_completed_on_open() {
    let binary = support::server_binary("nats_server_half_written_batch_is_completed_on_open");
    let server = support::Single::start(binary);
    let log = NatsLog::connect(&server.url(), NatsOptions::new("crashed"))
        .await
        .unwrap();
    assert_eq!(log.append(Bytes::from("before")).await.unwrap(), 0);
    log.close().await.unwrap();
    // A writer that "crashed" after storing its batch message and one of three fillers.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut payload = BytesMut::new();
    for r in [&b"r1"[..], b"r2", b"r3", b"r4"] {
        payload.put_u32(r.len() as u32);
        payload.put_slice(r);
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Flume-Batch", "4");
    js.publish_with_headers("flume.crashed", headers, payload.freeze())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Flume-Filler", "2/4");
    js.publish_with_headers("flume.crashed", headers, Bytes::new())
        .await
        .unwrap()
        .await
        .unwrap();

    let log = NatsLog::connect(&server.url(), NatsOptions::new("crashed"))
        .await
        .unwrap();
    assert_eq!(
        *log.since().borrow(),
        Some(4),
        "the batch is completed and visible"
    );
    let all: Vec<_> = log
        .stream(StreamOptions::new())
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(
        all,
        vec![
            (0, Bytes::from("before")),
            (1, Bytes::from("r1")),
            (2, Bytes::from("r2")),
            (3, Bytes::from("r3")),
            (4, Bytes::from("r4"))
        ]
    );
    assert_eq!(log.append(Bytes::from("after")).await.unwrap(), 5);
    assert_eq!(log.get(3).await.unwrap(), Bytes::from("r3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_restart_keeps_records() {
    let binary = support::server_binary("nats_server_restart_keeps_records");
    let mut server = support::Single::start(binary);
    let log = NatsLog::connect(&server.url(), NatsOptions::new("durable"))
        .await
        .unwrap();
    for i in 0..20u64 {
        log.append(Bytes::from(format!("r{i}"))).await.unwrap();
    }
    log.append_batch((20..30).map(|i| Bytes::from(format!("r{i}"))).collect())
        .await
        .unwrap();
    log.close().await.unwrap();
    server.server.stop();
    server.server.start();
    let log = NatsLog::connect(&server.url(), NatsOptions::new("durable"))
        .await
        .unwrap();
    assert_eq!(*log.since().borrow(), Some(29));
    let all: Vec<_> = log
        .stream(StreamOptions::new().reverse(true))
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 30);
    for (seq, bytes) in all {
        assert_eq!(bytes, Bytes::from(format!("r{seq}")));
    }
}

/// Publishes whose acknowledgements time out (the server is paused) may still commit;
/// their retries carry the same message id, so nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_timed_out_appends_are_not_duplicated() {
    let binary = support::server_binary("nats_server_timed_out_appends_are_not_duplicated");
    let server = support::Single::start(binary);
    let options = NatsOptions::new("retries")
        .request_timeout(Duration::from_millis(100))
        .append_timeout(Duration::from_secs(20));
    let log = std::sync::Arc::new(NatsLog::connect(&server.url(), options).await.unwrap());
    let tasks: Vec<_> = (0..4u64)
        .map(|task| {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..100u64 {
                    let v = format!("{task}-{i}");
                    if i % 10 == 9 {
                        let range = log
                            .append_batch(vec![
                                Bytes::from(format!("{v}a")),
                                Bytes::from(format!("{v}b")),
                            ])
                            .await
                            .expect("batch");
                        got.push((range.start, format!("{v}a")));
                        got.push((range.start + 1, format!("{v}b")));
                    } else {
                        got.push((log.append(Bytes::from(v.clone())).await.expect("append"), v));
                    }
                }
                got
            })
        })
        .collect();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.server.pause();
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.server.resume();
    }
    let mut returned = Vec::new();
    for t in tasks {
        returned.extend(within("appenders", t).await.unwrap());
    }
    returned.sort();
    let all: Vec<_> = log
        .stream(StreamOptions::new())
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(all.len(), 440, "every append stored exactly once");
    for ((seq, bytes), (want_seq, want)) in all.iter().zip(&returned) {
        assert_eq!(
            (seq, std::str::from_utf8(bytes).unwrap()),
            (want_seq, want.as_str())
        );
    }
}

/// Reads whose requests time out (the server is paused for several request timeouts)
/// retry until it answers again (within the append timeout), instead of failing on the
/// first timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_reads_wait_through_a_pause() {
    let binary = support::server_binary("nats_server_reads_wait_through_a_pause");
    let server = support::Single::start(binary);
    let options = NatsOptions::new("reads")
        .request_timeout(Duration::from_millis(300))
        .append_timeout(Duration::from_secs(20));
    let log = std::sync::Arc::new(NatsLog::connect(&server.url(), options).await.unwrap());
    for i in 0..10u64 {
        log.append(Bytes::from(format!("r{i}"))).await.unwrap();
    }
    server.server.pause();
    let get = tokio::spawn({
        let log = log.clone();
        async move { log.get(7).await }
    });
    let scan = tokio::spawn({
        let log = log.clone();
        async move {
            let records = log.stream(StreamOptions::new().gte(2).lte(5));
            records.collect::<Vec<_>>().await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.server.resume();
    let got = within("get after the pause", get).await.unwrap();
    assert_eq!(got.unwrap(), Bytes::from("r7"));
    let scanned = within("stream after the pause", scan).await.unwrap();
    let scanned: Vec<_> = scanned.into_iter().map(|r| r.unwrap()).collect();
    let expected: Vec<_> = (2..=5u64)
        .map(|i| (i, Bytes::from(format!("r{i}"))))
        .collect();
    assert_eq!(scanned, expected);
}

/// A handle refuses to append when the stream ends below a seq it already saw stored
/// (here: the stream was deleted and recreated under it, as a replica that lost records
/// and then became leader would look), naming both seqs, instead of giving an already
/// acknowledged seq to another record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_append_below_a_seen_seq_is_refused() {
    let binary = support::server_binary("nats_server_append_below_a_seen_seq_is_refused");
    let server = support::Single::start(binary);
    let options = || {
        NatsOptions::new("regress")
            .request_timeout(Duration::from_millis(500))
            .append_timeout(Duration::from_secs(2))
            .duplicate_window(Duration::from_secs(10))
    };
    let old = NatsLog::connect(&server.url(), options()).await.unwrap();
    for i in 0..5u64 {
        assert_eq!(old.append(Bytes::from(format!("old{i}"))).await.unwrap(), i);
    }
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.delete_stream("regress").await.unwrap();
    let new = NatsLog::connect(&server.url(), options()).await.unwrap();
    assert_eq!(new.append(Bytes::from("new0")).await.unwrap(), 0);
    assert_eq!(new.append(Bytes::from("new1")).await.unwrap(), 1);

    let e = within("append below a seen seq", old.append(Bytes::from("late")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            nats_error(&e),
            Some(NatsError::TailBehind {
                tail: Some(1),
                seen: 4,
                ..
            })
        ),
        "{e:?}"
    );
    let records = vec![Bytes::from("b0"), Bytes::from("b1")];
    let e = within("batch below a seen seq", old.append_batch(records))
        .await
        .unwrap_err();
    assert!(
        matches!(nats_error(&e), Some(NatsError::TailBehind { seen: 4, .. })),
        "{e:?}"
    );
    // Nothing was stored by the refused appends.
    let info = js
        .get_stream("regress")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 2);
    assert_eq!(new.get(1).await.unwrap(), Bytes::from("new1"));
}

/// A long history read through the ordered consumer does not stall silently when the
/// consumer stops delivering (the server is paused for good here, as a replica that
/// stopped applying the stream would stay silent): after the progress timeout the stream
/// reads on by message gets, which fail with a typed error within the read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_stalled_history_read_errors_instead_of_hanging() {
    let binary =
        support::server_binary("nats_server_stalled_history_read_errors_instead_of_hanging");
    let server = support::Single::start(binary);
    let options = NatsOptions::new("stall")
        .request_timeout(Duration::from_millis(500))
        .append_timeout(Duration::from_secs(1))
        .duplicate_window(Duration::from_secs(10))
        .progress_timeout(Duration::from_millis(500));
    let log = NatsLog::connect(&server.url(), options).await.unwrap();
    for i in 0..6u64 {
        let batch = (0..1000).map(|j| Bytes::from(format!("{i}.{j}"))).collect();
        log.append_batch(batch).await.unwrap();
    }
    let mut records = log.stream(StreamOptions::new());
    for seq in 0..10u64 {
        assert_eq!(records.next().await.unwrap().unwrap().0, seq);
    }
    server.server.pause();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match records.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    server.server.resume();
    let outcome = outcome.expect("the stalled read hung for a minute instead of failing");
    let e = outcome
        .expect("the stream ended without its records")
        .unwrap_err();
    assert!(
        matches!(nats_error(&e), Some(NatsError::Unavailable { .. })),
        "{e:?}"
    );
    eprintln!("the stalled read failed after {:?}", started.elapsed());
}

/// An append refused for a moved tail at its deadline fails with `Contended` (nothing
/// stored) instead of retrying past it; a conditional append that loses answers
/// `Conflict` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_lost_races_answer_in_time() {
    let binary = support::server_binary("nats_server_lost_races_answer_in_time");
    let server = support::Single::start(binary);
    let a = NatsLog::connect(&server.url(), NatsOptions::new("races"))
        .await
        .unwrap();
    assert_eq!(a.append(Bytes::from("a0")).await.unwrap(), 0);
    // b knows the tail at 0; a moves it on. b's next write is refused, and with an append
    // timeout of zero, b has no time for another attempt.
    let b = NatsLog::connect(
        &server.url(),
        NatsOptions::new("races").append_timeout(Duration::ZERO),
    )
    .await
    .unwrap();
    assert_eq!(a.append(Bytes::from("a1")).await.unwrap(), 1);
    let e = within("a lost race", b.append(Bytes::from("b")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            nats_error(&e),
            Some(NatsError::Contended {
                conflicts: 1,
                maybe_stored: false,
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(a.append(Bytes::from("a2")).await.unwrap(), 2);

    // A conditional append racing a busy writer answers promptly, never spins.
    let busy = tokio::spawn({
        let a = a.clone();
        async move {
            for i in 0..300 {
                a.append(Bytes::from(format!("busy{i}"))).await.unwrap();
            }
        }
    });
    let started = std::time::Instant::now();
    let e = within(
        "a conditional append",
        a.append_if(Bytes::from("x"), Some(0)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            NatsError::Conflict {
                expected: Some(0),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    busy.await.unwrap();
    let all: Vec<_> = a.stream(StreamOptions::new()).collect().await;
    assert!(all.iter().all(|r| r.as_ref().unwrap().1 != "b"));
    assert!(all.iter().all(|r| r.as_ref().unwrap().1 != "x"));
}
