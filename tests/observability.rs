//! Observability on the mock cluster: `/metrics` carries every metric of the contract
//! with its type and counts that match the traffic; `/readyz` follows assignment and the
//! alert sink; `/healthz` ignores the broker; the admin listener serves profiles that
//! pprof tooling reads and stays on loopback by default; logs name state changes and
//! never a patient.
//!
//! The Prometheus recorder and the log subscriber are process-wide, so the tests that run
//! a pipeline or the profiler take [`SERIAL`] and compare metrics before and after.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCoordinator;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use vitalwatch::pipeline::{Hooks, PipelineConfig, Status};
use vitalwatch::rules::RuleSet;
use vitalwatch::settings::Settings;
use vitalwatch::telemetry::LogFormat;
use vitalwatch::telemetry::{self, Capture};

mod support;

use support::cluster::{Cluster, Running, start_with};
use support::http::{Sample, Scrape, get_async, poll_get, poll_scrape, scrape_async, serve};

/// Pipelines and profiles one at a time: they share the recorder and the profiler.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The metrics table of design.md: name and Prometheus type. Written out here rather than
/// taken from `vitalwatch::metrics`, so a renamed constant fails the test.
const DESIGN_TABLE: [(&str, &str); 14] = [
    ("vitalwatch_messages_consumed_total", "counter"),
    ("vitalwatch_messages_invalid_total", "counter"),
    ("vitalwatch_alerts_emitted_total", "counter"),
    ("vitalwatch_dlq_published_total", "counter"),
    ("vitalwatch_sink_errors_total", "counter"),
    ("vitalwatch_processing_duration_seconds", "histogram"),
    ("vitalwatch_event_age_seconds", "histogram"),
    ("vitalwatch_worker_queue_depth", "gauge"),
    ("vitalwatch_inflight_messages", "gauge"),
    ("vitalwatch_consumer_lag", "gauge"),
    ("vitalwatch_committed_offset", "gauge"),
    ("vitalwatch_rebalances_total", "counter"),
    ("vitalwatch_workers", "gauge"),
    ("vitalwatch_build_info", "gauge"),
];

/// The metrics the clinical rules added (README, "Beyond the design's table"), with their
/// type and whether a pipeline without resolved events has a sample of them.
const RULE_STATE_TABLE: [(&str, &str, bool); 12] = [
    ("vitalwatch_alerts_resolved_total", "counter", false),
    ("vitalwatch_rules_reloads_total", "counter", true),
    ("vitalwatch_rules_loaded", "gauge", true),
    ("vitalwatch_rules_file_rejected", "gauge", true),
    ("vitalwatch_patient_states", "gauge", true),
    ("vitalwatch_patient_state_evictions_total", "counter", true),
    ("vitalwatch_messages_misplaced_total", "counter", true),
    ("vitalwatch_assigned_partitions", "gauge", true),
    ("vitalwatch_state_restores_total", "counter", true),
    // Only a restore that read records has samples.
    ("vitalwatch_state_records_restored_total", "counter", false),
    ("vitalwatch_state_records_written_total", "counter", true),
    ("vitalwatch_state_readings_skipped_total", "counter", true),
];

