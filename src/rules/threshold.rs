//! The threshold rule kind: a metric strictly above or below a fixed value, optionally
//! sustained. Its `[[threshold]]` table in the rules file ([`parse`]), and what one
//! observation does to a patient's run and episode of the rule ([`step`]).

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::alarm::{Alarm, Episode, open_or_repeat};
use super::event::{EpisodeStep, Severity};
use super::news2::News2Rule;
use super::parse::{MAX_SPAN_SECS, RulesError, Source, alarm, rule_name, secs_to_ms};
use crate::vitals::Metric;

/// Relative tolerance of [`Condition::cleared`]: far below any clinical resolution, far
/// above f64 rounding of decimal input.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Condition {
    /// Fires when value > threshold.
    Above(f64),
    /// Fires when value < threshold.
    Below(f64),
}

impl Condition {
    #[inline]
    pub(crate) fn fires(self, value: f64) -> bool {
        match self {
            Condition::Above(t) => value > t,
            Condition::Below(t) => value < t,
        }
    }

    /// Whether `value` is back past the threshold by `margin` (the hysteresis that
    /// re-arms an active alert): at most `threshold - margin` for `above`, at least
    /// `threshold + margin` for `below`. With a margin of 0 this is "does not fire".
    #[inline]
    pub(crate) fn cleared(self, value: f64, margin: f64) -> bool {
        // Decimal thresholds and margins are not exact in binary (35.1 + 0.2 is
        // 35.300000000000004): a reading of exactly the documented clear value clears.
        let bound = self.clear_bound(margin);
        let slack = EPSILON * bound.abs().max(1.0);
        match self {
            Condition::Above(_) => value <= bound + slack,
            Condition::Below(_) => value >= bound - slack,
        }
    }

    /// The value at which an active alert clears: `threshold ∓ margin`.
    pub(crate) fn clear_bound(self, margin: f64) -> f64 {
        match self {
            Condition::Above(t) => t - margin,
            Condition::Below(t) => t + margin,
        }
    }

