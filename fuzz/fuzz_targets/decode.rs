//! Fuzzes `vitals::decode`, the first code every consumed message meets, with arbitrary
//! bytes. Beyond "no panic" it checks the decoder's contract: what it accepts is a valid
//! observation that re-encodes to itself, and what it rejects has a DLQ reason code and a
//! message that does not echo the payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;

// The decoder's own source file, compiled into this crate instead of linking the whole
// vitalwatch crate (see Cargo.toml). The target uses only part of its API.
#[allow(dead_code)]
#[path = "../../src/vitals.rs"]
mod vitals;

use vitals::{
    DecodeError, DecodeLimits, MAX_PATIENT_ID_BYTES, MIN_TIMESTAMP_MS, Observation, decode,
};

/// 2025-11-22T08:00:00Z: a fixed wall clock, so that a crash reproduces.
const NOW: i64 = 1_763_798_400_000;

/// The seed corpus and the dictionary spell patient ids and other strings with this
/// word, and no error message template contains it: a message that does echoes the payload.
const SECRET: &str = "SECRET";

/// The limits the service ships with (`config/default.toml`: 64 KiB, five minutes of
/// clock skew, a day of age): the fuzzer's fixed choice, written here because this
/// crate does not read the service's configuration.
const LIMITS: DecodeLimits = DecodeLimits {
    max_message_bytes: 65_536,
    max_future_skew_ms: 300_000,
    max_age_ms: 86_400_000,
};

fuzz_target!(|payload: &[u8]| {
    let limits = LIMITS;
    match decode(payload, &limits, NOW) {
        Ok(obs) => check_accepted(payload, &limits, &obs),
        Err(e) => check_rejected(payload, &limits, &e),
    }
});

fn check_accepted(payload: &[u8], limits: &DecodeLimits, obs: &Observation<'_>) {
    assert!(payload.len() <= limits.max_message_bytes);
    assert!(std::str::from_utf8(payload).is_ok());

    let id = obs.patient_id.as_ref();
    assert!((1..=MAX_PATIENT_ID_BYTES).contains(&id.len()), "{id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id:?}");

    let (min, max) = obs.metric.plausible_range();
    assert!(obs.value.is_finite(), "{obs:?}");
    assert!(min <= obs.value && obs.value <= max, "{obs:?}");
    if obs.metric.is_binary() {
        assert!(obs.value == 0.0 || obs.value == 1.0, "{obs:?}");
    }
    assert!(obs.metric.accepts(obs.value), "{obs:?}");

    let latest = NOW + limits.max_future_skew_ms;
    let earliest = MIN_TIMESTAMP_MS.max(NOW - limits.max_age_ms);
    assert!((earliest..=latest).contains(&obs.timestamp), "{obs:?}");
    if let Some(unit) = &obs.unit {
        assert_eq!(unit.as_ref(), obs.metric.unit());
    }

    check_against_tree(payload, obs);

    // Round trip: the wire encoding of what was accepted decodes to the same observation.
    // Re-encoding may add a few bytes (`1` becomes `1.0`), so the size limit is lifted.
    let again = obs.to_json();
    assert!(!again.is_empty());
    let roomy = DecodeLimits {
        max_message_bytes: usize::MAX,
        ..*limits
    };
    match decode(&again, &roomy, NOW) {
        Ok(back) => assert_eq!(&back, obs),
        Err(e) => panic!(
            "re-encoded observation rejected ({}): {e}\n{}",
            e.reason(),
            String::from_utf8_lossy(&again)
        ),
    }
}

/// The known fields as serde_json's own `Value` tree reads them. Unknown fields are
/// skipped, as the decoder skips them (serde_json's skip path neither limits nesting nor
/// checks `\u` escapes for lone surrogates; the tree would reject both).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Known {
    patient_id: Option<Value>,
    metric: Option<Value>,
    value: Option<Value>,
    timestamp: Option<Value>,
    unit: Option<Value>,
    device_id: Option<Value>,
    site_id: Option<Value>,
}

/// A second, independent reading of the same bytes must agree with every field the
/// decoder returned.
fn check_against_tree(payload: &[u8], obs: &Observation<'_>) {
    let known: Known = match serde_json::from_slice(payload) {
        Ok(known) => known,
        Err(e) => panic!("accepted payload is no JSON object for serde_json: {e}"),
    };
    let str_of = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_owned);
    assert_eq!(
        str_of(&known.patient_id).as_deref(),
        Some(obs.patient_id.as_ref())
    );
    assert_eq!(str_of(&known.metric).as_deref(), Some(obs.metric.as_str()));
    assert_eq!(
        known.value.as_ref().and_then(Value::as_f64),
        Some(obs.value)
    );
    assert_eq!(
        known.timestamp.as_ref().and_then(Value::as_i64),
        Some(obs.timestamp)
    );
    for (key, in_tree, decoded) in [
        ("unit", &known.unit, &obs.unit),
        ("deviceId", &known.device_id, &obs.device_id),
        ("siteId", &known.site_id, &obs.site_id),
    ] {
        // An optional field given as null counts as absent.
        let in_tree = in_tree.as_ref().filter(|v| !v.is_null());
        assert_eq!(in_tree.and_then(Value::as_str), decoded.as_deref(), "{key}");
        assert_eq!(in_tree.is_some(), decoded.is_some(), "{key}");
    }
}

fn check_rejected(payload: &[u8], limits: &DecodeLimits, e: &DecodeError) {
    assert!(DecodeError::REASONS.contains(&e.reason()), "{e:?}");
    // The checks run in a fixed order: size, then UTF-8, then everything else.
    let expected_first = if payload.len() > limits.max_message_bytes {
        Some("too_large")
    } else if std::str::from_utf8(payload).is_err() {
        Some("not_utf8")
    } else {
        None
    };
    if let Some(reason) = expected_first {
        assert_eq!(e.reason(), reason, "{e}");
    } else {
        assert!(!matches!(e.reason(), "too_large" | "not_utf8"), "{e}");
    }

    let message = e.to_string();
    assert!(!message.is_empty(), "{e:?}");
    assert!(
        !message.contains(SECRET),
        "message echoes the payload: {message}"
    );
}
