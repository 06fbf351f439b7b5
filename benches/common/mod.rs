//! What the benchmarks share: the deterministic message mix and a timing helper.
//!
//! The mix is a realistic one, generated the same way every run (same bytes): ~90% normal
//! readings, ~7% abnormal readings that breach one NEWS2 red flag, ~3% invalid messages
//! spread over the DLQ reason codes. Each message is keyed by its patient id, as a
//! producer keys it.
//!
//! Each bench binary includes this module with `mod common;` and uses a different part
//! of it; what one binary does not use is not dead code.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Throughput};
use vitalwatch::rules::RuleSet;
use vitalwatch::tools::ward::WARD_METRICS;
use vitalwatch::vitals::{DecodeLimits, Metric, Observation, decode};

/// The wall clock the decoder compares timestamps with.
pub const NOW: i64 = 1_763_798_400_000;
pub const MESSAGES: usize = 10_000;
pub const PATIENTS: u64 = 1_000;

/// Knuth's MMIX LCG; the high bits are good enough to pick test data.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [lo, hi], rounded to `places` decimals as a monitor reports it.
    fn reading(&mut self, lo: f64, hi: f64, places: i32) -> f64 {
        let scale = 10f64.powi(places);
        let steps = ((hi - lo) * scale).round() as u64;
        ((lo * scale).round() + self.below(steps + 1) as f64) / scale
    }
}

/// Normal adult ranges (NEWS2 score 0 or 1).
fn normal(metric: Metric, rng: &mut Lcg) -> f64 {
    match metric {
        Metric::HeartRate => rng.reading(55.0, 105.0, 0),
        Metric::RespiratoryRate => rng.reading(12.0, 20.0, 0),
        Metric::Spo2 => rng.reading(94.0, 100.0, 0),
        Metric::SystolicBp => rng.reading(105.0, 150.0, 0),
        Metric::DiastolicBp => rng.reading(60.0, 95.0, 0),
        Metric::Temperature => rng.reading(36.1, 38.0, 1),
        // Breathing air, alert. Not in the mix (it draws from `WARD_METRICS`).
        Metric::SupplementalOxygen | Metric::Consciousness => 0.0,
    }
}

/// A reading in the score-3 band of one NEWS2 parameter (fires exactly one shipped rule).
fn abnormal(rng: &mut Lcg) -> (Metric, f64) {
    match rng.below(9) {
        0 => (Metric::RespiratoryRate, rng.reading(4.0, 8.0, 0)),
        1 => (Metric::RespiratoryRate, rng.reading(25.0, 40.0, 0)),
        2 => (Metric::Spo2, rng.reading(80.0, 91.0, 0)),
        3 => (Metric::SystolicBp, rng.reading(60.0, 90.0, 0)),
        4 => (Metric::SystolicBp, rng.reading(220.0, 240.0, 0)),
        5 => (Metric::HeartRate, rng.reading(30.0, 40.0, 0)),
        6 => (Metric::HeartRate, rng.reading(131.0, 170.0, 0)),
        7 => (Metric::Temperature, rng.reading(33.0, 35.0, 1)),
        _ => (Metric::Temperature, rng.reading(39.1, 41.0, 1)),
    }
}

fn observation(rng: &mut Lcg, metric: Metric, value: f64) -> Observation<'static> {
    let patient = rng.below(PATIENTS);
    let with_unit = rng.below(2) == 0;
    Observation {
        patient_id: format!("P-{patient:06}").into(),
        metric,
        value,
        timestamp: NOW - rng.below(60_000) as i64,
        unit: with_unit.then_some(metric.unit().into()),
        device_id: with_unit.then(|| format!("mon-{:03}", patient % 97).into()),
        site_id: None,
    }
}

/// One malformed message per DLQ reason, in turn, with the patient id it is keyed by.
fn invalid(n: usize, rng: &mut Lcg) -> Message {
    let mut obs = observation(rng, Metric::HeartRate, 80.0);
    obs.unit = None;
    let good = String::from_utf8(obs.to_json()).unwrap();
    let text = match n % 10 {
        0 => good[..good.len() / 2].to_owned(),
        1 => good.replace("\"metric\":\"heart_rate\",", ""),
        2 => good.replace("\"value\":80.0", "\"value\":\"80\""),
        3 => good.replace("heart_rate", "pulse"),
        4 => good.replace("\"value\":80.0", "\"value\":800.0"),
        5 => good.replace("\"timestamp\":17", "\"timestamp\":"),
        6 => good.replace("P-", "P "),
        7 => good.replace("\"value\":80.0", "\"value\":80.0,\"unit\":\"bpm\""),
        8 => return Message::new(&obs, [good.as_bytes(), &[0xff]].concat()),
        _ => format!(
            "{good}{}",
            " ".repeat(limits_default_max() + 1 - good.len())
        ),
    };
    Message::new(&obs, text.into_bytes())
}

