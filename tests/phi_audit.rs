//! PHI audit (issue #10): a marker patient id and marker vital values go through the
//! pipeline as valid, alerting and invalid observations, across a rebalance and a
//! shutdown. The marker must appear in no log line at info or above, in no header of a
//! dead letter and nowhere in the Prometheus output. It must appear where it belongs (the
//! dead letters' key and payload, the alerts), and a debug line carrying it must be
//! found, so that a capture that saw nothing cannot pass the test.
//!
//! Its own binary: it installs the process-wide log subscriber (at TRACE, with `log`
//! records of librdkafka bridged in) and the Prometheus recorder.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::cluster::{Cluster, fast_group_timeouts, start};
use support::traffic::{TEST_MAX_BYTES, observation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;
use vitalwatch::pipeline::Hooks;
use vitalwatch::rules::RuleSet;
use vitalwatch::telemetry::LogFormat;
use vitalwatch::telemetry::{self, Capture};

/// The marker patient id. Its tail alone is also searched for, so that a truncated or
/// re-cased id is caught too.
const MARKER_ID: &str = "PHI-MARKER-7f3a9c";
const MARKER_TAIL: &str = "7f3a9c";
/// Marker vital values: digits no counter, offset or duration is likely to spell.
const HR_ALERT: &str = "173.3719";
const SPO2_ALERT: &str = "81.1937";
const RR_NORMAL: &str = "19.7331";
const TEMP_NORMAL: &str = "36.7113";
const HR_IMPLAUSIBLE: &str = "317.3719";
const HR_IN_BPM: &str = "77.3719";

fn markers() -> [&'static str; 8] {
    [
        MARKER_ID,
        MARKER_TAIL,
        HR_ALERT,
        SPO2_ALERT,
        RR_NORMAL,
        TEMP_NORMAL,
        HR_IMPLAUSIBLE,
        HR_IN_BPM,
    ]
}

/// The markers `text` contains.
fn leaks(text: &str) -> Vec<&'static str> {
    markers().into_iter().filter(|m| text.contains(m)).collect()
}

/// Every line logged in this process, as JSON, from TRACE up.
fn install_log_capture() -> Capture {
    let capture = Capture::new();
    let subscriber =
        telemetry::with_filter(EnvFilter::new("trace"), LogFormat::Json, capture.clone());
    // `try_init`, unlike `set_global_default`, also routes `log` records (librdkafka's
    // client logs through rdkafka) into the subscriber.
    subscriber
        .try_init()
        .expect("the first and only log subscriber of this binary");
    capture
}

/// An observation as text, to be edited into a malformed one.
fn obs(patient: &str, metric: &str, value: &str, ts: i64) -> String {
    String::from_utf8(observation(patient, metric, value, ts)).expect("UTF-8")
}

