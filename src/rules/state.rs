//! What the rules remember about each patient, and the decisions made with it.
//!
//! A worker owns one [`Evaluator`]: ingest routes every observation of a patient to the
//! same worker, so a patient's state is touched by one task only and needs no lock. The
//! evaluator turns "this observation breaches these conditions" into "publish these
//! alerts now":
//!
//! - **Sustained conditions** (`for_secs`): a rule fires only once every observation of
//!   its metric over the span breached it. The span is measured in observation time
//!   (the `timestamp` field), between the first breaching observation after the last
//!   non-breaching one and the current one, taken in the order they were read.
//! - **Episodes** (alarm-fatigue control): the first firing opens an episode and alerts.
//!   While the episode lasts, the alert is repeated only after `cooldown_secs` of
//!   observation time (a reminder) or at once on escalation to a higher severity
//!   (NEWS2 medium → high). The episode ends when the value returns past the threshold
//!   by `clear_margin`, optionally with a `resolved` event; only then does the rule
//!   re-arm. A value hovering around a threshold therefore raises one alert.
//! - **NEWS2**: the latest observation of each of the seven parameters, scored while it
//!   is at most `max_age_secs` older than the observation being evaluated. Its episodes
//!   follow the same rules: the aggregate's end needs `clear_margin` score points below
//!   the medium band, and a single parameter's 3 holds the episode open until its value
//!   is `single_clear_margin` back inside the next band.
//!
//! State is bounded: a patient without observations for `ttl` (the worker's clock) is
//! evicted, and the least recently seen sixteenth when a worker holds `capacity` of
//! them.
//!
//! **Durable mode** (a state topic is configured, [`Evaluator::set_durable`]): every
//! patient whose state changed is collected ([`Evaluator::take_changes`]) as a record
//! for the state topic ([`snapshot`]), and a partition assigned anew is filled from
//! that topic ([`Evaluator::restore`]) instead of starting empty. Each patient then
//! remembers the offsets of the last reading its state reflects, and a reading at or
//! below them that is read again is skipped, not counted twice. Without it, state lives
//! in memory only: an evaluator drops a patient's state when the patient's partition was
//! assigned anew (see [`Owner`]), and it is rebuilt from the observations that follow.

use std::num::NonZeroUsize;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashMap;

use super::RuleSet;
use super::context::PatientContext;
use super::event::{EpisodeStep, Event};
use super::news2::{self, News2State, Spo2Scale};
use super::threshold::{self, Condition, RuleMemory};
use crate::vitals::{Metric, Observation};
use snapshot::{Snapshot, SnapshotError};

/// Who delivered a patient's observations: a number naming the partition (of the input
/// topic or of the repartition topic) and the lineage of its offsets. State built under
/// one owner is not trusted under another: the partition may have been processed
/// elsewhere in between.
pub(crate) type Owner = (u64, u64);

/// Where one reading was read: its owner, and its place in the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) owner: Owner,
    /// The partition number (the state topic's partition of the patient).
    pub(crate) partition: i32,
    /// 0 for the input topic, 1 for the repartition topic.
    pub(crate) topic: usize,
    pub(crate) offset: i64,
}

/// One patient's record for the state topic: its partition there, its key, and its
/// value (`None`: a tombstone, the patient forgotten).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateRecord {
    pub(crate) partition: i32,
    pub(crate) key: CompactString,
    pub(crate) value: Option<Vec<u8>>,
}

/// What became of a record read back from the state topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restored {
    Applied,
    /// Its patient was last seen longer ago than the state TTL: forgotten.
    Expired,
}

/// How much patient state a worker may keep (the service's are
/// `Settings::state_limits`, from `rules.state_ttl_secs` and
/// `rules.max_patients_per_worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Forget a patient after this long without an observation (milliseconds of the
    /// clock passed to [`Evaluator::observe`]).
    pub ttl_ms: i64,
    /// The most patients one worker remembers; the least recently seen goes first.
    pub capacity: NonZeroUsize,
}

/// One observation, as the evaluator needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub metric: Metric,
    pub value: f64,
    /// Observation time, Unix epoch milliseconds.
    pub timestamp: i64,
}

