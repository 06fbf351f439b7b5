//! Durable patient state: checkpoints to the state topic, and the restore of a partition
//! assigned anew.
//!
//! **Checkpoints.** Every commit interval (`auto.commit.interval.ms`, 1 s by default)
//! ingest takes a *cut*: for each assigned
//! partition, one past the last offset read (input and repartition). It queues a
//! [`Control::Checkpoint`] behind everything read so far on every worker's queue; a
//! worker receiving it has evaluated every reading below the cut, and stages a record of
//! each patient changed since its last checkpoint (one per patient, however many readings
//! changed it). Staged records are not written yet: a record reflects readings whose
//! alerts may still be in flight, and a state that says "counted" for a reading whose
//! alert is then lost would lose that alert for good. Once every message below a
//! partition's cut is done, ingest releases the partition ([`Control::Release`]), each
//! worker writes its staged records of that partition and reports when the state topic
//! has acknowledged them ([`Completed::Persisted`](super::sink::Completed)). When every
//! worker has, the cut is what ingest stores for the group to commit. So the committed
//! offset never passes a reading whose effect on a patient's state is not in the state
//! topic, and the state topic never holds an effect of a reading that is not done.
//!
//! **Restores.** When a partition is assigned anew, ingest pauses it (and its repartition
//! shadow), tells every worker to forget that partition's patients
//! ([`Control::Forget`]), and asks the restore thread for the partition of the state
//! topic. The thread reads it from the beginning to its end; ingest routes each record
//! to the worker that owns its patient ([`Control::Restore`]), in order ahead of any
//! reading, and resumes the partition when the end is reached, the restore times out
//! (`pipeline.restore_timeout_secs`), or fails (the topic is gone, say). Readings read
//! again after a crash (between the committed offset and the state's) are recognised by
//! the offsets each record carries and skipped, so nothing is counted twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::PipelineConfig;
use super::offsets::{Claim, OffsetTracker, Tp};
use super::status::Status;

/// Records per restore batch handed to a worker.
const RESTORE_BATCH: usize = 512;

/// An instruction to a worker about patient state, in order with its readings.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stage a record of every patient changed since the last checkpoint.
    Checkpoint(u64),
    /// Write the records staged up to checkpoint `id` for these partitions, and report
    /// each partition persisted (at once when nothing is staged for it).
    Release { id: u64, partitions: Arc<[i32]> },
    /// The partition is assigned anew: forget its patients (the state topic has them).
    Forget(i32),
    /// Records of the state topic's partition, for patients of this worker (`None`: a
    /// tombstone).
    Restore {
        partition: i32,
        records: Vec<(CompactString, Option<Vec<u8>>)>,
    },
    /// Patient context read from input partition `partition`'s context partition, for
    /// patients of this worker, in the order read (`None`: back to the defaults).
    Context {
        partition: i32,
        records: Vec<(CompactString, Option<crate::rules::context::PatientContext>)>,
    },
    /// The partition's context is read again from the beginning (assigned anew): forget
    /// what was read of it before.
    ForgetContexts(i32),
}

/// One partition's share of a checkpoint.
#[derive(Debug)]
struct Part {
    partition: i32,
    /// Per topic read (input, and the repartition shadow), the claim and the cut.
    cuts: Vec<(Claim, i64)>,
    released: bool,
    /// Workers that reported the partition persisted.
    persisted: usize,
}

#[derive(Debug)]
struct Checkpoint {
    id: u64,
    parts: Vec<Part>,
}

/// A restore under way.
#[derive(Debug)]
struct Restoring {
    /// The input partition's claim it was started under.
    claim: Claim,
    started: Instant,
    records: u64,
    bytes: u64,
}

