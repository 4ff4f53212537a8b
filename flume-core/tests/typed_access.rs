//! Views are found by name with their reader's type; names are unique.
mod common;

use common::{Collect, CollectReader};
use flume_core::{Error, Flume, Waiter};
use flumelog_memory::MemoryLog;

#[tokio::test]
async fn duplicate_names_unknown_names_and_wrong_types_are_clear_errors() {
    let db = Flume::<u64>::new(MemoryLog::new())
        .use_view("v", Collect::new(1))
        .unwrap();
    let dup = db.clone().use_view("v", Collect::new(1)).unwrap_err();
    assert!(matches!(&dup, Error::DuplicateView { name } if name == "v"));
    assert_eq!(
        dup.to_string(),
        "a view named \"v\" already exists; view names must be unique"
    );
    let missing = db.view::<CollectReader>("nope").unwrap_err();
    assert!(matches!(missing, Error::NoSuchView { .. }));
    let wrong = db.view::<Waiter>("v").unwrap_err();
    assert!(matches!(wrong, Error::ViewType { .. }));
    assert!(wrong.to_string().contains("CollectReader"), "{wrong}");
    assert!(db.view::<CollectReader>("v").is_ok());
    assert_eq!(db.view_names(), vec!["v".to_string()]);
    db.close().await.unwrap();
}
