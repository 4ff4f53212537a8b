//! Tells the tests whether a `nats-server` binary exists, so that the tests that need one
//! report "ignored" without it (instead of passing without running).
//!
//! Sets `cfg(no_nats_server)` when no binary is found (`NATS_SERVER`, else `nats-server`
//! on `PATH` or in /usr/sbin, /usr/bin, /usr/local/bin) and `CI` is not `true`: under CI
//! the tests always run, and fail loudly without a server. After installing nats-server,
//! set `NATS_SERVER` (or change `PATH`) so that this script runs again.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_nats_server)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=NATS_SERVER");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci && nats_server().is_none() {
        println!("cargo::rustc-cfg=no_nats_server");
    }
}

/// The binary the tests' `support::binary` finds, if any.
fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}
