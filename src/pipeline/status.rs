//! What the pipeline shows of itself: counters, liveness, readiness, the assignment.
//!
//! [`Status`] is shared by the ingest thread, the workers, the HTTP probes and the demo.
//! Everything in it is an atomic read or write: nothing on the message path waits for a
//! probe.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::sink::SinkHealth;
use crate::metrics::SinkKind;

/// The partitions this instance owns, by [`offsets::Tp::key`], as ingest publishes them
/// after each assignment: workers forget patients whose partition moved away.
#[derive(Debug, Default)]
pub struct Assignment {
    generation: AtomicU64,
    partitions: Mutex<Arc<HashSet<u64>>>,
}

impl Assignment {
    pub(crate) fn set(&self, keys: impl IntoIterator<Item = u64>) {
        let keys = Arc::new(keys.into_iter().collect());
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = keys;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The partitions, when they changed since generation `seen`, with the generation.
    pub(crate) fn changed_since(&self, seen: u64) -> Option<(u64, Arc<HashSet<u64>>)> {
        let generation = self.generation.load(Ordering::Acquire);
        (generation != seen).then(|| {
            let keys = self
                .partitions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            (generation, keys)
        })
    }
}

/// Live counters and health, shared with the HTTP endpoints and the demo.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    consumed: AtomicU64,
    invalid: AtomicU64,
    evaluated: AtomicU64,
    alerts: AtomicU64,
    dlq: AtomicU64,
    forwarded: AtomicU64,
    assigned: AtomicUsize,
    /// The group has given this instance an assignment (possibly empty) since start.
    joined: AtomicBool,
    /// The brokers said the input topic does not exist (and nothing since says it does).
    input_missing: AtomicBool,
    /// A revoke is waiting for the in-flight work of its partitions.
    draining: AtomicBool,
    /// Partitions whose patient state is being restored (not read yet).
    restoring: AtomicUsize,
    /// Partitions whose patient context is being caught up with (not read yet).
    catching_up: AtomicUsize,
    /// Shutdown was requested: the pipeline drains and leaves the group.
    stopping: AtomicBool,
    pub(super) running: AtomicBool,
    ingest_beat_ms: AtomicU64,
    pub(super) workers: OnceLock<Vec<Arc<WorkerProbe>>>,
    /// Each producer's health, by what it writes.
    pub(super) sinks: OnceLock<Vec<(SinkKind, Arc<SinkHealth>)>>,
}

/// What ingest and one worker share about that worker's queue.
#[derive(Debug, Default)]
pub struct WorkerProbe {
    /// Messages handed to the worker and not yet evaluated.
    queued: AtomicUsize,
    /// [`Status`] clock (ms) when the worker last finished a batch.
    beat_ms: AtomicU64,
}

impl WorkerProbe {
    pub(crate) fn enqueued(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
    }
    /// Marks the worker alive (it just took a batch).
    pub(crate) fn beat(&self, now_ms: u64) {
        self.beat_ms.store(now_ms, Ordering::Relaxed);
    }
    /// Marks `n` messages evaluated; returns how many are still queued.
    pub(crate) fn evaluated(&self, n: usize, now_ms: u64) -> usize {
        self.beat_ms.store(now_ms, Ordering::Relaxed);
        self.queued
            .fetch_sub(n, Ordering::Relaxed)
            .saturating_sub(n)
    }
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Default for Status {
    fn default() -> Self {
        Status {
            started: Instant::now(),
            consumed: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            evaluated: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            dlq: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            assigned: AtomicUsize::new(0),
            joined: AtomicBool::new(false),
            input_missing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            restoring: AtomicUsize::new(0),
            catching_up: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            running: AtomicBool::new(false),
            ingest_beat_ms: AtomicU64::new(0),
            workers: OnceLock::new(),
            sinks: OnceLock::new(),
        }
    }
}

/// A point-in-time copy of [`Status`] counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages read from the input topic.
    pub consumed: u64,
    /// Of those, invalid (headed for the DLQ).
    pub invalid: u64,
    /// Valid messages the workers evaluated against the rules.
    pub evaluated: u64,
    /// Alerts handed to the alert producer.
    pub alerts: u64,
    /// Dead letters acknowledged by the broker.
    pub dlq: u64,
    /// Misplaced observations whose copy on the repartition topic was acknowledged.
    pub forwarded: u64,
}

impl Status {
    pub fn new() -> Arc<Status> {
        Arc::new(Status::default())
    }

