//! The ward simulator: plausible vital-sign series for a ward of patients, deterministic
//! from a seed, with no I/O.
//!
//! It is the one traffic generator of the project, with two front ends: the demo feeds
//! it wall-clock timestamps and lets a few patients deteriorate over the run; `loadgen`
//! feeds it synthetic timestamps and asks for random red-flag readings instead.
//!
//! - Messages go round-robin over patients, and each patient's messages go round-robin
//!   over the six measured metrics ([`WARD_METRICS`]), so every patient is observed on
//!   each of them at the same pace.
//! - Each patient has a baseline per metric, drawn once from the seed, and drifts around
//!   it (a bounded, mean-reverting walk) with a little measurement noise. Stable
//!   patients stay well inside the normal NEWS2 bands: they never cross a red flag.
//! - Deteriorating patients ([`is_deteriorating`]: P-000001, P-000031, P-000061, … that
//!   is every 30th patient, ~3%) start a little tachycardic and tachypnoeic, then over the
//!   first two thirds of the course their pulse and respiratory rate rise and their SpO2
//!   falls, linearly, to clearly beyond the red flags `heart_rate_high`,
//!   `respiratory_rate_high` and `spo2_low`; they stay there for the last third.
//! - A share of messages is malformed, cycling through every DLQ reason code in the
//!   order of [`DecodeError::REASONS`](vitalwatch::vitals::DecodeError::REASONS), each the
//!   kind of mistake a real feed makes (°F sent as °C, seconds instead of milliseconds,
//!   a Latin-1 site name, a truncated message, …).

use std::borrow::Cow;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use vitalwatch::vitals::{DecodeError, Metric, Observation};

/// The metrics the simulated monitors report, in [`Metric::index`] order: the six
/// measured vital signs. Consciousness and supplemental oxygen are bedside assessments,
/// not monitor readings; leaving them out also keeps the traffic that the tests and the
/// benchmarks are calibrated on unchanged, byte for byte.
pub const WARD_METRICS: [Metric; 6] = [
    Metric::HeartRate,
    Metric::RespiratoryRate,
    Metric::Spo2,
    Metric::SystolicBp,
    Metric::DiastolicBp,
    Metric::Temperature,
];

// `PROFILES` and a patient's series are indexed by `Metric::index`, so the ward's metrics
// must be the first ones of `Metric::ALL`, in order.
const _: () = {
    let mut i = 0;
    while i < WARD_METRICS.len() {
        assert!(WARD_METRICS[i].index() == i);
        i += 1;
    }
};

/// Every this-many patients, one deteriorates (patient numbers 1, 1 + N, 1 + 2N, …).
pub const DETERIORATION_EVERY: u32 = 30;

/// Share of the course over which a deteriorating patient's vitals ramp to their worst.
const RAMP_SHARE: f64 = 2.0 / 3.0;

/// What the simulation should look like.
#[derive(Debug, Clone)]
pub struct WardConfig {
    pub seed: u64,
    /// Patients on the ward, numbered from 1 (P-000001).
    pub patients: u32,
    /// The time over which deteriorating patients get worse; `None`: nobody does.
    pub course: Option<Course>,
    /// Share of valid observations replaced by a reading that breaches a NEWS2 red flag.
    pub abnormal_ratio: f64,
    /// Share of messages that are malformed (one DLQ reason after the other).
    pub invalid_ratio: f64,
    /// Size of the `too_large` messages: make it exceed `pipeline.max_message_bytes`.
    pub too_large_bytes: usize,
}

/// A deterioration course, in the timestamps the caller passes to [`Ward::next`].
#[derive(Debug, Clone, Copy)]
pub struct Course {
    pub start_ms: i64,
    pub length_ms: i64,
}

impl WardConfig {
    /// The demo's ward: ~3% deteriorating patients over `course`, 0.5% malformed messages.
    pub fn demo(seed: u64, patients: u32, course: Course, too_large_bytes: usize) -> Self {
        WardConfig {
            seed,
            patients,
            course: Some(course),
            abnormal_ratio: 0.0,
            invalid_ratio: 0.005,
            too_large_bytes,
        }
    }
}

/// Why a message was generated the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A reading from the patient's own series (may breach a red flag if deteriorating).
    Normal,
    /// A red-flag reading injected by `abnormal_ratio`.
    Abnormal,
    /// A malformed message the pipeline must dead-letter with this reason code.
    Invalid(&'static str),
}

