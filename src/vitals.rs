//! The input wire format: one JSON observation per Kafka message.
//!
//! [`decode`] is the first thing every consumed message meets. It checks the size, UTF-8
//! and JSON syntax, then every field rule of the contract, and returns either a typed
//! [`Observation`] that borrows its strings from the message payload (no copies, no
//! `serde_json::Value`) or a [`DecodeError`] whose variant is the DLQ reason code.
//! Error messages never echo the payload: they name the field and the rule only, because
//! the payload is patient data and the message ends up in a header operators read.
//!
//! Beyond the contract's field rules: a known field given twice is `invalid_json` (which
//! copy is the reading?), and an optional field (`unit`, `deviceId`, `siteId`) given as
//! `null` counts as absent, as many JSON encoders write it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Serialize, Serializer};

/// 2000-01-01T00:00:00Z in Unix epoch milliseconds: older timestamps are clock errors.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// Longest accepted patient id, in bytes.
pub(crate) const MAX_PATIENT_ID_BYTES: usize = 128;

/// A vital sign the decoder knows, with its unit and plausible range.
///
/// Most are measurements. The last two are coded bedside assessments that NEWS2 scores
/// alongside them, each a yes/no code ([`Metric::is_binary`]): the value is 0 or 1 and
/// nothing else. New metrics go at the end, so that [`Metric::index`] of the existing ones
/// (per-metric tables, generated traffic) stays put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    HeartRate,
    RespiratoryRate,
    Spo2,
    SystolicBp,
    DiastolicBp,
    Temperature,
    /// 0 = breathing air, 1 = on supplemental oxygen (any device, any flow).
    SupplementalOxygen,
    /// 0 = alert (the A of ACVPU), 1 = new confusion, or responds only to voice or pain,
    /// or unresponsive (CVPU). NEWS2 scores all of CVPU alike, so one bit carries it.
    Consciousness,
}

impl Metric {
    pub(crate) const ALL: [Metric; 8] = [
        Metric::HeartRate,
        Metric::RespiratoryRate,
        Metric::Spo2,
        Metric::SystolicBp,
        Metric::DiastolicBp,
        Metric::Temperature,
        Metric::SupplementalOxygen,
        Metric::Consciousness,
    ];
    /// Number of metrics, for per-metric lookup tables.
    pub(crate) const COUNT: usize = Self::ALL.len();

    /// The wire name, as in the `metric` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::RespiratoryRate => "respiratory_rate",
            Metric::Spo2 => "spo2",
            Metric::SystolicBp => "systolic_bp",
            Metric::DiastolicBp => "diastolic_bp",
            Metric::Temperature => "temperature",
            Metric::SupplementalOxygen => "supplemental_oxygen",
            Metric::Consciousness => "consciousness",
        }
    }

    /// The UCUM unit the value is expressed in; an input `unit` must equal it.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::HeartRate | Metric::RespiratoryRate => "/min",
            Metric::Spo2 => "%",
            Metric::SystolicBp | Metric::DiastolicBp => "mmHg",
            Metric::Temperature => "Cel",
            // UCUM's unity: a code has no dimension.
            Metric::SupplementalOxygen | Metric::Consciousness => "1",
        }
    }

    /// Inclusive range of physically plausible values. Outside it the reading is a
    /// sensor or unit error (°F sent as °C, say), not a clinical finding. A binary
    /// metric's range is [0, 1], and of that only the two ends are valid
    /// ([`Metric::accepts`]).
    pub const fn plausible_range(self) -> (f64, f64) {
        match self {
            Metric::HeartRate => (0.0, 300.0),
            Metric::RespiratoryRate => (0.0, 100.0),
            // Below 20 % an oximeter reports no usable reading; values of at most 1 are
            // fractions (0.97 for 97 %), which the decoder names as such.
            Metric::Spo2 => (20.0, 100.0),
            Metric::SystolicBp | Metric::DiastolicBp => (0.0, 300.0),
            Metric::Temperature => (25.0, 45.0),
            Metric::SupplementalOxygen | Metric::Consciousness => (0.0, 1.0),
        }
    }

    /// Whether the value is a yes/no code (0 or 1) rather than a measurement. A 0.5 there
    /// is no reading between two states but a broken feed, so it is rejected, not rounded.
    pub(crate) const fn is_binary(self) -> bool {
        matches!(self, Metric::SupplementalOxygen | Metric::Consciousness)
    }

    /// Whether `value` is a valid reading of this metric: finite, inside the plausible
    /// range and, for a binary metric, exactly 0 or 1. The decoder rejects anything else
    /// as `out_of_range`.
    pub(crate) fn accepts(self, value: f64) -> bool {
        let (min, max) = self.plausible_range();
        // JSON cannot spell NaN or infinity, but callers other than the decoder can.
        value.is_finite()
            && (min..=max).contains(&value)
            && (!self.is_binary() || value == 0.0 || value == 1.0)
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
    pub(crate) const fn as_str(self) -> &'static str {
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
        "`metric` is not a known metric (heart_rate, respiratory_rate, spo2, systolic_bp, diastolic_bp, temperature, supplemental_oxygen, consciousness)"
    )]
    UnknownMetric,
    #[error("{metric} value {rule}", rule = ValueRule(*.metric))]
    OutOfRange { metric: Metric },
    /// A percentage sent as a fraction of 1 (0.97 for 97 %): reason `out_of_range`.
    #[error(
        "{metric} value is at most 1, a fraction rather than a percentage: send percent (97, not a fraction of 1); the plausible range is [{min}, {max}] %",
        min = .metric.plausible_range().0,
        max = .metric.plausible_range().1
    )]
    Fraction { metric: Metric },
    #[error("`timestamp` {0}")]
    BadTimestamp(&'static str),
    /// Older than `pipeline.max_observation_age_secs`: too old to alert on as if it were
    /// happening now.
    #[error(
        "`timestamp` is more than pipeline.max_observation_age_secs = {max_age_secs} s in the past: too old to raise a live alert"
    )]
    Stale { max_age_secs: i64 },
    /// A message without a value (a tombstone, or a null record): reason `invalid_json`.
    #[error(
        "message has no value (a null value, such as a tombstone): expected a JSON observation"
    )]
    NoValue,
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
            DecodeError::InvalidJson { .. } | DecodeError::NoValue => "invalid_json",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::UnknownMetric => "unknown_metric",
            DecodeError::OutOfRange { .. } | DecodeError::Fraction { .. } => "out_of_range",
            DecodeError::BadTimestamp(_) => "bad_timestamp",
            DecodeError::Stale { .. } => "stale",
            DecodeError::BadPatientId(_) => "bad_patient_id",
            DecodeError::BadUnit { .. } => "bad_unit",
        }
    }

    /// Every reason code, for pre-registering metric series and for tests.
    pub const REASONS: [&'static str; 11] = [
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
        "stale",
    ];
}

/// The rule an `out_of_range` value broke, in words: the range, or for a binary metric
/// what its two codes mean, so that whoever fixes the feed knows what to send instead.
struct ValueRule(Metric);

impl fmt::Display for ValueRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metric = self.0;
        match metric {
            Metric::SupplementalOxygen => {
                f.write_str("must be 0 (breathing air) or 1 (on supplemental oxygen)")
            }
            Metric::Consciousness => f.write_str(
                "must be 0 (alert) or 1 (new confusion, responds to voice or pain only, or unresponsive)",
            ),
            _ => {
                let (min, max) = metric.plausible_range();
                write!(
                    f,
                    "is outside its plausible range [{min}, {max}] {}",
                    metric.unit()
                )
            }
        }
    }
}

/// Limits the decoder enforces that come from configuration (the service's are
/// `Settings::decode_limits`, its defaults those of `config/default.toml`).
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// `pipeline.max_message_bytes`.
    pub max_message_bytes: usize,
    /// `pipeline.max_future_skew_secs`, in milliseconds.
    pub max_future_skew_ms: i64,
    /// `pipeline.max_observation_age_secs`, in milliseconds.
    pub max_age_ms: i64,
}

