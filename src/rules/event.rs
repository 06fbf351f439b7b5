//! The rules' vocabulary: what an evaluation says, before any wire format.
//!
//! The evaluator ([`super::state::Evaluator`]) turns observations into [`Event`]s; the
//! alert wire format (`crate::alert`) turns an event into the JSON a console reads. Both
//! speak these types, and neither owns them.

use std::fmt;

use serde::Serialize;

use super::news2::Aggregate;

/// Alarm priority, as in IEC 60601-1-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub(crate) const ALL: [Severity; 3] = [Severity::Low, Severity::Medium, Severity::High];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub(crate) fn from_wire(s: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an event opens or repeats an alert, or ends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// Something to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A threshold rule, by index in [`super::RuleSet::rules`].
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
    pub(crate) aggregate: Aggregate,
    /// By [`super::news2::PARAMETERS`] position; `None` when never observed (missing).
    pub(crate) parameters: [Option<Scored>; 7],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub(crate) value: f64,
    pub(crate) observed_at: i64,
    pub(crate) score: u8,
    /// Older than `max_age_secs`: shown, not counted in the aggregate.
    pub(crate) stale: bool,
}
