//! Durability: `sync` and synced appends make records durable.

use std::future::Future;

use super::support::*;
use crate::{Durability, Log};

/// `sync` returns once `durable() >= since()`; a synced append or batch is durable when it
/// returns; `durable` never runs ahead of `since`.
///
/// # Panics
/// When the log breaks the contract.
pub async fn sync_makes_durable<F, Fut, L>(mut new_log: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = L>,
    L: Log,
{
    let log = fresh(&mut new_log).await;
    let check = |what: &str| {
        let since = *log.since().borrow();
        let durable = *log.durable().borrow();
        assert!(
            durable <= since,
            "{what}: durable() {durable:?} is ahead of since() {since:?}"
        );
        (since, durable)
    };
    for i in 0..5 {
        log.append_with(record(i), Some(Durability::Buffered))
            .await
            .expect("buffered append");
    }
    check("after buffered appends");
    within("sync", log.sync()).await.expect("sync");
    let (since, durable) = check("after sync");
    assert_eq!(since, Some(4));
    assert!(
        durable >= since,
        "durable() {durable:?} < since() {since:?} after sync"
    );

    let seq = within(
        "append_with(Synced)",
        log.append_with(record(5), Some(Durability::Synced)),
    )
    .await
    .expect("synced append");
    assert_eq!(seq, 5);
    let (_, durable) = check("after a synced append");
    assert!(
        durable >= Some(seq),
        "durable() {durable:?} after a synced append of {seq}"
    );

    let range = within(
        "append_batch_with(Synced)",
        log.append_batch_with(records(6..9), Some(Durability::Synced)),
    )
    .await
    .expect("synced batch");
    assert_eq!(range, 6..9);
    let (_, durable) = check("after a synced batch");
    assert!(
        durable >= Some(8),
        "durable() {durable:?} after a synced batch ending at 8"
    );

    within("sync", log.sync()).await.expect("a second sync");
    let (since, durable) = check("after a second sync");
    assert_eq!(durable, since, "durable() after a second sync");
}
