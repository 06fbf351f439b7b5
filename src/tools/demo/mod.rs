//! `vitalwatch demo`: the whole service on an in-process Kafka cluster fed by a ward.
//!
//! librdkafka's mock cluster stands in for Kafka; the pipeline is [`pipeline::run`]
//! exactly as `vitalwatch run` starts it, with only the bootstrap servers changed. A
//! simulated ward ([`ward`]) produces to the input topic at a steady rate; the console
//! ([`terminal`]) reads the alert and dead-letter topics back and prints what arrives.
//!
//! Ending (after `--duration` or on Ctrl-C) checks that nothing was lost: stop the
//! ward, wait until the pipeline has read every message the ward produced, stop the
//! pipeline (which drains and commits), wait until every alert and dead letter the
//! pipeline published was read back, then print the summary. Every observation the
//! ward sent was also decoded and evaluated on the side, so the summary compares the
//! alerts read back, rule by rule, with the alerts that should exist.
//!
//! A few of the ward's patients have COPD: the demo puts them on NEWS2 SpO2 Scale 2 by
//! writing their context to the context topic before the ward starts, and the summary
//! checks that their SpO2 of 88–92 % on air raised no SpO2 or NEWS2 alert, beside what
//! Scale 1 would have raised for the same readings.

/// `println!` that ignores a closed stdout (`vitalwatch demo | head`) instead of
/// panicking: the demo carries on and still shuts the pipeline down in order.
macro_rules! say {
    () => {
        say!("")
    };
    ($($arg:tt)+) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)+);
    }};
}

mod terminal;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use compact_str::CompactString;
use console::style;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use tokio_util::sync::CancellationToken;

use super::scrape::Scrape;
use super::ward::{COPD_SPO2, Course, Ward, WardConfig, scale_2_context};
use crate::tools::cli::DemoArgs;
use terminal::{Console, Reader, Tally, Topic};
use vitalwatch::clock::now_ms;
use vitalwatch::metrics::{PROCESSING_DURATION, WORKER_QUEUE_DEPTH};
use vitalwatch::pipeline::{self, Counts, Hooks, PipelineConfig, Status};
use vitalwatch::rules::RuleSet;
use vitalwatch::rules::context::{self, PatientContext};
use vitalwatch::rules::state::{Evaluator, Reading, StateLimits};
use vitalwatch::rules::{AlertStatus, Event};
use vitalwatch::settings::Settings;
use vitalwatch::signals::Signals;
use vitalwatch::telemetry::LogFormat;
use vitalwatch::vitals::{DecodeLimits, Metric, decode};
use vitalwatch::{http, telemetry};

/// Partitions of the alert and dead-letter topics on the in-process cluster.
const ALERT_PARTITIONS: i32 = 3;
const DLQ_PARTITIONS: i32 = 1;
/// The context topic when the configuration names none (`kafka.context_topic = ""`).
const DEMO_CONTEXT_TOPIC: &str = "patient-context";
/// The rules file the default configuration names.
const DEFAULT_RULES_FILE: &str = "config/rules.toml";
/// Deterioration course when the demo runs until Ctrl-C.
const OPEN_ENDED_COURSE: Duration = Duration::from_secs(30);
/// Bound on waiting for the pipeline to read what the ward produced, at the end.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// Bound on waiting for published alerts and dead letters to be read back.
const READBACK_WAIT: Duration = Duration::from_secs(15);
/// Bound on waiting for the ward's last messages to be acknowledged.
const FEED_FLUSH: Duration = Duration::from_secs(30);

