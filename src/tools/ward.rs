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
//! - COPD patients ([`is_copd`]: P-000011, P-000051, P-000131, … every 40th from 11,
//!   leaving out the deteriorating ones; only when [`WardConfig::copd`] is on) are on
//!   NEWS2 SpO2 Scale 2: their SpO2 stays in their target range of 88–92 % on air
//!   ([`COPD_SPO2`]), which Scale 1 would flag; their other vitals are a stable
//!   patient's. Whoever runs the ward writes their Scale 2 context (the demo does).
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

/// Every this-many patients from [`COPD_FIRST`], one has COPD (unless deteriorating).
pub const COPD_EVERY: u32 = 40;
/// The first COPD patient's number.
pub const COPD_FIRST: u32 = 11;
/// The range a COPD patient's SpO2 stays in, on air: Scale 2's target, scoring 0 there.
pub const COPD_SPO2: (f64, f64) = (88.0, 92.0);

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
    /// Whether the [`is_copd`] patients have COPD (SpO2 88–92 %, for Scale 2); off, they
    /// are stable patients like the rest, and the traffic is what it was before COPD
    /// patients existed, byte for byte (loadgen and the bench keep it off).
    pub copd: bool,
}

/// A deterioration course, in the timestamps the caller passes to [`Ward::next`].
#[derive(Debug, Clone, Copy)]
pub struct Course {
    pub start_ms: i64,
    pub length_ms: i64,
}

