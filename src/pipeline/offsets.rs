//! Which offsets may be committed: per partition, the lowest offset not yet done.
//!
//! Messages of one partition are read in offset order but finish out of order (they go
//! to different workers, and one may wait for an alert delivery). Committing the offset
//! of whatever finished last would skip unfinished work on a crash, so the tracker keeps,
//! per assigned partition, the offsets read and not yet done; the committable offset (the
//! next offset a restarted consumer reads) is the lowest of them, or one past the last
//! read when none is pending.
//!
//! Every assignment of a partition gets a fresh epoch. Work carries the epoch it was read
//! under, and completions from an earlier epoch (the partition was revoked and maybe
//! assigned back while the work was in flight) are ignored: that work will be read again
//! by whoever owns the partition now, and its completion must not move their offsets.
//!
//! The tracker is owned by the ingest thread; nothing here locks.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Which of the topics vitalwatch reads a partition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Source {
    /// `kafka.input_topic`, assigned by the consumer group.
    Input,
    /// `kafka.repartition_topic`: its partition p is assigned with the input's partition
    /// p, never on its own (`pipeline::repartition`).
    Repartition,
}

/// One partition of one of the topics vitalwatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tp {
    pub(crate) source: Source,
    pub(crate) partition: i32,
}

impl Tp {
    pub(crate) const fn input(partition: i32) -> Tp {
        Tp {
            source: Source::Input,
            partition,
        }
    }

    pub(crate) const fn repartition(partition: i32) -> Tp {
        Tp {
            source: Source::Repartition,
            partition,
        }
    }

    /// The same partition number of the other topic: what is assigned and revoked with it.
    pub(crate) const fn shadow(self) -> Tp {
        Tp {
            source: match self.source {
                Source::Input => Source::Repartition,
                Source::Repartition => Source::Input,
            },
            partition: self.partition,
        }
    }

    /// A number unique per partition of either topic (patient state remembers it).
    pub(crate) const fn key(self) -> u64 {
        ((self.source as u64) << 32) | self.partition as u32 as u64
    }
}

impl From<i32> for Tp {
    /// A partition of the input topic.
    fn from(partition: i32) -> Tp {
        Tp::input(partition)
    }
}

impl std::hash::Hash for Tp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.key());
    }
}

/// Partition numbers are small integers: hashing them with SipHash cost a third of the
/// tracker's time per message (criterion `offsets` bench). One multiplication spreads
/// them over the bits the hash table looks at (Fibonacci hashing).
#[derive(Default)]
struct PartitionHasher(u64);

impl Hasher for PartitionHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PartitionMap<V> = HashMap<Tp, V, BuildHasherDefault<PartitionHasher>>;

/// Identifies one assignment of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    pub(crate) source: Source,
    pub partition: i32,
    pub epoch: u64,
}

impl Claim {
    pub(crate) const fn tp(self) -> Tp {
        Tp {
            source: self.source,
            partition: self.partition,
        }
    }
}

#[derive(Debug)]
struct PartitionState {
    epoch: u64,
    /// Offsets read and not yet known done, ascending, with their done flag. The front is
    /// always not done (done entries at the front are popped at once).
    pending: VecDeque<(i64, bool)>,
    /// One past the highest offset read under this epoch, if any was read.
    next_read: Option<i64>,
    /// The committable offset last handed out by [`OffsetTracker::take_advanced`].
    reported: Option<i64>,
    /// Entries in `pending` not yet done.
    in_flight: usize,
}

impl PartitionState {
    /// Where `offset` is in `pending`. Offsets read are usually consecutive, so the
    /// distance from the front is tried first; gaps (compacted or transactional topics)
    /// fall back to a binary search.
    fn position(&self, offset: i64) -> Option<usize> {
        let front = self.pending.front()?.0;
        let guess = usize::try_from(offset.checked_sub(front)?).ok()?;
        if self.pending.get(guess).is_some_and(|&(o, _)| o == offset) {
            return Some(guess);
        }
        self.pending.binary_search_by_key(&offset, |&(o, _)| o).ok()
    }

