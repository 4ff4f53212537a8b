//! A view whose read finds its own data damaged (`Error::ViewDamaged` from
//! `Waiter::try_read`) is reset and rebuilt by the driver; the read waits and retries.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use flume_core::{BoxError, Error, Flume, ReaderContext, Records, View, Wait, Waiter};
use flumelog_memory::MemoryLog;

/// Counts records; its "files" can be marked damaged, and stay so until a reset.
#[derive(Default)]
struct Fragile {
    count: Arc<AtomicU64>,
    damaged: Arc<AtomicBool>,
    resets: Arc<AtomicU64>,
    /// The damage survives resets (a view that cannot heal).
    permanent: bool,
}

#[derive(Clone)]
struct FragileReader {
    count: Arc<AtomicU64>,
    damaged: Arc<AtomicBool>,
    waiter: Waiter,
}

impl FragileReader {
    async fn get(&self, wait: Wait) -> flume_core::Result<u64> {
        self.waiter
            .try_read(wait, || {
                if self.damaged.load(Ordering::SeqCst) {
                    return Err(Error::view_damaged("a block checksum does not match"));
                }
                Ok(self.count.load(Ordering::SeqCst))
            })
            .await
    }
}

impl View<u64> for Fragile {
    type Reader = FragileReader;
    fn version(&self) -> u32 {
        1
    }
    fn reader(&self, ctx: ReaderContext<u64>) -> FragileReader {
        FragileReader {
            count: Arc::clone(&self.count),
            damaged: Arc::clone(&self.damaged),
            waiter: ctx.waiter,
        }
    }
    fn apply(&mut self, records: Records<'_, u64>) -> Result<(), BoxError> {
        self.count.fetch_add(records.len() as u64, Ordering::SeqCst);
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.count.store(0, Ordering::SeqCst);
        if !self.permanent {
            self.damaged.store(false, Ordering::SeqCst);
        }
        Ok(())
    }
}

async fn database(permanent: bool) -> (Flume<u64>, FragileReader, Arc<AtomicBool>, Arc<AtomicU64>) {
    let view = Fragile {
        permanent,
        ..Fragile::default()
    };
    let (damaged, resets) = (Arc::clone(&view.damaged), Arc::clone(&view.resets));
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .batch_size(8)
        .build()
        .use_view("fragile", view)
        .unwrap();
    let values: Vec<u64> = (0..100).collect();
    db.append_batch(&values).await.unwrap();
    let reader: FragileReader = db.view("fragile").unwrap();
    assert_eq!(reader.get(Wait::Log).await.unwrap(), 100);
    (db, reader, damaged, resets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_data_found_by_reads_is_rebuilt_once() {
    let (db, reader, damaged, resets) = database(false).await;
    damaged.store(true, Ordering::SeqCst);
    // Several reads find the damage at once: one reset, and every read gets the
    // rebuilt answer, never the wiped one.
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let reader = reader.clone();
            tokio::spawn(async move { reader.get(Wait::Log).await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap(), 100);
    }
    assert_eq!(resets.load(Ordering::SeqCst), 1);
    assert_eq!(db.status().borrow().views["fragile"].since, Some(99));
    // A `NoWait` read that finds damage waits for the rebuild to get back to where the
    // view was when the damage was found.
    damaged.store(true, Ordering::SeqCst);
    assert_eq!(reader.get(Wait::NoWait).await.unwrap(), 100);
    assert_eq!(resets.load(Ordering::SeqCst), 2);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_that_survives_the_rebuild_is_reported() {
    let (db, reader, damaged, resets) = database(true).await;
    damaged.store(true, Ordering::SeqCst);
    let err = reader.get(Wait::Log).await.unwrap_err();
    assert!(
        matches!(&err, Error::ViewDamaged { name, .. } if name == "fragile"),
        "{err}"
    );
    assert_eq!(resets.load(Ordering::SeqCst), 1);
    db.close().await.unwrap();
    assert!(matches!(reader.get(Wait::Log).await, Err(Error::Closed)));
}
