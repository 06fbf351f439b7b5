//! The input wire format: one JSON observation per Kafka message.
//!
//! [`decode`] is the first thing every consumed message meets. It checks the size, UTF-8
//! and JSON syntax, then every field rule of the contract, and returns either a typed
//! [`Observation`] that borrows its strings from the message payload (no copies, no
//! `serde_json::Value`) or a [`DecodeError`] whose variant is the DLQ reason code.
//! Error messages never echo the payload: they name the field and the rule only, because
//! the payload is patient data and the message ends up in a header operators read.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Serialize, Serializer};

/// 2000-01-01T00:00:00Z in Unix epoch milliseconds: older timestamps are clock errors.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// Longest accepted patient id, in bytes.
pub const MAX_PATIENT_ID_BYTES: usize = 128;

/// A vital sign the decoder knows, with its unit and plausible range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    HeartRate,
    RespiratoryRate,
    Spo2,
    SystolicBp,
    DiastolicBp,
    Temperature,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::HeartRate,
        Metric::RespiratoryRate,
        Metric::Spo2,
        Metric::SystolicBp,
        Metric::DiastolicBp,
        Metric::Temperature,
    ];
    /// Number of metrics, for per-metric lookup tables.
    pub const COUNT: usize = Self::ALL.len();

    /// The wire name, as in the `metric` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::RespiratoryRate => "respiratory_rate",
            Metric::Spo2 => "spo2",
            Metric::SystolicBp => "systolic_bp",
            Metric::DiastolicBp => "diastolic_bp",
            Metric::Temperature => "temperature",
        }
    }

    /// The UCUM unit the value is expressed in; an input `unit` must equal it.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::HeartRate | Metric::RespiratoryRate => "/min",
            Metric::Spo2 => "%",
            Metric::SystolicBp | Metric::DiastolicBp => "mmHg",
            Metric::Temperature => "Cel",
        }
    }

    /// Inclusive range of physically plausible values. Outside it the reading is a
    /// sensor or unit error (°F sent as °C, say), not a clinical finding.
    pub const fn plausible_range(self) -> (f64, f64) {
        match self {
            Metric::HeartRate => (0.0, 300.0),
            Metric::RespiratoryRate => (0.0, 100.0),
            Metric::Spo2 => (0.0, 100.0),
            Metric::SystolicBp | Metric::DiastolicBp => (0.0, 300.0),
            Metric::Temperature => (25.0, 45.0),
        }
    }

    /// Dense index in `0..COUNT`, for per-metric tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn from_wire(name: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One validated observation. Strings borrow from the message payload unless the JSON
/// spelled them with escapes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation<'a> {
    pub patient_id: Cow<'a, str>,
    pub metric: Metric,
    pub value: f64,
    /// Observation time, Unix epoch milliseconds.
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_id: Option<Cow<'a, str>>,
}

impl Observation<'_> {
    /// An owned copy that outlives the payload it was decoded from.
    pub fn into_owned(self) -> Observation<'static> {
        Observation {
            patient_id: Cow::Owned(self.patient_id.into_owned()),
            metric: self.metric,
            value: self.value,
            timestamp: self.timestamp,
            unit: self.unit.map(|u| Cow::Owned(u.into_owned())),
            device_id: self.device_id.map(|u| Cow::Owned(u.into_owned())),
            site_id: self.site_id.map(|u| Cow::Owned(u.into_owned())),
        }
    }

    /// JSON encoding in the input wire format (used by loadgen and tests).
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and finite numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The JSON field a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    PatientId,
    Metric,
    Value,
    Timestamp,
    Unit,
    DeviceId,
    SiteId,
}

impl Field {
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::PatientId => "patientId",
            Field::Metric => "metric",
            Field::Value => "value",
            Field::Timestamp => "timestamp",
            Field::Unit => "unit",
            Field::DeviceId => "deviceId",
            Field::SiteId => "siteId",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message was rejected. Each variant is one DLQ reason code
/// ([`DecodeError::reason`]); the `Display` text goes to the `vitalwatch.error.message`
/// header and never contains payload bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {size} bytes, larger than pipeline.max_message_bytes = {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message is not valid UTF-8 (first bad byte at index {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// `detail` is serde_json's syntax error text (position and what was expected).
    #[error("message is not a JSON object: {detail}")]
    InvalidJson { detail: String },
    #[error("required field `{0}` is missing")]
    MissingField(Field),
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: Field,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "`metric` is not a known metric (heart_rate, respiratory_rate, spo2, systolic_bp, diastolic_bp, temperature)"
    )]
    UnknownMetric,
    #[error("{metric} value is outside its plausible range [{min}, {max}] {unit}", min = .metric.plausible_range().0, max = .metric.plausible_range().1, unit = .metric.unit())]
    OutOfRange { metric: Metric },
    #[error("`timestamp` {0}")]
    BadTimestamp(&'static str),
    #[error("`patientId` {0}")]
    BadPatientId(&'static str),
    #[error("`unit` must be \"{expected}\" for {metric}", expected = .metric.unit())]
    BadUnit { metric: Metric },
}

impl DecodeError {
    /// The DLQ reason code (`vitalwatch.error.reason` header, metric label).
    pub const fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::UnknownMetric => "unknown_metric",
            DecodeError::OutOfRange { .. } => "out_of_range",
            DecodeError::BadTimestamp(_) => "bad_timestamp",
            DecodeError::BadPatientId(_) => "bad_patient_id",
            DecodeError::BadUnit { .. } => "bad_unit",
        }
    }

    /// Every reason code, for pre-registering metric series and for tests.
    pub const REASONS: [&'static str; 10] = [
        "too_large",
        "not_utf8",
        "invalid_json",
        "missing_field",
        "wrong_type",
        "unknown_metric",
        "out_of_range",
        "bad_timestamp",
        "bad_patient_id",
        "bad_unit",
    ];
}

