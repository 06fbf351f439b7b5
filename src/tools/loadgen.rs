//! `vitalwatch loadgen`: synthetic vital signs for any broker.
//!
//! The messages come from the demo's ward simulator ([`crate::tools::ward`]) without
//! deteriorating patients: `--abnormal-ratio` injects red-flag readings and
//! `--invalid-ratio` malformed messages. Output is deterministic: the same seed and flags
//! give the same sequence of (key, payload); with a fixed `--base-timestamp` the
//! timestamps too (they count up from it instead of following the wall clock), and since
//! the key is the patient id and the producer is idempotent (order kept across retries),
//! every partition receives the same messages in the same order.
//!
//! [`Pump`] and [`Pacer`] are shared with the demo's ward feed: a pipelined producer that
//! waits on a full local queue by polling, and a rate limiter.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

use crate::tools::cli::{BaseTimestamp, LoadgenArgs};
use crate::tools::ward::{Kind, Ward, WardConfig};
use vitalwatch::clock::now_ms;
use vitalwatch::pipeline::repartition::Partitioner;
use vitalwatch::secret::ClientProps;
use vitalwatch::settings::Settings;

/// How long to wait for the brokers to answer before producing anything.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the final flush may wait for outstanding acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a loadgen run produced.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Messages acknowledged by the broker.
    pub produced: u64,
    /// Of those, red-flag readings injected by `--abnormal-ratio`.
    pub abnormal: u64,
    /// Of those, malformed messages (`--invalid-ratio`).
    pub invalid: u64,
    /// From the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// From the first send to the first acknowledgement: the producer's start-up (the
    /// idempotent producer waits for its producer id), included in `elapsed`.
    pub first_ack: Option<Duration>,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        self.produced as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn main(args: LoadgenArgs) -> ExitCode {
    match run(&args) {
        Ok(s) => {
            let first_ack = s.first_ack.map_or(String::new(), |d| {
                format!("; first acknowledged after {:.2} s", d.as_secs_f64())
            });
            println!(
                "produced {} messages in {:.2} s ({:.0} msg/s); {} red-flag readings, {} malformed{first_ack}",
                s.produced,
                s.elapsed.as_secs_f64(),
                s.rate(),
                s.abnormal,
                s.invalid
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Produces `args.messages` messages to `args.topic` and returns once all are
/// acknowledged. With `args.mock`, against a fresh in-process cluster.
pub fn run(args: &LoadgenArgs) -> anyhow::Result<Summary> {
    if args.mock {
        let mock = MockCluster::new(1).context("cannot start the in-process mock cluster")?;
        mock.create_topic(&args.topic, args.partitions, 1)
            .with_context(|| format!("cannot create topic {} on the mock cluster", args.topic))?;
        return produce(&mock.bootstrap_servers(), &ClientProps::default(), args);
    }
    let brokers = args
        .brokers
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .context("give --brokers host:port (or --mock for an in-process cluster)")?;
    // The service's own [kafka.client] settings (TLS, SASL, the password file), so that
    // loadgen reaches a secured cluster the way `run` does.
    let settings = Settings::load(args.config.as_deref())?;
    let mut client = settings.kafka.client.clone();
    if !client.has("partitioner") {
        client.insert(
            "partitioner",
            settings.kafka.input_partitioner.librdkafka_name(),
        );
    }
    produce(brokers, &client, args)
}

fn produce(brokers: &str, client: &ClientProps, args: &LoadgenArgs) -> anyhow::Result<Summary> {
    let mut ward = Ward::new(WardConfig {
        seed: args.seed,
        patients: args.patients,
        course: None,
        abnormal_ratio: args.abnormal_ratio,
        invalid_ratio: args.invalid_ratio,
        too_large_bytes: vitalwatch::settings::defaults()
            .decode_limits()
            .max_message_bytes
            + 1,
        // No COPD patients: the traffic the tests and benchmarks are calibrated on.
        copd: false,
    });
    let mut pump = Pump::with_client(brokers, &args.topic, "vitalwatch-loadgen", client)?;
    pump.connect(CONNECT_TIMEOUT)
        .with_context(|| format!("cannot reach the brokers at {brokers}"))?;
    let progress = progress_bar(args.messages);
    let pacer = Pacer::new(args.rate);
    let (mut abnormal, mut invalid) = (0, 0);
    for i in 0..args.messages {
        pacer.wait(i, &pump);
        let ts = match args.base_timestamp {
            BaseTimestamp::Now => now_ms(),
            BaseTimestamp::Fixed(base) => base.saturating_add(i as i64),
        };
        let msg = ward.next(ts);
        match msg.kind {
            Kind::Normal => {}
            Kind::Abnormal => abnormal += 1,
            Kind::Invalid(_) => invalid += 1,
        }
        pump.send(msg.key.as_bytes(), &msg.payload)
            .with_context(|| format!("producing to {} at {brokers}", args.topic))?;
        if i % 1024 == 0 {
            progress.set_position(i);
        }
    }
    progress.set_position(args.messages);
    let produced = pump
        .finish(FLUSH_TIMEOUT)
        .with_context(|| format!("producing to {} at {brokers}", args.topic))?;
    progress.finish_and_clear();
    Ok(Summary {
        produced,
        abnormal,
        invalid,
        elapsed: pacer.elapsed(),
        first_ack: pump
            .first_ack()
            .map(|t| t.saturating_duration_since(pacer.started)),
    })
}

fn progress_bar(len: u64) -> ProgressBar {
    // Hidden by indicatif itself when stderr is not a terminal.
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} {wide_bar} {human_pos}/{human_len} {per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Delivery outcomes, counted by the producer's delivery callback.
#[derive(Default)]
pub(crate) struct Acks {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    first_ack: OnceLock<Instant>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.first_ack.get_or_init(Instant::now);
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock()
                    && first.is_none()
                {
                    *first = Some(format!("{e} (partition {})", msg.partition()));
                }
            }
        }
    }
}

/// A pipelined producer: sends never wait for an acknowledgement; when librdkafka's
/// local queue is full, it polls (serving acknowledgements) until there is room.
pub(crate) struct Pump {
    producer: BaseProducer<Acks>,
    topic: String,
    sent: u64,
}

impl Pump {
    pub(crate) fn new(brokers: &str, topic: &str, client_id: &str) -> anyhow::Result<Pump> {
        Self::with_linger(brokers, topic, client_id, 5)
    }

    /// As [`Pump::new`] with another `linger.ms` (0 for a latency probe: every message
    /// leaves as soon as the previous request is answered).
    pub(crate) fn with_linger(
        brokers: &str,
        topic: &str,
        client_id: &str,
        linger_ms: u32,
    ) -> anyhow::Result<Pump> {
        Self::build(
            brokers,
            topic,
            client_id,
            linger_ms,
            &ClientProps::default(),
        )
    }

    /// As [`Pump::new`], with librdkafka properties (TLS, SASL) over its own.
    pub(crate) fn with_client(
        brokers: &str,
        topic: &str,
        client_id: &str,
        client: &ClientProps,
    ) -> anyhow::Result<Pump> {
        Self::build(brokers, topic, client_id, 5, client)
    }

    fn build(
        brokers: &str,
        topic: &str,
        client_id: &str,
        linger_ms: u32,
        client: &ClientProps,
    ) -> anyhow::Result<Pump> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", client_id)
            // Keeps each partition in send order across retries while many requests are
            // in flight: what makes the output deterministic per partition.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", "60000")
            // Keyed by patient id onto the partition vitalwatch takes for the patient's
            // home (kafka.input_partitioner's default), so nothing needs re-keying.
            .set("partitioner", Partitioner::Murmur2.librdkafka_name());
        for (k, v) in client.expose() {
            config.set(k, v);
        }
        let producer = config
            .create_with_context(Acks::default())
            .context("cannot create the Kafka producer")?;
        Ok(Pump {
            producer,
            topic: topic.to_owned(),
            sent: 0,
        })
    }

    /// Asks the brokers for the topic's metadata: fails fast when they are unreachable
    /// (instead of after the message timeout). A topic the broker has yet to create is
    /// not an error here.
    pub(crate) fn connect(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map(drop)
            .map_err(Into::into)
    }

    /// Hands one message to the producer. Fails on a delivery error seen so far, so a
    /// wrong topic or an unreachable cluster stops the run early.
    pub(crate) fn send(&mut self, key: &[u8], payload: &[u8]) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context("cannot enqueue a message"),
            }
        }
        self.sent += 1;
        if self.sent.is_multiple_of(1024) {
            self.producer.poll(Duration::ZERO);
            self.check()?;
        }
        Ok(())
    }

    /// Serves acknowledgements for up to `timeout` (returns earlier when one arrives).
    pub(crate) fn serve(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.producer.context().delivered.load(Ordering::Relaxed)
    }

    pub(crate) fn first_ack(&self) -> Option<Instant> {
        self.producer.context().first_ack.get().copied()
    }

    fn check(&self) -> anyhow::Result<()> {
        let acks = self.producer.context();
        let failed = acks.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = acks
                .first_error
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_default();
            bail!("{failed} messages were not delivered; first error: {first}");
        }
        Ok(())
    }

    /// Waits for every outstanding acknowledgement; returns how many were delivered.
    pub(crate) fn finish(&self, timeout: Duration) -> anyhow::Result<u64> {
        if let Err(e) = self.producer.flush(timeout) {
            bail!(
                "{} of {} messages still unacknowledged after {} s: {e}",
                self.sent.saturating_sub(self.delivered()),
                self.sent,
                timeout.as_secs()
            );
        }
        self.producer.poll(Duration::ZERO);
        self.check()?;
        Ok(self.delivered())
    }
}

/// Keeps a send rate: message `n` goes out no earlier than `n / rate` seconds after the
/// start. Rate 0 is unthrottled.
pub(crate) struct Pacer {
    rate: u64,
    started: Instant,
}

impl Pacer {
    pub(crate) fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            started: Instant::now(),
        }
    }

    /// Waits, serving the producer meanwhile, until message `n` is due. Sends up to a
    /// millisecond early rather than spin (librdkafka's poll counts in milliseconds).
    pub(crate) fn wait(&self, n: u64, pump: &Pump) {
        if self.rate == 0 {
            return;
        }
        let due = self.started + Duration::from_secs_f64(n as f64 / self.rate as f64);
        loop {
            let ahead = due.saturating_duration_since(Instant::now());
            if ahead < Duration::from_millis(1) {
                return;
            }
            pump.serve(ahead.min(Duration::from_millis(100)));
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}
