//! Test traffic: deterministic observations over a set of patients, and malformed
//! messages one dead-letter reason after the other. The malformed messages are the ward
//! simulator's ([`vitalwatch::tools::ward::malformed`]), the same the demo and loadgen
//! send.

use vitalwatch::tools::ward;
use vitalwatch::vitals::{DecodeError, DecodeLimits, Metric};

/// The size limit pipelines run with in the tests: the mock broker stalls fetches of
/// many 64 KiB+ messages (real brokers do not), so `too_large` is tested at 4 KiB.
pub const TEST_MAX_BYTES: usize = 4096;

pub fn test_limits() -> DecodeLimits {
    DecodeLimits {
        max_message_bytes: TEST_MAX_BYTES,
        ..vitalwatch::settings::defaults().decode_limits()
    }
}

/// The `k`th malformed message, cycling through every DLQ reason code in
/// [`DecodeError::REASONS`] order; `too_large` is one byte over [`TEST_MAX_BYTES`].
pub fn invalid_payload(k: usize, patient: &str, now: i64) -> Vec<u8> {
    let reason = DecodeError::REASONS[k % DecodeError::REASONS.len()];
    ward::malformed(reason, patient, now, TEST_MAX_BYTES + 1)
}

/// Deterministic traffic: `n` messages over `patients` patients; every 10th valid message
/// breaches a NEWS2 red flag, every `invalid_every`th is malformed ([`invalid_payload`]).
pub fn traffic(n: usize, patients: usize, invalid_every: usize) -> Vec<(String, Vec<u8>)> {
    let now = vitalwatch::clock::now_ms();
    let mut out = Vec::with_capacity(n);
    let mut bad = 0usize;
    for i in 0..n {
        let patient = format!("P-{:06}", i % patients);
        if invalid_every > 0 && i % invalid_every == invalid_every - 1 {
            out.push((patient.clone(), invalid_payload(bad, &patient, now)));
            bad += 1;
            continue;
        }
        let (metric, value) = match (i % 6, i % 10 == 3) {
            (0, false) => ("heart_rate", 72.0 + (i % 20) as f64),
            (0, true) => ("heart_rate", 140.0),
            (1, false) => ("spo2", 97.0),
            (1, true) => ("spo2", 88.0),
            (2, false) => ("respiratory_rate", 16.0),
            (2, true) => ("respiratory_rate", 28.0),
            (3, false) => ("systolic_bp", 120.0),
            (3, true) => ("systolic_bp", 85.0),
            (4, false) => ("temperature", 37.0),
            (4, true) => ("temperature", 39.5),
            (_, false) => ("diastolic_bp", 80.0),
            (_, true) => ("heart_rate", 35.0),
        };
        out.push((
            patient.clone(),
            observation(&patient, metric, value, now - 60_000 + i as i64),
        ));
    }
    out
}

/// One observation as a feed sends it (`value` as written: `97`, `36.7113`).
pub fn observation(
    patient: &str,
    metric: &str,
    value: impl std::fmt::Display,
    timestamp: i64,
) -> Vec<u8> {
    format!(
        r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{timestamp}}}"#
    )
    .into_bytes()
}

/// A complete NEWS2 chart in two phases, for the tests that follow one patient's readings
/// across partitions: five parameters scoring 1 each and an alert patient (aggregate 5,
/// `news2_medium`) ...
pub const CHART_SCORING_5: [(Metric, f64); 6] = [
    (Metric::RespiratoryRate, 10.0),
    (Metric::Spo2, 95.0),
    (Metric::SystolicBp, 105.0),
    (Metric::HeartRate, 95.0),
    (Metric::Temperature, 38.5),
    (Metric::Consciousness, 0.0),
];
/// ... then supplemental oxygen (2), making 7 (`news2_high`).
pub const CHART_OXYGEN: [(Metric, f64); 1] = [(Metric::SupplementalOxygen, 1.0)];
