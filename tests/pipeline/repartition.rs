//! One patient's observations meet in one replica whatever their Kafka key (field report
//! item 2), and a consumer group's members beyond the partition count (item 8) or in a
//! long revoke drain (item 7) answer the probes as Kubernetes needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use vitalwatch::clock::now_ms;
use vitalwatch::pipeline::Hooks;
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::news2;
use vitalwatch::vitals::Metric;

use super::helpers::*;

/// A complete NEWS2 chart in two phases: five parameters scoring 1 each and an alert
/// consciousness (aggregate 5: `news2_medium`), then oxygen (2), making 7 (`news2_high`).
/// Every reading is keyed by its own device, so a patient's seven readings land on
/// partitions that both replicas own.
fn chart(patient: &str, phase: u8, ts: i64) -> Vec<(String, Vec<u8>)> {
    let readings: &[(Metric, f64)] = match phase {
        1 => &CHART_SCORING_5,
        _ => &CHART_OXYGEN,
    };
    readings
        .iter()
        .map(|&(metric, value)| {
            let device = format!("monitor-{patient}-{metric}");
            let payload = format!(
                r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{ts},"deviceId":"{device}"}}"#
            );
            (device, payload.into_bytes())
        })
        .collect()
}

/// The aggregate the oracle computes from the whole input of one patient.
fn full_chart_score() -> u8 {
    let mut total = 0;
    for phase in [1, 2] {
        for (_, payload) in chart("P", phase, 0) {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let metric = Metric::from_wire(v["metric"].as_str().unwrap()).unwrap();
            total += news2::score(metric, v["value"].as_f64().unwrap()).unwrap();
        }
    }
    total
}

/// Two replicas in one group, each patient's readings keyed by device over partitions
/// that both own: every patient gets `news2_medium` and then `news2_high` scored from the
/// full chart, nothing is lost, and what went through the repartition topic is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_keyed_readings_meet_in_one_chart_across_two_replicas() {
    let cluster = Cluster::new(4).with_repartition();
    let group = "repartition";
    let rules = Arc::new(RuleSet::news2_red_flags());
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    let a = start(config.clone(), rules.clone(), Hooks::default());
    let b = start(config, rules.clone(), Hooks::default());
    let both = |r: &Running| r.status.assigned_partitions() > 0;
    for _ in 0..600 {
        if both(&a) && both(&b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        both(&a) && both(&b),
        "both replicas own partitions: {} and {}",
        a.status.assigned_partitions(),
        b.status.assigned_partitions()
    );

    let patients: Vec<String> = (0..20).map(|i| format!("P-{i:03}")).collect();
    let t = now_ms() - 120_000;
    let phase1: Vec<_> = patients.iter().flat_map(|p| chart(p, 1, t)).collect();
    cluster.produce(&phase1).await;
    let medium = cluster.alerts(patients.len());
    assert_eq!(
        medium
            .iter()
            .filter(|a| a.rule_id == "news2_medium")
            .count(),
        patients.len(),
        "news2_medium for every patient from five readings on partitions of both replicas: {medium:?}"
    );
    let phase2: Vec<_> = patients.iter().flat_map(|p| chart(p, 2, t + 1)).collect();
    cluster.produce(&phase2).await;
    let alerts = cluster.alerts(2 * patients.len());

    let expected = full_chart_score();
    assert_eq!(expected, 7);
    let mut high: BTreeMap<&str, f64> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a.rule_id == "news2_high") {
        let chart = alert.news2.as_ref().expect("breakdown");
        assert_eq!(
            chart["missing"],
            serde_json::json!([]),
            "{}: a parameter missing from the chart",
            alert.patient_id
        );
        assert_eq!(chart["score"], expected);
        // Alerts name the original message, not its copy on the repartition topic.
        assert_eq!(alert.source.topic, cluster.input);
        assert!(high.insert(&alert.patient_id, alert.value).is_none());
    }
    assert_eq!(high.len(), patients.len(), "{alerts:?}");
    assert!(high.values().all(|&v| v == f64::from(expected)));

    let input = phase1.len() + phase2.len();
    let (ra, rb) = (a.stop().await, b.stop().await);
    assert!(ra.clean && rb.clean, "{ra:?} {rb:?}");
    assert_eq!(
        (ra.counts.forwarded + rb.counts.forwarded) as usize,
        input,
        "every device-keyed reading went through the repartition topic"
    );
    assert_eq!(
        (ra.counts.evaluated + rb.counts.evaluated) as usize,
        input,
        "and was evaluated once, from its copy"
    );
    // Both topics committed to their ends: nothing left behind in either.
    assert_eq!(cluster.committed(group), cluster.end_offsets());
    let repartition = cluster.repartition.as_deref().unwrap();
    let copies = cluster.read_all(repartition, input, Duration::from_secs(30));
    assert_eq!(copies.len(), input);
    for copy in &copies {
        // Keyed by patient, on the patient's home partition, saying where it came from.
        let key = String::from_utf8(copy.key.clone().unwrap()).unwrap();
        assert!(patients.contains(&key), "{key}");
        assert_eq!(copy.headers["vitalwatch.source.topic"], cluster.input);
        assert!(copy.headers["vitalwatch.source.key"].starts_with("monitor-"));
    }
    // A partition no copy went to has nothing to commit.
    let committed: Vec<i64> = committed_on(&cluster, group, repartition)
        .into_iter()
        .zip(end_offsets_of(&cluster, repartition))
        .map(|(c, end)| if c < 0 && end == 0 { 0 } else { c })
        .collect();
    assert_eq!(committed, end_offsets_of(&cluster, repartition));
}

