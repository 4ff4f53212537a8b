//! Model test: random sequences of operations on a `MemoryLog` and on a `Vec<Bytes>` must
//! agree at every step.

use bytes::Bytes;
use flume_core::{Error, Log, Seq, StreamOptions};
use flumelog_memory::MemoryLog;
use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    AppendBatch(Vec<Vec<u8>>),
    Revert(Option<Seq>),
    Get(Seq),
    Stream(StreamOptions),
}

fn bound() -> impl Strategy<Value = Option<Seq>> {
    option::weighted(0.4, prop_oneof![8 => 0u64..40, 1 => Just(Seq::MAX)])
}

fn stream_options() -> impl Strategy<Value = StreamOptions> {
    (
        (bound(), bound(), bound(), bound()),
        any::<bool>(),
        option::weighted(0.3, 0usize..20),
        any::<bool>(),
    )
        .prop_map(|((gt, gte, lt, lte), reverse, limit, live)| StreamOptions {
            gt,
            gte,
            lt,
            lte,
            reverse,
            limit,
            live,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..16).prop_map(Op::Append),
        2 => vec(vec(any::<u8>(), 0..8), 0..6).prop_map(Op::AppendBatch),
        1 => option::of(0u64..40).prop_map(Op::Revert),
        2 => (0u64..40).prop_map(Op::Get),
        4 => stream_options().prop_map(Op::Stream),
    ]
}

/// The model's answer to a stream: its records, and whether a live stream ends after
/// them (rather than waiting for more).
fn model_stream(model: &[Bytes], opts: &StreamOptions) -> (Vec<(Seq, Bytes)>, bool) {
    let first = match opts.gt {
        Some(Seq::MAX) => None,
        Some(gt) => Some((gt + 1).max(opts.gte.unwrap_or(0))),
        None => Some(opts.gte.unwrap_or(0)),
    };
    let last = match (opts.lt, opts.lte) {
        (Some(0), _) => None,
        (Some(lt), Some(lte)) => Some(Some((lt - 1).min(lte))),
        (Some(lt), None) => Some(Some(lt - 1)),
        (None, lte) => Some(lte),
    };
    let (Some(first), Some(last)) = (first, last) else {
        return (Vec::new(), true);
    };
    if last.is_some_and(|l| l < first) {
        return (Vec::new(), true);
    }
    let mut records: Vec<(Seq, Bytes)> = (0..model.len() as Seq)
        .filter(|s| *s >= first && last.is_none_or(|l| *s <= l))
        .map(|s| (s, model[s as usize].clone()))
        .collect();
    if opts.reverse {
        records.reverse();
    }
    let limited = opts.limit.is_some_and(|l| records.len() >= l);
    if let Some(limit) = opts.limit {
        records.truncate(limit);
    }
    let past_upper_bound = last.is_some_and(|l| l < model.len() as Seq);
    (records, limited || past_upper_bound)
}

fn check_step(log: &MemoryLog, model: &[Bytes], op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Append(bytes) => {
            let seq = block_on(log.append(Bytes::from(bytes.clone()))).unwrap();
            prop_assert_eq!(seq, model.len() as Seq);
        }
        Op::AppendBatch(batch) => {
            let records = batch.iter().cloned().map(Bytes::from).collect();
            let range = block_on(log.append_batch(records)).unwrap();
            let start = model.len() as Seq;
            prop_assert_eq!(range, start..start + batch.len() as Seq);
        }
        Op::Revert(last) => {
            let result = block_on(log.revert(*last));
            match last {
                Some(l) if *l >= model.len() as Seq => {
                    prop_assert!(
                        matches!(result, Err(Error::NotFound { seq }) if seq == *l),
                        "revert past the end: {:?}",
                        result
                    );
                }
                _ => prop_assert!(result.is_ok(), "revert: {:?}", result),
            }
        }
        Op::Get(seq) => {
            let result = block_on(log.get(*seq));
            match model.get(*seq as usize) {
                Some(bytes) => prop_assert_eq!(result.unwrap(), bytes.clone()),
                None => prop_assert!(
                    matches!(result, Err(Error::NotFound { seq: s }) if s == *seq),
                    "get past the end: {:?}",
                    result
                ),
            }
        }
        Op::Stream(opts) => {
            let mut stream = log.stream(opts.clone());
            if opts.live && opts.reverse {
                let first = block_on(stream.next());
                prop_assert!(matches!(first, Some(Err(Error::InvalidArgument(_)))));
                prop_assert!(block_on(stream.next()).is_none());
                return Ok(());
            }
            let (want, ends) = model_stream(model, opts);
            let mut got = Vec::new();
            for _ in 0..want.len() {
                match stream.next().now_or_never() {
                    Some(Some(Ok(record))) => got.push(record),
                    other => prop_assert!(
                        false,
                        "after {:?}: {:?}",
                        got,
                        other.map(|o| o.map(|r| r.map(|(s, _)| s)))
                    ),
                }
            }
            prop_assert_eq!(got, want);
            let next = stream.next().now_or_never();
            if opts.live && !ends {
                prop_assert!(next.is_none(), "a live stream must wait for more");
            } else {
                prop_assert!(matches!(next, Some(None)), "the stream must end");
            }
        }
    }
    Ok(())
}

fn apply(model: &mut Vec<Bytes>, op: &Op) {
    match op {
        Op::Append(bytes) => model.push(Bytes::from(bytes.clone())),
        Op::AppendBatch(batch) => model.extend(batch.iter().cloned().map(Bytes::from)),
        Op::Revert(None) => model.clear(),
        Op::Revert(Some(last)) => {
            if (*last as usize) < model.len() {
                model.truncate(*last as usize + 1);
            }
        }
        Op::Get(_) | Op::Stream(_) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn memory_log_matches_a_vec(ops in vec(op(), 0..60)) {
        let log = MemoryLog::new();
        let mut model: Vec<Bytes> = Vec::new();
        for op in &ops {
            check_step(&log, &model, op)?;
            apply(&mut model, op);
            prop_assert_eq!(log.len(), model.len());
            prop_assert_eq!(*log.since().borrow(), (model.len() as Seq).checked_sub(1));
        }
        // Everything reads back at the end, forward and reverse.
        check_step(&log, &model, &Op::Stream(StreamOptions::new()))?;
        check_step(&log, &model, &Op::Stream(StreamOptions::new().reverse(true)))?;
    }
}
