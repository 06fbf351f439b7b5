//! Runs the pipeline on an in-process mock Kafka cluster with a steady trickle of traffic
//! and serves `/metrics` (and, with `--admin`, the pprof endpoints) for a bounded time.
//!
//! The scripts use it for a live endpoint without a broker: `scripts/promtool-check.sh`
//! lints a scrape, `scripts/prometheus-scrape.sh` has a real Prometheus scrape it.
//!
//! ```text
//! cargo run --example serve_metrics -- --listen 127.0.0.1:0 --seconds 30 [--admin 127.0.0.1:6060]
//! ```
//!
//! It prints `metrics: http://ADDR/metrics` once the listener is up (port 0 picks a free
//! port) and exits 0 after `--seconds` with a clean pipeline shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use vitalwatch::pipeline::{self, Hooks, PipelineConfig, Status};
use vitalwatch::rules::RuleSet;

#[derive(Debug, Parser)]
struct Args {
    /// Address of /metrics /healthz /readyz.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address of the pprof endpoints (none when not given).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// How long to serve.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Observations per second fed to the input topic.
    #[arg(long, default_value_t = 200)]
    rate: u64,
}

const PARTITIONS: i32 = 3;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics = vitalwatch::metrics::install()?;
    drop(metrics);

    let mock = MockCluster::new(1).context("mock cluster")?;
    for (topic, partitions) in [
        ("patient-data", PARTITIONS),
        ("patient-alerts", 1),
        ("patient-data-dlq", 1),
    ] {
        mock.create_topic(topic, partitions, 1)
            .with_context(|| format!("create topic {topic}"))?;
    }
    let config = PipelineConfig {
        bootstrap_servers: mock.bootstrap_servers(),
        group_id: "vitalwatch".into(),
        input_topic: "patient-data".into(),
        alert_topic: "patient-alerts".into(),
        dlq_topic: "patient-data-dlq".into(),
        repartition_topic: None,
        state_topic: None,
        context_topic: None,
        group_instance_id: None,
        restore_timeout: std::time::Duration::from_secs(120),
        input_partitioner: vitalwatch::pipeline::repartition::Partitioner::Murmur2,
        // Lag every second rather than every five, so a short run reports it.
        client: [("statistics.interval.ms", "1000")].into(),
        workers: 2,
        queue_capacity: 256,
        limits: vitalwatch::settings::defaults().decode_limits(),
        state_limits: vitalwatch::settings::defaults().state_limits(),
        shutdown_timeout: Duration::from_secs(10),
    };

    let stop = CancellationToken::new();
    let listeners = CancellationToken::new();
    let status = Status::new();
    let addr = vitalwatch::http::spawn(args.listen, status.clone(), listeners.clone()).await?;
    println!("metrics: http://{addr}/metrics");
    if let Some(admin) = args.admin {
        let addr = vitalwatch::admin::spawn(admin, listeners.clone()).await?;
        println!("admin: http://{addr}/debug/pprof/profile");
    }

    let feeder = tokio::spawn(feed(
        mock.bootstrap_servers(),
        args.rate.max(1),
        stop.clone(),
    ));
    let pipeline = tokio::spawn(pipeline::run(
        config,
        Arc::new(RuleSet::news2_red_flags()),
        status.clone(),
        stop.clone(),
        Hooks::default(),
    ));
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.cancel();
    let sent = feeder.await.context("feeder")??;
    let report = pipeline.await.context("pipeline task")??;
    listeners.cancel();
    println!(
        "sent {sent}; consumed {}, invalid {}, alerts {}; clean shutdown: {}",
        report.counts.consumed, report.counts.invalid, report.counts.alerts, report.clean
    );
    anyhow::ensure!(report.clean, "the pipeline did not shut down cleanly");
    Ok(())
}

/// Produces observations at `rate` per second until `stop`: mostly normal, every 10th
/// breaching a red flag, every 25th malformed. Returns how many were produced.
async fn feed(bootstrap: String, rate: u64, stop: CancellationToken) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("feeder producer")?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut sent = 0u64;
    let mut i = 0u64;
    while !stop.is_cancelled() {
        tick.tick().await;
        let patient = format!("P-{:04}", i % 50);
        let now = vitalwatch::clock::now_ms();
        let payload = if i % 25 == 24 {
            "{\"patientId\":".to_owned()
        } else {
            let (metric, value) = match (i % 3, i % 10 == 3) {
                (0, false) => ("heart_rate", 80.0),
                (0, true) => ("heart_rate", 140.0),
                (1, false) => ("spo2", 97.0),
                (1, true) => ("spo2", 88.0),
                (_, false) => ("temperature", 37.0),
                (_, true) => ("temperature", 39.6),
            };
            format!(
                r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{now}}}"#
            )
        };
        let record = FutureRecord::to("patient-data")
            .key(&patient)
            .payload(&payload);
        // Not awaiting the acknowledgement keeps the rate; the flush below waits for all.
        if producer.send_result(record).is_ok() {
            sent += 1;
        }
        i += 1;
    }
    producer
        .flush(Duration::from_secs(5))
        .context("feeder flush")?;
    Ok(sent)
}
