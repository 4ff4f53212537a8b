//! How records sit in JetStream messages.
//!
//! Record `seq` is always the message with stream sequence `seq + 1`:
//!
//! - a single record is one message whose payload is the record, with no `Flume-*` header;
//! - a batch of `n >= 2` records at stream sequences `b..b+n` is one **batch message** at
//!   `b` (header `Flume-Batch: n`, payload the records framed as a 4-byte big-endian length
//!   then the bytes, for each record), followed by `n - 1` **fillers** at `b+1..b+n`
//!   (header `Flume-Filler: b/n`, empty payload) that hold the batch's later seqs.

use async_nats::HeaderMap;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Header of a batch message: the number of records it frames.
pub(crate) const BATCH: &str = "Flume-Batch";
/// Header of a filler: `<stream sequence of its batch message>/<records in the batch>`.
pub(crate) const FILLER: &str = "Flume-Filler";

/// What one stored message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A single record.
    Record(Bytes),
    /// The first message of a batch, with every record of the batch.
    Batch(Vec<Bytes>),
    /// A later seq of the batch whose message has stream sequence `batch`, of `len` records.
    Filler { batch: u64, len: u64 },
}

/// The shape of a message, read from its headers alone (what a headers-only consumer sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A single record.
    Record,
    /// A batch message of `len` records.
    Batch { len: u64 },
    /// A filler of the batch at `batch`, of `len` records.
    Filler { batch: u64, len: u64 },
}

impl Shape {
    /// The stream sequence that completes the message's batch (itself for a record).
    pub(crate) fn batch_end(self, sequence: u64) -> u64 {
        match self {
            Shape::Record => sequence,
            Shape::Batch { len } => sequence + len - 1,
            Shape::Filler { batch, len } => batch + len - 1,
        }
    }
}

/// The shape given by a message's headers.
pub(crate) fn shape(headers: Option<&HeaderMap>, sequence: u64) -> Result<Shape, String> {
    let Some(headers) = headers else {
        return Ok(Shape::Record);
    };
    if let Some(v) = headers.get(BATCH) {
        let len: u64 = v
            .as_str()
            .parse()
            .map_err(|_| format!("bad {BATCH} header {:?}", v.as_str()))?;
        if len < 2 {
            return Err(format!("{BATCH} header claims {len} records"));
        }
        return Ok(Shape::Batch { len });
    }
    if let Some(v) = headers.get(FILLER) {
        let bad = || format!("bad {FILLER} header {:?}", v.as_str());
        let (b, n) = v.as_str().split_once('/').ok_or_else(bad)?;
        let batch: u64 = b.parse().map_err(|_| bad())?;
        let len: u64 = n.parse().map_err(|_| bad())?;
        if batch >= sequence || sequence - batch >= len {
            return Err(format!(
                "filler of batch {batch}/{len} cannot be at stream sequence {sequence}"
            ));
        }
        return Ok(Shape::Filler { batch, len });
    }
    Ok(Shape::Record)
}

/// Decodes a whole message.
pub(crate) fn decode(
    headers: Option<&HeaderMap>,
    sequence: u64,
    payload: Bytes,
) -> Result<Entry, String> {
    Ok(match shape(headers, sequence)? {
        Shape::Record => Entry::Record(payload),
        Shape::Filler { batch, len } => Entry::Filler { batch, len },
        Shape::Batch { len } => Entry::Batch(unframe(payload, len)?),
    })
}

/// The size of a batch message's payload.
pub(crate) fn framed_len(records: &[Bytes]) -> usize {
    records.iter().map(|r| 4 + r.len()).sum()
}

/// Frames a batch's records into one payload.
pub(crate) fn frame(records: &[Bytes]) -> Result<Bytes, String> {
    let mut out = BytesMut::with_capacity(framed_len(records));
    for r in records {
        let len = u32::try_from(r.len()).map_err(|_| "a record exceeds 4 GiB".to_string())?;
        out.put_u32(len);
        out.put_slice(r);
    }
    Ok(out.freeze())
}

/// Splits a batch payload back into exactly `len` records.
fn unframe(mut payload: Bytes, len: u64) -> Result<Vec<Bytes>, String> {
    // Never trust `len` for the allocation: each record needs 4 bytes at least.
    let mut out = Vec::with_capacity((len as usize).min(payload.len() / 4));
    while payload.has_remaining() {
        if payload.remaining() < 4 {
            return Err("batch payload ends inside a length field".into());
        }
        let n = payload.get_u32() as usize;
        if payload.remaining() < n {
            return Err(format!(
                "batch record of {n} bytes runs past the payload's end"
            ));
        }
        out.push(payload.split_to(n));
    }
    if out.len() as u64 != len {
        return Err(format!(
            "batch payload holds {} records where its header says {len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let records = vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from_static(b"ccc"),
        ];
        let framed = frame(&records).unwrap();
        assert_eq!(framed.len(), framed_len(&records));
        assert_eq!(unframe(framed.clone(), 3).unwrap(), records);
        assert!(unframe(framed.clone(), 4).is_err());
        assert!(unframe(framed.slice(..framed.len() - 1), 3).is_err());
        assert!(unframe(Bytes::from_static(&[0, 0, 0xff, 0xff]), 1).is_err());
        assert!(unframe(Bytes::from_static(&[0, 0]), 1).is_err());
    }

    #[test]
    fn shapes() {
        let mut h = HeaderMap::new();
        assert_eq!(shape(Some(&h), 5), Ok(Shape::Record));
        assert_eq!(shape(None, 5), Ok(Shape::Record));
        h.insert(FILLER, "3/4");
        assert_eq!(shape(Some(&h), 5), Ok(Shape::Filler { batch: 3, len: 4 }));
        assert_eq!(Shape::Filler { batch: 3, len: 4 }.batch_end(5), 6);
        assert!(shape(Some(&h), 7).is_err());
        assert!(shape(Some(&h), 3).is_err());
        let mut h = HeaderMap::new();
        h.insert(BATCH, "1");
        assert!(shape(Some(&h), 1).is_err());
        h.insert(BATCH, "x");
        assert!(shape(Some(&h), 1).is_err());
        h.insert(BATCH, "3");
        assert_eq!(shape(Some(&h), 1), Ok(Shape::Batch { len: 3 }));
        assert_eq!(Shape::Batch { len: 3 }.batch_end(1), 3);
    }
}
