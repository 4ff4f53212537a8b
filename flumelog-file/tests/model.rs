//! A model test: random appends, batches, syncs, reverts and reopens against a `Vec`.

use bytes::Bytes;
use flume_core::{Log, StreamOptions};
use flumelog_file::{FileLog, FileLogOptions};
use futures::TryStreamExt;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Sync,
    Reopen,
    /// Revert to this fraction (per mille) of the current length.
    Revert(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = prop::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        6 => bytes.clone().prop_map(Op::Append),
        3 => prop::collection::vec(bytes, 0..6).prop_map(Op::Batch),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => (0u16..=1000).prop_map(Op::Revert),
    ]
}

fn options() -> FileLogOptions {
    FileLogOptions::default().segment_size(300)
}

async fn check(log: &FileLog, model: &[Bytes]) {
    assert_eq!(*log.since().borrow(), (model.len() as u64).checked_sub(1));
    let all: Vec<_> = log
        .stream(StreamOptions::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), model.len());
    for (i, (seq, b)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(b, &model[i], "seq {i}");
    }
    let rev: Vec<_> = log
        .stream(StreamOptions::new().reverse(true))
        .try_collect()
        .await
        .unwrap();
    assert!(rev.iter().rev().map(|r| &r.1).eq(model.iter()));
    for (i, b) in model.iter().enumerate().step_by(3) {
        assert_eq!(&log.get(i as u64).await.unwrap(), b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn file_log_behaves_like_a_vec(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut log = FileLog::open(dir.path(), options()).await.unwrap();
            let mut model: Vec<Bytes> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(b) => {
                        let seq = log.append(Bytes::from(b.clone())).await.unwrap();
                        assert_eq!(seq, model.len() as u64);
                        model.push(Bytes::from(b));
                    }
                    Op::Batch(bs) => {
                        let bs: Vec<Bytes> = bs.into_iter().map(Bytes::from).collect();
                        let range = log.append_batch(bs.clone()).await.unwrap();
                        assert_eq!(range, model.len() as u64..(model.len() + bs.len()) as u64);
                        model.extend(bs);
                    }
                    Op::Sync => log.sync().await.unwrap(),
                    Op::Reopen => {
                        log.close().await.unwrap();
                        log = FileLog::open(dir.path(), options()).await.unwrap();
                        assert!(log.recovery().is_none());
                    }
                    Op::Revert(per_mille) => {
                        let keep = model.len() * per_mille as usize / 1000;
                        log.revert((keep as u64).checked_sub(1)).await.unwrap();
                        model.truncate(keep);
                    }
                }
                check(&log, &model).await;
            }
            log.close().await.unwrap();
            let log = FileLog::open(dir.path(), options()).await.unwrap();
            check(&log, &model).await;
        });
    }
}
