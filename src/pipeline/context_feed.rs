//! Patient context: reading `kafka.context_topic` for the partitions this instance owns.
//!
//! The context topic is co-partitioned with the input topic: a patient's record lives on
//! the partition of the input topic that is the patient's home (the same partitioner,
//! the same partition count). Each instance therefore reads the context partitions of
//! exactly the input partitions the group gave it, and holds only its own patients'
//! contexts, not the whole table on every replica.
//!
//! The context thread has its own consumer, assigned by hand (no group: Kafka Streams'
//! restore consumer does the same for its state stores). When input partition p is
//! assigned anew, ingest pauses it, tells the workers to forget what they held of p's
//! context, and asks this thread for context partition p. The thread reads it from the
//! beginning and hands the records to ingest, which routes each to the worker that owns
//! its patient, in order ahead of any reading. When the read reaches the partition's end
//! as of the request (its high watermark then), ingest resumes p: every reading of p is
//! evaluated under the context written before p was assigned. The thread then keeps
//! following p, so a change written later applies to the readings ingest reads after
//! the change reached it. Kafka orders two topics only by when they are read, so a
//! context must be written before the readings it must govern.
//!
//! Contexts live in the workers' memory: a restart or a rebalance reads them again. The
//! topic is compacted, so that is one record per patient.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::PipelineConfig;
use super::status::Status;

/// Records per batch handed to ingest.
const BATCH: usize = 512;

/// One record of the context topic, as read.
#[derive(Debug)]
pub(crate) struct ContextRecord {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
}

/// Ingest's side: which partitions are still catching up, and the thread's news.
pub(crate) struct ContextFeed {
    topic: String,
    /// Input partitions whose context is being read to its end, and since when (their
    /// epoch is in `following`).
    catching_up: HashMap<i32, Instant>,
    /// The epoch of each partition followed (caught up or not).
    following: HashMap<i32, u64>,
    next_epoch: u64,
    requests: std_mpsc::Sender<Request>,
    events: std_mpsc::Receiver<Event>,
    status: Arc<Status>,
}

/// What ingest gets from [`ContextFeed::take_events`].
#[derive(Debug)]
pub(crate) enum FeedEvent {
    /// Records of context partition `partition`, in offset order.
    Records {
        partition: i32,
        records: Vec<ContextRecord>,
    },
    /// The partition's context is read to the end it had when requested.
    CaughtUp { partition: i32 },
}

impl ContextFeed {
    /// Starts the context thread for `config`'s context topic `topic`.
    pub(crate) fn start(
        config: &PipelineConfig,
        topic: &str,
        status: Arc<Status>,
    ) -> anyhow::Result<ContextFeed> {
        let timeout = config.restore_timeout;
        let consumer: BaseConsumer = config.context_config().create().map_err(|e| {
            anyhow::anyhow!(
                "cannot create the patient context consumer: {}",
                super::ClientConfigError::from_kafka(&e)
            )
        })?;
        let (requests, requests_rx) = std_mpsc::channel();
        let (events_tx, events) = std_mpsc::channel();
        let thread_topic = topic.to_owned();
        std::thread::Builder::new()
            .name("vw-context".into())
            .spawn(move || feed_loop(consumer, thread_topic, timeout, requests_rx, events_tx))
            .map_err(|e| anyhow::anyhow!("cannot start the patient context thread: {e}"))?;
        Ok(ContextFeed {
            topic: topic.to_owned(),
            catching_up: HashMap::new(),
            following: HashMap::new(),
            next_epoch: 0,
            requests,
            events,
            status,
        })
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether input partition `p` waits for its context to be read.
    pub(crate) fn is_catching_up(&self, p: i32) -> bool {
        self.catching_up.contains_key(&p)
    }

    /// Input partition `p` was assigned anew: its context is read from the beginning.
    /// The caller has paused it and told the workers to forget its contexts.
    pub(crate) fn begin(&mut self, p: i32) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.catching_up.insert(p, Instant::now());
        self.following.insert(p, epoch);
        self.status.set_catching_up(self.catching_up.len());
        let _ = self.requests.send(Request::Start {
            partition: p,
            epoch,
        });
    }

