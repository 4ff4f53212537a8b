//! A torn last record whose payload embeds valid frames and segment headers of this very
//! format (a record holding a copy of another log) is a torn tail wherever the crash
//! cut it: recovery never reads inside a payload. Damage before it is still `Corrupt`.

use std::path::Path;

use bytes::Bytes;
use flume_core::{Durability, Error, Log};
use flumelog_file::{FileLog, FileLogOptions};

mod support;
use support::{frame, segment_header};

const SEG: &str = "00000000000000000000.seg";

fn record(i: u64) -> Bytes {
    Bytes::from(format!("record {i} ").repeat(1 + (i % 3) as usize))
}

/// A record that is a whole segment of this format (header, single records, a batch)
/// followed by more frames and another header: every prefix of it holds valid frames.
fn adversarial() -> Bytes {
    let mut v = Vec::new();
    for copy in 0..3u64 {
        v.extend(segment_header(copy * 10));
        frame(&mut v, b"hello", false);
        frame(&mut v, b"", false);
        frame(&mut v, b"batch-a", true);
        frame(&mut v, b"batch-b", false);
        frame(&mut v, &[0xab; 300], false);
    }
    Bytes::from(v)
}

/// The state a crash leaves while the last record was being appended: the segment's
/// bytes, with the tail marker as the open before the append wrote it (or none, as in a
/// directory written before the marker existed).
fn crash_state(work: &Path, bytes: &[u8], marker: Option<&[u8]>) {
    std::fs::write(work.join(SEG), bytes).unwrap();
    match marker {
        Some(marker) => std::fs::write(work.join("TAIL"), marker).unwrap(),
        None => {
            let _ = std::fs::remove_file(work.join("TAIL"));
        }
    }
}

/// Builds `kept` records, closes, reopens (the marker now covers them), copies the marker,
/// appends the adversarial record and closes: returns the segment's bytes, the marker a
/// crash during the last append would leave, and the last record's frame offset.
async fn build(dir: &Path, kept: u64) -> (Vec<u8>, Vec<u8>, usize) {
    let log = FileLog::open(dir, FileLogOptions::default()).await.unwrap();
    for i in 0..kept {
        log.append(record(i)).await.unwrap();
    }
    log.close().await.unwrap();
    let log = FileLog::open(dir, FileLogOptions::default()).await.unwrap();
    let marker = std::fs::read(dir.join("TAIL")).unwrap();
    let start = std::fs::metadata(dir.join(SEG)).unwrap().len() as usize;
    log.append_with(adversarial(), Some(Durability::Synced))
        .await
        .unwrap();
    log.close().await.unwrap();
    (std::fs::read(dir.join(SEG)).unwrap(), marker, start)
}