/// The standard process metrics every Prometheus client library exports.
const PROCESS_METRICS: [(&str, &str); 5] = [
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

/// Every label name the contract allows (plus `le` of histogram buckets, `result` of the
/// rules reloads and state records, `outcome` of state restores).
const ALLOWED_LABELS: [&str; 12] = [
    "topic",
    "reason",
    "rule",
    "severity",
    "sink",
    "worker",
    "partition",
    "event",
    "version",
    "le",
    "result",
    "outcome",
];

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// Runs known traffic through the pipeline and checks the scrape: every metric of the
/// table with its type, counters equal to what was sent, real histograms, lag and
/// committed offsets at the end of the log, labels free of patient data; and the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_has_every_metric_with_counts_matching_the_traffic() {
    let _serial = SERIAL.lock().await;
    let logs = logs();
    let log_start = logs.contents().len();

    let cluster = Cluster::with_brokers(1, 3);
    let status = Status::new();
    let (addr, _stop_listeners) = serve(status.clone()).await;
    let before = scrape_async(addr).await;

    let traffic = Traffic::new();
    cluster.produce(&traffic.messages).await;
    let running = start(config(&cluster, "metrics"), status.clone());

    let total = traffic.messages.len() as f64;
    let valid = total - traffic.invalid_total() as f64;
    let topic = [("topic", cluster.input.as_str())];
    let after = poll_scrape(addr, Duration::from_secs(60), |s| {
        let lag: Vec<f64> = s.values(CONSUMER_LAG, &topic);
        delta(s, &before, CONSUMED, &topic) == total
            && delta(s, &before, DLQ, &[]) == traffic.invalid_total() as f64
            && delta(s, &before, ALERTS, &[]) == traffic.alerts_total() as f64
            && delta(
                s,
                &before,
                "vitalwatch_processing_duration_seconds_count",
                &[],
            ) == total
            && s.sum(COMMITTED, &topic) == total
            && !lag.is_empty()
            && lag.iter().all(|&l| l == 0.0)
            && s.sum(INFLIGHT, &[]) == 0.0
    })
    .await;

    // Every metric of the table, with its type.
    for (name, kind) in DESIGN_TABLE {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "# TYPE of {name}"
        );
        let sample = if kind == "histogram" {
            format!("{name}_count")
        } else {
            name.to_owned()
        };
        assert!(
            after.samples.iter().any(|s| s.name == sample),
            "{name}: no sample in the scrape"
        );
    }
    for (name, kind, sampled) in RULE_STATE_TABLE {
        // The exporter writes `# TYPE` only for metrics with a sample.
        assert_eq!(
            after.types.get(name).map(String::as_str),
            sampled.then_some(kind),
            "# TYPE of {name}"
        );
        assert_eq!(
            after.samples.iter().any(|s| s.name == name),
            sampled,
            "{name}: sample in the scrape"
        );
    }
    for (name, kind) in PROCESS_METRICS {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "# TYPE of {name}"
        );
        assert!(after.sum(name, &[]) > 0.0, "{name}");
    }
    assert_eq!(after.sum("vitalwatch_assigned_partitions", &topic), 3.0);
    // Real histograms: buckets, no quantiles.
    for name in [
        "vitalwatch_processing_duration_seconds",
        "vitalwatch_event_age_seconds",
    ] {
        let buckets: Vec<&Sample> = after
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .collect();
        assert!(buckets.len() >= 10, "{name}: {} buckets", buckets.len());
        assert!(buckets.iter().any(|b| b.labels["le"] == "+Inf"));
        assert!(
            !after
                .samples
                .iter()
                .any(|s| s.name == name && s.labels.contains_key("quantile")),
            "{name} is rendered as a summary"
        );
    }

    // Counters equal to the traffic.
    assert_eq!(delta(&after, &before, CONSUMED, &topic), total);
    for (reason, n) in &traffic.invalid {
        assert_eq!(
            delta(&after, &before, INVALID, &[("reason", reason)]),
            *n as f64,
            "invalid messages with reason {reason}"
        );
    }
    assert_eq!(
        delta(&after, &before, INVALID, &[]),
        traffic.invalid_total() as f64
    );
    for reason in vitalwatch::vitals::DecodeError::REASONS {
        assert!(
            after.sum(INVALID, &[("reason", reason)]) >= 0.0
                && !after.values(INVALID, &[("reason", reason)]).is_empty(),
            "reason {reason} not registered at zero"
        );
    }
    for (rule, n) in &traffic.alerts {
        assert_eq!(
            delta(
                &after,
                &before,
                ALERTS,
                &[("rule", rule), ("severity", "medium")]
            ),
            *n as f64,
            "alerts of rule {rule}"
        );
    }
    assert_eq!(
        delta(&after, &before, DLQ, &[]),
        traffic.invalid_total() as f64
    );
    assert_eq!(
        delta(&after, &before, "vitalwatch_event_age_seconds_count", &[]),
        valid
    );
    for sink in ["alerts", "dlq"] {
        assert_eq!(
            after.values(SINK_ERRORS, &[("sink", sink)]).len(),
            1,
            "sink_errors{{sink={sink}}} registered"
        );
        assert_eq!(delta(&after, &before, SINK_ERRORS, &[("sink", sink)]), 0.0);
    }
    assert!(delta(&after, &before, REBALANCES, &[("event", "assign")]) >= 1.0);
    assert_eq!(after.sum("vitalwatch_workers", &[]), 2.0);
    for w in ["0", "1"] {
        assert_eq!(
            after
                .values("vitalwatch_worker_queue_depth", &[("worker", w)])
                .len(),
            1,
            "queue depth of worker {w}"
        );
    }
    assert_eq!(
        after.values(
            "vitalwatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        vec![1.0]
    );
    // Lag and commits cover the partitions that received traffic: 3 partitions, each
    // committed at its log end.
    let committed: BTreeMap<String, f64> = after
        .samples
        .iter()
        .filter(|s| s.name == COMMITTED && s.labels.get("topic") == Some(&cluster.input))
        .map(|s| (s.labels["partition"].clone(), s.value))
        .collect();
    let ends: BTreeMap<String, f64> = cluster
        .end_offsets()
        .into_iter()
        .enumerate()
        .filter(|&(_, end)| end > 0)
        .map(|(p, end)| (p.to_string(), end as f64))
        .collect();
    assert_eq!(committed, ends, "committed offset gauge per partition");

    // No patient data anywhere in the labels.
    for s in &after.samples {
        for (k, v) in &s.labels {
            assert!(
                ALLOWED_LABELS.contains(&k.as_str()),
                "label {k} on {}",
                s.name
            );
            assert!(!v.contains(PATIENT_PREFIX), "patient id in {}: {v}", s.name);
        }
    }

    let report = running.stop().await;
    assert!(report.clean, "{report:?}");
    assert_eq!(report.counts.consumed, traffic.messages.len() as u64);

    // Logs: the state changes, nothing per message, no patient data at info and above.
    let logged = &logs.contents()[log_start..];
    let events = info_and_above(logged);
    let messages: BTreeSet<&str> = events.iter().map(|e| e.message.as_str()).collect();
    for expected in [
        "pipeline started",
        "partitions assigned",
        "shutdown: draining",
        "pipeline stopped",
    ] {
        assert!(
            messages.contains(expected),
            "no \"{expected}\" event in {messages:?}"
        );
    }
    assert!(
        events.len() < traffic.messages.len() / 4,
        "{} info+ events for {} messages: per-message logging? {messages:?}",
        events.len(),
        traffic.messages.len()
    );
    for e in &events {
        assert!(
            !e.line.contains(PATIENT_PREFIX),
            "patient id in an info+ log: {}",
            e.line
        );
        assert!(
            !e.line.contains("\"value\""),
            "vital value in an info+ log: {}",
            e.line
        );
    }
}

