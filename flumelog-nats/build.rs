//! Tells the tests whether a `nats-server` binary exists, so that the tests that need one
//! report "ignored" without it (instead of passing without running).
//!
//! Sets `cfg(no_nats_server)` when no binary is found (`NATS_SERVER`, else `nats-server`
//! on `PATH` or in /usr/sbin, /usr/bin, /usr/local/bin) and `CI` is not `true`: under CI
//! the tests always run, and fail loudly without a server. After installing nats-server,
//! set `NATS_SERVER` (or change `PATH`) so that this script runs again.

#[path = "tests/support/find.rs"]
#[allow(unreachable_pub)] // the tests call it from their own module
mod find;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_nats_server)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=tests/support/find.rs");
    println!("cargo::rerun-if-env-changed=NATS_SERVER");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci && find::binary().is_none() {
        println!("cargo::rustc-cfg=no_nats_server");
    }
}
