//! Stateful clinical rules and hot reload, through the whole pipeline on the mock cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vitalwatch::alert::{OwnedAlert, Source, alert_id};
use vitalwatch::pipeline::Hooks;
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::live::{LiveRules, Reloader};
use vitalwatch::vitals::decode;

use crate::helpers::*;

const MIN: i64 = 60_000;

/// One NEWS2 round: all seven parameters of `patient` at `at`, as a bedside monitor and a
/// nurse's chart would send them.
fn round(patient: &str, at: i64, chart: [f64; 7]) -> Vec<(String, Vec<u8>)> {
    let metrics = [
        "respiratory_rate",
        "spo2",
        "supplemental_oxygen",
        "systolic_bp",
        "heart_rate",
        "consciousness",
        "temperature",
    ];
    metrics
        .iter()
        .zip(chart)
        .map(|(metric, value)| {
            let payload = format!(
                r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{at}}}"#
            );
            (patient.to_owned(), payload.into_bytes())
        })
        .collect()
}

/// Charts in NEWS2 parameter order: RR, SpO2, O2, SBP, pulse, consciousness, temperature.
/// None of them breaches a single-parameter red flag (no 3 in any parameter).
const WELL: [f64; 7] = [16.0, 97.0, 0.0, 125.0, 72.0, 0.0, 36.8]; // aggregate 0
/// RR 22 (2), SpO2 95 (1), pulse 105 (1), temperature 38.5 (1): aggregate 5.
const UNWELL: [f64; 7] = [22.0, 95.0, 0.0, 125.0, 105.0, 0.0, 38.5];
/// RR 23 (2), SpO2 93 (2), SBP 105 (1), pulse 115 (2), temperature 38.6 (1): aggregate 8.
const SICK: [f64; 7] = [23.0, 93.0, 0.0, 105.0, 115.0, 0.0, 38.6];

/// A deteriorating patient observed every 10 minutes over three hours (an hour well, an
/// hour unwell, an hour sick), and a stable patient on the same schedule: the first
/// raises `news2_medium` and later `news2_high` (with reminders no closer than the 5 min
/// cooldown), the second nothing. The shipped rules, stateful, in the real pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deteriorating_patient_raises_news2_medium_then_high_and_a_stable_one_nothing() {
    let cluster = Cluster::new(2);
    let start = vitalwatch::clock::now_ms() - 3 * 60 * MIN;
    let mut msgs = Vec::new();
    for i in 0..18 {
        let at = start + i * 10 * MIN;
        let chart = match i {
            0..6 => WELL,
            6..12 => UNWELL,
            _ => SICK,
        };
        msgs.extend(round("P-DETERIORATING", at, chart));
        msgs.extend(round("P-STABLE", at, WELL));
    }
    cluster.produce(&msgs).await;

    let rules = Arc::new(RuleSet::news2_red_flags());
    let running = start_pipeline(&cluster, "news2", rules);
    let all = msgs.len() as u64;
    assert!(
        running
            .wait_for(Duration::from_secs(60), |s| s.counts().evaluated >= all)
            .await,
        "{:?}",
        running.status.counts()
    );
    let report = running.stop().await;
    assert!(report.clean, "{report:?}");

    let alerts = cluster.alerts(1);
    let stable: Vec<&OwnedAlert> = alerts
        .iter()
        .filter(|a| a.patient_id == "P-STABLE")
        .collect();
    assert!(stable.is_empty(), "stable patient alerted: {stable:?}");
    let det: Vec<&OwnedAlert> = alerts
        .iter()
        .filter(|a| a.patient_id == "P-DETERIORATING")
        .collect();
    let sequence: Vec<&str> = det.iter().map(|a| a.rule_id.as_str()).collect();
    eprintln!("deteriorating patient's alerts: {sequence:?}");

    // Medium first, high later; only NEWS2 (no red flag was breached); reminders of one
    // rule at least the cooldown apart in observation time.
    let mut episodes: Vec<&str> = sequence.clone();
    episodes.dedup();
    assert_eq!(episodes, ["news2_medium", "news2_high"]);
    for pair in det.windows(2) {
        if pair[0].rule_id == pair[1].rule_id {
            assert!(
                pair[1].observed_at - pair[0].observed_at >= 5 * MIN,
                "repeat within the cooldown: {pair:?}"
            );
        }
    }
    // Medium when the unwell chart is complete (the 4th abnormal value arrives at the
    // first unwell round), high at the first sick round: not a round late.
    let first_medium = det[0];
    assert_eq!(first_medium.observed_at, start + 6 * 10 * MIN);
    assert_eq!(
        (first_medium.severity.as_str(), first_medium.value),
        ("medium", 5.0)
    );
    let first_high = det.iter().find(|a| a.rule_id == "news2_high").unwrap();
    assert_eq!(first_high.observed_at, start + 12 * 10 * MIN);
    assert_eq!(first_high.severity, "high");
    assert!(first_high.value >= 7.0, "{first_high:?}");

    // The alert carries the breakdown: every parameter scored, none missing or stale.
    let chart = first_high.news2.as_ref().expect("news2 breakdown");
    assert_eq!(chart["score"], first_high.value as u64);
    let params = chart["parameters"].as_object().unwrap();
    assert_eq!(params.len(), 7, "{chart}");
    assert_eq!(params["spo2"]["score"], 2);
    assert_eq!(params["spo2"]["value"], 93.0);
    let sum: u64 = params.values().map(|p| p["score"].as_u64().unwrap()).sum();
    assert_eq!(sum, first_high.value as u64);
    assert_eq!(chart["missing"], serde_json::json!([]));
    assert_eq!(chart["stale"], serde_json::json!([]));
    assert_eq!(first_high.metric, "news2");
    assert_eq!(first_high.status, "firing");
}

