//! The commit schedule: what the writer has been asked to write and sync, how the last
//! fsyncs went, and whether the writer thread sleeps. It lives in the `tail` mutex
//! (appenders ask under the same lock as they queue), but its fields are private:
//! appenders ask through [`Schedule::ask_sync`], [`Schedule::ask_write`] and
//! [`Schedule::nudge`]; the writer keeps the fsync statistics
//! ([`Schedule::synced`]) and decides when to sync ([`Schedule::gather_until`]).

use std::time::{Duration, Instant};

/// How long the writer thread waits for the next synced appender of a group after the
/// last one came.
const GATHER_GAP: Duration = Duration::from_micros(50);

/// The longest a synced append waits for others to share its fdatasync.
const MAX_GATHER: Duration = Duration::from_millis(1);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// Records below this count must be synced as soon as possible.
    sync_upto: u64,
    /// Records below this count must be written as soon as possible.
    write_upto: u64,
    /// The writer thread waits without a timeout (nothing pending) and needs a
    /// notification.
    idle: bool,
    /// The writer thread waits on its condition variable (idle or for
    /// `max_write_delay`); when it does not, it looks at the tail again before it
    /// sleeps, so appenders need not wake it.
    asleep: bool,
    /// Synced appends (and sync requests of appends) the last fdatasync served: how
    /// many synced appenders were waiting together. Above 1, the writer thread gathers
    /// the next group ([`gather_until`](Self::gather_until)), and lone synced appends
    /// no longer sync inline.
    last_group: u64,
    /// Whether the recent fdatasyncs (an average over about the last eight) each
    /// served one synced appender: only then does a lone synced append sync on its own
    /// thread. One lone group among many (appenders that came back slowly) does not
    /// count.
    groups_of_one: bool,
    /// That average, in sixteenths of an appender.
    group_avg16: u64,
    /// Synced appends that asked for a sync since the writer thread last took one on.
    sync_asks: u64,
    /// How long the last fdatasync took.
    last_sync: Duration,
    /// When a sync was first asked for since the writer thread last took one on.
    sync_asked_at: Option<Instant>,
    /// When a sync was last asked for.
    sync_last_ask: Option<Instant>,
}

impl Schedule {
    pub(crate) fn new() -> Schedule {
        Schedule {
            sync_upto: 0,
            write_upto: 0,
            idle: false,
            asleep: false,
            last_group: 0,
            groups_of_one: true,
            group_avg16: 16,
            sync_asks: 0,
            last_sync: Duration::ZERO,
            sync_asked_at: None,
            sync_last_ask: None,
        }
    }

    /// Everything below `end` (a count) must be synced. `waiter`: a synced append waits
    /// for it (groups count those, and when they asked).
    pub(crate) fn ask_sync(&mut self, end: u64, waiter: bool) {
        self.sync_upto = self.sync_upto.max(end);
        if waiter {
            self.sync_asks += 1;
            let now = Instant::now();
            self.sync_asked_at.get_or_insert(now);
            self.sync_last_ask = Some(now);
        }
    }

    /// Everything below `end` (a count) must be written.
    pub(crate) fn ask_write(&mut self, end: u64) {
        self.write_upto = self.write_upto.max(end);
    }

    /// The writer thread must look at the tail again before it waits without a
    /// timeout. Returns whether it must be notified (it is asleep).
    pub(crate) fn nudge(&mut self) -> bool {
        self.idle = false;
        self.asleep
    }

    /// Whether the writer thread waits without a timeout.
    pub(crate) fn idle(&self) -> bool {
        self.idle
    }

    /// Whether the writer thread is asleep (appenders must notify it).
    pub(crate) fn asleep(&self) -> bool {
        self.asleep
    }

    /// The writer thread goes to sleep; `idle`: without a timeout.
    pub(crate) fn sleeping(&mut self, idle: bool) {
        self.asleep = true;
        self.idle |= idle;
    }

    /// The writer thread woke up.
    pub(crate) fn awake(&mut self) {
        self.asleep = false;
        self.idle = false;
    }

    /// Whether lone synced appends sync on their own thread.
    pub(crate) fn groups_of_one(&self) -> bool {
        self.groups_of_one
    }

    /// Records below this count must be synced.
    pub(crate) fn sync_upto(&self) -> u64 {
        self.sync_upto
    }

    /// Records below this count must be written.
    pub(crate) fn write_upto(&self) -> u64 {
        self.write_upto
    }

    /// The writer thread takes on the sync asked for: returns the synced appends it
    /// serves.
    pub(crate) fn take_asks(&mut self) -> u64 {
        self.sync_asked_at = None;
        std::mem::take(&mut self.sync_asks)
    }

    /// An fdatasync that served `asks` synced appends took `elapsed`.
    pub(crate) fn synced(&mut self, asks: u64, elapsed: Duration) {
        self.last_group = asks;
        if asks > 0 {
            // An average over about the last eight groups (a lone synced append that
            // synced inline counts as a group of one).
            self.group_avg16 = (self.group_avg16 * 7 + asks * 16) / 8;
            self.groups_of_one = self.group_avg16 <= 20;
        }
        self.last_sync = elapsed;
    }