impl Reading {
    /// What the evaluator keeps of a decoded observation.
    #[inline]
    pub fn of(obs: &Observation<'_>) -> Reading {
        Reading {
            metric: obs.metric,
            value: obs.value,
            timestamp: obs.timestamp,
        }
    }
}

/// Evictions and resets since the last [`Evaluator::take_evictions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// No observation for `ttl`.
    pub(crate) ttl: u64,
    /// The worker was at `capacity`.
    pub capacity: u64,
    /// The patient's partition was assigned anew.
    pub(crate) reassigned: u64,
}

/// A patient's context as the evaluator applies it: the record, and its threshold
/// overrides resolved to the indices of the rules in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub(crate) context: PatientContext,
    /// The input partition whose context partition delivered it.
    pub(crate) partition: i32,
    /// (rule index, the patient's condition), for the overrides whose rule is in force.
    overrides: Vec<(u32, Condition)>,
}

impl Applied {
    /// `context` over `rules`: an override whose rule id is no longer in force, or whose
    /// rule changed direction (a hot reload), is dropped; the rest follow their rule.
    fn resolve(context: PatientContext, partition: i32, rules: &RuleSet) -> Applied {
        let overrides = context
            .overrides
            .iter()
            .filter_map(|o| {
                let i = rules.rules().iter().position(|r| *r.id == *o.rule_id)?;
                let same_direction = matches!(
                    (rules.rules()[i].condition, o.condition),
                    (Condition::Above(_), Condition::Above(_))
                        | (Condition::Below(_), Condition::Below(_))
                );
                same_direction.then_some((i as u32, o.condition))
            })
            .collect();
        Applied {
            context,
            partition,
            overrides,
        }
    }

    /// The condition of rule `i` of `rules` for this patient.
    #[inline]
    pub(crate) fn condition(&self, rules: &RuleSet, i: usize) -> Condition {
        match self.overrides.iter().find(|(r, _)| *r as usize == i) {
            Some(&(_, c)) => c,
            None => rules.rules()[i].condition_on(self.context.spo2_scale),
        }
    }

    pub(crate) fn spo2_scale(&self) -> Spo2Scale {
        self.context.spo2_scale
    }

    /// The suppression's reason, when an observation at `t` falls within it.
    pub(crate) fn suppressed_at(&self, t: i64) -> Option<&str> {
        self.context
            .suppress
            .as_ref()
            .filter(|s| t < s.until)
            .map(|s| &*s.reason)
    }

    /// The context record's version (its offset on the context topic).
    pub(crate) fn version(&self) -> i64 {
        self.context.version
    }
}

/// The condition of rule `i` for a patient with context `ctx` (or none).
#[inline]
fn condition_of(rules: &RuleSet, i: usize, ctx: Option<&Applied>) -> Condition {
    match ctx {
        None => rules.rules()[i].condition,
        Some(a) => a.condition(rules, i),
    }
}

/// Per-patient rule state for one worker.
pub struct Evaluator {
    rules: Arc<RuleSet>,
    limits: StateLimits,
    /// Not an LRU list (the `lru` crate moved a node to the front on every reading):
    /// each patient carries when it was last seen; at capacity the least recently seen
    /// sixteenth goes in one sweep, and the TTL is checked on lookup and swept
    /// periodically. Measured 7% faster per reading (`benches/decode_evaluate.rs`,
    /// `evaluate_stateful`: 104 → 97 ns) and one dependency fewer.
    /// Boxed: a table of 240-byte buckets, grown to twice the cap by the tombstones
    /// eviction leaves, held twice the memory (`tests/patient_state_memory.rs`).
    patients: HashMap<CompactString, Box<Patient>>,
    /// Evaluator clock of the next TTL sweep.
    next_sweep_ms: i64,
    evictions: Evictions,
    /// Durable mode (module docs): changed patients are collected for the state topic.
    durable: bool,
    /// Durable mode: the consumer group whose offsets the records carry.
    group: Arc<str>,
    /// Durable mode: patients changed since the last `take_changes`, and patients
    /// forgotten (their partition there) whose record must go.
    dirty: Vec<CompactString>,
    forgotten: Vec<(i32, CompactString)>,
    /// Patient context, apart from the rule state: the TTL and the capacity never drop
    /// a clinical decision, only a new record, a tombstone, or the partition moving away.
    contexts: HashMap<CompactString, Box<Applied>>,
}