/// The audit traffic: (key, payload, expected DLQ reason or None for valid). Every
/// message carries the marker id in its key, its payload or both.
fn marker_messages(now: i64) -> Vec<(String, Vec<u8>, Option<&'static str>)> {
    let mut out: Vec<(String, Vec<u8>, Option<&'static str>)> = Vec::new();
    let mut add = |key: &str, payload: Vec<u8>, reason: Option<&'static str>| {
        out.push((key.to_owned(), payload, reason));
    };
    let m = MARKER_ID;
    for round in 0..5i64 {
        let ts = now - 60_000 + round * 1_000;
        // Valid, normal.
        add(m, obs(m, "respiratory_rate", RR_NORMAL, ts).into(), None);
        add(m, obs(m, "temperature", TEMP_NORMAL, ts + 1).into(), None);
        // Valid, alerting (and, with the NEWS2 score, escalating).
        add(m, obs(m, "heart_rate", HR_ALERT, ts + 2).into(), None);
        add(m, obs(m, "spo2", SPO2_ALERT, ts + 3).into(), None);
        // Invalid, one per reason; the marker value or id is what is wrong where it can be.
        add(
            m,
            obs(m, "heart_rate", HR_IMPLAUSIBLE, ts).into(),
            Some("out_of_range"),
        );
        add(
            m,
            obs(m, "heart_rate", HR_IN_BPM, ts)
                .replace('}', r#","unit":"bpm"}"#)
                .into(),
            Some("bad_unit"),
        );
        add(
            m,
            obs(m, "heart_rate", &format!("\"{HR_ALERT}\""), ts).into(),
            Some("wrong_type"),
        );
        add(
            m,
            obs(&format!(r"{m}\u0007"), "heart_rate", HR_ALERT, ts).into(),
            Some("bad_patient_id"),
        );
        add(
            &format!("{m} "),
            obs(&format!("{m} {HR_ALERT}"), "spo2", SPO2_ALERT, ts).into(),
            Some("bad_patient_id"),
        );
        add(
            m,
            obs(m, &format!("pulse_{m}_{HR_ALERT}"), HR_ALERT, ts).into(),
            Some("unknown_metric"),
        );
        add(
            m,
            obs(m, "heart_rate", HR_ALERT, 1_234).into(),
            Some("bad_timestamp"),
        );
        add(
            m,
            format!(r#"{{"patientId":"{m}","metric":"spo2","value":{SPO2_ALERT}"#).into(),
            Some("invalid_json"),
        );
        add(
            m,
            format!(r#"{{"patientId":"{m}","metric":"spo2","timestamp":{ts}}}"#).into(),
            Some("missing_field"),
        );
        let mut not_utf8 = obs(m, "spo2", SPO2_ALERT, ts).into_bytes();
        not_utf8.insert(3, 0xff);
        add(m, not_utf8, Some("not_utf8"));
        let pad = format!("{m}:{HR_ALERT};").repeat(TEST_MAX_BYTES / 20 + 1);
        add(
            m,
            obs(m, "heart_rate", HR_ALERT, ts)
                .replace('}', &format!(r#","note":"{pad}"}}"#))
                .into(),
            Some("too_large"),
        );
    }
    out
}

/// The marker through valid, alerting and invalid paths, a rebalance and shutdown: in no
/// info+ log line, no dead-letter header and no metric; present in the dead letters and
/// alerts, and found by the same scan in a debug line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_patient_data_never_reaches_logs_dlq_headers_or_metrics() {
    let t0 = Instant::now();
    let logs = install_log_capture();
    let prometheus = vitalwatch::metrics::install().expect("recorder");
    // The scan must see patient data in a line when there is some: a canary below info.
    tracing::debug!(
        patient = MARKER_ID,
        value = HR_ALERT,
        "phi audit canary (debug)"
    );

    let cluster = Cluster::new(4);
    let now = vitalwatch::clock::now_ms();
    let messages = marker_messages(now);
    let invalid = messages.iter().filter(|(_, _, r)| r.is_some()).count();
    let kv: Vec<(String, Vec<u8>)> = messages
        .iter()
        .map(|(k, p, _)| (k.clone(), p.clone()))
        .collect();
    let (first_half, second_half) = kv.split_at(kv.len() / 2);

    let group = "phi-audit";
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    config.shutdown_timeout = Duration::from_secs(5);
    let rules = || std::sync::Arc::new(RuleSet::news2_red_flags());

    // One member reads the first half; a second joins (rebalance: revoke and assign),
    // the rest arrives; the first leaves (another rebalance); then shutdown.
    let a = start(config.clone(), rules(), Hooks::default());
    cluster.produce(first_half).await;
    assert!(
        a.wait_for(Duration::from_secs(30), |s| s.counts().consumed as usize
            >= first_half.len())
            .await,
        "first member: {:?}",
        a.status.counts()
    );
    let b = start(config.clone(), rules(), Hooks::default());
    assert!(
        b.wait_for(Duration::from_secs(30), |s| s.assigned_partitions() > 0)
            .await,
        "the second member never got a partition"
    );
    cluster.produce(second_half).await;
    let end = cluster.end_offsets();
    // Partitions no message went to have no committed offset (-1).
    let all_committed = || {
        let committed = cluster.committed(group);
        let end = cluster.end_offsets();
        (0..end.len()).all(|p| end[p] == 0 || committed[p] == end[p])
    };
    let committed_all = async {
        while !all_committed() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(60), committed_all)
            .await
            .is_ok(),
        "committed {:?}, end {end:?}",
        cluster.committed(group)
    );
    let report_a = a.stop().await;
    assert!(
        b.wait_for(Duration::from_secs(30), |s| s.assigned_partitions() == 4)
            .await,
        "the second member never took over every partition"
    );
    let report_b = b.stop().await;
    assert!(
        report_a.clean && report_b.clean,
        "{report_a:?} {report_b:?}"
    );
    assert!(all_committed(), "{:?}", cluster.committed(group));

    // Where the marker belongs: dead letters' key and payload, and the alerts.
    let dlq = cluster.read_all(&cluster.dlq, invalid, Duration::from_secs(30));
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in &dlq {
        *reasons
            .entry(r.headers["vitalwatch.error.reason"].clone())
            .or_default() += 1;
    }
    assert!(
        dlq.len() >= invalid,
        "{} dead letters of {invalid}",
        dlq.len()
    );
    assert_eq!(reasons.len(), 10, "every reason code: {reasons:?}");
    let in_payload = dlq
        .iter()
        .filter(|r| String::from_utf8_lossy(r.value()).contains(MARKER_ID))
        .count();
    let in_key = dlq
        .iter()
        .filter(|r| {
            r.key
                .as_deref()
                .is_some_and(|k| String::from_utf8_lossy(k).contains(MARKER_ID))
        })
        .count();
    assert!(in_payload >= invalid && in_key >= invalid);
    let alerts = cluster.read_all(&cluster.alerts, 1, Duration::from_secs(30));
    let alert_text: String = alerts
        .iter()
        .map(|r| String::from_utf8_lossy(r.value()).into_owned())
        .collect();
    assert!(
        alert_text.contains(MARKER_ID) && alert_text.contains(HR_ALERT),
        "no alert for the marker patient: {} alerts",
        alerts.len()
    );

    // Nowhere in a dead letter's headers.
    for r in &dlq {
        for (name, value) in &r.headers {
            let found = leaks(value);
            assert!(
                found.is_empty(),
                "dead letter p{}/{} header {name} carries {found:?}: {value}",
                r.partition,
                r.offset
            );
        }
    }

    // Nowhere in the metrics.
    let scrape = prometheus.render();
    assert!(scrape.contains("vitalwatch_messages_invalid_total"));
    let found = leaks(&scrape);
    assert!(found.is_empty(), "/metrics carries {found:?}");

    // No log line at info or above; the debug canary is seen by the same scan.
    let logged = logs.contents();
    let mut by_level: BTreeMap<String, usize> = BTreeMap::new();
    let mut info_plus_leaks = Vec::new();
    let mut below_info_with_marker = Vec::new();
    for line in logged.lines() {
        let level = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["level"].as_str().map(str::to_owned))
            // A line that is no JSON object counts as info: it is checked, not skipped.
            .unwrap_or_else(|| "UNPARSED".to_owned());
        *by_level.entry(level.clone()).or_default() += 1;
        let found = leaks(line);
        if found.is_empty() {
            continue;
        }
        match level.as_str() {
            "DEBUG" | "TRACE" => below_info_with_marker.push(line.to_owned()),
            _ => info_plus_leaks.push(format!("{found:?} in {line}")),
        }
    }
    assert!(
        info_plus_leaks.is_empty(),
        "patient data in logs at info or above:\n{}",
        info_plus_leaks.join("\n")
    );
    assert!(
        below_info_with_marker
            .iter()
            .any(|l| l.contains("phi audit canary")),
        "the capture did not see the debug canary: {by_level:?}"
    );
    // The paths this audit is about were logged: assignment, revoke, shutdown.
    for event in ["partitions assigned", "partitions revoked"] {
        assert!(logged.contains(event), "no {event:?} line logged");
    }
    assert!(
        by_level.get("INFO").copied().unwrap_or(0) >= 4,
        "{by_level:?}"
    );
    eprintln!(
        "phi audit: {} messages ({invalid} invalid, reasons {reasons:?}), {} dead letters, \
         {} alerts; log lines by level {by_level:?}; lines below info carrying a marker: {} \
         (canary included); took {:?}",
        messages.len(),
        dlq.len(),
        alerts.len(),
        below_info_with_marker.len(),
        t0.elapsed()
    );
}
