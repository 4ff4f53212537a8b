//! The mapper applies before views and readers; every codec round-trips through the log.
mod common;

use common::{Collect, CollectReader};
use flume_core::{Error, Flume, MsgPack, Raw, StreamOptions, Wait};
use flumelog_memory::MemoryLog;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapper_applies_to_views_get_and_stream() {
    let db = Flume::<u64>::builder(MemoryLog::new(), flume_core::Json)
        .mapper(|v| {
            if v == 13 {
                Err("unlucky".into())
            } else {
                Ok(v * 100)
            }
        })
        .build()
        .use_view("v", Collect::new(1))
        .unwrap();
    db.append_batch(&[1, 2]).await.unwrap();
    let reader: CollectReader = db.view("v").unwrap();
    assert_eq!(
        reader.get(Wait::Log).await.unwrap(),
        vec![(0, 100), (1, 200)]
    );
    assert_eq!(db.get(1).await.unwrap(), 200);
    let streamed: Vec<_> = db
        .stream(StreamOptions::new())
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(streamed, vec![(0, 100), (1, 200)]);
    let seq = db.append(&13).await.unwrap();
    let err = db.get(seq).await.unwrap_err();
    assert!(matches!(err, Error::Codec { seq: Some(2), .. }), "{err}");
    assert!(err.to_string().contains("unlucky"));
    db.close().await.unwrap();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    author: String,
    n: u32,
}

#[tokio::test]
async fn msgpack_and_raw_codecs_round_trip() {
    let db = Flume::<Msg>::builder(MemoryLog::new(), MsgPack).build();
    let msg = Msg {
        author: "@a".into(),
        n: 3,
    };
    let seq = db.append(&msg).await.unwrap();
    assert_eq!(db.get(seq).await.unwrap(), msg);
    db.close().await.unwrap();

    let raw = Flume::<bytes::Bytes>::builder(MemoryLog::new(), Raw).build();
    let seq = raw
        .append(&bytes::Bytes::from_static(b"\x00\xff"))
        .await
        .unwrap();
    assert_eq!(&raw.get(seq).await.unwrap()[..], b"\x00\xff");
    raw.close().await.unwrap();
}

#[tokio::test]
async fn undecodable_bytes_are_a_codec_error_with_the_seq() {
    use flume_core::Log;
    let log = MemoryLog::new();
    log.append(bytes::Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let db = Flume::<u64>::new(log);
    let err = db.get(0).await.unwrap_err();
    assert!(matches!(err, Error::Codec { seq: Some(0), .. }), "{err}");
    assert!(
        err.to_string().starts_with("record 0: codec error"),
        "{err}"
    );
    db.close().await.unwrap();
}
