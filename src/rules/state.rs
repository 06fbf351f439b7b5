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

use super::news2::{self, Aggregate, Risk};
use super::{Alarm, News2Rule, RuleSet};
use crate::alert::Severity;
use crate::vitals::Metric;

/// Who delivered a patient's observations: a number naming the partition (of the input
/// topic or of the repartition topic) and the lineage of its offsets. State built under
/// one owner is not trusted under another: the partition may have been processed
/// elsewhere in between.
pub type Owner = (u64, u64);

/// How much patient state a worker may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Forget a patient after this long without an observation (milliseconds of the
    /// clock passed to [`Evaluator::observe`]).
    pub ttl_ms: i64,
    /// The most patients one worker remembers; the least recently seen goes first.
    pub capacity: NonZeroUsize,
}

impl StateLimits {
    pub const DEFAULT_TTL_SECS: u64 = 3600;
    pub const DEFAULT_CAPACITY: usize = 50_000;
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits {
            ttl_ms: Self::DEFAULT_TTL_SECS as i64 * 1000,
            capacity: NonZeroUsize::new(Self::DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// One observation, as the evaluator needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub metric: Metric,
    pub value: f64,
    /// Observation time, Unix epoch milliseconds.
    pub timestamp: i64,
}

/// Whether an event opens or repeats an alert, or ends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// Something to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A threshold rule, by index in [`RuleSet::rules`].
    Threshold { rule: usize, status: AlertStatus },
    /// The NEWS2 aggregate at `severity` (medium or high).
    News2 {
        severity: Severity,
        status: AlertStatus,
        breakdown: Breakdown,
    },
}

/// The NEWS2 chart behind an event: every parameter's latest value and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    pub aggregate: Aggregate,
    /// By [`news2::PARAMETERS`] position; `None` when never observed (missing).
    pub parameters: [Option<Scored>; 7],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub value: f64,
    pub observed_at: i64,
    pub score: u8,
    /// Older than `max_age_secs`: shown, not counted in the aggregate.
    pub stale: bool,
}

/// Evictions and resets since the last [`Evaluator::take_evictions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// No observation for `ttl`.
    pub ttl: u64,
    /// The worker was at `capacity`.
    pub capacity: u64,
    /// The patient's partition was assigned anew.
    pub reassigned: u64,
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

/// The latest observation of one NEWS2 parameter.
#[derive(Debug, Clone, Copy)]
struct Latest {
    value: f64,
    /// `i64::MIN` when never observed.
    at: i64,
    /// Its NEWS2 score, computed once when the reading is stored.
    score: u8,
}

impl Latest {
    const NONE: Latest = Latest {
        value: 0.0,
        at: i64::MIN,
        score: 0,
    };
}

/// An open alert episode of one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Episode {
    /// The highest severity alerted in this episode.
    severity: Severity,
    /// Every severity alerted in this episode (bit per `Severity as u8`): each gets its
    /// `resolved` event when the episode ends, so no downstream alarm stays open.
    alerted: u8,
    /// Observation time of the last alert (opening, reminder or escalation).
    alerted_at: i64,
}

const fn bit(severity: Severity) -> u8 {
    1 << severity as u8
}

/// One threshold rule's memory for a patient. Kept only while it holds something.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RuleMemory {
    /// Observation time of the first breaching observation of the current run.
    breach_since: Option<i64>,
    episode: Option<Episode>,
}

impl RuleMemory {
    const EMPTY: RuleMemory = RuleMemory {
        breach_since: None,
        episode: None,
    };
}

struct Patient {
    owner: Owner,
    /// The evaluator clock at the last observation.
    seen_ms: i64,
    latest: [Latest; 7],
    news2: Option<Episode>,
    /// Rules with a run or an open episode, by rule index; usually empty.
    rules: Vec<(u32, RuleMemory)>,
}

