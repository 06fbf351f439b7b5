//! Patient context: per-patient clinical settings read from `kafka.context_topic`.
//!
//! A record there is keyed by patient id and says how that patient's readings are
//! evaluated: the NEWS2 SpO2 scale, threshold overrides per rule id, and a suppression
//! with its reason and end. A tombstone (null value) returns the patient to the defaults.
//! This module parses and validates one record against the rules in force ([`parse`]);
//! keeping each patient's context and applying it is [`super::state::Evaluator`]'s.
//!
//! A record that cannot be applied is a [`ContextError`], dead-lettered with reason
//! [`REASON`]. As with the observation decoder, its message never echoes the record: it
//! names fields, rule ids (which come from the rules file) and numbers only, because the
//! key and the value are patient data and the message ends up in a header operators read.
//! The record format is in docs/rules.md ("Patient context") and
//! docs/schemas/patient-context.schema.json.

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::RuleSet;
use super::news2::{News2Rule, Spo2Scale};
use super::threshold::{Condition, ThresholdRule};
use crate::vitals::{DecodeError, MIN_TIMESTAMP_MS, Metric, validate_patient_id};

/// The DLQ reason of every record [`parse`] refuses.
pub const REASON: &str = "bad_context";

/// Largest accepted record value, in bytes. A context is a few hundred bytes; far more is
/// a producer bug, not a patient.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Longest accepted `suppress.reason` and `updatedBy`, in bytes.
pub const MAX_TEXT_BYTES: usize = 200;

/// One patient's settings, as validated against the rules in force.
///
/// Up to a million of these are kept, one per patient with a context, so the strings are
/// boxed (no spare capacity) and the overrides a boxed slice: 88 bytes on 64-bit targets
/// plus the heap text (a unit test keeps the size in view).
#[derive(Debug, Clone, PartialEq)]
pub struct PatientContext {
    pub(crate) spo2_scale: Spo2Scale,
    /// Threshold overrides by rule id, each in its rule's direction, at most one per rule
    /// and in no particular order.
    pub(crate) overrides: Box<[Override]>,
    pub(crate) suppress: Option<Suppression>,
    /// The context topic's offset of the record: the `contextVersion` of alerts
    /// evaluated under it.
    pub(crate) version: i64,
    /// `updatedBy`: who set the context (a role or a staff id), for the audit trail.
    pub(crate) updated_by: Option<Box<str>>,
    /// `updatedAt`: when it was set, Unix epoch milliseconds, as the producer says.
    pub(crate) updated_at: Option<i64>,
}

/// A per-patient threshold for one threshold rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Override {
    pub(crate) rule_id: Box<str>,
    pub(crate) condition: Condition,
}

/// Alerts are marked suppressed while the observation time is before `until`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suppression {
    /// Unix epoch milliseconds, exclusive.
    pub(crate) until: i64,
    pub(crate) reason: Box<str>,
}

impl PatientContext {
    pub fn spo2_scale(&self) -> Spo2Scale {
        self.spo2_scale
    }

    /// The context topic's offset of the record this context was read from.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn updated_by(&self) -> Option<&str> {
        self.updated_by.as_deref()
    }

    pub fn updated_at(&self) -> Option<i64> {
        self.updated_at
    }
}

/// Which of the two places that carry the patient id is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPlace {
    /// The Kafka message key.
    Key,
    /// The `patientId` field of the value.
    Field,
}

impl fmt::Display for IdPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdPlace::Key => "the message key (the patient id)",
            IdPlace::Field => "`patientId`",
        })
    }
}

