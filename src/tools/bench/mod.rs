//! `vitalwatch bench`: how close vitalwatch runs to the limit of the broker it reads from.
//!
//! Absolute rates drift on a shared machine, so every figure comes with a limit measured
//! in the same run, on the same broker and the same data, alternating A and B:
//!
//! - the raw-consume limit (`vitalwatch bench-raw`: a plain rdkafka consumer loop that only
//!   drains the topic) against `vitalwatch run` draining the same backlog until its
//!   committed offsets reach the end, at several worker counts;
//! - the same with CPU-bound rules (a generated rule set thousands of rules deep), where
//!   workers, not ingest, are the limit;
//! - a latency run at half the measured maximum rate;
//! - peak memory with a backlog and with four times that backlog.
//!
//! Each measured consumer is a child process, so its CPU time and peak RSS are its own;
//! the broker (librdkafka's mock cluster by default) lives in this process. Results go to
//! `target/bench/` as JSON, a markdown table and SVG plots. See `docs/benchmarks.md`.

mod brokerless;
mod child;
mod latency;
mod report;
mod restore;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde::Serialize;

pub use child::raw_main;
use child::{Drained, Subject};
pub use latency::Latency;

use crate::tools::cli::{BaseTimestamp, BenchArgs, LoadgenArgs};
use crate::tools::ward::{WARD_METRICS, Ward, WardConfig};
use vitalwatch::clock::now_ms;

/// vitalwatch's default worker count (`pipeline.workers` in config/default.toml): the
/// configuration the headline ratios are taken at.
pub fn default_workers() -> usize {
    vitalwatch::settings::defaults().pipeline.workers
}
/// Patients in the generated traffic.
const PATIENTS: u32 = 10_000;

/// Consumer properties shared by the raw limit and vitalwatch, so that the comparison is
/// of the code, not of the fetch settings.
pub(crate) fn consumer_tuning(c: &mut ClientConfig) -> &mut ClientConfig {
    vitalwatch::pipeline::fetch_tuning(c)
}

/// What one run measures, from the command line.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub messages: u64,
    pub rounds: u32,
    pub workers: Vec<usize>,
    pub partitions: i32,
    pub cpu_bound_messages: u64,
    pub cpu_bound_rules_per_metric: usize,
    pub latency_secs: f64,
    pub memory_backlogs: Vec<u64>,
    /// Patients of the state-restore stage (none with `--no-state`).
    pub restore_patients: Vec<u64>,
}

impl Plan {
    fn from_args(a: &BenchArgs) -> Plan {
        let messages = a
            .messages
            .unwrap_or(if a.quick { 100_000 } else { 1_000_000 });
        Plan {
            messages,
            rounds: a.rounds.unwrap_or(if a.quick { 1 } else { 3 }),
            workers: a.workers.clone(),
            partitions: a.partitions,
            cpu_bound_messages: (messages / 5).max(1),
            cpu_bound_rules_per_metric: a.cpu_rules,
            latency_secs: a.latency_secs.unwrap_or(if a.quick { 5.0 } else { 20.0 }),
            memory_backlogs: if a.skip_memory {
                Vec::new()
            } else {
                vec![messages, messages * 4]
            },
            restore_patients: if a.no_state {
                Vec::new()
            } else if !a.restore_patients.is_empty() {
                a.restore_patients.clone()
            } else if a.quick {
                vec![10_000]
            } else {
                vec![10_000, 100_000]
            },
        }
    }
}

/// One measured drain.
#[derive(Debug, Clone, Serialize)]
pub struct Drain {
    /// `raw` (the limit) or `vitalwatch`.
    pub consumer: &'static str,
    /// `shipped` (config/rules.toml) or `cpu-bound`; empty for the raw consumer.
    pub rules: &'static str,
    pub workers: Option<usize>,
    pub round: u32,
    pub messages: u64,
    pub secs: f64,
    pub rate: f64,
    pub cpu_secs_per_million: f64,
    pub peak_rss_mib: f64,
    /// Records the run wrote to its state topic (runs with durable state).
    pub state_records: Option<u64>,
}

