//! Alarm-fatigue control, shared by every rule kind: how an alert behaves once raised
//! (cooldown, hysteresis, resolved events) and the episode that remembers it.

use super::event::{AlertStatus, Severity};

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
}

pub(super) const fn bit(severity: Severity) -> u8 {
    1 << severity as u8
}

/// A firing condition at `severity`: opens an episode, escalates it, or repeats it once
/// the cooldown has passed. `Some(Firing)` when an alert is due.
pub(super) fn open_or_repeat(
    episode: &mut Option<Episode>,
    severity: Severity,
    t: i64,
    alarm: &Alarm,
) -> Option<AlertStatus> {
    match episode {
        None => {
            *episode = Some(Episode {
                severity,
                alerted: bit(severity),
                alerted_at: t,
            });
            Some(AlertStatus::Firing)
        }
        Some(e) if severity > e.severity => {
            e.severity = severity;
            e.alerted |= bit(severity);
            // A late reading never moves the reminder clock back.
            e.alerted_at = e.alerted_at.max(t);
            Some(AlertStatus::Firing)
        }
        Some(e) if t.saturating_sub(e.alerted_at) >= alarm.cooldown_ms => {
            e.alerted |= bit(severity);
            e.alerted_at = t;
            Some(AlertStatus::Firing)
        }
        Some(_) => None,
    }
}