/// Ingest's side of durable state.
pub(crate) struct Durable {
    workers: usize,
    next_id: u64,
    /// How often a checkpoint is taken: a patient's record is written at most this
    /// often, and committed offsets trail the read position by about this much more.
    every: Duration,
    last_checkpoint: Instant,
    /// Issued and not yet persisted everywhere, oldest first.
    open: VecDeque<Checkpoint>,
    /// The last cut taken per partition read (so that an idle partition is not
    /// checkpointed again).
    last_cut: HashMap<Tp, i64>,
    restoring: HashMap<i32, Restoring>,
    requests: std_mpsc::Sender<Request>,
    events: std_mpsc::Receiver<Event>,
    /// Whether the repartition topic is read (each input partition has a shadow).
    shadows: bool,
    /// Readiness shows restores under way.
    status: Arc<Status>,
}

impl Durable {
    /// Starts the restore thread for `config`'s state topic.
    pub(crate) fn start(
        config: &PipelineConfig,
        topic: &str,
        status: Arc<Status>,
        hook: Option<RestoreHook>,
    ) -> anyhow::Result<Durable> {
        let (topic, workers, timeout) = (topic.to_owned(), config.workers, config.restore_timeout);
        let (shadows, every) = (config.repartition_topic.is_some(), config.commit_interval());
        let consumer: BaseConsumer = config.restore_config().create().map_err(|e| {
            anyhow::anyhow!(
                "cannot create the state restore consumer: {}",
                super::ClientConfigError::from_kafka(&e)
            )
        })?;
        let (requests, requests_rx) = std_mpsc::channel();
        let (events_tx, events) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("vw-restore".into())
            .spawn(move || restore_loop(consumer, topic, timeout, requests_rx, events_tx, hook))
            .map_err(|e| anyhow::anyhow!("cannot start the state restore thread: {e}"))?;
        Ok(Durable {
            workers,
            next_id: 0,
            every,
            last_checkpoint: Instant::now(),
            open: VecDeque::new(),
            last_cut: HashMap::new(),
            restoring: HashMap::new(),
            requests,
            events,
            shadows,
            status,
        })
    }

    pub(crate) fn is_restoring(&self, partition: i32) -> bool {
        self.restoring.contains_key(&partition)
    }

    /// The topics' partitions read with input partition `p`.
    fn tps(&self, p: i32) -> Vec<Tp> {
        let mut v = vec![Tp::input(p)];
        if self.shadows {
            v.push(Tp::repartition(p));
        }
        v
    }

    /// Input partition `p` was assigned under `claim`: its restore begins. The caller
    /// has paused it and tells the workers to forget its patients.
    pub(crate) fn begin_restore(&mut self, p: i32, claim: Claim) {
        self.restoring.insert(
            p,
            Restoring {
                claim,
                started: Instant::now(),
                records: 0,
                bytes: 0,
            },
        );
        for tp in self.tps(p) {
            self.last_cut.remove(&tp);
        }
        self.status.set_restoring(self.restoring.len());
        let _ = self.requests.send(Request::Start {
            partition: p,
            epoch: claim.epoch,
        });
    }

    /// Input partition `p` is revoked: its restore (if any) stops, and its parts of open
    /// checkpoints are dropped.
    pub(crate) fn revoked(&mut self, p: i32) {
        if self.restoring.remove(&p).is_some() {
            self.status.set_restoring(self.restoring.len());
            let _ = self.requests.send(Request::Cancel { partition: p });
        }
        for tp in self.tps(p) {
            self.last_cut.remove(&tp);
        }
        for c in &mut self.open {
            c.parts.retain(|part| part.partition != p);
        }
        self.open.retain(|c| !c.parts.is_empty());
    }

