//! Threshold rules: a metric strictly above or below a fixed value.

use crate::alert::Severity;
use crate::vitals::Metric;

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

    /// The value an alert reports as its `threshold`.
    pub fn threshold(self) -> f64 {
        match self {
            Condition::Above(t) | Condition::Below(t) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    pub id: String,
    pub metric: Metric,
    pub condition: Condition,
    pub severity: Severity,
}