fn start_pipeline(cluster: &Cluster, group: &str, rules: impl Into<LiveRules>) -> Running {
    let mut config = cluster.config(group);
    config.workers = 2;
    start(config, rules, Hooks::default())
}

/// Replaces the rules file while the pipeline works through a backlog: a valid new set is
/// swapped in between messages (every later message is evaluated with it), an invalid
/// file is rejected and the set in force stays; no message is lost or evaluated twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_swaps_between_messages_and_rejects_a_bad_file() {
    let cluster = Cluster::new(4);
    let dir = tempdir();
    let file = dir.join("rules.toml");
    // Every-breach rules, so that each message's alerts follow from the message and the
    // rule set it was evaluated with.
    let v1 = RuleSet::news2_red_flags().stateless();
    std::fs::write(&file, v1.to_toml()).unwrap();
    // v2: v1 plus a rule that fires on every pulse reading.
    let watch = "[[threshold]]\nid = \"pulse_watch\"\nmetric = \"heart_rate\"\nabove = 0\nseverity = \"low\"\ncooldown_secs = 0\n";
    let v2_text = format!("{}{watch}", v1.to_toml());

    let live = LiveRules::new(Arc::new(RuleSet::load(&file).unwrap()));
    let reloader = Reloader::new(&file, live.clone(), Box::new(|_| Ok(())));
    let stop_reloader = CancellationToken::new();
    reloader.spawn(
        Some(Duration::from_millis(50)),
        vitalwatch::signals::Hangups::none(),
        stop_reloader.clone(),
    );
    let running = start_pipeline(&cluster, "reload", live.clone());

    // Phase 1 under load: a backlog being worked through while the file is replaced.
    let phase1 = traffic(30_000, 400, 101);
    let producing = {
        let phase1 = phase1.clone();
        let cluster_producer = cluster.producer();
        let topic = cluster.input.clone();
        tokio::spawn(async move { produce(&cluster_producer, &topic, &phase1).await })
    };
    assert!(
        running
            .wait_for(Duration::from_secs(60), |s| s.counts().evaluated >= 5_000)
            .await
    );
    replace(&file, &v2_text);
    let swapped = wait_until(Duration::from_secs(10), || live.load().len() == 10).await;
    assert!(swapped, "the new rules were not applied");
    let evaluated_at_swap = running.status.counts().evaluated;
    producing.await.unwrap();

    // Phase 2: produced after the swap, all under v2.
    let phase2 = traffic(3_000, 400, 0);
    cluster.produce(&phase2).await;

    // An invalid file: rejected, v2 stays.
    let rejected_before = reload_count("rejected");
    replace(&file, &format!("{v2_text}[[threshold]]\nid = \"broken\"\n"));
    let rejected = wait_until(Duration::from_secs(10), || {
        reload_count("rejected") > rejected_before
    })
    .await;
    assert!(rejected, "the invalid file was not reported");
    assert_eq!(live.load().len(), 10, "the rules in force changed");

    // Phase 3: after the rejection, still v2.
    let phase3 = traffic(3_000, 400, 0);
    cluster.produce(&phase3).await;

    let input = cluster.read_all(
        &cluster.input,
        phase1.len() + phase2.len() + phase3.len(),
        Duration::from_secs(30),
    );
    let limits = test_limits();
    let now = vitalwatch::clock::now_ms();
    let valid = input
        .iter()
        .filter(|r| decode(r.value(), &limits, now).is_ok())
        .count() as u64;
    assert!(
        running
            .wait_for(Duration::from_secs(60), |s| s.counts().evaluated >= valid)
            .await
    );
    let report = running.stop().await;
    stop_reloader.cancel();
    assert!(report.clean, "{report:?}");
    // Evaluated exactly once each: the worker count of evaluations is the valid count.
    assert_eq!(report.counts.evaluated, valid, "{:?}", report.counts);
    assert_eq!(cluster.committed("reload"), cluster.end_offsets());

    // Alerts: all of v1's for every message; pulse_watch for every pulse reading
    // evaluated after the swap, which includes all of phases 2 and 3.
    let expected_v1 = oracle(&cluster, &input, &v1);
    let alerts = cluster.alerts(expected_v1.alert_ids.len());
    let ids: BTreeSet<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(ids.len(), alerts.len(), "an alert published twice");
    let (watch_ids, v1_ids): (BTreeSet<String>, BTreeSet<String>) =
        ids.into_iter().partition(|id| {
            alerts
                .iter()
                .any(|a| &a.alert_id == id && a.rule_id == "pulse_watch")
        });
    assert_eq!(v1_ids, expected_v1.alert_ids, "v1's alerts, exactly");

    let by_partition_offset: BTreeMap<(i32, i64), &Record> =
        input.iter().map(|r| ((r.partition, r.offset), r)).collect();
    let pulse_id = |r: &Record| {
        let source = Source {
            topic: &cluster.input,
            partition: r.partition,
            offset: r.offset,
        };
        alert_id(&source, "pulse_watch").to_string()
    };
    let is_pulse = |r: &Record| {
        decode(r.value(), &limits, now)
            .is_ok_and(|o| o.metric == vitalwatch::vitals::Metric::HeartRate)
    };
    // Phase 2 and 3 messages: the last phase2+phase3 records of each partition by
    // production order are the ones whose payload belongs to those phases.
    let later: BTreeSet<&[u8]> = phase2
        .iter()
        .chain(&phase3)
        .map(|(_, p)| p.as_slice())
        .collect();
    let mut later_pulses = 0;
    let mut early_pulses = (0, 0);
    for r in by_partition_offset.values() {
        if !is_pulse(r) {
            assert!(!watch_ids.contains(&pulse_id(r)));
            continue;
        }
        if later.contains(r.value()) {
            later_pulses += 1;
            assert!(
                watch_ids.contains(&pulse_id(r)),
                "pulse after the swap without the new rule: p{} @{}",
                r.partition,
                r.offset
            );
        } else {
            early_pulses.0 += 1;
            if watch_ids.contains(&pulse_id(r)) {
                early_pulses.1 += 1;
            }
        }
    }
    assert!(later_pulses > 500, "{later_pulses}");
    // Per patient, once a phase-1 pulse was evaluated with v2, every later one was too (a
    // worker never goes back to an older set). Per patient, not per partition: a
    // partition's patients are spread over workers, and each worker takes the new set at
    // its own next batch, so a later offset of another patient may still be evaluated in
    // a batch that began before the swap.
    let mut by_patient: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for r in by_partition_offset.values() {
        if !is_pulse(r) || later.contains(r.value()) {
            continue;
        }
        if let Ok(o) = decode(r.value(), &limits, now) {
            by_patient
                .entry(o.patient_id.into_owned())
                .or_default()
                .push(watch_ids.contains(&pulse_id(r)));
        }
    }
    for (patient, flags) in &by_patient {
        let first_new = flags.iter().position(|&f| f).unwrap_or(flags.len());
        assert!(
            flags[first_new..].iter().all(|&f| f),
            "patient {patient} went back to the old rules"
        );
    }
    eprintln!(
        "hot reload: swap after {evaluated_at_swap} evaluations; phase-1 pulses {} of which {} under the new rules; {later_pulses} later pulses all under it",
        early_pulses.0, early_pulses.1
    );
}

/// Replaces `file` as docs/rules.md advises: a new file renamed over the old one.
fn replace(file: &std::path::Path, text: &str) {
    let tmp = file.with_extension("toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

async fn wait_until(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// `vitalwatch_rules_reloads_total{result}` as the recorder has it now.
fn reload_count(result: &str) -> f64 {
    let handle = vitalwatch::metrics::install().unwrap();
    let text = handle.render();
    let prefix = format!("vitalwatch_rules_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "reload-{}-{}",
        std::process::id(),
        vitalwatch::clock::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
