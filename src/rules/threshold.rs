//! The threshold rule kind: a metric strictly above or below a fixed value, optionally
//! sustained; an SpO2 rule may give another value for patients on SpO2 scale 2. Its `[[threshold]]` table in the rules file ([`parse`]), and what one
//! observation does to a patient's run and episode of the rule ([`step`]).

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::alarm::{Alarm, Episode, open_or_repeat};
use super::event::{EpisodeStep, Severity};
use super::news2::{News2Rule, Spo2Scale};
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
    /// An SpO2 rule's condition for patients on NEWS2 SpO2 scale 2 (`scale_2_below`,
    /// `scale_2_above`); `None`: `condition` on both scales.
    pub(crate) scale_2: Option<Condition>,
    pub(crate) severity: Severity,
    /// The condition must hold for every observation over this span (observation
    /// timestamps, milliseconds) before the rule fires; 0 fires on the first.
    pub(crate) for_ms: i64,
    pub(crate) alarm: Alarm,
}

impl ThresholdRule {
    /// The metric the rule watches.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Whether evaluating this rule needs per-patient memory.
    pub(crate) fn is_stateless(&self) -> bool {
        self.for_ms == 0 && self.alarm.is_stateless()
    }

    /// The condition for a patient on SpO2 `scale`: `scale_2` on scale 2 when the rule
    /// gives one, else `condition`.
    pub(crate) fn condition_on(&self, scale: Spo2Scale) -> Condition {
        match (scale, self.scale_2) {
            (Spo2Scale::Two, Some(c)) => c,
            _ => self.condition,
        }
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
    scale_2_above: Option<Spanned<f64>>,
    scale_2_below: Option<Spanned<f64>>,
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
    let scale_2 = match (raw.scale_2_above, raw.scale_2_below) {
        (None, None) => None,
        (Some(a), Some(b)) => {
            return Err(fail(
                src.line(a.span()).max(src.line(b.span())),
                "give only one of `scale_2_above` or `scale_2_below`".into(),
            ));
        }
        (Some(a), None) => Some((Condition::Above(*a.get_ref()), src.line(a.span()))),
        (None, Some(b)) => Some((Condition::Below(*b.get_ref()), src.line(b.span()))),
    };
    if let Some((c, line)) = scale_2 {
        let key = match c {
            Condition::Above(_) => "scale_2_above",
            Condition::Below(_) => "scale_2_below",
        };
        if metric != Metric::Spo2 {
            return Err(fail(
                line,
                format!(
                    "`{key}` is for spo2 rules only (NEWS2 SpO2 scale 2), not {}",
                    metric.as_str()
                ),
            ));
        }
        if !c.threshold().is_finite() {
            return Err(fail(line, format!("`{key}` must be a finite number")));
        }
        if let Some(problem) = outside_plausible(metric, c) {
            return Err(fail(line, format!("`{key}`: {problem}")));
        }
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
    for c in std::iter::once(condition).chain(scale_2.map(|(c, _)| c)) {
        let bound = c.clear_bound(alarm.clear_margin);
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
    }
    id_lines.insert(id.clone(), id_line);
    Ok(ThresholdRule {
        id,
        metric,
        condition,
        scale_2: scale_2.map(|(c, _)| c),
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
/// `condition` is the rule's for this patient (its SpO2 scale's,
/// [`ThresholdRule::condition_on`], or the patient's own override): `breach` is whether
/// it fires, and an open episode clears by the rule's `clear_margin` past it.
pub(super) fn step_on(
    memory: &mut RuleMemory,
    rule: &ThresholdRule,
    condition: Condition,
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
            && condition.cleared(value, rule.alarm.clear_margin)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::rules::RuleSet;

    fn parse_rule(body: &str) -> Result<RuleSet, RulesError> {
        RuleSet::parse(
            &format!("[[threshold]]\nid = \"r\"\n{body}\nseverity = \"medium\"\n"),
            Path::new("rules.toml"),
        )
    }

    #[test]
    fn scale_2_is_read_on_spo2_rules_and_chosen_by_the_scale() {
        let set = parse_rule("metric = \"spo2\"\nbelow = 92\nscale_2_below = 84").unwrap();
        let rule = &set.rules()[0];
        assert_eq!(rule.scale_2, Some(Condition::Below(84.0)));
        assert_eq!(rule.condition_on(Spo2Scale::One), Condition::Below(92.0));
        assert_eq!(rule.condition_on(Spo2Scale::Two), Condition::Below(84.0));

        let set = parse_rule("metric = \"spo2\"\nbelow = 92\nscale_2_above = 96").unwrap();
        assert_eq!(
            set.rules()[0].condition_on(Spo2Scale::Two),
            Condition::Above(96.0)
        );

        // Without one, both scales use the rule's condition.
        let set = parse_rule("metric = \"spo2\"\nbelow = 92").unwrap();
        let rule = &set.rules()[0];
        assert_eq!(rule.scale_2, None);
        assert_eq!(rule.condition_on(Spo2Scale::Two), Condition::Below(92.0));
    }

    #[test]
    fn scale_2_errors_name_the_line_and_the_key() {
        for (body, line, says) in [
            (
                "metric = \"heart_rate\"\nabove = 130\nscale_2_above = 120",
                5,
                "`scale_2_above` is for spo2 rules only",
            ),
            (
                "metric = \"spo2\"\nbelow = 92\nscale_2_below = 84\nscale_2_above = 96",
                6,
                "only one of `scale_2_above` or `scale_2_below`",
            ),
            (
                "metric = \"spo2\"\nbelow = 92\nscale_2_below = nan",
                5,
                "`scale_2_below` must be a finite number",
            ),
            (
                "metric = \"spo2\"\nbelow = 92\nscale_2_below = inf",
                5,
                "`scale_2_below` must be a finite number",
            ),
            (
                "metric = \"spo2\"\nbelow = 92\nscale_2_below = 150",
                5,
                "`scale_2_below`: threshold 150 is outside spo2's plausible range",
            ),
            (
                "metric = \"spo2\"\nbelow = 92\nscale_2_above = 100",
                5,
                "`scale_2_above`: threshold 100 leaves no plausible spo2 reading",
            ),
        ] {
            let e = parse_rule(body).unwrap_err();
            assert_eq!(e.line, Some(line), "{body}: {e}");
            assert_eq!(e.rule.as_deref(), Some("r"), "{body}: {e}");
            assert!(e.message.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn the_shipped_spo2_low_flags_scale_2_at_its_3_band() {
        let set = RuleSet::news2_red_flags();
        let spo2_low = set.rules().iter().find(|r| r.id == "spo2_low").unwrap();
        assert_eq!(spo2_low.scale_2, Some(Condition::Below(84.0)));
        // Every other shipped rule is the same on both scales.
        for r in set.rules().iter().filter(|r| r.id != "spo2_low") {
            assert_eq!(r.scale_2, None, "{}", r.id);
        }
        // The stateless variant keeps it, and it survives the round trip through to_toml.
        let stateless = set.stateless();
        let spo2_low = stateless
            .rules()
            .iter()
            .find(|r| r.id == "spo2_low")
            .unwrap();
        assert_eq!(spo2_low.scale_2, Some(Condition::Below(84.0)));
        let back = RuleSet::parse(&set.to_toml(), Path::new("back.toml")).unwrap();
        assert_eq!(back.rules(), set.rules());
    }

    #[test]
    fn a_scale_2_episode_clears_past_the_scale_2_condition() {
        let set = RuleSet::news2_red_flags();
        let rule = set.rules().iter().find(|r| r.id == "spo2_low").unwrap();
        let on_2 = rule.condition_on(Spo2Scale::Two);
        let mut memory = RuleMemory::EMPTY;
        assert!(step_on(&mut memory, rule, on_2, on_2.fires(83.0), 83.0, 0).is_some());
        // 84 % no longer fires but is within the margin: the episode stays open.
        assert!(!on_2.fires(84.0));
        assert_eq!(step_on(&mut memory, rule, on_2, false, 84.0, 1), None);
        assert!(memory.episode.is_some());
        // 85 % is the clear value on scale 2 (on scale 1 it would still be in breach).
        assert_eq!(step_on(&mut memory, rule, on_2, false, 85.0, 2), None);
        assert_eq!(memory, RuleMemory::EMPTY);
    }
}