pub fn main(args: DemoArgs) -> ExitCode {
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo; `Ok(false)` when the end-of-run checks found a discrepancy.
fn run(args: &DemoArgs) -> anyhow::Result<bool> {
    let settings = Settings::load(args.config.as_deref())?;
    let (rules, rules_source) = demo_rules(&settings)?;
    // Service logs stay out of the way of the console (stderr, warnings only) unless
    // RUST_LOG asks for more.
    telemetry::init(LogFormat::Pretty, "warn");

    // Not Send: it stays on this thread, alive until the runtime has shut down. The
    // cluster belongs to a client of its own so that its group coordinator can be told
    // not to wait: librdkafka's mock waits 3 s for more members before a group's first
    // rebalance (Kafka's group.initial.rebalance.delay.ms), and the demo has one member.
    let host: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .context("cannot start the in-process Kafka cluster")?;
    let mock = host
        .client()
        .mock_cluster()
        .context("cannot start the in-process Kafka cluster")?;
    // SAFETY: the handle belongs to `host`, which outlives this call; the setter only
    // stores the value in the cluster's defaults.
    unsafe {
        let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(host.client().native_ptr());
        if !cluster.is_null() {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
    }
    let k = &settings.kafka;
    let mut topics = vec![
        (&k.input_topic, args.partitions),
        (&k.alert_topic, ALERT_PARTITIONS),
        (&k.dlq_topic, DLQ_PARTITIONS),
    ];
    if !k.repartition_topic.is_empty() {
        topics.push((&k.repartition_topic, args.partitions));
    }
    if !k.state_topic.is_empty() {
        topics.push((&k.state_topic, args.partitions));
    }
    // The COPD patients' Scale 2 lives there, co-partitioned with the input.
    let context_topic = if k.context_topic.is_empty() {
        let taken = topics.iter().any(|(t, _)| t.as_str() == DEMO_CONTEXT_TOPIC);
        anyhow::ensure!(
            !taken,
            "the demo's context topic {DEMO_CONTEXT_TOPIC} is another topic of the configuration: \
             name one in kafka.context_topic"
        );
        DEMO_CONTEXT_TOPIC.to_owned()
    } else {
        k.context_topic.clone()
    };
    topics.push((&context_topic, args.partitions));
    for (topic, partitions) in topics {
        mock.create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create topic {topic} on the in-process cluster"))?;
    }
    let mut config = settings.pipeline_config();
    config.bootstrap_servers = mock.bootstrap_servers();
    config.context_topic = Some(context_topic);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vw-worker")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(demo(args, &settings, config, rules, rules_source));
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(mock);
    drop(host);
    result
}

/// The configured rules file; the embedded NEWS2 set only when the configuration names
/// the default file and it is not there (the demo run outside a checkout).
fn demo_rules(settings: &Settings) -> anyhow::Result<(RuleSet, String)> {
    let path = &settings.rules.file;
    if settings.origin.of("rules.file") == vitalwatch::settings::KeySource::Default
        && !path.exists()
    {
        return Ok((
            RuleSet::news2_red_flags(),
            format!("the built-in NEWS2 red flags ({DEFAULT_RULES_FILE} not found here)"),
        ));
    }
    let rules = RuleSet::load(path)?;
    Ok((rules, path.display().to_string()))
}

/// Live counters of the ward feed, for the status line.
#[derive(Default)]
struct FeedProgress {
    delivered: AtomicU64,
}

/// What the ward sent, and what the pipeline should make of it.
#[derive(Debug, Default)]
struct Fed {
    /// Messages acknowledged by the cluster.
    delivered: u64,
    /// Alerts the rules raise for the valid messages sent, by rule id.
    expected_alerts: BTreeMap<String, u64>,
    /// Malformed messages sent, by the reason the decoder gives.
    invalid_by_reason: BTreeMap<&'static str, u64>,
    /// SpO2 and NEWS2 alerts the rules raise for the COPD patients under their Scale 2
    /// context (0 when the demo works).
    copd_expected: u64,
    /// SpO2 and NEWS2 alerts the same readings raise on Scale 1 (firing ones).
    copd_scale_1: u64,
}

async fn demo(
    args: &DemoArgs,
    settings: &Settings,
    config: PipelineConfig,
    rules: RuleSet,
    rules_source: String,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let signals = Signals::install();
    let status = Status::new();
    let http_stop = CancellationToken::new();
    let (metrics_addr, fallback) = serve_metrics(
        args.metrics_listen,
        settings,
        status.clone(),
        http_stop.clone(),
    )
    .await?;
    let metrics_url = format!("http://{}/metrics", display_addr(metrics_addr));
    let brokers = config.bootstrap_servers.clone();
    let rules = Arc::new(rules);

    let course_length = match args.duration {
        0 => OPEN_ENDED_COURSE,
        secs => Duration::from_secs(secs),
    };
    let ward_config = WardConfig::demo(
        args.seed,
        args.patients,
        Course {
            start_ms: now_ms(),
            length_ms: course_length.as_millis() as i64,
        },
        config.limits.max_message_bytes + 1,
    );
    let ward = Ward::new(ward_config);
    // Each COPD patient's context record, checked as the pipeline will check it.
    let copd: Vec<(String, Vec<u8>)> = ward
        .copd()
        .map(|id| (id.to_owned(), scale_2_context(id)))
        .collect();
    let contexts = copd
        .iter()
        .enumerate()
        .map(|(i, (id, value))| {
            match context::parse(Some(id.as_bytes()), Some(value), i as i64, &rules)? {
                (patient, Some(c)) => Ok((patient, c)),
                (patient, None) => Err(anyhow::anyhow!("no context parsed for {patient}")),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("the demo's Scale 2 context does not parse")?;

    say!(
        "{} on an in-process Kafka cluster at {brokers}",
        style("vitalwatch demo").bold()
    );
    say!(
        "  topics   {} ({} partitions) → {} and {}{}",
        config.input_topic,
        args.partitions,
        config.alert_topic,
        config.dlq_topic,
        config
            .repartition_topic
            .as_ref()
            .map_or(String::new(), |t| format!(
                " (readings not keyed by patient re-keyed via {t})"
            ))
    );
    if let Some(t) = &config.state_topic {
        say!("  state    patients' rule state saved in {t}, restored on assignment");
    }
    say!(
        "  rules    {} ({} rules{})",
        rules_source,
        rules.len(),
        if rules.news2().is_some() {
            " and the NEWS2 score"
        } else {
            ""
        }
    );
    if let Some(note) = &fallback {
        say!("  note     {note}");
    }
    say!("  metrics  {metrics_url}  (also /healthz and /readyz)");
    let deteriorating: Vec<&str> = ward.deteriorating().collect();
    say!(
        "  ward     {} patients, {} observations/s, seed {}, {}",
        args.patients,
        args.rate,
        args.seed,
        match args.duration {
            0 => "until Ctrl-C".to_owned(),
            s => format!("for {s} s (Ctrl-C stops early)"),
        }
    );
    say!(
        "           deteriorating over the run (pulse and breathing up, SpO2 down): {}",
        abbreviate(&deteriorating, 6)
    );
    let copd_ids: Vec<&str> = copd.iter().map(|(id, _)| id.as_str()).collect();
    say!(
        "           COPD, NEWS2 SpO2 Scale 2: {} (SpO2 {}–{} % on air; context in {})",
        abbreviate(&copd_ids, 6),
        COPD_SPO2.0,
        COPD_SPO2.1,
        config.context_topic.as_deref().unwrap_or_default()
    );
    say!(
        "  alerts   read back from {} and printed on lines marked + (seconds since start), with the",
        config.alert_topic
    );
    say!(
        "           dead letters; the screen shows a patient's repeats of one alert at most every {} s",
        terminal::REPEAT_EVERY.as_secs()
    );
    say!(
        "           (a display throttle: vitalwatch pages once per episode, reminders after cooldown_secs)"
    );
    say!();

    // Written and acknowledged before the pipeline starts: every reading of theirs is
    // evaluated on Scale 2 (the pipeline reads a partition's context before its input).
    if let Some(topic) = config.context_topic.clone() {
        let (brokers, records) = (brokers.clone(), copd.clone());
        tokio::task::spawn_blocking(move || write_contexts(&brokers, &topic, &records))
            .await
            .context("writing the patient contexts panicked")??;
    }

    let console = Console::new(started);
    let copd_set: BTreeSet<String> = copd_ids.iter().map(|&id| id.to_owned()).collect();
    let copd_patients = copd_set.len();
    let reader = Reader::spawn(
        &brokers,
        Topic {
            name: &config.alert_topic,
            partitions: ALERT_PARTITIONS,
        },
        Topic {
            name: &config.dlq_topic,
            partitions: DLQ_PARTITIONS,
        },
        copd_set,
        console.clone(),
    )?;

    let pipeline_stop = CancellationToken::new();
    let limits = config.limits;
    let input_topic = config.input_topic.clone();
    let pipeline = tokio::spawn(pipeline::run(
        config,
        rules.clone(),
        status.clone(),
        pipeline_stop.clone(),
        Hooks::default(),
    ));

    // The ward stops after --duration or on the first Ctrl-C; a second Ctrl-C quits.
    let stop = CancellationToken::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_after(
        args.duration,
        signals,
        stop.clone(),
        interrupted.clone(),
        console.clone(),
    ));

    let progress = Arc::new(FeedProgress::default());
    let feed = {
        let (stop, progress, rules) = (stop.clone(), progress.clone(), rules.clone());
        let (brokers, rate) = (brokers.clone(), u64::from(args.rate));
        tokio::task::spawn_blocking(move || {
            feed(
                &brokers,
                &input_topic,
                ward,
                rate,
                &stop,
                &rules,
                &contexts,
                limits,
                &progress,
            )
        })
    };
    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(status_ticker(
        status.clone(),
        progress.clone(),
        console.clone(),
        ticker_stop.clone(),
    ));

    let fed = feed.await.context("the ward feed panicked");
    // Whatever happened to the feed, stop the rest in order.
    stop.cancel();
    let fed = match fed {
        Ok(Ok(fed)) => Some(fed),
        Ok(Err(e)) => {
            console.line(format!(
                "{} the ward feed failed: {e:#}",
                style("error:").red()
            ));
            None
        }
        Err(e) => {
            console.line(format!("{} {e:#}", style("error:").red()));
            None
        }
    };
    let produced = fed
        .as_ref()
        .map_or(progress.delivered.load(Ordering::Relaxed), |f| f.delivered);

    let drain_started = Instant::now();
    let drained = loop {
        if status.counts().consumed >= produced {
            break true;
        }
        // A pipeline that already stopped (failed to start) will read nothing more.
        if drain_started.elapsed() >= DRAIN_WAIT || pipeline.is_finished() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    pipeline_stop.cancel();
    let report = pipeline
        .await
        .context("the pipeline task panicked")?
        .context("the pipeline failed to start")?;
    let counts = status.counts();
    let read_back = reader
        .wait_for(counts.alerts, counts.dlq, READBACK_WAIT)
        .await;
    ticker_stop.cancel();
    let _ = ticker.await;
    let tally = reader.stop();
    console.finish();

    let rendered = http::metrics_handle()
        .map(|h| vitalwatch::metrics::render_collected(&h))
        .unwrap_or_default();
    let scraped = Scrape::parse(&rendered).unwrap_or_default();
    let latency = [0.5, 0.99].map(|q| scraped.quantile(PROCESSING_DURATION, q));
    let ok = summary(&Summary {
        ran: started.elapsed(),
        interrupted: interrupted.load(Ordering::Relaxed),
        fed: fed.as_ref(),
        produced,
        counts,
        drained,
        clean: report.clean,
        read_back,
        tally: &tally,
        latency,
        metrics_url: &metrics_url,
        copd_patients,
    });
    http_stop.cancel();
    Ok(ok)
}

/// Binds `--metrics-listen`, else `http.listen`, else (when that is taken) a free
/// loopback port. Returns the address and, after a fallback, a note saying so.
async fn serve_metrics(
    flag: Option<SocketAddr>,
    settings: &Settings,
    status: Arc<Status>,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, Option<String>)> {
    if let Some(addr) = flag {
        return Ok((http::spawn(addr, status, stop).await?, None));
    }
    let wanted = settings.http_listen()?;
    match http::spawn(wanted, status.clone(), stop.clone()).await {
        Ok(addr) => Ok((addr, None)),
        Err(e) => {
            let fallback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
            let addr = http::spawn(fallback, status, stop).await?;
            Ok((
                addr,
                Some(format!(
                    "http.listen {wanted} is not available ({}), serving on a free port instead",
                    e.root_cause()
                )),
            ))
        }
    }
}

/// An address a browser can open: loopback instead of "any".
fn display_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

fn abbreviate(items: &[&str], max: usize) -> String {
    match items.len() {
        0 => "none (fewer patients than it takes)".to_owned(),
        n if n <= max => items.join(", "),
        n => format!("{}, … ({n} patients)", items[..max].join(", ")),
    }
}

/// Cancels `stop` after `duration` seconds (0: never) or on Ctrl-C/SIGTERM.
async fn stop_after(
    duration: u64,
    signals: Signals,
    stop: CancellationToken,
    interrupted: Arc<AtomicBool>,
    console: Console,
) {
    let timer = async {
        match duration {
            0 => std::future::pending().await,
            s => tokio::time::sleep(Duration::from_secs(s)).await,
        }
    };
    tokio::select! {
        () = signals.interrupts(1) => {
            interrupted.store(true, Ordering::Relaxed);
            console.line(format!(
                "{} stopping the ward, draining the pipeline (Ctrl-C again to quit at once)",
                style("interrupted:").bold()
            ));
            tokio::spawn(async move {
                signals.interrupts(2).await;
                std::process::exit(130);
            });
        }
        _ = timer => {}
        _ = stop.cancelled() => {}
    }
    stop.cancel();
}

/// Writes each (patient, context record) to the context topic and waits for the acks.
fn write_contexts(brokers: &str, topic: &str, records: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    // The ward's producer settings: the same partitioner puts a patient's context on the
    // partition number of its readings.
    let mut pump = crate::tools::loadgen::Pump::new(brokers, topic, "vitalwatch-demo-context")?;
    for (patient, value) in records {
        pump.send(patient.as_bytes(), value)?;
    }
    let delivered = pump
        .finish(FEED_FLUSH)
        .with_context(|| format!("cannot write the patient contexts to {topic}"))?;
    anyhow::ensure!(
        delivered == records.len() as u64,
        "{delivered} of {} patient contexts acknowledged by {topic}",
        records.len()
    );
    Ok(())
}

/// Whether `event` is an SpO2 rule's or the NEWS2 score's: what Scale 2 changes.
fn is_spo2_or_news2(rules: &RuleSet, event: &Event) -> bool {
    match event {
        Event::Threshold { rule, .. } => rules
            .rules()
            .get(*rule)
            .is_some_and(|r| r.metric() == Metric::Spo2),
        Event::News2 { .. } => true,
    }
}

/// The ward's producer loop: one message at a time at `rate`, until `stop`. Each
/// message is also decoded and evaluated here, to know which alerts must come out.
#[allow(clippy::too_many_arguments)]
fn feed(
    brokers: &str,
    topic: &str,
    mut ward: Ward,
    rate: u64,
    stop: &CancellationToken,
    rules: &Arc<RuleSet>,
    contexts: &[(CompactString, PatientContext)],
    limits: DecodeLimits,
    progress: &FeedProgress,
) -> anyhow::Result<Fed> {
    // The rules as the workers apply them (cooldown, hysteresis, NEWS2), over the same
    // observations in the same per-patient order: what must come out, exactly.
    let state = StateLimits {
        ttl_ms: i64::MAX,
        capacity: NonZeroUsize::MAX,
    };
    let mut evaluator = Evaluator::new(rules.clone(), state);
    // With the contexts the pipeline reads (one partition for all, as the owner below).
    for (patient, c) in contexts {
        evaluator.set_context(patient, 0, Some(c.clone()));
    }
    // The COPD patients' readings once more, without their context: Scale 1.
    let copd: BTreeSet<&str> = contexts.iter().map(|(p, _)| p.as_str()).collect();
    let mut scale_1 = Evaluator::new(rules.clone(), state);
    let mut events = Vec::new();
    let mut pump = crate::tools::loadgen::Pump::new(brokers, topic, "vitalwatch-demo-ward")?;
    let pacer = crate::tools::loadgen::Pacer::new(rate);
    let mut fed = Fed::default();
    let mut n = 0;
    while !stop.is_cancelled() {
        pacer.wait(n, &pump);
        let now = now_ms();
        let msg = ward.next(now);
        match decode(&msg.payload, &limits, now) {
            Ok(obs) => {
                events.clear();
                let reading = Reading::of(&obs);
                // One owner for everyone: the demo's partitions are never reassigned.
                evaluator.observe(&obs.patient_id, reading, (0, 0), 0, &mut events);
                let is_copd = copd.contains(obs.patient_id.as_ref());
                for event in &events {
                    *fed.expected_alerts
                        .entry(event_key(rules, event))
                        .or_default() += 1;
                    if is_copd && is_spo2_or_news2(rules, event) {
                        fed.copd_expected += 1;
                    }
                }
                if is_copd {
                    events.clear();
                    scale_1.observe(&obs.patient_id, reading, (0, 0), 0, &mut events);
                    fed.copd_scale_1 += events
                        .iter()
                        .filter(|e| e.status() == AlertStatus::Firing && is_spo2_or_news2(rules, e))
                        .count() as u64;
                }
            }
            Err(e) => *fed.invalid_by_reason.entry(e.reason()).or_default() += 1,
        }
        pump.send(msg.key.as_bytes(), &msg.payload)?;
        n += 1;
        progress
            .delivered
            .store(pump.delivered(), Ordering::Relaxed);
    }
    fed.delivered = pump.finish(FEED_FLUSH)?;
    progress.delivered.store(fed.delivered, Ordering::Relaxed);
    Ok(fed)
}

/// How the summary counts an event: its rule id, `… resolved` for the end of an episode.
fn event_key(rules: &RuleSet, event: &Event) -> String {
    let id = rules.event_rule_id(event);
    match event.status() {
        AlertStatus::Firing => id.to_owned(),
        AlertStatus::Resolved => format!("{id} resolved"),
    }
}

/// Refreshes the status line every second until `stop`.
async fn status_ticker(
    status: Arc<Status>,
    progress: Arc<FeedProgress>,
    console: Console,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let c = status.counts();
        let produced = progress.delivered.load(Ordering::Relaxed);
        let rendered = http::metrics_handle()
            .map(|h| vitalwatch::metrics::render_collected(&h))
            .unwrap_or_default();
        let queue = Scrape::parse(&rendered)
            .map(|s| s.sum(WORKER_QUEUE_DEPTH, &[]))
            .unwrap_or(0.0);
        let joining = if status.assigned_partitions() == 0 {
            "  (consumer group joining)"
        } else {
            ""
        };
        console.status(format!(
            "{:>5.1}s  consumed {:>5}/s  total {:>7}  alerts {:>5}  DLQ {:>4}  queue {:>3}  lag {:>5}{joining}",
            console.elapsed().as_secs_f64(),
            c.consumed.saturating_sub(last),
            c.consumed,
            c.alerts,
            c.dlq,
            queue,
            produced.saturating_sub(c.consumed),
        ));
        last = c.consumed;
    }
}

struct Summary<'a> {
    ran: Duration,
    interrupted: bool,
    fed: Option<&'a Fed>,
    produced: u64,
    counts: Counts,
    drained: bool,
    clean: bool,
    read_back: bool,
    tally: &'a Tally,
    latency: [Option<f64>; 2],
    metrics_url: &'a str,
    /// COPD patients on Scale 2 (their alerts are in `tally.copd_alerts`).
    copd_patients: usize,
}

/// Prints the summary; returns whether every end-of-run check passed.
fn summary(s: &Summary<'_>) -> bool {
    let mut problems = Vec::new();
    let c = s.counts;
    say!();
    say!(
        "{} ({:.1} s{})",
        style("summary").bold(),
        s.ran.as_secs_f64(),
        if s.interrupted { ", interrupted" } else { "" }
    );
    say!(
        "  messages      produced {}  consumed {}  valid {}  invalid {}  lost {}",
        s.produced,
        c.consumed,
        c.consumed.saturating_sub(c.invalid),
        c.invalid,
        s.produced.saturating_sub(c.consumed)
    );
    if s.fed.is_none() {
        problems.push("the ward feed failed (see above)".to_owned());
    }
    if !s.drained || c.consumed != s.produced {
        problems.push(format!(
            "the pipeline consumed {} of the {} messages produced",
            c.consumed, s.produced
        ));
    }
    if !s.clean {
        problems.push("the pipeline did not shut down cleanly".to_owned());
    }

    say!(
        "  alerts        {} published, {} read back from the alert topic",
        c.alerts,
        s.tally.alerts
    );
    let expected = s.fed.map(|f| &f.expected_alerts);
    let mut rules: Vec<&String> = s.tally.alerts_by_rule.keys().collect();
    if let Some(e) = expected {
        rules.extend(e.keys());
    }
    rules.sort();
    rules.dedup();
    for rule in rules {
        let got = s.tally.alerts_by_rule.get(rule).copied().unwrap_or(0);
        let want = expected.and_then(|e| e.get(rule)).copied().unwrap_or(0);
        let mark = match expected {
            Some(_) if got != want => {
                problems.push(format!("{rule}: expected {want} alerts, read back {got}"));
                style(format!("≠ {want} expected")).red().to_string()
            }
            Some(_) => style(format!("= {want} expected")).dim().to_string(),
            None => String::new(),
        };
        say!("    {rule:<24}{got:>8}  {mark}");
    }
    if s.copd_patients > 0 {
        let got = s.tally.copd_alerts;
        let want = s.fed.map(|f| f.copd_expected);
        let mark = match want {
            Some(w) if got != 0 || w != 0 => {
                problems.push(format!(
                    "COPD patients on Scale 2: {got} SpO2 or NEWS2 alerts read back, the rules raise {w}, expected 0"
                ));
                style(format!("≠ 0 expected (the rules raise {w})"))
                    .red()
                    .to_string()
            }
            Some(_) => style("= 0 expected").dim().to_string(),
            None => String::new(),
        };
        let scale_1 = s.fed.map_or(String::new(), |f| {
            format!(" (on Scale 1 the same readings raise {})", f.copd_scale_1)
        });
        say!(
            "  COPD, Scale 2 {} patients at SpO2 {}–{} %: {got} SpO2 or NEWS2 alerts{scale_1}  {mark}",
            s.copd_patients,
            COPD_SPO2.0,
            COPD_SPO2.1,
        );
    }
    if !s.read_back || s.tally.alerts != c.alerts {
        problems.push(format!(
            "{} alerts published but {} read back",
            c.alerts, s.tally.alerts
        ));
    }

    say!(
        "  dead letters  {} published, {} read back from the DLQ topic",
        c.dlq,
        s.tally.dlq
    );
    let sent = s.fed.map(|f| &f.invalid_by_reason);
    for reason in vitalwatch::vitals::DecodeError::REASONS {
        let got = s.tally.dlq_by_reason.get(reason).copied().unwrap_or(0);
        let want = sent.and_then(|m| m.get(reason)).copied().unwrap_or(0);
        if got == 0 && want == 0 {
            continue;
        }
        let mark = match sent {
            Some(_) if got != want => {
                problems.push(format!(
                    "{reason}: sent {want} malformed, dead-lettered {got}"
                ));
                style(format!("≠ {want} sent")).red().to_string()
            }
            Some(_) => style(format!("= {want} sent")).dim().to_string(),
            None => String::new(),
        };
        say!("    {reason:<24}{got:>8}  {mark}");
    }
    if c.dlq != c.invalid || s.tally.dlq != c.dlq {
        problems.push(format!(
            "{} invalid, {} dead letters published, {} read back",
            c.invalid, c.dlq, s.tally.dlq
        ));
    }

    let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.2} ms", v * 1e3));
    say!(
        "  latency       p50 {}  p99 {}  (read → alerts or dead letter acknowledged; {PROCESSING_DURATION})",
        ms(s.latency[0]),
        ms(s.latency[1])
    );
    say!("  metrics       were served at {}", s.metrics_url);
    if problems.is_empty() {
        say!(
            "  {} every message produced was consumed; every alert and dead letter was read back",
            style("ok:").green().bold()
        );
        true
    } else {
        for p in problems {
            say!("  {} {p}", style("problem:").red().bold());
        }
        false
    }
}