impl Drain {
    fn new(
        consumer: &'static str,
        rules: &'static str,
        workers: Option<usize>,
        round: u32,
        d: Drained,
    ) -> Drain {
        let drain = Drain {
            consumer,
            rules,
            workers,
            round,
            messages: d.messages,
            secs: d.secs,
            rate: d.messages as f64 / d.secs.max(1e-9),
            cpu_secs_per_million: d.cpu_secs / (d.messages as f64 / 1e6).max(1e-9),
            peak_rss_mib: d.peak_rss as f64 / (1024.0 * 1024.0),
            state_records: None,
        };
        eprintln!(
            "  {:<10} {:<9} workers {:>2}  round {}: {:>9} msgs in {:>6.2} s = {:>9.0} msg/s, {:>5.2} CPU-s per M, peak RSS {:>6.1} MiB",
            drain.consumer,
            drain.rules,
            drain.workers.map_or("-".into(), |w| w.to_string()),
            drain.round,
            drain.messages,
            drain.secs,
            drain.rate,
            drain.cpu_secs_per_million,
            drain.peak_rss_mib
        );
        drain
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub machine: report::Machine,
    pub broker: String,
    pub plan: Plan,
    pub inprocess: Vec<brokerless::InProcessRun>,
    pub drains: Vec<Drain>,
    pub cpu_bound: Vec<Drain>,
    /// Messages/s vitalwatch sustained while the bench produced them (the latency run's
    /// "maximum").
    pub saturated_rate: Option<f64>,
    pub latency: Option<Latency>,
    pub memory: Vec<Drain>,
    pub restores: Vec<restore::Restore>,
    pub targets: Vec<report::Target>,
    pub elapsed_secs: f64,
}

pub fn main(args: BenchArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = Plan::from_args(args);
    if plan.workers.is_empty() {
        bail!("--workers needs at least one worker count");
    }
    let out = args.out.clone();
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let exe = std::env::current_exe().context("cannot find the vitalwatch executable")?;
    let mut broker = Broker::connect(args.brokers.as_deref(), plan.partitions)?;
    broker.state = !args.no_state;
    eprintln!(
        "vitalwatch bench on {} ({} cores); results in {}",
        broker.describe(),
        report::Machine::read().cores,
        out.display()
    );

    let stage = |name: &str| eprintln!("\n== {name} ({:.0} s)", started.elapsed().as_secs_f64());
    let mut results = Results {
        machine: report::Machine::read(),
        broker: broker.describe(),
        plan: plan.clone(),
        inprocess: Vec::new(),
        drains: Vec::new(),
        cpu_bound: Vec::new(),
        saturated_rate: None,
        latency: None,
        memory: Vec::new(),
        restores: Vec::new(),
        targets: Vec::new(),
        elapsed_secs: 0.0,
    };

    let n = plan.messages.min(1_000_000);
    stage(&format!(
        "in-process: bare decode loop vs the pipeline without Kafka, {n} messages"
    ));
    results.inprocess = brokerless::run(n, &plan.workers, plan.rounds, PATIENTS)?;
    save(&mut results, &out, started)?;

    stage(&format!(
        "drain {} messages: raw consumer vs vitalwatch, {} round(s)",
        plan.messages, plan.rounds
    ));
    let topics = broker.topics("drain", plan.messages)?;
    let ends = broker.load(&topics, plan.messages)?;
    for round in 1..=plan.rounds {
        let group = broker.group("raw");
        let d = child::drain_raw(
            &exe,
            &broker.servers,
            &topics.input,
            &group,
            plan.messages,
            &logs,
        )?;
        results.drains.push(Drain::new("raw", "", None, round, d));
        for &workers in &plan.workers {
            // Each measured run with its own state topic, to count what it wrote.
            let state = if broker.state {
                broker.fresh_topic(&format!("state-vw{workers}"), topics.partitions)?
            } else {
                String::new()
            };
            let group = broker.group(&format!("vw{workers}"));
            let d = topics
                .subject_with(&exe, &broker, &group, workers, None, &logs, &state)
                .drain(&ends)?;
            let mut drain = Drain::new("vitalwatch", "shipped", Some(workers), round, d);
            if !state.is_empty() {
                drain.state_records = Some(broker.records(&state, topics.partitions)?);
                // The same drain with rule state in memory only: what durable state costs.
                let group = broker.group(&format!("mem{workers}"));
                let d = topics
                    .subject_with(&exe, &broker, &group, workers, None, &logs, "")
                    .drain(&ends)?;
                results
                    .drains
                    .push(Drain::new(MEMORY_STATE, "shipped", Some(workers), round, d));
            }
            results.drains.push(drain);
        }
    }
    save(&mut results, &out, started)?;
    if broker.state {
        for &patients in &plan.restore_patients {
            stage(&format!(
                "state restore: {patients} patients saved, then read back by a restart"
            ));
            let r = restore::run(&mut broker, &exe, &logs, patients)?;
            eprintln!(
                "  {} patients: {} state records ({} bytes) read back in {:.0} ms (slowest partition), ready {:.2} s after start",
                r.patients, r.records, r.bytes, r.restore_ms, r.ready_secs
            );
            results.restores.push(r);
        }
    }

    save(&mut results, &out, started)?;
    stage(&format!(
        "CPU-bound rules ({} per metric): {} messages",
        plan.cpu_bound_rules_per_metric, plan.cpu_bound_messages
    ));
    let heavy = out.join("cpu-bound-rules.toml");
    write_cpu_bound_rules(&heavy, plan.cpu_bound_rules_per_metric)?;
    let topics = broker.topics("cpu", plan.cpu_bound_messages)?;
    let ends = broker.load(&topics, plan.cpu_bound_messages)?;
    for round in 1..=plan.rounds {
        for &workers in &plan.workers {
            let group = broker.group(&format!("cpu{workers}"));
            let d = topics
                .subject(&exe, &broker, &group, workers, Some(&heavy), &logs)
                .drain(&ends)?;
            results.cpu_bound.push(Drain::new(
                "vitalwatch",
                "cpu-bound",
                Some(workers),
                round,
                d,
            ));
        }
    }

    save(&mut results, &out, started)?;
    let rate = match args.latency_rate {
        Some(rate) => rate,
        None => {
            let n = plan.messages;
            stage(&format!(
                "maximum rate with the producer running beside vitalwatch: {n} messages"
            ));
            let topics = broker.topics("saturate", n)?;
            let group = broker.group("saturate");
            let subject = topics.subject(&exe, &broker, &group, default_workers(), None, &logs);
            let max = latency::saturate(&subject, topics.partitions, n, PATIENTS)?;
            eprintln!("  {max:.0} msg/s, produced and processed at once");
            results.saturated_rate = Some(max);
            (max * 0.5).round() as u64
        }
    }
    .max(1);
    stage(&format!(
        "latency at {rate} msg/s (half the measured maximum) for {} s",
        plan.latency_secs
    ));
    let topics = broker.topics("latency", 0)?;
    let group = broker.group("latency");
    // Every red-flag reading alerts here (no cooldown, no NEWS2): the stage times each
    // abnormal observation to its alert, and the shipped cooldown would leave one alert
    // per patient and rule in a run of seconds.
    let every_breach = out.join("every-breach-rules.toml");
    std::fs::write(
        &every_breach,
        vitalwatch::rules::RuleSet::news2_red_flags()
            .stateless()
            .to_toml(),
    )
    .with_context(|| format!("cannot write {}", every_breach.display()))?;
    let subject = topics.subject(
        &exe,
        &broker,
        &group,
        default_workers(),
        Some(&every_breach),
        &logs,
    );
    let l = latency::run(
        &subject,
        topics.partitions,
        rate,
        plan.latency_secs,
        PATIENTS,
    )?;
    eprintln!(
        "  {} observations at {:.0} msg/s; {} of {} alerts; observation sent → alert read: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; sent → alert built p50 {:.0} / p99 {:.0} ms, built → read p50 {:.0} / p99 {:.0} ms",
        l.observations,
        l.rate,
        l.alerts,
        l.expected_alerts,
        l.p50_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        l.to_alert_p50_ms,
        l.to_alert_p99_ms,
        l.alert_to_read_p50_ms,
        l.alert_to_read_p99_ms
    );
    results.latency = Some(l);
    save(&mut results, &out, started)?;

    // Same partition count for every backlog (what the largest needs on the mock), so
    // that only the backlog differs between the runs.
    let layout = plan.memory_backlogs.iter().copied().max().unwrap_or(0);
    for (i, &n) in plan.memory_backlogs.iter().enumerate() {
        stage(&format!("memory: drain a {n}-message backlog"));
        let topics = broker.topics(&format!("mem{i}"), layout)?;
        let ends = broker.load(&topics, n)?;
        let group = broker.group("mem");
        let d = topics
            .subject(&exe, &broker, &group, default_workers(), None, &logs)
            .drain(&ends)?;
        results.memory.push(Drain::new(
            "vitalwatch",
            "shipped",
            Some(default_workers()),
            1,
            d,
        ));
        broker.forget(&topics);
        save(&mut results, &out, started)?;
    }

    save(&mut results, &out, started)?;
    println!("{}", report::targets_table(&results.targets));
    eprintln!(
        "bench finished in {:.0} s; {} and plots in {}",
        results.elapsed_secs,
        out.join("results.json").display(),
        out.display()
    );
    broker.cleanup();
    Ok(())
}

/// Writes what was measured so far, so that a failing stage keeps the others.
fn save(results: &mut Results, out: &Path, started: Instant) -> anyhow::Result<()> {
    results.targets = report::targets(results);
    results.elapsed_secs = started.elapsed().as_secs_f64();
    report::write(results, out)
}

/// A rule set that costs real CPU per observation: `per_metric` rules on every metric the
/// traffic carries ([`WARD_METRICS`]), none of which fires (thresholds no reading
/// reaches), so only evaluation is measured.
/// 2 000 per metric (a few µs a message) still leaves ingest the limit on 2 cores;
/// 20 000 does not.
fn write_cpu_bound_rules(path: &Path, per_metric: usize) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::from(
        "# Generated by `vitalwatch bench`: CPU-bound rules that the ward's readings never fire\n\
         # (each just above the bottom of its metric's plausible range).\n",
    );
    for metric in WARD_METRICS {
        let (low, _) = metric.plausible_range();
        for i in 0..per_metric {
            let _ = write!(
                text,
                "[[threshold]]\nid = \"{m}_{i}\"\nmetric = \"{m}\"\nbelow = {t:?}\nseverity = \"low\"\n",
                m = metric.as_str(),
                t = low + (i + 1) as f64 * 1e-9
            );
        }
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// What the mock keeps per partition is 5 MiB; stay well below it (keys spread unevenly
/// over partitions: 4 MiB on average still overflowed some).
const MOCK_PARTITION_BUDGET: f64 = 2.5 * 1024.0 * 1024.0;
/// Record batch and record framing per message, generously.
const MOCK_RECORD_OVERHEAD: f64 = 80.0;

/// loadgen's traffic: 5 % red-flag readings, 1 % malformed messages.
pub(crate) fn traffic(seed: u64, patients: u32) -> Ward {
    Ward::new(WardConfig {
        seed,
        patients,
        course: None,
        abnormal_ratio: 0.05,
        invalid_ratio: 0.01,
        too_large_bytes: vitalwatch::settings::defaults()
            .decode_limits()
            .max_message_bytes
            + 1,
        // No COPD patients: the traffic the tests and benchmarks are calibrated on.
        copd: false,
    })
}

/// Mean payload size of loadgen's traffic, from a sample of it.
fn mean_payload_bytes() -> f64 {
    let mut ward = traffic(1, PATIENTS);
    let n = 10_000;
    let total: usize = (0..n)
        .map(|i| {
            let m = ward.next(now_ms() + i);
            m.payload.len() + m.key.len()
        })
        .sum();
    total as f64 / n as f64
}

/// The consumer label of drains run with `kafka.state_topic = ""`.
pub(crate) const MEMORY_STATE: &str = "vitalwatch-memory";

/// Fresh topics for one stage.
pub(crate) struct Topics {
    input: String,
    alerts: String,
    dlq: String,
    /// The service's repartition topic, as its default configuration has one (loadgen
    /// keys by patient with the matching partitioner, so nothing goes through it).
    repartition: String,
    /// The service's state topic, as its default configuration has one.
    state: String,
    partitions: i32,
}

impl Topics {
    fn subject<'a>(
        &'a self,
        exe: &'a Path,
        broker: &'a Broker,
        group: &'a str,
        workers: usize,
        rules: Option<&'a Path>,
        logs: &'a Path,
    ) -> Subject<'a> {
        self.subject_with(exe, broker, group, workers, rules, logs, &self.state)
    }