/// A member beyond the partition count gets an empty assignment and is ready: a rollout
/// at full scale (a surge pod) must not wait for a partition that will never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_with_no_partition_is_ready() {
    let cluster = Cluster::new(1);
    let mut config = cluster.config("standby");
    fast_group_timeouts(&mut config);
    let rules = Arc::new(RuleSet::news2_red_flags().stateless());
    let a = start(config.clone(), rules.clone(), Hooks::default());
    let b = start(config, rules, Hooks::default());
    let settled = |a: &Running, b: &Running| {
        a.status.assigned_partitions() + b.status.assigned_partitions() == 1
            && a.status.readiness().is_ok()
            && b.status.readiness().is_ok()
    };
    let mut ok = false;
    for _ in 0..600 {
        if settled(&a, &b) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ok,
        "one owner, one standby, both ready: {:?} / {:?}",
        (a.status.assigned_partitions(), a.status.readiness()),
        (b.status.assigned_partitions(), b.status.readiness())
    );
    assert!(a.stop().await.clean);
    assert!(b.stop().await.clean);
}

/// A revoke that waits for in-flight work (the alert sink is down) keeps liveness: the
/// ingest loop is waiting within `pipeline.shutdown_timeout_secs`, not stuck, and a
/// liveness probe must not restart the pod in the middle of its drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_holds_through_a_long_revoke_drain() {
    let group = "drain-liveness";
    let cluster = Cluster::with_alerts_on_their_own_broker(2, group);
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    config.shutdown_timeout = Duration::from_secs(12);
    let running = start(
        config,
        Arc::new(RuleSet::news2_red_flags().stateless()),
        Hooks::default(),
    );
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.assigned_partitions() == 2)
            .await
    );
    // Alerts that cannot be delivered: their messages stay in flight.
    cluster.mock.broker_down(2).unwrap();
    let now = now_ms();
    let breaching: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let p = format!("L-{i}");
            let payload = observation(&p, "heart_rate", 150, now);
            (p, payload)
        })
        .collect();
    cluster.produce(&breaching).await;
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.counts().evaluated >= 20)
            .await
    );
    // Another member joins: the revoke waits up to 12 s for the undeliverable alerts.
    let other: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .unwrap();
    other.subscribe(&[&cluster.input]).unwrap();
    let probe = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let mut worst = None;
    let mut drained_for = Duration::ZERO;
    let mut last = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(12) && drained_for < Duration::from_secs(6) {
        let _ = other.poll(Duration::from_millis(100));
        if running.status.draining() {
            drained_for += last.elapsed();
        }
        last = std::time::Instant::now();
        if let Err(reason) = running.status.liveness(probe) {
            worst = Some((started.elapsed(), reason));
            break;
        }
    }
    assert_eq!(worst, None, "liveness failed during the drain");
    // The probe was asked well past its 3 s limit while the revoke was waiting.
    assert!(
        drained_for >= Duration::from_secs(5),
        "the revoke drained for {drained_for:?} only"
    );
    cluster.mock.broker_up(2).unwrap();
    drop(other);
    let report = running.stop().await;
    assert!(!report.crashed);
}

fn committed_on(cluster: &Cluster, group: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..cluster.partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    (0..cluster.partitions)
        .map(|p| {
            c.find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(-1001)
        })
        .collect()
}

fn end_offsets_of(cluster: &Cluster, topic: &str) -> Vec<i64> {
    let consumer = cluster.reader();
    (0..cluster.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .unwrap()
                .1
        })
        .collect()
}

/// A copy that fails when read back (here: stale) is dead-lettered as the input message
/// it was made from: the DLQ names that message, with its key, not the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fails_on_reading_back_is_dead_lettered_as_its_original() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let cluster = Cluster::new(2).with_repartition();
    let running = start(
        cluster.config("copy-dlq"),
        Arc::new(RuleSet::news2_red_flags()),
        Hooks::default(),
    );
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.assigned_partitions() == 2)
            .await
    );
    let old = now_ms() - 3 * 86_400_000;
    let payload = format!(r#"{{"patientId":"P-9","metric":"spo2","value":85,"timestamp":{old}}}"#);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "vitalwatch.source.topic",
            value: Some(cluster.input.as_str()),
        })
        .insert(Header {
            key: "vitalwatch.source.partition",
            value: Some("1"),
        })
        .insert(Header {
            key: "vitalwatch.source.offset",
            value: Some("41"),
        })
        .insert(Header {
            key: "vitalwatch.source.timestamp",
            value: Some("1764000000000"),
        })
        .insert(Header {
            key: "vitalwatch.source.key",
            value: Some("monitor-9"),
        });
    let repartition = cluster.repartition.clone().unwrap();
    cluster
        .producer()
        .send(
            FutureRecord::to(&repartition)
                .partition(0)
                .key("P-9")
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.counts().dlq >= 1)
            .await
    );
    running.stop().await;
    let dlq = cluster.read_all(&cluster.dlq, 1, Duration::from_secs(30));
    assert_eq!(dlq.len(), 1);
    let d = &dlq[0];
    assert_eq!(d.headers["vitalwatch.error.reason"], "stale");
    assert_eq!(d.headers["vitalwatch.source.topic"], cluster.input);
    assert_eq!(d.headers["vitalwatch.source.partition"], "1");
    assert_eq!(d.headers["vitalwatch.source.offset"], "41");
    assert_eq!(d.headers["vitalwatch.source.timestamp"], "1764000000000");
    assert_eq!(d.key.as_deref(), Some(&b"monitor-9"[..]));
    assert_eq!(d.value(), payload.as_bytes());
}