    /// Takes a checkpoint of `partitions` (input partitions, all assigned partitions when
    /// `None`) if one is due (`force`: now). Returns its id, for the workers.
    pub(crate) fn checkpoint(
        &mut self,
        tracker: &OffsetTracker,
        partitions: Option<&[i32]>,
        force: bool,
    ) -> Option<u64> {
        if !force && self.last_checkpoint.elapsed() < self.every {
            return None;
        }
        self.last_checkpoint = Instant::now();
        let mut inputs: Vec<i32> = match partitions {
            Some(ps) => ps.to_vec(),
            None => tracker
                .assigned()
                .filter(|tp| tp.source == super::offsets::Source::Input)
                .map(|tp| tp.partition)
                .collect(),
        };
        inputs.sort_unstable();
        let mut parts = Vec::new();
        for p in inputs {
            if self.restoring.contains_key(&p) {
                continue;
            }
            let mut cuts = Vec::new();
            let mut moved = false;
            for tp in self.tps(p) {
                let (Some(claim), Some(next)) = (tracker.claim(tp), tracker.next_read(tp)) else {
                    continue;
                };
                if self.last_cut.get(&tp) != Some(&next) {
                    moved = true;
                }
                cuts.push((claim, next));
            }
            if moved || (force && !cuts.is_empty()) {
                for &(claim, next) in &cuts {
                    self.last_cut.insert(claim.tp(), next);
                }
                parts.push(Part {
                    partition: p,
                    cuts,
                    released: false,
                    persisted: 0,
                });
            }
        }
        if parts.is_empty() {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.open.push_back(Checkpoint { id, parts });
        Some(id)
    }

    /// The partitions whose every message below the cut is now done, per checkpoint:
    /// what the workers may write.
    pub(crate) fn releases(&mut self, tracker: &OffsetTracker) -> Vec<(u64, Arc<[i32]>)> {
        let mut out = Vec::new();
        for c in &mut self.open {
            let mut ready = Vec::new();
            for part in c.parts.iter_mut().filter(|p| !p.released) {
                let done = part.cuts.iter().all(|&(claim, cut)| {
                    tracker.claim(claim.tp()) == Some(claim)
                        && tracker.committable(claim.tp()).is_some_and(|c| c >= cut)
                });
                if done {
                    part.released = true;
                    ready.push(part.partition);
                }
            }
            if !ready.is_empty() {
                out.push((c.id, ready.into()));
            }
        }
        out
    }

    /// A worker's records of `partition` up to `checkpoint` are acknowledged. Returns
    /// the offsets that may now be stored for commit: the furthest cut of the partition
    /// up to which every checkpoint is persisted by every worker.
    pub(crate) fn persisted(
        &mut self,
        checkpoint: u64,
        partition: i32,
        tracker: &OffsetTracker,
    ) -> Vec<(Tp, i64)> {
        if let Some(part) = self
            .open
            .iter_mut()
            .find(|c| c.id == checkpoint)
            .and_then(|c| c.parts.iter_mut().find(|p| p.partition == partition))
        {
            part.persisted += 1;
        }
        let workers = self.workers;
        // Until every worker reported, nothing moved.
        if self
            .open
            .iter()
            .find(|c| c.id == checkpoint)
            .and_then(|c| c.parts.iter().find(|p| p.partition == partition))
            .is_some_and(|p| p.persisted < workers)
        {
            return Vec::new();
        }
        let mut store = Vec::new();
        for c in &self.open {
            let Some(part) = c.parts.iter().find(|p| p.partition == partition) else {
                continue;
            };
            if part.persisted < workers {
                break;
            }
            store = part
                .cuts
                .iter()
                .filter(|(claim, _)| tracker.claim(claim.tp()) == Some(*claim))
                .map(|&(claim, cut)| (claim.tp(), cut))
                .collect();
        }
        // Checkpoints persisted in full are done with; one persisted part of a later
        // checkpoint waits for the earlier ones.
        while self
            .open
            .front()
            .is_some_and(|c| c.parts.iter().all(|p| p.persisted >= workers))
        {
            self.open.pop_front();
        }
        store
    }

    /// Whether every checkpoint part of `partitions` is persisted (nothing open).
    pub(crate) fn settled(&self, partitions: &[i32]) -> bool {
        !self.open.iter().any(|c| {
            c.parts
                .iter()
                .any(|p| partitions.contains(&p.partition) && p.persisted < self.workers)
        })
    }

    /// Restore progress that arrived: records to route, and restores that ended.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            let (p, epoch) = match &event {
                Event::Records {
                    partition, epoch, ..
                }
                | Event::Ended {
                    partition, epoch, ..
                } => (*partition, *epoch),
            };
            let Some(job) = self.restoring.get_mut(&p) else {
                continue; // revoked meanwhile
            };
            if job.claim.epoch != epoch {
                continue;
            }
            match &event {
                Event::Records { records, bytes, .. } => {
                    job.records += records.len() as u64;
                    job.bytes += bytes;
                }
                Event::Ended { outcome, .. } => {
                    let job = self.restoring.remove(&p);
                    self.status.set_restoring(self.restoring.len());
                    if let Some(job) = job {
                        let elapsed_ms = job.started.elapsed().as_millis() as u64;
                        crate::metrics::state_restore(outcome.as_str());
                        match outcome {
                            Outcome::Complete => info!(
                                partition = p,
                                records = job.records,
                                bytes = job.bytes,
                                elapsed_ms,
                                "patient state restored"
                            ),
                            Outcome::Timeout => warn!(
                                partition = p,
                                records = job.records,
                                bytes = job.bytes,
                                elapsed_ms,
                                "patient state restore timed out (pipeline.restore_timeout_secs): going live with the state read so far"
                            ),
                            Outcome::Failed(why) => warn!(
                                partition = p,
                                error = %why,
                                records = job.records,
                                "patient state restore failed: going live with the state read so far (open episodes may page again)"
                            ),
                        }
                    }
                }
            }
            out.push(event);
        }
        out
    }
}