/// Why a context record cannot be applied. Every variant is dead-lettered with reason
/// [`REASON`]; the previous context of the patient stays in force. The `Display` text
/// (also [`ContextError::message`]) never contains record text: only field names, rule
/// ids of the rules in force, limits and positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("message has no key: a context record is keyed by its patient id")]
    MissingKey,
    #[error("{place} {problem}")]
    BadPatientId {
        place: IdPlace,
        problem: &'static str,
    },
    #[error(
        "the message key differs from `patientId`: a context record is keyed by the patient it is about"
    )]
    KeyMismatch,
    #[error("value is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("value is not valid UTF-8 (first bad byte at index {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// `detail` is serde_json's syntax error text (what was expected, and where).
    #[error("value is not JSON: {detail}")]
    NotJson { detail: String },
    /// A key given twice in one object: which copy holds would be a guess.
    #[error(
        "value has the same key twice in one JSON object (line {line}, column {column}): which one holds is ambiguous"
    )]
    DuplicateKey { line: usize, column: usize },
    #[error("value must be a JSON object, found {found}{hint}", hint = not_object_hint(.found))]
    NotObject { found: &'static str },
    #[error("`spo2Scale` must be the integer 1 or 2")]
    BadScale,
    /// A top-level field of the wrong type or size (`overrides`, `updatedBy`, `updatedAt`).
    #[error("`{field}` {problem}")]
    BadField {
        field: &'static str,
        problem: &'static str,
    },
    #[error(
        "`overrides` names a rule that is not a threshold rule of the rules in force (ids are case-sensitive; {known})"
    )]
    UnknownRule { known: String },
    #[error(
        "`overrides.{rule_id}`: the NEWS2 aggregate is scored on the RCP chart for every patient and has no threshold to override (a patient's SpO2 scale is `spo2Scale`)"
    )]
    NotOverridable { rule_id: &'static str },
    /// The override object itself is malformed: not an object, an unknown key, neither
    /// or both of `above`/`below`.
    #[error("`overrides.{rule_id}` {problem}")]
    BadOverride {
        rule_id: Box<str>,
        problem: &'static str,
    },
    #[error(
        "`overrides.{rule_id}` gives `{given}`, but the rule fires {direction} its threshold: an override changes the threshold, not the direction (give `{direction}`)"
    )]
    WrongDirection {
        rule_id: Box<str>,
        direction: &'static str,
        given: &'static str,
    },
    #[error("`overrides.{rule_id}.metric` must be \"{metric}\", the rule's metric")]
    WrongMetric { rule_id: Box<str>, metric: Metric },
    /// Not a number, or a threshold the metric's plausible range makes meaningless.
    #[error("`overrides.{rule_id}.{direction}` {problem}")]
    BadThreshold {
        rule_id: Box<str>,
        direction: &'static str,
        problem: String,
    },
    /// `problem` names the field: `suppress`, `suppress.until` or `suppress.reason`.
    #[error("{problem}")]
    BadSuppress { problem: &'static str },
}

fn not_object_hint(found: &str) -> &'static str {
    if found == "null" {
        " (a reset is a tombstone: a message with no value at all)"
    } else {
        ""
    }
}

impl ContextError {
    /// The DLQ reason of every context error.
    pub const REASON: &'static str = REASON;

    /// What is wrong, for the DLQ's error message header and the log: no record text.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// A short name of the class, for logs and metric labels.
    pub const fn class(&self) -> &'static str {
        match self {
            ContextError::MissingKey => "missing_key",
            ContextError::BadPatientId { .. } => "bad_patient_id",
            ContextError::KeyMismatch => "key_mismatch",
            ContextError::TooLarge { .. } => "too_large",
            ContextError::NotUtf8 { .. } => "not_utf8",
            ContextError::NotJson { .. } => "not_json",
            ContextError::DuplicateKey { .. } => "duplicate_key",
            ContextError::NotObject { .. } => "not_object",
            ContextError::BadScale => "bad_scale",
            ContextError::BadField { .. } => "bad_field",
            ContextError::UnknownRule { .. } => "unknown_rule",
            ContextError::NotOverridable { .. } => "not_overridable",
            ContextError::BadOverride { .. } => "bad_override",
            ContextError::WrongDirection { .. } => "wrong_direction",
            ContextError::WrongMetric { .. } => "wrong_metric",
            ContextError::BadThreshold { .. } => "bad_threshold",
            ContextError::BadSuppress { .. } => "bad_suppress",
        }
    }
}

/// Parses one record of the context topic: its patient id and, for a tombstone (`value`
/// is `None`), `None`: the patient returns to the defaults. `offset` becomes the
/// context's [`PatientContext::version`]. Overrides are checked against `rules`, the
/// rules in force.
pub fn parse(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    offset: i64,
    rules: &RuleSet,
) -> Result<(CompactString, Option<PatientContext>), ContextError> {
    let key = key.ok_or(ContextError::MissingKey)?;
    let key = std::str::from_utf8(key).map_err(|_| ContextError::BadPatientId {
        place: IdPlace::Key,
        problem: "is not UTF-8",
    })?;
    check_patient_id(key, IdPlace::Key)?;
    let patient = CompactString::from(key);
    let Some(value) = value else {
        return Ok((patient, None));
    };
    if value.len() > MAX_VALUE_BYTES {
        return Err(ContextError::TooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    let text = std::str::from_utf8(value).map_err(|e| ContextError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let fields = match strict_json(text)? {
        Value::Object(fields) => fields,
        other => {
            return Err(ContextError::NotObject {
                found: type_name(&other),
            });
        }
    };

    match fields.get("patientId") {
        None => return Err(bad_id(IdPlace::Field, "is missing")),
        Some(Value::String(id)) => {
            check_patient_id(id, IdPlace::Field)?;
            if id != key {
                return Err(ContextError::KeyMismatch);
            }
        }
        Some(_) => return Err(bad_id(IdPlace::Field, "must be a string")),
    }

    let spo2_scale = match present(&fields, "spo2Scale") {
        None => Spo2Scale::default(),
        Some(v) => v
            .as_u64()
            .and_then(Spo2Scale::from_number)
            .ok_or(ContextError::BadScale)?,
    };
    let overrides = match present(&fields, "overrides") {
        None => Box::default(),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(id, spec)| parse_override(id, spec, rules))
            .collect::<Result<Vec<_>, _>>()?
            .into_boxed_slice(),
        Some(_) => {
            return Err(ContextError::BadField {
                field: "overrides",
                problem: "must be an object of rule ids, such as {\"heart_rate_high\": {\"above\": 140}}",
            });
        }
    };
    let suppress = present(&fields, "suppress")
        .map(parse_suppress)
        .transpose()?;
    let updated_by = match present(&fields, "updatedBy") {
        None => None,
        Some(Value::String(s)) if s.len() <= MAX_TEXT_BYTES => Some(s.as_str().into()),
        Some(Value::String(_)) => {
            return Err(ContextError::BadField {
                field: "updatedBy",
                problem: "is longer than 200 bytes",
            });
        }
        Some(_) => {
            return Err(ContextError::BadField {
                field: "updatedBy",
                problem: "must be a string",
            });
        }
    };
    let updated_at = match present(&fields, "updatedAt") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or(ContextError::BadField {
            field: "updatedAt",
            problem: "must be an integer (Unix epoch milliseconds)",
        })?),
    };
    Ok((
        patient,
        Some(PatientContext {
            spo2_scale,
            overrides,
            suppress,
            version: offset,
            updated_by,
            updated_at,
        }),
    ))
}