/// Limits the decoder enforces that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// `pipeline.max_message_bytes`.
    pub max_message_bytes: usize,
    /// `pipeline.max_future_skew_secs`, in milliseconds.
    pub max_future_skew_ms: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message_bytes: 65_536,
            max_future_skew_ms: 300_000,
        }
    }
}

/// Decodes and validates one message payload. `now_ms` is the wall clock (Unix epoch
/// milliseconds) the future-skew check compares against.
pub fn decode<'a>(
    payload: &'a [u8],
    limits: &DecodeLimits,
    now_ms: i64,
) -> Result<Observation<'a>, DecodeError> {
    if payload.len() > limits.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            limit: limits.max_message_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = match de.deserialize_map(ObservationVisitor) {
        Ok(raw) => raw,
        Err(e) => return Err(json_error(&e)),
    };
    de.end().map_err(|e| json_error(&e))?;
    raw?.validate(limits, now_ms)
}

fn json_error(e: &serde_json::Error) -> DecodeError {
    // serde_json's syntax errors say what was expected and where; they never quote input.
    // Our visitors produce no data errors, so every error here is about the JSON itself
    // (syntax, nesting depth, a number too large for f64, a top level that is no object).
    let detail = match e.classify() {
        serde_json::error::Category::Data => format!("top level must be a JSON object ({e})"),
        _ => e.to_string(),
    };
    DecodeError::InvalidJson { detail }
}

/// What the single pass over the JSON object collected, before semantic validation.
#[derive(Default)]
struct RawObservation<'a> {
    patient_id: Option<Cow<'a, str>>,
    metric: Option<Cow<'a, str>>,
    value: Option<f64>,
    timestamp: Option<i64>,
    unit: Option<Cow<'a, str>>,
    device_id: Option<Cow<'a, str>>,
    site_id: Option<Cow<'a, str>>,
}

impl<'a> RawObservation<'a> {
    fn validate(self, limits: &DecodeLimits, now_ms: i64) -> Result<Observation<'a>, DecodeError> {
        let patient_id = self
            .patient_id
            .ok_or(DecodeError::MissingField(Field::PatientId))?;
        let metric_name = self
            .metric
            .ok_or(DecodeError::MissingField(Field::Metric))?;
        let value = self.value.ok_or(DecodeError::MissingField(Field::Value))?;
        let timestamp = self
            .timestamp
            .ok_or(DecodeError::MissingField(Field::Timestamp))?;

        validate_patient_id(&patient_id)?;
        let metric = Metric::from_wire(&metric_name).ok_or(DecodeError::UnknownMetric)?;
        let (min, max) = metric.plausible_range();
        // JSON cannot spell NaN or infinity, but keep the check next to the rule it serves.
        if !value.is_finite() || value < min || value > max {
            return Err(DecodeError::OutOfRange { metric });
        }
        if timestamp < MIN_TIMESTAMP_MS {
            return Err(DecodeError::BadTimestamp("is before 2000-01-01"));
        }
        if timestamp > now_ms.saturating_add(limits.max_future_skew_ms) {
            return Err(DecodeError::BadTimestamp(
                "is further in the future than pipeline.max_future_skew_secs allows",
            ));
        }
        if let Some(unit) = &self.unit
            && unit != metric.unit()
        {
            return Err(DecodeError::BadUnit { metric });
        }
        Ok(Observation {
            patient_id,
            metric,
            value,
            timestamp,
            unit: self.unit,
            device_id: self.device_id,
            site_id: self.site_id,
        })
    }
}

