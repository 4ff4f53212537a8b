//! `repair` has an answer for every kind of damage: for each, what `open` says (an exact
//! error naming the file, and what to do next), and what `repair` keeps, cuts and moves
//! aside (never deleting a byte). One test per row of the table in `docs/format.md`
//! ("Repair").

use std::path::{Path, PathBuf};

use bytes::Bytes;
use flume_core::{Error, Log};
use flumelog_file::{FileLog, FileLogOptions, RepairReport};

fn record(i: u64) -> Bytes {
    Bytes::from(format!("record {i}:").repeat(1 + (i % 3) as usize))
}

fn options() -> FileLogOptions {
    FileLogOptions::default().segment_size(300)
}

/// A closed log of `n` records in segments of 300 bytes; returns its segment paths.
async fn build(dir: &Path, n: u64) -> Vec<PathBuf> {
    let log = FileLog::open(dir, options()).await.unwrap();
    for i in 0..n {
        log.append(record(i)).await.unwrap();
    }
    let segments = log.segments();
    log.close().await.unwrap();
    assert!(segments.len() >= 4, "{} segments", segments.len());
    segments
}

fn first_seq(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// The error `open` fails with; it must say what to do next.
async fn open_error(dir: &Path) -> Error {
    match FileLog::open(dir, options()).await {
        Ok(log) => {
            log.close().await.unwrap();
            panic!("a damaged log opened");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("FileLog::repair"),
                "no next step: {message}"
            );
            e
        }
    }
}

fn assert_corrupt(e: Error, file: &Path, at: u64) {
    match e {
        Error::Corrupt { path, offset, .. } => {
            assert_eq!(path, file);
            assert_eq!(offset, at);
        }
        other => panic!(
            "expected Corrupt in {} at {at}, got {other:?}",
            file.display()
        ),
    }
}

fn repair(dir: &Path) -> RepairReport {
    let report = FileLog::repair(dir, &options())
        .unwrap()
        .expect("a repair report");
    // Every file moved aside is there, under a name that says why.
    for q in &report.quarantined {
        assert!(q.moved_to.exists(), "{q:?}");
        let name = q.moved_to.file_name().unwrap().to_str().unwrap();
        assert!(name.contains(&format!(".quarantined-{}", q.why)), "{q:?}");
    }
    // A second repair finds nothing left to do.
    assert_eq!(FileLog::repair(dir, &options()).unwrap(), None);
    report
}

/// Opens the repaired log: exactly records `0..n`, intact, and appends go on.
async fn check(dir: &Path, n: u64) {
    let log = FileLog::open(dir, options()).await.unwrap();
    assert_eq!(log.recovery(), None);
    assert_eq!(*log.since().borrow(), n.checked_sub(1));
    for i in 0..n {
        assert_eq!(log.get(i).await.unwrap(), record(i), "record {i}");
    }
    assert_eq!(log.append(record(n)).await.unwrap(), n);
    log.close().await.unwrap();
}

fn whys(report: &RepairReport) -> Vec<&'static str> {
    report.quarantined.iter().map(|q| q.why).collect()
}