fn bad_id(place: IdPlace, problem: &'static str) -> ContextError {
    ContextError::BadPatientId { place, problem }
}

/// The input decoder's patient-id rule, for the key and for `patientId`.
fn check_patient_id(id: &str, place: IdPlace) -> Result<(), ContextError> {
    validate_patient_id(id).map_err(|e| match e {
        DecodeError::BadPatientId(problem) => bad_id(place, problem),
        // validate_patient_id returns nothing else; name the rule should it ever.
        _ => bad_id(
            place,
            "must be 1 to 128 bytes of printable ASCII without whitespace",
        ),
    })
}

/// An optional top-level field: absent and `null` both mean the default, as many JSON
/// encoders write an unset field as `null`.
fn present<'v>(fields: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn parse_override(id: &str, spec: &Value, rules: &RuleSet) -> Result<Override, ContextError> {
    let Some(rule) = rules.rules().iter().find(|r| r.id == id) else {
        for news2 in [News2Rule::MEDIUM_ID, News2Rule::HIGH_ID] {
            if id == news2 {
                return Err(ContextError::NotOverridable { rule_id: news2 });
            }
        }
        return Err(ContextError::UnknownRule {
            known: known_rules(rules.rules()),
        });
    };
    let rule_id = || Box::<str>::from(rule.id.as_str());
    let bad = |problem| ContextError::BadOverride {
        rule_id: rule_id(),
        problem,
    };
    let Value::Object(spec) = spec else {
        return Err(bad("must be an object such as {\"above\": 140}"));
    };
    if spec
        .keys()
        .any(|k| !matches!(k.as_str(), "above" | "below" | "metric"))
    {
        return Err(bad(
            "has a key other than `above`, `below` and `metric` (a per-patient override sets only the threshold)",
        ));
    }
    if let Some(metric) = spec.get("metric")
        && metric.as_str() != Some(rule.metric.as_str())
    {
        return Err(ContextError::WrongMetric {
            rule_id: rule_id(),
            metric: rule.metric,
        });
    }
    let (given, threshold) = match (spec.get("above"), spec.get("below")) {
        (Some(t), None) => ("above", t),
        (None, Some(t)) => ("below", t),
        (None, None) => return Err(bad("needs one of `above` or `below`")),
        (Some(_), Some(_)) => {
            return Err(bad(
                "gives both `above` and `below`: an override has its rule's one direction",
            ));
        }
    };
    let direction = match rule.condition {
        Condition::Above(_) => "above",
        Condition::Below(_) => "below",
    };
    if given != direction {
        return Err(ContextError::WrongDirection {
            rule_id: rule_id(),
            direction,
            given,
        });
    }
    let bad_threshold = |problem: String| ContextError::BadThreshold {
        rule_id: rule_id(),
        direction,
        problem,
    };
    // `as_f64` is `None` for anything but a JSON number.
    let t = threshold
        .as_f64()
        .ok_or_else(|| bad_threshold("must be a number".into()))?;
    if !t.is_finite() {
        return Err(bad_threshold("must be a finite number".into()));
    }
    let condition = match rule.condition {
        Condition::Above(_) => Condition::Above(t),
        Condition::Below(_) => Condition::Below(t),
    };
    if let Some(problem) = implausible(rule, condition) {
        return Err(bad_threshold(problem));
    }
    Ok(Override {
        rule_id: rule_id(),
        condition,
    })
}

