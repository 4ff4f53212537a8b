//! Conditional appends through two handles (two connections) of one stream: the server
//! decides, so a handle whose `since` lags behind the other's appends still never wins
//! on a stale tail, and a race between the handles has one winner per tail.
//!
//! Every test here needs a server; see `support` for how they are ignored without one.

mod support;

use bytes::Bytes;
use flume_core::{Error, Log};
use flumelog_nats::{NatsLog, NatsOptions};

async fn two_handles(server: &support::Single, stream: &str) -> (NatsLog, NatsLog) {
    let a = NatsLog::connect(&server.url(), NatsOptions::new(stream))
        .await
        .expect("open the first handle");
    let b = NatsLog::connect(&server.url(), NatsOptions::new(stream))
        .await
        .expect("open the second handle");
    (a, b)
}

/// Handle B has not heard of A's appends yet (or has: the test does not depend on its
/// follower): a conditional append or an empty conditional batch on the tail B saw
/// before them conflicts, naming the tail the server has, and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_a_stale_handle_conflicts_with_the_servers_tail() {
    let server = support::Single::start(support::server_binary(
        "nats_server_a_stale_handle_conflicts_with_the_servers_tail",
    ));
    let (a, b) = two_handles(&server, "stale").await;
    assert_eq!(
        Log::append_if(&b, Bytes::from("b0"), None).await.unwrap(),
        0
    );
    a.since()
        .wait_for(|s| *s >= Some(0))
        .await
        .expect("a sees b's append");
    assert_eq!(
        a.append_batch_if_with(vec![Bytes::from("a1"), Bytes::from("a2")], Some(0), None)
            .await
            .unwrap(),
        1..3
    );
    for expected in [None, Some(0), Some(1)] {
        // (The trait's `append_if`, not `NatsLog::append_if`, which answers a `NatsError`.)
        let e = Log::append_if(&b, Bytes::from("stale"), expected)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Conflict { expected: x, actual: Some(2) } if x == expected),
            "{e:?}"
        );
        let e = b
            .append_batch_if_with(Vec::new(), expected, None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Conflict { expected: x, actual: Some(2) } if x == expected),
            "an empty batch asks the server: {e:?}"
        );
    }
    // The conflict told B where the log ends: `since` shows it.
    assert_eq!(*b.since().borrow(), Some(2));
    assert_eq!(
        b.append_batch_if_with(Vec::new(), Some(2), None)
            .await
            .unwrap(),
        3..3
    );
    assert_eq!(
        Log::append_if(&b, Bytes::from("b3"), Some(2))
            .await
            .unwrap(),
        3
    );
    for (seq, want) in ["b0", "a1", "a2", "b3"].into_iter().enumerate() {
        assert_eq!(a.get(seq as u64).await.unwrap(), Bytes::from(want));
    }
    let e = a.get(4).await.unwrap_err();
    assert!(
        matches!(e, Error::NotFound { seq: 4 }),
        "nothing else stored: {e:?}"
    );
}

/// Four tasks on each of two handles race conditional appends on the tails their handle
/// shows (flume-core's `conditional_race`): one winner per tail, and the log is the
/// winners' records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
async fn nats_server_two_handles_race_conditional_appends() {
    let server = support::Single::start(support::server_binary(
        "nats_server_two_handles_race_conditional_appends",
    ));
    let (a, b) = two_handles(&server, "race").await;
    let (winners, conflicts) = flume_core::testing::conditional_race(vec![a, b], 4, 40).await;
    eprintln!("two handles: {winners} winners, {conflicts} conflicts");
}