    /// As [`Topics::subject`], with `state` as the service's state topic (`""`: off).
    #[allow(clippy::too_many_arguments)]
    fn subject_with<'a>(
        &'a self,
        exe: &'a Path,
        broker: &'a Broker,
        group: &'a str,
        workers: usize,
        rules: Option<&'a Path>,
        logs: &'a Path,
        state: &'a str,
    ) -> Subject<'a> {
        Subject {
            exe,
            brokers: &broker.servers,
            input: &self.input,
            alerts: &self.alerts,
            dlq: &self.dlq,
            repartition: &self.repartition,
            state,
            group,
            workers,
            rules,
            logs,
            log_level: "warn",
            mock: broker.mock.is_some(),
        }
    }
}

/// The broker under test: the in-process mock cluster, or a real cluster.
struct Broker {
    mock: Option<MockCluster<'static, DefaultProducerContext>>,
    servers: String,
    partitions: i32,
    run_id: String,
    groups: u32,
    created: Vec<String>,
    admin: Option<(AdminClient<DefaultClientContext>, tokio::runtime::Runtime)>,
    /// Mean payload size of the generated traffic.
    message_bytes: f64,
    /// Give the service a state topic (`--no-state` turns it off).
    state: bool,
}

impl Broker {
    fn connect(brokers: Option<&str>, partitions: i32) -> anyhow::Result<Broker> {
        let run_id = format!("{:x}", now_ms());
        match brokers.filter(|b| !b.trim().is_empty()) {
            None => {
                let mock =
                    MockCluster::new(1).context("cannot start the in-process mock cluster")?;
                Ok(Broker {
                    servers: mock.bootstrap_servers(),
                    mock: Some(mock),
                    partitions,
                    run_id,
                    groups: 0,
                    created: Vec::new(),
                    admin: None,
                    state: true,
                    message_bytes: mean_payload_bytes(),
                })
            }
            Some(servers) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", servers)
                    .create()
                    .context("cannot create the Kafka admin client")?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(Broker {
                    mock: None,
                    servers: servers.to_owned(),
                    partitions,
                    run_id,
                    groups: 0,
                    created: Vec::new(),
                    admin: Some((admin, runtime)),
                    message_bytes: mean_payload_bytes(),
                    state: true,
                })
            }
        }
    }

    fn describe(&self) -> String {
        match self.mock {
            Some(_) => "librdkafka's in-process mock cluster".to_owned(),
            None => format!("brokers {}", self.servers),
        }
    }

    fn group(&mut self, what: &str) -> String {
        self.groups += 1;
        format!("vitalwatch-bench-{}-{what}-{}", self.run_id, self.groups)
    }

    /// Fresh topics for a stage that will hold `messages`. The mock cluster keeps only
    /// the last 5 MiB of each partition (older data is deleted as if by retention), so
    /// on the mock a large backlog is spread over enough partitions to stay whole.
    fn topics(&mut self, stage: &str, messages: u64) -> anyhow::Result<Topics> {
        let name = |kind: &str| format!("vitalwatch-bench-{}-{stage}-{kind}", self.run_id);
        let partitions = if self.mock.is_some() {
            let bytes = messages as f64 * (self.message_bytes + MOCK_RECORD_OVERHEAD);
            self.partitions
                .max((bytes / MOCK_PARTITION_BUDGET).ceil() as i32)
        } else {
            self.partitions
        };
        let t = Topics {
            input: name("in"),
            alerts: name("alerts"),
            dlq: name("dlq"),
            repartition: name("repartition"),
            state: if self.state {
                name("state")
            } else {
                String::new()
            },
            partitions,
        };
        for topic in [&t.input, &t.alerts, &t.dlq, &t.repartition, &t.state] {
            if topic.is_empty() {
                continue;
            }
            self.create(topic, partitions)?;
        }
        Ok(t)
    }

    /// One more fresh topic of `partitions`, named after `what`.
    fn fresh_topic(&mut self, what: &str, partitions: i32) -> anyhow::Result<String> {
        self.groups += 1;
        let name = format!("vitalwatch-bench-{}-{what}-{}", self.run_id, self.groups);
        self.create(&name, partitions)?;
        Ok(name)
    }

    /// Records in `topic` now (end minus start, over its partitions).
    fn records(&self, topic: &str, partitions: i32) -> anyhow::Result<u64> {
        Ok(child::watermarks(&self.servers, topic, partitions)?
            .iter()
            .map(|&(_, low, high)| (high - low).max(0) as u64)
            .sum())
    }

    fn create(&mut self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        if let Some(mock) = &self.mock {
            mock.create_topic(topic, partitions, 1)
                .with_context(|| format!("cannot create {topic} on the mock cluster"))?;
        } else if let Some((admin, runtime)) = &self.admin {
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
            let results = runtime
                .block_on(admin.create_topics([&new], &AdminOptions::new()))
                .with_context(|| format!("cannot create {topic}"))?;
            for r in results {
                if let Err((t, code)) = r {
                    bail!("cannot create {t}: {code}");
                }
            }
        }
        self.created.push(topic.to_owned());
        Ok(())
    }

    /// Produces `n` generated messages with loadgen; returns the end offset per
    /// partition. Fails if the broker already dropped any of them.
    fn load(&self, topics: &Topics, n: u64) -> anyhow::Result<Vec<(i32, i64)>> {
        self.load_patients(topics, n, PATIENTS)
    }

    /// As [`Broker::load`], over `patients` patients.
    fn load_patients(
        &self,
        topics: &Topics,
        n: u64,
        patients: u32,
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        let topic = &topics.input;
        let args = LoadgenArgs {
            brokers: Some(self.servers.clone()),
            mock: false,
            partitions: topics.partitions,
            topic: topic.to_owned(),
            config: None,
            messages: n,
            rate: 0,
            patients,
            abnormal_ratio: 0.05,
            invalid_ratio: 0.01,
            seed: 1,
            base_timestamp: BaseTimestamp::Now,
        };
        let s = crate::tools::loadgen::run(&args)?;
        eprintln!(
            "  loaded {} messages into {topic} ({} partitions) at {:.0} msg/s",
            s.produced,
            topics.partitions,
            s.rate()
        );
        let mut ends = Vec::new();
        for (p, low, high) in child::watermarks(&self.servers, topic, topics.partitions)? {
            if low > 0 {
                bail!(
                    "{topic}/{p} starts at offset {low}: the broker deleted part of the backlog (the mock cluster keeps 5 MiB per partition); use more --partitions"
                );
            }
            ends.push((p, high));
        }
        Ok(ends)
    }

    /// Drops a stage's topics from a real cluster once measured (the mock keeps them
    /// until the run ends).
    fn forget(&mut self, topics: &Topics) {
        if self.admin.is_some() {
            let names = [&topics.input, &topics.alerts, &topics.dlq];
            self.delete(&names.map(String::as_str));
            self.created.retain(|t| !names.contains(&t));
        }
    }

    fn delete(&self, names: &[&str]) {
        if let Some((admin, runtime)) = &self.admin {
            let _ = runtime.block_on(admin.delete_topics(names, &AdminOptions::new()));
        }
    }

    fn cleanup(&mut self) {
        let names: Vec<String> = std::mem::take(&mut self.created);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.delete(&names);
    }
}
