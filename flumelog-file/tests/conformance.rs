//! The shared log conformance suite (`flume_core::testing`) run against `FileLog`,
//! once with the defaults and once with tiny segments, synced appends and no write delay.

use flumelog_file::{Durability, FileLog, FileLogOptions};

flume_core::log_conformance_tests!({
    let dir = tempfile::tempdir().expect("tempdir");
    let mut made = 0;
    move || {
        made += 1;
        let path = dir.path().join(format!("log-{made}"));
        async move {
            FileLog::open(path, FileLogOptions::default())
                .await
                .expect("open a fresh log")
        }
    }
});

flume_core::log_conformance_tests!(small_segments_synced => {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut made = 0;
    move || {
        made += 1;
        let path = dir.path().join(format!("log-{made}"));
        async move {
            let options = FileLogOptions::default()
                .segment_size(4096)
                .durability(Durability::Synced)
                .max_write_delay(std::time::Duration::ZERO);
            FileLog::open(path, options).await.expect("open a fresh log")
        }
    }
});
