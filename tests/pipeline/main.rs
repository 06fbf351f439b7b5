//! Pipeline integration tests on librdkafka's in-process mock cluster.

mod helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpers::*;
use vitalwatch::pipeline::Hooks;
use vitalwatch::rules::RuleSet;

fn rules() -> Arc<RuleSet> {
    Arc::new(RuleSet::news2_red_flags())
}

/// 10 000 messages over 4 partitions and 500 patients: exactly the expected alerts, every
/// invalid message dead-lettered with its reason, committed offsets at the log end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_exact_alerts_dlq_and_commits() {
    let t0 = Instant::now();
    let cluster = Cluster::new(4);
    let msgs = traffic(10_000, 500, 97);
    cluster.produce(&msgs).await;
    let input = cluster.read_all(&cluster.input, msgs.len(), Duration::from_secs(30));
    assert_eq!(input.len(), msgs.len());
    let expected = oracle(&cluster, &input, &rules());
    assert!(!expected.alert_ids.is_empty() && !expected.dlq.is_empty());

    let group = "e2e";
    let running = start(cluster.config(group), rules(), Hooks::default());
    let consumed_all = running
        .wait_for(Duration::from_secs(60), |s| {
            let c = s.counts();
            c.consumed as usize >= msgs.len() && c.dlq as usize >= expected.dlq.len()
        })
        .await;
    assert!(consumed_all, "pipeline did not consume everything: {:?}", running.status.counts());
    let processing = t0.elapsed();
    let report = running.stop().await;
    assert!(report.clean, "{report:?}");

    let alerts = cluster.alerts(expected.alert_ids.len());
    let got: BTreeSet<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(alerts.len(), got.len(), "duplicate alerts without a crash");
    assert_eq!(got, expected.alert_ids);

    let dlq = cluster.read_all(&cluster.dlq, expected.dlq.len(), Duration::from_secs(30));
    let got_dlq: BTreeMap<(i32, i64), String> = dlq
        .iter()
        .map(|r| {
            let p: i32 = r.headers["vitalwatch.source.partition"].parse().unwrap();
            let o: i64 = r.headers["vitalwatch.source.offset"].parse().unwrap();
            assert_eq!(r.headers["vitalwatch.source.topic"], cluster.input);
            assert!(!r.headers["vitalwatch.error.message"].is_empty());
            assert!(r.headers.contains_key("vitalwatch.source.timestamp"));
            // The original payload and key, unchanged.
            let original = input.iter().find(|i| i.partition == p && i.offset == o).unwrap();
            assert_eq!(r.payload, original.payload);
            assert_eq!(r.key, original.key);
            ((p, o), r.headers["vitalwatch.error.reason"].clone())
        })
        .collect();
    assert_eq!(got_dlq, expected.dlq);
    let reasons: BTreeSet<&str> = got_dlq.values().map(String::as_str).collect();
    assert_eq!(reasons.len(), 10, "every reason code exercised: {reasons:?}");

    assert_eq!(cluster.committed(group), cluster.end_offsets());
    eprintln!(
        "end_to_end: {} messages, {} alerts, {} dead letters, processed in {:?} ({:.0} msg/s incl. start-up), total {:?}",
        msgs.len(),
        got.len(),
        got_dlq.len(),
        processing,
        msgs.len() as f64 / processing.as_secs_f64(),
        t0.elapsed()
    );
}
