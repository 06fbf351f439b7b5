//! Clinical rules: what turns an observation into alerts.
//!
//! A [`RuleSet`] is loaded from `rules.file` at start-up (and again on a hot reload) and
//! shared read-only by every worker. Loading validates the whole file and fails with the
//! file, the line and the rule, so a typo never reaches a ward. Which conditions an
//! observation breaches is a lookup by metric and a comparison per rule; what is done
//! about it over time (sustained conditions, cooldown, hysteresis, the NEWS2 aggregate)
//! is [`state::Evaluator`]'s, per patient, in the worker that owns the patient.

pub mod live;
pub mod news2;
pub mod state;
mod threshold;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use threshold::{Alarm, Condition, ThresholdRule};

use crate::alert::Severity;
use crate::vitals::{Metric, Observation};

/// The rules file shipped in `config/rules.toml`: the NEWS2 red flags.
pub const DEFAULT_RULES_TOML: &str = include_str!("../../config/rules.toml");

/// A rules file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RulesError {
    pub file: PathBuf,
    /// 1-based line of the offending rule or syntax error, when known.
    pub line: Option<usize>,
    /// The rule's id, or `threshold #N` when it has none.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rules file {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ", rule `{rule}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

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

/// The NEWS2 aggregate-score rule: alerts `news2_medium` and `news2_high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct News2Rule {
    /// A parameter's latest observation counts while it is at most this old, relative to
    /// the observation being evaluated (observation time, milliseconds).
    pub max_age_ms: i64,
    /// Cooldown and re-arming; `clear_margin` is in score points below the medium band.
    pub alarm: Alarm,
    /// Hysteresis of the single-parameter trigger, per parameter in
    /// [`news2::PARAMETERS`] order and in the parameter's unit: a parameter that scores
    /// 3 keeps a `news2_medium` episode open until its value is this far back inside the
    /// next band, as `clear_margin` does for a threshold rule. 0 for the coded
    /// parameters (oxygen, consciousness), whose values have nothing in between.
    pub single_clear_margin: [f64; 7],
}

impl News2Rule {
    pub const MEDIUM_ID: &str = "news2_medium";
    pub const HIGH_ID: &str = "news2_high";

    /// The margin of `metric`'s single-parameter 3 (0 when NEWS2 does not score it).
    pub fn single_clear_margin(&self, metric: Metric) -> f64 {
        news2::parameter_index(metric).map_or(0.0, |i| self.single_clear_margin[i])
    }
}

/// `[news2] single_clear_margin` when the file does not give one, in
/// [`news2::PARAMETERS`] order: the `clear_margin`s of the shipped red-flag rules, which
/// are NEWS2's 3-bands (for respiration and pulse the wider of their two sides).
pub const DEFAULT_SINGLE_CLEAR_MARGIN: [f64; 7] = [2.0, 1.0, 0.0, 5.0, 5.0, 0.0, 0.2];

/// Cooldown and hysteresis defaults when the file does not say (`[defaults]`).
pub const DEFAULT_COOLDOWN_SECS: u64 = 300;
/// NEWS2 freshness window when `[news2]` does not set `max_age_secs`.
pub const DEFAULT_NEWS2_MAX_AGE_SECS: u64 = 3600;
/// The longest `for_secs`, `cooldown_secs` or `max_age_secs` accepted: a day.
const MAX_SPAN_SECS: u64 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    defaults: Option<RawAlarm>,
    news2: Option<RawNews2>,
    #[serde(default)]
    threshold: Vec<Spanned<RawThreshold>>,
}

/// Alarm keys, as `[defaults]`, `[news2]` and every `[[threshold]]` may give them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlarm {
    cooldown_secs: Option<Spanned<u64>>,
    clear_margin: Option<Spanned<f64>>,
    emit_resolved: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNews2 {
    enabled: Option<bool>,
    max_age_secs: Option<Spanned<u64>>,
    // Not `#[serde(flatten)]` with RawAlarm: flattening loses spans and unknown-key errors.
    cooldown_secs: Option<Spanned<u64>>,
    clear_margin: Option<Spanned<f64>>,
    emit_resolved: Option<Spanned<bool>>,
    /// Metric name → margin; metrics not given keep their default.
    single_clear_margin: Option<BTreeMap<Spanned<String>, Spanned<f64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    // Spans let every error point at the line of the key that is wrong.
    id: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    above: Option<Spanned<f64>>,
    below: Option<Spanned<f64>>,
    severity: Option<Spanned<String>>,
    for_secs: Option<Spanned<u64>>,
    cooldown_secs: Option<Spanned<u64>>,
    clear_margin: Option<Spanned<f64>>,
    emit_resolved: Option<Spanned<bool>>,
}

