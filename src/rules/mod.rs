//! Clinical rules: what turns an observation into alerts.
//!
//! A [`RuleSet`] is loaded once at start-up from `rules.file` and shared read-only by
//! every worker. Loading validates the whole file and fails with the file, the line and
//! the rule, so a typo never reaches a ward. Evaluation is a lookup by metric and a
//! comparison per rule: no allocation, no locks.
//!
//! [`news2`] is the NEWS2 chart as pure functions (a score per parameter, the aggregate
//! and its risk), for rules that look at a patient's whole picture instead of one value.

pub mod news2;
mod threshold;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use threshold::{Condition, ThresholdRule};

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
    /// Per metric, each rule's condition next to its index: evaluation streams through
    /// 24 bytes a rule instead of following an index into the whole rule (a large rule
    /// set then stays in cache; `vitalwatch bench`, CPU-bound rules).
    by_metric: [Vec<(Condition, usize)>; Metric::COUNT],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    threshold: Vec<Spanned<RawThreshold>>,
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

        let mut rules: Vec<ThresholdRule> = Vec::with_capacity(parsed.threshold.len());
        // Line of each accepted rule's `id`, to point a duplicate at the first definition.
        let mut id_lines: HashMap<String, usize> = HashMap::with_capacity(parsed.threshold.len());
        // Line numbers by binary search over line starts: counting newlines from the top
        // for every key made a large generated rule set (120 000 rules) take minutes.
        let lines = Lines::new(text);
        for (n, spanned) in parsed.threshold.into_iter().enumerate() {
            let rule_line = lines.line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let name = rule_name(raw.id.as_ref().map(|id| id.get_ref().as_str()), n);
            let fail = |line: usize, message: String| err(Some(line), Some(name.clone()), message);
            let key_line = |span: std::ops::Range<usize>| lines.line_of(span.start);

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
            id_lines.insert(id.clone(), id_line);
            rules.push(ThresholdRule {
                id,
                metric,
                condition,
                severity,
            });
        }
        Ok(RuleSet::new(rules))
    }

    pub fn new(rules: Vec<ThresholdRule>) -> RuleSet {
        let mut by_metric: [Vec<(Condition, usize)>; Metric::COUNT] = Default::default();
        for (i, rule) in rules.iter().enumerate() {
            by_metric[rule.metric.index()].push((rule.condition, i));
        }
        RuleSet { rules, by_metric }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[ThresholdRule] {
        &self.rules
    }

    /// The rules `obs` breaches, in file order.
    pub fn evaluate<'r>(
        &'r self,
        obs: &Observation<'_>,
    ) -> impl Iterator<Item = &'r ThresholdRule> + 'r {
        self.evaluate_indexed(obs).map(|(_, r)| r)
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