async fn check(work: &Path, kept: u64, start: usize, len: usize, what: &str) {
    let log = FileLog::open(work, FileLogOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: open refused: {e}"));
    let report = log
        .recovery()
        .unwrap_or_else(|| panic!("{what}: no torn tail reported"))
        .clone();
    assert_eq!(report.offset, start as u64, "{what}");
    assert_eq!(report.bytes_dropped, (len - start) as u64, "{what}");
    assert_eq!(report.records_dropped, 1, "{what}");
    assert_eq!(*log.since().borrow(), kept.checked_sub(1), "{what}");
    for i in 0..kept {
        assert_eq!(log.get(i).await.unwrap(), record(i), "{what}: record {i}");
    }
    // The log goes on from the cut.
    assert_eq!(log.append(record(kept)).await.unwrap(), kept, "{what}");
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_anywhere_in_a_record_holding_valid_frames_is_a_torn_tail() {
    let src = tempfile::tempdir().unwrap();
    let kept = 12;
    let (full, marker, start) = build(src.path(), kept).await;
    let work = tempfile::tempdir().unwrap();
    let mut trials = 0;
    // Every offset through the record's first frame header and the embedded segment
    // header, then every 17th (each open syncs a few times: a cut at every offset of
    // the record takes minutes).
    let cuts = (start + 1..start + 48).chain((start + 48..full.len()).step_by(17));
    for cut in cuts {
        // `pwrite` interrupted: the file ends at the cut, or zeros follow it.
        let zeros: &[usize] = if cut % 2 == 0 { &[0, 4096] } else { &[0] };
        for &zeros in zeros {
            let mut bytes = full[..cut].to_vec();
            bytes.resize(cut + zeros, 0);
            // Every third crash state without a marker.
            let marker = Some(&marker[..]).filter(|_| cut % 3 != 0);
            crash_state(work.path(), &bytes, marker);
            let what = format!(
                "pwrite cut at {cut} + {zeros} zeros, marker {}",
                marker.is_some()
            );
            check(work.path(), kept, start, bytes.len(), &what).await;
            trials += 1;
        }
        // A copy into the mapping interrupted: the payload (up to the cut) is there,
        // the frame header, copied last, is not; reserved zeros follow. (With nothing
        // of the payload copied, the zeros are just reserved space: nothing to cut.)
        if cut > start + 8 && cut % 2 == 1 {
            let mut bytes = full[..cut].to_vec();
            bytes[start..start + 8].fill(0);
            bytes.resize(full.len() + 4096, 0);
            let marker = Some(&marker[..]).filter(|_| cut % 3 != 0);
            crash_state(work.path(), &bytes, marker);
            let what = format!("mapped copy cut at {cut}, marker {}", marker.is_some());
            check(work.path(), kept, start, bytes.len(), &what).await;
            trials += 1;
        }
    }
    assert!(trials > 150, "{trials} trials");
}

/// A brand-new log whose very first append was interrupted (the cut is at byte 32).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_append_cut_short_leaves_an_empty_log() {
    let src = tempfile::tempdir().unwrap();
    let (full, marker, start) = build(src.path(), 0).await;
    assert_eq!(start, 32);
    let work = tempfile::tempdir().unwrap();
    for cut in (start + 1..full.len()).step_by(41) {
        crash_state(work.path(), &full[..cut], Some(&marker));
        check(work.path(), 0, start, cut, &format!("cut at {cut}")).await;
    }
}

/// Damage before the record is still damage: a flipped bit in an earlier record (whose
/// length leads to the next frame) is `Corrupt` at that record, marker or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_a_record_holding_frames_is_still_corrupt() {
    let src = tempfile::tempdir().unwrap();
    let kept = 12;
    let (full, _, _) = build(src.path(), kept).await;
    let closed_marker = std::fs::read(src.path().join("TAIL")).unwrap();
    let work = tempfile::tempdir().unwrap();
    // Record 5's frame: walk the frames from the header.
    let mut at = 32;
    for _ in 0..5 {
        let len = u32::from_le_bytes(full[at..at + 4].try_into().unwrap()) & 0x7fff_ffff;
        at += 8 + len as usize;
    }
    let mut bytes = full.clone();
    bytes[at + 10] ^= 0x04;
    for marker in [Some(&closed_marker), None] {
        std::fs::write(work.path().join(SEG), &bytes).unwrap();
        match marker {
            Some(m) => std::fs::write(work.path().join("TAIL"), m).unwrap(),
            None => {
                let _ = std::fs::remove_file(work.path().join("TAIL"));
            }
        }
        match FileLog::open(work.path(), FileLogOptions::default()).await {
            Err(Error::Corrupt {
                path,
                offset,
                reason,
            }) => {
                assert_eq!(path, work.path().join(SEG));
                assert_eq!(offset, at as u64, "{reason}");
                assert!(reason.contains("FileLog::repair"), "{reason}");
            }
            other => panic!(
                "marker {}: expected Corrupt, got {other:?}",
                marker.is_some()
            ),
        }
    }
}