/// Field report item 10: after a rebalance the replica that gave up a partition stops
/// exporting its committed offset and lag, its assigned-partition gauge follows, the
/// patients of the departed partition leave `vitalwatch_patient_states`, and NEWS2's
/// resolved events carry the labels its alerts carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_metrics_and_patient_state_follow_the_assignment() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::with_brokers(1, 2);
    let status = Status::new();
    let (addr, _stop_listeners) = serve(status.clone()).await;
    let before = scrape_async(addr).await;
    let group = "follow";
    let mut config = config(&cluster, group);
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
        ("partition.assignment.strategy", "range"),
    ] {
        config.client.insert(k, v);
    }
    let rules = RuleSet::parse(
        "[news2]\nemit_resolved = true\ncooldown_secs = 0\n",
        std::path::Path::new("news2.toml"),
    )
    .unwrap();
    let running = start_with(config, Arc::new(rules), status.clone(), Hooks::default());

    // Patients on both partitions; one of them medium (respiration 26) and recovered
    // (16), with a resolved event.
    let now = vitalwatch::clock::now_ms();
    let mut msgs: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let p = format!("{PATIENT_PREFIX}F{i}");
            let payload = support::traffic::observation(&p, "heart_rate", 80, now);
            (p, payload)
        })
        .collect();
    let patient = format!("{PATIENT_PREFIX}F0");
    for (i, rr) in [26, 16].into_iter().enumerate() {
        let payload = format!(
            r#"{{"patientId":"{patient}","metric":"respiratory_rate","value":{rr},"timestamp":{}}}"#,
            now + 1 + i as i64
        );
        msgs.push((patient.clone(), payload.into_bytes()));
    }
    cluster.produce(&msgs).await;
    let topic = [("topic", cluster.input.as_str())];
    let both = poll_scrape(addr, Duration::from_secs(60), |s| {
        s.values(COMMITTED, &topic).len() == 2
            && s.sum(COMMITTED, &topic) == msgs.len() as f64
            && s.sum("vitalwatch_patient_states", &[]) == 40.0
    })
    .await;
    assert_eq!(both.sum("vitalwatch_assigned_partitions", &topic), 2.0);
    assert_eq!(
        delta(
            &both,
            &before,
            "vitalwatch_alerts_resolved_total",
            &[("rule", "news2_medium")]
        ),
        1.0,
        "a resolved news2_medium is labelled news2_medium"
    );
    assert!(
        both.values("vitalwatch_alerts_resolved_total", &[("rule", "news2")])
            .is_empty(),
        "no series under the old label"
    );

    // Another member takes one partition (range: one each).
    let other: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.mock.bootstrap_servers())
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    other.subscribe(&[&cluster.input]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = scrape_async(addr).await;
    while Instant::now() < deadline {
        let _ = other.poll(Duration::from_millis(100));
        after = scrape_async(addr).await;
        if after.sum("vitalwatch_assigned_partitions", &topic) == 1.0
            && after.values(COMMITTED, &topic).len() == 1
            && after.values(CONSUMER_LAG, &topic).len() <= 1
            && other.assignment().is_ok_and(|a| a.count() == 1)
        {
            break;
        }
    }
    let kept = other
        .assignment()
        .map(|a| 1 - a.elements().first().map_or(1, |e| e.partition()))
        .unwrap_or(0);
    assert_eq!(after.sum("vitalwatch_assigned_partitions", &topic), 1.0);
    let committed: Vec<&Sample> = after.matching(COMMITTED, &topic).collect();
    assert_eq!(committed.len(), 1, "only the partition still owned");
    assert_eq!(committed[0].labels["partition"], kept.to_string());
    // The patients of the partition that moved away are forgotten here.
    let on_kept = input_partitions(&cluster, &msgs)
        .iter()
        .filter(|(_, p)| **p == kept)
        .count();
    // Each worker applies the new assignment when ingest nudges it.
    let after = poll_scrape(addr, Duration::from_secs(30), |s| {
        let _ = other.poll(Duration::ZERO);
        s.sum("vitalwatch_patient_states", &[]) == on_kept as f64
    })
    .await;
    assert_eq!(
        after.sum("vitalwatch_patient_states", &[]),
        on_kept as f64,
        "patient states of the kept partition only"
    );
    drop(other);
    running.stop().await;
}