/// One message for the input topic: key = patient id.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub key: String,
    pub payload: Vec<u8>,
    pub kind: Kind,
}

/// How one metric behaves for a stable patient. The bounds keep every stable reading at
/// least a few units inside the red-flag thresholds (see the module docs).
struct Profile {
    /// Range the patient's baseline is drawn from.
    baseline: (f64, f64),
    /// Bound of the mean-reverting drift around the baseline.
    drift_max: f64,
    /// Largest drift change per reading.
    drift_step: f64,
    /// Measurement noise amplitude.
    noise: f64,
    /// Decimals the monitor reports.
    decimals: i32,
}

const fn stable(
    baseline: (f64, f64),
    drift_max: f64,
    drift_step: f64,
    noise: f64,
    decimals: i32,
) -> Profile {
    Profile {
        baseline,
        drift_max,
        drift_step,
        noise,
        decimals,
    }
}

/// Indexed by [`Metric::index`], one per [`WARD_METRICS`].
const PROFILES: [Profile; WARD_METRICS.len()] = [
    stable((62.0, 88.0), 8.0, 1.0, 2.0, 0), // heart_rate: 52–98 /min (flags < 41, > 130)
    stable((13.0, 18.0), 2.0, 0.3, 1.0, 0), // respiratory_rate: 10–21 /min (< 9, > 24)
    stable((95.0, 99.0), 1.5, 0.2, 0.5, 0), // spo2: 93–100 % (< 92)
    stable((108.0, 138.0), 10.0, 1.0, 4.0, 0), // systolic_bp: 94–152 mmHg (< 91, > 219)
    stable((64.0, 86.0), 6.0, 0.8, 3.0, 0), // diastolic_bp: 55–95 mmHg (no flag)
    stable((36.4, 37.2), 0.4, 0.05, 0.1, 1), // temperature: 35.9–37.7 °C (< 35.1, > 39.0)
];

const fn profile(metric: Metric) -> &'static Profile {
    &PROFILES[metric.index()]
}

/// A deteriorating patient's admission baseline range and total change at the worst,
/// for the metrics that deteriorate.
fn deterioration(metric: Metric) -> Option<((f64, f64), f64)> {
    match metric {
        // NEWS2 score 1 on admission (91–110), ≥ 140 at the worst (red flag: ≥ 131).
        Metric::HeartRate => Some(((95.0, 105.0), 55.0)),
        // Upper normal on admission (≤ 23 with drift and noise), ≥ 29 at the worst
        // (red flag: ≥ 25).
        Metric::RespiratoryRate => Some(((19.0, 20.0), 13.0)),
        // Score 1 on admission (94–95), ≤ 87 at the worst (red flag: ≤ 91).
        Metric::Spo2 => Some(((94.5, 95.0), -10.0)),
        _ => None,
    }
}

/// The red-flag readings `abnormal_ratio` injects, one after the other.
const RED_FLAGS: [(Metric, f64); 9] = [
    (Metric::HeartRate, 142.0),
    (Metric::Spo2, 88.0),
    (Metric::RespiratoryRate, 28.0),
    (Metric::SystolicBp, 84.0),
    (Metric::Temperature, 39.6),
    (Metric::HeartRate, 36.0),
    (Metric::RespiratoryRate, 7.0),
    (Metric::SystolicBp, 228.0),
    (Metric::Temperature, 34.6),
];

struct Patient {
    id: String,
    deteriorating: bool,
    baseline: [f64; WARD_METRICS.len()],
    drift: [f64; WARD_METRICS.len()],
}

/// The simulated ward. Same config, same sequence of `now_ms` → same messages.
pub struct Ward {
    config: WardConfig,
    rng: ChaCha8Rng,
    patients: Vec<Patient>,
    /// Messages generated so far.
    seq: u64,
    invalid_sent: u64,
    abnormal_sent: u64,
}

/// The id of patient number `n` (1-based): `P-000001`.
pub fn patient_id(n: u32) -> String {
    format!("P-{n:06}")
}

/// Whether patient number `n` (1-based) deteriorates during a course.
pub const fn is_deteriorating(n: u32) -> bool {
    n % DETERIORATION_EVERY == 1
}

