//! Tells the NATS tests of the examples whether a `nats-server` binary exists, exactly as
//! flumelog-nats's build script does (the same search, shared through its `find.rs`): sets
//! `cfg(no_nats_server)` when there is none and `CI` is not `true`, so that those tests
//! report "ignored" instead of passing without running.

#[path = "../flumelog-nats/tests/support/find.rs"]
#[allow(unreachable_pub)] // the tests call it from their own module
mod find;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_nats_server)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../flumelog-nats/tests/support/find.rs");
    println!("cargo::rerun-if-env-changed=NATS_SERVER");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci && find::binary().is_none() {
        println!("cargo::rustc-cfg=no_nats_server");
    }
}
