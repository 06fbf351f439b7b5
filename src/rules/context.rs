//! Patient context: per-patient clinical settings read from `kafka.context_topic`.
//!
//! A record there is keyed by patient id and says how that patient's readings are
//! evaluated: the NEWS2 SpO2 scale, threshold overrides per rule id, and a suppression
//! with its reason and end. A tombstone (null value) returns the patient to the defaults.
//! This module parses and validates one record against the rules in force; keeping each
//! patient's context and applying it is [`super::state::Evaluator`]'s.

use super::news2::Spo2Scale;
use super::threshold::Condition;

/// One patient's settings, as validated against the rules in force.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientContext {
    pub(crate) spo2_scale: Spo2Scale,
    /// Threshold overrides by rule id, each in its rule's direction.
    pub(crate) overrides: Vec<Override>,
    pub(crate) suppress: Option<Suppression>,
    /// The context topic's offset of the record: the `contextVersion` of alerts
    /// evaluated under it.
    pub(crate) version: i64,
}

/// A per-patient threshold for one threshold rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Override {
    pub(crate) rule_id: String,
    pub(crate) condition: Condition,
}

/// Alerts are marked suppressed while the observation time is before `until`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suppression {
    /// Unix epoch milliseconds, exclusive.
    pub(crate) until: i64,
    pub(crate) reason: String,
}