async fn header_damage(damage: impl FnOnce(&mut Vec<u8>)) {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    let target = &segments[1];
    let mut bytes = std::fs::read(target).unwrap();
    let original = bytes.clone();
    damage(&mut bytes);
    std::fs::write(target, &bytes).unwrap();
    assert_corrupt(open_error(dir.path()).await, target, 0);
    let report = repair(dir.path());
    assert_eq!(report.headers_rebuilt, vec![target.clone()]);
    assert_eq!(whys(&report), vec!["bad-header"]);
    assert_eq!(
        std::fs::read(&report.quarantined[0].moved_to).unwrap(),
        bytes
    );
    assert!(report.segments_removed.is_empty());
    assert_eq!(report.first_dropped_seq, 60, "nothing dropped");
    // The rebuilt segment is the original again.
    assert_eq!(std::fs::read(target).unwrap(), original);
    check(dir.path(), 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_with_bad_magic_is_rebuilt() {
    header_damage(|b| b[0] = b'X').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_checksum_mismatch_is_rebuilt() {
    header_damage(|b| b[17] ^= 0x01).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_zero_reserved_header_bytes_are_rebuilt() {
    header_damage(|b| b[30] = 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_last_segment_gets_a_header_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    let last = segments.last().unwrap();
    std::fs::write(last, b"").unwrap();
    assert_corrupt(open_error(dir.path()).await, last, 0);
    let report = repair(dir.path());
    assert_eq!(report.headers_rebuilt, vec![last.clone()]);
    // Its records are gone (the tail marker said the segment held more: a cut).
    check(dir.path(), first_seq(last)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_middle_segment_keeps_what_is_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    let short = &segments[1];
    let bytes = std::fs::read(short).unwrap();
    std::fs::write(short, &bytes[..10]).unwrap();
    assert_corrupt(open_error(dir.path()).await, short, 0);
    let report = repair(dir.path());
    assert_eq!(report.headers_rebuilt, vec![short.clone()]);
    // Its records are gone, so every later segment follows a gap: moved aside.
    assert_eq!(report.segments_removed, segments[2..].to_vec());
    let mut expected = vec!["bad-header", "after-gap"];
    expected.extend(std::iter::repeat_n("after-damage", segments.len() - 3));
    assert_eq!(whys(&report), expected);
    check(dir.path(), first_seq(short)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_frame_at_the_end_of_a_middle_segment_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    // A valid frame appended to segment 1: it claims the seq segment 2 starts with.
    let mut bytes = std::fs::read(&segments[1]).unwrap();
    let original = bytes.clone();
    let payload = b"an extra record";
    let word = (payload.len() as u32).to_le_bytes();
    bytes.extend_from_slice(&word);
    bytes.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&word), payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(&segments[1], &bytes).unwrap();
    assert_corrupt(open_error(dir.path()).await, &segments[2], 16);
    let report = repair(dir.path());
    // The extra frame is cut (segment 1 kept whole aside); every later segment stays.
    assert_eq!(whys(&report), vec!["overlap"]);
    assert_eq!(report.quarantined[0].original, segments[1]);
    assert_eq!(
        std::fs::read(&report.quarantined[0].moved_to).unwrap(),
        bytes
    );
    assert_eq!(std::fs::read(&segments[1]).unwrap(), original);
    assert!(report.segments_removed.is_empty());
    check(dir.path(), 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_mid_segment_is_cut_and_the_rest_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    let target = &segments[1];
    let mut bytes = std::fs::read(target).unwrap();
    let original = bytes.clone();
    // Third record of the segment: walk the frames from the header.
    let mut at = 32;
    for _ in 0..2 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        at += 8 + len as usize;
    }
    bytes[at + 9] ^= 0x40;
    std::fs::write(target, &bytes).unwrap();
    assert_corrupt(open_error(dir.path()).await, target, at as u64);
    let report = repair(dir.path());
    let first_bad = first_seq(target) + 2;
    assert_eq!(report.first_dropped_seq, first_bad);
    assert_eq!(report.offset, at as u64);
    assert_eq!(report.damage_offset, at as u64);
    assert_eq!(report.bytes_dropped, (bytes.len() - at) as u64);
    assert_eq!(report.segments_removed, segments[2..].to_vec());
    assert_eq!(whys(&report)[..2], ["damaged", "after-damage"]);
    // The damaged original is kept whole; the segment is its prefix.
    assert_eq!(
        std::fs::read(&report.quarantined[0].moved_to).unwrap(),
        bytes
    );
    assert_eq!(std::fs::read(target).unwrap(), original[..at]);
    check(dir.path(), first_bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_middle_segment_keeps_what_is_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    std::fs::remove_file(&segments[1]).unwrap();
    assert_corrupt(open_error(dir.path()).await, &segments[2], 16);
    let report = repair(dir.path());
    assert_eq!(report.segments_removed, segments[2..].to_vec());
    assert_eq!(whys(&report)[0], "after-gap");
    check(dir.path(), first_seq(&segments[1])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_last_segment_is_reported_and_repair_accepts_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    let last = segments.last().unwrap();
    std::fs::remove_file(last).unwrap();
    match open_error(dir.path()).await {
        Error::Missing { path, reason } => {
            assert_eq!(&path, last, "{reason}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    let report = repair(dir.path());
    assert_eq!(report.missing, vec![last.clone()]);
    assert_eq!(report.segment, *last);
    assert!(report.quarantined.is_empty());
    check(dir.path(), first_seq(last)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_segment_cut_below_what_was_synced_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let segments = build(dir.path(), 60).await;
    let last = segments.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    // Cut inside its last record, after a clean close: not a crash, the end is gone.
    std::fs::write(last, &bytes[..bytes.len() - 3]).unwrap();
    assert_corrupt(
        open_error(dir.path()).await,
        last,
        // The last record's frame.
        {
            let mut at = 32;
            loop {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                let next = at + 8 + len as usize;
                if next == bytes.len() {
                    break at as u64;
                }
                at = next;
            }
        },
    );
    let report = repair(dir.path());
    assert_eq!(whys(&report), vec!["damaged"]);
    check(dir.path(), report.first_dropped_seq).await;
    assert_eq!(report.first_dropped_seq, 59);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_tail_marker_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 60).await;
    let marker = dir.path().join("TAIL");
    let mut bytes = std::fs::read(&marker).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&marker, &bytes).unwrap();
    assert_corrupt(open_error(dir.path()).await, &marker, 32);
    let report = repair(dir.path());
    assert_eq!(whys(&report), vec!["bad-marker"]);
    assert!(marker.exists(), "a new marker");
    check(dir.path(), 60).await;
}