impl RuleSet {
    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            file: path.to_owned(),
            line: None,
            rule: None,
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// The shipped NEWS2 red-flag set.
    pub fn news2_red_flags() -> RuleSet {
        // The shipped file is validated by a unit test; failing here would be a build defect.
        Self::parse(DEFAULT_RULES_TOML, Path::new("config/rules.toml"))
            .unwrap_or_else(|e| panic!("shipped rules are invalid: {e}"))
    }

    /// Parses rules from TOML text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<RuleSet, RulesError> {
        let err = |line: Option<usize>, rule: Option<String>, message: String| RulesError {
            file: file.to_owned(),
            line,
            rule,
            message,
        };
        let parsed: RulesFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            err(
                at.map(|at| line_of(text, at)),
                at.and_then(|at| rule_enclosing(text, at)),
                e.message().trim().to_owned(),
            )
        })?;

        let lines = Lines::new(text);
        let key_line = |span: std::ops::Range<usize>| lines.line_of(span.start);
        // `[defaults]` and `[news2]` errors name the table instead of a rule.
        let table_err = |table: &str, span: std::ops::Range<usize>, message: String| {
            err(Some(key_line(span)), Some(format!("[{table}]")), message)
        };

        let defaults = match parsed.defaults {
            Some(d) => alarm(
                (d.cooldown_secs, d.clear_margin, d.emit_resolved),
                &Alarm {
                    cooldown_ms: secs_to_ms(DEFAULT_COOLDOWN_SECS),
                    ..Alarm::STATELESS
                },
            )
            .map_err(|(span, m)| table_err("defaults", span, m))?,
            None => Alarm {
                cooldown_ms: secs_to_ms(DEFAULT_COOLDOWN_SECS),
                ..Alarm::STATELESS
            },
        };

        let news2 = match parsed.news2 {
            Some(n) if n.enabled != Some(false) => {
                let max_age_secs = match n.max_age_secs {
                    Some(age) => {
                        let secs = *age.get_ref();
                        if secs == 0 || secs > MAX_SPAN_SECS {
                            return Err(table_err(
                                "news2",
                                age.span(),
                                format!("`max_age_secs` must be 1 to {MAX_SPAN_SECS}"),
                            ));
                        }
                        secs
                    }
                    None => DEFAULT_NEWS2_MAX_AGE_SECS,
                };
                let margin_span = n.clear_margin.as_ref().map(|m| m.span());
                // The margin is in score points here, not a vital sign's unit: it is not
                // taken from [defaults].
                let news2_defaults = Alarm {
                    clear_margin: 0.0,
                    ..defaults
                };
                let alarm = alarm(
                    (n.cooldown_secs, n.clear_margin, n.emit_resolved),
                    &news2_defaults,
                )
                .map_err(|(span, m)| table_err("news2", span, m))?;
                // The medium band starts at an aggregate of 5: a margin past 4 could
                // never clear.
                if alarm.clear_margin > 4.0 || alarm.clear_margin.fract() != 0.0 {
                    let span = margin_span.unwrap_or(0..0);
                    return Err(table_err(
                        "news2",
                        span,
                        "`clear_margin` is in whole score points, 0 to 4".into(),
                    ));
                }
                let mut single_clear_margin = DEFAULT_SINGLE_CLEAR_MARGIN;
                for (metric, margin) in n.single_clear_margin.into_iter().flatten() {
                    let name = metric.get_ref();
                    let scored = Metric::from_wire(name)
                        .filter(|m| !m.is_binary())
                        .and_then(news2::parameter_index);
                    let Some(i) = scored else {
                        return Err(table_err(
                            "news2",
                            metric.span(),
                            format!(
                                "`single_clear_margin` has no parameter \"{name}\" (NEWS2 measures: {})",
                                news2::PARAMETERS
                                    .iter()
                                    .filter(|m| !m.is_binary())
                                    .map(|m| m.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    };
                    let v = *margin.get_ref();
                    if !v.is_finite() || v < 0.0 {
                        return Err(table_err(
                            "news2",
                            margin.span(),
                            format!(
                                "`single_clear_margin.{name}` must be a finite number, 0 or more"
                            ),
                        ));
                    }
                    single_clear_margin[i] = v;
                }
                Some(News2Rule {
                    max_age_ms: secs_to_ms(max_age_secs),
                    alarm,
                    single_clear_margin,
                })
            }
            _ => None,
        };

        let mut rules: Vec<ThresholdRule> = Vec::with_capacity(parsed.threshold.len());
        // Line of each accepted rule's `id`, to point a duplicate at the first definition.
        let mut id_lines: HashMap<String, usize> = HashMap::with_capacity(parsed.threshold.len());
        for (n, spanned) in parsed.threshold.into_iter().enumerate() {
            let rule_line = lines.line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let name = rule_name(raw.id.as_ref().map(|id| id.get_ref().as_str()), n);
            let fail = |line: usize, message: String| err(Some(line), Some(name.clone()), message);

            let id = raw
                .id
                .ok_or_else(|| fail(rule_line, "`id` is missing".into()))?;
            let id_line = key_line(id.span());
            let id = id.into_inner();
            if id.trim().is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(fail(
                    id_line,
                    "`id` must be non-empty, without whitespace or control characters".into(),
                ));
            }
            if id == News2Rule::MEDIUM_ID || id == News2Rule::HIGH_ID {
                return Err(fail(
                    id_line,
                    "`news2_medium` and `news2_high` are the NEWS2 aggregate's ids ([news2])"
                        .into(),
                ));
            }
            if let Some(first) = id_lines.get(&id) {
                return Err(fail(
                    id_line,
                    format!(
                        "duplicate rule id, first defined at line {first} (ids must be unique)"
                    ),
                ));
            }
            let metric_name = raw
                .metric
                .ok_or_else(|| fail(rule_line, "`metric` is missing".into()))?;
            let metric = Metric::from_wire(metric_name.get_ref()).ok_or_else(|| {
                fail(
                    key_line(metric_name.span()),
                    format!(
                        "unknown metric \"{}\" (known: {})",
                        metric_name.get_ref(),
                        Metric::ALL.map(Metric::as_str).join(", ")
                    ),
                )
            })?;
            let (condition, threshold_line) = match (raw.above, raw.below) {
                (Some(a), None) => (Condition::Above(*a.get_ref()), key_line(a.span())),
                (None, Some(b)) => (Condition::Below(*b.get_ref()), key_line(b.span())),
                (None, None) => {
                    return Err(fail(rule_line, "give one of `above` or `below`".into()));
                }
                (Some(a), Some(b)) => {
                    return Err(fail(
                        key_line(a.span()).max(key_line(b.span())),
                        "give only one of `above` or `below` (write two rules for a band)".into(),
                    ));
                }
            };
            if !condition.threshold().is_finite() {
                return Err(fail(
                    threshold_line,
                    "threshold must be a finite number".into(),
                ));
            }
            if let Some(problem) = outside_plausible(metric, condition) {
                return Err(fail(threshold_line, problem));
            }
            let severity_name = raw
                .severity
                .ok_or_else(|| fail(rule_line, "`severity` is missing".into()))?;
            let severity = Severity::from_wire(severity_name.get_ref()).ok_or_else(|| {
                fail(
                    key_line(severity_name.span()),
                    format!(
                        "unknown severity \"{}\" (use low, medium or high)",
                        severity_name.get_ref()
                    ),
                )
            })?;
            let for_secs = match raw.for_secs {
                Some(f) if *f.get_ref() > MAX_SPAN_SECS => {
                    return Err(fail(
                        key_line(f.span()),
                        format!("`for_secs` must be 0 to {MAX_SPAN_SECS}"),
                    ));
                }
                Some(f) => *f.get_ref(),
                None => 0,
            };
            let margin_line = raw.clear_margin.as_ref().map(|m| key_line(m.span()));
            let alarm = alarm(
                (raw.cooldown_secs, raw.clear_margin, raw.emit_resolved),
                &defaults,
            )
            .map_err(|(span, m)| fail(key_line(span), m))?;
            // A margin that puts the clear value outside what the metric can read would
            // keep the first alert open for ever.
            let (low, high) = metric.plausible_range();
            let bound = condition.clear_bound(alarm.clear_margin);
            if alarm.clear_margin > 0.0 && !(low..=high).contains(&bound) {
                return Err(fail(
                    margin_line.unwrap_or(rule_line),
                    format!(
                        "`clear_margin` {} would clear at {bound}, outside {}'s range [{low}, {high}] {}",
                        alarm.clear_margin,
                        metric.as_str(),
                        metric.unit()
                    ),
                ));
            }
            id_lines.insert(id.clone(), id_line);
            rules.push(ThresholdRule {
                id,
                metric,
                condition,
                severity,
                for_ms: secs_to_ms(for_secs),
                alarm,
            });
        }
        if rules.is_empty() && news2.is_none() {
            return Err(err(
                None,
                None,
                "it has no [[threshold]] rules and no [news2]: vitalwatch would raise no alert \
                 (an empty or truncated file, or the wrong one?)"
                    .into(),
            ));
        }
        let mut set = RuleSet::new(rules).with_news2(news2);
        set.source_hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        Ok(set)
    }

    /// Threshold rules only, NEWS2 off.
    pub fn new(rules: Vec<ThresholdRule>) -> RuleSet {
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
    pub fn with_news2(mut self, news2: Option<News2Rule>) -> RuleSet {
        self.news2 = news2;
        self.stateless = news2.is_none() && self.rules.iter().all(ThresholdRule::is_stateless);
        self
    }

    /// XXH3-64 of the text this set was parsed from; 0 when built in code.
    pub fn source_hash(&self) -> u64 {
        self.source_hash
    }

    pub fn news2(&self) -> Option<&News2Rule> {
        self.news2.as_ref()
    }

    /// Whether every observation's alerts follow from that observation alone: no
    /// sustained conditions, no cooldown or hysteresis, no NEWS2. Such a set needs no
    /// per-patient state.
    pub fn is_stateless(&self) -> bool {
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

    /// The set as a rules file that parses back to it.
    pub fn to_toml(&self) -> String {
        use std::fmt::Write;
        let secs = |ms: i64| ms / 1000;
        let mut out = String::new();
        if let Some(n) = &self.news2 {
            let margins: Vec<String> = news2::PARAMETERS
                .iter()
                .zip(n.single_clear_margin)
                .filter(|(m, _)| !m.is_binary())
                .map(|(m, v)| format!("{} = {v:?}", m.as_str()))
                .collect();
            let _ = writeln!(
                out,
                "[news2]\nmax_age_secs = {}\ncooldown_secs = {}\nclear_margin = {:?}\nemit_resolved = {}\n\
                 single_clear_margin = {{ {} }}\n",
                secs(n.max_age_ms),
                secs(n.alarm.cooldown_ms),
                n.alarm.clear_margin,
                n.alarm.emit_resolved,
                margins.join(", ")
            );
        }
        for r in &self.rules {
            let (key, t) = match r.condition {
                Condition::Above(t) => ("above", t),
                Condition::Below(t) => ("below", t),
            };
            let _ = writeln!(
                out,
                "[[threshold]]\nid = {}\nmetric = \"{}\"\n{key} = {t:?}\nseverity = \"{}\"\n\
                 for_secs = {}\ncooldown_secs = {}\nclear_margin = {:?}\nemit_resolved = {}\n",
                toml::Value::String(r.id.clone()),
                r.metric.as_str(),
                r.severity.as_str(),
                secs(r.for_ms),
                secs(r.alarm.cooldown_ms),
                r.alarm.clear_margin,
                r.alarm.emit_resolved
            );
        }
        out
    }

    /// The longest span of observation time the rules look back over (`for_secs`,
    /// `cooldown_secs`, NEWS2 `max_age_secs`), milliseconds: patient state kept for less
    /// than this would forget what the rules still need.
    pub fn longest_memory_ms(&self) -> i64 {
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

    /// Rules in force, counting the NEWS2 score as one (`vitalwatch_rules_loaded`): a
    /// NEWS2-only set is not "no rules".
    pub fn rule_count(&self) -> usize {
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

    /// Indices of the rules of `metric` that `value` breaches, in file order.
    #[inline]
    pub fn breached(&self, metric: Metric, value: f64) -> impl Iterator<Item = usize> + '_ {
        self.by_metric[metric.index()]
            .iter()
            .filter(move |(condition, _)| condition.fires(value))
            .map(|&(_, i)| i)
    }

    /// The conditions of `metric`'s rules next to their indices, in file order.
    #[inline]
    pub fn by_metric(&self, metric: Metric) -> &[(Condition, usize)] {
        &self.by_metric[metric.index()]
    }

    /// As [`RuleSet::evaluate`], with each rule's index in [`RuleSet::rules`].
    pub fn evaluate_indexed<'r>(
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

/// A threshold that cannot mean what it says: every reading the decoder accepts breaches
/// it (`spo2 below = 150`), or none can (`heart_rate above = 300`). Usually a unit slip.
fn outside_plausible(metric: Metric, condition: Condition) -> Option<String> {
    let (low, high) = metric.plausible_range();
    let unit = metric.unit();
    let m = metric.as_str();
    let (always, never) = match condition {
        Condition::Above(t) => (t < low, t >= high),
        Condition::Below(t) => (t > high, t <= low),
    };
    let t = condition.threshold();
    if always {
        Some(format!(
            "threshold {t} is outside {m}'s plausible range [{low}, {high}] {unit}: the rule would fire on every reading (a unit slip?)"
        ))
    } else if never {
        Some(format!(
            "threshold {t} leaves no plausible {m} reading ([{low}, {high}] {unit}) that could fire the rule"
        ))
    } else {
        None
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    // Bounded by MAX_SPAN_SECS where it comes from a file.
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

type RawAlarmKeys = (
    Option<Spanned<u64>>,
    Option<Spanned<f64>>,
    Option<Spanned<bool>>,
);

/// The alarm keys a table gives, over `defaults`; an error carries the bad key's span.
fn alarm(
    (cooldown, margin, resolved): RawAlarmKeys,
    defaults: &Alarm,
) -> Result<Alarm, (std::ops::Range<usize>, String)> {
    let mut alarm = *defaults;
    if let Some(c) = cooldown {
        if *c.get_ref() > MAX_SPAN_SECS {
            return Err((
                c.span(),
                format!("`cooldown_secs` must be 0 to {MAX_SPAN_SECS}"),
            ));
        }
        alarm.cooldown_ms = secs_to_ms(*c.get_ref());
    }
    if let Some(m) = margin {
        let v = *m.get_ref();
        if !v.is_finite() || v < 0.0 {
            return Err((
                m.span(),
                "`clear_margin` must be a finite number, 0 or more".into(),
            ));
        }
        alarm.clear_margin = v;
    }
    if let Some(r) = resolved {
        alarm.emit_resolved = *r.get_ref();
    }
    Ok(alarm)
}

/// How errors name a rule: its id, or its position when it has none.
fn rule_name(id: Option<&str>, index: usize) -> String {
    match id {
        Some(id) => id.to_owned(),
        None => format!("threshold #{}", index + 1),
    }
}

/// The rule whose `[[threshold]]` table contains byte offset `at`, for errors that serde
/// reports with a position only (an unknown key, a value of the wrong type). `None` when
/// the text is not TOML at all or `at` is outside every rule.
fn rule_enclosing(text: &str, at: usize) -> Option<String> {
    // A table's own span is only its `[[threshold]]` header; its keys and values carry
    // their own spans, so keep them.
    type Entries = BTreeMap<Spanned<String>, Spanned<toml::Value>>;
    #[derive(Deserialize)]
    struct Outline {
        #[serde(default)]
        threshold: Vec<Spanned<Entries>>,
    }
    let outline: Outline = toml::from_str(text).ok()?;
    let (n, table) = outline.threshold.iter().enumerate().find(|(_, t)| {
        t.span().contains(&at)
            || t.get_ref()
                .iter()
                .any(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
    })?;
    let id = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "id")
        .and_then(|(_, v)| v.get_ref().as_str());
    Some(rule_name(id, n))
}

/// 1-based line number of byte offset `at` in `text`.
/// Where each line of a text starts, for line numbers of byte offsets.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { starts }
    }

    /// 1-based line of byte offset `at`, as [`line_of`] counts it.
    fn line_of(&self, at: usize) -> usize {
        self.starts.partition_point(|&s| s <= at)
    }
}

fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
