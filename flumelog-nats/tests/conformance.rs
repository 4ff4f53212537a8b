//! The shared log conformance suite (`flume_core::testing`) against a real nats-server:
//! one single-node JetStream server per test, a fresh stream per log.
//!
//! Every test here needs a server (hence the module name); see `support` for how they are
//! ignored when no `nats-server` binary exists.

mod support;

use flumelog_nats::{NatsLog, NatsOptions};

macro_rules! with_nats_server {
    ($($case:ident)*) => {
        mod with_nats_server {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(no_nats_server, ignore = "no nats-server: set NATS_SERVER or PATH")]
                async fn $case() {
                    let binary = support::server_binary(stringify!($case));
                    let server = support::Single::start(binary);
                    let url = server.url();
                    let mut made = 0;
                    let factory = move || {
                        made += 1;
                        let url = url.clone();
                        async move {
                            NatsLog::connect(&url, NatsOptions::new(format!("conformance-{made}")))
                                .await
                                .expect("open a fresh NATS log")
                        }
                    };
                    flume_core::testing::$case(factory).await;
                    drop(server);
                }
            )*
        }
    };
}

// Every case of the suite, including any added later.
flume_core::log_conformance_case_names! { [with_nats_server] }