/// Distinct patients of `msgs` with the input partition their messages went to.
fn input_partitions(cluster: &Cluster, msgs: &[(String, Vec<u8>)]) -> BTreeMap<String, i32> {
    let consumer = cluster.reader();
    let md = consumer
        .fetch_metadata(Some(&cluster.input), Duration::from_secs(5))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..md.topics()[0].partitions().len() as i32 {
        tpl.add_partition_offset(&cluster.input, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    while read < msgs.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            out.insert(key, m.partition());
        }
    }
    out
}

/// `/readyz`: 503 before the pipeline runs and while its input topic does not exist,
/// 200 once assigned, 503 "alert sink failing" while the alert topic's leader is down, 200 again
/// when it is back; the alert is delivered in the end, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_assignment_and_the_alert_sink() {
    let _serial = SERIAL.lock().await;
    let group = "readiness";
    // Broker 2 leads the alert topic only; the group and everything else live on 1.
    let cluster = Cluster::bare(2, 2);
    cluster
        .mock
        .coordinator(MockCoordinator::Group(group.into()), 1)
        .unwrap();
    cluster.mock.create_topic(&cluster.alerts, 1, 1).unwrap();
    cluster
        .mock
        .partition_leader(&cluster.alerts, 0, Some(2))
        .unwrap();
    cluster.mock.create_topic(&cluster.dlq, 1, 1).unwrap();
    cluster
        .mock
        .partition_leader(&cluster.dlq, 0, Some(1))
        .unwrap();

    let status = Status::new();
    let (addr, _stop_listeners) = serve(status.clone()).await;
    let before = scrape_async(addr).await;

    let r = get_async(addr, "/readyz").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "not ready: pipeline not running\n")
    );

    // Running, but the input topic does not exist yet: no assignment.
    let mut config = config(&cluster, group);
    config.client.insert("message.timeout.ms", "1500");
    config
        .client
        .insert("topic.metadata.refresh.interval.ms", "500");
    let running = start(config, status.clone());
    let r = poll_get(addr, "/readyz", Duration::from_secs(20), |r| {
        r.text() == "not ready: the input topic does not exist\n"
    })
    .await;
    assert_eq!(r.status, 503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = get_async(addr, "/readyz").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "not ready: the input topic does not exist\n")
    );

    cluster.mock.create_topic(&cluster.input, 2, 1).unwrap();
    for p in 0..2 {
        cluster
            .mock
            .partition_leader(&cluster.input, p, Some(1))
            .unwrap();
    }
    // The consumer notices the new topic at a metadata refresh and rejoins; on a loaded
    // machine (CI building other things) that took longer than 30 s once.
    let r = poll_get(addr, "/readyz", Duration::from_secs(90), |r| {
        r.status == 200
    })
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));

    // The alert sink fails: its partition leader is unreachable.
    cluster.mock.broker_down(2).unwrap();
    let now = vitalwatch::clock::now_ms();
    let patient = format!("{PATIENT_PREFIX}READY");
    let payload = format!(
        r#"{{"patientId":"{patient}","metric":"heart_rate","value":140,"timestamp":{now}}}"#
    );
    cluster.produce(&[(patient, payload.into_bytes())]).await;
    let r = poll_get(addr, "/readyz", Duration::from_secs(30), |r| {
        r.status == 503
    })
    .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "not ready: alert sink failing\n")
    );
    assert_eq!(get_async(addr, "/healthz").await.status, 200);

    cluster.mock.broker_up(2).unwrap();
    let r = poll_get(addr, "/readyz", Duration::from_secs(60), |r| {
        r.status == 200
    })
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));

    let after = scrape_async(addr).await;
    assert!(delta(&after, &before, SINK_ERRORS, &[("sink", "alerts")]) >= 1.0);
    assert_eq!(
        delta(&after, &before, ALERTS, &[("rule", "heart_rate_high")]),
        1.0
    );
    let alerts = cluster.read_all(&cluster.alerts, 1, Duration::from_secs(30));
    assert!(
        alerts
            .iter()
            .any(|a| String::from_utf8_lossy(a.value()).contains("\"ruleId\":\"heart_rate_high\"")),
        "the alert raised while the sink failed was not delivered"
    );
    let report = running.stop().await;
    assert!(report.clean, "{report:?}");
}