/// [`super::Hooks::before_restore`].
pub(crate) type RestoreHook = Arc<dyn Fn(i32) -> Option<Duration> + Send + Sync>;

/// Ingest to the restore thread.
enum Request {
    Start { partition: i32, epoch: u64 },
    Cancel { partition: i32 },
}

/// How a restore ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Complete,
    Timeout,
    Failed(String),
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Timeout => "timeout",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// The restore thread to ingest.
#[derive(Debug)]
pub(crate) enum Event {
    Records {
        partition: i32,
        epoch: u64,
        records: Vec<(CompactString, Option<Vec<u8>>)>,
        bytes: u64,
    },
    Ended {
        partition: i32,
        epoch: u64,
        outcome: Outcome,
    },
}

/// A partition being read back.
struct Job {
    epoch: u64,
    deadline: Instant,
    /// The high watermark when the restore began: done once it is reached.
    end: i64,
    batch: Vec<(CompactString, Option<Vec<u8>>)>,
    bytes: u64,
    keyless: u64,
}

/// The restore thread: reads requested partitions of the state topic from the beginning
/// to the end they had when requested. Runs until ingest drops its request sender.
fn restore_loop(
    consumer: BaseConsumer,
    topic: String,
    timeout: Duration,
    requests: std_mpsc::Receiver<Request>,
    events: std_mpsc::Sender<Event>,
    hook: Option<RestoreHook>,
) {
    let mut jobs: HashMap<i32, Job> = HashMap::new();
    let flush = |events: &std_mpsc::Sender<Event>, p: i32, job: &mut Job| {
        if !job.batch.is_empty()
            && let Some(delay) = hook.as_ref().and_then(|h| h(p))
        {
            std::thread::sleep(delay);
        }
        flush(events, p, job);
    };
    let end = |jobs: &mut HashMap<i32, Job>, p: i32, outcome: Outcome, consumer: &BaseConsumer| {
        if let Some(mut job) = jobs.remove(&p) {
            flush(&events, p, &mut job);
            if job.keyless > 0 {
                crate::metrics::state_records_restored("invalid", job.keyless);
            }
            let _ = events.send(Event::Ended {
                partition: p,
                epoch: job.epoch,
                outcome,
            });
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, p);
            let _ = consumer.incremental_unassign(&tpl);
        }
    };
    loop {
        // New requests; block only when there is nothing to read.
        let request = if jobs.is_empty() {
            match requests.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        } else {
            match requests.try_recv() {
                Ok(r) => Some(r),
                Err(std_mpsc::TryRecvError::Empty) => None,
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        };
        if let Some(request) = request {
            match request {
                Request::Start { partition, epoch } => {
                    // A restart of the same partition replaces the earlier one.
                    if jobs.contains_key(&partition) {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(&topic, partition);
                        let _ = consumer.incremental_unassign(&tpl);
                        jobs.remove(&partition);
                    }
                    start(
                        &consumer, &topic, partition, epoch, timeout, &mut jobs, &events,
                    );
                }
                Request::Cancel { partition } => {
                    if jobs.remove(&partition).is_some() {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(&topic, partition);
                        let _ = consumer.incremental_unassign(&tpl);
                    }
                }
            }
            continue;
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                let p = msg.partition();
                let Some(job) = jobs.get_mut(&p) else {
                    continue;
                };
                let offset = msg.offset();
                match msg.key().map(std::str::from_utf8) {
                    Some(Ok(key)) => {
                        job.bytes += (key.len() + msg.payload_len()) as u64;
                        job.batch
                            .push((CompactString::new(key), msg.payload().map(<[u8]>::to_vec)));
                    }
                    _ => job.keyless += 1,
                }
                if job.batch.len() >= RESTORE_BATCH {
                    flush(&events, p, job);
                }
                if offset + 1 >= job.end {
                    end(&mut jobs, p, Outcome::Complete, &consumer);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                end(&mut jobs, p, Outcome::Complete, &consumer);
            }
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ))) => {
                let all: Vec<i32> = jobs.keys().copied().collect();
                for p in all {
                    end(
                        &mut jobs,
                        p,
                        Outcome::Failed("the state topic does not exist".into()),
                        &consumer,
                    );
                }
            }
            Some(Err(e)) => debug!(error = %e, "state restore consumer error"),
            None => {}
        }
        let now = Instant::now();
        let late: Vec<i32> = jobs
            .iter()
            .filter(|(_, j)| now >= j.deadline)
            .map(|(&p, _)| p)
            .collect();
        for p in late {
            end(&mut jobs, p, Outcome::Timeout, &consumer);
        }
    }
}

