//! Damaged files: a cut anywhere in the last records is a torn tail (cut, reported);
//! a flipped byte before the tail is `Corrupt` with the segment and offset of the
//! damaged record, and `repair` truncates there on request.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use flume_core::{Error, Log};
use flumelog_file::{FileLog, FileLogOptions};
use rand::{Rng, SeedableRng};

fn record(i: u64) -> Bytes {
    Bytes::from(format!("rec{i}:").repeat(1 + (i % 4) as usize))
}

/// Frame start offsets of a segment file, parsed independently of the crate.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 32;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) & 0x7fff_ffff;
        out.push(at);
        at += 8 + len as usize;
    }
    assert_eq!(
        at,
        bytes.len(),
        "test helper: segment does not end on a frame"
    );
    out
}

/// A closed log of `singles` single records followed by one batch of `batch` records.
async fn build(dir: &Path, options: FileLogOptions, singles: u64, batch: u64) {
    let log = FileLog::open(dir, options).await.unwrap();
    for i in 0..singles {
        log.append(record(i)).await.unwrap();
    }
    if batch > 0 {
        let b: Vec<Bytes> = (singles..singles + batch).map(record).collect();
        log.append_batch(b).await.unwrap();
    }
    log.close().await.unwrap();
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

async fn check_prefix(log: &FileLog, count: u64) {
    assert_eq!(
        *log.since().borrow(),
        count.checked_sub(1),
        "records after recovery"
    );
    for i in 0..count {
        assert_eq!(log.get(i).await.unwrap(), record(i), "record {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_anywhere_in_the_last_three_records_is_a_torn_tail() {
    let src = tempfile::tempdir().unwrap();
    // Records 0..=17 single, 18 and 19 one batch: the last three are 17, 18, 19.
    let empty = FileLog::open(src.path(), FileLogOptions::default())
        .await
        .unwrap();
    drop(empty);
    std::fs::copy(src.path().join("TAIL"), src.path().join("TAIL.empty")).unwrap();
    build(src.path(), FileLogOptions::default(), 18, 2).await;
    let seg_name = "00000000000000000000.seg";
    let original = std::fs::read(src.path().join(seg_name)).unwrap();
    let offsets = frame_offsets(&original);
    assert_eq!(offsets.len(), 20);
    let (start17, start18) = (offsets[17], offsets[18]);
    let work = tempfile::tempdir().unwrap();
    let seg = work.path().join(seg_name);
    let mut cuts = 0;
    for cut in start17..original.len() {
        std::fs::write(&seg, &original[..cut]).unwrap();
        // What a crash while appending the last records leaves: the tail marker says no
        // more of the segment is durable than its header (as when the log was opened
        // empty); the one the last iteration's close wrote would call the cut damage.
        std::fs::copy(src.path().join("TAIL.empty"), work.path().join("TAIL")).unwrap();
        let log = FileLog::open(work.path(), FileLogOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open after a cut at {cut}: {e}"));
        // A cut inside the batch drops all of it.
        let (kept, kept_end) = if cut < start18 {
            (17, start17)
        } else {
            (18, start18)
        };
        check_prefix(&log, kept).await;
        match log.recovery() {
            None => assert_eq!(cut, kept_end, "a cut at {cut} went unreported"),
            Some(report) => {
                assert_eq!(report.segment, seg);
                assert_eq!(report.offset, kept_end as u64, "cut at {cut}");
                assert_eq!(
                    report.bytes_dropped,
                    (cut - kept_end) as u64,
                    "cut at {cut}"
                );
                assert!(report.records_dropped >= 1);
            }
        }
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), kept_end as u64);
        // The log goes on from the cut.
        assert_eq!(log.append(record(kept)).await.unwrap(), kept);
        log.close().await.unwrap();
        cuts += 1;
    }
    assert!(cuts > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_after_the_tail_are_preallocated_space() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), FileLogOptions::default(), 10, 0).await;
    let seg = segment_paths(dir.path()).remove(0);
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 5000]);
    std::fs::write(&seg, bytes).unwrap();
    // Zeros from a frame boundary to the end of the file are the clean end of the data:
    // nothing is cut, and the next append goes right after the last frame.
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert_eq!(log.recovery(), None);
    check_prefix(&log, 10).await;
    let next = Bytes::from_static(b"after the zeros");
    assert_eq!(log.append(next.clone()).await.unwrap(), 10);
    log.close().await.unwrap();
    // Closing trims the zeros.
    let trimmed = std::fs::metadata(&seg).unwrap().len();
    assert_eq!(trimmed, len + 8 + next.len() as u64);
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert_eq!(log.recovery(), None);
    assert_eq!(*log.since().borrow(), Some(10));
    assert_eq!(log.get(10).await.unwrap(), next);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_frame_inside_preallocated_space_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), FileLogOptions::default(), 10, 0).await;
    let seg = segment_paths(dir.path()).remove(0);
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    // A frame header claiming 100 bytes whose payload never made it, then zeros.
    bytes.extend_from_slice(&[100, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, b'x', b'y']);
    bytes.extend_from_slice(&[0u8; 1 << 16]);
    std::fs::write(&seg, &bytes).unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    let report = log.recovery().expect("the torn frame is cut").clone();
    assert_eq!(report.offset, len);
    assert_eq!(report.bytes_dropped, bytes.len() as u64 - len);
    assert_eq!(report.records_dropped, 1);
    check_prefix(&log, 10).await;
    log.close().await.unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_log_preallocates_and_a_copy_of_it_reopens_cleanly() {
    // A copy of the directory taken while the log is open (what a power loss after the
    // last fdatasync leaves): data, then preallocated zeros. It opens with nothing cut.
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default())
        .await
        .unwrap();
    for i in 0..50u32 {
        log.append_with(
            Bytes::from(format!("record {i}")),
            Some(flume_core::Durability::Synced),
        )
        .await
        .unwrap();
    }
    let seg = segment_paths(dir.path()).remove(0);
    let on_disk = std::fs::read(&seg).unwrap();
    assert!(
        on_disk.len() >= 1 << 20,
        "{} bytes preallocated",
        on_disk.len()
    );
    let copy = tempfile::tempdir().unwrap();
    std::fs::write(copy.path().join(seg.file_name().unwrap()), &on_disk).unwrap();
    log.close().await.unwrap();
    let reopened = FileLog::open(copy.path(), FileLogOptions::default())
        .await
        .unwrap();
    assert_eq!(reopened.recovery(), None);
    assert_eq!(*reopened.since().borrow(), Some(49));
    assert_eq!(reopened.get(49).await.unwrap(), Bytes::from("record 49"));
    reopened.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_before_the_tail_is_corrupt_with_its_location() {
    let src = tempfile::tempdir().unwrap();
    // Small segments: the damage may be in a sealed segment or in the last one.
    let options = FileLogOptions::default().segment_size(600);
    build(src.path(), options.clone(), 60, 0).await;
    let paths = segment_paths(src.path());
    assert!(paths.len() >= 3);
    let originals: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let firsts: Vec<u64> = paths
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    let work = tempfile::tempdir().unwrap();
    let trials: usize = std::env::var("FLUME_FLIP_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for trial in 0..trials {
        let s = rng.gen_range(0..paths.len());
        let offsets = frame_offsets(&originals[s]);
        // Anywhere before the last record of the log (that one would be a torn tail).
        let limit = if s + 1 == paths.len() {
            offsets[offsets.len() - 1]
        } else {
            originals[s].len()
        };
        let pos = rng.gen_range(0..limit);
        let bit = 1u8 << rng.gen_range(0..8);
        for (p, o) in paths.iter().zip(&originals) {
            std::fs::write(work.path().join(p.file_name().unwrap()), o).unwrap();
        }
        // The tail marker of the closed log: every byte of the last segment was synced.
        std::fs::copy(src.path().join("TAIL"), work.path().join("TAIL")).unwrap();
        let damaged = work.path().join(paths[s].file_name().unwrap());
        let mut bytes = originals[s].clone();
        bytes[pos] ^= bit;
        std::fs::write(&damaged, &bytes).unwrap();
        // The frame holding `pos` (or the header).
        let (frame, frame_at) = match offsets.iter().rposition(|&o| o <= pos) {
            Some(k) => (Some(k), offsets[k] as u64),
            None => (None, 0),
        };
        let what = format!(
            "trial {trial}: bit {bit:#x} of byte {pos} in {}",
            damaged.display()
        );
        match FileLog::open(work.path(), options.clone()).await {
            Err(Error::Corrupt {
                path,
                offset,
                reason,
            }) => {
                assert_eq!(path, damaged, "{what}: {reason}");
                assert_eq!(offset, frame_at, "{what}: {reason}");
            }
            Err(e) => panic!("{what}: expected Corrupt, got {e}"),
            Ok(_) => panic!("{what}: opened a damaged log"),
        }
        // Repair on request truncates at the damaged record.
        if let (0, Some(k)) = (trial % 4, frame) {
            // (A damaged header is not repaired: repair fails with the same error.)
            let report = FileLog::repair(work.path(), &options)
                .unwrap()
                .expect("a repair");
            let first_bad = firsts[s] + k as u64;
            assert_eq!(report.first_dropped_seq, first_bad, "{what}");
            assert_eq!(report.segments_removed.len(), paths.len() - s - 1, "{what}");
            let log = FileLog::open(work.path(), options.clone()).await.unwrap();
            check_prefix(&log, first_bad).await;
            log.close().await.unwrap();
            for p in segment_paths(work.path()) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("00000000000000000000.seg");
    for garbage in [
        Vec::new(),
        b"FLUMELOG".to_vec(),
        vec![0xff; 100],
        vec![0; 4096],
    ] {
        std::fs::write(&seg, &garbage).unwrap();
        match FileLog::open(dir.path(), FileLogOptions::default()).await {
            Err(Error::Corrupt {
                path, offset: 0, ..
            }) => assert_eq!(path, seg),
            other => panic!(
                "{} garbage bytes: expected Corrupt at 0, got {other:?}",
                garbage.len()
            ),
        }
    }
    // A missing segment in the middle.
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        FileLogOptions::default().segment_size(200),
        30,
        0,
    )
    .await;
    let paths = segment_paths(dir.path());
    std::fs::remove_file(&paths[1]).unwrap();
    match FileLog::open(dir.path(), FileLogOptions::default()).await {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, paths[2]),
        other => panic!("expected Corrupt for a missing segment, got {other:?}"),
    }
}

/// `repair` replaces a damaged segment with a new file holding the kept prefix instead of
/// truncating it: records a closed handle handed out (slices of its mappings) stay
/// readable; a truncated mapped file would kill the process with `SIGBUS` here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_held_across_a_repair_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions::default();
    let log = FileLog::open(dir.path(), options.clone()).await.unwrap();
    // Enough records that the last ones lie pages beyond the damage.
    for i in 0..2000 {
        log.append(record(i)).await.unwrap();
    }
    let held: Vec<Bytes> = futures::future::try_join_all((1900..2000).map(|i| log.get(i)))
        .await
        .unwrap();
    let path = log.segments()[0].clone();
    log.close().await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = frame_offsets(&bytes)[10];
    bytes[at + 8] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let report = FileLog::repair(dir.path(), &options)
        .unwrap()
        .expect("a repair");
    assert_eq!(report.first_dropped_seq, 10);
    assert!(std::fs::metadata(&path).unwrap().len() < at as u64 + 8);
    for (i, record_bytes) in (1900..2000).zip(&held) {
        assert_eq!(record_bytes, &record(i));
    }
}
