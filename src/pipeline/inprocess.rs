//! The pipeline without Kafka, for benchmarks: the service's own router, workers and
//! completion tracking, fed from memory, with sinks that encode and acknowledge at once.
//!
//! [`InProcess::run`] plays the ingest thread on the calling thread. It assigns the
//! partitions its records name and hands each record to the same [`IngestState`] the
//! consumer loop uses: offset tracking (claim, begin), decode, routing by patient, batching
//! into the bounded worker queues, waiting for room when they are full, and applying the
//! completions that come back on the Done channel. The workers and the DLQ task are the
//! service's own, started by the same function, publishing through
//! [`Publisher::Discard`]: every alert is encoded and its ticket acknowledged, every dead
//! letter gets its copy and headers and is acknowledged, and nothing leaves the process.
//! A run returns when the tracker has nothing in flight and every partition's committable
//! offset is one past its last record.
//!
//! What is Kafka's is left out: polling, storing and committing offsets, rebalances,
//! pausing, and the delivery round trip that makes a firing message wait for its ack.
//!
//! Per-message metrics go to whatever `metrics` recorder is installed when
//! [`InProcess::new`] runs; call [`crate::metrics::install`] first to measure them as the
//! service pays for them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::sync::mpsc;

use super::config::PipelineConfig;
use super::hooks::Hooks;
use super::ingest::{IngestState, Routing};
use super::offsets::Source;
use super::record::Record;
use super::run::{Pool, spawn_pool};
use super::sink::Publisher;
use super::status::Status;
use super::worker::WorkerShared;
use crate::metrics::PipelineMetrics;
use crate::rules::RuleSet;
use crate::rules::state::StateLimits;
use crate::vitals::DecodeLimits;

/// The pipeline settings that matter without Kafka.
#[derive(Debug, Clone)]
pub struct InProcessConfig {
    /// The topic alerts name as their source (and alert ids hash).
    pub input_topic: String,
    pub workers: usize,
    /// Per worker, in messages, as `pipeline.queue_capacity`.
    pub queue_capacity: usize,
    pub limits: DecodeLimits,
    /// Patient rule state per worker, as `rules.state_ttl_secs` and
    /// `rules.max_patients_per_worker`. Every run starts with empty state.
    pub state_limits: StateLimits,
    /// Bound on one run. Reaching it means a message was lost in the pipeline, not that
    /// the machine is slow: the run fails instead of hanging.
    pub timeout: Duration,
}