fn validate_patient_id(id: &str) -> Result<(), DecodeError> {
    if id.is_empty() {
        return Err(DecodeError::BadPatientId("is empty"));
    }
    if id.len() > MAX_PATIENT_ID_BYTES {
        return Err(DecodeError::BadPatientId("is longer than 128 bytes"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DecodeError::BadPatientId(
            "must be printable ASCII without whitespace or control characters",
        ));
    }
    Ok(())
}

/// Field names we act on; everything else is skipped without being decoded.
enum Key {
    Known(Field),
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "patientId" => Key::Known(Field::PatientId),
                    "metric" => Key::Known(Field::Metric),
                    "value" => Key::Known(Field::Value),
                    "timestamp" => Key::Known(Field::Timestamp),
                    "unit" => Key::Known(Field::Unit),
                    "deviceId" => Key::Known(Field::DeviceId),
                    "siteId" => Key::Known(Field::SiteId),
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The JSON kind of a value we did not expect, for `wrong_type` messages.
const fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Null => "null",
        Kind::Bool => "a boolean",
        Kind::Number => "a number",
        Kind::Float => "a fractional number",
        Kind::String => "a string",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Null,
    Bool,
    Number,
    Float,
    String,
    Array,
    Object,
}

/// A field value: what we wanted, or the kind of what was there instead. Decoding a field
/// this way never fails for type reasons, so the only serde errors left are syntax errors.
enum Typed<T> {
    Ok(T),
    Wrong(Kind),
}

/// Which shape a field must have.
#[derive(Clone, Copy)]
enum Want {
    Str,
    Num,
    Int,
}

enum Scalar<'de> {
    Str(Cow<'de, str>),
    Num(f64),
    Int(i64),
}

impl<'de> DeserializeSeed<'de> for Want {
    type Value = Typed<Scalar<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Want {
    type Value = Typed<Scalar<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(match self {
            Want::Str => Typed::Ok(Scalar::Str(Cow::Borrowed(v))),
            _ => Typed::Wrong(Kind::String),
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match self {
            Want::Str => Typed::Ok(Scalar::Str(Cow::Owned(v.to_owned()))),
            _ => Typed::Wrong(Kind::String),
        })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(match self {
            Want::Num => Typed::Ok(Scalar::Num(v as f64)),
            Want::Int => Typed::Ok(Scalar::Int(v)),
            Want::Str => Typed::Wrong(Kind::Number),
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(match self {
            Want::Num => Typed::Ok(Scalar::Num(v as f64)),
            // Beyond i64 is far beyond any plausible timestamp: saturate, range check rejects.
            Want::Int => Typed::Ok(Scalar::Int(i64::try_from(v).unwrap_or(i64::MAX))),
            Want::Str => Typed::Wrong(Kind::Number),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(match self {
            Want::Num => Typed::Ok(Scalar::Num(v)),
            Want::Int => Typed::Wrong(Kind::Float),
            Want::Str => Typed::Wrong(Kind::Number),
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Typed::Wrong(Kind::Bool))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Typed::Wrong(Kind::Null))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Typed::Wrong(Kind::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Typed::Wrong(Kind::Object))
    }
}

struct ObservationVisitor;

impl<'de> Visitor<'de> for ObservationVisitor {
    /// The outer result carries JSON syntax errors, the inner one field errors; the whole
    /// object is read even after a field error, so that a syntax error later on wins.
    type Value = Result<RawObservation<'de>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawObservation::default();
        let mut first_error: Option<DecodeError> = None;
        while let Some(key) = map.next_key::<Key>()? {
            let field = match key {
                Key::Known(field) => field,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let want = match field {
                Field::Value => Want::Num,
                Field::Timestamp => Want::Int,
                _ => Want::Str,
            };
            let parsed = map.next_value_seed(want)?;
            if first_error.is_some() {
                continue;
            }
            if let Err(e) = raw.set(field, want, parsed) {
                first_error = Some(e);
            }
        }
        Ok(match first_error {
            Some(e) => Err(e),
            None => Ok(raw),
        })
    }
}

impl<'a> RawObservation<'a> {
    fn set(
        &mut self,
        field: Field,
        want: Want,
        parsed: Typed<Scalar<'a>>,
    ) -> Result<(), DecodeError> {
        let scalar = match parsed {
            Typed::Ok(s) => s,
            Typed::Wrong(kind) => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: match want {
                        Want::Str => "a string",
                        Want::Num => "a number",
                        Want::Int => "an integer (Unix epoch milliseconds)",
                    },
                    found: kind_name(kind),
                });
            }
        };
        let duplicate = || DecodeError::InvalidJson {
            detail: format!("field `{field}` appears more than once"),
        };
        match (field, scalar) {
            (Field::Value, Scalar::Num(v)) => put(&mut self.value, v).map_err(|_| duplicate()),
            (Field::Timestamp, Scalar::Int(t)) => {
                put(&mut self.timestamp, t).map_err(|_| duplicate())
            }
            (Field::PatientId, Scalar::Str(s)) => {
                put(&mut self.patient_id, s).map_err(|_| duplicate())
            }
            (Field::Metric, Scalar::Str(s)) => put(&mut self.metric, s).map_err(|_| duplicate()),
            (Field::Unit, Scalar::Str(s)) => put(&mut self.unit, s).map_err(|_| duplicate()),
            (Field::DeviceId, Scalar::Str(s)) => {
                put(&mut self.device_id, s).map_err(|_| duplicate())
            }
            (Field::SiteId, Scalar::Str(s)) => put(&mut self.site_id, s).map_err(|_| duplicate()),
            // `Want` is chosen from the field, so a scalar of another shape cannot occur.
            _ => Err(DecodeError::WrongType {
                field,
                expected: "another type",
                found: "an unexpected value",
            }),
        }
    }
}

fn put<T>(slot: &mut Option<T>, v: T) -> Result<(), ()> {
    if slot.is_some() {
        return Err(());
    }
    *slot = Some(v);
    Ok(())
}