/// The rules file's checks of a threshold, for an override of `rule`: a threshold every
/// plausible reading breaches, or none can, or whose clear value (the rule's
/// `clear_margin` past it) no reading can reach, cannot mean what it says.
fn implausible(rule: &ThresholdRule, condition: Condition) -> Option<String> {
    let metric = rule.metric;
    let (low, high) = metric.plausible_range();
    let (m, unit) = (metric.as_str(), metric.unit());
    let t = condition.threshold();
    let (always, never) = match condition {
        Condition::Above(t) => (t < low, t >= high),
        Condition::Below(t) => (t > high, t <= low),
    };
    if always || never {
        let fires = if always { "every" } else { "no" };
        return Some(format!(
            "{t} is outside {m}'s plausible range [{low}, {high}] {unit}: the rule would fire on {fires} reading"
        ));
    }
    let margin = rule.alarm.clear_margin;
    let bound = condition.clear_bound(margin);
    if margin > 0.0 && !(low..=high).contains(&bound) {
        return Some(format!(
            "{t} with the rule's clear_margin {margin} would clear at {bound}, outside {m}'s range [{low}, {high}] {unit}: the first alert would never clear"
        ));
    }
    None
}

/// The threshold rule ids, for an unknown-rule message; a long list is only counted.
fn known_rules(rules: &[ThresholdRule]) -> String {
    const LISTED: usize = 16;
    if rules.is_empty() {
        "the rules in force have no threshold rule".into()
    } else if rules.len() > LISTED {
        format!("{} threshold rules are in force", rules.len())
    } else {
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        format!("known: {}", ids.join(", "))
    }
}