impl From<&PipelineConfig> for InProcessConfig {
    /// The settings of `config` that matter without Kafka, and a minute per run.
    fn from(config: &PipelineConfig) -> Self {
        InProcessConfig {
            input_topic: config.input_topic.clone(),
            workers: config.workers,
            queue_capacity: config.queue_capacity,
            limits: config.limits,
            state_limits: config.state_limits,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What one run did, counted where the service counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Records the router accepted (claimed and begun).
    pub consumed: u64,
    /// Valid records the workers evaluated.
    pub evaluated: u64,
    /// Alerts encoded and acknowledged.
    pub alerts: u64,
    /// Invalid records whose dead letter was built and acknowledged.
    pub dead_lettered: u64,
    /// Committable offset per partition at the end: one past each partition's last record.
    pub committed: Vec<(i32, i64)>,
}

/// A tokio runtime for the workers and the rule set they share; each [`InProcess::run`]
/// starts a fresh router and worker pool on it.
pub struct InProcess {
    config: InProcessConfig,
    rules: Arc<RuleSet>,
    metrics: PipelineMetrics,
    runtime: tokio::runtime::Runtime,
}

impl InProcess {
    /// Starts the runtime, built as the service builds its own (one thread per core).
    pub fn new(config: InProcessConfig, rules: Arc<RuleSet>) -> anyhow::Result<Self> {
        ensure!(config.workers > 0, "workers must be at least 1");
        ensure!(
            config.queue_capacity > 0,
            "queue_capacity must be at least 1"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("vw-worker")
            .build()
            .context("cannot start the async runtime")?;
        let metrics = PipelineMetrics::new(&config.input_topic, None);
        Ok(InProcess {
            config,
            rules,
            metrics,
            runtime,
        })
    }

    /// Runs `records` through the pipeline and returns when every one is done. Records of
    /// one partition must come in ascending offset order, as a consumer delivers them.
    ///
    /// Blocks the calling thread, which must not belong to a tokio runtime: it waits on
    /// the workers the way the ingest thread does.
    pub fn run(&self, records: &[Record<'_>]) -> anyhow::Result<Tally> {
        if tokio::runtime::Handle::try_current().is_ok() {
            bail!("InProcess::run blocks: call it from outside any tokio runtime");
        }
        let ends = partition_ends(records)?;
        let deadline = Instant::now() + self.config.timeout;
        let status = Status::new();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let shared = WorkerShared::new(
            self.rules.clone().into(),
            self.config.state_limits,
            Publisher::Discard,
            done_tx,
            &self.config.input_topic,
            self.metrics.clone(),
            status.clone(),
            Hooks::default(),
        );
        let Pool {
            workers,
            dlq,
            tasks,
        } = {
            let _runtime = self.runtime.enter();
            spawn_pool(
                self.config.workers,
                self.config.queue_capacity,
                shared,
                Publisher::Discard,
            )
        };
        let mut st = IngestState::new(
            workers,
            dlq,
            Routing::input_only(&self.config.input_topic),
            done_rx,
            self.metrics.clone(),
            self.config.limits,
            self.runtime.handle().clone(),
        );
        for &partition in ends.keys() {
            st.tracker.assign(partition);
        }

        for record in records {
            feed(&mut st, record, &status, deadline)?;
        }
        let unfinished = st.finish(deadline, &status);
        let committed = st.tracker.committable_all(Source::Input);
        drop(st);
        let joined = self.runtime.block_on(async {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, async {
                for t in tasks {
                    let _ = t.await;
                }
            })
            .await
        });

        ensure!(
            unfinished == 0,
            "{unfinished} messages not done after {:?}",
            self.config.timeout
        );
        ensure!(
            joined.is_ok(),
            "workers did not exit after their queues closed"
        );
        let expected: Vec<(i32, i64)> = ends.into_iter().collect();
        ensure!(
            committed == expected,
            "committable offsets {committed:?}, expected {expected:?}"
        );
        let c = status.counts();
        Ok(Tally {
            consumed: c.consumed,
            evaluated: c.evaluated,
            alerts: c.alerts,
            dead_lettered: c.dlq,
            committed,
        })
    }
}

/// One turn of the ingest loop for one record: take in completions, wait while a full
/// batch cannot be handed over (backpressure), route the record, hand over its batch once
/// full.
fn feed(
    st: &mut IngestState,
    record: &Record<'_>,
    status: &Status,
    deadline: Instant,
) -> anyhow::Result<()> {
    st.drain_done(status);
    while st.has_full_batch() && !st.flush_all() {
        ensure!(
            Instant::now() < deadline,
            "worker queues stayed full until the deadline"
        );
        st.wait_capacity(Duration::from_millis(10), status);
    }
    st.tick();
    st.handle(record, status);
    if st.has_full_batch() {
        st.flush_all();
    }
    Ok(())
}

/// One past the last offset of each partition, checking offsets ascend per partition
/// (the tracker would skip a record that goes back, and the counts would not add up).
fn partition_ends(records: &[Record<'_>]) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut ends = BTreeMap::new();
    for r in records {
        let end = ends.entry(r.partition).or_insert(i64::MIN);
        ensure!(
            r.offset >= 0 && r.offset >= *end,
            "partition {} offset {} is negative or not above the one before it",
            r.partition,
            r.offset
        );
        *end = r.offset + 1;
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service's defaults, as `config/default.toml` sets them.
    fn defaults() -> InProcessConfig {
        InProcessConfig::from(&crate::settings::defaults().pipeline_config())
    }
    use crate::clock::now_ms;

    fn payload(patient: &str, metric: &str, value: f64) -> Vec<u8> {
        format!(
            r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{}}}"#,
            now_ms() - 1_000
        )
        .into_bytes()
    }

    #[test]
    fn every_record_is_done_and_counted_where_the_service_counts_it() {
        let payloads = [
            payload("P-1", "heart_rate", 80.0),
            payload("P-2", "heart_rate", 150.0), // heart_rate_high
            b"{not json".to_vec(),
            payload("P-1", "spo2", 85.0), // spo2_low
            payload("P-3", "temperature", 37.0),
        ];
        let records: Vec<Record<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Record {
                headers: None,
                topic: "patient-data",
                partition: (i % 2) as i32,
                offset: 10 + i as i64,
                timestamp: None,
                key: None,
                payload: Some(p),
            })
            .collect();
        let config = InProcessConfig {
            workers: 2,
            // Batches of 2 and one slot per worker: exercises waiting for room.
            queue_capacity: 2,
            ..defaults()
        };
        let pipeline =
            InProcess::new(config, Arc::new(RuleSet::news2_red_flags().stateless())).unwrap();
        for _ in 0..3 {
            let tally = pipeline.run(&records).unwrap();
            assert_eq!(
                tally,
                Tally {
                    consumed: 5,
                    evaluated: 4,
                    alerts: 2,
                    dead_lettered: 1,
                    committed: vec![(0, 15), (1, 14)],
                }
            );
        }
    }

    #[test]
    fn offsets_going_back_are_refused() {
        let p = payload("P-1", "heart_rate", 80.0);
        let record = |offset| Record {
            headers: None,
            topic: "patient-data",
            partition: 0,
            offset,
            timestamp: None,
            key: None,
            payload: Some(&p),
        };
        let pipeline =
            InProcess::new(defaults(), Arc::new(RuleSet::news2_red_flags().stateless())).unwrap();
        assert!(pipeline.run(&[record(5), record(4)]).is_err());
    }
}