    /// The value an alert reports as its `threshold`.
    pub(crate) fn threshold(self) -> f64 {
        match self {
            Condition::Above(t) | Condition::Below(t) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    pub id: String,
    pub(crate) metric: Metric,
    pub(crate) condition: Condition,
    pub(crate) severity: Severity,
    /// The condition must hold for every observation over this span (observation
    /// timestamps, milliseconds) before the rule fires; 0 fires on the first.
    pub(crate) for_ms: i64,
    pub(crate) alarm: Alarm,
}

impl ThresholdRule {
    /// Whether evaluating this rule needs per-patient memory.
    pub(crate) fn is_stateless(&self) -> bool {
        self.for_ms == 0 && self.alarm.is_stateless()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
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

/// One `[[threshold]]` table, the `n`th of the file (0-based), over the `[defaults]`
/// alarm; `ids` holds the line of every id accepted so far, to point a duplicate at the
/// first definition.
pub(super) fn parse(
    spanned: Spanned<RawThreshold>,
    n: usize,
    defaults: &Alarm,
    src: &Source<'_>,
    ids: &mut HashMap<String, usize>,
) -> Result<ThresholdRule, RulesError> {
    let id_lines = ids;
    let rule_line = src.line(spanned.span());
    let raw = spanned.into_inner();
    let name = rule_name(raw.id.as_ref().map(|id| id.get_ref().as_str()), n);
    let fail = |line: usize, message: String| src.error(Some(line), Some(name.clone()), message);

    let id = raw
        .id
        .ok_or_else(|| fail(rule_line, "`id` is missing".into()))?;
    let id_line = src.line(id.span());
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
            "`news2_medium` and `news2_high` are the NEWS2 aggregate's ids ([news2])".into(),
        ));
    }
    if let Some(first) = id_lines.get(&id) {
        return Err(fail(
            id_line,
            format!("duplicate rule id, first defined at line {first} (ids must be unique)"),
        ));
    }
    let metric_name = raw
        .metric
        .ok_or_else(|| fail(rule_line, "`metric` is missing".into()))?;
    let metric = Metric::from_wire(metric_name.get_ref()).ok_or_else(|| {
        fail(
            src.line(metric_name.span()),
            format!(
                "unknown metric \"{}\" (known: {})",
                metric_name.get_ref(),
                Metric::ALL.map(Metric::as_str).join(", ")
            ),
        )
    })?;
    let (condition, threshold_line) = match (raw.above, raw.below) {
        (Some(a), None) => (Condition::Above(*a.get_ref()), src.line(a.span())),
        (None, Some(b)) => (Condition::Below(*b.get_ref()), src.line(b.span())),
        (None, None) => {
            return Err(fail(rule_line, "give one of `above` or `below`".into()));
        }
        (Some(a), Some(b)) => {
            return Err(fail(
                src.line(a.span()).max(src.line(b.span())),
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
            src.line(severity_name.span()),
            format!(
                "unknown severity \"{}\" (use low, medium or high)",
                severity_name.get_ref()
            ),
        )
    })?;
    let for_secs = match raw.for_secs {
        Some(f) if *f.get_ref() > MAX_SPAN_SECS => {
            return Err(fail(
                src.line(f.span()),
                format!("`for_secs` must be 0 to {MAX_SPAN_SECS}"),
            ));
        }
        Some(f) => *f.get_ref(),
        None => 0,
    };
    let margin_line = raw.clear_margin.as_ref().map(|m| src.line(m.span()));
    let alarm = alarm(
        (raw.cooldown_secs, raw.clear_margin, raw.emit_resolved),
        defaults,
    )
    .map_err(|(span, m)| fail(src.line(span), m))?;
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
    Ok(ThresholdRule {
        id,
        metric,
        condition,
        severity,
        for_ms: secs_to_ms(for_secs),
        alarm,
    })
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

/// One threshold rule's memory for a patient. Kept only while it holds something.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RuleMemory {
    /// Observation time of the first breaching observation of the current run.
    breach_since: Option<i64>,
    episode: Option<Episode>,
}

impl RuleMemory {
    pub(crate) const EMPTY: RuleMemory = RuleMemory {
        breach_since: None,
        episode: None,
    };

    /// When the current run began, and the open episode: for the state topic.
    pub(crate) fn parts(&self) -> (Option<i64>, Option<Episode>) {
        (self.breach_since, self.episode)
    }

    pub(crate) fn from_parts(breach_since: Option<i64>, episode: Option<Episode>) -> Self {
        RuleMemory {
            breach_since,
            episode,
        }
    }
}

impl ThresholdRule {
    /// What a remembered run or episode of this rule means: its metric, condition and
    /// `for_secs`. State saved under another signature is not applied to this rule (as
    /// a hot reload keeps memory only while these stay the same).
    pub(crate) fn signature(&self) -> u64 {
        let (kind, threshold) = match self.condition {
            Condition::Above(t) => (0u8, t),
            Condition::Below(t) => (1u8, t),
        };
        let mut bytes = Vec::with_capacity(40);
        bytes.extend_from_slice(self.metric.as_str().as_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&threshold.to_bits().to_le_bytes());
        bytes.extend_from_slice(&self.for_ms.to_le_bytes());
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }
}

/// One observation through a threshold rule's run and episode; what to publish.
pub(super) fn step(
    memory: &mut RuleMemory,
    rule: &ThresholdRule,
    breach: bool,
    value: f64,
    t: i64,
) -> Option<EpisodeStep> {
    if !breach {
        // A late normal reading from before the run does not break it.
        if memory.breach_since.is_some_and(|since| t >= since) {
            memory.breach_since = None;
        }
        if let Some(open) = memory.episode
            && rule.condition.cleared(value, rule.alarm.clear_margin)
        {
            memory.episode = None;
            return rule.alarm.emit_resolved.then_some(open.end());
        }
        return None;
    }
    let since = *memory.breach_since.get_or_insert(t);
    if t.saturating_sub(since) < rule.for_ms {
        return None;
    }
    open_or_repeat(&mut memory.episode, rule.severity, t, &rule.alarm)
}
