//! The commit policy: which input offsets become committed, when, and how.
//!
//! At-least-once, nothing lost: an offset is *stored* only once every message below it
//! is done ([`super::offsets::OffsetTracker`] says which), and librdkafka's auto-commit
//! commits what is stored, every [`AUTO_COMMIT_INTERVAL_MS`]; with durable state, what
//! is stored is a persisted checkpoint cut, committed at once ([`commit_stored`]). Two
//! synchronous commits
//! make the edges exact: on revoke, after the revoked partitions' in-flight work drained
//! (bounded), and at shutdown, after everything drained. A commit that fails is retried
//! by the next one and counted in `vitalwatch_commit_errors_total`; finished work whose
//! commit failed is read again by the next owner (duplicates, never loss).
//!
//! Everything that decides this is here: the consumer properties the policy depends on,
//! the `[kafka.client]` keys that may therefore not be overridden, storing, both
//! synchronous commits, the refresh of idle repartition partitions, and the commit
//! callback.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::offsets::{OffsetTracker, Tp};
use crate::metrics as m;

/// How often librdkafka commits the stored offsets.
pub(crate) const AUTO_COMMIT_INTERVAL_MS: u32 = 1000;

/// How often advanced offsets are stored (auto-commit picks them up).
pub(crate) const STORE_EVERY: Duration = Duration::from_millis(100);

/// How often the committed offsets of the repartition topic's partitions are committed
/// again, unchanged: a group's offsets of a topic it does not subscribe to expire after
/// the broker's `offsets.retention.minutes` (7 days by default) without a commit, and an
/// idle repartition partition (producers that key by patient id) commits nothing new.
pub(crate) const REFRESH_SHADOW_COMMITS: Duration = Duration::from_secs(3600);

/// librdkafka properties vitalwatch sets itself; overriding them would break
/// at-least-once delivery (or the topic checks), so the `[kafka.client]` passthrough
/// refuses them.
pub(crate) const MANAGED_CLIENT_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    // Offsets are stored only for finished work and committed by auto-commit plus the
    // synchronous commits on revoke and shutdown; without auto-commit a crash would
    // re-read everything since the last rebalance.
    "enable.auto.commit",
    "enable.auto.offset.store",
    // A new group reads the topic from its start (nothing lost; the stale-age bound keeps
    // old readings from paging); `latest` would skip what arrived before it joined.
    "auto.offset.reset",
    // A typo in a topic name must fail at start, not create a topic nobody reads.
    "allow.auto.create.topics",
    "enable.idempotence",
    "acks",
    "isolation.level",
];

/// The consumer properties the policy depends on. `auto.commit.interval.ms` may be
/// overridden (`vitalwatch bench` commits every 100 ms): it changes how much a crash
/// re-reads, not what is committed.
pub(crate) fn consumer_properties(c: &mut rdkafka::config::ClientConfig) {
    c.set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            AUTO_COMMIT_INTERVAL_MS.to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
}

/// Stores what the tracker says advanced: exactly the next offset to read of each
/// partition (`rd_kafka_offsets_store` does not add one, unlike `store_offset`).
pub(crate) fn store<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    advanced: Vec<(Tp, i64)>,
    topic: impl Fn(Tp) -> String,
) {
    if advanced.is_empty() {
        return;
    }
    // One entry per partition, the furthest: a list with a partition twice stores the
    // second entry's offset as "invalid" (rdkafka sets the offset on the first entry it
    // finds), and librdkafka then commits nothing for it.
    let mut furthest: std::collections::BTreeMap<Tp, i64> = std::collections::BTreeMap::new();
    for (tp, offset) in advanced {
        let e = furthest.entry(tp).or_insert(offset);
        *e = (*e).max(offset);
    }
    let mut tpl = TopicPartitionList::with_capacity(furthest.len());
    for (tp, offset) in furthest {
        if let Err(e) = tpl.add_partition_offset(&topic(tp), tp.partition, Offset::Offset(offset)) {
            warn!(error = %e, partition = tp.partition, "cannot build offset list");
        }
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // __STATE: the partition was revoked in between. Expected, not fatal.
        debug!(error = %e, "storing offsets failed");
    }
}

/// Commits the positions of `topic`'s assigned partitions again, unchanged: only what is
/// finished (the tracker's committable offset, or the position where nothing was read
/// since the assignment).
pub(crate) fn refresh<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    tracker: &OffsetTracker,
) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    for e in positions.elements().iter().filter(|e| e.topic() == topic) {
        let tp = Tp::repartition(e.partition());
        let offset = match (tracker.committable(tp), e.offset()) {
            (Some(c), _) => c,
            (None, Offset::Offset(o)) => o,
            _ => continue,
        };
        let _ = tpl.add_partition_offset(topic, e.partition(), Offset::Offset(offset));
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
    {
        debug!(error = %e, "refreshing the repartition topic's commits failed");
    }
}

/// An asynchronous commit of everything stored, without waiting for the auto-commit
/// timer: durable mode calls it when a checkpoint cut is persisted, so the committed
/// offsets trail the cut by a round trip, not by up to another commit interval (a crash
/// then reads less again).
pub(crate) fn commit_stored<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Async) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            debug!(error = %e, "committing a persisted checkpoint failed (the auto-commit retries)")
        }
    }
}

/// The synchronous commit of revoked partitions, after their drain.
pub(crate) fn commit_revoked<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &TopicPartitionList,
) {
    if offsets.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(offsets, CommitMode::Sync) {
        warn!(error = %e, "commit on revoke failed: the next owner may re-read finished work");
    }
}

/// The synchronous commit at shutdown, of everything stored.
pub(crate) fn commit_final<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!(error = %e, "final commit failed"),
    }
}

/// librdkafka's commit callback (auto-commits and the synchronous ones alike): the
/// committed offsets go to `/metrics`, a failure to the log and
/// `vitalwatch_commit_errors_total`.
pub(crate) fn committed(result: KafkaResult<()>, offsets: &TopicPartitionList) {
    match result {
        Ok(()) => {
            for e in offsets.elements() {
                if let Offset::Offset(o) = e.offset() {
                    m::committed_offset(e.topic(), e.partition(), o);
                }
            }
        }
        // Nothing stored since the last commit: not an error.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            m::commit_error();
            warn!(error = %e, "offset commit failed (retried at the next commit)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the policy sets and depends on cannot be overridden by `[kafka.client]`
    /// (field report: `enable.auto.commit` could be, silently). Only the commit interval
    /// may: it changes how much a crash re-reads, not what is committed.
    #[test]
    fn every_property_the_policy_depends_on_is_managed() {
        let mut c = rdkafka::config::ClientConfig::new();
        consumer_properties(&mut c);
        for (key, _) in c.config_map().iter() {
            let key: &str = key;
            assert!(
                MANAGED_CLIENT_KEYS.contains(&key) || key == "auto.commit.interval.ms",
                "{key} is set by the commit policy but [kafka.client] may override it"
            );
        }
    }
}
