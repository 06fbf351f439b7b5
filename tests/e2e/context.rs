//! Scenario: patient context (`kafka.context_topic`) end to end.
//!
//! 10 000 patients on 6 partitions; 1 000 of them get a context before anything runs: a
//! third NEWS2 SpO2 Scale 2, a third their own `heart_rate_high` (and some `spo2_low`)
//! thresholds, a third a suppression with a reason (some ending by observation time
//! mid-stream, some outlasting it). Seven of them then get a record that cannot be
//! applied, one per class: not JSON, an unknown rule id, an override in the wrong
//! direction, an override of the wrong metric, `spo2Scale` 3, a key that is not the
//! `patientId`, and a record on the wrong partition of the context topic. Each must be
//! dead-lettered as `bad_context` and leave the patient's previous context in force.
//!
//! Then 200 000 observations (one per patient per round, 20 rounds): vw-1 alone, vw-2
//! joins at round 3 (a rebalance under load: the partitions it takes are held until
//! their context is read), 60 contexts change after round 8 (Scale 2 → tombstone, new
//! overrides, a suppression lifted, 15 patients without a context get one), and vw-1 is
//! SIGKILLed mid round 13 while vw-3 starts (a second rebalance, a re-read of what vw-1
//! had not committed, and the context of every moved partition read again).
//!
//! The rules are the suite's every-breach set (stateless, NEWS2 off), so each reading's
//! alerts follow from the reading and its patient's context alone. The oracle is
//! vitalwatch's own [`Evaluator`] with [`context::parse`] applying each patient's context
//! as it stood when the reading was read: the context records below the topic's end
//! before the change for the readings below the input's end then, every record after.
//! The test's own reading of the rules file and of each good record gives the threshold,
//! scale, suppression and version every alert must carry, and must agree with the
//! evaluator about which rules fire. Every alert must be there (by `alertId`), with
//! exactly the oracle's content; nothing else may be; a duplicate is the same alert
//! again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vitalwatch::alert::{OwnedAlert, Source, alert_id};
use vitalwatch::rules::context::{self, PatientContext};
use vitalwatch::rules::state::{Evaluator, Reading};
use vitalwatch::rules::{Event, RuleSet};
use vitalwatch::vitals::decode;

use crate::kafka::{self, Feeder, Record, Topics};
use crate::process::{self, Vitalwatch};
use crate::summary::Scenario;
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, every_breach_rules, seed, service_env};

const PARTITIONS: i32 = 6;
const PATIENTS: usize = 10_000;
/// Patients 0..WITH_CONTEXT get a context before the feed.
const WITH_CONTEXT: usize = 1_000;
const ROUNDS: usize = 20;
/// Observations per second of the feed.
const RATE: u64 = 5_000;
/// vw-2 joins before this round.
const JOIN_ROUND: usize = 3;
/// Contexts change before this round.
const CHANGE_ROUND: usize = 8;
/// vw-1 is SIGKILLed at a random moment of this round.
const KILL_ROUND: usize = 13;
/// Changed contexts of each kind.
const CHANGED_PER_KIND: usize = 15;
/// Observation time between rounds.
const ROUND_OBS_MS: i64 = 60_000;
const REASONS: [&str; 4] = ["procedure", "end_of_life", "transport", "sensor_check"];
/// Patients of the bad records: each has a good context first.
const BAD_PATIENTS: std::ops::RangeInclusive<usize> = 30..=36;
/// The bad-record classes, as [`context::ContextError::class`] names them, plus the
/// service's own home-partition check.
const BAD_CLASSES: [&str; 7] = [
    "not_json",
    "unknown_rule",
    "wrong_direction",
    "wrong_metric",
    "bad_scale",
    "key_mismatch",
    "wrong_partition",
];

fn patient(i: usize) -> String {
    format!("P-{i:05}")
}

/// Java's murmur2 partitioner (librdkafka's `murmur2_random` for a key, vitalwatch's
/// `kafka.input_partitioner = "murmur2"`): the home partition of `key`.
fn home(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let chunks = key.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

fn observation(patient: &str, metric: &str, value: f64, ts: i64) -> Vec<u8> {
    format!(
        r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{ts},"deviceId":"bed-{patient}"}}"#
    )
    .into_bytes()
}

/// Observation time of patient `i`'s reading in round `r`.
fn obs_time(t0: i64, i: usize, r: usize) -> i64 {
    t0 + r as i64 * ROUND_OBS_MS + (i % 1_000) as i64
}

