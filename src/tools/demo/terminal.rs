//! What the demo shows: alerts as they arrive on the alert topic, the first dead letter
//! of each reason, a status line once a second, and the summary at the end.
//!
//! Alerts and dead letters are read back from their topics by a plain consumer, as a
//! downstream system would, so the console shows what was published rather than what
//! the pipeline meant to publish.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use console::{Term, style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use vitalwatch::alert::OwnedAlert;
use vitalwatch::vitals::Metric;

/// A repeated alert of one patient and rule is printed at most this often.
pub const REPEAT_EVERY: Duration = Duration::from_secs(5);

/// The terminal: lines scroll above a live status line when stdout is a terminal;
/// otherwise (a pipe, a test) everything is plain lines, without colour.
#[derive(Clone)]
pub struct Console {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Console {
    pub fn new(started: Instant) -> Console {
        let bar = Term::stdout().is_term().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            if let Ok(s) = ProgressStyle::with_template("{spinner:.cyan} {msg}") {
                bar.set_style(s);
            }
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Console { bar, started }
    }

    /// Prints a line (above the status line when there is one).
    pub fn line(&self, text: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => say!("{}", text.as_ref()),
        }
    }

    pub fn status(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.set_message(text),
            None => say!("{text}"),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Removes the status line (before the summary).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What was read back from the alert and dead-letter topics.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub alerts: u64,
    pub alerts_by_rule: BTreeMap<String, u64>,
    pub dlq: u64,
    pub dlq_by_reason: BTreeMap<String, u64>,
    /// Records on the alert topic that were not alert JSON.
    pub unreadable: u64,
    /// SpO2 and NEWS2 alerts (firing or resolved) of the watched (COPD) patients.
    pub copd_alerts: u64,
}

/// A consumer of the alert and DLQ topics on its own thread, printing as it reads.
pub struct Reader {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    handle: JoinHandle<()>,
}

/// A topic and its partition count.
pub struct Topic<'a> {
    pub name: &'a str,
    pub partitions: i32,
}

impl Reader {
    pub fn spawn(
        brokers: &str,
        alerts: Topic<'_>,
        dlq: Topic<'_>,
        copd: BTreeSet<String>,
        console: Console,
    ) -> anyhow::Result<Reader> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "vitalwatch-demo-console")
            .set("client.id", "vitalwatch-demo-console")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .context("cannot create the console's consumer")?;
        let mut tpl = TopicPartitionList::new();
        for t in [&alerts, &dlq] {
            for p in 0..t.partitions {
                tpl.add_partition_offset(t.name, p, Offset::Beginning)
                    .context("cannot assign the alert and DLQ topics")?;
            }
        }
        consumer
            .assign(&tpl)
            .context("cannot assign the alert and DLQ topics")?;
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let alert_topic = alerts.name.to_owned();
        let handle = {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::Builder::new()
                .name("vw-demo-console".into())
                .spawn(move || read(consumer, &alert_topic, &copd, &console, &stop, &tally))
                .context("cannot start the console thread")?
        };
        Ok(Reader {
            stop,
            tally,
            handle,
        })
    }

    pub fn tally(&self) -> Tally {
        lock(&self.tally).clone()
    }

    /// Waits until `alerts` alerts and `dlq` dead letters were read, or `timeout`.
    pub async fn wait_for(&self, alerts: u64, dlq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.tally();
            if t.alerts >= alerts && t.dlq >= dlq {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the thread and returns the final tally.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        lock(&self.tally).clone()
    }
}

