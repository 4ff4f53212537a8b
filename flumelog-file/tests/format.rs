//! The bytes `FileLog` writes, pinned: a segment holding single records and a batch.
//! `docs/format.md` explains every byte of this dump.

use bytes::Bytes;
use flume_core::durable::hexdump;
use flume_core::Log;
use flumelog_file::{FileLog, FileLogOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_segments_are_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default().segment_size(64))
        .await
        .unwrap();
    log.append(Bytes::from_static(b"hello")).await.unwrap();
    log.append(Bytes::new()).await.unwrap();
    log.append_batch(vec![
        Bytes::from_static(b"batch-a"),
        Bytes::from_static(b"batch-b"),
    ])
    .await
    .unwrap();
    log.close().await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    insta::assert_snapshot!("directory", names.join("\n"));
    let first = std::fs::read(dir.path().join("00000000000000000000.seg")).unwrap();
    insta::assert_snapshot!("segment_0", hexdump(&first));
    let second = std::fs::read(dir.path().join("00000000000000000002.seg")).unwrap();
    insta::assert_snapshot!("segment_2", hexdump(&second));
    // The tail marker after a clean close: segment 2, every byte of it durable.
    let tail = std::fs::read(dir.path().join("TAIL")).unwrap();
    assert_eq!(tail[24..32], (second.len() as u64).to_le_bytes());
    insta::assert_snapshot!("tail", hexdump(&tail));
}
