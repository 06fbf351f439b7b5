//! Clinical rules: what turns an observation into alerts.
//!
//! A [`RuleSet`] is loaded from `rules.file` at start-up (and again on a hot reload) and
//! shared read-only by every worker; the file format and its validation are [`file`]'s.
//! Each rule kind is one module: [`threshold`] and [`news2`] (its definition, its table in
//! the file, what a reading does to a patient's memory of it). Which conditions an
//! observation breaches is a lookup by metric and a comparison per rule; what is done
//! about it over time (sustained conditions, cooldown, hysteresis, the NEWS2 aggregate)
//! is [`state::Evaluator`]'s, per patient, in the worker that owns the patient, with the
//! alarm-fatigue machinery every kind shares in [`alarm`].

pub(crate) mod alarm;
pub mod context;
mod event;
pub(crate) mod file;
pub mod live;
pub mod news2;
mod parse;
pub mod state;
pub(crate) mod threshold;

use crate::vitals::{Metric, Observation};
pub(crate) use alarm::Alarm;
pub use event::{AlertStatus, Breakdown, EpisodeStep, Event, Phase, Scored, Severity};
pub use news2::News2Rule;
pub use parse::RulesError;
pub(crate) use threshold::Condition;
pub use threshold::ThresholdRule;

/// Every rule, indexed by the metric it watches.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<ThresholdRule>,
    /// The NEWS2 aggregate score, when the file enables it.
    news2: Option<News2Rule>,
    /// [`RuleSet::is_stateless`], computed once: it is asked for every observation.
    stateless: bool,
    /// XXH3-64 of the file text this set was parsed from (0 when built in code): the
    /// reloader compares the file on disk with what is in force.
    source_hash: u64,
    /// Per metric, each rule's condition next to its index: evaluation streams through
    /// 24 bytes a rule instead of following an index into the whole rule (a large rule
    /// set then stays in cache; `vitalwatch bench`, CPU-bound rules).
    by_metric: [Vec<(Condition, usize)>; Metric::COUNT],
}

impl RuleSet {
    /// Threshold rules only, NEWS2 off.
    pub(crate) fn new(rules: Vec<ThresholdRule>) -> RuleSet {
        let mut by_metric: [Vec<(Condition, usize)>; Metric::COUNT] = Default::default();
        for (i, rule) in rules.iter().enumerate() {
            by_metric[rule.metric.index()].push((rule.condition, i));
        }
        let stateless = rules.iter().all(ThresholdRule::is_stateless);
        RuleSet {
            rules,
            news2: None,
            stateless,
            source_hash: 0,
            by_metric,
        }
    }

    /// The same rules with the NEWS2 aggregate on (`Some`) or off.
    pub(crate) fn with_news2(mut self, news2: Option<News2Rule>) -> RuleSet {
        self.news2 = news2;
        self.stateless = news2.is_none() && self.rules.iter().all(ThresholdRule::is_stateless);
        self
    }

    /// XXH3-64 of the text this set was parsed from; 0 when built in code.
    pub(crate) fn source_hash(&self) -> u64 {
        self.source_hash
    }

    pub fn news2(&self) -> Option<&News2Rule> {
        self.news2.as_ref()
    }

    /// Whether every observation's alerts follow from that observation alone: no
    /// sustained conditions, no cooldown or hysteresis, no NEWS2. Such a set needs no
    /// per-patient state.
    pub(crate) fn is_stateless(&self) -> bool {
        self.stateless
    }

    /// The same thresholds with every breach alerting and NEWS2 off: alerts that follow
    /// from each message alone. Delivery tests use it, since state rebuilt after a crash
    /// or a rebalance (by design) changes which alerts a re-delivered message raises.
    pub fn stateless(&self) -> RuleSet {
        let rules = self
            .rules
            .iter()
            .map(|r| ThresholdRule {
                for_ms: 0,
                alarm: Alarm::STATELESS,
                ..r.clone()
            })
            .collect();
        RuleSet::new(rules)
    }

    /// The longest span of observation time the rules look back over (`for_secs`,
    /// `cooldown_secs`, NEWS2 `max_age_secs`), milliseconds: patient state kept for less
    /// than this would forget what the rules still need.
    pub(crate) fn longest_memory_ms(&self) -> i64 {
        let thresholds = self.rules.iter().map(|r| r.for_ms.max(r.alarm.cooldown_ms));
        let news2 = self
            .news2
            .iter()
            .map(|n| n.max_age_ms.max(n.alarm.cooldown_ms));
        thresholds.chain(news2).max().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The id of the rule behind `event`.
    pub fn event_rule_id(&self, event: &Event) -> &str {
        match event {
            Event::Threshold { rule, .. } => &self.rules[*rule].id,
            Event::News2 { severity, .. } => News2Rule::id(*severity),
        }
    }

    /// What names the episode `event` belongs to, beside the patient: the threshold
    /// rule's id, or for NEWS2 (one episode over both bands) a key no rule id can be
    /// (ids have no control characters).
    pub fn event_episode_key(&self, event: &Event) -> &str {
        match event {
            Event::Threshold { rule, .. } => &self.rules[*rule].id,
            Event::News2 { .. } => "news2\u{0}",
        }
    }

    /// Rules in force, counting the NEWS2 score as one (`vitalwatch_rules_loaded`): a
    /// NEWS2-only set is not "no rules".
    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len() + usize::from(self.news2.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[ThresholdRule] {
        &self.rules
    }

    /// The rules `obs` breaches, in file order: what a stateless rule set alerts. With
    /// `for_secs`, cooldown or NEWS2, what is published is [`state::Evaluator`]'s call.
    pub fn evaluate<'r>(
        &'r self,
        obs: &Observation<'_>,
    ) -> impl Iterator<Item = &'r ThresholdRule> + 'r {
        self.evaluate_indexed(obs).map(|(_, r)| r)
    }

    /// Indices of the rules of `metric` that `value` breaches, in file order, for a
    /// patient whose context (`Some`) may set its own conditions: overrides, the SpO2
    /// scale.
    #[inline]
    pub(crate) fn breached_under<'a>(
        &'a self,
        metric: Metric,
        value: f64,
        ctx: Option<&'a state::Applied>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.by_metric[metric.index()]
            .iter()
            .filter(move |&&(condition, i)| match ctx {
                None => condition.fires(value),
                Some(a) => a.condition(self, i).fires(value),
            })
            .map(|&(_, i)| i)
    }

    /// As [`RuleSet::evaluate`], with each rule's index in [`RuleSet::rules`].
    pub(crate) fn evaluate_indexed<'r>(
        &'r self,
        obs: &Observation<'_>,
    ) -> impl Iterator<Item = (usize, &'r ThresholdRule)> + 'r {
        let value = obs.value;
        self.by_metric[obs.metric.index()]
            .iter()
            .filter(move |(condition, _)| condition.fires(value))
            .map(|&(_, i)| (i, &self.rules[i]))
    }
}

#[cfg(test)]
mod tests;
