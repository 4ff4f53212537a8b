//! Merging the memtables and runs into one ordered stream, and turning that stream into
//! answers: the live (key, seq) pairs a scan returns, or the entries a compaction keeps.

use std::collections::VecDeque;

use flume_core::{Result, Seq};

use crate::entry::{Entry, Kind};
use crate::run::RunCursor;
use crate::{Retention, Semantics};

/// One ordered source of entries.
pub(crate) enum Source {
    /// A copy of a memtable's range, in storage order.
    Mem(VecDeque<Entry>),
    /// A run.
    Run(RunCursor),
    /// A part of a memtable's entries cut short (see `Memtable::key_part`): when it runs
    /// out, the merge stops, as what follows may lack entries.
    Cut(VecDeque<Entry>),
}

impl Source {
    fn next(&mut self, reverse: bool) -> Result<Option<Entry>> {
        match self {
            Source::Mem(entries) | Source::Cut(entries) if reverse => Ok(entries.pop_back()),
            Source::Mem(entries) | Source::Cut(entries) => Ok(entries.pop_front()),
            Source::Run(cursor) => cursor.next_entry(),
        }
    }
}

/// Merges sources that are each in storage order (or each reversed) into one stream in
/// that order, dropping duplicates and entries at or below `min_seq`.
pub(crate) struct Merge {
    sources: Vec<Source>,
    heads: Vec<Option<Entry>>,
    reverse: bool,
    min_seq: Option<Seq>,
    started: bool,
    /// A cut source ran out: the stream ends here, incomplete.
    incomplete: bool,
}

impl Merge {
    pub(crate) fn new(sources: Vec<Source>, reverse: bool, min_seq: Option<Seq>) -> Self {
        Merge {
            heads: Vec::with_capacity(sources.len()),
            sources,
            reverse,
            min_seq,
            started: false,
            incomplete: false,
        }
    }

    /// Whether the stream ended early because a cut source ran out (see
    /// [`Source::Cut`]).
    pub(crate) fn incomplete(&self) -> bool {
        self.incomplete
    }

    fn pull(&mut self, i: usize) -> Result<()> {
        loop {
            let next = self.sources[i].next(self.reverse)?;
            match next {
                Some(e) if self.min_seq.is_some_and(|m| e.seq <= m) => continue,
                other => {
                    if other.is_none() && matches!(self.sources[i], Source::Cut(_)) {
                        self.incomplete = true;
                    }
                    self.heads[i] = other;
                    return Ok(());
                }
            }
        }
    }