impl Ward {
    pub fn new(mut config: WardConfig) -> Ward {
        config.patients = config.patients.max(1);
        config.abnormal_ratio = clamp_ratio(config.abnormal_ratio);
        config.invalid_ratio = clamp_ratio(config.invalid_ratio);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let patients = (1..=config.patients)
            .map(|n| {
                let deteriorating = config.course.is_some() && is_deteriorating(n);
                let baseline = WARD_METRICS.map(|m| {
                    let (lo, hi) = match deterioration(m) {
                        Some((range, _)) if deteriorating => range,
                        _ => profile(m).baseline,
                    };
                    rng.random_range(lo..=hi)
                });
                Patient {
                    id: patient_id(n),
                    deteriorating,
                    baseline,
                    drift: [0.0; WARD_METRICS.len()],
                }
            })
            .collect();
        Ward {
            config,
            rng,
            patients,
            seq: 0,
            invalid_sent: 0,
            abnormal_sent: 0,
        }
    }

    /// Ids of the patients who deteriorate over the course.
    pub fn deteriorating(&self) -> impl Iterator<Item = &str> {
        self.patients
            .iter()
            .filter(|p| p.deteriorating)
            .map(|p| p.id.as_str())
    }

    pub fn patients(&self) -> u32 {
        self.config.patients
    }

    /// The next message; `now_ms` is its observation timestamp (Unix epoch ms).
    pub fn next(&mut self, now_ms: i64) -> Msg {
        let n = self.patients.len() as u64;
        let index = (self.seq % n) as usize;
        let metric = WARD_METRICS[((self.seq / n) % WARD_METRICS.len() as u64) as usize];
        self.seq += 1;

        // Draw every random number each time, whatever the message becomes, so that
        // changing one ratio does not reshuffle the rest of the series.
        let step: f64 = self.rng.random_range(-1.0..=1.0);
        let noise: f64 = self.rng.random_range(-1.0..=1.0);
        let invalid = self.rng.random_bool(self.config.invalid_ratio);
        let abnormal = self.rng.random_bool(self.config.abnormal_ratio);

        let progress = self.progress(now_ms);
        let patient = &mut self.patients[index];
        let p = profile(metric);
        let i = metric.index();
        patient.drift[i] =
            (patient.drift[i] * 0.95 + step * p.drift_step).clamp(-p.drift_max, p.drift_max);
        let mut value = patient.baseline[i] + patient.drift[i] + noise * p.noise;
        if patient.deteriorating
            && let Some((_, worst)) = deterioration(metric)
        {
            value += worst * (progress / RAMP_SHARE).min(1.0);
        }
        let (lo, hi) = metric.plausible_range();
        let value = round(value.clamp(lo, hi), p.decimals);
        let key = patient.id.clone();

        if invalid {
            let reason = DecodeError::REASONS
                [(self.invalid_sent % DecodeError::REASONS.len() as u64) as usize];
            self.invalid_sent += 1;
            let payload = malformed(reason, &key, now_ms, self.config.too_large_bytes);
            return Msg {
                key,
                payload,
                kind: Kind::Invalid(reason),
            };
        }
        let (metric, value, kind) = if abnormal {
            let (m, v) = RED_FLAGS[(self.abnormal_sent % RED_FLAGS.len() as u64) as usize];
            self.abnormal_sent += 1;
            (m, v, Kind::Abnormal)
        } else {
            (metric, value, Kind::Normal)
        };
        let payload = observation(&key, metric, value, now_ms).to_json();
        Msg { key, payload, kind }
    }

    /// How far into the course `now_ms` is, in [0, 1].
    fn progress(&self, now_ms: i64) -> f64 {
        match self.config.course {
            Some(c) if c.length_ms > 0 => {
                ((now_ms - c.start_ms) as f64 / c.length_ms as f64).clamp(0.0, 1.0)
            }
            Some(_) => 1.0,
            None => 0.0,
        }
    }
}

fn clamp_ratio(r: f64) -> f64 {
    if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn observation(patient: &str, metric: Metric, value: f64, ts: i64) -> Observation<'_> {
    Observation {
        patient_id: Cow::Borrowed(patient),
        metric,
        value,
        timestamp: ts,
        unit: Some(Cow::Borrowed(metric.unit())),
        device_id: None,
        site_id: None,
    }
}

