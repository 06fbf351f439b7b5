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

/// Where an alert stands in its episode: the event phase a console follows to open,
/// remind, raise and close one alarm (IHE PCD-04's alert phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A new episode: the condition was not open.
    Start,
    /// A reminder: the condition still holds and the cooldown has passed.
    Continue,
    /// A higher severity within the episode (NEWS2 medium to high).
    Escalate,
    /// The episode resolved (`status: "resolved"`).
    End,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Continue => "continue",
            Phase::Escalate => "escalate",
            Phase::End => "end",
        }
    }

    /// The alert's `status`: `resolved` for the end, `firing` for the rest.
    pub const fn status(self) -> AlertStatus {
        match self {
            Phase::End => AlertStatus::Resolved,
            Phase::Start | Phase::Continue | Phase::Escalate => AlertStatus::Firing,
        }
    }
}

/// Which episode an event belongs to, within its patient and rule: the observation time
/// of the reading that opened it. Read again after a crash, the same readings open the
/// episode at the same time, so the episode's id (`crate::alert::episode_id`) is the
/// same too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeStep {
    pub phase: Phase,
    /// Observation time (Unix epoch ms) of the reading that opened the episode.
    pub opened_at: i64,
}

impl EpisodeStep {
    /// A new episode opened by the reading at `t`.
    pub(crate) const fn start(t: i64) -> EpisodeStep {
        EpisodeStep {
            phase: Phase::Start,
            opened_at: t,
        }
    }
}

/// Something to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A threshold rule, by index in [`super::RuleSet::rules`].
    Threshold { rule: usize, step: EpisodeStep },
    /// The NEWS2 aggregate at `severity` (medium or high). One episode spans both
    /// bands: medium to high is an escalation, and its end resolves each band alerted.
    News2 {
        severity: Severity,
        step: EpisodeStep,
        breakdown: Breakdown,
    },
}

impl Event {
    pub fn step(&self) -> EpisodeStep {
        match self {
            Event::Threshold { step, .. } | Event::News2 { step, .. } => *step,
        }
    }

    pub fn status(&self) -> AlertStatus {
        self.step().phase.status()
    }
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