    /// The log was reverted to `keep` records: nothing past it is asked for.
    pub(crate) fn revert(&mut self, keep: u64) {
        self.sync_upto = self.sync_upto.min(keep);
        self.write_upto = self.write_upto.min(keep);
    }

    /// Until when the writer thread waits before syncing, to gather the next group of
    /// synced appenders: when the last fdatasync served several of them (they come
    /// back together, each with its next append, within about the time of one
    /// fdatasync) and fewer than that await a sync now, it waits for the rest, at
    /// most as long as the last fdatasync took (and never more than [`MAX_GATHER`])
    /// after the first asked. Groups count synced appends, not records: buffered
    /// appends between two synced ones do not make a lone synced appender wait.
    /// Without this, the first appender back gets a sync of its own and the others
    /// wait for it to end. `None`: sync now. `durable`: records synced.
    pub(crate) fn gather_until(&self, durable: u64) -> Option<Instant> {
        gather_policy(
            self.sync_asks,
            self.sync_upto > durable,
            self.last_group,
            self.last_sync,
            self.sync_asked_at,
            self.sync_last_ask,
        )
    }
}

/// [`Schedule::gather_until`] on its inputs: synced appends waiting, whether a sync
/// is asked for, the last group's size and fdatasync time, when the sync was first and
/// last asked for. The wait also ends [`GATHER_GAP`] after the last ask: when the
/// appenders stop coming back quickly (a loaded machine), waiting longer only delays
/// them.
fn gather_policy(
    waiting: u64,
    asked: bool,
    last_group: u64,
    last_sync: Duration,
    first_ask: Option<Instant>,
    last_ask: Option<Instant>,
) -> Option<Instant> {
    if !asked || last_group <= 1 || waiting >= last_group {
        return None;
    }
    let window = first_ask? + last_sync.min(MAX_GATHER);
    Some(last_ask.map_or(window, |t| window.min(t + GATHER_GAP)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{gather_policy, Schedule, GATHER_GAP, MAX_GATHER};

    #[test]
    fn the_writer_gathers_a_group_only_after_a_group() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let first = Some(now);
        // Nothing asked, or a lone appender last time: sync at once.
        assert_eq!(gather_policy(3, false, 8, ms(1), first, first), None);
        assert_eq!(gather_policy(1, true, 1, ms(1), first, first), None);
        assert_eq!(gather_policy(1, true, 0, ms(1), first, first), None);
        // As many waiting as last time: the group is complete.
        assert_eq!(gather_policy(8, true, 8, ms(1), first, first), None);
        assert_eq!(gather_policy(9, true, 8, ms(1), first, first), None);
        // Fewer: wait for the rest, as long as the last fdatasync took, at most
        // MAX_GATHER, counted from the first ask...
        let short = Duration::from_micros(150);
        let last = Some(now + Duration::from_micros(120));
        assert_eq!(
            gather_policy(3, true, 8, short, first, last),
            Some(now + short)
        );
        assert_eq!(
            gather_policy(3, true, 8, ms(50), first, Some(now + ms(5))),
            Some(now + MAX_GATHER)
        );
        // ...and no longer than GATHER_GAP after the last ask.
        assert_eq!(
            gather_policy(3, true, 8, ms(1), first, first),
            Some(now + GATHER_GAP)
        );
        // No record of when it was asked (an explicit `sync`): at once.
        assert_eq!(gather_policy(3, true, 8, short, None, None), None);
    }

    #[test]
    fn one_group_ends_inline_syncs_and_two_lone_syncs_bring_them_back() {
        let mut schedule = Schedule::new();
        assert!(schedule.groups_of_one());
        // A group of four after lone syncs ends them: (16*7 + 64) / 8 = 22 > 20.
        schedule.synced(4, Duration::ZERO);
        assert_eq!(schedule.group_avg16, 22);
        assert!(!schedule.groups_of_one());
        schedule.synced(1, Duration::ZERO);
        assert_eq!(schedule.group_avg16, 21);
        assert!(!schedule.groups_of_one());
        schedule.synced(1, Duration::ZERO);
        assert_eq!(schedule.group_avg16, 20);
        assert!(schedule.groups_of_one());
        // A sync nobody waited for (an explicit `sync`, a sealed segment) changes
        // nothing but the last group.
        schedule.synced(0, Duration::ZERO);
        assert_eq!(schedule.group_avg16, 20);
        assert_eq!(schedule.last_group, 0);
    }

    #[test]
    fn a_revert_lowers_what_is_asked_for() {
        let mut schedule = Schedule::new();
        schedule.ask_sync(10, true);
        schedule.ask_write(12);
        schedule.revert(4);
        assert_eq!((schedule.sync_upto(), schedule.write_upto()), (4, 4));
        assert_eq!(schedule.take_asks(), 1);
        assert_eq!(schedule.take_asks(), 0);
    }
}
