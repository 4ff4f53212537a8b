//! The view conformance suite (`flume_core::testing`) run against `Reduce`: a list of
//! every value (which shows a record applied twice or skipped) with each state codec, and
//! the count, which never decodes.

use std::path::Path;

use bytes::Bytes;
use flume_core::testing::ViewUnderTest;
use flume_core::{Result, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_reduce::{Reduce, ReduceReader, StateCodec};

/// Every value, in log order, persisted with a state codec.
struct EveryValue(StateCodec);

impl ViewUnderTest for EveryValue {
    type Value = u64;
    type View = Reduce<u64, Vec<u64>>;
    type State = Vec<u64>;
    type Log = MemoryLog;

    fn value(&self, i: Seq) -> u64 {
        i * 7 + 3
    }

    fn view(&self, dir: &Path, version: u32) -> Self::View {
        Reduce::new(version, Vec::new(), |all: &mut Vec<u64>, v: &u64| {
            all.push(*v)
        })
        .persist(dir)
        .codec(self.0)
    }

    async fn read(&self, reader: &ReduceReader<Vec<u64>>, wait: Wait) -> Result<Vec<u64>> {
        reader.get(wait).await
    }

    fn model(&self, values: &[u64]) -> Vec<u64> {
        values.to_vec()
    }

    async fn log(&self, records: Vec<Bytes>) -> MemoryLog {
        records.into_iter().collect()
    }
}

/// `Reduce::count`, persisted.
struct Count;

impl ViewUnderTest for Count {
    type Value = u64;
    type View = Reduce<u64, u64>;
    type State = u64;
    type Log = MemoryLog;

    fn value(&self, i: Seq) -> u64 {
        i
    }

    fn view(&self, dir: &Path, version: u32) -> Self::View {
        Reduce::count(version).persist(dir)
    }

    async fn read(&self, reader: &ReduceReader<u64>, wait: Wait) -> Result<u64> {
        reader.get(wait).await
    }

    fn model(&self, values: &[u64]) -> u64 {
        values.len() as u64
    }

    async fn log(&self, records: Vec<Bytes>) -> MemoryLog {
        records.into_iter().collect()
    }
}

flume_core::view_conformance_tests!(every_value_json => EveryValue(StateCodec::Json));
flume_core::view_conformance_tests!(every_value_msgpack => EveryValue(StateCodec::MsgPack));
flume_core::view_conformance_tests!(count => Count);