struct Patient {
    owner: Owner,
    /// The evaluator clock at the last observation.
    seen_ms: i64,
    news2: News2State,
    /// Rules with a run or an open episode, by rule index; usually empty.
    rules: Vec<(u32, RuleMemory)>,
    /// Durable mode: the partition of the last reading (the state topic's partition of
    /// this patient's record) and the offsets of the last reading reflected, on the input
    /// topic and on the repartition topic (-1: none).
    partition: i32,
    offsets: [i64; 2],
    /// Changed since the last [`Evaluator::take_changes`].
    dirty: bool,
}

impl Patient {
    fn new(owner: Owner, now_ms: i64) -> Patient {
        Patient {
            owner,
            seen_ms: now_ms,
            news2: News2State::NEW,
            rules: Vec::new(),
            partition: -1,
            offsets: [-1, -1],
            dirty: false,
        }
    }
}

impl Evaluator {
    pub fn new(rules: Arc<RuleSet>, limits: StateLimits) -> Evaluator {
        Evaluator {
            rules,
            limits,
            // Grows as patients arrive: no table sized for the cap up front.
            patients: HashMap::new(),
            next_sweep_ms: 0,
            evictions: Evictions::default(),
            durable: false,
            group: Arc::from(""),
            dirty: Vec::new(),
            forgotten: Vec::new(),
            contexts: HashMap::new(),
        }
    }

    /// Turns durable mode (module docs) on for consumer group `group`, or off (`None`).
    pub(crate) fn set_durable(&mut self, group: Option<Arc<str>>) {
        self.durable = group.is_some();
        self.group = group.unwrap_or_else(|| Arc::from(""));
    }

    pub(crate) fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Patients remembered now.
    pub fn patients(&self) -> usize {
        self.patients.len()
    }

    pub fn take_evictions(&mut self) -> Evictions {
        std::mem::take(&mut self.evictions)
    }

    /// Puts `context` in force for `patient` (`None`: back to the defaults), as read
    /// from input partition `partition`'s context partition. Applies from the next
    /// reading on; an open episode ends, or is held, by the next reading's evaluation
    /// under the new settings.
    pub fn set_context(&mut self, patient: &str, partition: i32, context: Option<PatientContext>) {
        match context {
            Some(c) => {
                let applied = Applied::resolve(c, partition, &self.rules);
                self.contexts
                    .insert(CompactString::new(patient), Box::new(applied));
            }
            None => {
                self.contexts.remove(patient);
            }
        }
    }

    /// The context in force for `patient`.
    pub fn context(&self, patient: &str) -> Option<&Applied> {
        if self.contexts.is_empty() {
            return None;
        }
        self.contexts.get(patient).map(|a| &**a)
    }

    /// Patients with a context now.
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    /// Forgets the contexts read from `partition`'s context partition (it is read again
    /// from the beginning, or moved away).
    pub(crate) fn forget_contexts(&mut self, partition: i32) {
        self.contexts.retain(|_, a| a.partition != partition);
    }

    /// Evaluates one observation of `patient` read from `owner` at `now_ms` (a
    /// monotonic clock, for the state TTL), appending what to publish to `out` in rule
    /// order: threshold rules in file order, then NEWS2.
    pub fn observe(
        &mut self,
        patient: &str,
        reading: Reading,
        owner: Owner,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) {
        let at = At {
            owner,
            partition: owner.0 as u32 as i32,
            topic: (owner.0 >> 32) as usize & 1,
            offset: i64::MAX,
        };
        self.observe_at(patient, reading, at, now_ms, out);
    }

