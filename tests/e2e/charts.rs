//! Scenario: NEWS2 charts as the ward sees them (field report items 1 and 2), with the
//! shipped rules (red flags and the NEWS2 score, alarm-fatigue control on).
//!
//! 1. A pulse hovering at 128–134 on an otherwise normal chart, one reading every 20 s:
//!    one `heart_rate_high` and one `news2_medium`, as vitalwatch's own evaluator replaying
//!    the input predicts, not a page at every crossing.
//! 2. Two replicas, every reading keyed by its device, so one patient's readings land on
//!    partitions both replicas own: each patient's `news2_high` is scored from the whole
//!    chart, as an oracle of the input computes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use vitalwatch::alert::OwnedAlert;
use vitalwatch::rules::Event;
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::news2;
use vitalwatch::rules::state::{Evaluator, Reading};
use vitalwatch::vitals::{Metric, decode};

use crate::kafka::{self, Feeder, Topics};
use crate::process::{self, Vitalwatch};
use crate::summary::Scenario;
use crate::support::traffic::{CHART_OXYGEN, CHART_SCORING_5};
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, service_env};

/// The environment of `run` with the shipped rules instead of the suite's every-breach
/// set.
fn shipped_rules_env(topics: &Topics) -> Vec<(String, String)> {
    let mut env = service_env(topics, &[]);
    let rules = process::repo_root().join("config/rules.toml");
    env.retain(|(k, _)| k != "VITALWATCH_RULES__FILE");
    env.push(("VITALWATCH_RULES__FILE".into(), rules.display().to_string()));
    env
}

fn observation(patient: &str, metric: Metric, value: f64, ts: i64, device: &str) -> Vec<u8> {
    format!(
        r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{ts},"deviceId":"{device}"}}"#
    )
    .into_bytes()
}

fn alerts_of(topics: &Topics) -> Vec<OwnedAlert> {
    kafka::read_all(&topics.client, &topics.alerts)
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).expect("alert"))
        .collect()
}

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn a_hovering_pulse_pages_once() {
    let mut sc = Scenario::begin("news2-hovering");
    let brokers = kafka::brokers();
    // One partition: the one patient's, so that every partition has something to commit.
    let topics = Topics::create(&brokers, "hovering", 1);
    let logs = process::log_dir("news2-hovering");
    let mut vw = Vitalwatch::start("vw", &shipped_rules_env(&topics), &logs);
    vw.wait_ready(LONG);

    let patient = "H-000001";
    let t0 = vitalwatch::clock::now_ms() - 600_000;
    let feeder = Feeder::new(&topics.client, &topics.input);
    for (metric, value) in [
        (Metric::RespiratoryRate, 16.0),
        (Metric::Spo2, 97.0),
        (Metric::SupplementalOxygen, 0.0),
        (Metric::SystolicBp, 125.0),
        (Metric::Consciousness, 0.0),
        (Metric::Temperature, 36.8),
        (Metric::HeartRate, 80.0),
    ] {
        feeder.send_keyed(
            patient.as_bytes(),
            &observation(patient, metric, value, t0, "bedside-1"),
        );
    }
    let pulses = [
        128.0, 132.0, 129.0, 134.0, 128.0, 131.0, 127.0, 133.0, 130.0,
    ];
    for (i, pulse) in pulses.iter().enumerate() {
        let ts = t0 + 20_000 * (i as i64 + 1);
        feeder.send_keyed(
            patient.as_bytes(),
            &observation(patient, Metric::HeartRate, *pulse, ts, "bedside-1"),
        );
    }
    feeder.finish();
    topics.wait_committed_to_end(LONG);

    // The oracle: vitalwatch's own evaluator over the input as the topic holds it.
    let input = kafka::read_all(&topics.client, &topics.input);
    let rules = Arc::new(RuleSet::news2_red_flags());
    let mut eval = Evaluator::new(
        rules.clone(),
        vitalwatch::settings::defaults().state_limits(),
    );
    let now = vitalwatch::clock::now_ms();
    let mut expected: Vec<String> = Vec::new();
    for r in &input {
        let obs = decode(
            r.payload.as_deref().unwrap_or_default(),
            &vitalwatch::settings::defaults().decode_limits(),
            now,
        )
        .expect("valid input");
        let mut out = Vec::new();
        let reading = Reading::of(&obs);
        eval.observe(
            &obs.patient_id,
            reading,
            (r.partition as u64, 1),
            0,
            &mut out,
        );
        for e in out {
            expected.push(match e {
                Event::Threshold { rule, .. } => rules.rules()[rule].id.clone(),
                Event::News2 { severity, .. } => format!("news2_{severity}"),
            });
        }
    }
    expected.sort();
    assert_eq!(expected, ["heart_rate_high", "news2_medium"], "the oracle");

    let alerts = wait_for(LONG, "both alerts on the alert topic", || {
        let alerts = alerts_of(&topics);
        if alerts.len() >= expected.len() {
            Ok(alerts)
        } else {
            Err(format!("{} alerts", alerts.len()))
        }
    });
    let mut got: Vec<String> = alerts.iter().map(|a| a.rule_id.clone()).collect();
    got.sort();
    let (status, _) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw.tail(20));
    sc.messages = Some(input.len());
    sc.lost = Some(0);
    sc.duplicates = Some(got.len().saturating_sub(expected.len()));
    sc.note(format!(
        "pulse hovering 127-134 every 20 s for {} readings: alerts {got:?}, oracle {expected:?}",
        pulses.len()
    ));
    assert_eq!(got, expected, "one page per condition");
}