fn limits_default_max() -> usize {
    vitalwatch::settings::defaults()
        .decode_limits()
        .max_message_bytes
}

/// One input message: key (the patient id) and value.
pub struct Message {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Message {
    fn new(obs: &Observation<'_>, payload: Vec<u8>) -> Message {
        Message {
            key: obs.patient_id.as_bytes().to_vec(),
            payload,
        }
    }

    fn valid(obs: &Observation<'_>) -> Message {
        Self::new(obs, obs.to_json())
    }
}

pub struct Workload {
    pub messages: Vec<Message>,
    /// The valid messages, decoded.
    pub decoded: Vec<Observation<'static>>,
    /// Messages that fire exactly one shipped rule.
    pub firing: usize,
    /// Messages the decoder rejects.
    pub invalid: usize,
}

impl Workload {
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.messages.iter().map(|m| m.payload.as_slice())
    }
}

/// [`MESSAGES`] messages of the mix, checked to be what the numbers claim to measure.
pub fn workload(rules: &RuleSet, limits: &DecodeLimits) -> Workload {
    let mut rng = Lcg(0x5eed);
    let mut messages = Vec::with_capacity(MESSAGES);
    let (mut invalid_n, mut abnormal_n) = (0, 0);
    for _ in 0..MESSAGES {
        let roll = rng.below(1000);
        let message = if roll < 30 {
            invalid_n += 1;
            invalid(invalid_n, &mut rng)
        } else if roll < 100 {
            abnormal_n += 1;
            let (metric, value) = abnormal(&mut rng);
            Message::valid(&observation(&mut rng, metric, value))
        } else {
            // The measured metrics only, so that the mix stays what the recorded numbers
            // were measured on.
            let metric = WARD_METRICS[rng.below(WARD_METRICS.len() as u64) as usize];
            let value = normal(metric, &mut rng);
            Message::valid(&observation(&mut rng, metric, value))
        };
        messages.push(message);
    }

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut decoded = Vec::new();
    for m in &messages {
        match decode(&m.payload, limits, NOW) {
            Ok(obs) => {
                let fired = rules.evaluate(&obs).count();
                assert!(fired <= 1);
                *outcomes
                    .entry(if fired == 1 { "alert" } else { "normal" })
                    .or_default() += 1;
                decoded.push(obs.into_owned());
            }
            Err(e) => *outcomes.entry(e.reason()).or_default() += 1,
        }
    }
    assert_eq!(outcomes["alert"], abnormal_n);
    assert_eq!(MESSAGES - decoded.len(), invalid_n);
    assert_eq!(
        outcomes.len(),
        2 + 10,
        "every DLQ reason occurs: {outcomes:?}"
    );
    println!(
        "workload: {MESSAGES} messages, {} normal, {abnormal_n} firing a rule, \
         {invalid_n} invalid {:?}",
        outcomes["normal"],
        outcomes
            .iter()
            .filter(|(k, _)| !matches!(**k, "alert" | "normal"))
            .collect::<BTreeMap<_, _>>()
    );
    Workload {
        messages,
        decoded,
        firing: abnormal_n,
        invalid: invalid_n,
    }
}

/// Times `pass` (one pass over `per_pass` messages) in `group` and keeps the totals, so
/// the mean ns per message can be printed after criterion's own report. Returns that mean
/// (warm-up included), or `None` when criterion ran nothing (a filter excluded it).
pub fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    per_pass: usize,
    mut pass: impl FnMut() -> usize,
) -> Option<f64> {
    let total_time = Cell::new(Duration::ZERO);
    let total_messages = Cell::new(0u64);
    group.throughput(Throughput::Elements(per_pass as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(pass());
            }
            let elapsed = start.elapsed();
            total_time.set(total_time.get() + elapsed);
            total_messages.set(total_messages.get() + iters * per_pass as u64);
            elapsed
        })
    });
    if total_messages.get() == 0 {
        return None;
    }
    let ns = total_time.get().as_nanos() as f64 / total_messages.get() as f64;
    println!(
        "{name}: {ns:.1} ns/message (mean over {} messages, warm-up included)\n",
        total_messages.get()
    );
    Some(ns)
}