    /// As [`Evaluator::observe`], for a reading read at `at`. In durable mode a reading
    /// the patient's state already reflects (at or below its offsets there) is skipped:
    /// returns false and appends nothing.
    pub(crate) fn observe_at(
        &mut self,
        patient: &str,
        reading: Reading,
        at: At,
        now_ms: i64,
        out: &mut Vec<Event>,
    ) -> bool {
        let owner = at.owner;
        let rules = &*self.rules;
        let ctx = if self.contexts.is_empty() {
            None
        } else {
            self.contexts.get(patient).map(|a| &**a)
        };
        if rules.is_stateless() {
            // Nothing to remember: every breach alerts, an episode of its own.
            out.extend(
                rules
                    .breached_under(reading.metric, reading.value, ctx)
                    .map(|rule| Event::Threshold {
                        rule,
                        step: EpisodeStep::start(reading.timestamp),
                    }),
            );
            return true;
        }
        let news2_param = rules
            .news2()
            .and_then(|_| news2::parameter_index(reading.metric));
        let ttl_ms = self.limits.ttl_ms;
        let durable = self.durable;
        let state = match self.patients.get_mut(patient) {
            Some(p) => {
                if durable && p.partition == at.partition && at.offset <= p.offsets[at.topic] {
                    // Read again (a crash before the commit, a rewind): already counted.
                    return false;
                }
                if now_ms.saturating_sub(p.seen_ms) >= ttl_ms {
                    // Expired, not yet swept.
                    **p = Patient::new(owner, now_ms);
                    self.evictions.ttl += 1;
                } else if !durable && p.owner.0 == owner.0 && p.owner.1 != owner.1 {
                    // The partition was processed elsewhere, or re-read, since this state
                    // was built: it may have missed the patient's recovery.
                    **p = Patient::new(owner, now_ms);
                    self.evictions.reassigned += 1;
                }
                // A patient whose readings come from several partitions (keyed by
                // device, not patient) follows the partition of the latest reading;
                // only a change within one partition's lineage resets it.
                p.owner = owner;
                p.seen_ms = now_ms;
                p
            }
            None if news2_param.is_some()
                || rules
                    .breached_under(reading.metric, reading.value, ctx)
                    .next()
                    .is_some() =>
            {
                if self.patients.len() >= self.limits.capacity.get() {
                    let forgotten = durable.then_some(&mut self.forgotten);
                    self.evictions.capacity += evict_least_recent(&mut self.patients, forgotten);
                }
                self.patients
                    .entry(CompactString::new(patient))
                    .or_insert_with(|| Box::new(Patient::new(owner, now_ms)))
            }
            // No memory of this patient and nothing to remember: only stateless rules
            // of this metric could fire, and none does.
            None => return true,
        };
        if durable {
            if state.partition != at.partition {
                if state.partition >= 0 {
                    // Its record moves with it (readings keyed by device, say).
                    self.forgotten
                        .push((state.partition, CompactString::new(patient)));
                }
                state.partition = at.partition;
                state.offsets = [-1, -1];
            }
            state.offsets[at.topic] = at.offset;
            if !state.dirty {
                state.dirty = true;
                self.dirty.push(CompactString::new(patient));
            }
        }

        // Rules that fire now, then rules that remember something and do not fire now:
        // the rules that neither fire nor remember (nearly all) cost one comparison each,
        // in `breached`'s 24-byte stream.
        let first = out.len();
        for i in rules.breached_under(reading.metric, reading.value, ctx) {
            let rule = &rules.rules()[i];
            if rule.is_stateless() {
                out.push(Event::Threshold {
                    rule: i,
                    step: EpisodeStep::start(reading.timestamp),
                });
                continue;
            }
            let slot = match state.rules.iter().position(|&(r, _)| r as usize == i) {
                Some(s) => s,
                None => {
                    state.rules.push((i as u32, RuleMemory::EMPTY));
                    state.rules.len() - 1
                }
            };
            if let Some(step) = threshold::step_on(
                &mut state.rules[slot].1,
                rule,
                condition_of(rules, i, ctx),
                true,
                reading.value,
                reading.timestamp,
            ) {
                out.push(Event::Threshold { rule: i, step });
            }
        }
        let mut s = 0;
        while s < state.rules.len() {
            let (i, mut memory) = state.rules[s];
            let rule = &rules.rules()[i as usize];
            let condition = condition_of(rules, i as usize, ctx);
            if rule.metric != reading.metric || condition.fires(reading.value) {
                s += 1;
                continue;
            }
            if let Some(step) = threshold::step_on(
                &mut memory,
                rule,
                condition,
                false,
                reading.value,
                reading.timestamp,
            ) {
                out.push(Event::Threshold {
                    rule: i as usize,
                    step,
                });
            }
            if memory == RuleMemory::EMPTY {
                state.rules.swap_remove(s);
            } else {
                state.rules[s].1 = memory;
                s += 1;
            }
        }
        // File order, whichever loop raised it.
        out[first..].sort_by_key(|e| match e {
            Event::Threshold { rule, .. } => *rule,
            Event::News2 { .. } => usize::MAX,
        });

        if let (Some(param), Some(rule)) = (news2_param, rules.news2()) {
            state.news2.observe_on(
                rule,
                param,
                (reading.metric, reading.value),
                reading.timestamp,
                ctx.map_or(Spo2Scale::One, Applied::spo2_scale),
                out,
            );
        }
        true
    }

