//! Runnable flume-rs examples. Each file in `examples/examples/` is a program:
//!
//! - `quickstart`: a memory log, a reduce view, append and read;
//! - `custom_view`: a hand-written view (latest message per author);
//! - `file_log`: a durable log with a persisted view that resumes where it stopped;
//! - `index`: SSB-style messages indexed by key and by (author, seq), with a rebuild
//!   progress bar;
//! - `kv`: a Get/Put/Delete store on the file log with compare-and-set (`flumeview-kv`);
//! - `documents`: versioned JSON documents: create, update on the version read, a
//!   conflicting update, history and an as-of read;
//! - `replicated_kv`: two instances of a KV store on one JetStream stream racing to
//!   compare-and-set the same key (needs a `nats-server`);
//! - `workload`: the driver that runs flume-rs in the shared benchmark harness.
//!
//! Run one with `cargo run -p examples --example quickstart`.

/// The README's example, compiled and run as a doctest (`cargo test -p examples --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every relative link of the README names a file or directory of the repository:
    /// none leaves it (`../`), none is absolute.
    #[test]
    fn readme_links_stay_inside_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        let mut checked = 0;
        for target in readme
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.starts_with("https://") || target.starts_with('#') {
                continue;
            }
            assert!(
                !target.starts_with('/') && !target.split('/').any(|part| part == ".."),
                "README.md links outside the repository: {target}"
            );
            assert!(
                root.join(target).exists(),
                "README.md links to {target}, which does not exist"
            );
            checked += 1;
        }
        assert!(
            checked >= 9,
            "only {checked} relative links found in README.md"
        );
    }
}