    pub(crate) fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn consumed(&self) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }
    /// A worker finished evaluating `n` messages (counted per batch, not per message).
    pub(crate) fn evaluated(&self, n: usize) {
        self.evaluated.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn alert_emitted(&self) {
        self.alerts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dlq_published(&self) {
        self.dlq.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }
    /// The group's assignment (input partitions), after each rebalance; marks the group
    /// joined.
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_restoring(&self, partitions: usize) {
        self.restoring.store(partitions, Ordering::Relaxed);
    }

    /// Partitions whose patient state is being restored.
    pub fn restoring(&self) -> usize {
        self.restoring.load(Ordering::Relaxed)
    }

    pub(crate) fn set_catching_up(&self, partitions: usize) {
        self.catching_up.store(partitions, Ordering::Relaxed);
    }

    /// Partitions whose patient context is still being read to its end.
    pub fn catching_up(&self) -> usize {
        self.catching_up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Whether a revoke is waiting (bounded) for the in-flight work of its partitions.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn set_input_missing(&self, missing: bool) {
        self.input_missing.store(missing, Ordering::Relaxed);
    }
    pub(crate) fn set_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Relaxed);
        self.joined.store(true, Ordering::Relaxed);
    }
    /// The ingest loop turned at `now`.
    pub(crate) fn ingest_beat_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis() as u64;
        self.ingest_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Messages waiting in worker queues, over all workers.
    pub fn queued(&self) -> usize {
        self.workers
            .get()
            .map_or(0, |w| w.iter().map(|p| p.queued()).sum())
    }

    pub fn counts(&self) -> Counts {
        Counts {
            consumed: self.consumed.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            evaluated: self.evaluated.load(Ordering::Relaxed),
            alerts: self.alerts.load(Ordering::Relaxed),
            dlq: self.dlq.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
        }
    }

    pub fn assigned_partitions(&self) -> usize {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Ready: running, in the group (with an assignment, possibly empty: a replica beyond
    /// the partition count is a ready standby, and a rollout at full scale must not wait
    /// for it), and the sinks delivering.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.running.load(Ordering::Relaxed) {
            return Err("pipeline not running");
        }
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down: draining before leaving the group");
        }
        if self.input_missing.load(Ordering::Relaxed) && self.assigned_partitions() == 0 {
            return Err("the input topic does not exist");
        }
        if !self.joined.load(Ordering::Relaxed) {
            return Err("waiting for the group's first assignment");
        }
        if self.catching_up() > 0 {
            return Err("catching up with patient context of newly assigned partitions");
        }
        if self.restoring() > 0 {
            return Err("restoring patient state of newly assigned partitions");
        }
        if let Some(sinks) = self.sinks.get()
            && let Some((kind, _)) = sinks.iter().find(|(_, h)| h.is_failing())
        {
            return Err(match kind {
                SinkKind::Alerts => "alert sink failing",
                SinkKind::Dlq => "dlq sink failing",
                SinkKind::Repartition => "repartition sink failing",
                SinkKind::State => "state sink failing",
            });
        }
        Ok(())
    }

    /// Live: the ingest loop turned within `stall` (it turns at least every 100 ms, also
    /// while the broker is unreachable or partitions are paused), and no worker with a
    /// non-empty queue has gone `stall` without finishing a batch. Never depends on the
    /// broker.
    pub fn liveness(&self, stall: Duration) -> Result<(), &'static str> {
        if !self.running.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = self.ms();
        let stall = stall.as_millis() as u64;
        if now.saturating_sub(self.ingest_beat_ms.load(Ordering::Relaxed)) > stall {
            return Err("ingest loop stalled");
        }
        // The repartition or state producer hit a fatal error: only a restart recovers
        // it (the sink module's docs), and a restart loses nothing.
        if self
            .sinks
            .get()
            .is_some_and(|sinks| sinks.iter().any(|(_, h)| h.is_fatal()))
        {
            return Err("a producer hit a fatal error: restart");
        }
        // A worker waiting on a full producer queue during a sink outage is not stuck:
        // restarting it would not help, and liveness must not follow the broker.
        let sink_failing = self
            .sinks
            .get()
            .is_some_and(|sinks| sinks.iter().any(|(_, h)| h.is_failing()));
        let stuck = !sink_failing
            && self.workers.get().is_some_and(|w| {
                w.iter().any(|p| {
                    p.queued() > 0 && now.saturating_sub(p.beat_ms.load(Ordering::Relaxed)) > stall
                })
            });
        if stuck {
            return Err("a worker stopped making progress");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_context_catch_up_and_state_restore_of_new_partitions() {
        let status = Status::new();
        status.running.store(true, Ordering::Relaxed);
        status.set_assigned(3);
        assert_eq!(status.readiness(), Ok(()));
        status.set_catching_up(2);
        status.set_restoring(1);
        assert_eq!(
            status.readiness(),
            Err("catching up with patient context of newly assigned partitions")
        );
        status.set_catching_up(0);
        assert_eq!(
            status.readiness(),
            Err("restoring patient state of newly assigned partitions")
        );
        status.set_restoring(0);
        assert_eq!(status.readiness(), Ok(()));
    }
}