    /// Durable mode: the records of every patient changed or forgotten since the last
    /// call, appended to `out` (forgotten first), as of `wall_ms` (the wall clock) and
    /// `now_ms` (the evaluator clock). Each changed patient appears once however many
    /// readings changed it.
    pub(crate) fn take_changes(&mut self, wall_ms: i64, now_ms: i64, out: &mut Vec<StateRecord>) {
        out.extend(
            self.forgotten
                .drain(..)
                .map(|(partition, key)| StateRecord {
                    partition,
                    key,
                    value: None,
                }),
        );
        for key in self.dirty.drain(..) {
            let Some(p) = self.patients.get_mut(key.as_str()) else {
                continue; // forgotten since: its tombstone is above
            };
            if !p.dirty {
                continue;
            }
            p.dirty = false;
            let seen_at = wall_ms.saturating_sub(now_ms.saturating_sub(p.seen_ms));
            let mut value = Vec::with_capacity(160);
            snapshot::encode(
                &self.group,
                &key,
                snapshot::Parts {
                    seen_at,
                    offsets: p.offsets,
                    news2: &p.news2,
                    rules: &p.rules,
                },
                &self.rules,
                &mut value,
            );
            out.push(StateRecord {
                partition: p.partition,
                key,
                value: Some(value),
            });
        }
    }

    /// Durable mode: applies the state topic's record of `patient` on `partition`,
    /// replacing what this evaluator holds of the patient. `owner` is what the
    /// partition's readings will come with; `wall_ms`/`now_ms` as in `take_changes`.
    pub(crate) fn restore(
        &mut self,
        patient: &str,
        value: &[u8],
        partition: i32,
        owner: Owner,
        wall_ms: i64,
        now_ms: i64,
    ) -> Result<Restored, SnapshotError> {
        let Snapshot {
            seen_at,
            offsets,
            news2,
            rules,
        } = snapshot::decode(&self.group, patient, value, &self.rules)?;
        let idle_ms = wall_ms.saturating_sub(seen_at).max(0);
        if idle_ms >= self.limits.ttl_ms {
            if self.patients.remove(patient).is_none() {
                self.forgotten
                    .push((partition, CompactString::new(patient)));
            }
            return Ok(Restored::Expired);
        }
        if !self.patients.contains_key(patient) && self.patients.len() >= self.limits.capacity.get()
        {
            let forgotten = self.durable.then_some(&mut self.forgotten);
            self.evictions.capacity += evict_least_recent(&mut self.patients, forgotten);
        }
        let patient_state = Box::new(Patient {
            owner,
            seen_ms: now_ms.saturating_sub(idle_ms),
            news2,
            rules,
            partition,
            offsets,
            dirty: false,
        });
        self.patients
            .insert(CompactString::new(patient), patient_state);
        Ok(Restored::Applied)
    }

    /// Durable mode: forgets `patient` (a tombstone read back from the state topic).
    pub(crate) fn forget(&mut self, patient: &str) {
        self.patients.remove(patient);
    }

