//! How long a replica takes to catch up with the patient context of its partitions, and
//! what the contexts cost in memory, on a real broker.
//!
//! Writes a context record for each of `--patients` patients (a third on SpO2 Scale 2, a
//! third with a heart-rate override, a third suppressed, each with `updatedBy` and
//! `updatedAt`) to a fresh compacted topic, then starts the pipeline with
//! `kafka.context_topic` on it and times start-up to `/readyz` 200 (every partition's
//! context read to its end), with the resident memory before and after.
//!
//! ```text
//! scripts/broker.sh start 19092
//! cargo run --release --example context_catch_up -- --brokers 127.0.0.1:19092 --patients 1000000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use vitalwatch::pipeline::{self, Hooks, PipelineConfig, Status};
use vitalwatch::rules::RuleSet;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value_t = 1_000_000)]
    patients: usize,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Resident set size of this process, bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = std::process::id();
    let topic = |name: &str| format!("{name}-{run}");
    let (input, alerts, dlq, context) = (
        topic("patient-data"),
        topic("patient-alerts"),
        topic("patient-data-dlq"),
        topic("patient-context"),
    );
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &args.brokers);
    let admin: AdminClient<DefaultClientContext> = client.create().context("admin client")?;
    let topics = [
        NewTopic::new(&input, args.partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&alerts, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&context, args.partitions, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact"),
    ];
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .context("create topics")?
    {
        result.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }

    // The context records, keyed by patient id with the Java clients' partitioner (the
    // pipeline's default `kafka.input_partitioner`).
    let producer: FutureProducer = client
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("producer")?;
    let t0 = 1_763_798_400_000_i64;
    let written = Instant::now();
    let mut bytes = 0usize;
    for chunk in (0..args.patients).collect::<Vec<_>>().chunks(100_000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for &n in chunk {
            let id = format!("P-{n:010}");
            let value = match n % 3 {
                0 => format!(
                    r#"{{"patientId":"{id}","spo2Scale":2,"updatedBy":"ward-7-nurse","updatedAt":{t0}}}"#
                ),
                1 => format!(
                    r#"{{"patientId":"{id}","overrides":{{"heart_rate_high":{{"above":150}}}},"updatedBy":"ward-7-nurse","updatedAt":{t0}}}"#
                ),
                _ => format!(
                    r#"{{"patientId":"{id}","suppress":{{"until":{t0},"reason":"procedure"}},"updatedBy":"ward-7-nurse","updatedAt":{t0}}}"#
                ),
            };
            bytes += id.len() + value.len();
            let record = FutureRecord::to(&context).key(&id).payload(&value);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
            );
        }
        for p in pending {
            p.await
                .context("delivery")?
                .map_err(|(e, _)| anyhow::anyhow!("delivery: {e}"))?;
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let write_secs = written.elapsed().as_secs_f64();

    let settings = vitalwatch::settings::defaults();
    let config = PipelineConfig {
        bootstrap_servers: args.brokers.clone(),
        group_id: topic("vitalwatch-catch-up"),
        input_topic: input,
        alert_topic: alerts,
        dlq_topic: dlq,
        repartition_topic: None,
        group_instance_id: None,
        state_topic: None,
        context_topic: Some(context),
        restore_timeout: Duration::from_secs(600),
        input_partitioner: pipeline::repartition::Partitioner::Murmur2,
        client: Default::default(),
        workers: args.workers,
        queue_capacity: 4096,
        limits: settings.decode_limits(),
        state_limits: settings.state_limits(),
        shutdown_timeout: Duration::from_secs(10),
    };
    let status = Status::new();
    let shutdown = CancellationToken::new();
    let before = rss();
    let started = Instant::now();
    let handle = tokio::spawn(pipeline::run(
        config,
        Arc::new(RuleSet::news2_red_flags()),
        status.clone(),
        shutdown.clone(),
        Hooks::default(),
    ));
    while status.readiness().is_err() {
        if handle.is_finished() {
            anyhow::bail!("the pipeline stopped before it was ready");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_secs = started.elapsed().as_secs_f64();
    // The workers apply what ingest queued; let them finish before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss();
    shutdown.cancel();
    handle.await.context("join")??;
    let held = after.saturating_sub(before) as f64;
    println!(
        "| {} | {} | {:.1} MiB | {:.1} s | {:.2} s | {:.0} B | {:.0} MiB |",
        args.patients,
        args.partitions,
        bytes as f64 / 1048576.0,
        write_secs,
        ready_secs,
        held / args.patients as f64,
        held / 1048576.0,
    );
    Ok(())
}