    /// Input partition `p` was revoked or lost: its context is no longer followed.
    pub(crate) fn revoked(&mut self, p: i32) {
        self.catching_up.remove(&p);
        if self.following.remove(&p).is_some() {
            let _ = self.requests.send(Request::Cancel { partition: p });
        }
        self.status.set_catching_up(self.catching_up.len());
    }

    /// What the thread read since the last call, for partitions still followed under
    /// the epoch they were read for.
    pub(crate) fn take_events(&mut self) -> Vec<FeedEvent> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            let (partition, epoch) = match &event {
                Event::Records {
                    partition, epoch, ..
                }
                | Event::CaughtUp {
                    partition, epoch, ..
                } => (*partition, *epoch),
            };
            if self.following.get(&partition) != Some(&epoch) {
                continue; // revoked, or requested again, meanwhile
            }
            match event {
                Event::Records { records, .. } => {
                    out.push(FeedEvent::Records { partition, records })
                }
                Event::CaughtUp {
                    outcome,
                    records,
                    bytes,
                    ..
                } => {
                    let Some(started) = self.catching_up.remove(&partition) else {
                        continue;
                    };
                    self.status.set_catching_up(self.catching_up.len());
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    crate::metrics::context_catch_up(outcome.is_ok());
                    match outcome {
                        Ok(()) => info!(
                            partition,
                            records, bytes, elapsed_ms, "patient context caught up"
                        ),
                        Err(why) => warn!(
                            partition,
                            records,
                            elapsed_ms,
                            error = %why,
                            "patient context not read to its end: going live with the context read so far (patients without one are evaluated on the defaults)"
                        ),
                    }
                    out.push(FeedEvent::CaughtUp { partition });
                }
            }
        }
        out
    }
}

impl Drop for ContextFeed {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
    }
}

/// Ingest to the context thread.
enum Request {
    Start { partition: i32, epoch: u64 },
    Cancel { partition: i32 },
    Stop,
}

/// The context thread to ingest.
#[derive(Debug)]
enum Event {
    Records {
        partition: i32,
        epoch: u64,
        records: Vec<ContextRecord>,
    },
    CaughtUp {
        partition: i32,
        epoch: u64,
        /// `Err`: ended without reaching the end (timeout, the topic is gone).
        outcome: Result<(), String>,
        records: u64,
        bytes: u64,
    },
}

/// A partition followed by the thread.
struct Job {
    epoch: u64,
    /// Until caught up: the high watermark when the read began, and the deadline.
    catch_up: Option<(i64, Instant)>,
    batch: Vec<ContextRecord>,
    records: u64,
    bytes: u64,
}