impl Patient {
    fn new(owner: Owner, now_ms: i64) -> Patient {
        Patient {
            owner,
            seen_ms: now_ms,
            latest: [Latest::NONE; 7],
            news2: None,
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

    pub fn rules(&self) -> &Arc<RuleSet> {
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
            out.extend(rules.breached(reading.metric, reading.value).map(|rule| {
                Event::Threshold {
                    rule,
                    status: AlertStatus::Firing,
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
                    status: AlertStatus::Firing,
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
            if let Some(status) = step_threshold(&mut state.rules[slot].1, rule, true, reading) {
                out.push(Event::Threshold { rule: i, status });
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
            if let Some(status) = step_threshold(&mut memory, rule, false, reading) {
                out.push(Event::Threshold {
                    rule: i as usize,
                    status,
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
            let latest = &mut state.latest[param];
            // The latest by observation time, not by arrival.
            if reading.timestamp >= latest.at {
                *latest = Latest {
                    value: reading.value,
                    at: reading.timestamp,
                    score: news2::score(reading.metric, reading.value).unwrap_or(0),
                };
            }
            let chart = Chart {
                latest: &state.latest,
                t: reading.timestamp,
                max_age_ms: rule.max_age_ms,
            };
            step_news2(&mut state.news2, rule, &chart, out);
        }
    }

    /// Forgets the patients whose last reading came from a partition `owned` says this
    /// instance no longer has: another instance holds them now, and counting them here
    /// would overstate what this one watches.
    pub fn retain_owners(&mut self, owned: impl Fn(u64) -> bool) {
        let before = self.patients.len();
        self.patients.retain(|_, p| owned(p.owner.0));
        self.evictions.reassigned += (before - self.patients.len()) as u64;
    }

    /// Forgets patients not seen for the TTL as of `now_ms`. Sweeps at most every
    /// eighth of the TTL (and at most every minute); a patient past the TTL but not yet
    /// swept is treated as forgotten when its next reading comes.
    pub fn expire(&mut self, now_ms: i64) {
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
    pub fn set_rules(&mut self, new: Arc<RuleSet>) {
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
                p.news2 = None;
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

/// One observation through a threshold rule's run and episode; what to publish.
fn step_threshold(
    memory: &mut RuleMemory,
    rule: &super::ThresholdRule,
    breach: bool,
    reading: Reading,
) -> Option<AlertStatus> {
    let t = reading.timestamp;
    if !breach {
        // A late normal reading from before the run does not break it.
        if memory.breach_since.is_some_and(|since| t >= since) {
            memory.breach_since = None;
        }
        if memory.episode.is_some()
            && rule
                .condition
                .cleared(reading.value, rule.alarm.clear_margin)
        {
            memory.episode = None;
            return rule.alarm.emit_resolved.then_some(AlertStatus::Resolved);
        }
        return None;
    }
    let since = *memory.breach_since.get_or_insert(t);
    if t.saturating_sub(since) < rule.for_ms {
        return None;
    }
    open_or_repeat(&mut memory.episode, rule.severity, t, &rule.alarm)
}

/// A firing condition at `severity`: opens an episode, escalates it, or repeats it once
/// the cooldown has passed. `Some(Firing)` when an alert is due.
fn open_or_repeat(
    episode: &mut Option<Episode>,
    severity: Severity,
    t: i64,
    alarm: &Alarm,
) -> Option<AlertStatus> {
    match episode {
        None => {
            *episode = Some(Episode {
                severity,
                alerted: bit(severity),
                alerted_at: t,
            });
            Some(AlertStatus::Firing)
        }
        Some(e) if severity > e.severity => {
            e.severity = severity;
            e.alerted |= bit(severity);
            // A late reading never moves the reminder clock back.
            e.alerted_at = e.alerted_at.max(t);
            Some(AlertStatus::Firing)
        }
        Some(e) if t.saturating_sub(e.alerted_at) >= alarm.cooldown_ms => {
            e.alerted |= bit(severity);
            e.alerted_at = t;
            Some(AlertStatus::Firing)
        }
        Some(_) => None,
    }
}

/// A patient's NEWS2 chart as of observation time `t`.
struct Chart<'a> {
    latest: &'a [Latest; 7],
    t: i64,
    max_age_ms: i64,
}

impl Chart<'_> {
    fn stale(&self, l: &Latest) -> bool {
        self.t.saturating_sub(l.at) > self.max_age_ms
    }

    /// The aggregate of the fresh parameters, and whether any observed one is stale.
    /// Evaluated for every reading: scores were computed when the readings were stored.
    fn aggregate(&self) -> (Aggregate, bool) {
        let mut aggregate = Aggregate::default();
        let mut any_stale = false;
        for l in self.latest.iter().filter(|l| l.at != i64::MIN) {
            if self.stale(l) {
                any_stale = true;
            } else {
                aggregate.add(l.score);
            }
        }
        (aggregate, any_stale)
    }

    /// Whether a fresh parameter still holds the single-parameter trigger: it scores 3,
    /// or its value is within its `single_clear_margin` of a 3-band. Only asked while an
    /// episode is open (the hysteresis of its end), never to open one.
    fn holds_single_three(&self, rule: &News2Rule) -> bool {
        self.latest
            .iter()
            .zip(news2::PARAMETERS)
            .zip(rule.single_clear_margin)
            .any(|((l, metric), margin)| {
                l.at != i64::MIN
                    && !self.stale(l)
                    && (l.score >= 3
                        || (margin > 0.0
                            && [l.value - margin, l.value + margin]
                                .into_iter()
                                .any(|v| news2::score(metric, v) == Some(3))))
            })
    }

    /// The full breakdown, built only for an event to publish.
    fn breakdown(&self, aggregate: Aggregate) -> Breakdown {
        let parameters = self.latest.map(|l| {
            (l.at != i64::MIN).then(|| Scored {
                value: l.value,
                observed_at: l.at,
                score: l.score,
                stale: self.stale(&l),
            })
        });
        Breakdown {
            aggregate,
            parameters,
        }
    }
}

/// One evaluation of the NEWS2 aggregate through its episode; appends what to publish.
fn step_news2(
    episode: &mut Option<Episode>,
    rule: &News2Rule,
    chart: &Chart<'_>,
    out: &mut Vec<Event>,
) {
    let (aggregate, any_stale) = chart.aggregate();
    let t = chart.t;
    let severity = match aggregate.risk() {
        Risk::High => Some(Severity::High),
        Risk::Medium => Some(Severity::Medium),
        Risk::Low => None,
    };
    if let Some(severity) = severity {
        if let Some(status) = open_or_repeat(episode, severity, t, &rule.alarm) {
            // A reminder reports the current severity, which may be below the
            // episode's highest.
            out.push(Event::News2 {
                severity,
                status,
                breakdown: chart.breakdown(aggregate),
            });
        }
        return;
    }
    let Some(open) = *episode else {
        return;
    };
    // Cleared: the aggregate back below the medium band by the margin, no parameter at
    // 3 or within its margin of a 3 (a pulse hovering at 128-134 is one episode, as it is
    // for `heart_rate_high`), and nothing stale — a chart that only looks better because
    // readings aged out of it is not a recovery.
    let cleared = f64::from(aggregate.total) <= 4.0 - rule.alarm.clear_margin
        && aggregate.max_single < 3
        && !chart.holds_single_three(rule)
        && !any_stale;
    if !cleared {
        return;
    }
    *episode = None;
    if rule.alarm.emit_resolved {
        for severity in Severity::ALL {
            if open.alerted & bit(severity) != 0 {
                out.push(Event::News2 {
                    severity,
                    status: AlertStatus::Resolved,
                    breakdown: chart.breakdown(aggregate),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
