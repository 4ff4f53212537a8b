//! Where the nats-server binary is: shared by the tests' support module and the crate's
//! build script (which includes this file), so that both search the same places.

use std::path::PathBuf;

/// The nats-server binary, if there is one: `NATS_SERVER`, else `nats-server` on `PATH`
/// or in the usual directories.
pub fn binary() -> Option<PathBuf> {
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
