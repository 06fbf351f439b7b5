//! Patient context (`kafka.context_topic`): each patient's readings are evaluated under
//! the context written for them, bad context records are dead-lettered while the
//! previous context stays in force, and a restart reads every context again before the
//! first reading.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use vitalwatch::alert::OwnedAlert;
use vitalwatch::pipeline::Hooks;
use vitalwatch::rules::RuleSet;

use crate::helpers::*;

/// Two red flags, `spo2_low` with its Scale 2 threshold, each ending with a resolved
/// event.
fn rules() -> Arc<RuleSet> {
    let text = r#"
[defaults]
emit_resolved = true

[[threshold]]
id = "spo2_low"
metric = "spo2"
below = 92
scale_2_below = 84
clear_margin = 1
severity = "medium"

[[threshold]]
id = "heart_rate_high"
metric = "heart_rate"
above = 130
severity = "medium"
"#;
    Arc::new(RuleSet::parse(text, std::path::Path::new("context.toml")).expect("rules"))
}

/// Writes `(key, value)` records to `topic` keyed as the readings are (the same
/// partitioner, so each patient's context shares its readings' partition); `None` is a
/// tombstone.
async fn write(producer: &FutureProducer, topic: &str, records: &[(&str, Option<&str>)]) {
    for (key, value) in records {
        let mut record: FutureRecord<'_, str, str> = FutureRecord::to(topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("delivered");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

fn readings(list: &[(&str, &str, f64, i64)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|&(p, m, v, t)| (p.to_owned(), observation(p, m, v, t)))
        .collect()
}

fn of<'a>(alerts: &'a [OwnedAlert], patient: &str) -> Vec<&'a OwnedAlert> {
    alerts.iter().filter(|a| a.patient_id == patient).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readings_are_evaluated_under_their_patients_context_and_bad_records_are_dead_lettered() {
    let cluster = Cluster::new(2).with_context();
    let topic = cluster.context.clone().expect("context topic");
    let producer = cluster.producer();
    let t = vitalwatch::clock::now_ms() - 60_000;
    write(
        &producer,
        &topic,
        &[
            // COPD on Scale 2: 89 % is on target.
            ("C-1", Some(r#"{"patientId":"C-1","spo2Scale":2}"#)),
            // An athlete's own limit.
            (
                "C-2",
                Some(
                    r#"{"patientId":"C-2","overrides":{"heart_rate_high":{"above":150}},"updatedBy":"ward-7"}"#,
                ),
            ),
            // Off the ward for a procedure: alerts still published, marked suppressed.
            (
                "C-3",
                Some(r#"{"patientId":"C-3","suppress":{"until":9999999999999,"reason":"procedure"}}"#),
            ),
            // Scale 2, then back to the defaults.
            ("C-4", Some(r#"{"patientId":"C-4","spo2Scale":2}"#)),
            ("C-4", None),
            // Two bad records: the earlier good one of C-1 stays in force.
            ("C-1", Some("not json")),
            ("C-1", Some(r#"{"patientId":"C-9","spo2Scale":1}"#)),
        ],
    )
    .await;
    let input = readings(&[
        ("C-0", "spo2", 89.0, t),
        ("C-1", "spo2", 89.0, t),
        ("C-2", "heart_rate", 140.0, t),
        ("C-2", "heart_rate", 155.0, t + 1000),
        ("C-3", "heart_rate", 140.0, t),
        ("C-4", "spo2", 89.0, t),
    ]);
    cluster.produce(&input).await;

    let group = "context-group";
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    // The test's producer is librdkafka's, keyed: crc32, the partitioner the pipeline
    // checks context records against.
    config.input_partitioner = vitalwatch::pipeline::repartition::Partitioner::Crc32;
    let running = start(config.clone(), rules(), Hooks::default());
    assert!(
        running
            .wait_for(Duration::from_secs(60), |s| s.counts().evaluated >= 6)
            .await
    );
    let alerts = cluster.alerts(4);
    // The defaults: 89 % raises spo2_low (Scale 1), for C-0 and for C-4 after its reset.
    for p in ["C-0", "C-4"] {
        let a = of(&alerts, p);
        assert_eq!(a.len(), 1, "{p}: {a:?}");
        assert_eq!(a[0].rule_id, "spo2_low");
        assert_eq!(a[0].spo2_scale, Some(1));
    }
    assert!(
        of(&alerts, "C-4")[0].context_version.is_none(),
        "a tombstone leaves no context"
    );
    // Scale 2 in force despite the two bad records after it.
    assert!(of(&alerts, "C-1").is_empty(), "{:?}", of(&alerts, "C-1"));
    // The override: 140 is within C-2's limit, 155 is not; the alert names 150.
    let c2 = of(&alerts, "C-2");
    assert_eq!(c2.len(), 1, "{c2:?}");
    assert_eq!((c2[0].value, c2[0].threshold), (155.0, 150.0));
    assert!(c2[0].context_version.is_some());
    assert_eq!(c2[0].suppressed, Some(false));
    // Suppressed, published all the same.
    let c3 = of(&alerts, "C-3");
    assert_eq!(c3.len(), 1, "{c3:?}");
    assert_eq!(c3[0].suppressed, Some(true));
    assert_eq!(c3[0].suppress_reason.as_deref(), Some("procedure"));
    assert_eq!(alerts.len(), 4, "{alerts:?}");

    let dlq = cluster.read_all(&cluster.dlq, 2, Duration::from_secs(20));
    assert_eq!(dlq.len(), 2, "two bad context records");
    for r in &dlq {
        assert_eq!(r.header("vitalwatch.error.reason"), Some("bad_context"));
        assert_eq!(r.header("vitalwatch.source.topic"), Some(topic.as_str()));
        let message = r.header("vitalwatch.error.message").unwrap_or_default();
        assert!(
            !message.contains("C-9"),
            "the message quotes the record: {message}"
        );
    }
    running.stop().await;

    // A restart reads every context again before the first reading it evaluates.
    let later = readings(&[
        ("C-1", "spo2", 89.5, t + 2000),
        ("C-2", "heart_rate", 145.0, t + 2000),
    ]);
    cluster.produce(&later).await;
    let running = start(config, rules(), Hooks::default());
    assert!(
        running
            .wait_for(Duration::from_secs(60), |s| s.counts().evaluated >= 2)
            .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.stop().await;
    let after = cluster.alerts(4);
    assert_eq!(after.len(), 4, "no new alert after the restart: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_context_written_while_running_applies_to_the_readings_read_after_it() {
    let cluster = Cluster::new(1).with_context();
    let topic = cluster.context.clone().expect("context topic");
    let producer = cluster.producer();
    let t = vitalwatch::clock::now_ms() - 60_000;
    let group = "context-change";
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    let running = start(config, rules(), Hooks::default());
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.readiness().is_ok())
            .await
    );
    // Scale 1: 89 % opens a spo2_low episode.
    cluster
        .produce(&readings(&[("C-1", "spo2", 89.0, t)]))
        .await;
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.counts().evaluated >= 1)
            .await
    );
    // Scale 2 from now on: the same reading ends the episode (cleared on this scale).
    write(
        &producer,
        &topic,
        &[("C-1", Some(r#"{"patientId":"C-1","spo2Scale":2}"#))],
    )
    .await;
    // The context thread follows its partitions live; give it a moment to be read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster
        .produce(&readings(&[("C-1", "spo2", 89.0, t + 1000)]))
        .await;
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.counts().evaluated >= 2)
            .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let alerts = cluster.alerts(1);
    let phases: Vec<(&str, Option<u8>)> = alerts
        .iter()
        .map(|a| (a.phase.as_str(), a.spo2_scale))
        .collect();
    assert_eq!(
        phases,
        [("start", Some(1)), ("end", Some(2))],
        "Scale 1 opened the episode, Scale 2 ended it: {alerts:?}"
    );
}
