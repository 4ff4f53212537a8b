//! A view's reader can fetch records from the log through its `ReaderContext`.
use flume_core::{BoxError, Flume, LogReader, ReaderContext, Records, Seq, View, Wait, Waiter};
use flumelog_memory::MemoryLog;

/// Remembers the seq of the largest value; its reader returns that record from the log.
struct MaxSeq(std::sync::Arc<std::sync::Mutex<Option<(Seq, u64)>>>);

#[derive(Clone)]
struct MaxReader {
    max: std::sync::Arc<std::sync::Mutex<Option<(Seq, u64)>>>,
    waiter: Waiter,
    log: LogReader<u64>,
}

impl MaxReader {
    async fn record(&self) -> flume_core::Result<Option<u64>> {
        let seq = self
            .waiter
            .read(Wait::Log, || self.max.lock().unwrap().map(|(seq, _)| seq))
            .await?;
        match seq {
            Some(seq) => Ok(Some(self.log.get(seq).await?)),
            None => Ok(None),
        }
    }
}

impl View<u64> for MaxSeq {
    type Reader = MaxReader;
    fn version(&self) -> u32 {
        1
    }
    fn reader(&self, ctx: ReaderContext<u64>) -> MaxReader {
        MaxReader {
            max: self.0.clone(),
            waiter: ctx.waiter,
            log: ctx.log,
        }
    }
    fn apply(&mut self, records: Records<'_, u64>) -> Result<(), BoxError> {
        let mut max = self.0.lock().unwrap();
        for r in records {
            let v = *r.value()?;
            if max.is_none_or(|(_, m)| v > m) {
                *max = Some((r.seq(), v));
            }
        }
        Ok(())
    }
    fn reset(&mut self) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_fetches_the_record_through_the_log_reader() {
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .mapper(|v| Ok(v + 1000))
        .build()
        .use_view("max", MaxSeq(Default::default()))
        .unwrap();
    let reader: MaxReader = db.view("max").unwrap();
    assert_eq!(reader.record().await.unwrap(), None);
    db.append_batch(&[3, 9, 4]).await.unwrap();
    // The mapped value, fetched from the log by seq.
    assert_eq!(reader.record().await.unwrap(), Some(1009));
    assert_eq!(reader.log.since(), Some(2));
    db.close().await.unwrap();
}
