//! A byte dump for snapshot tests of file formats.

/// An `xxd`-style dump of `bytes` (offset, 16 bytes as hex pairs, printable ASCII), for
/// snapshot tests that pin a file format byte by byte.
///
/// ```
/// let dump = flume_core::testing::hexdump(b"flume\x00\x01");
/// assert_eq!(dump, "00000000: 666c 756d 6500 01                        flume..\n");
/// ```
pub fn hexdump(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}:", i * 16);
        for pair in line.chunks(2) {
            out.push(' ');
            for b in pair {
                let _ = write!(out, "{b:02x}");
            }
        }
        let used = line.len() * 2 + line.len().div_ceil(2);
        out.push_str(&" ".repeat(40 - used));
        out.push_str("  ");
        out.extend(line.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}