    /// The next entry of the merged stream.
    ///
    /// # Errors
    /// [`flume_core::Error::Corrupt`] from a damaged run block.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.started = true;
            self.heads = (0..self.sources.len()).map(|_| None).collect();
            for i in 0..self.sources.len() {
                self.pull(i)?;
            }
        }
        if self.incomplete {
            return Ok(None);
        }
        let mut best: Option<usize> = None;
        for (i, head) in self.heads.iter().enumerate() {
            let Some(e) = head else { continue };
            best = match best {
                None => Some(i),
                Some(b) => {
                    let current = self.heads[b].as_ref();
                    let better = current.is_some_and(|c| if self.reverse { e > c } else { e < c });
                    if better {
                        Some(i)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let Some(b) = best else { return Ok(None) };
        let entry = self.heads[b].take();
        self.pull(b)?;
        // The same entry in several sources (never in normal operation) counts once.
        for i in 0..self.heads.len() {
            if self.heads[i].is_some() && self.heads[i] == entry {
                self.pull(i)?;
            }
        }
        Ok(entry)
    }
}

/// One answer of a scan: a key and a seq it points at.
pub type Pair = (Box<[u8]>, Seq);

/// Collects the live (key, seq) pairs of a merged stream, at most
/// `limit` of them: forward in (key, seq) order, reverse in the opposite order.
///
/// A put is live when no delete of its key has a higher seq (and, under
/// [`Semantics::SingleValued`], no put either) and no remove has its seq. Memory: one
/// key's live seqs, at most `limit` of them.
pub(crate) fn live_pairs(
    merge: &mut Merge,
    reverse: bool,
    limit: Option<usize>,
    semantics: Semantics,
) -> Result<Vec<Pair>> {
    let mut out: Vec<Pair> = Vec::new();
    walk_live(merge, reverse, limit, semantics, |key, seq| {
        out.push((key.clone(), seq));
    })?;
    Ok(out)
}

/// How many live pairs a forward walk of the stream finds (what [`live_pairs`] would
/// return, without collecting them).
pub(crate) fn count_live(merge: &mut Merge, semantics: Semantics) -> Result<usize> {
    let mut n = 0;
    walk_live(merge, false, None, semantics, |_, _| n += 1)?;
    Ok(n)
}

/// One key's live seqs as a walk finds them, at most `remaining` of them.
struct Group {
    key: Option<Box<[u8]>>,
    live: VecDeque<Seq>,
    /// Forward: the rest of the group is hidden.
    dead: bool,
    /// Forward: the seq of the last remove seen (it precedes the put it hides).
    removed: Option<Seq>,
    /// Reverse: a put not yet known to be live (its remove, if any, comes next).
    pending: Option<Seq>,
}

impl Group {
    /// Reverse: the pending put, not removed after all, joins the live seqs.
    fn commit(&mut self, remaining: usize) {
        if let Some(seq) = self.pending.take() {
            self.live.push_back(seq);
            if self.live.len() > remaining {
                self.live.pop_front();
            }
        }
    }
}

/// Calls `found` with each live (key, seq) pair of a merged stream, at most `limit` of them, in the order [`live_pairs`] returns them.
fn walk_live(
    merge: &mut Merge,
    reverse: bool,
    limit: Option<usize>,
    semantics: Semantics,
    mut found: impl FnMut(&Box<[u8]>, Seq),
) -> Result<()> {
    let single = semantics == Semantics::SingleValued;
    let mut remaining = limit.unwrap_or(usize::MAX);
    let mut g = Group {
        key: None,
        live: VecDeque::new(),
        dead: false,
        removed: None,
        pending: None,
    };
    let mut flush = |g: &mut Group, remaining: &mut usize| {
        g.commit(*remaining);
        if let Some(key) = &g.key {
            for &seq in g.live.iter().rev() {
                found(key, seq);
            }
            *remaining -= g.live.len();
            g.live.clear();
        }
    };
    while remaining > 0 {
        let Some(e) = merge.next_entry()? else { break };
        if g.key.as_deref() != Some(&*e.key) {
            flush(&mut g, &mut remaining);
            if remaining == 0 {
                g.key = None;
                break;
            }
            g.key = Some(e.key);
            g.dead = false;
            g.removed = None;
        }
        if reverse {
            // Oldest first within a key (at one seq: delete, put, remove): a delete
            // hides what came before it, and so does a put when the store is
            // single-valued (even a removed one); a remove right after its put hides it.
            if e.kind == Kind::Remove && g.pending == Some(e.seq) {
                g.pending = None;
                continue;
            }
            g.commit(remaining);
            match e.kind {
                Kind::Put => {
                    if single {
                        g.live.clear();
                    }
                    g.pending = Some(e.seq);
                }
                Kind::Delete => g.live.clear(),
                Kind::Remove => {}
            }
        } else {
            // Newest first within a key (at one seq: remove, put, delete): a delete
            // hides the rest of the group, and so does a put when the store is
            // single-valued (even a removed one); a remove hides the put right after it.
            if g.dead {
                continue;
            }
            match e.kind {
                Kind::Remove => g.removed = Some(e.seq),
                Kind::Put => {
                    if g.removed != Some(e.seq) {
                        g.live.push_back(e.seq);
                        if g.live.len() > remaining {
                            g.live.pop_front();
                        }
                    }
                    g.dead = single;
                }
                Kind::Delete => g.dead = true,
            }
        }
    }
    flush(&mut g, &mut remaining);
    Ok(())
}

/// What a compaction keeps of a merged stream (forward order), as the store's
/// [`Semantics`] and [`Retention`] say.
///
/// [`Retention::Live`]: the entries that are not hidden (the puts above each key's
/// newest delete; under [`Semantics::SingleValued`] only each key's newest entry), and a
/// delete only when older runs may still hold the key (`keep_deletes`).
/// [`Retention::All`]: every entry. [`Retention::Since`]`(h)`: what `Live` keeps, every
/// entry above `h`, each key's newest put or delete at or below `h`, and every remove.
///
/// A remove that meets its put under `Live` goes with it: in a multi-valued store both
/// are dropped; in a single-valued one the removed put still hides the older entries of
/// its key, so the pair stays (like a delete) while an older run may hold the key, and
/// the older entries go. A remove whose put is not in the merge stays only while an
/// older run may hold that put (`keep_deletes`).
pub(crate) struct Compacted {
    merge: Merge,
    keep_deletes: bool,
    semantics: Semantics,
    retention: Retention,
    group: Option<Box<[u8]>>,
    /// Whether the rest of the group is hidden.
    dead: bool,
    /// Whether the group's newest entry at or below the `Since` horizon has been seen.
    below: bool,
    /// `Live`: a remove waiting to see whether its put comes next.
    remove: Option<Entry>,
    /// An entry read past a pending remove, to process next.
    next: Option<Entry>,
    /// An entry to write next as it is.
    ready: Option<Entry>,
}

impl Compacted {
    pub(crate) fn new(
        merge: Merge,
        keep_deletes: bool,
        semantics: Semantics,
        retention: Retention,
    ) -> Self {
        Compacted {
            merge,
            keep_deletes,
            semantics,
            retention,
            group: None,
            dead: false,
            below: false,
            remove: None,
            next: None,
            ready: None,
        }
    }

    /// The next entry to write.
    ///
    /// # Errors
    /// [`flume_core::Error::Corrupt`] from a damaged run block.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        if let Some(e) = self.ready.take() {
            return Ok(Some(e));
        }
        loop {
            let e = match self.next.take() {
                Some(e) => Some(e),
                None => self.merge.next_entry()?,
            };
            if let Some(remove) = self.remove.take() {
                // A pending remove (under `Live`, in a live part of its group).
                let meets = e.as_ref().is_some_and(|e| {
                    e.kind == Kind::Put && e.seq == remove.seq && e.key == remove.key
                });
                if meets {
                    // The remove and its put cancel out; but a removed put of a
                    // single-valued store still hides the rest of its group, so the
                    // pair stays while an older run may hold older entries.
                    if self.semantics == Semantics::SingleValued {
                        self.dead = true;
                        if self.keep_deletes {
                            self.ready = e;
                            return Ok(Some(remove));
                        }
                    }
                    continue;
                }
                self.next = e;
                if self.keep_deletes {
                    return Ok(Some(remove));
                }
                continue;
            }
            let Some(e) = e else {
                return Ok(None);
            };
            if self.retention == Retention::All {
                return Ok(Some(e));
            }
            if self.group.as_deref() != Some(&*e.key) {
                self.group = Some(e.key.clone());
                self.dead = false;
                self.below = false;
            }
            if e.kind == Kind::Remove {
                match self.retention {
                    Retention::Since(_) => return Ok(Some(e)),
                    _ if self.dead => continue,
                    _ => {
                        self.remove = Some(e);
                        continue;
                    }
                }
            }
            // What `Live` keeps.
            let live = !self.dead && (e.kind == Kind::Put || self.keep_deletes);
            if !self.dead {
                self.dead = e.kind == Kind::Delete || self.semantics == Semantics::SingleValued;
            }
            let keep = match self.retention {
                Retention::Live | Retention::All => live,
                Retention::Since(h) if e.seq > h => true,
                Retention::Since(_) => {
                    let newest_below = !self.below;
                    self.below = true;
                    live || newest_below
                }
            };
            if keep {
                return Ok(Some(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(entries: &[(&str, Seq, Kind)]) -> Source {
        let mut v: Vec<Entry> = entries
            .iter()
            .map(|(k, s, kind)| Entry::new(k.as_bytes(), *s, *kind))
            .collect();
        v.sort();
        Source::Mem(v.into())
    }

    fn pairs(reverse: bool, limit: Option<usize>) -> Vec<(String, Seq)> {
        use Kind::*;
        let sources = vec![
            mem(&[("a", 1, Put), ("a", 3, Put), ("b", 2, Put), ("c", 4, Put)]),
            mem(&[
                ("a", 5, Delete),
                ("a", 5, Put),
                ("a", 6, Put),
                ("b", 7, Delete),
                ("c", 4, Put),
            ]),
        ];
        let mut merge = Merge::new(sources, reverse, None);
        live_pairs(&mut merge, reverse, limit, Semantics::MultiValued)
            .expect("memory")
            .into_iter()
            .map(|(k, s)| (String::from_utf8(k.into_vec()).expect("utf8"), s))
            .collect()
    }

    fn owned(v: &[(&str, Seq)]) -> Vec<(String, Seq)> {
        v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    #[test]
    fn deletes_hide_older_puts_in_both_directions() {
        assert_eq!(pairs(false, None), owned(&[("a", 5), ("a", 6), ("c", 4)]));
        assert_eq!(pairs(true, None), owned(&[("c", 4), ("a", 6), ("a", 5)]));
        assert_eq!(pairs(false, Some(1)), owned(&[("a", 5)]));
        assert_eq!(pairs(true, Some(2)), owned(&[("c", 4), ("a", 6)]));
        assert_eq!(pairs(false, Some(0)), owned(&[]));
    }

    #[test]
    fn compaction_keeps_live_puts_and_the_newest_delete() {
        use Kind::*;
        let run = |keep| {
            let merge = Merge::new(
                vec![mem(&[
                    ("a", 1, Put),
                    ("a", 2, Delete),
                    ("a", 3, Put),
                    ("a", 4, Delete),
                    ("a", 4, Put),
                    ("b", 1, Put),
                ])],
                false,
                None,
            );
            let mut c = Compacted::new(merge, keep, Semantics::MultiValued, Retention::Live);
            let mut out = Vec::new();
            while let Some(e) = c.next_entry().expect("memory") {
                out.push((e.key.to_vec(), e.seq, e.kind));
            }
            out
        };
        assert_eq!(
            run(true),
            vec![
                (b"a".to_vec(), 4, Put),
                (b"a".to_vec(), 4, Delete),
                (b"b".to_vec(), 1, Put)
            ]
        );
        assert_eq!(
            run(false),
            vec![(b"a".to_vec(), 4, Put), (b"b".to_vec(), 1, Put)]
        );
    }
}