    /// Durable mode: forgets the patients of `partition` (assigned anew: the state topic
    /// is filled in again), without tombstones.
    pub(crate) fn forget_partition(&mut self, partition: i32) {
        let before = self.patients.len();
        self.patients.retain(|_, p| p.partition != partition);
        self.evictions.reassigned += (before - self.patients.len()) as u64;
    }

    /// Forgets the patients whose last reading came from a partition `owned` says this
    /// instance no longer has: another instance holds them now, and counting them here
    /// would overstate what this one watches.
    pub(crate) fn retain_owners(&mut self, owned: impl Fn(u64) -> bool) {
        let before = self.patients.len();
        self.patients.retain(|_, p| owned(p.owner.0));
        self.evictions.reassigned += (before - self.patients.len()) as u64;
    }

    /// Forgets patients not seen for the TTL as of `now_ms`. Sweeps at most every
    /// eighth of the TTL (and at most every minute); a patient past the TTL but not yet
    /// swept is treated as forgotten when its next reading comes.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        let ttl = self.limits.ttl_ms;
        self.next_sweep_ms = now_ms.saturating_add((ttl / 8).clamp(1, 60_000));
        let before = self.patients.len();
        let forgotten = &mut self.forgotten;
        let durable = self.durable;
        self.patients.retain(|key, p| {
            let keep = now_ms.saturating_sub(p.seen_ms) < ttl;
            if !keep && durable {
                forgotten.push((p.partition, key.clone()));
            }
            keep
        });
        self.evictions.ttl += (before - self.patients.len()) as u64;
    }

    /// Switches to `new` rules (a hot reload), keeping what still means the same: a
    /// threshold rule's memory survives when a rule with its id and the same metric,
    /// condition and `for_secs` exists in `new`; NEWS2 episodes survive while NEWS2
    /// stays on. The latest NEWS2 parameter values always survive.
    pub(crate) fn set_rules(&mut self, new: Arc<RuleSet>) {
        // By id, once: a rule set can be 100 000 rules long.
        let by_id: std::collections::HashMap<&str, usize> = new
            .rules()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let remap: Vec<Option<u32>> = self
            .rules
            .rules()
            .iter()
            .map(|old| {
                by_id
                    .get(old.id.as_str())
                    .filter(|&&i| {
                        let r = &new.rules()[i];
                        r.metric == old.metric
                            && r.condition == old.condition
                            && r.for_ms == old.for_ms
                    })
                    .map(|&i| i as u32)
            })
            .collect();
        for a in self.contexts.values_mut() {
            **a = Applied::resolve(a.context.clone(), a.partition, &new);
        }
        let keep_news2 = new.news2().is_some();
        for p in self.patients.values_mut() {
            p.rules.retain_mut(|(i, _)| match remap[*i as usize] {
                Some(to) => {
                    *i = to;
                    true
                }
                None => false,
            });
            if !keep_news2 {
                p.news2.end_episode();
            }
        }
        self.rules = new;
    }
}

/// Makes room in a full table: drops the least recently seen sixteenth (at least one),
/// in one pass. Returns how many went.
fn evict_least_recent(
    patients: &mut HashMap<CompactString, Box<Patient>>,
    mut forgotten: Option<&mut Vec<(i32, CompactString)>>,
) -> u64 {
    let target = (patients.len() / 16).max(1);
    let mut seen: Vec<i64> = patients.values().map(|p| p.seen_ms).collect();
    let (_, &mut cutoff, _) = seen.select_nth_unstable(target - 1);
    // Everything seen before the cutoff goes, and as many seen exactly at it as needed.
    let below = seen.iter().filter(|&&s| s < cutoff).count();
    let mut at_cutoff = target - below;
    patients.retain(|key, p| {
        let keep = if p.seen_ms < cutoff {
            false
        } else if p.seen_ms == cutoff && at_cutoff > 0 {
            at_cutoff -= 1;
            false
        } else {
            true
        };
        if !keep && let Some(f) = forgotten.as_mut() {
            f.push((p.partition, key.clone()));
        }
        keep
    });
    target as u64
}

pub(crate) mod snapshot;

#[cfg(test)]
mod tests;