/// As [`decode`], for a Kafka record's value, which may be absent (a tombstone).
pub(crate) fn decode_value<'a>(
    payload: Option<&'a [u8]>,
    limits: &DecodeLimits,
    now_ms: i64,
) -> Result<Observation<'a>, DecodeError> {
    match payload {
        Some(p) => decode(p, limits, now_ms),
        None => Err(DecodeError::NoValue),
    }
}

/// Decodes and validates one message payload. `now_ms` is the wall clock (Unix epoch
/// milliseconds) the timestamp checks compare against.
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
        Err(e) => return Err(json_error(&e, text)),
    };
    de.end().map_err(|e| json_error(&e, text))?;
    raw?.validate(limits, now_ms)
}

fn json_error(e: &serde_json::Error, text: &str) -> DecodeError {
    // serde_json's syntax errors say what was expected and where; they never quote input.
    // Our visitors produce no data errors, so the only data error is a top level that is no
    // object, and serde_json's text for it quotes the value ("invalid type: string
    // \"P-000123\""): name the kind of value instead, never the value.
    let detail = match e.classify() {
        serde_json::error::Category::Data => {
            let found = match text.trim_start().as_bytes().first() {
                Some(b'"') => "a string",
                Some(b'[') => "an array",
                Some(b't' | b'f') => "a boolean",
                Some(b'n') => "null",
                Some(b'-' | b'0'..=b'9') => "a number",
                _ => "another value",
            };
            format!(
                "top level must be a JSON object, found {found} at line {} column {}",
                e.line(),
                e.column()
            )
        }
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
        // The unit before the range: 98.6 with unit "[degF]" is a unit problem, and
        // saying so points the feed's owner at the right fix.
        if let Some(unit) = &self.unit
            && unit != metric.unit()
        {
            return Err(DecodeError::BadUnit { metric });
        }
        if !metric.accepts(value) {
            if metric == Metric::Spo2 && value > 0.0 && value <= 1.0 {
                return Err(DecodeError::Fraction { metric });
            }
            return Err(DecodeError::OutOfRange { metric });
        }
        check_timestamp(timestamp, limits, now_ms)?;
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

/// Plausible epoch milliseconds: from 2000 on, at most `max_future_skew` ahead of now and
/// at most `max_age` behind it. A value that would be plausible in seconds (or in micro-
/// or nanoseconds) says so, since that is the usual mistake.
fn check_timestamp(t: i64, limits: &DecodeLimits, now_ms: i64) -> Result<(), DecodeError> {
    let latest = now_ms.saturating_add(limits.max_future_skew_ms);
    let plausible = |ms: i64| (MIN_TIMESTAMP_MS..=latest).contains(&ms);
    if t < MIN_TIMESTAMP_MS {
        return Err(DecodeError::BadTimestamp(
            if plausible(t.saturating_mul(1000)) {
                "is before 2000-01-01; it looks like Unix seconds: send milliseconds (seconds × 1000)"
            } else {
                "is before 2000-01-01 (Unix epoch milliseconds expected)"
            },
        ));
    }
    if t > latest {
        return Err(DecodeError::BadTimestamp(if plausible(t / 1000) {
            "is further in the future than pipeline.max_future_skew_secs allows; it looks like microseconds: send milliseconds"
        } else if plausible(t / 1_000_000) {
            "is further in the future than pipeline.max_future_skew_secs allows; it looks like nanoseconds: send milliseconds"
        } else {
            "is further in the future than pipeline.max_future_skew_secs allows"
        }));
    }
    if t < now_ms.saturating_sub(limits.max_age_ms) {
        return Err(DecodeError::Stale {
            max_age_secs: limits.max_age_ms / 1000,
        });
    }
    Ok(())
}

/// The contract's patient-id rule: the decoder's `patientId`, and the context topic's
/// key and `patientId` ([`crate::rules::context::parse`]).
pub(crate) fn validate_patient_id(id: &str) -> Result<(), DecodeError> {
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
        // serde_json hands over a fraction, an exponent and an integer beyond 64 bits alike
        // as a float: name all three, so that `1e12` is not called "fractional".
        Kind::Float => "a number with a fraction or an exponent, or beyond 64-bit integers",
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
        // One bit per `Field`: a known field given twice is ambiguous (which one is the
        // reading?), so it is rejected rather than resolved by taking the first or last.
        let mut seen: u8 = 0;
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
            let bit = 1u8 << (field as u8);
            if seen & bit != 0 {
                first_error = Some(DecodeError::InvalidJson {
                    detail: format!("field `{field}` appears more than once"),
                });
                continue;
            }
            seen |= bit;
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
            // Many JSON encoders write an absent optional field as null; that is absence,
            // not a malformed reading, and must not send a good vital sign to the DLQ.
            Typed::Wrong(Kind::Null)
                if matches!(field, Field::Unit | Field::DeviceId | Field::SiteId) =>
            {
                return Ok(());
            }
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
        match (field, scalar) {
            (Field::Value, Scalar::Num(v)) => self.value = Some(v),
            (Field::Timestamp, Scalar::Int(t)) => self.timestamp = Some(t),
            (Field::PatientId, Scalar::Str(s)) => self.patient_id = Some(s),
            (Field::Metric, Scalar::Str(s)) => self.metric = Some(s),
            (Field::Unit, Scalar::Str(s)) => self.unit = Some(s),
            (Field::DeviceId, Scalar::Str(s)) => self.device_id = Some(s),
            (Field::SiteId, Scalar::Str(s)) => self.site_id = Some(s),
            // `Want` is chosen from the field, so a scalar of another shape cannot occur.
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "another type",
                    found: "an unexpected value",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2025-11-22T08:00:00Z, the wall clock of every test.
    const NOW: i64 = 1_763_798_400_000;
    /// The tests' `pipeline.max_future_skew_secs` (the shipped default), in ms.
    const SKEW: i64 = 300_000;
    /// The tests' `pipeline.max_observation_age_secs` (the shipped default), in ms.
    const AGE: i64 = 86_400_000;
    /// Payload values that no error message may repeat.
    const SECRET_PATIENT: &str = "PID-SECRET-7731";
    const SECRET_VALUE: &str = "128.25";

    /// The fields of a valid observation, as raw JSON values.
    const VALID: [(&str, &str); 4] = [
        ("patientId", "\"PID-SECRET-7731\""),
        ("metric", "\"heart_rate\""),
        ("value", "128.25"),
        ("timestamp", "1763798400000"),
    ];

    /// The limits of every test: the shipped defaults, written here so that the file
    /// stays self-contained (the fuzz target compiles it alone).
    fn limits() -> DecodeLimits {
        DecodeLimits {
            max_message_bytes: 65_536,
            max_future_skew_ms: SKEW,
            max_age_ms: AGE,
        }
    }

    fn dec(payload: &str) -> Result<Observation<'_>, DecodeError> {
        decode(payload.as_bytes(), &limits(), NOW)
    }

    fn render(fields: &[(String, String)]) -> String {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }

    fn valid_fields() -> Vec<(String, String)> {
        VALID
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A valid observation with each `(key, raw JSON)` replacing a field or appended.
    fn with_all(changes: &[(&str, &str)]) -> String {
        let mut fields = valid_fields();
        for (k, v) in changes {
            match fields.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => fields.push((k.to_string(), v.to_string())),
            }
        }
        render(&fields)
    }

    fn with(key: &str, value: &str) -> String {
        with_all(&[(key, value)])
    }

    fn without(key: &str) -> String {
        let fields: Vec<_> = valid_fields()
            .into_iter()
            .filter(|(k, _)| k != key)
            .collect();
        render(&fields)
    }

    /// `text` with the first `marker` replaced by raw (possibly non-UTF-8) bytes.
    fn splice(text: &str, marker: &str, bytes: &[u8]) -> Vec<u8> {
        let at = text.find(marker).expect("marker in text");
        let mut out = text.as_bytes()[..at].to_vec();
        out.extend_from_slice(bytes);
        out.extend_from_slice(&text.as_bytes()[at + marker.len()..]);
        out
    }

    /// A JSON string literal of `s`.
    fn lit(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    /// Every rejected input: (name, payload, reason, payload values the message must not
    /// repeat besides the valid base fields').
    fn rejected() -> Vec<(String, Vec<u8>, &'static str, Vec<String>)> {
        let mut cases: Vec<(String, Vec<u8>, &'static str, Vec<String>)> = Vec::new();
        let mut add = |name: &str, payload: Vec<u8>, reason: &'static str, secrets: &[&str]| {
            cases.push((
                name.to_owned(),
                payload,
                reason,
                secrets.iter().map(|s| s.to_string()).collect(),
            ));
        };
        let s = |t: String| t.into_bytes();

        // too_large: one byte over pipeline.max_message_bytes (padding in an ignored field).
        let base = with("pad", "\"\"");
        let over = limits().max_message_bytes + 1 - base.len();
        add(
            "one byte over the limit",
            s(with("pad", &format!("\"{}\"", "x".repeat(over)))),
            "too_large",
            &[],
        );
        add(
            "invalid UTF-8 and too large: size is checked first",
            splice(
                &with("pad", &format!("\"{}\"", "x".repeat(over))),
                "xx",
                &[0xff, 0xff],
            ),
            "too_large",
            &[],
        );

        // not_utf8
        let dev = with("deviceId", "\"dev-XX\"");
        add("0xFF byte", splice(&dev, "XX", &[0xff]), "not_utf8", &[]);
        add(
            "overlong '/'",
            splice(&dev, "XX", &[0xc0, 0xaf]),
            "not_utf8",
            &[],
        );
        add(
            "UTF-8 encoded surrogate U+D800",
            splice(&dev, "XX", &[0xed, 0xa0, 0x80]),
            "not_utf8",
            &[],
        );
        add(
            "Latin-1 e-acute in patientId",
            splice(&with("patientId", "\"P-XX\""), "XX", &[0xe9]),
            "not_utf8",
            &[],
        );
        let mut truncated = dev.as_bytes()[..dev.len() - 1].to_vec();
        truncated.extend_from_slice(&[0xe2, 0x82]);
        add(
            "truncated multi-byte sequence at the end",
            truncated,
            "not_utf8",
            &[],
        );
        let mut utf16 = vec![0xff, 0xfe];
        for unit in with_all(&[]).encode_utf16() {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        add("UTF-16LE with BOM", utf16, "not_utf8", &[]);

        // invalid_json: syntax
        let valid = with_all(&[]);
        add("empty payload", vec![], "invalid_json", &[]);
        add("whitespace only", s(" \n\t ".into()), "invalid_json", &[]);
        add("lone brace", s("{".into()), "invalid_json", &[]);
        add(
            "truncated object",
            s(valid[..valid.len() - 1].to_string()),
            "invalid_json",
            &[],
        );
        add(
            "trailing garbage",
            s(format!("{valid}x")),
            "invalid_json",
            &[],
        );
        add(
            "two objects",
            s(format!("{valid}{valid}")),
            "invalid_json",
            &[],
        );
        add("trailing NUL", s(format!("{valid}\0")), "invalid_json", &[]);
        add(
            "UTF-8 BOM",
            s(format!("\u{feff}{valid}")),
            "invalid_json",
            &[],
        );
        add("NaN literal", s(with("value", "NaN")), "invalid_json", &[]);
        add(
            "Infinity literal",
            s(with("value", "Infinity")),
            "invalid_json",
            &[],
        );
        add(
            "-Infinity literal",
            s(with("value", "-Infinity")),
            "invalid_json",
            &[],
        );
        add("1e400", s(with("value", "1e400")), "invalid_json", &[]);
        add("-1e400", s(with("value", "-1e400")), "invalid_json", &[]);
        add("hex number", s(with("value", "0x80")), "invalid_json", &[]);
        add(
            "leading zero",
            s(with("value", "0128")),
            "invalid_json",
            &[],
        );
        add(
            "leading plus",
            s(with("value", "+128")),
            "invalid_json",
            &[],
        );
        add("leading dot", s(with("value", ".5")), "invalid_json", &[]);
        add(
            "trailing dot",
            s(with("value", "128.")),
            "invalid_json",
            &[],
        );
        add(
            "lone leading surrogate",
            s(with("patientId", r#""P-\ud800""#)),
            "invalid_json",
            &[],
        );
        add(
            "lone trailing surrogate",
            s(with("patientId", r#""P-\udc00""#)),
            "invalid_json",
            &[],
        );
        add(
            "leading surrogate then a letter",
            s(with("patientId", r#""P-\ud800\u0041""#)),
            "invalid_json",
            &[],
        );
        add(
            "invalid escape",
            s(with("patientId", r#""P-\x41""#)),
            "invalid_json",
            &[],
        );
        add(
            "raw tab inside a string",
            s(with("patientId", "\"P-\t1\"")),
            "invalid_json",
            &[],
        );
        add(
            "single quotes",
            s(valid.replace('"', "'")),
            "invalid_json",
            &[],
        );
        add(
            "trailing comma",
            s(format!("{},}}", &valid[..valid.len() - 1])),
            "invalid_json",
            &[],
        );
        add(
            "comment",
            s(format!("{valid} // reading")),
            "invalid_json",
            &[],
        );
        add(
            "unquoted key",
            s(valid.replacen("\"metric\"", "metric", 1)),
            "invalid_json",
            &[],
        );
        add(
            "unclosed deep nesting",
            s(format!("{{\"x\":{}", "[".repeat(10_000))),
            "invalid_json",
            &[],
        );
        // invalid_json: ambiguous objects
        for (key, dup) in [
            ("patientId", "\"PID-SECRET-7732\""),
            ("metric", "\"spo2\""),
            ("value", "64.5"),
            ("timestamp", "1763798400001"),
            ("unit", "\"/min\""),
            ("deviceId", "\"dev-SECRET\""),
            ("siteId", "\"site-SECRET\""),
        ] {
            let mut fields = valid_fields();
            fields.push(("unit".into(), "\"/min\"".into()));
            fields.push(("deviceId".into(), "\"dev-SECRET\"".into()));
            fields.push(("siteId".into(), "\"site-SECRET\"".into()));
            fields.push((key.into(), dup.into()));
            add(
                &format!("duplicate {key}"),
                s(render(&fields)),
                "invalid_json",
                &["PID-SECRET-7732", "64.5", "dev-SECRET", "site-SECRET"],
            );
        }
        add(
            "duplicate null optional field",
            s(with_all(&[("unit", "null")]).replace('}', ",\"unit\":\"/min\"}")),
            "invalid_json",
            &[],
        );
        // invalid_json: top level is not an object
        add(
            "top-level array",
            s(format!("[{valid}]")),
            "invalid_json",
            &[],
        );
        add(
            "top-level string",
            s(lit(SECRET_PATIENT)),
            "invalid_json",
            &[],
        );
        add(
            "top-level number",
            s(SECRET_VALUE.into()),
            "invalid_json",
            &[],
        );
        add(
            "top-level integer",
            s("-7731".into()),
            "invalid_json",
            &["7731"],
        );
        add("top-level true", s("true".into()), "invalid_json", &[]);
        add("top-level null", s("null".into()), "invalid_json", &[]);
        add(
            "top-level deep array",
            s(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))),
            "invalid_json",
            &[],
        );

        // missing_field
        for key in ["patientId", "metric", "value", "timestamp"] {
            add(
                &format!("missing {key}"),
                s(without(key)),
                "missing_field",
                &[],
            );
        }
        add("empty object", s("{}".into()), "missing_field", &[]);
        add(
            "key in the wrong case",
            s(valid.replace("\"patientId\"", "\"PatientId\"")),
            "missing_field",
            &[],
        );

        // wrong_type
        for (key, value) in [
            ("value", "\"128.25\""),
            ("value", "null"),
            ("value", "true"),
            ("value", "[128.25]"),
            ("value", "{\"v\":128.25}"),
            ("timestamp", "1763798400000.0"),
            ("timestamp", "1.7637984e12"),
            ("timestamp", "\"1763798400000\""),
            ("timestamp", "null"),
            ("patientId", "7731"),
            ("patientId", "null"),
            ("patientId", "[\"PID-SECRET-7731\"]"),
            ("metric", "1"),
            ("metric", "null"),
            ("metric", "{\"name\":\"heart_rate\"}"),
            ("unit", "7731"),
            ("unit", "false"),
            ("deviceId", "7731"),
            ("deviceId", "{}"),
            ("siteId", "[]"),
        ] {
            add(
                &format!("{key} = {value}"),
                s(with(key, value)),
                "wrong_type",
                &["7731"],
            );
        }

        // unknown_metric
        for metric in [
            "heart_rate_SECRET",
            "HEART_RATE",
            "Heart_Rate",
            "",
            " heart_rate",
            "heart_rate ",
            "pulse",
            "heart_rate\u{0}",
            "heart\u{2010}rate",
        ] {
            add(
                &format!("metric {metric:?}"),
                s(with("metric", &lit(metric))),
                "unknown_metric",
                &["SECRET"],
            );
        }

        // out_of_range
        for (metric, value) in [
            ("heart_rate", "300.01"),
            ("heart_rate", "-0.01"),
            ("heart_rate", "-1e-300"),
            ("heart_rate", "1e308"),
            ("respiratory_rate", "100.001"),
            ("respiratory_rate", "-1"),
            ("spo2", "100.5"),
            ("spo2", "-1"),
            ("spo2", "0"),
            ("spo2", "19.9"),
            // A fraction instead of a percentage.
            ("spo2", "0.97"),
            ("spo2", "1"),
            ("systolic_bp", "300.5"),
            ("systolic_bp", "-7731"),
            ("diastolic_bp", "301"),
            ("diastolic_bp", "-0.5"),
            ("temperature", "24.9"),
            ("temperature", "45.01"),
            ("temperature", "98.6"),
            ("temperature", "0"),
            ("supplemental_oxygen", "0.5"),
            ("supplemental_oxygen", "2"),
            ("supplemental_oxygen", "-1"),
            ("supplemental_oxygen", "15"),
            ("consciousness", "0.5"),
            ("consciousness", "2"),
            ("consciousness", "-1"),
            ("consciousness", "0.999"),
            ("consciousness", "1e-300"),
        ] {
            add(
                &format!("{metric} {value}"),
                s(with_all(&[("metric", &lit(metric)), ("value", value)])),
                "out_of_range",
                &[value],
            );
        }

        // bad_timestamp
        for ts in [
            MIN_TIMESTAMP_MS - 1,
            0,
            -1,
            i64::MIN,
            // Seconds instead of milliseconds: 1970-01-21.
            NOW / 1000,
            NOW + SKEW + 1,
            // Microseconds instead of milliseconds.
            NOW * 1000,
            i64::MAX,
        ] {
            add(
                &format!("timestamp {ts}"),
                s(with("timestamp", &ts.to_string())),
                "bad_timestamp",
                &[&ts.to_string()],
            );
        }
        // stale: older than pipeline.max_observation_age_secs (a day by default).
        for age_ms in [86_400_001_i64, 3 * 86_400_000, NOW - MIN_TIMESTAMP_MS] {
            let ts = NOW - age_ms;
            add(
                &format!("timestamp {age_ms} ms old"),
                s(with("timestamp", &ts.to_string())),
                "stale",
                &[&ts.to_string()],
            );
        }
        add(
            "timestamp u64::MAX",
            s(with("timestamp", &u64::MAX.to_string())),
            "bad_timestamp",
            &[&u64::MAX.to_string()],
        );

        // bad_patient_id
        let too_long = "P".repeat(MAX_PATIENT_ID_BYTES + 1);
        for id in [
            "",
            too_long.as_str(),
            "PID SECRET",
            " PID-SECRET",
            "PID-SECRET ",
            "PID\tSECRET",
            "PID\nSECRET",
            "PID-SECRET\u{0}",
            "PID-SECRET\u{7f}",
            "PID-SECR\u{e9}T",
            "PID\u{a0}SECRET",
            "PID\u{200b}SECRET",
            "PID-SECRET-\u{1f600}",
        ] {
            add(
                &format!("patientId {id:?}"),
                s(with("patientId", &lit(id))),
                "bad_patient_id",
                &["SECRET"],
            );
        }
        add(
            "patientId escaped control character",
            s(with("patientId", r#""PID-SECRET\u0001""#)),
            "bad_patient_id",
            &["SECRET"],
        );
        add(
            "patientId 129 bytes of multi-byte characters",
            s(with("patientId", &lit(&"\u{e9}".repeat(64)))),
            "bad_patient_id",
            &[],
        );

        // bad_unit
        for (metric, unit) in [
            ("heart_rate", "bpm"),
            ("heart_rate", "%"),
            ("heart_rate", ""),
            ("heart_rate", "/MIN"),
            ("heart_rate", "/min "),
            ("respiratory_rate", "mmHg"),
            ("spo2", "/min"),
            ("systolic_bp", "mmhg"),
            ("diastolic_bp", "kPa"),
            ("temperature", "\u{b0}C"),
            ("temperature", "C"),
            ("temperature", "cel"),
            ("temperature", "[degF]"),
            ("temperature", "degF"),
            ("supplemental_oxygen", ""),
            ("supplemental_oxygen", "%"),
            ("supplemental_oxygen", "L/min"),
            ("consciousness", "{score}"),
            ("consciousness", "/min"),
            ("consciousness", "1 "),
        ] {
            let value = match metric {
                "temperature" => "37",
                "supplemental_oxygen" | "consciousness" => "1",
                _ => "80",
            };
            add(
                &format!("{metric} in {unit:?}"),
                s(with_all(&[
                    ("metric", &lit(metric)),
                    ("value", value),
                    ("unit", &lit(unit)),
                ])),
                "bad_unit",
                &["bpm", "kPa", "degF", "\u{b0}", "L/min", "{score}"],
            );
        }

        // The hostile classes of issue #10 in the spellings the rows above leave out
        // (tests/pipeline/hostile.rs sends the same classes through the pipeline).
        for (name, payload, reason) in [
            // Non-finite numbers are not JSON anywhere, also where the value is ignored.
            ("NaN timestamp", with("timestamp", "NaN"), "invalid_json"),
            (
                "Infinity timestamp",
                with("timestamp", "Infinity"),
                "invalid_json",
            ),
            (
                "1e400 timestamp",
                with("timestamp", "1e400"),
                "invalid_json",
            ),
            (
                "NaN in an unknown field",
                with("extra", "NaN"),
                "invalid_json",
            ),
            (
                "-Infinity in a nested unknown field",
                with("extra", "[1,-Infinity]"),
                "invalid_json",
            ),
            // A normal and a breaching reading in one object: neither may be taken.
            (
                "duplicate value, normal then breaching",
                with("value", "72").replace('}', ",\"value\":180}"),
                "invalid_json",
            ),
            (
                "duplicate value, breaching then normal",
                with("value", "180").replace('}', ",\"value\":72}"),
                "invalid_json",
            ),
            (
                "duplicate patientId spelled with an escape",
                with_all(&[]).replace('}', ",\"patient\\u0049d\":\"P-2\"}"),
                "invalid_json",
            ),
            (
                "lone surrogate in deviceId",
                with("deviceId", r#""d-\udbff""#),
                "invalid_json",
            ),
            (
                "lone surrogate in metric",
                with("metric", r#""heart_rate\ud800""#),
                "invalid_json",
            ),
            // Raw control characters are not JSON; escaped ones are JSON but no id.
            (
                "raw BEL in patientId",
                with("patientId", "\"PID-SECRET\u{7}\""),
                "invalid_json",
            ),
            (
                "raw ESC in deviceId",
                with("deviceId", "\"dev\u{1b}[2J\""),
                "invalid_json",
            ),
            (
                "escaped BEL in patientId",
                with("patientId", r#""PID-SECRET\u0007""#),
                "bad_patient_id",
            ),
            (
                "escaped ESC in patientId",
                with("patientId", r#""\u001b[2JPID-SECRET""#),
                "bad_patient_id",
            ),
            (
                "escaped NUL only",
                with("patientId", r#""\u0000""#),
                "bad_patient_id",
            ),
            (
                "BOM inside patientId",
                with("patientId", "\"\u{feff}PID-SECRET\""),
                "bad_patient_id",
            ),
            // Numbers as strings, null for what is required.
            ("value \"138\"", with("value", "\"138\""), "wrong_type"),
            ("value \"NaN\"", with("value", "\"NaN\""), "wrong_type"),
            // Timestamps: an integer is range-checked; any other number spelling is not an
            // integer (serde_json cannot tell 1.5e12 from 1500000000000.0).
            (
                "timestamp 1.5e12",
                with("timestamp", "1.5e12"),
                "wrong_type",
            ),
            ("timestamp 1e30", with("timestamp", "1e30"), "wrong_type"),
            ("timestamp -1e30", with("timestamp", "-1e30"), "wrong_type"),
            (
                "timestamp 1763798400000.5",
                with("timestamp", "1763798400000.5"),
                "wrong_type",
            ),
            (
                "timestamp beyond u64",
                with("timestamp", "99999999999999999999"),
                "wrong_type",
            ),
            (
                "timestamp below i64",
                with("timestamp", "-99999999999999999999"),
                "wrong_type",
            ),
            (
                "timestamp 1 day ahead",
                with("timestamp", &(NOW + 86_400_000).to_string()),
                "bad_timestamp",
            ),
            (
                "timestamp 1999-12-31",
                with("timestamp", "946684799999"),
                "bad_timestamp",
            ),
        ] {
            add(name, s(payload), reason, &["SECRET", "180", "138"]);
        }
        cases
    }

    #[test]
    fn every_reason_code_has_a_rejected_case() {
        let covered: std::collections::BTreeSet<&str> =
            rejected().iter().map(|(_, _, reason, _)| *reason).collect();
        let all: std::collections::BTreeSet<&str> = DecodeError::REASONS.into_iter().collect();
        assert_eq!(covered, all);
    }

    #[test]
    fn rejected_inputs_get_their_reason_code() {
        let mut wrong = Vec::new();
        for (name, payload, reason, _) in rejected() {
            match decode(&payload, &limits(), NOW) {
                Ok(obs) => wrong.push(format!("{name}: accepted as {obs:?}")),
                Err(e) if e.reason() != reason => {
                    wrong.push(format!("{name}: {} ({e}), expected {reason}", e.reason()))
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn error_messages_never_echo_the_payload() {
        for (name, payload, _, secrets) in rejected() {
            let msg = decode(&payload, &limits(), NOW).unwrap_err().to_string();
            assert!(!msg.is_empty(), "{name}");
            for secret in secrets
                .iter()
                .map(String::as_str)
                .chain([SECRET_PATIENT, SECRET_VALUE, "7731", "SECRET"])
                // "0" or "-1" would match line numbers and ranges, not echoes.
                .filter(|s| s.len() >= 3)
            {
                assert!(
                    !msg.contains(secret),
                    "{name}: message repeats payload value {secret:?}: {msg}"
                );
            }
        }
    }

    #[test]
    fn every_reason_is_in_reasons_and_distinct() {
        let mut reasons = DecodeError::REASONS.to_vec();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), DecodeError::REASONS.len());
    }

    #[test]
    fn errors_name_the_field_and_rule() {
        assert_eq!(
            dec(&without("value")).unwrap_err(),
            DecodeError::MissingField(Field::Value)
        );
        assert_eq!(
            dec(&with("value", "\"120\"")).unwrap_err(),
            DecodeError::WrongType {
                field: Field::Value,
                expected: "a number",
                found: "a string",
            }
        );
        assert_eq!(
            dec(&with("timestamp", "1763798400000.5")).unwrap_err(),
            DecodeError::WrongType {
                field: Field::Timestamp,
                expected: "an integer (Unix epoch milliseconds)",
                found: "a number with a fraction or an exponent, or beyond 64-bit integers",
            }
        );
        assert_eq!(
            dec(&with("deviceId", "true")).unwrap_err(),
            DecodeError::WrongType {
                field: Field::DeviceId,
                expected: "a string",
                found: "a boolean",
            }
        );
        assert_eq!(
            dec(&with_all(&[
                ("metric", "\"temperature\""),
                ("value", "24.9")
            ]))
            .unwrap_err(),
            DecodeError::OutOfRange {
                metric: Metric::Temperature
            }
        );
        assert_eq!(
            dec(&with("unit", "\"bpm\"")).unwrap_err(),
            DecodeError::BadUnit {
                metric: Metric::HeartRate
            }
        );
        // A Fahrenheit reading that says so is a unit problem, not an implausible value.
        assert_eq!(
            dec(&with_all(&[
                ("metric", "\"temperature\""),
                ("value", "98.6"),
                ("unit", "\"[degF]\"")
            ]))
            .unwrap_err(),
            DecodeError::BadUnit {
                metric: Metric::Temperature
            }
        );
        let msg = |payload: &str| dec(payload).unwrap_err().to_string();
        let fraction = msg(&with_all(&[("metric", "\"spo2\""), ("value", "0.97")]));
        assert!(
            fraction.contains("fraction") && fraction.contains("percent"),
            "{fraction}"
        );
        let seconds = msg(&with("timestamp", &(NOW / 1000).to_string()));
        assert!(seconds.contains("looks like Unix seconds"), "{seconds}");
        let micros = msg(&with("timestamp", &(NOW * 1000).to_string()));
        assert!(micros.contains("looks like microseconds"), "{micros}");
        let nanos = msg(&with("timestamp", &(NOW * 1_000_000).to_string()));
        assert!(nanos.contains("looks like nanoseconds"), "{nanos}");
        let stale = msg(&with("timestamp", &(NOW - 3 * 86_400_000).to_string()));
        assert!(
            stale.contains("pipeline.max_observation_age_secs = 86400"),
            "{stale}"
        );
        let tombstone = decode_value(None, &limits(), NOW).unwrap_err();
        assert_eq!(tombstone.reason(), "invalid_json");
        assert!(tombstone.to_string().contains("tombstone"), "{tombstone}");
        assert!(!msg("").contains("tombstone"));

        let valid = with_all(&[]);
        let big = format!("{valid}{}", " ".repeat(70_000 - valid.len()));
        assert_eq!(
            dec(&big).unwrap_err(),
            DecodeError::TooLarge {
                size: 70_000,
                limit: 65_536
            }
        );
        let bytes = splice(&with_all(&[]), "PID", &[b'P', 0xff]);
        assert_eq!(
            decode(&bytes, &limits(), NOW).unwrap_err(),
            DecodeError::NotUtf8 {
                valid_up_to: "{\"patientId\":\"P".len()
            }
        );
        let msg = dec(&with("value", "null")).unwrap_err().to_string();
        assert_eq!(msg, "field `value` must be a number, found null");
        let msg = dec("\"PID-SECRET-7731\"").unwrap_err().to_string();
        assert!(msg.contains("found a string"), "{msg}");
        let msg = dec(&with_all(&[("metric", "\"spo2\""), ("value", "101")]))
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "spo2 value is outside its plausible range [20, 100] %");
        let msg = dec(&with_all(&[
            ("metric", "\"consciousness\""),
            ("value", "0.5"),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "consciousness value must be 0 (alert) or 1 (new confusion, responds to voice or \
             pain only, or unresponsive)"
        );
        let msg = dec(&with_all(&[
            ("metric", "\"supplemental_oxygen\""),
            ("value", "2"),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "supplemental_oxygen value must be 0 (breathing air) or 1 (on supplemental oxygen)"
        );
        let msg = dec(&with_all(&[
            ("metric", "\"consciousness\""),
            ("value", "1"),
            ("unit", "\"%\""),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(msg, "`unit` must be \"1\" for consciousness");
        let msg = dec(&with("timestamp", "0")).unwrap_err().to_string();
        assert!(msg.contains("2000-01-01"), "{msg}");
        let msg = dec(&with("timestamp", &(NOW + SKEW + 1).to_string()))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("max_future_skew_secs"), "{msg}");
        let msg = dec(&with("value", "[1]}")).unwrap_err().to_string();
        assert!(msg.contains("line 1 column"), "{msg}");
    }

    #[test]
    fn the_first_problem_in_document_order_wins_and_syntax_beats_fields() {
        // Two field errors: the earlier one is reported.
        let p = r#"{"value":"x","patientId":7,"metric":"heart_rate","timestamp":1763798400000}"#;
        assert_eq!(dec(p).unwrap_err().reason(), "wrong_type");
        assert!(matches!(
            dec(p).unwrap_err(),
            DecodeError::WrongType {
                field: Field::Value,
                ..
            }
        ));
        // A field error, then a syntax error later on: the payload is not JSON at all.
        let p = r#"{"value":"x","patientId":"P","metric":"heart_rate","timestamp":1,}"#;
        assert_eq!(dec(p).unwrap_err().reason(), "invalid_json");
        // A missing field is reported before a bad value of a present one.
        assert_eq!(
            dec(&with_all(&[("patientId", "\"\"")]).replace(",\"value\":128.25", "")).unwrap_err(),
            DecodeError::MissingField(Field::Value)
        );
    }

    #[test]
    fn accepts_valid_inputs_and_range_boundaries() {
        let all_graphic: String = (b'!'..=b'~').map(char::from).collect();
        let max_id = "P".repeat(MAX_PATIENT_ID_BYTES);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let pretty = concat!(
            "\n{\n\t\"patientId\" : \"P-1\" ,\r\n  \"metric\":\"spo2\",",
            "\"value\" : 97,\n\"timestamp\":1763798400000\n}\n  "
        );
        let reordered = concat!(
            r#"{"timestamp":1763798400000,"value":97,"unit":"%","#,
            r#""metric":"spo2","patientId":"P-1"}"#
        );
        let cases: Vec<(&str, String)> = vec![
            ("the example", with_all(&[])),
            ("integer value", with("value", "128")),
            ("exponent value", with("value", "1.2825E2")),
            ("negative zero", with("value", "-0.0")),
            (
                "timestamp at the age limit",
                with("timestamp", &(NOW - AGE).to_string()),
            ),
            ("timestamp now", with("timestamp", &NOW.to_string())),
            (
                "timestamp at the skew limit",
                with("timestamp", &(NOW + SKEW).to_string()),
            ),
            ("128-byte id", with("patientId", &lit(&max_id))),
            ("1-byte id", with("patientId", "\"7\"")),
            (
                "every printable ASCII",
                with("patientId", &lit(&all_graphic)),
            ),
            ("escaped id", with("patientId", r#""P-\u0030001""#)),
            (
                "escaped key",
                with_all(&[]).replace("patientId", r"patient\u0049d"),
            ),
            ("escaped slash", with("patientId", r#""P\/1""#)),
            ("null unit", with("unit", "null")),
            (
                "null device and site",
                with_all(&[("deviceId", "null"), ("siteId", "null")]),
            ),
            (
                "non-ASCII deviceId",
                with("deviceId", "\"Ger\u{e4}t \u{1f4df}\""),
            ),
            ("empty siteId", with("siteId", "\"\"")),
            ("unknown scalar field", with("extra", "1")),
            ("unknown 1e400 field", with("extra", "1e400")),
            ("unknown surrogate field", with("extra", r#""\ud800""#)),
            (
                "unknown nested field",
                with("extra", r#"{"a":[1,{"b":null}],"value":"x"}"#),
            ),
            ("unknown null field", with("extra", "null")),
            (
                "unknown field twice",
                with_all(&[("x", "1")]).replace('}', ",\"x\":2}"),
            ),
            (
                "unknown with a known key inside",
                with("meta", "{\"patientId\":5}"),
            ),
            ("unknown deep field", with("extra", &deep)),
            ("pretty-printed", pretty.to_owned()),
            ("keys in another order", reordered.to_owned()),
        ];
        let mut cases: Vec<(String, String)> = cases
            .into_iter()
            .map(|(name, payload)| (name.to_owned(), payload))
            .collect();
        for metric in Metric::ALL {
            let (min, max) = metric.plausible_range();
            // A binary metric's range has nothing valid between its ends.
            let mid = if metric.is_binary() {
                max
            } else {
                (min + max) / 2.0
            };
            for value in [min, max, mid] {
                for unit in ["null".to_string(), lit(metric.unit())] {
                    cases.push((
                        format!("{metric} {value} {unit}"),
                        with_all(&[
                            ("metric", &lit(metric.as_str())),
                            ("value", &value.to_string()),
                            ("unit", &unit),
                        ]),
                    ));
                }
            }
        }
        for (name, payload) in [
            ("heart_rate 0", "0"),
            ("heart_rate 300", "300"),
            ("heart_rate 300.0", "300.0"),
            ("heart_rate 3e2", "3e2"),
        ] {
            cases.push((name.into(), with("value", payload)));
        }
        for (name, payload) in [
            ("temperature 25", "25"),
            ("temperature 45", "45"),
            ("temperature 45.0", "45.0"),
        ] {
            cases.push((
                name.into(),
                with_all(&[("metric", "\"temperature\""), ("value", payload)]),
            ));
        }
        let max = with("pad", "\"\"");
        let pad = limits().max_message_bytes - max.len();
        cases.push((
            "exactly max_message_bytes".into(),
            with("pad", &format!("\"{}\"", "x".repeat(pad))),
        ));
        assert_eq!(cases.last().unwrap().1.len(), limits().max_message_bytes);

        let mut wrong = Vec::new();
        for (name, payload) in &cases {
            if let Err(e) = dec(payload) {
                wrong.push(format!("{name}: {} ({e})", e.reason()));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // 2000-01-01 itself, where the age bound allows it (a backfill).
        let roomy = DecodeLimits {
            max_age_ms: NOW,
            ..limits()
        };
        let first = with("timestamp", &MIN_TIMESTAMP_MS.to_string());
        assert!(decode(first.as_bytes(), &roomy, NOW).is_ok());
    }

    #[test]
    fn decodes_every_field() {
        let p = concat!(
            r#"{"patientId":"P-000123","metric":"systolic_bp","value":88.5,"#,
            r#""timestamp":1763798400000,"unit":"mmHg","deviceId":"mon-7","#,
            r#""siteId":"ward-3","note":"x"}"#
        );
        assert_eq!(
            dec(p).unwrap(),
            Observation {
                patient_id: "P-000123".into(),
                metric: Metric::SystolicBp,
                value: 88.5,
                timestamp: NOW,
                unit: Some("mmHg".into()),
                device_id: Some("mon-7".into()),
                site_id: Some("ward-3".into()),
            }
        );
        let nulls = with_all(&[("unit", "null"), ("deviceId", "null")]);
        let obs = dec(&nulls).unwrap();
        assert_eq!((obs.unit, obs.device_id, obs.site_id), (None, None, None));
        assert_eq!(dec(&with("value", "128")).unwrap().value, 128.0);
        assert_eq!(dec(&with("value", "1.2825E2")).unwrap().value, 128.25);
    }

    #[test]
    fn strings_borrow_from_the_payload_unless_escaped() {
        let plain = with_all(&[]);
        assert!(matches!(
            dec(&plain).unwrap().patient_id,
            Cow::Borrowed(SECRET_PATIENT)
        ));
        let escaped = with("patientId", r#""P-\u0030001""#);
        let obs = dec(&escaped).unwrap();
        assert_eq!(obs.patient_id, "P-0001");
        assert!(matches!(obs.patient_id, Cow::Owned(_)));
        let escaped = with("deviceId", r#""mon\"7\\\n""#);
        assert_eq!(dec(&escaped).unwrap().device_id.unwrap(), "mon\"7\\\n");
    }

    #[test]
    fn unit_must_be_the_metrics_unit() {
        for metric in Metric::ALL {
            let value = match metric {
                Metric::Temperature => "37",
                m if m.is_binary() => "1",
                _ => "50",
            };
            for other in Metric::ALL {
                let p = with_all(&[
                    ("metric", &lit(metric.as_str())),
                    ("value", value),
                    ("unit", &lit(other.unit())),
                ]);
                match dec(&p) {
                    Ok(obs) => {
                        assert_eq!(other.unit(), metric.unit());
                        assert_eq!(obs.unit.as_deref(), Some(metric.unit()));
                    }
                    Err(e) => {
                        assert_ne!(other.unit(), metric.unit());
                        assert_eq!(e, DecodeError::BadUnit { metric });
                    }
                }
            }
        }
    }

    #[test]
    fn binary_metrics_accept_exactly_0_and_1_in_unit_1() {
        for metric in [Metric::SupplementalOxygen, Metric::Consciousness] {
            let at = |value: &str, unit: &str| {
                dec(&with_all(&[
                    ("metric", &lit(metric.as_str())),
                    ("value", value),
                    ("unit", unit),
                ]))
                .map(|obs| (obs.metric, obs.value))
            };
            for (value, expected) in [("0", 0.0), ("1", 1.0), ("0.0", 0.0), ("1e0", 1.0)] {
                for unit in ["null", "\"1\""] {
                    assert_eq!(at(value, unit), Ok((metric, expected)), "{metric} {value}");
                }
            }
            for value in ["0.5", "2", "-1", "0.000001", "0.999999", "1.000001", "100"] {
                assert_eq!(
                    at(value, "null").unwrap_err(),
                    DecodeError::OutOfRange { metric },
                    "{metric} {value}"
                );
            }
            for unit in ["", "%", "/min", "{score}", "1 ", "01", "one"] {
                assert_eq!(
                    at("1", &lit(unit)).unwrap_err(),
                    DecodeError::BadUnit { metric },
                    "{metric} in {unit:?}"
                );
            }
        }
        assert_eq!(
            Metric::from_wire("supplemental_oxygen"),
            Some(Metric::SupplementalOxygen)
        );
        assert_eq!(
            Metric::from_wire("consciousness"),
            Some(Metric::Consciousness)
        );
    }

    #[test]
    fn metric_table_is_consistent() {
        for (i, metric) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(metric.index(), i);
            assert_eq!(Metric::from_wire(metric.as_str()), Some(metric));
            let (min, max) = metric.plausible_range();
            assert!(metric.accepts(min) && metric.accepts(max), "{metric}");
            assert!(!metric.accepts(f64::NAN) && !metric.accepts(f64::INFINITY));
            // The unknown_metric message lists what is known, for whoever fixes the feed.
            let listed = DecodeError::UnknownMetric.to_string();
            assert!(listed.contains(metric.as_str()), "{listed} lacks {metric}");
        }
        // Appended, so the indices per-metric tables and generated traffic use stay put.
        assert_eq!(Metric::SupplementalOxygen.index(), 6);
        assert_eq!(Metric::Consciousness.index(), 7);
    }

    #[test]
    fn future_skew_follows_the_limit() {
        let strict = DecodeLimits {
            max_future_skew_ms: 0,
            ..limits()
        };
        let at = |ts: i64, l: &DecodeLimits| {
            decode(with("timestamp", &ts.to_string()).as_bytes(), l, NOW).map(|o| o.timestamp)
        };
        assert_eq!(at(NOW, &strict), Ok(NOW));
        assert_eq!(at(NOW + 1, &strict).unwrap_err().reason(), "bad_timestamp");
        let loose = DecodeLimits {
            max_future_skew_ms: 3_600_000,
            ..limits()
        };
        assert_eq!(at(NOW + 3_600_000, &loose), Ok(NOW + 3_600_000));
        assert_eq!(
            at(NOW + 3_600_001, &loose).unwrap_err().reason(),
            "bad_timestamp"
        );
        // A wall clock near the end of time must not overflow.
        let huge = DecodeLimits {
            max_future_skew_ms: i64::MAX,
            max_age_ms: i64::MAX,
            ..limits()
        };
        assert_eq!(at(NOW, &huge), Ok(NOW));
        let valid = with_all(&[]);
        assert!(decode(valid.as_bytes(), &huge, i64::MAX).is_ok());
    }

    #[test]
    fn deep_nesting_neither_overflows_the_stack_nor_passes() {
        // serde_json skips ignored values iteratively (its recursion limit of 128 only
        // guards typed recursion, which the decoder never does), so depth costs heap, not
        // stack. A small stack proves it.
        let big = DecodeLimits {
            max_message_bytes: 16 << 20,
            ..limits()
        };
        let result = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
                let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
                let reason = |p: String| match decode(p.as_bytes(), &big, NOW) {
                    Ok(_) => "ok",
                    Err(e) => e.reason(),
                };
                vec![
                    reason(with("value", &nest(10_000))),
                    reason(with("value", &objects(10_000))),
                    reason(with("patientId", &nest(1_000_000))),
                    reason(with("extra", &nest(10_000))),
                    reason(with("extra", &objects(1_000_000))),
                    reason(format!("{{\"extra\":{}", "[".repeat(1_000_000))),
                    reason(nest(1_000_000)),
                ]
            })
            .unwrap()
            .join()
            .expect("decoder overflowed a 128 KiB stack");
        assert_eq!(
            result,
            [
                "wrong_type",
                "wrong_type",
                "wrong_type",
                "ok",
                "ok",
                "invalid_json",
                "invalid_json"
            ]
        );
    }

    // ---- property tests ----

    /// Whether serde_json parses floats correctly rounded (its `float_roundtrip` feature).
    /// Without it, values with 17 significant digits may come back one ULP off.
    fn exact_float_parsing() -> bool {
        let v: f64 = 123.456_789_012_345_67;
        serde_json::from_str::<f64>(&serde_json::to_string(&v).unwrap()).ok() == Some(v)
    }

    fn ulps_apart(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64).abs_diff(b.to_bits() as i64)
    }

    /// Checks what holds for any outcome of `decode`.
    fn check_outcome(payload: &[u8], limits: &DecodeLimits) -> Result<(), TestCaseError> {
        match decode(payload, limits, NOW) {
            Ok(obs) => {
                prop_assert!(payload.len() <= limits.max_message_bytes);
                prop_assert!(std::str::from_utf8(payload).is_ok());
                prop_assert!((1..=MAX_PATIENT_ID_BYTES).contains(&obs.patient_id.len()));
                prop_assert!(obs.patient_id.bytes().all(|b| b.is_ascii_graphic()));
                let (min, max) = obs.metric.plausible_range();
                prop_assert!(obs.value.is_finite() && min <= obs.value && obs.value <= max);
                if obs.metric.is_binary() {
                    prop_assert!(obs.value == 0.0 || obs.value == 1.0, "{}", obs.value);
                }
                prop_assert!(
                    (NOW - limits.max_age_ms..=NOW + limits.max_future_skew_ms)
                        .contains(&obs.timestamp)
                );
                if let Some(unit) = &obs.unit {
                    prop_assert_eq!(unit.as_ref(), obs.metric.unit());
                }
                // What was accepted once is accepted again after re-encoding.
                let again = obs.to_json();
                let back = decode(&again, limits, NOW);
                prop_assert!(back.is_ok(), "{:?}", back);
            }
            Err(e) => {
                prop_assert!(DecodeError::REASONS.contains(&e.reason()));
                let msg = e.to_string();
                prop_assert!(!msg.is_empty());
                prop_assert!(!msg.contains("SECRET"), "{}", msg);
            }
        }
        Ok(())
    }

    fn string_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "\"heart_rate\"",
                "\"respiratory_rate\"",
                "\"spo2\"",
                "\"systolic_bp\"",
                "\"diastolic_bp\"",
                "\"temperature\"",
                "\"supplemental_oxygen\"",
                "\"consciousness\"",
                "\"/min\"",
                "\"%\"",
                "\"mmHg\"",
                "\"Cel\"",
                "\"1\"",
                "\"PID-SECRET-1\"",
                "\"\"",
                "\"120\"",
                r#""\ud800""#,
                r#""P-\u0030001""#,
                r#""\uD83D\uDE00""#,
            ])
            .prop_map(String::from),
            "[!-~]{0,130}".prop_map(|s| lit(&s)),
            any::<String>().prop_map(|s| lit(&s)),
            // Raw, unescaped: may be invalid JSON on purpose.
            "\"[ -~]{0,12}\"",
            "\"(\\\\u[0-9a-fA-F]{4}|[a-z]){0,4}\"",
        ]
    }

    fn number_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            (-50.0..400.0f64).prop_map(|f| f.to_string()),
            (NOW - AGE - 10..NOW + 2 * SKEW).prop_map(|t| t.to_string()),
            prop::sample::select(vec![
                "0", "-0", "1", "0.5", "2", "300", "300.01", "25", "24.9", "45", "1e400", "-1e400",
                "NaN", "Infinity", "01", "1.", ".5", "+1", "1e", "0x10", "1_0",
            ])
            .prop_map(String::from),
        ]
    }

    fn json_key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "patientId", "metric", "value", "timestamp", "unit", "deviceId", "siteId",
            ])
            .prop_map(lit),
            1 => prop::sample::select(vec!["PatientId", "x", "", "patient\\u0049d", "value "])
                .prop_map(|k| format!("\"{k}\"")),
            1 => string_literal(),
        ]
    }

    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            number_literal(),
            string_literal(),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((json_key(), inner), 0..4).prop_map(|kv| {
                    let body: Vec<String> =
                        kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    /// Objects with the known keys and arbitrary values, sometimes mangled.
    fn json_object() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((json_key(), json_value()), 0..9),
            prop::sample::select(vec!["", "", "", " ", "x", "}", ",", "{}", "\n", "\u{0}"]),
            prop::sample::select(vec!["", "", "", " ", "\u{feff}", "[", "\t"]),
        )
            .prop_map(|(kv, suffix, prefix)| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{prefix}{{{}}}{suffix}", body.join(","))
            })
    }

    /// Objects that are valid or nearly: each field drawn from good and bad values.
    fn near_valid_object() -> impl Strategy<Value = String> {
        let patient = prop_oneof![
            3 => "[!-~]{1,128}".prop_map(|s| lit(&s)),
            1 => "PID-SECRET-[ -~\u{e9}]{0,4}".prop_map(|s| lit(&s)),
            1 => "P{129}".prop_map(|s| lit(&s)),
            1 => json_value(),
        ];
        let metric = prop_oneof![
            4 => prop::sample::select(Metric::ALL.to_vec()).prop_map(|m| lit(m.as_str())),
            1 => json_value(),
        ];
        let value = prop_oneof![
            4 => (-10.0..320.0f64).prop_map(|f| f.to_string()),
            1 => prop::sample::select(vec!["0", "1"]).prop_map(String::from),
            1 => json_value(),
        ];
        let timestamp = prop_oneof![
            4 => (NOW - AGE - 1000..NOW + SKEW + 1000).prop_map(|t| t.to_string()),
            1 => json_value(),
        ];
        let unit = prop::option::of(prop_oneof![
            prop::sample::select(vec![
                "\"/min\"", "\"%\"", "\"mmHg\"", "\"Cel\"", "\"1\"", "null"
            ])
            .prop_map(String::from),
            json_value(),
        ]);
        let extra = prop::collection::vec((json_key(), json_value()), 0..3);
        (
            patient,
            metric,
            value,
            timestamp,
            unit,
            extra,
            any::<bool>(),
            0..6usize,
        )
            .prop_map(|(p, m, v, t, u, extra, shuffle, drop)| {
                let mut fields = vec![
                    ("\"patientId\"".to_string(), p),
                    ("\"metric\"".to_string(), m),
                    ("\"value\"".to_string(), v),
                    ("\"timestamp\"".to_string(), t),
                ];
                if let Some(u) = u {
                    fields.push(("\"unit\"".to_string(), u));
                }
                fields.extend(extra);
                if drop < fields.len() && drop < 4 && shuffle {
                    fields.remove(drop);
                }
                if shuffle {
                    fields.reverse();
                }
                let body: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            })
    }

    /// Any observation the contract accepts.
    fn valid_observation() -> impl Strategy<Value = Observation<'static>> {
        (
            prop::sample::select(Metric::ALL.to_vec()),
            "[!-~]{1,128}",
            NOW - AGE..=NOW + SKEW,
            any::<bool>(),
            prop::option::of(any::<String>()),
            prop::option::of("\\PC{0,40}"),
        )
            .prop_flat_map(|(metric, patient, timestamp, unit, device, site)| {
                let (min, max) = metric.plausible_range();
                let value = if metric.is_binary() {
                    prop_oneof![Just(min), Just(max)].boxed()
                } else {
                    prop_oneof![
                        min..=max,
                        ((min * 1000.0) as i64..=(max * 1000.0) as i64)
                            .prop_map(|n| n as f64 / 1000.0),
                        Just(min),
                        Just(max),
                    ]
                    .boxed()
                };
                (
                    value,
                    Just((metric, patient, timestamp, unit, device, site)),
                )
            })
            .prop_map(
                |(value, (metric, patient, timestamp, unit, device, site))| Observation {
                    patient_id: Cow::Owned(patient),
                    metric,
                    value,
                    timestamp,
                    unit: unit.then_some(Cow::Borrowed(metric.unit())),
                    device_id: device.map(Cow::Owned),
                    site_id: site.map(Cow::Owned),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            check_outcome(&bytes, &limits())?;
            // A tiny limit sends some of them to too_large.
            check_outcome(&bytes, &DecodeLimits { max_message_bytes: 64, ..limits() })?;
        }

        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            check_outcome(s.as_bytes(), &limits())?;
        }

        #[test]
        fn never_panics_on_json_like_objects(s in json_object()) {
            check_outcome(s.as_bytes(), &limits())?;
        }

        #[test]
        fn never_panics_on_nearly_valid_objects(s in near_valid_object()) {
            check_outcome(s.as_bytes(), &limits())?;
        }

        #[test]
        fn valid_observations_survive_encode_then_decode(obs in valid_observation()) {
            let json = obs.to_json();
            let back = decode(&json, &limits(), NOW);
            prop_assert!(back.is_ok(), "{:?} from {}", back, String::from_utf8_lossy(&json));
            let back = back.unwrap();
            if exact_float_parsing() {
                prop_assert_eq!(&back, &obs);
            } else {
                let ulps = ulps_apart(back.value, obs.value);
                prop_assert!(ulps <= 1, "{} vs {}", back.value, obs.value);
                prop_assert_eq!(&back, &Observation { value: back.value, ..obs.clone() });
            }
            prop_assert_eq!(back.clone().into_owned(), back);
        }

        #[test]
        fn sensor_resolution_values_survive_bit_exact(
            metric in prop::sample::select(Metric::ALL.to_vec()),
            milli in 0..=300_000i64,
        ) {
            let (min, max) = metric.plausible_range();
            // What a sensor reports: a decimal with three places, nearest double; a code
            // is 0 or 1.
            let value = if metric.is_binary() {
                (milli % 2) as f64
            } else {
                (((min * 1000.0) as i64 + milli) as f64 / 1000.0).min(max)
            };
            let obs = Observation {
                patient_id: "P-1".into(),
                metric,
                value,
                timestamp: NOW,
                unit: None,
                device_id: None,
                site_id: None,
            };
            let json = obs.to_json();
            let back = decode(&json, &limits(), NOW).unwrap();
            prop_assert_eq!(back.value.to_bits(), value.to_bits());
        }

        #[test]
        fn unknown_fields_do_not_change_the_result(
            obs in valid_observation(),
            extra in prop::collection::vec(("x[a-zA-Z]{0,8}", json_value()), 0..4),
        ) {
            let json = String::from_utf8(obs.to_json()).unwrap();
            let plain = decode(json.as_bytes(), &limits(), NOW).unwrap();
            let mut padded = json.trim_end_matches('}').to_string();
            for (k, v) in &extra {
                padded.push_str(&format!(",{}:{v}", lit(k)));
            }
            padded.push('}');
            match decode(padded.as_bytes(), &limits(), NOW) {
                Ok(back) => prop_assert_eq!(back, plain),
                // Only a syntax error inside the extra field may change the outcome.
                Err(e) => prop_assert_eq!(e.reason(), "invalid_json"),
            }
        }

        #[test]
        fn values_outside_the_plausible_range_are_out_of_range(
            obs in valid_observation(),
            above in any::<bool>(),
            by in 1e-6..1e6f64,
        ) {
            let (min, max) = obs.metric.plausible_range();
            let value = if above { max + by } else { min - by };
            let json = Observation { value, ..obs.clone() }.to_json();
            prop_assert_eq!(
                decode(&json, &limits(), NOW).unwrap_err(),
                DecodeError::OutOfRange { metric: obs.metric }
            );
        }
    }
}
