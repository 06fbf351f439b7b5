//! Alarm-fatigue control, shared by every rule kind: how an alert behaves once raised
//! (cooldown, hysteresis, resolved events) and the episode that remembers it.

use super::event::{EpisodeStep, Phase, Severity};

/// How an alert behaves once raised (alarm-fatigue control), per rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Alarm {
    /// While the condition persists, the alert is repeated no more often than this
    /// (observation time, milliseconds); 0 repeats it for every breaching observation.
    pub(crate) cooldown_ms: i64,
    /// How far past the threshold the value must return before the alert clears and
    /// the rule re-arms (the rule's unit; NEWS2: score points).
    pub(crate) clear_margin: f64,
    /// Publish a `resolved` event when an active alert clears.
    pub(crate) emit_resolved: bool,
}

impl Alarm {
    /// The behaviour of a plain threshold: every breaching observation alerts, nothing
    /// is remembered between observations.
    pub(crate) const STATELESS: Alarm = Alarm {
        cooldown_ms: 0,
        clear_margin: 0.0,
        emit_resolved: false,
    };

    /// Whether this alarm needs per-patient memory at all.
    pub(crate) fn is_stateless(&self) -> bool {
        *self == Self::STATELESS
    }
}

/// An open alert episode of one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Episode {
    /// The highest severity alerted in this episode.
    pub(crate) severity: Severity,
    /// Every severity alerted in this episode (bit per `Severity as u8`): each gets its
    /// `resolved` event when the episode ends, so no downstream alarm stays open.
    pub(crate) alerted: u8,
    /// Observation time of the last alert (opening, reminder or escalation).
    pub(crate) alerted_at: i64,
    /// Observation time of the reading that opened the episode: with the patient and
    /// the rule, its identity.
    pub(crate) opened_at: i64,
}

impl Episode {
    /// The step that ends this episode.
    pub(crate) const fn end(&self) -> EpisodeStep {
        EpisodeStep {
            phase: Phase::End,
            opened_at: self.opened_at,
        }
    }
}

pub(super) const fn bit(severity: Severity) -> u8 {
    1 << severity as u8
}

/// A firing condition at `severity`: opens an episode (`start`), escalates it, or
/// repeats it once the cooldown has passed (`continue`). `Some` when an alert is due.
pub(super) fn open_or_repeat(
    episode: &mut Option<Episode>,
    severity: Severity,
    t: i64,
    alarm: &Alarm,
) -> Option<EpisodeStep> {
    let phase = match episode {
        None => {
            *episode = Some(Episode {
                severity,
                alerted: bit(severity),
                alerted_at: t,
                opened_at: t,
            });
            return Some(EpisodeStep::start(t));
        }
        Some(e) if severity > e.severity => {
            e.severity = severity;
            e.alerted |= bit(severity);
            // A late reading never moves the reminder clock back.
            e.alerted_at = e.alerted_at.max(t);
            Phase::Escalate
        }
        Some(e) if t.saturating_sub(e.alerted_at) >= alarm.cooldown_ms => {
            e.alerted |= bit(severity);
            e.alerted_at = t;
            Phase::Continue
        }
        Some(_) => return None,
    };
    episode.map(|e| EpisodeStep {
        phase,
        opened_at: e.opened_at,
    })
}
