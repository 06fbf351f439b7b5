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
//! them. State is not persisted: after a rebalance or a restart it is rebuilt from
//! the observations that follow (an evaluator drops a patient's state when the
//! patient's partition was assigned anew, see [`Owner`]).

use std::num::NonZeroUsize;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashMap;

use super::RuleSet;
use super::event::{EpisodeStep, Event};
use super::news2::{self, News2State};
use super::threshold::{self, RuleMemory};
use crate::vitals::{Metric, Observation};

/// Who delivered a patient's observations: a number naming the partition (of the input
/// topic or of the repartition topic) and the lineage of its offsets. State built under
/// one owner is not trusted under another: the partition may have been processed
/// elsewhere in between.
pub(crate) type Owner = (u64, u64);

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
}

struct Patient {
    owner: Owner,
    /// The evaluator clock at the last observation.
    seen_ms: i64,
    news2: News2State,
    /// Rules with a run or an open episode, by rule index; usually empty.
    rules: Vec<(u32, RuleMemory)>,
}

impl Patient {
    fn new(owner: Owner, now_ms: i64) -> Patient {
        Patient {
            owner,
            seen_ms: now_ms,
            news2: News2State::NEW,
            rules: Vec::new(),
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
        }
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
        let rules = &*self.rules;
        if rules.is_stateless() {
            // Nothing to remember: every breach alerts.
            // Nothing to remember: every breach alerts, an episode of its own.
            out.extend(rules.breached(reading.metric, reading.value).map(|rule| {
                Event::Threshold {
                    rule,
                    step: EpisodeStep::start(reading.timestamp),
                }
            }));
            return;
        }
        let news2_param = rules
            .news2()
            .and_then(|_| news2::parameter_index(reading.metric));
        let ttl_ms = self.limits.ttl_ms;
        let state = match self.patients.get_mut(patient) {
            Some(p) => {
                if now_ms.saturating_sub(p.seen_ms) >= ttl_ms {
                    // Expired, not yet swept.
                    **p = Patient::new(owner, now_ms);
                    self.evictions.ttl += 1;
                } else if p.owner.0 == owner.0 && p.owner.1 != owner.1 {
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
                    .breached(reading.metric, reading.value)
                    .next()
                    .is_some() =>
            {
                if self.patients.len() >= self.limits.capacity.get() {
                    self.evictions.capacity += evict_least_recent(&mut self.patients);
                }
                self.patients
                    .entry(CompactString::new(patient))
                    .or_insert_with(|| Box::new(Patient::new(owner, now_ms)))
            }
            // No memory of this patient and nothing to remember: only stateless rules
            // of this metric could fire, and none does.
            None => return,
        };

        // Rules that fire now, then rules that remember something and do not fire now:
        // the rules that neither fire nor remember (nearly all) cost one comparison each,
        // in `breached`'s 24-byte stream.
        let first = out.len();
        for i in rules.breached(reading.metric, reading.value) {
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
            if let Some(step) = threshold::step(
                &mut state.rules[slot].1,
                rule,
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
            if rule.metric != reading.metric || rule.condition.fires(reading.value) {
                s += 1;
                continue;
            }
            if let Some(step) =
                threshold::step(&mut memory, rule, false, reading.value, reading.timestamp)
            {
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
            state.news2.observe(
                rule,
                param,
                (reading.metric, reading.value),
                reading.timestamp,
                out,
            );
        }
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
        self.patients
            .retain(|_, p| now_ms.saturating_sub(p.seen_ms) < ttl);
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
fn evict_least_recent(patients: &mut HashMap<CompactString, Box<Patient>>) -> u64 {
    let target = (patients.len() / 16).max(1);
    let mut seen: Vec<i64> = patients.values().map(|p| p.seen_ms).collect();
    let (_, &mut cutoff, _) = seen.select_nth_unstable(target - 1);
    // Everything seen before the cutoff goes, and as many seen exactly at it as needed.
    let below = seen.iter().filter(|&&s| s < cutoff).count();
    let mut at_cutoff = target - below;
    patients.retain(|_, p| {
        if p.seen_ms < cutoff {
            false
        } else if p.seen_ms == cutoff && at_cutoff > 0 {
            at_cutoff -= 1;
            false
        } else {
            true
        }
    });
    target as u64
}

#[cfg(test)]
mod tests;
