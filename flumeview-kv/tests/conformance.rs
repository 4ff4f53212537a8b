//! The view conformance suite (`flume_core::testing`) run against `Kv`: records put and
//! delete a handful of keys (several records per key, a record touching two keys), with
//! memtables small enough that applying flushes runs between checkpoints. The state read
//! is every live entry and every key's history, once for each `History` option.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use flume_core::testing::ViewUnderTest;
use flume_core::{Result, Seq, Wait};
use flumelog_memory::MemoryLog;
use flumeview_kv::{History, Kv, KvReader, LsmOptions, Op, Versioned};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cmd {
    key: u64,
    /// `None`: delete the key.
    value: Option<u64>,
    /// A second key the record also puts, to `value` (or 0).
    also: Option<u64>,
}

/// The record's operations, in order.
fn ops(cmd: &Cmd) -> Vec<(u64, Op<u64>)> {
    let mut out = vec![(cmd.key, cmd.value.map_or(Op::Delete, Op::Put))];
    if let Some(also) = cmd.also {
        out.push((also, Op::Put(cmd.value.unwrap_or(0))));
    }
    out
}

const KEYS: u64 = 5;

type State = (Vec<(u64, Versioned<u64>)>, Vec<Vec<(Seq, Op<u64>)>>);

struct Commands(History);

impl ViewUnderTest for Commands {
    type Value = Cmd;
    type View = Kv<Cmd, u64, u64>;
    type State = State;
    type Log = MemoryLog;

    fn value(&self, i: Seq) -> Cmd {
        Cmd {
            key: i % KEYS,
            value: (i % 7 != 3).then_some(1000 + i),
            also: (i % 4 == 1).then_some((i + 2) % KEYS),
        }
    }

    fn view(&self, dir: &Path, version: u32) -> Kv<Cmd, u64, u64> {
        Kv::new(version, |cmd: &Cmd, e| {
            for (key, op) in ops(cmd) {
                match op {
                    Op::Put(v) => e.put(key, v),
                    Op::Delete => e.delete(key),
                }
            }
        })
        .persist(dir)
        .history(self.0)
        .options(LsmOptions::default().memtable_bytes(1 << 9).merge_fan_in(2))
    }

    async fn read(&self, reader: &KvReader<Cmd, u64, u64>, wait: Wait) -> Result<State> {
        let live = reader.all().entries(wait).await?;
        let mut histories = Vec::new();
        for key in 0..KEYS {
            histories.push(reader.history(&key, wait).await?);
        }
        Ok((live, histories))
    }

    fn model(&self, values: &[Cmd]) -> State {
        let mut history: BTreeMap<u64, Vec<(Seq, Op<u64>)>> = BTreeMap::new();
        for (cmd, seq) in values.iter().zip(0..) {
            let mut last: BTreeMap<u64, Op<u64>> = BTreeMap::new();
            for (key, op) in ops(cmd) {
                last.insert(key, op);
            }
            for (key, op) in last {
                history.entry(key).or_default().insert(0, (seq, op));
            }
        }
        let live = history
            .iter()
            .filter_map(|(key, h)| match h.first() {
                Some((version, Op::Put(value))) => Some((
                    *key,
                    Versioned {
                        value: *value,
                        version: *version,
                    },
                )),
                _ => None,
            })
            .collect();
        let histories = (0..KEYS)
            .map(|k| {
                let all = history.get(&k).cloned().unwrap_or_default();
                match self.0 {
                    History::All => all,
                    History::Latest => all.into_iter().take(1).collect(),
                    History::Since(h) => {
                        let above = all.iter().take_while(|e| e.0 > h).count();
                        all.into_iter().take(above + 1).collect()
                    }
                }
            })
            .collect();
        (live, histories)
    }

    async fn log(&self, records: Vec<Bytes>) -> MemoryLog {
        records.into_iter().collect()
    }
}

flume_core::view_conformance_tests!(Commands(History::All));
flume_core::view_conformance_tests!(latest => Commands(History::Latest));
flume_core::view_conformance_tests!(since => Commands(History::Since(12)));