impl WardConfig {
    /// The demo's ward: ~3% deteriorating patients over `course`, ~2.5% COPD patients,
    /// 0.5% malformed messages.
    pub fn demo(seed: u64, patients: u32, course: Course, too_large_bytes: usize) -> Self {
        WardConfig {
            seed,
            patients,
            course: Some(course),
            abnormal_ratio: 0.0,
            invalid_ratio: 0.005,
            too_large_bytes,
            copd: true,
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

/// A COPD patient's SpO2: baseline 89.5–90.5 %, drift ±1, noise ±0.5, so 88–92 %.
const COPD_SPO2_PROFILE: Profile = stable((89.5, 90.5), 1.0, 0.2, 0.5, 0);

const fn profile(metric: Metric) -> &'static Profile {
    &PROFILES[metric.index()]
}

/// How `metric` behaves for a stable patient, or a COPD patient when `copd`.
const fn profile_of(metric: Metric, copd: bool) -> &'static Profile {
    match metric {
        Metric::Spo2 if copd => &COPD_SPO2_PROFILE,
        _ => profile(metric),
    }
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
    copd: bool,
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

/// Whether patient number `n` (1-based) has COPD when [`WardConfig::copd`] is on: every
/// [`COPD_EVERY`]th from [`COPD_FIRST`], except the deteriorating ones (P-000091, …).
pub const fn is_copd(n: u32) -> bool {
    n % COPD_EVERY == COPD_FIRST % COPD_EVERY && !is_deteriorating(n)
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
                let copd = config.copd && is_copd(n);
                // One draw per metric whatever the patient: the same random sequence.
                let baseline = WARD_METRICS.map(|m| {
                    let (lo, hi) = match deterioration(m) {
                        Some((range, _)) if deteriorating => range,
                        _ => profile_of(m, copd).baseline,
                    };
                    rng.random_range(lo..=hi)
                });
                Patient {
                    id: patient_id(n),
                    deteriorating,
                    copd,
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

    /// Ids of the COPD patients (SpO2 88–92 % on air, for NEWS2 SpO2 Scale 2).
    pub fn copd(&self) -> impl Iterator<Item = &str> {
        self.patients
            .iter()
            .filter(|p| p.copd)
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
        let p = profile_of(metric, patient.copd);
        let i = metric.index();
        patient.drift[i] =
            (patient.drift[i] * 0.95 + step * p.drift_step).clamp(-p.drift_max, p.drift_max);
        let mut value = patient.baseline[i] + patient.drift[i] + noise * p.noise;
        if patient.deteriorating
            && let Some((_, worst)) = deterioration(metric)
        {
            value += worst * (progress / RAMP_SHARE).min(1.0);
        }
        if patient.copd && metric == Metric::Spo2 {
            value = value.clamp(COPD_SPO2.0, COPD_SPO2.1);
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

/// The patient-context record (`kafka.context_topic`, keyed by `patient`) that puts a
/// COPD patient on NEWS2 SpO2 Scale 2.
pub fn scale_2_context(patient: &str) -> Vec<u8> {
    format!(r#"{{"patientId":"{patient}","spo2Scale":2}}"#).into_bytes()
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

    /// FNV-1a over every message's key, payload and kind, `n` messages from `t0` at
    /// 2 000 messages/s.
    fn digest(mut w: Ward, n: i64, t0: i64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for i in 0..n {
            let m = w.next(t0 + i / 2);
            let kind = format!("{:?}", m.kind);
            for b in [m.key.as_bytes(), &m.payload, kind.as_bytes(), b"\n"]
                .into_iter()
                .flatten()
            {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    /// With `copd` off, the ward generates what it did before COPD patients existed, to
    /// the byte (digests of the generator before the change): loadgen's and the bench's
    /// traffic, which the tests and the benchmarks are calibrated on, is unchanged.
    #[test]
    fn traffic_without_copd_patients_is_unchanged() {
        let loadgen = Ward::new(WardConfig {
            seed: 7,
            patients: 1000,
            course: None,
            abnormal_ratio: 0.05,
            invalid_ratio: 0.01,
            too_large_bytes: 65_537,
            copd: false,
        });
        assert_eq!(digest(loadgen, 20_000, T0), 0x10f2_5355_ce22_176c);
        let demo = Ward::new(WardConfig {
            copd: false,
            ..WardConfig::demo(
                1,
                200,
                Course {
                    start_ms: T0,
                    length_ms: 10_000,
                },
                65_537,
            )
        });
        assert_eq!(digest(demo, 20_000, T0), 0x0dd9_dd63_7e52_32ec);
    }

    /// COPD patients: SpO2 always 88–92 %. Evaluated as the workers do (cooldown, NEWS2)
    /// under their Scale 2 context they raise nothing; on Scale 1 the same readings raise
    /// `spo2_low` and `news2_medium`. Nobody else changes.
    #[test]
    fn copd_patients_are_quiet_on_scale_2_and_alert_on_scale_1() {
        use std::collections::{BTreeMap, BTreeSet};
        use std::num::NonZeroUsize;
        use std::sync::Arc;
        use vitalwatch::rules::RuleSet;
        use vitalwatch::rules::state::{Evaluator, Reading, StateLimits};

        let rules = Arc::new(RuleSet::news2_red_flags());
        let limits = vitalwatch::settings::defaults().decode_limits();
        let state = StateLimits {
            ttl_ms: i64::MAX,
            capacity: NonZeroUsize::MAX,
        };
        for seed in 1..=4 {
            let course = Course {
                start_ms: T0,
                length_ms: 30_000,
            };
            let mut w = Ward::new(WardConfig::demo(seed, 200, course, 65_537));
            let copd: Vec<String> = w.copd().map(str::to_owned).collect();
            assert_eq!(copd, ["P-000011", "P-000051", "P-000131", "P-000171"]);
            let mut off = Ward::new(WardConfig {
                copd: false,
                ..WardConfig::demo(seed, 200, course, 65_537)
            });
            let (mut scale_2, mut scale_1) = (
                Evaluator::new(rules.clone(), state),
                Evaluator::new(rules.clone(), state),
            );
            for (i, id) in copd.iter().enumerate() {
                let value = scale_2_context(id);
                let (patient, context) = vitalwatch::rules::context::parse(
                    Some(id.as_bytes()),
                    Some(&value),
                    i as i64,
                    &rules,
                )
                .expect("a valid context");
                scale_2.set_context(&patient, 0, context);
            }
            let (mut raised_2, mut raised_1) = (BTreeMap::new(), BTreeMap::new());
            let mut events = Vec::new();
            for i in 0..60_000 {
                let now = T0 + i / 2;
                let (m, o) = (w.next(now), off.next(now));
                if !copd.contains(&m.key) {
                    assert_eq!(m, o, "only COPD patients differ");
                    continue;
                }
                let Ok(obs) = decode(&m.payload, &limits, now) else {
                    continue;
                };
                if obs.metric == Metric::Spo2 {
                    assert!((88.0..=92.0).contains(&obs.value), "{m:?}");
                }
                for (evaluator, raised) in
                    [(&mut scale_2, &mut raised_2), (&mut scale_1, &mut raised_1)]
                {
                    events.clear();
                    evaluator.observe(&obs.patient_id, Reading::of(&obs), (0, 0), now, &mut events);
                    for e in &events {
                        raised
                            .entry(m.key.clone())
                            .or_insert_with(BTreeSet::new)
                            .insert(rules.event_rule_id(e).to_owned());
                    }
                }
            }
            assert!(raised_2.is_empty(), "seed {seed}: {raised_2:?}");
            for id in &copd {
                let rules: Vec<&str> = raised_1[id].iter().map(String::as_str).collect();
                assert_eq!(rules, ["news2_medium", "spo2_low"], "seed {seed}, {id}");
            }
        }
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