    fn committable(&self) -> Option<i64> {
        match self.pending.front() {
            Some(&(offset, _)) => Some(offset),
            None => self.next_read,
        }
    }
}

/// Why a completion did not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The partition is not assigned, or was assigned again since the work was read.
    Revoked,
    /// The offset is not pending (completed twice, or never read).
    Unknown,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: PartitionMap<PartitionState>,
    next_epoch: u64,
    /// Per partition, kept across revokes: the lineage of the offsets this instance read
    /// and the offset after the last one ([`OffsetTracker::lineage`]).
    lineages: PartitionMap<(u64, i64)>,
    next_lineage: u64,
    /// Partitions whose committable offset moved since the last `take_advanced`.
    dirty: Vec<Tp>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking `partition` under a fresh epoch, forgetting any earlier state.
    pub fn assign(&mut self, tp: impl Into<Tp>) -> Claim {
        let tp = tp.into();
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.partitions.insert(
            tp,
            PartitionState {
                epoch,
                pending: VecDeque::new(),
                next_read: None,
                reported: None,
                in_flight: 0,
            },
        );
        Claim {
            source: tp.source,
            partition: tp.partition,
            epoch,
        }
    }

    /// Stops tracking `partition`. Returns its committable offset at this moment (only
    /// finished work is below it) so the caller can commit it before letting go.
    pub(crate) fn revoke(&mut self, tp: impl Into<Tp>) -> Option<i64> {
        let tp = tp.into();
        self.dirty.retain(|&p| p != tp);
        self.partitions.remove(&tp).and_then(|s| s.committable())
    }

    /// The current claim on `tp`, if assigned.
    pub fn claim(&self, tp: impl Into<Tp>) -> Option<Claim> {
        let tp = tp.into();
        self.partitions.get(&tp).map(|s| Claim {
            source: tp.source,
            partition: tp.partition,
            epoch: s.epoch,
        })
    }

    /// Records that `offset` was read under `claim`. Offsets of one claim must be read in
    /// ascending order (as a consumer delivers them). Returns false, and records nothing,
    /// for a stale claim or an offset not above the last one read (a redelivery after a
    /// seek belongs to a new claim).
    pub fn begin(&mut self, claim: Claim, offset: i64) -> bool {
        let Some(state) = self.partitions.get_mut(&claim.tp()) else {
            return false;
        };
        if state.epoch != claim.epoch || state.next_read.is_some_and(|n| offset < n) {
            return false;
        }
        state.pending.push_back((offset, false));
        state.next_read = Some(offset + 1);
        state.in_flight += 1;
        true
    }

    /// The lineage of `offset` of `partition`, read just now: the same number as the
    /// message before it when this instance read that one and `offset` follows it
    /// directly, a new number otherwise (the first read, a gap — another consumer
    /// processed the partition meanwhile — or a rewind after an uncommitted revoke or a
    /// crash). Per-patient rule state built from one lineage is valid for the next
    /// message only within the same lineage; unlike the epoch, a lineage survives a
    /// rebalance that hands a partition back where this instance left off.
    pub(crate) fn lineage(&mut self, tp: impl Into<Tp>, offset: i64) -> u64 {
        let next = &mut self.next_lineage;
        let entry = self.lineages.entry(tp.into()).or_insert_with(|| {
            *next += 1;
            (*next, offset)
        });
        if entry.1 != offset {
            *next += 1;
            entry.0 = *next;
        }
        entry.1 = offset.saturating_add(1);
        entry.0
    }

    /// Records that the work at `offset` under `claim` is done.
    pub fn complete(&mut self, claim: Claim, offset: i64) -> Result<(), Stale> {
        let Some(state) = self.partitions.get_mut(&claim.tp()) else {
            return Err(Stale::Revoked);
        };
        if state.epoch != claim.epoch {
            return Err(Stale::Revoked);
        }
        let idx = state.position(offset).ok_or(Stale::Unknown)?;
        if state.pending[idx].1 {
            return Err(Stale::Unknown);
        }
        state.pending[idx].1 = true;
        state.in_flight -= 1;
        if idx == 0 {
            while state.pending.front().is_some_and(|&(_, done)| done) {
                state.pending.pop_front();
            }
            if !self.dirty.contains(&claim.tp()) {
                self.dirty.push(claim.tp());
            }
        }
        Ok(())
    }

    /// The offset a restarted consumer should resume `partition` at: every message below
    /// it is done. `None` when nothing was read under the current claim.
    pub fn committable(&self, tp: impl Into<Tp>) -> Option<i64> {
        self.partitions
            .get(&tp.into())
            .and_then(|s| s.committable())
    }

    /// Partitions whose committable offset moved since the last call, with that offset.
    pub(crate) fn take_advanced(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::with_capacity(self.dirty.len());
        for p in self.dirty.drain(..) {
            if let Some(state) = self.partitions.get_mut(&p)
                && let Some(c) = state.committable()
                && state.reported != Some(c)
            {
                state.reported = Some(c);
                out.push((p, c));
            }
        }
        out
    }

    /// One past the highest offset read under the current claim of `tp`.
    pub(crate) fn next_read(&self, tp: impl Into<Tp>) -> Option<i64> {
        self.partitions.get(&tp.into()).and_then(|s| s.next_read)
    }

    /// Messages read and not done on `tp`.
    pub(crate) fn in_flight(&self, tp: impl Into<Tp>) -> usize {
        self.partitions.get(&tp.into()).map_or(0, |s| s.in_flight)
    }

    /// Messages read and not done, over all partitions.
    pub fn total_in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.in_flight).sum()
    }

    /// Assigned partitions of `source` with their committable offsets (those that read
    /// anything).
    pub(crate) fn committable_all(&self, source: Source) -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .filter(|(tp, _)| tp.source == source)
            .filter_map(|(tp, s)| s.committable().map(|c| (tp.partition, c)))
            .collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn assigned(&self) -> impl Iterator<Item = Tp> + '_ {
        self.partitions.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_lineage_continues_only_where_this_instance_left_off() {
        let mut t = OffsetTracker::new();
        let a = t.lineage(0, 100);
        assert_eq!(t.lineage(0, 101), a);
        assert_eq!(t.lineage(0, 102), a);
        // Another partition has its own.
        let b = t.lineage(1, 7);
        assert_ne!(b, a);
        // So has the repartition topic's partition of the same number.
        let r = t.lineage(Tp::repartition(0), 103);
        assert_ne!(r, a);
        assert_eq!(t.lineage(Tp::repartition(0), 104), r);
        // Revoked and assigned back where this instance left off: the same lineage.
        let claim = t.assign(0);
        t.revoke(0);
        let _ = claim;
        assert_eq!(t.lineage(0, 103), a);
        // A gap (another consumer processed 104..200) or a rewind: a new lineage.
        let c = t.lineage(0, 200);
        assert_ne!(c, a);
        let d = t.lineage(0, 150);
        assert_ne!(d, c);
        assert_eq!(t.lineage(0, 151), d);
    }

    #[test]
    fn committable_is_lowest_unfinished_offset() {
        let mut t = OffsetTracker::new();
        let c = t.assign(0);
        for o in 10..15 {
            assert!(t.begin(c, o));
        }
        assert_eq!(t.committable(0), Some(10));
        t.complete(c, 12).unwrap();
        t.complete(c, 11).unwrap();
        // 10 is still running: nothing at or above it may be committed.
        assert_eq!(t.committable(0), Some(10));
        assert!(t.take_advanced().is_empty());
        t.complete(c, 10).unwrap();
        assert_eq!(t.committable(0), Some(13));
        assert_eq!(t.take_advanced(), vec![(Tp::input(0), 13)]);
        t.complete(c, 13).unwrap();
        t.complete(c, 14).unwrap();
        // All done: resume one past the last offset read (Kafka's "next offset").
        assert_eq!(t.committable(0), Some(15));
        assert_eq!(t.take_advanced(), vec![(Tp::input(0), 15)]);
        assert_eq!(t.total_in_flight(), 0);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut t = OffsetTracker::new();
        let c = t.assign(1);
        for o in [3, 7, 8, 20] {
            t.begin(c, o);
        }
        t.complete(c, 3).unwrap();
        assert_eq!(t.committable(1), Some(7));
        t.complete(c, 20).unwrap();
        t.complete(c, 8).unwrap();
        t.complete(c, 7).unwrap();
        assert_eq!(t.committable(1), Some(21));
    }

    #[test]
    fn completions_of_an_earlier_assignment_are_ignored() {
        let mut t = OffsetTracker::new();
        let old = t.assign(0);
        t.begin(old, 0);
        t.begin(old, 1);
        t.complete(old, 0).unwrap();
        assert_eq!(t.revoke(0), Some(1));
        assert_eq!(t.complete(old, 1), Err(Stale::Revoked));
        let new = t.assign(0);
        assert_ne!(old, new);
        t.begin(new, 1);
        // Work read under the old claim finishing now must not move the new claim.
        assert_eq!(t.complete(old, 1), Err(Stale::Revoked));
        assert_eq!(t.committable(0), Some(1));
        t.complete(new, 1).unwrap();
        assert_eq!(t.committable(0), Some(2));
    }

    #[test]
    fn double_and_unknown_completions_are_rejected() {
        let mut t = OffsetTracker::new();
        let c = t.assign(0);
        t.begin(c, 5);
        t.begin(c, 6);
        assert_eq!(t.complete(c, 4), Err(Stale::Unknown));
        t.complete(c, 6).unwrap();
        assert_eq!(t.complete(c, 6), Err(Stale::Unknown));
        assert_eq!(t.in_flight(0), 1);
        // Offsets must not go backwards within one claim.
        assert!(!t.begin(c, 6));
    }

    proptest! {
        /// For any interleaving of completions, the committable offset never passes an
        /// unfinished message, and once everything is done it is one past the last read.
        #[test]
        fn never_passes_an_unfinished_message(
            gaps in proptest::collection::vec(1i64..4, 1..200),
            order_seed in any::<u64>(),
            partitions in 1i32..4,
        ) {
            let mut t = OffsetTracker::new();
            let claims: Vec<Claim> = (0..partitions).map(|p| t.assign(p)).collect();
            // Offsets with gaps, spread over partitions round-robin.
            let mut offsets = Vec::new();
            let mut next = vec![0i64; partitions as usize];
            for (i, g) in gaps.iter().enumerate() {
                let p = (i as i32) % partitions;
                next[p as usize] += g;
                let o = next[p as usize];
                prop_assert!(t.begin(claims[p as usize], o));
                offsets.push((p, o));
            }
            // A deterministic shuffle of the completion order.
            let mut order = offsets.clone();
            let mut s = order_seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut done = std::collections::HashSet::new();
            for (p, o) in order {
                t.complete(claims[p as usize], o).unwrap();
                done.insert((p, o));
                for q in 0..partitions {
                    // A partition that read nothing has nothing to commit.
                    let Some(c) = t.committable(q) else { continue };
                    // Every offset read below the committable one is done.
                    for &(pp, oo) in offsets.iter().filter(|&&(pp, _)| pp == q) {
                        if oo < c {
                            prop_assert!(done.contains(&(pp, oo)), "p{q} committable {c} passes unfinished {oo}");
                        }
                    }
                }
                for (q, c) in t.take_advanced() {
                    prop_assert_eq!(Some(c), t.committable(q));
                }
            }
            for q in 0..partitions {
                let expected = (next[q as usize] > 0).then(|| next[q as usize] + 1);
                prop_assert_eq!(t.committable(q), expected);
            }
            prop_assert_eq!(t.total_in_flight(), 0);
        }
    }
}