fn lock(t: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    // Only counters inside: a panic mid-update leaves them usable.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

fn read(
    consumer: BaseConsumer,
    alert_topic: &str,
    copd: &BTreeSet<String>,
    console: &Console,
    stop: &AtomicBool,
    tally: &Mutex<Tally>,
) {
    // (patient, rule) → when last printed, and how many arrived since.
    let mut shown: HashMap<(String, String), (Instant, u64)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let msg = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => m,
            Some(Err(_)) | None => continue,
        };
        let payload = msg.payload().unwrap_or_default();
        if msg.topic() == alert_topic {
            let Ok(alert) = serde_json::from_slice::<OwnedAlert>(payload) else {
                lock(tally).unreadable += 1;
                continue;
            };
            {
                let mut t = lock(tally);
                t.alerts += 1;
                let key = if alert.status == "resolved" {
                    format!("{} resolved", alert.rule_id)
                } else {
                    alert.rule_id.clone()
                };
                *t.alerts_by_rule.entry(key).or_default() += 1;
                if matches!(alert.metric.as_str(), "spo2" | "news2")
                    && copd.contains(&alert.patient_id)
                {
                    t.copd_alerts += 1;
                }
            }
            let now = Instant::now();
            let key = (alert.patient_id.clone(), alert.rule_id.clone());
            match shown.get_mut(&key) {
                Some((last, since)) if now.duration_since(*last) < REPEAT_EVERY => *since += 1,
                Some((last, since)) => {
                    console.line(alert_line(console.elapsed(), &alert, Some(*since)));
                    (*last, *since) = (now, 0);
                }
                None => {
                    console.line(alert_line(console.elapsed(), &alert, None));
                    shown.insert(key, (now, 0));
                }
            }
        } else {
            let header = |name: &str| {
                msg.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            };
            let reason = header("vitalwatch.error.reason").unwrap_or_else(|| "(none)".into());
            let first = {
                let mut t = lock(tally);
                t.dlq += 1;
                let n = t.dlq_by_reason.entry(reason.clone()).or_default();
                *n += 1;
                *n == 1
            };
            if first {
                let key = msg
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let why = header("vitalwatch.error.message").unwrap_or_default();
                console.line(format!(
                    "{} {}  {:<8}  {:<21}  {}",
                    style(format!("+{:>5.1}s", console.elapsed().as_secs_f64())).dim(),
                    style("DLQ   ").magenta(),
                    key,
                    reason,
                    style(why).dim()
                ));
            }
        }
    }
}

fn alert_line(at: Duration, a: &OwnedAlert, repeats: Option<u64>) -> String {
    let metric = Metric::from_wire(&a.metric);
    let name = match metric {
        Some(Metric::HeartRate) => "pulse",
        Some(Metric::RespiratoryRate) => "resp. rate",
        Some(Metric::Spo2) => "SpO2",
        Some(Metric::SystolicBp) => "systolic BP",
        Some(Metric::DiastolicBp) => "diastolic BP",
        Some(Metric::Temperature) => "temperature",
        Some(Metric::SupplementalOxygen) => "oxygen",
        Some(Metric::Consciousness) => "consciousness",
        None if a.metric == "news2" => "NEWS2",
        None => a.metric.as_str(),
    };
    let unit = match metric.map(Metric::unit).unwrap_or_default() {
        "Cel" => "°C",
        // UCUM's dimensionless "1" would read as a second number.
        "1" => "",
        unit => unit,
    };
    let side = if a.status == "resolved" {
        "resolved; threshold"
    } else if a.metric == "news2" {
        // The aggregate reaches the band's start (5 or 7), or one parameter scores 3.
        "score ≥"
    } else if a.value > a.threshold {
        "above"
    } else {
        "below"
    };
    let severity = format!("{:<6}", a.severity.to_uppercase());
    let severity = match a.severity.as_str() {
        "high" => style(severity).red().bold(),
        "medium" => style(severity).yellow().bold(),
        _ => style(severity).cyan(),
    };
    let reading = format!("{name} {} {unit}", a.value).trim_end().to_owned();
    let mut line = format!(
        "{} {}  {:<8}  {:<21}  {:<18} {}",
        style(format!("+{:>5.1}s", at.as_secs_f64())).dim(),
        severity,
        a.patient_id,
        a.rule_id,
        reading,
        style(format!("({side} {})", a.threshold)).dim(),
    );
    if let Some(n) = repeats {
        line.push_str(&format!(
            "  {}",
            style(format!("still firing, +{n} since last shown")).dim()
        ));
    }
    line
}
