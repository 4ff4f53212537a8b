//! Replicated: two application instances sharing one JetStream log, each with its own
//! views. Appends from either instance are seen by both.
//!
//! Start a server with JetStream first (on one machine: `nats-server -js`), then
//! `cargo run -p examples --example replicated [nats://127.0.0.1:4222]`.
//!
//! The two instances here are two `Flume` handles in one program, each on its own NATS
//! connection, exactly as two processes on two machines would be.

use std::collections::BTreeMap;

use flume_core::{BoxError, Flume, Wait};
use flumelog_nats::{NatsLog, NatsOptions};
use flumeview_reduce::{Reduce, ReduceReader};
use serde::{Deserialize, Serialize};

/// One order line, stored in the log as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    shop: String,
    item: String,
    cents: u64,
}

/// One application instance: its own connection, its own views.
async fn instance(url: &str, stream: &str) -> Result<Flume<Order>, BoxError> {
    let log = NatsLog::connect(url, NatsOptions::new(stream)).await?;
    Ok(Flume::new(log)
        .use_view("count", Reduce::count(1))?
        .use_view(
            "revenue_by_shop",
            Reduce::new(
                1,
                BTreeMap::<String, u64>::new(),
                |by_shop, order: &Order| {
                    *by_shop.entry(order.shop.clone()).or_default() += order.cents;
                },
            ),
        )?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    // A fresh stream name per run, so that the numbers below start from zero.
    let stream = format!("replicated-example-{}", std::process::id());

    let a = match instance(&url, &stream).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "{e}\n(start one with `nats-server -js`, or pass its URL as the first argument)"
            );
            std::process::exit(1);
        }
    };
    let b = instance(&url, &stream).await?;
    println!("two instances share the JetStream stream {stream:?} at {url}");

    let orders = [
        ("a", "north", "tea", 450),
        ("b", "south", "coffee", 380),
        ("a", "south", "cake", 520),
        ("b", "north", "tea", 450),
    ];
    for (by, shop, item, cents) in orders {
        let order = Order {
            shop: shop.into(),
            item: item.into(),
            cents,
        };
        let db = if by == "a" { &a } else { &b };
        let last = db.append(&order).await?;
        println!("instance {by} appended #{last}: {item} at {shop} for {cents} cents");
    }
    let batch = vec![
        Order {
            shop: "east".into(),
            item: "bread".into(),
            cents: 300,
        },
        Order {
            shop: "east".into(),
            item: "jam".into(),
            cents: 250,
        },
    ];
    let range = a.append_batch(&batch).await?;
    let last = range.end - 1;
    println!("instance a appended a batch as #{range:?}");

    // Each instance's views see every append, whichever instance made it. `AtLeast` waits
    // for the other instance's appends to reach this one (its log follows the stream).
    for (name, db) in [("a", &a), ("b", &b)] {
        let count = db
            .view::<ReduceReader<u64>>("count")?
            .get(Wait::AtLeast(last))
            .await?;
        let revenue = db
            .view::<ReduceReader<BTreeMap<String, u64>>>("revenue_by_shop")?
            .get(Wait::AtLeast(last))
            .await?;
        println!("instance {name}: {count} orders, revenue by shop {revenue:?}");
    }
    a.close().await?;
    b.close().await?;
    Ok(())
}
