//! Threshold rules: a metric strictly above or below a fixed value, optionally sustained.

use crate::alert::Severity;
use crate::vitals::Metric;

/// Relative tolerance of [`Condition::cleared`]: far below any clinical resolution, far
/// above f64 rounding of decimal input.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// Fires when value > threshold.
    Above(f64),
    /// Fires when value < threshold.
    Below(f64),
}

impl Condition {
    #[inline]
    pub fn fires(self, value: f64) -> bool {
        match self {
            Condition::Above(t) => value > t,
            Condition::Below(t) => value < t,
        }
    }

    /// Whether `value` is back past the threshold by `margin` (the hysteresis that
    /// re-arms an active alert): at most `threshold - margin` for `above`, at least
    /// `threshold + margin` for `below`. With a margin of 0 this is "does not fire".
    #[inline]
    pub fn cleared(self, value: f64, margin: f64) -> bool {
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
    pub fn clear_bound(self, margin: f64) -> f64 {
        match self {
            Condition::Above(t) => t - margin,
            Condition::Below(t) => t + margin,
        }
    }

    /// The value an alert reports as its `threshold`.
    pub fn threshold(self) -> f64 {
        match self {
            Condition::Above(t) | Condition::Below(t) => t,
        }
    }
}

/// How an alert behaves once raised (alarm-fatigue control), per rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alarm {
    /// While the condition persists, the alert is repeated no more often than this
    /// (observation time, milliseconds); 0 repeats it for every breaching observation.
    pub cooldown_ms: i64,
    /// How far past the threshold the value must return before the alert clears and
    /// the rule re-arms (the rule's unit; NEWS2: score points).
    pub clear_margin: f64,
    /// Publish a `resolved` event when an active alert clears.
    pub emit_resolved: bool,
}

impl Alarm {
    /// The behaviour of a plain threshold: every breaching observation alerts, nothing
    /// is remembered between observations.
    pub const STATELESS: Alarm = Alarm {
        cooldown_ms: 0,
        clear_margin: 0.0,
        emit_resolved: false,
    };

    /// Whether this alarm needs per-patient memory at all.
    pub fn is_stateless(&self) -> bool {
        *self == Self::STATELESS
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    pub id: String,
    pub metric: Metric,
    pub condition: Condition,
    pub severity: Severity,
    /// The condition must hold for every observation over this span (observation
    /// timestamps, milliseconds) before the rule fires; 0 fires on the first.
    pub for_ms: i64,
    pub alarm: Alarm,
}

impl ThresholdRule {
    /// A rule that fires on every breaching observation (no `for_secs`, no cooldown).
    pub fn plain(id: &str, metric: Metric, condition: Condition, severity: Severity) -> Self {
        ThresholdRule {
            id: id.to_owned(),
            metric,
            condition,
            severity,
            for_ms: 0,
            alarm: Alarm::STATELESS,
        }
    }

    /// Whether evaluating this rule needs per-patient memory.
    pub fn is_stateless(&self) -> bool {
        self.for_ms == 0 && self.alarm.is_stateless()
    }
}
