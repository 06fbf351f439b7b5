//! The whole pipeline in-process, next to a bare decode loop over the same messages.
//!
//! `vitalwatch::pipeline::inprocess` runs the service's own router (offset tracking,
//! decode, routing by patient, batching into the bounded worker queues, completions on
//! the Done channel) and worker pool on a tokio runtime, with sinks that encode every
//! alert and build every dead letter but send nothing: everything but Kafka. The bare
//! decode loop is the least the ingest thread could do with the same messages. The target
//! — reported, never asserted — is pipeline throughput ≥ 0.5× the bare decode loop; a
//! table of the ratios per worker count goes to stderr at the end.
//!
//! The input is the shared deterministic mix (`common`), keyed by patient id and spread
//! over [`PARTITIONS`] partitions by key. Every pass of the pipeline checks that it
//! evaluated, alerted and dead-lettered exactly what the mix implies and that every
//! partition's committable offset reached its end. Metrics are recorded into the
//! Prometheus recorder, as in the service.
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use common::{MESSAGES, Message, NOW, Workload, workload};
use criterion::{Criterion, SamplingMode};
use std::num::NonZeroUsize;
use vitalwatch::pipeline::Record;
use vitalwatch::pipeline::inprocess::{InProcess, InProcessConfig, Tally};
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::state::{Evaluator, Reading, StateLimits};
use vitalwatch::vitals::{DecodeLimits, decode};

const TOPIC: &str = "patient-data";
const PARTITIONS: u32 = 8;
const WORKERS: [usize; 4] = [1, 2, 4, 8];

/// FNV-1a of the key: a stable key → partition map, independent of the pipeline's own
/// routing hash (xxh3) so partitions and workers do not line up.
fn partition_of(key: &[u8]) -> i32 {
    let hash = key.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash % PARTITIONS) as i32
}

/// The messages as a consumer would deliver them: per partition, consecutive offsets.
fn records(messages: &[Message]) -> Vec<Record<'_>> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    messages
        .iter()
        .map(|m| {
            let partition = partition_of(&m.key);
            let offset = next.entry(partition).or_insert(0);
            *offset += 1;
            Record {
                headers: None,
                topic: TOPIC,
                partition,
                offset: *offset - 1,
                timestamp: Some(NOW),
                key: Some(&m.key),
                payload: Some(&m.payload),
            }
        })
        .collect()
}

/// What a run over `records` must report.
fn expected(work: &Workload, records: &[Record<'_>], rules: &Arc<RuleSet>) -> Tally {
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        ends.insert(r.partition, r.offset + 1);
    }
    Tally {
        consumed: MESSAGES as u64,
        evaluated: (MESSAGES - work.invalid) as u64,
        alerts: replayed_alerts(records, rules),
        dead_lettered: work.invalid as u64,
        committed: ends.into_iter().collect(),
    }
}

/// The alerts the shipped rules raise over `records`, evaluated in order with one
/// unbounded patient state (the pipeline keeps a patient's order, so its workers agree).
fn replayed_alerts(records: &[Record<'_>], rules: &Arc<RuleSet>) -> u64 {
    let unbounded = StateLimits {
        ttl_ms: i64::MAX,
        capacity: NonZeroUsize::MAX,
    };
    let mut eval = Evaluator::new(rules.clone(), unbounded);
    let mut out = Vec::new();
    let limits = vitalwatch::settings::defaults().decode_limits();
    for r in records {
        if let Ok(obs) = decode(r.payload.unwrap_or_default(), &limits, NOW) {
            let reading = Reading::of(&obs);
            eval.observe(
                &obs.patient_id,
                reading,
                (r.partition as u64, 0),
                0,
                &mut out,
            );
        }
    }
    out.len() as u64
}

fn main() {
    let rules = Arc::new(RuleSet::news2_red_flags());
    // The mix is dated at NOW, a fixed day, and the in-process ingest reads the wall
    // clock: the age bound is widened (to its largest setting) so that the same bytes
    // stay fresh, and every message costs what it costs in the service.
    let limits = DecodeLimits {
        max_age_ms: 10 * 365 * 86_400_000,
        ..vitalwatch::settings::defaults().decode_limits()
    };
    let work = workload(&rules, &limits);
    let records = records(&work.messages);
    let expected = expected(&work, &records, &rules);
    // As the service does before it starts the pipeline: histograms and counters cost
    // what they cost in production.
    vitalwatch::metrics::install().unwrap();

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("pipeline");
    // A pass is milliseconds: a few samples of several passes each fit the time given.
    group.sample_size(20).sampling_mode(SamplingMode::Flat);

    let bare = common::bench(&mut group, "bare_decode", records.len(), || {
        records
            .iter()
            .map(
                |r| match decode(black_box(r.payload.unwrap_or_default()), &limits, NOW) {
                    Ok(obs) => obs.value as usize,
                    Err(e) => e.reason().len(),
                },
            )
            .sum()
    });

    let mut table = Vec::new();
    for workers in WORKERS {
        let config = InProcessConfig {
            input_topic: TOPIC.to_owned(),
            workers,
            limits,
            ..InProcessConfig::from(&vitalwatch::settings::defaults().pipeline_config())
        };
        let pipeline = InProcess::new(config, rules.clone()).unwrap();
        assert_eq!(pipeline.run(&records).unwrap(), expected);
        let name = format!("inprocess/{workers}");
        let ns = common::bench(&mut group, &name, records.len(), || {
            let tally = pipeline.run(&records).unwrap();
            assert_eq!(tally, expected);
            tally.consumed as usize
        });
        if let Some(ns) = ns {
            table.push((workers, ns));
        }
    }
    group.finish();
    c.final_summary();
    print_ratios(bare, &table, &expected);
}

/// The table the issue asks for: pipeline throughput as a share of the bare decode loop.
fn print_ratios(bare: Option<f64>, table: &[(usize, f64)], expected: &Tally) {
    let per_s = |ns: f64| 1e9 / ns;
    eprintln!(
        "\nin-process pipeline vs bare decode: {MESSAGES} messages ({} evaluated, {} alerts, \
         {} dead-lettered), {PARTITIONS} partitions; means include warm-up; target ratio ≥ 0.5",
        expected.evaluated, expected.alerts, expected.dead_lettered
    );
    eprintln!(
        "{:<22} {:>10} {:>12} {:>8}",
        "variant", "ns/msg", "msg/s", "ratio"
    );
    if let Some(bare) = bare {
        eprintln!(
            "{:<22} {bare:>10.1} {:>12.0} {:>8.2}",
            "bare decode",
            per_s(bare),
            1.0
        );
    }
    for &(workers, ns) in table {
        let ratio = bare.map_or("n/a".to_owned(), |b| format!("{:.2}", b / ns));
        eprintln!(
            "{:<22} {ns:>10.1} {:>12.0} {ratio:>8}",
            format!(
                "pipeline, {workers} worker{}",
                if workers == 1 { "" } else { "s" }
            ),
            per_s(ns)
        );
    }
}