/// A malformed message of the given DLQ reason (one of [`DecodeError::REASONS`]), shaped
/// like a real feed's mistake; a `too_large` one is `too_large_bytes` long. The ward,
/// loadgen and the tests draw their malformed input from here.
pub fn malformed(reason: &str, patient: &str, ts: i64, too_large_bytes: usize) -> Vec<u8> {
    let head = format!(r#"{{"patientId":"{patient}","metric":"#);
    match reason {
        "too_large" => {
            // A monitor that attaches its raw waveform to every reading.
            let mut v = format!(r#"{head}"heart_rate","value":80.0,"timestamp":{ts},"waveform":""#)
                .into_bytes();
            let fill = too_large_bytes.saturating_sub(v.len() + 2).max(1);
            v.resize(v.len() + fill, b'A');
            v.extend_from_slice(b"\"}");
            v
        }
        "not_utf8" => {
            // A site name in Latin-1: "Station Müller" with ü as the single byte 0xFC.
            let mut v =
                format!(r#"{head}"spo2","value":97.0,"timestamp":{ts},"siteId":"Station M"#)
                    .into_bytes();
            v.push(0xFC);
            v.extend_from_slice(b"ller\"}");
            v
        }
        "invalid_json" => {
            // Cut off mid-message.
            let full = observation(patient, Metric::HeartRate, 80.0, ts).to_json();
            full[..full.len() / 2].to_vec()
        }
        "missing_field" => format!(r#"{head}"spo2","timestamp":{ts}}}"#).into_bytes(),
        "wrong_type" => {
            format!(r#"{head}"heart_rate","value":"80","timestamp":{ts}}}"#).into_bytes()
        }
        "unknown_metric" => {
            format!(r#"{head}"blood_glucose","value":5.4,"timestamp":{ts}}}"#).into_bytes()
        }
        // Fahrenheit sent as Celsius.
        "out_of_range" => {
            format!(r#"{head}"temperature","value":98.6,"timestamp":{ts}}}"#).into_bytes()
        }
        // Seconds instead of milliseconds: a date in 1970.
        "bad_timestamp" => {
            format!(r#"{head}"spo2","value":97.0,"timestamp":{}}}"#, ts / 1000).into_bytes()
        }
        "bad_patient_id" => {
            let spaced = patient.replacen('-', " ", 1);
            format!(r#"{{"patientId":"{spaced}","metric":"spo2","value":97.0,"timestamp":{ts}}}"#)
                .into_bytes()
        }
        // A device that uploads its memory after days offline: a reading from three days ago.
        "stale" => observation(patient, Metric::Spo2, 88.0, ts - 3 * 86_400_000).to_json(),
        // "bad_unit": the unit field says Fahrenheit although the value is Celsius.
        _ => format!(r#"{head}"temperature","value":37.2,"unit":"[degF]","timestamp":{ts}}}"#)
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch::vitals::decode;

    const T0: i64 = 1_763_798_400_000;

    fn ward(seed: u64) -> Ward {
        Ward::new(WardConfig {
            invalid_ratio: 0.05,
            abnormal_ratio: 0.1,
            ..WardConfig::demo(
                seed,
                50,
                Course {
                    start_ms: T0,
                    length_ms: 10_000,
                },
                70_000,
            )
        })
    }

    #[test]
    fn same_seed_same_messages_other_seed_other_messages() {
        let (mut a, mut b, mut c) = (ward(7), ward(7), ward(8));
        let mut differ = false;
        for i in 0..5_000 {
            let (x, y, z) = (a.next(T0 + i), b.next(T0 + i), c.next(T0 + i));
            assert_eq!(x, y);
            differ |= x != z;
        }
        assert!(differ);
    }

    #[test]
    fn malformed_messages_carry_the_reason_they_claim() {
        let limits = vitalwatch::settings::defaults().decode_limits();
        for reason in DecodeError::REASONS {
            let payload = malformed(reason, "P-000001", T0, limits.max_message_bytes + 1);
            let err = decode(&payload, &limits, T0).expect_err(reason);
            assert_eq!(err.reason(), reason);
        }
    }

    #[test]
    fn round_robin_covers_every_patient_and_metric() {
        let mut w = Ward::new(WardConfig {
            invalid_ratio: 0.0,
            ..WardConfig::demo(
                1,
                4,
                Course {
                    start_ms: T0,
                    length_ms: 1,
                },
                70_000,
            )
        });
        let limits = vitalwatch::settings::defaults().decode_limits();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..24 {
            let m = w.next(T0);
            let obs = decode(&m.payload, &limits, T0).unwrap();
            assert_eq!(obs.patient_id, m.key.as_str());
            seen.insert((m.key.clone(), obs.metric));
        }
        assert_eq!(seen.len(), 24);
    }
}