/// The context of patient `i < WITH_CONTEXT` before the feed.
fn initial_context(i: usize, t0: i64, now: i64) -> String {
    let id = patient(i);
    let tail = format!(r#""updatedBy":"e2e-ward","updatedAt":{now}"#);
    match i % 3 {
        0 => format!(r#"{{"patientId":"{id}","spo2Scale":2,{tail}}}"#),
        1 => {
            let hr = 140 + 5 * (i / 3 % 4);
            if (i / 3).is_multiple_of(2) {
                format!(
                    r#"{{"patientId":"{id}","overrides":{{"heart_rate_high":{{"above":{hr}}},"spo2_low":{{"below":88}}}},{tail}}}"#
                )
            } else {
                format!(
                    r#"{{"patientId":"{id}","overrides":{{"heart_rate_high":{{"metric":"heart_rate","above":{hr}}}}},{tail}}}"#
                )
            }
        }
        _ => {
            // Half end within the feed (by observation time), half outlast it.
            let until = if (i / 3).is_multiple_of(2) {
                t0 + (i / 6 % ROUNDS) as i64 * ROUND_OBS_MS + ROUND_OBS_MS / 2
            } else {
                t0 + 30 * 24 * 3_600_000
            };
            let reason = REASONS[i / 3 % REASONS.len()];
            format!(
                r#"{{"patientId":"{id}","suppress":{{"until":{until},"reason":"{reason}"}},{tail}}}"#
            )
        }
    }
}

/// One record of each bad class: (class, key, value, on the wrong partition).
fn bad_records() -> Vec<(&'static str, String, String, bool)> {
    let p = |n: usize| patient(*BAD_PATIENTS.start() + n);
    vec![
        (
            "not_json",
            p(0),
            format!(r#"{{"patientId":"{}","spo2Scale":1"#, p(0)),
            false,
        ),
        (
            "unknown_rule",
            p(1),
            format!(
                r#"{{"patientId":"{}","overrides":{{"heart_rate_hihg":{{"above":150}}}}}}"#,
                p(1)
            ),
            false,
        ),
        (
            "wrong_direction",
            p(2),
            format!(
                r#"{{"patientId":"{}","overrides":{{"heart_rate_high":{{"below":50}}}}}}"#,
                p(2)
            ),
            false,
        ),
        (
            "wrong_metric",
            p(3),
            format!(
                r#"{{"patientId":"{}","overrides":{{"heart_rate_high":{{"metric":"spo2","above":150}}}}}}"#,
                p(3)
            ),
            false,
        ),
        (
            "bad_scale",
            p(4),
            format!(r#"{{"patientId":"{}","spo2Scale":3}}"#, p(4)),
            false,
        ),
        (
            "key_mismatch",
            p(5),
            format!(r#"{{"patientId":"{}","spo2Scale":1}}"#, p(6)),
            false,
        ),
        (
            "wrong_partition",
            p(6),
            format!(r#"{{"patientId":"{}","spo2Scale":1}}"#, p(6)),
            true,
        ),
    ]
}

/// The contexts written after round CHANGE_ROUND: (patient, value; `None` a tombstone).
fn changes(t0: i64, now: i64) -> Vec<(usize, Option<String>)> {
    let tail = format!(r#""updatedBy":"e2e-change","updatedAt":{now}"#);
    let mut out = Vec::new();
    for n in 0..CHANGED_PER_KIND {
        // Away from the bad records' patients.
        let base = 300 + 3 * n;
        out.push((base, None));
        out.push((
            base + 1,
            Some(format!(
                r#"{{"patientId":"{}","overrides":{{"heart_rate_high":{{"above":125}}}},{tail}}}"#,
                patient(base + 1)
            )),
        ));
        out.push((
            base + 2,
            Some(format!(
                r#"{{"patientId":"{}","spo2Scale":2,{tail}}}"#,
                patient(base + 2)
            )),
        ));
        let fresh = WITH_CONTEXT + n;
        let until = t0 + 30 * 24 * 3_600_000;
        out.push((
            fresh,
            Some(format!(
                r#"{{"patientId":"{}","spo2Scale":2,"suppress":{{"until":{until},"reason":"procedure"}},{tail}}}"#,
                patient(fresh)
            )),
        ));
    }
    out
}

/// Readings near the thresholds (and their overrides and Scale 2 ones).
const HR_NEAR: [f64; 9] = [72.0, 124.0, 128.0, 133.0, 142.0, 147.0, 152.0, 158.0, 38.0];
const SPO2_NEAR: [f64; 9] = [97.0, 93.0, 91.0, 89.0, 87.0, 85.0, 84.0, 83.0, 80.0];

/// Patient `i`'s reading in round `r`: (metric, value).
fn reading(rng: &mut StdRng, i: usize, r: usize) -> (&'static str, f64) {
    let heart = (i + r).is_multiple_of(2);
    if BAD_PATIENTS.contains(&i) {
        // Breaches under any of their contexts: every reading shows which one is in force.
        return if heart {
            ("heart_rate", 200.0)
        } else {
            ("spo2", 80.0)
        };
    }
    let near = i < WITH_CONTEXT + 100 || rng.random_range(0..100) < 5;
    match (heart, near) {
        (true, true) => ("heart_rate", HR_NEAR[rng.random_range(0..HR_NEAR.len())]),
        (false, true) => ("spo2", SPO2_NEAR[rng.random_range(0..SPO2_NEAR.len())]),
        (true, false) => ("heart_rate", f64::from(rng.random_range(60..=100))),
        (false, false) => ("spo2", f64::from(rng.random_range(94..=100))),
    }
}

/// Keeps the feed at RATE observations per second.
struct Pacer {
    started: Instant,
    sent: u64,
}

impl Pacer {
    fn new() -> Pacer {
        Pacer {
            started: Instant::now(),
            sent: 0,
        }
    }

    fn sent_one(&mut self) {
        self.sent += 1;
        if self.sent.is_multiple_of(250) {
            let due = Duration::from_secs_f64(self.sent as f64 / RATE as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                // The feed's rate, not a settling delay.
                std::thread::sleep(wait);
            }
        }
    }
}

/// A threshold rule as the rules file in force gives it: the test's own reading.
#[derive(Debug)]
struct RuleModel {
    id: String,
    metric: String,
    above: bool,
    threshold: f64,
    scale_2: Option<f64>,
}

fn rule_models(rules: &RuleSet) -> Vec<RuleModel> {
    let file: toml::Table = toml::from_str(&rules.to_toml()).expect("the rules as TOML");
    let float = |t: &toml::Value, k: &str| t.get(k).and_then(toml::Value::as_float);
    file["threshold"]
        .as_array()
        .expect("[[threshold]] tables")
        .iter()
        .map(|t| {
            let (above, threshold) = match float(t, "above") {
                Some(a) => (true, a),
                None => (false, float(t, "below").expect("above or below")),
            };
            RuleModel {
                id: t["id"].as_str().expect("id").to_owned(),
                metric: t["metric"].as_str().expect("metric").to_owned(),
                above,
                threshold,
                scale_2: float(t, "scale_2_below").or_else(|| float(t, "scale_2_above")),
            }
        })
        .collect()
}

/// A good context record as the test reads it (JSON, not the library's parser).
#[derive(Debug, Clone, PartialEq)]
struct CtxModel {
    version: i64,
    scale: u8,
    overrides: HashMap<String, f64>,
    suppress: Option<(i64, String)>,
}

impl CtxModel {
    fn of(value: &[u8], version: i64) -> CtxModel {
        let v: serde_json::Value = serde_json::from_slice(value).expect("a good record");
        let overrides = v["overrides"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(id, spec)| {
                        let t = spec["above"].as_f64().or(spec["below"].as_f64());
                        (id.clone(), t.expect("a threshold"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        CtxModel {
            version,
            scale: v["spo2Scale"].as_u64().map_or(1, |s| s as u8),
            overrides,
            suppress: v["suppress"].as_object().map(|s| {
                (
                    s["until"].as_i64().expect("until"),
                    s["reason"].as_str().expect("reason").to_owned(),
                )
            }),
        }
    }
}

/// What one alert must carry.
#[derive(Debug, Clone, PartialEq)]
struct Want {
    alert_id: String,
    patient_id: String,
    value: f64,
    observed_at: i64,
    threshold: f64,
    spo2_scale: Option<u8>,
    suppressed: Option<bool>,
    suppress_reason: Option<String>,
    context_version: Option<i64>,
}

impl Want {
    fn of(a: &OwnedAlert) -> Want {
        Want {
            alert_id: a.alert_id.clone(),
            patient_id: a.patient_id.clone(),
            value: a.value,
            observed_at: a.observed_at,
            threshold: a.threshold,
            spo2_scale: a.spo2_scale,
            suppressed: a.suppressed,
            suppress_reason: a.suppress_reason.clone(),
            context_version: a.context_version,
        }
    }
}

/// A context record the service must dead-letter.
#[derive(Debug)]
struct WantDlq {
    class: &'static str,
    /// The exact message ([`context::ContextError::message`]), or for the home check a
    /// part of it.
    message: String,
    exact: bool,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// Where the contexts stood when the change was written: the context topic's end and
/// the input's end per partition.
struct Split {
    context: Vec<i64>,
    input: Vec<i64>,
}

#[derive(Default)]
struct Oracle {
    /// (partition, offset, rule id) → the alert.
    alerts: BTreeMap<(i32, i64, String), Want>,
    /// (partition, offset) of the context topic → the dead letter.
    dlq: BTreeMap<(i32, i64), WantDlq>,
    /// Patient → the version of its good record before its bad one.
    kept: BTreeMap<String, i64>,
    /// Patients whose context changed mid-stream.
    changed: BTreeSet<String>,
    /// Readings the evaluator and the test's own model disagreed on.
    disagreements: Vec<String>,
    readings: usize,
    /// Patients with a context, before and after the change.
    with_context: (usize, usize),
}

impl Oracle {
    fn build(input_topic: &str, input: &[Record], ctx_records: &[Record], split: &Split) -> Oracle {
        let rules = Arc::new(every_breach_rules());
        let models = rule_models(&rules);
        assert_eq!(models.len(), rules.rules().len());
        let mut o = Oracle::default();

        // Each patient's home, where the producer put its readings.
        let mut homes: HashMap<String, i32> = HashMap::new();
        let limits = vitalwatch::settings::defaults().decode_limits();
        let now = vitalwatch::clock::now_ms();
        for r in input {
            let obs = decode(r.value(), &limits, now).expect("valid observation");
            let id = obs.patient_id.to_string();
            let expected_home = home(id.as_bytes(), PARTITIONS);
            assert_eq!(
                r.partition, expected_home,
                "{id}: the producer's partitioner is murmur2"
            );
            homes.insert(id, r.partition);
        }

        // The contexts in force before and after the change.
        type InForce = HashMap<String, (PatientContext, CtxModel)>;
        let (mut before, mut after): (InForce, InForce) = Default::default();
        let mut bad_keys: Vec<String> = Vec::new();
        let mut sorted: Vec<&Record> = ctx_records.iter().collect();
        sorted.sort_by_key(|r| (r.partition, r.offset));
        for r in sorted {
            let parsed = context::parse(r.key.as_deref(), r.payload.as_deref(), r.offset, &rules);
            let early = r.offset < split.context[r.partition as usize];
            match parsed {
                Ok((id, ctx)) => {
                    let id = id.to_string();
                    let at_home = homes.get(&id).copied();
                    if at_home != Some(r.partition) {
                        bad_keys.push(id.clone());
                        o.dlq.insert(
                            (r.partition, r.offset),
                            WantDlq {
                                class: "wrong_partition",
                                message: format!(
                                    "its patient's home is partition {}",
                                    at_home.expect("a patient with readings")
                                ),
                                exact: false,
                                key: r.key.clone(),
                                payload: r.payload.clone(),
                            },
                        );
                        continue;
                    }
                    if !early {
                        o.changed.insert(id.clone());
                    }
                    let entry = ctx.map(|c| {
                        let model = CtxModel::of(r.value(), r.offset);
                        assert_eq!(c.version(), r.offset);
                        assert_eq!(c.spo2_scale().number(), model.scale);
                        (c, model)
                    });
                    for (map, apply) in [(&mut before, early), (&mut after, true)] {
                        if !apply {
                            continue;
                        }
                        match &entry {
                            Some(e) => {
                                map.insert(id.clone(), e.clone());
                            }
                            None => {
                                map.remove(&id);
                            }
                        }
                    }
                }
                Err(e) => {
                    let key = r
                        .key
                        .as_deref()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default();
                    bad_keys.push(key);
                    o.dlq.insert(
                        (r.partition, r.offset),
                        WantDlq {
                            class: e.class(),
                            message: e.message(),
                            exact: true,
                            key: r.key.clone(),
                            payload: r.payload.clone(),
                        },
                    );
                }
            }
        }
        // The partitions are replayed one after the other, so a record on the wrong one
        // may come before its patient's good one: look the good ones up at the end.
        for key in bad_keys {
            if let Some((_, m)) = before.get(&key) {
                o.kept.insert(key, m.version);
            }
        }
        o.with_context = (before.len(), after.len());

        // Every reading under the context in force when it was read.
        let mut eval = Evaluator::new(
            rules.clone(),
            vitalwatch::settings::defaults().state_limits(),
        );
        let mut events = Vec::new();
        for r in input {
            let obs = decode(r.value(), &limits, now).expect("valid observation");
            let id = obs.patient_id.to_string();
            let in_force = if r.offset < split.input[r.partition as usize] {
                before.get(&id)
            } else {
                after.get(&id)
            };
            eval.set_context(&id, r.partition, in_force.map(|(c, _)| c.clone()));
            let model = in_force.map(|(_, m)| m);
            events.clear();
            eval.observe(
                &id,
                Reading::of(&obs),
                (r.partition as u64, 1),
                0,
                &mut events,
            );
            o.readings += 1;
            let fired: Vec<usize> = events
                .iter()
                .map(|e| match e {
                    Event::Threshold { rule, .. } => *rule,
                    other => panic!("stateless rules raised {other:?}"),
                })
                .collect();
            // The test's own reading must agree with the evaluator on what fires.
            let thresholds: Vec<(usize, f64)> = models
                .iter()
                .enumerate()
                .filter(|(_, m)| m.metric == obs.metric.as_str())
                .map(|(i, m)| {
                    let t = model
                        .and_then(|c| c.overrides.get(&m.id).copied())
                        .or_else(|| model.filter(|c| c.scale == 2).and(m.scale_2))
                        .unwrap_or(m.threshold);
                    (i, t)
                })
                .collect();
            let own: Vec<usize> = thresholds
                .iter()
                .filter(|&&(i, t)| {
                    if models[i].above {
                        obs.value > t
                    } else {
                        obs.value < t
                    }
                })
                .map(|&(i, _)| i)
                .collect();
            if own != fired && o.disagreements.len() < 10 {
                o.disagreements.push(format!(
                    "{id} {} {} under {model:?}: evaluator {fired:?}, model {own:?}",
                    obs.metric, obs.value
                ));
            }
            let source = Source {
                topic: input_topic,
                partition: r.partition,
                offset: r.offset,
            };
            for i in fired {
                let rule = &models[i];
                let threshold = thresholds
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map_or(rule.threshold, |&(_, t)| t);
                let suppressed = model.map(|c| {
                    c.suppress
                        .as_ref()
                        .is_some_and(|(until, _)| obs.timestamp < *until)
                });
                let reason = model
                    .filter(|_| suppressed == Some(true))
                    .and_then(|c| c.suppress.as_ref().map(|(_, r)| r.clone()));
                o.alerts.insert(
                    (r.partition, r.offset, rule.id.clone()),
                    Want {
                        alert_id: alert_id(&source, &rule.id).to_string(),
                        patient_id: id.clone(),
                        value: obs.value,
                        observed_at: obs.timestamp,
                        threshold,
                        spo2_scale: (rule.metric == "spo2").then(|| model.map_or(1, |c| c.scale)),
                        suppressed,
                        suppress_reason: reason,
                        context_version: model.map(|c| c.version),
                    },
                );
            }
        }
        o
    }
}

#[derive(Default, Debug)]
struct Tally {
    expected: usize,
    records: usize,
    lost: usize,
    duplicates: usize,
    unexpected: usize,
    wrong: usize,
    /// Alerts (expected) under a context, and of those suppressed.
    under_context: usize,
    suppressed: usize,
    /// Alerts of the mid-stream changed patients read before and after the change.
    changed_before: usize,
    changed_after: usize,
    /// Alerts of the bad records' patients, all under their previous (good) version.
    kept_alerts: usize,
    kept_wrong: usize,
    dlq_records: usize,
    dlq_by_class: BTreeMap<&'static str, usize>,
    dlq_lost: usize,
    dlq_unexpected: usize,
    dlq_wrong: usize,
    problems: Vec<String>,
}

impl Tally {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 12 {
            self.problems.push(p);
        }
    }

    fn check(
        o: &Oracle,
        topics: &Topics,
        ctx_topic: &str,
        split: &Split,
        alerts: &[Record],
        dlq: &[Record],
    ) -> Tally {
        let mut t = Tally {
            expected: o.alerts.len(),
            records: alerts.len(),
            dlq_records: dlq.len(),
            ..Tally::default()
        };
        for ((p, off, _), w) in &o.alerts {
            if w.context_version.is_some() {
                t.under_context += 1;
            }
            if w.suppressed == Some(true) {
                t.suppressed += 1;
            }
            if o.changed.contains(&w.patient_id) {
                if *off < split.input[*p as usize] {
                    t.changed_before += 1;
                } else {
                    t.changed_after += 1;
                }
            }
        }
        let mut seen: BTreeMap<(i32, i64, String), Want> = BTreeMap::new();
        for r in alerts {
            let a: OwnedAlert = match serde_json::from_slice(r.value()) {
                Ok(a) => a,
                Err(e) => {
                    t.unexpected += 1;
                    t.problem(format!(
                        "unparseable alert at {}/{}: {e}",
                        r.partition, r.offset
                    ));
                    continue;
                }
            };
            let key = (a.source.partition, a.source.offset, a.rule_id.clone());
            let got = Want::of(&a);
            let Some(want) = o
                .alerts
                .get(&key)
                .filter(|_| a.source.topic == topics.input)
            else {
                t.unexpected += 1;
                t.problem(format!("unexpected alert {got:?} for {key:?}"));
                continue;
            };
            if &got != want || r.key.as_deref() != Some(want.patient_id.as_bytes()) {
                t.wrong += 1;
                t.problem(format!(
                    "alert {key:?} differs:\n    got  {got:?}\n    want {want:?}"
                ));
            }
            if let Some(&version) = o.kept.get(&a.patient_id) {
                t.kept_alerts += 1;
                if a.context_version != Some(version) {
                    t.kept_wrong += 1;
                }
            }
            match seen.get(&key) {
                Some(first) => {
                    t.duplicates += 1;
                    if *first != got {
                        t.wrong += 1;
                        t.problem(format!("duplicate differs: {got:?} vs {first:?}"));
                    }
                }
                None => {
                    seen.insert(key, got);
                }
            }
        }
        for key in o.alerts.keys() {
            if !seen.contains_key(key) {
                t.lost += 1;
                t.problem(format!("lost alert {key:?}"));
            }
        }

        let mut seen_dlq: BTreeSet<(i32, i64)> = BTreeSet::new();
        for r in dlq {
            let at = (
                r.header("vitalwatch.source.partition")
                    .and_then(|v| v.parse::<i32>().ok()),
                r.header("vitalwatch.source.offset")
                    .and_then(|v| v.parse::<i64>().ok()),
            );
            let (Some(p), Some(off)) = at else {
                t.dlq_unexpected += 1;
                t.problem(format!(
                    "dead letter without source headers: {:?}",
                    r.headers
                ));
                continue;
            };
            let Some(want) = o
                .dlq
                .get(&(p, off))
                .filter(|_| r.header("vitalwatch.source.topic") == Some(ctx_topic))
            else {
                t.dlq_unexpected += 1;
                t.problem(format!("unexpected dead letter {p}/{off}: {:?}", r.headers));
                continue;
            };
            let message = r.header("vitalwatch.error.message").unwrap_or_default();
            let message_right = if want.exact {
                message == want.message
            } else {
                message.contains(&want.message)
            };
            let right = r.header("vitalwatch.error.reason") == Some(context::REASON)
                && message_right
                // No patient id in a header operators read.
                && !message.contains("P-0")
                && r.key == want.key
                && r.payload == want.payload;
            if !right {
                t.dlq_wrong += 1;
                t.problem(format!(
                    "dead letter {p}/{off} ({}) differs: headers {:?}; want message {:?}",
                    want.class, r.headers, want.message
                ));
            }
            *t.dlq_by_class.entry(want.class).or_default() += 1;
            seen_dlq.insert((p, off));
        }
        for (at, want) in &o.dlq {
            if !seen_dlq.contains(at) {
                t.dlq_lost += 1;
                t.problem(format!(
                    "bad context {at:?} ({}) not dead-lettered",
                    want.class
                ));
            }
        }
        t
    }

    fn ok(&self) -> bool {
        self.lost == 0
            && self.unexpected == 0
            && self.wrong == 0
            && self.kept_wrong == 0
            && self.dlq_lost == 0
            && self.dlq_unexpected == 0
            && self.dlq_wrong == 0
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "alerts: {} expected ({} under a context, {} suppressed), {} records, lost {}, duplicates {}, unexpected {}, wrong {}; \
             changed patients' alerts {} before / {} after the change; bad records' patients {} alerts, {} not under the previous context; \
             dead letters {} records {:?}, lost {}, unexpected {}, wrong {}",
            self.expected,
            self.under_context,
            self.suppressed,
            self.records,
            self.lost,
            self.duplicates,
            self.unexpected,
            self.wrong,
            self.changed_before,
            self.changed_after,
            self.kept_alerts,
            self.kept_wrong,
            self.dlq_records,
            self.dlq_by_class,
            self.dlq_lost,
            self.dlq_unexpected,
            self.dlq_wrong,
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Context records applied or reset so far on `vws`.
fn context_records(vws: &[&Vitalwatch]) -> f64 {
    vws.iter()
        .map(|vw| {
            let m = vw.metrics();
            m.sum("vitalwatch_context_records_total", &[("result", "applied")])
                + m.sum("vitalwatch_context_records_total", &[("result", "reset")])
        })
        .sum()
}

fn assigned(vw: &Vitalwatch, topic: &str) -> f64 {
    vw.metrics()
        .sum("vitalwatch_assigned_partitions", &[("topic", topic)])
}

/// `patient context caught up` events of `vw`: (count, records, slowest ms).
fn catch_ups(vw: &Vitalwatch) -> (usize, u64, u64) {
    let events = vw.events("patient context caught up");
    let records = events.iter().filter_map(|e| e["records"].as_u64()).sum();
    let slowest = events
        .iter()
        .filter_map(|e| e["elapsed_ms"].as_u64())
        .max()
        .unwrap_or(0);
    (events.len(), records, slowest)
}

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn patient_context_holds_through_a_change_a_sigkill_and_rebalances() {
    let mut sc = Scenario::begin("context");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "context", PARTITIONS);
    let ctx_topic = format!("e2e-context-{}", &topics.input["e2e-data-".len()..]);
    // Compacted, as in production; as many partitions as the input.
    kafka::create_state_topic(&topics.client, &ctx_topic, PARTITIONS);
    let logs = process::log_dir("context");
    let mut rng = StdRng::seed_from_u64(seed());
    let mut env = service_env(&topics, &[]);
    env.push(("VITALWATCH_KAFKA__CONTEXT_TOPIC".into(), ctx_topic.clone()));

    // The contexts, then one bad record of each class for patients that have one.
    let now = vitalwatch::clock::now_ms();
    let t0 = now - 2 * 3_600_000;
    let feeder = Feeder::new(&topics.client, &ctx_topic);
    for i in 0..WITH_CONTEXT {
        feeder.send_keyed(
            patient(i).as_bytes(),
            initial_context(i, t0, now).as_bytes(),
        );
    }
    let bad = bad_records();
    for (_, key, value, wrong_partition) in &bad {
        if *wrong_partition {
            let p = (home(key.as_bytes(), PARTITIONS) + 1) % PARTITIONS;
            feeder.send(p, Some(key.as_bytes()), Some(value.as_bytes()));
        } else {
            feeder.send_keyed(key.as_bytes(), value.as_bytes());
        }
    }
    feeder.finish();
    sc.step(format!(
        "context topic {ctx_topic}: {WITH_CONTEXT} contexts, then {} bad records ({})",
        bad.len(),
        kafka::state_topic_kind()
    ));

    let mut vw1 = Vitalwatch::start("vw-1", &env, &logs);
    vw1.wait_ready(LONG);
    sc.step(format!(
        "vw-1 ready: context caught up {:?}",
        catch_ups(&vw1)
    ));

    let mut pacer = Pacer::new();
    let mut sent = 0usize;
    let mut vw2: Option<Vitalwatch> = None;
    let mut vw3: Option<Vitalwatch> = None;
    let mut split = None;
    let kill_at = rng.random_range(1_000..PATIENTS - 1_000);
    for r in 0..ROUNDS {
        if r == JOIN_ROUND {
            let b = Vitalwatch::start("vw-2", &env, &logs);
            let parts = wait_for(LONG, "vw-1 and vw-2 to share the input", || {
                let split = (assigned(&vw1, &topics.input), assigned(&b, &topics.input));
                if split.0 > 0.0 && split.1 > 0.0 && split.0 + split.1 == f64::from(PARTITIONS) {
                    Ok(split)
                } else {
                    Err(format!("{split:?}"))
                }
            });
            b.wait_ready(LONG);
            sc.step(format!(
                "round {r}: vw-2 joined, partitions {parts:?}, its context caught up {:?}",
                catch_ups(&b)
            ));
            vw2 = Some(b);
        }
        if r == CHANGE_ROUND {
            // Everything before the change is read and done; the change is then written
            // and read by both instances before the next reading is written.
            let input_end = topics.wait_committed_to_end(LONG);
            let ctx_end = kafka::end_offsets(&topics.client, &ctx_topic);
            let live: Vec<&Vitalwatch> = [Some(&vw1), vw2.as_ref()].into_iter().flatten().collect();
            let before = context_records(&live);
            let list = changes(t0, vitalwatch::clock::now_ms());
            let feeder = Feeder::new(&topics.client, &ctx_topic);
            for (i, value) in &list {
                let key = patient(*i);
                match value {
                    Some(v) => feeder.send_keyed(key.as_bytes(), v.as_bytes()),
                    None => {
                        feeder.send(home(key.as_bytes(), PARTITIONS), Some(key.as_bytes()), None)
                    }
                }
            }
            feeder.finish();
            let started = Instant::now();
            wait_for(LONG, "the changed contexts read by the instances", || {
                let n = context_records(&live) - before;
                if n >= list.len() as f64 {
                    Ok(())
                } else {
                    Err(format!("{n} of {}", list.len()))
                }
            });
            sc.step(format!(
                "round {r}: {} contexts changed, read within {:.2?}; input {input_end:?}",
                list.len(),
                started.elapsed()
            ));
            split = Some(Split {
                context: ctx_end,
                input: input_end,
            });
            pacer = Pacer::new();
        }
        let feeder = Feeder::new(&topics.client, &topics.input);
        for i in 0..PATIENTS {
            if r == KILL_ROUND && i == kill_at {
                let consumed = vw1.consumed();
                vw1.kill();
                sc.kills += 1;
                sc.step(format!(
                    "round {r}: SIGKILL vw-1 (pid {}) after {i} readings of the round; it had consumed {consumed}; committed {:?}",
                    vw1.pid(),
                    topics.committed()
                ));
                vw3 = Some(Vitalwatch::start("vw-3", &env, &logs));
            }
            let (metric, value) = reading(&mut rng, i, r);
            let id = patient(i);
            feeder.send_keyed(
                id.as_bytes(),
                &observation(&id, metric, value, obs_time(t0, i, r)),
            );
            sent += 1;
            pacer.sent_one();
        }
        feeder.finish();
    }
    sc.step(format!("feed done: {sent} readings"));
    let end = topics.wait_committed_to_end(LONG);
    let mut vw2 = vw2.expect("vw-2");
    let mut vw3 = vw3.expect("vw-3");
    let parts = (assigned(&vw2, &topics.input), assigned(&vw3, &topics.input));
    sc.step(format!(
        "committed the end {end:?}; vw-2 and vw-3 own {parts:?}"
    ));
    let incomplete: f64 = [&vw2, &vw3]
        .iter()
        .map(|vw| {
            vw.metrics().sum(
                "vitalwatch_context_catch_ups_total",
                &[("outcome", "incomplete")],
            )
        })
        .sum();
    let went_live_early: Vec<String> = [&vw1, &vw2, &vw3]
        .iter()
        .flat_map(|vw| vw.lines())
        .filter(|l| l.contains("patient context not read to its end"))
        .collect();
    let catch = [&vw1, &vw2, &vw3].map(catch_ups);
    for vw in [&mut vw2, &mut vw3] {
        let (status, _) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
        assert!(status.success(), "{}: {status}\n{}", vw.name, vw.tail(20));
    }

    let split = split.expect("the change was written");
    let input = kafka::read_all(&topics.client, &topics.input);
    let ctx_records = kafka::read_all(&topics.client, &ctx_topic);
    let alerts = kafka::read_all(&topics.client, &topics.alerts);
    let dlq = kafka::read_all(&topics.client, &topics.dlq);
    let oracle = Oracle::build(&topics.input, &input, &ctx_records, &split);
    let t = Tally::check(&oracle, &topics, &ctx_topic, &split, &alerts, &dlq);
    println!("{t}");
    sc.messages = Some(input.len());
    sc.lost = Some(t.lost + t.dlq_lost);
    sc.duplicates = Some(t.duplicates);
    sc.note(format!(
        "{} of {PATIENTS} patients with a context ({} after the change of {}); alerts {} expected, {} records, {} duplicates ({} under a context, {} suppressed); \
         changed patients {} alerts before / {} after; {} bad-context patients kept their context over {} alerts; dead letters {:?}; \
         catch-ups (count, records, slowest ms) vw-1 {:?}, vw-2 {:?}, vw-3 {:?}; vw-2/vw-3 own {parts:?}",
        oracle.with_context.0,
        oracle.with_context.1,
        oracle.changed.len(),
        t.expected,
        t.records,
        t.duplicates,
        t.under_context,
        t.suppressed,
        t.changed_before,
        t.changed_after,
        oracle.kept.len(),
        t.kept_alerts,
        t.dlq_by_class,
        catch[0],
        catch[1],
        catch[2],
    ));
    assert!(
        oracle.disagreements.is_empty(),
        "the evaluator and the test's reading of the contexts disagree:\n{}",
        oracle.disagreements.join("\n")
    );
    assert_eq!(input.len(), sent, "the input holds what the feed sent");
    assert_eq!(oracle.readings, PATIENTS * ROUNDS);
    assert_eq!(
        oracle.with_context.0, WITH_CONTEXT,
        "every patient's first context applied"
    );
    assert_eq!(
        oracle
            .dlq
            .values()
            .map(|w| w.class)
            .collect::<BTreeSet<_>>(),
        BAD_CLASSES.into_iter().collect::<BTreeSet<_>>(),
        "one bad record of each class"
    );
    assert_eq!(oracle.kept.len(), BAD_CLASSES.len(), "{:?}", oracle.kept);
    assert_eq!(oracle.changed.len(), 4 * CHANGED_PER_KIND);
    assert!(t.changed_before > 0 && t.changed_after > 0, "{t}");
    assert!(t.suppressed > 0 && t.under_context > t.suppressed, "{t}");
    assert!(t.kept_alerts > 0, "{t}");
    assert!(
        BAD_CLASSES
            .iter()
            .all(|c| t.dlq_by_class.get(c).copied().unwrap_or(0) >= 1),
        "every bad class dead-lettered: {t}"
    );
    assert_eq!(incomplete, 0.0, "a catch-up went live early");
    assert!(went_live_early.is_empty(), "{}", went_live_early.join("\n"));
    assert!(
        catch[1].0 > 0 && catch[2].0 > 0,
        "the joiners caught up: {catch:?}"
    );
    assert_eq!(
        parts.0 + parts.1,
        f64::from(PARTITIONS),
        "vw-2 and vw-3 own the input"
    );
    assert!(t.ok(), "{t}");
}