fn parse_suppress(spec: &Value) -> Result<Suppression, ContextError> {
    let bad = |problem| ContextError::BadSuppress { problem };
    let Value::Object(spec) = spec else {
        return Err(bad(
            "`suppress` must be an object such as {\"until\": 1763802000000, \"reason\": \"end_of_life\"}",
        ));
    };
    // A misspelt or unsupported key (a start time, say) would silently suppress from
    // now on: refused, unlike unknown top-level fields.
    if spec
        .keys()
        .any(|k| !matches!(k.as_str(), "until" | "reason"))
    {
        return Err(bad("`suppress` has a key other than `until` and `reason`"));
    }
    let until = match spec.get("until") {
        None => return Err(bad("`suppress` needs `until` (Unix epoch milliseconds)")),
        Some(v) => v.as_i64().ok_or(bad(
            "`suppress.until` must be an integer (Unix epoch milliseconds)",
        ))?,
    };
    if until < MIN_TIMESTAMP_MS {
        return Err(bad(
            "`suppress.until` is before 2000-01-01 as Unix epoch milliseconds (seconds instead of milliseconds?)",
        ));
    }
    let reason = match spec.get("reason") {
        None => return Err(bad("`suppress` needs `reason`")),
        Some(Value::String(r)) => r,
        Some(_) => return Err(bad("`suppress.reason` must be a string")),
    };
    if reason.trim().is_empty() {
        return Err(bad("`suppress.reason` must not be empty"));
    }
    if reason.len() > MAX_TEXT_BYTES {
        return Err(bad("`suppress.reason` is longer than 200 bytes"));
    }
    Ok(Suppression {
        until,
        reason: reason.as_str().into(),
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as JSON, refusing a key given twice in any object (serde_json's `Value`
/// keeps the last copy silently).
fn strict_json(text: &str) -> Result<Value, ContextError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match e.classify() {
        // The visitor accepts every JSON value: its only error is the duplicate key.
        serde_json::error::Category::Data => ContextError::DuplicateKey {
            line: e.line(),
            column: e.column(),
        },
        // Syntax and end-of-input texts are fixed phrases and a position, never input.
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ContextError::NotJson {
                detail: e.to_string(),
            }
        }
        serde_json::error::Category::Io => ContextError::NotJson {
            detail: "unreadable".into(),
        },
    })
}

/// A [`Value`] whose objects have no key twice.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON cannot spell a non-finite number; serde_json refuses overflow itself.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue)?;
            if fields.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    impl PatientContext {
        fn override_for(&self, rule_id: &str) -> Option<Condition> {
            self.overrides
                .iter()
                .find(|o| &*o.rule_id == rule_id)
                .map(|o| o.condition)
        }
    }

    /// The patient id of the bad cases: no message may contain it (or `SECRET` at all,
    /// which every bad case's record text carries).
    const ID: &str = "P-SECRET-42";

    fn rules() -> RuleSet {
        // config/rules.toml, as shipped.
        RuleSet::news2_red_flags()
    }

    fn run(value: &str) -> Result<(CompactString, Option<PatientContext>), ContextError> {
        parse(Some(ID.as_bytes()), Some(value.as_bytes()), 7, &rules())
    }

    /// The context of a record that must parse.
    fn good(value: &str) -> PatientContext {
        match run(value) {
            Ok((id, Some(context))) => {
                assert_eq!(id, ID);
                context
            }
            other => panic!("{value}: expected a context, got {other:?}"),
        }
    }

    /// The error of a record that must not parse, checked free of record text.
    fn bad_record(key: Option<&[u8]>, value: Option<&[u8]>) -> ContextError {
        match parse(key, value, 7, &rules()) {
            Ok(parsed) => panic!("expected an error, parsed {parsed:?}"),
            Err(e) => {
                let message = e.message();
                assert_eq!(message, e.to_string());
                assert!(!message.contains("SECRET"), "record text in {message:?}");
                assert!(!message.is_empty());
                e
            }
        }
    }

    fn bad(value: &str) -> ContextError {
        bad_record(Some(ID.as_bytes()), Some(value.as_bytes()))
    }

    /// A record for patient [`ID`] with `fields` after its `patientId`.
    fn with(fields: &str) -> String {
        format!(r#"{{"patientId":"{ID}",{fields}}}"#)
    }

    fn overriding(rule: &str, spec: &str) -> String {
        with(&format!(r#""overrides":{{"{rule}":{spec}}}"#))
    }

    fn suppressing(spec: &str) -> String {
        with(&format!(r#""suppress":{spec}"#))
    }

    fn defaults(version: i64) -> PatientContext {
        PatientContext {
            spo2_scale: Spo2Scale::One,
            overrides: Box::default(),
            suppress: None,
            version,
            updated_by: None,
            updated_at: None,
        }
    }

    #[test]
    fn the_reason_is_bad_context() {
        assert_eq!(REASON, "bad_context");
        assert_eq!(ContextError::REASON, REASON);
    }

    #[test]
    fn size_of_patient_context_stays_small() {
        let size = std::mem::size_of::<PatientContext>();
        println!(
            "size_of::<PatientContext>() = {size}, Override = {}, Suppression = {}",
            std::mem::size_of::<Override>(),
            std::mem::size_of::<Suppression>()
        );
        // A million patients: every 8 bytes here is 8 MB.
        assert!(size <= 88, "PatientContext grew to {size} bytes");
    }

    #[test]
    fn a_tombstone_resets_the_patient() {
        let parsed = parse(Some(ID.as_bytes()), None, 3, &rules());
        assert_eq!(parsed, Ok((CompactString::from(ID), None)));
    }

    #[test]
    fn a_tombstone_still_needs_a_valid_key() {
        assert_eq!(bad_record(None, None), ContextError::MissingKey);
        assert!(matches!(
            bad_record(Some(b"P SECRET"), None),
            ContextError::BadPatientId {
                place: IdPlace::Key,
                ..
            }
        ));
    }

    #[test]
    fn minimal_record_is_the_defaults() {
        assert_eq!(good(&format!(r#"{{"patientId":"{ID}"}}"#)), defaults(7));
    }

    #[test]
    fn null_optional_fields_are_the_defaults() {
        let record = with(
            r#""spo2Scale":null,"overrides":null,"suppress":null,"updatedBy":null,"updatedAt":null"#,
        );
        assert_eq!(good(&record), defaults(7));
    }

    #[test]
    fn version_is_the_offset() {
        let record = format!(r#"{{"patientId":"{ID}"}}"#);
        let parsed = parse(
            Some(ID.as_bytes()),
            Some(record.as_bytes()),
            123_456,
            &rules(),
        );
        let version = parsed.ok().and_then(|(_, c)| c).map(|c| c.version());
        assert_eq!(version, Some(123_456));
    }

    #[test]
    fn unknown_top_level_fields_are_ignored() {
        let record =
            with(r#""ward":"7","bed":{"n":3,"list":[1,null,{"x":true}]},"note":null,"v":1.5e3"#);
        assert_eq!(good(&record), defaults(7));
    }

    #[test]
    fn the_contract_example_parses_whole() {
        let record = r#"{"patientId":"P-000123","spo2Scale":2,
 "overrides":{"heart_rate_high":{"above":140},"heart_rate_low":{"below":35}},
 "suppress":{"until":1763802000000,"reason":"end_of_life"},
 "updatedBy":"ward-7-nurse-in-charge","updatedAt":1763798400000}"#;
        let parsed = parse(Some(b"P-000123"), Some(record.as_bytes()), 42, &rules());
        let Ok((id, Some(mut context))) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(id, "P-000123");
        context.overrides.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        let expected = PatientContext {
            spo2_scale: Spo2Scale::Two,
            overrides: vec![
                Override {
                    rule_id: "heart_rate_high".into(),
                    condition: Condition::Above(140.0),
                },
                Override {
                    rule_id: "heart_rate_low".into(),
                    condition: Condition::Below(35.0),
                },
            ]
            .into_boxed_slice(),
            suppress: Some(Suppression {
                until: 1_763_802_000_000,
                reason: "end_of_life".into(),
            }),
            version: 42,
            updated_by: Some("ward-7-nurse-in-charge".into()),
            updated_at: Some(1_763_798_400_000),
        };
        assert_eq!(context, expected);
        assert_eq!(
            context.override_for("heart_rate_high"),
            Some(Condition::Above(140.0))
        );
        assert_eq!(context.override_for("spo2_low"), None);
        assert_eq!(context.spo2_scale(), Spo2Scale::Two);
        assert_eq!(context.updated_by(), Some("ward-7-nurse-in-charge"));
        assert_eq!(context.updated_at(), Some(1_763_798_400_000));
    }

    #[test]
    fn every_example_parses_against_the_shipped_rules() {
        let rules = RuleSet::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let examples = [
            ("scale2", include_str!("../../examples/context/scale2.json")),
            (
                "overrides",
                include_str!("../../examples/context/overrides.json"),
            ),
            (
                "suppressed",
                include_str!("../../examples/context/suppressed.json"),
            ),
            ("full", include_str!("../../examples/context/full.json")),
        ];
        for (name, text) in examples {
            let parsed = parse(Some(b"P-000123"), Some(text.as_bytes()), 1, &rules);
            match parsed {
                Ok((id, Some(context))) => {
                    assert_eq!(id, "P-000123", "{name}");
                    assert_eq!(context.version(), 1, "{name}");
                    let expect_scale2 = matches!(name, "scale2" | "full");
                    assert_eq!(context.spo2_scale() == Spo2Scale::Two, expect_scale2);
                    let expect_suppress = matches!(name, "suppressed" | "full");
                    assert_eq!(context.suppress.is_some(), expect_suppress, "{name}");
                    let expect_overrides = matches!(name, "overrides" | "full");
                    assert_eq!(!context.overrides.is_empty(), expect_overrides, "{name}");
                }
                other => panic!("examples/context/{name}.json: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let text = "x".repeat(MAX_TEXT_BYTES);
        let context = good(&with(&format!(
            r#""updatedBy":"{text}","suppress":{{"until":946684800000,"reason":"{text}"}}"#
        )));
        assert_eq!(context.updated_by().map(str::len), Some(MAX_TEXT_BYTES));
        // A value of exactly the limit is accepted.
        let mut record = with(r#""spo2Scale":1"#);
        record.insert_str(1, &" ".repeat(MAX_VALUE_BYTES - record.len()));
        assert_eq!(record.len(), MAX_VALUE_BYTES);
        good(&record);
        // The longest patient id.
        let long = "P".repeat(128);
        let record = format!(r#"{{"patientId":"{long}"}}"#);
        let parsed = parse(Some(long.as_bytes()), Some(record.as_bytes()), 0, &rules());
        assert!(matches!(parsed, Ok((_, Some(_)))), "{parsed:?}");
    }

    #[test]
    fn overrides_at_their_limits_are_accepted() {
        // The metric named as the rule's; thresholds anywhere the rule can still fire
        // and clear.
        let context = good(&overriding(
            "heart_rate_high",
            r#"{"metric":"heart_rate","above":140.5}"#,
        ));
        assert_eq!(
            context.override_for("heart_rate_high"),
            Some(Condition::Above(140.5))
        );
        good(&overriding("heart_rate_high", r#"{"above":5}"#));
        good(&overriding("heart_rate_low", r#"{"below":297}"#));
        good(&overriding("spo2_low", r#"{"below":99}"#));
        good(&with(r#""overrides":{}"#));
    }

    // One test per error class; each fails if its check is removed.

    #[test]
    fn missing_key() {
        let record = format!(r#"{{"patientId":"{ID}"}}"#);
        assert_eq!(
            bad_record(None, Some(record.as_bytes())),
            ContextError::MissingKey
        );
    }

    #[test]
    fn bad_patient_id_in_the_key() {
        let record = format!(r#"{{"patientId":"{ID}"}}"#);
        let long = format!("P-SECRET-{}", "9".repeat(120));
        for (key, problem) in [
            (&b"P-SECRET-\xff"[..], "is not UTF-8"),
            (b"", "is empty"),
            (b"P-SECRET 42", ""),
            (b"P-SECRET-\x07", ""),
            (long.as_bytes(), "is longer than 128 bytes"),
        ] {
            let e = bad_record(Some(key), Some(record.as_bytes()));
            let ContextError::BadPatientId { place, problem: p } = e else {
                panic!("{key:?}: {e:?}");
            };
            assert_eq!(place, IdPlace::Key, "{key:?}");
            if !problem.is_empty() {
                assert_eq!(p, problem, "{key:?}");
            }
        }
    }

    #[test]
    fn bad_patient_id_in_the_field() {
        for (record, problem) in [
            (r#"{"spo2Scale":2}"#.to_owned(), "is missing"),
            (r#"{"patientId":42}"#.to_owned(), "must be a string"),
            (r#"{"patientId":null}"#.to_owned(), "must be a string"),
            (r#"{"patientId":"P-SECRET 42"}"#.to_owned(), ""),
            (r#"{"patientId":""}"#.to_owned(), "is empty"),
        ] {
            let e = bad(&record);
            let ContextError::BadPatientId { place, problem: p } = e else {
                panic!("{record}: {e:?}");
            };
            assert_eq!(place, IdPlace::Field, "{record}");
            if !problem.is_empty() {
                assert_eq!(p, problem, "{record}");
            }
        }
    }

    #[test]
    fn key_mismatch() {
        assert_eq!(
            bad(r#"{"patientId":"P-SECRET-43"}"#),
            ContextError::KeyMismatch
        );
    }

    #[test]
    fn too_large() {
        let mut record = with(r#""spo2Scale":1"#);
        record.insert_str(1, &" ".repeat(MAX_VALUE_BYTES + 1 - record.len()));
        assert_eq!(
            bad(&record),
            ContextError::TooLarge {
                size: MAX_VALUE_BYTES + 1,
                limit: MAX_VALUE_BYTES
            }
        );
    }

    #[test]
    fn not_utf8() {
        let record = [
            &br#"{"patientId":"P-SECRET-42","updatedBy":"SECRET"#[..],
            b"\xe9\"}",
        ]
        .concat();
        let e = bad_record(Some(ID.as_bytes()), Some(&record));
        assert_eq!(
            e,
            ContextError::NotUtf8 {
                valid_up_to: record.len() - 3
            }
        );
    }

    #[test]
    fn not_json() {
        for record in [
            "",
            "{",
            "SECRET",
            r#"{"patientId":"P-SECRET-42",}"#,
            r#"{"patientId":"P-SECRET-42"} SECRET"#,
            r#"{"patientId":"P-SECRET-42","updatedAt":1e999}"#,
        ] {
            assert!(
                matches!(bad(record), ContextError::NotJson { .. }),
                "{record}"
            );
        }
    }

    #[test]
    fn duplicate_key() {
        for record in [
            r#"{"patientId":"P-SECRET-42","patientId":"P-SECRET-43"}"#.to_owned(),
            with(r#""spo2Scale":1,"spo2Scale":2"#),
            with(
                r#""overrides":{"heart_rate_high":{"above":140},"heart_rate_high":{"above":150}}"#,
            ),
            overriding("heart_rate_high", r#"{"above":140,"above":150}"#),
            with(r#""extra":[{"SECRET":1,"SECRET":2}]"#),
        ] {
            assert!(
                matches!(bad(&record), ContextError::DuplicateKey { .. }),
                "{record}"
            );
        }
    }

    #[test]
    fn not_object() {
        for (record, found) in [
            (r#"["P-SECRET-42"]"#, "an array"),
            (r#""P-SECRET-42""#, "a string"),
            ("null", "null"),
            ("42", "a number"),
            ("true", "a boolean"),
        ] {
            assert_eq!(bad(record), ContextError::NotObject { found }, "{record}");
        }
        assert!(bad("null").message().contains("tombstone"));
    }

    #[test]
    fn bad_scale() {
        for scale in ["0", "3", "-1", "2.0", "1.5", r#""2""#, "true", "[2]"] {
            assert_eq!(
                bad(&with(&format!(r#""spo2Scale":{scale}"#))),
                ContextError::BadScale,
                "{scale}"
            );
        }
    }

    #[test]
    fn bad_field() {
        let long = "SECRET".repeat(34);
        for (fields, field) in [
            (r#""overrides":["SECRET"]"#.to_owned(), "overrides"),
            (r#""overrides":"SECRET""#.to_owned(), "overrides"),
            (r#""updatedBy":7"#.to_owned(), "updatedBy"),
            (format!(r#""updatedBy":"{long}""#), "updatedBy"),
            (r#""updatedAt":"SECRET""#.to_owned(), "updatedAt"),
            (r#""updatedAt":1763798400000.5"#.to_owned(), "updatedAt"),
        ] {
            let e = bad(&with(&fields));
            assert!(
                matches!(e, ContextError::BadField { field: f, .. } if f == field),
                "{fields}: {e:?}"
            );
        }
    }

    #[test]
    fn unknown_rule() {
        for rule in ["SECRET_rule", "Heart_Rate_High", "heart_rate_high "] {
            let e = bad(&overriding(rule, r#"{"above":140}"#));
            assert!(
                matches!(e, ContextError::UnknownRule { .. }),
                "{rule}: {e:?}"
            );
            assert!(e.message().contains("heart_rate_high"), "{e}");
        }
    }

    #[test]
    fn not_overridable() {
        for rule in ["news2_medium", "news2_high"] {
            let e = bad(&overriding(rule, r#"{"above":5}"#));
            assert!(
                matches!(e, ContextError::NotOverridable { rule_id } if rule_id == rule),
                "{e:?}"
            );
        }
    }

    #[test]
    fn bad_override() {
        for spec in [
            "140",
            r#""SECRET""#,
            "null",
            "{}",
            r#"{"metric":"heart_rate"}"#,
            r#"{"above":140,"below":35}"#,
            r#"{"above":140,"clear_margin":5}"#,
            r#"{"above":140,"SECRET":1}"#,
        ] {
            let e = bad(&overriding("heart_rate_high", spec));
            assert!(
                matches!(&e, ContextError::BadOverride { rule_id, .. } if &**rule_id == "heart_rate_high"),
                "{spec}: {e:?}"
            );
        }
    }

    #[test]
    fn wrong_direction() {
        let e = bad(&overriding("heart_rate_high", r#"{"below":140}"#));
        assert_eq!(
            e,
            ContextError::WrongDirection {
                rule_id: "heart_rate_high".into(),
                direction: "above",
                given: "below"
            }
        );
        assert!(e.message().contains("heart_rate_high"));
        let e = bad(&overriding("heart_rate_low", r#"{"above":35}"#));
        assert!(
            matches!(
                e,
                ContextError::WrongDirection {
                    direction: "below",
                    given: "above",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn wrong_metric() {
        for metric in [r#""spo2""#, r#""SECRET""#, "7", "null"] {
            let spec = format!(r#"{{"above":140,"metric":{metric}}}"#);
            assert_eq!(
                bad(&overriding("heart_rate_high", &spec)),
                ContextError::WrongMetric {
                    rule_id: "heart_rate_high".into(),
                    metric: Metric::HeartRate
                },
                "{spec}"
            );
        }
    }

    #[test]
    fn bad_threshold() {
        for (rule, spec) in [
            ("heart_rate_high", r#"{"above":"140"}"#),
            ("heart_rate_high", r#"{"above":null}"#),
            ("heart_rate_high", r#"{"above":[140]}"#),
            // No reading could fire it, or every reading would.
            ("heart_rate_high", r#"{"above":300}"#),
            ("heart_rate_high", r#"{"above":-1}"#),
            ("heart_rate_low", r#"{"below":0}"#),
            ("heart_rate_low", r#"{"below":301}"#),
            ("temperature_high", r#"{"above":102.2}"#),
            // The rule's clear_margin past it is no plausible reading.
            ("heart_rate_high", r#"{"above":4}"#),
            ("heart_rate_low", r#"{"below":298}"#),
            ("spo2_low", r#"{"below":99.5}"#),
        ] {
            let e = bad(&overriding(rule, spec));
            assert!(
                matches!(&e, ContextError::BadThreshold { rule_id, .. } if &**rule_id == rule),
                "{rule} {spec}: {e:?}"
            );
        }
    }

    #[test]
    fn bad_suppress() {
        let long = "SECRET".repeat(34);
        for spec in [
            r#""SECRET""#.to_owned(),
            "1763802000000".to_owned(),
            r#"{"reason":"SECRET"}"#.to_owned(),
            r#"{"until":null,"reason":"SECRET"}"#.to_owned(),
            r#"{"until":"1763802000000","reason":"SECRET"}"#.to_owned(),
            r#"{"until":1763802000000.5,"reason":"SECRET"}"#.to_owned(),
            r#"{"until":1763802000,"reason":"SECRET"}"#.to_owned(),
            r#"{"until":1763802000000}"#.to_owned(),
            r#"{"until":1763802000000,"reason":""}"#.to_owned(),
            r#"{"until":1763802000000,"reason":" \t"}"#.to_owned(),
            r#"{"until":1763802000000,"reason":7}"#.to_owned(),
            format!(r#"{{"until":1763802000000,"reason":"{long}"}}"#),
            r#"{"until":1763802000000,"reason":"SECRET","from":1763798400000}"#.to_owned(),
        ] {
            let e = bad(&suppressing(&spec));
            assert!(
                matches!(e, ContextError::BadSuppress { .. }),
                "{spec}: {e:?}"
            );
        }
    }

    /// Record-shaped text from the contract's pieces, valid and not.
    fn fragments() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just(r#""patientId":"P-SECRET-42""#.to_owned()),
            Just(r#""patientId":"P-SECRET-43""#.to_owned()),
            (0u64..4).prop_map(|n| format!(r#""spo2Scale":{n}"#)),
            (
                prop_oneof![
                    Just("heart_rate_high"),
                    Just("heart_rate_low"),
                    Just("news2_high"),
                    Just("SECRET")
                ],
                prop_oneof![Just("above"), Just("below"), Just("metric"), Just("x")],
                prop_oneof![
                    any::<f64>().prop_map(|f| f.to_string()),
                    Just(r#""heart_rate""#.to_owned()),
                    Just("null".to_owned()),
                ],
            )
                .prop_map(|(r, k, v)| format!(r#""overrides":{{"{r}":{{"{k}":{v}}}}}"#)),
            (any::<i64>(), "[ -~]{0,8}")
                .prop_map(|(u, r)| format!(r#""suppress":{{"until":{u},"reason":"{r}"}}"#)),
            any::<i64>().prop_map(|n| format!(r#""updatedAt":{n}"#)),
            "[ -~]{0,8}".prop_map(|s| format!(r#""{s}":null"#)),
        ];
        prop::collection::vec(field, 0..6).prop_map(|f| format!("{{{}}}", f.join(",")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(
            key in prop::option::of(prop::collection::vec(any::<u8>(), 0..140)),
            value in prop::option::of(prop::collection::vec(any::<u8>(), 0..512)),
            offset in any::<i64>(),
        ) {
            let _ = parse(key.as_deref(), value.as_deref(), offset, &rules());
        }

        #[test]
        fn record_shaped_text_never_panics_nor_echoes(record in fragments()) {
            match parse(Some(ID.as_bytes()), Some(record.as_bytes()), 0, &rules()) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.message().contains("SECRET"), "{}", e),
            }
        }
    }
}