/// `/healthz` stays 200 while the only broker is down: liveness is about the loops, not
/// the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_stays_ok_while_the_broker_is_down() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::with_brokers(1, 2);
    let status = Status::new();
    let (addr, _stop_listeners) = serve(status.clone()).await;
    assert_eq!(get_async(addr, "/healthz").await.status, 200);
    let running = start(config(&cluster, "liveness"), status.clone());
    poll_get(addr, "/readyz", Duration::from_secs(30), |r| {
        r.status == 200
    })
    .await;

    cluster.mock.broker_down(1).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut polls = 0;
    while Instant::now() < until {
        let r = get_async(addr, "/healthz").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok\n"),
            "liveness failed with the broker down"
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(polls >= 10);
    assert!(status.liveness(vitalwatch::http::STALL).is_ok());

    cluster.mock.broker_up(1).unwrap();
    let report = running.stop().await;
    assert!(!report.crashed);
}

/// `/debug/pprof/profile?seconds=2` answers with a pprof protobuf that decodes, covers
/// the requested time and names the function that burned the CPU; the flame graph is an
/// SVG; bad durations and concurrent profiles are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_a_pprof_profile_and_a_flamegraph() {
    use pprof::protos::Message;

    let _serial = SERIAL.lock().await;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let addr = vitalwatch::admin::spawn(local(), shutdown.clone())
        .await
        .unwrap();

    // Busy until the profile is back, however long the machine takes to get there.
    let busy = Busy::start();
    let first = tokio::spawn(get_async(addr, "/debug/pprof/profile?seconds=2"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = get_async(addr, "/debug/pprof/profile?seconds=1").await;
    assert_eq!(second.status, 409, "{}", second.text());
    let r = first.await.unwrap();
    let spun = busy.stop();

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let profile = pprof::protos::Profile::decode(r.body.as_slice()).expect("a pprof protobuf");
    let strings = &profile.string_table;
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| {
            (
                strings[t.ty as usize].as_str(),
                strings[t.unit as usize].as_str(),
            )
        })
        .collect();
    assert!(types.contains(&("cpu", "nanoseconds")), "{types:?}");
    assert!(
        !profile.sample.is_empty(),
        "no samples while a thread spun {spun:?} (duration {} ns)",
        profile.duration_nanos
    );
    assert!(
        profile.duration_nanos >= 2_000_000_000,
        "{}",
        profile.duration_nanos
    );
    let functions: Vec<&str> = profile
        .function
        .iter()
        .map(|f| strings[f.name as usize].as_str())
        .collect();
    assert!(
        functions.iter().any(|f| f.contains("spin_for_profile")),
        "the busy function is not in the profile"
    );
    // Every sample's locations exist: the profile is internally consistent.
    let locations: BTreeSet<u64> = profile.location.iter().map(|l| l.id).collect();
    for s in &profile.sample {
        assert!(s.location_id.iter().all(|id| locations.contains(id)));
    }

    let busy = Busy::start();
    let svg = get_async(addr, "/debug/pprof/flamegraph?seconds=1").await;
    busy.stop();
    assert_eq!(svg.status, 200, "{}", svg.text());
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    let svg = svg.text();
    assert!(
        svg.contains("<svg"),
        "not an SVG: {}",
        &svg[..svg.len().min(500)]
    );
    assert!(
        svg.contains("spin_for_profile"),
        "the busy function is not in the flame graph"
    );

    for bad in ["seconds=0", "seconds=301", "seconds=two"] {
        let r = get_async(addr, &format!("/debug/pprof/profile?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// With the default settings the admin listener binds loopback only: reachable on
/// 127.0.0.1, refused on every other address of this machine (where a listener on all
/// interfaces is reachable, to show the check could fail).
#[tokio::test]
async fn admin_listener_is_loopback_only_by_default() {
    let settings = Settings::load_with_env(None, Vec::<(String, String)>::new()).unwrap();
    let default = settings
        .admin_listen()
        .unwrap()
        .expect("admin on by default");
    assert_eq!(default, "127.0.0.1:6060".parse().unwrap());

    // The default address with port 0: another process may own 6060 on this machine.
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let admin = vitalwatch::admin::spawn(SocketAddr::new(default.ip(), 0), shutdown.clone())
        .await
        .unwrap();
    assert!(admin.ip().is_loopback());
    let r = get_async(admin, "/debug/pprof/profile?seconds=0").await;
    assert_eq!(r.status, 400, "reachable on loopback");

    // Listeners on all interfaces, to show each address is reachable at all (the kernel
    // completes the handshake without an accept).
    let control_v4 = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let control_v6 = std::net::TcpListener::bind("[::]:0").ok();
    let addresses = non_loopback_addresses();
    let mut checked = 0;
    for ip in &addresses {
        let control = match ip {
            IpAddr::V4(_) => Some(&control_v4),
            IpAddr::V6(_) => control_v6.as_ref(),
        };
        let control_port = control.and_then(|c| c.local_addr().ok()).map(|a| a.port());
        let Some(control_port) = control_port else {
            eprintln!("{ip}: cannot listen on this address family; not checked");
            continue;
        };
        if !reachable(SocketAddr::new(*ip, control_port)).await {
            eprintln!(
                "{ip}: a listener on all interfaces is not reachable there either; not checked"
            );
            continue;
        }
        assert!(
            !reachable(SocketAddr::new(*ip, admin.port())).await,
            "the admin listener answers on {ip}"
        );
        checked += 1;
    }
    if checked == 0 {
        eprintln!(
            "SKIPPED the non-loopback part: this machine has no usable non-loopback address ({addresses:?})"
        );
    } else {
        eprintln!("admin listener refused on {checked} non-loopback address(es): {addresses:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Traffic with known counts
// ---------------------------------------------------------------------------------------

const CONSUMED: &str = "vitalwatch_messages_consumed_total";
const INVALID: &str = "vitalwatch_messages_invalid_total";
const ALERTS: &str = "vitalwatch_alerts_emitted_total";
const DLQ: &str = "vitalwatch_dlq_published_total";
const SINK_ERRORS: &str = "vitalwatch_sink_errors_total";
const REBALANCES: &str = "vitalwatch_rebalances_total";
const CONSUMER_LAG: &str = "vitalwatch_consumer_lag";
const COMMITTED: &str = "vitalwatch_committed_offset";
const INFLIGHT: &str = "vitalwatch_inflight_messages";

/// Patient ids of the test traffic start with this, so a leak is easy to find.
const PATIENT_PREFIX: &str = "OBS-PATIENT-";

struct Traffic {
    messages: Vec<(String, Vec<u8>)>,
    /// Expected alerts by rule id.
    alerts: BTreeMap<&'static str, usize>,
    /// Expected invalid messages by reason code.
    invalid: BTreeMap<&'static str, usize>,
}

impl Traffic {
    /// 100 normal observations, 18 that breach a red flag, 10 malformed; interleaved.
    fn new() -> Traffic {
        let now = vitalwatch::clock::now_ms();
        let normal = [
            ("heart_rate", 80.0),
            ("spo2", 97.0),
            ("temperature", 37.0),
            ("respiratory_rate", 16.0),
            ("systolic_bp", 120.0),
        ];
        let abnormal: [(&str, f64, &str, usize); 5] = [
            ("heart_rate", 140.0, "heart_rate_high", 7),
            ("spo2", 88.0, "spo2_low", 5),
            ("temperature", 39.6, "temperature_high", 3),
            ("respiratory_rate", 30.0, "respiratory_rate_high", 2),
            ("systolic_bp", 80.0, "systolic_bp_low", 1),
        ];
        let invalid: [(&str, usize); 4] = [
            ("invalid_json", 4),
            ("unknown_metric", 3),
            ("out_of_range", 2),
            ("bad_patient_id", 1),
        ];
        let patient = |i: usize| format!("{PATIENT_PREFIX}{:03}", i % 20);
        let observation = |i: usize, metric: &str, value: f64| {
            let p = patient(i);
            let payload = support::traffic::observation(&p, metric, value, now - 1000);
            (p, payload)
        };
        let mut messages = Vec::new();
        for i in 0..100 {
            let (metric, value) = normal[i % normal.len()];
            messages.push(observation(i, metric, value));
        }
        let mut alerts = BTreeMap::new();
        for (metric, value, rule, n) in abnormal {
            for k in 0..n {
                let at = (k * 13 + rule.len()) % messages.len();
                messages.insert(at, observation(k, metric, value));
            }
            alerts.insert(rule, n);
        }
        let mut expected_invalid = BTreeMap::new();
        for (reason, n) in invalid {
            for k in 0..n {
                let p = patient(k);
                let payload = vitalwatch::tools::ward::malformed(
                    reason,
                    &p,
                    now,
                    vitalwatch::settings::defaults()
                        .decode_limits()
                        .max_message_bytes
                        + 1,
                );
                let at = (k * 17 + reason.len()) % messages.len();
                messages.insert(at, (p, payload));
            }
            expected_invalid.insert(reason, n);
        }
        Traffic {
            messages,
            alerts,
            invalid: expected_invalid,
        }
    }

    fn invalid_total(&self) -> usize {
        self.invalid.values().sum()
    }

    fn alerts_total(&self) -> usize {
        self.alerts.values().sum()
    }
}

/// A thread burning CPU in [`spin_for_profile`] until stopped.
struct Busy {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            spin_for_profile(&flag);
            started.elapsed()
        });
        Busy { stop, thread }
    }

    /// Stops the thread; returns how long it spun.
    fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Burns CPU until `stop`, in a function the profile must name.
#[inline(never)]
fn spin_for_profile(stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

// ---------------------------------------------------------------------------------------
// Mock cluster and pipeline
// ---------------------------------------------------------------------------------------

/// The pipeline on `cluster` as these tests run it: two workers, small queues, the
/// default size limit, lag twice a second instead of every five.
fn config(cluster: &Cluster, group: &str) -> PipelineConfig {
    let mut config = cluster.config(group);
    config.client.insert("statistics.interval.ms", "500");
    config.workers = 2;
    config.queue_capacity = 64;
    config.limits = vitalwatch::settings::defaults().decode_limits();
    config.shutdown_timeout = Duration::from_secs(15);
    config
}

/// The pipeline with the shipped red flags, every breach alerting, on the tests' status.
fn start(config: PipelineConfig, status: Arc<Status>) -> Running {
    start_with(
        config,
        Arc::new(RuleSet::news2_red_flags().stateless()),
        status,
        Hooks::default(),
    )
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// The process-wide log capture: JSON at info, whatever `RUST_LOG` says.
fn logs() -> &'static Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture::new();
        let subscriber =
            telemetry::with_filter(EnvFilter::new("info"), LogFormat::Json, capture.clone());
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
        capture
    })
}

struct Event {
    message: String,
    line: String,
}

fn info_and_above(logged: &str) -> Vec<Event> {
    logged
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let level = v["level"].as_str()?;
            matches!(level, "INFO" | "WARN" | "ERROR").then(|| Event {
                message: v["fields"]["message"].as_str().unwrap_or("").to_owned(),
                line: line.to_owned(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// Whether a TCP connection to `addr` is accepted within two seconds.
async fn reachable(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// This machine's addresses other than loopback: `hostname -I`, and the source address
/// of the default route (a UDP connect sends nothing).
fn non_loopback_addresses() -> Vec<IpAddr> {
    let mut found = BTreeSet::new();
    if let Ok(out) = std::process::Command::new("hostname").arg("-I").output() {
        for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(ip) = word.parse::<IpAddr>() {
                found.insert(ip);
            }
        }
    }
    if let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0")
        && socket.connect("192.0.2.1:9").is_ok()
        && let Ok(local) = socket.local_addr()
    {
        found.insert(local.ip());
    }
    found
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast())
        .filter(|ip| match ip {
            // Link-local IPv6 needs a scope id to connect to; skip it.
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------------------

fn delta(after: &Scrape, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}