/// Begins reading `partition`: ends at once when it is empty or cannot be read.
fn start(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    epoch: u64,
    timeout: Duration,
    jobs: &mut HashMap<i32, Job>,
    events: &std_mpsc::Sender<Event>,
) {
    let ended = |outcome| {
        let _ = events.send(Event::Ended {
            partition,
            epoch,
            outcome,
        });
    };
    let (low, high) =
        match consumer.fetch_watermarks(topic, partition, timeout.min(Duration::from_secs(10))) {
            Ok(w) => w,
            Err(e) => {
                ended(Outcome::Failed(format!(
                    "cannot read the state topic's offsets: {e}"
                )));
                return;
            }
        };
    if high <= low {
        ended(Outcome::Complete);
        return;
    }
    let mut tpl = TopicPartitionList::new();
    if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Beginning) {
        ended(Outcome::Failed(e.to_string()));
        return;
    }
    if let Err(e) = consumer.incremental_assign(&tpl) {
        ended(Outcome::Failed(format!("cannot read the state topic: {e}")));
        return;
    }
    jobs.insert(
        partition,
        Job {
            epoch,
            deadline: Instant::now() + timeout,
            end: high,
            batch: Vec::new(),
            bytes: 0,
            keyless: 0,
        },
    );
}

fn flush(events: &std_mpsc::Sender<Event>, partition: i32, job: &mut Job) {
    if job.batch.is_empty() {
        return;
    }
    let _ = events.send(Event::Records {
        partition,
        epoch: job.epoch,
        records: std::mem::take(&mut job.batch),
        bytes: std::mem::take(&mut job.bytes),
    });
}