const PATIENTS: usize = 30;

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn device_keyed_readings_meet_in_one_chart_across_two_replicas() {
    let mut sc = Scenario::begin("news2-device-keys");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "devicekeys", 6);
    let logs = process::log_dir("news2-device-keys");
    let env = shipped_rules_env(&topics);
    let mut a = Vitalwatch::start("vw-a", &env, &logs);
    let mut b = Vitalwatch::start("vw-b", &env, &logs);
    let input_topic = [("topic", topics.input.as_str())];
    let owned = |vw: &Vitalwatch| {
        vw.metrics()
            .sum("vitalwatch_assigned_partitions", &input_topic)
    };
    let split = wait_for(LONG, "both replicas to own input partitions", || {
        let (pa, pb) = (owned(&a), owned(&b));
        if pa > 0.0 && pb > 0.0 && pa + pb == 6.0 {
            Ok((pa, pb))
        } else {
            Err(format!("{pa} and {pb}"))
        }
    });
    sc.step(format!("partitions split {split:?} between vw-a and vw-b"));

    let t0 = vitalwatch::clock::now_ms() - 300_000;
    let patients: Vec<String> = (0..PATIENTS).map(|i| format!("D-{i:06}")).collect();
    let send = |phase: &[(Metric, f64)], ts: i64| {
        let feeder = Feeder::new(&topics.client, &topics.input);
        for p in &patients {
            for &(metric, value) in phase {
                let device = format!("{metric}-monitor-{p}");
                feeder.send_keyed(
                    device.as_bytes(),
                    &observation(p, metric, value, ts, &device),
                );
            }
        }
        feeder.finish();
    };
    send(&CHART_SCORING_5, t0);
    topics.wait_committed_to_end(LONG);
    let mediums = wait_for(LONG, "news2_medium for every patient", || {
        let n = alerts_of(&topics)
            .iter()
            .filter(|a| a.rule_id == "news2_medium")
            .count();
        if n >= PATIENTS {
            Ok(n)
        } else {
            Err(format!("{n} of {PATIENTS}"))
        }
    });
    send(&CHART_OXYGEN, t0 + 1);
    topics.wait_committed_to_end(LONG);

    // The oracle: each patient's chart from the input's latest reading per parameter.
    let input = kafka::read_all(&topics.client, &topics.input);
    let now = vitalwatch::clock::now_ms();
    let mut charts: BTreeMap<String, BTreeMap<Metric, (i64, f64)>> = BTreeMap::new();
    let mut partitions_of: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for r in &input {
        let obs = decode(
            r.payload.as_deref().unwrap_or_default(),
            &vitalwatch::settings::defaults().decode_limits(),
            now,
        )
        .expect("valid input");
        let latest = charts
            .entry(obs.patient_id.to_string())
            .or_default()
            .entry(obs.metric)
            .or_insert((i64::MIN, 0.0));
        if obs.timestamp >= latest.0 {
            *latest = (obs.timestamp, obs.value);
        }
        partitions_of
            .entry(obs.patient_id.to_string())
            .or_default()
            .insert(r.partition);
    }
    let oracle: BTreeMap<&str, u8> = charts
        .iter()
        .map(|(p, chart)| {
            let score = chart
                .iter()
                .map(|(m, (_, v))| news2::score(*m, *v).unwrap_or(0))
                .sum();
            (p.as_str(), score)
        })
        .collect();
    let spread = partitions_of.values().map(BTreeSet::len).min().unwrap_or(0);
    assert!(spread >= 2, "each patient's readings span partitions");

    let alerts = wait_for(LONG, "news2_high for every patient", || {
        let alerts = alerts_of(&topics);
        let n = alerts.iter().filter(|a| a.rule_id == "news2_high").count();
        if n >= PATIENTS {
            Ok(alerts)
        } else {
            Err(format!("{n} of {PATIENTS}"))
        }
    });
    let mut high: BTreeMap<&str, &OwnedAlert> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a.rule_id == "news2_high") {
        assert!(
            high.insert(&alert.patient_id, alert).is_none(),
            "{}: news2_high twice",
            alert.patient_id
        );
    }
    let mut wrong = Vec::new();
    for (patient, score) in &oracle {
        match high.get(patient) {
            Some(alert) => {
                let chart = alert.news2.as_ref().expect("breakdown");
                if alert.value != f64::from(*score) || chart["missing"] != serde_json::json!([]) {
                    wrong.push(format!(
                        "{patient}: scored {} (missing {}), the full chart scores {score}",
                        alert.value, chart["missing"]
                    ));
                }
            }
            None => wrong.push(format!("{patient}: no news2_high (full chart {score})")),
        }
    }
    let misplaced: f64 = [&a, &b]
        .iter()
        .map(|vw| {
            vw.metrics().sum(
                "vitalwatch_messages_misplaced_total",
                &[("reason", "other_key")],
            )
        })
        .sum();
    for vw in [&mut a, &mut b] {
        let (status, _) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
        assert!(status.success(), "{status}\n{}", vw.tail(20));
    }
    sc.messages = Some(input.len());
    sc.lost = Some(0);
    sc.duplicates = Some(0);
    sc.note(format!(
        "2 replicas {split:?}, {PATIENTS} patients keyed by device over >= {spread} partitions each: \
         {mediums} news2_medium, {} news2_high scored {:?} (oracle {:?}); {misplaced} re-keyed",
        high.len(),
        high.values()
            .map(|a| a.value as u8)
            .collect::<BTreeSet<_>>(),
        oracle.values().collect::<BTreeSet<_>>()
    ));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(misplaced as usize, input.len(), "every reading re-keyed");
}
