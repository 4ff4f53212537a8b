//! The follower: a background task that raises `since` as the stream grows, including by
//! other processes' appends.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{consumer, stream};
use flume_core::Seq;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{raise, Tails};
use crate::format::{self, Shape};

/// Follows the stream's tail (including other processes' appends) with an ordered,
/// headers-only consumer and raises `since` at every completed batch. A poll of the
/// stream's state every `interval` backs the consumer up: it raises `since` too, and a
/// consumer found behind at two polls in a row (stuck after a leader change, say) is
/// recreated from the tail.
pub(super) async fn follow(
    stream: stream::Stream,
    since: Arc<Tails>,
    mut next: u64,
    closed: CancellationToken,
    name: String,
    interval: Duration,
) {
    loop {
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                headers_only: true,
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.reset();
        let mut behind = 0;
        match messages {
            Ok(mut messages) => loop {
                let item = tokio::select! {
                    item = messages.next() => item,
                    _ = ticker.tick() => {
                        match poll_tail(&stream).await {
                            Some((complete, last)) if complete.is_some_and(|c| since.current().is_none_or(|s| c > s)) => {
                                if let Some(c) = complete {
                                    raise(&since, c);
                                }
                                behind += 1;
                                if behind >= 2 {
                                    tracing::debug!(stream = %name, "follower: the consumer fell behind, recreating it");
                                    next = next.max(last + 1);
                                    break;
                                }
                            }
                            _ => behind = 0,
                        }
                        continue;
                    }
                    _ = closed.cancelled() => return,
                };
                match item {
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let sequence = info.stream_sequence;
                        match format::shape(message.headers.as_ref(), sequence) {
                            Ok(shape) if shape.batch_end(sequence) == sequence => {
                                raise(&since, sequence - 1);
                            }
                            Ok(_) => {}
                            Err(reason) => {
                                tracing::warn!(stream = %name, sequence, %reason, "foreign message in the log's stream");
                            }
                        }
                        next = next.max(sequence + 1);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(stream = %name, error = %e, "follower: consumer failed, recreating");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => {
                tracing::debug!(stream = %name, error = %e, "follower: cannot create the consumer");
                if let Some((Some(complete), last)) = poll_tail(&stream).await {
                    raise(&since, complete);
                    next = next.max(last + 1);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = closed.cancelled() => return,
        }
    }
}

/// The stream's last sequence, and the last seq whose batch is complete (as far as the
/// leader knows), or `None` when the leader cannot be asked.
async fn poll_tail(stream: &stream::Stream) -> Option<(Option<Seq>, u64)> {
    let last = stream.get_info().await.ok()?.state.last_sequence;
    if last == 0 {
        return Some((None, 0));
    }
    let message = stream.get_raw_message(last).await.ok()?;
    let shape = format::shape(Some(&message.headers), last).ok()?;
    let complete = match shape {
        Shape::Record => Some(last - 1),
        Shape::Batch { .. } => last.checked_sub(2),
        Shape::Filler { batch, len } if batch + len - 1 == last => Some(last - 1),
        Shape::Filler { batch, .. } => batch.checked_sub(2),
    };
    Some((complete, last))
}
