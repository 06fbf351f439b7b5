//! The in-process stage: the service's own router, workers and completion tracking
//! (`pipeline::inprocess`, sinks that encode but do not send) next to a bare decode loop
//! over the same messages, alternating. No broker is involved.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use vitalwatch::clock::now_ms;
use vitalwatch::pipeline::Record;
use vitalwatch::pipeline::inprocess::{InProcess, InProcessConfig};
use vitalwatch::rules::RuleSet;
use vitalwatch::vitals::decode;

/// Partitions the records are spread over (by key), as a consumer would deliver them.
const PARTITIONS: u64 = 8;

#[derive(Debug, Clone, Serialize)]
pub struct InProcessRun {
    pub workers: Option<usize>,
    pub round: u32,
    pub messages: u64,
    pub rate: f64,
}

/// Measures the bare decode loop and the pipeline at each worker count, `rounds` times.
pub fn run(
    messages: u64,
    workers: &[usize],
    rounds: u32,
    patients: u32,
) -> anyhow::Result<Vec<InProcessRun>> {
    vitalwatch::metrics::install()?;
    let now = now_ms();
    let mut ward = super::traffic(3, patients);
    let msgs: Vec<_> = (0..messages)
        .map(|i| ward.next(now - 1000 + i as i64 / 1000))
        .collect();
    let mut next = [0i64; PARTITIONS as usize];
    let records: Vec<Record<'_>> = msgs
        .iter()
        .map(|m| {
            let p = (xxhash_rust::xxh3::xxh3_64(m.key.as_bytes()) % PARTITIONS) as usize;
            next[p] += 1;
            Record {
                headers: None,
                topic: "patient-data",
                partition: p as i32,
                offset: next[p] - 1,
                timestamp: Some(now),
                key: Some(m.key.as_bytes()),
                payload: Some(&m.payload),
            }
        })
        .collect();
    let rules = Arc::new(RuleSet::news2_red_flags());
    let limits = vitalwatch::settings::defaults().decode_limits();
    let mut out = Vec::new();
    for round in 1..=rounds {
        let t = Instant::now();
        let mut valid = 0u64;
        for r in &records {
            if let Ok(obs) = decode(black_box(r.payload.unwrap_or_default()), &limits, now) {
                valid += black_box(obs.value) as u64 & 1;
            }
        }
        black_box(valid);
        out.push(report(None, round, messages, t));
        for &w in workers {
            let pipeline = InProcess::new(
                InProcessConfig {
                    workers: w,
                    ..InProcessConfig::from(&vitalwatch::settings::defaults().pipeline_config())
                },
                rules.clone(),
            )?;
            let t = Instant::now();
            let tally = pipeline.run(&records)?;
            out.push(report(Some(w), round, tally.consumed, t));
        }
    }
    Ok(out)
}

fn report(workers: Option<usize>, round: u32, messages: u64, t: Instant) -> InProcessRun {
    let secs = t.elapsed().as_secs_f64();
    let run = InProcessRun {
        workers,
        round,
        messages,
        rate: messages as f64 / secs.max(1e-9),
    };
    eprintln!(
        "  {:<22} round {round}: {messages} msgs in {:.3} s = {:>9.0} msg/s",
        workers.map_or("bare decode loop".to_owned(), |w| format!(
            "pipeline, {w} workers"
        )),
        secs,
        run.rate
    );
    run
}
