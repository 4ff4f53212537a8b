//! The view conformance suite run against the scriptable `Collect` view, persisted in a
//! store per directory: the driver's side of the view contract, with no view crate
//! involved. It needs flume-core's `testing` feature, which `cargo test --workspace` (or
//! testing flume-core together with a crate that enables it) turns on.

#![cfg(feature = "testing")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use common::{Collect, CollectReader, Store};
use flume_core::testing::ViewUnderTest;
use flume_core::{Result, Seq, Wait};
use flumelog_memory::MemoryLog;

/// `Collect`, persisted in a store that stands for the directory it is given.
#[derive(Default)]
struct Collected {
    stores: Mutex<HashMap<PathBuf, Store>>,
}

impl ViewUnderTest for Collected {
    type Value = u64;
    type View = Collect;
    type State = Vec<(Seq, u64)>;
    type Log = MemoryLog;

    fn value(&self, i: Seq) -> u64 {
        i * i + 1
    }

    fn view(&self, dir: &Path, version: u32) -> Collect {
        let mut stores = self.stores.lock().unwrap();
        let store = stores.entry(dir.to_owned()).or_default();
        Collect::new(version).persisted(store)
    }

    async fn read(&self, reader: &CollectReader, wait: Wait) -> Result<Vec<(Seq, u64)>> {
        reader.get(wait).await
    }

    fn model(&self, values: &[u64]) -> Vec<(Seq, u64)> {
        (0..).zip(values.iter().copied()).collect()
    }

    async fn log(&self, records: Vec<Bytes>) -> MemoryLog {
        records.into_iter().collect()
    }
}

flume_core::view_conformance_tests!(Collected::default());