/// The context thread: reads requested partitions from the beginning, says when each
/// reached the end it had when requested, and keeps following them. Runs until ingest
/// drops its request sender.
fn feed_loop(
    consumer: BaseConsumer,
    topic: String,
    timeout: Duration,
    requests: std_mpsc::Receiver<Request>,
    events: std_mpsc::Sender<Event>,
) {
    let mut jobs: HashMap<i32, Job> = HashMap::new();
    let unassign = |p: i32| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, p);
        let _ = consumer.incremental_unassign(&tpl);
    };
    loop {
        // Requests first; block only when nothing is followed.
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
        match request {
            Some(Request::Stop) => return,
            Some(Request::Start { partition, epoch }) => {
                if jobs.remove(&partition).is_some() {
                    unassign(partition);
                }
                if let Some(job) = start(&consumer, &topic, partition, epoch, timeout, &events) {
                    jobs.insert(partition, job);
                }
                continue;
            }
            Some(Request::Cancel { partition }) => {
                if jobs.remove(&partition).is_some() {
                    unassign(partition);
                }
                continue;
            }
            None => {}
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                let p = msg.partition();
                let Some(job) = jobs.get_mut(&p) else {
                    continue;
                };
                let offset = msg.offset();
                job.bytes += (msg.key_len() + msg.payload_len()) as u64;
                job.records += 1;
                job.batch.push(ContextRecord {
                    key: msg.key().map(<[u8]>::to_vec),
                    value: msg.payload().map(<[u8]>::to_vec),
                    offset,
                    timestamp: msg.timestamp().to_millis(),
                });
                let reached = job.catch_up.is_some_and(|(end, _)| offset + 1 >= end);
                if job.batch.len() >= BATCH || reached {
                    flush(&events, p, job);
                }
                if reached {
                    caught_up(&events, p, job, Ok(()));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(job) = jobs.get_mut(&p) {
                    flush(&events, p, job);
                    if job.catch_up.is_some() {
                        caught_up(&events, p, job, Ok(()));
                    }
                }
            }
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ))) => {
                for (&p, job) in jobs.iter_mut().filter(|(_, j)| j.catch_up.is_some()) {
                    caught_up(
                        &events,
                        p,
                        job,
                        Err("the context topic does not exist".into()),
                    );
                }
            }
            Some(Err(e)) => debug!(error = %e, "patient context consumer error"),
            None => {
                // Quiet: hand over what a live partition read.
                for (&p, job) in jobs.iter_mut() {
                    flush(&events, p, job);
                }
            }
        }
        let now = Instant::now();
        for (&p, job) in jobs.iter_mut() {
            if job.catch_up.is_some_and(|(_, deadline)| now >= deadline) {
                flush(&events, p, job);
                caught_up(
                    &events,
                    p,
                    job,
                    Err("timed out (pipeline.restore_timeout_secs)".into()),
                );
            }
        }
    }
}

/// Begins following `partition` from the beginning; says at once that it is caught up
/// when it is empty or its end cannot be learnt (it is followed all the same), and
/// returns `None` when it cannot be read at all.
fn start(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    epoch: u64,
    timeout: Duration,
    events: &std_mpsc::Sender<Event>,
) -> Option<Job> {
    let mut job = Job {
        epoch,
        catch_up: Some((0, Instant::now() + timeout)),
        batch: Vec::new(),
        records: 0,
        bytes: 0,
    };
    let watermarks =
        consumer.fetch_watermarks(topic, partition, timeout.min(Duration::from_secs(10)));
    let mut tpl = TopicPartitionList::new();
    let assigned = tpl
        .add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            consumer
                .incremental_assign(&tpl)
                .map_err(|e| format!("cannot read the context topic: {e}"))
        });
    if let Err(why) = assigned {
        caught_up(events, partition, &mut job, Err(why));
        return None;
    }
    match watermarks {
        Ok((low, high)) if high > low => job.catch_up = Some((high, Instant::now() + timeout)),
        Ok(_) => caught_up(events, partition, &mut job, Ok(())),
        Err(e) => caught_up(
            events,
            partition,
            &mut job,
            Err(format!("cannot read the context topic's offsets: {e}")),
        ),
    }
    Some(job)
}

fn flush(events: &std_mpsc::Sender<Event>, partition: i32, job: &mut Job) {
    if job.batch.is_empty() {
        return;
    }
    let _ = events.send(Event::Records {
        partition,
        epoch: job.epoch,
        records: std::mem::take(&mut job.batch),
    });
}

/// Reports `partition` caught up (once); it stays followed.
fn caught_up(
    events: &std_mpsc::Sender<Event>,
    partition: i32,
    job: &mut Job,
    outcome: Result<(), String>,
) {
    if job.catch_up.take().is_none() {
        return;
    }
    let _ = events.send(Event::CaughtUp {
        partition,
        epoch: job.epoch,
        outcome,
        records: job.records,
        bytes: job.bytes,
    });
}
