//! The latency run: a steady rate of observations into a running vitalwatch, and for each
//! alert the time from its observation's send to the alert reaching a consumer of the
//! alert topic.
//!
//! Every observation gets a unique timestamp (a base plus its sequence number), which the
//! alert carries back as `observedAt`: that is how an alert finds its send time. The end
//! point is a downstream consumer seeing the alert, a little later than vitalwatch's own
//! delivery acknowledgement (one fetch round trip to the broker); vitalwatch's
//! `processing_duration` histogram (read to acknowledged) is reported next to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::child::Subject;
use crate::tools::loadgen::{Pacer, Pump};
use crate::tools::scrape;
use crate::tools::ward::{Kind, Ward, WardConfig};
use vitalwatch::alert::OwnedAlert;
use vitalwatch::clock::now_ms;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Observations per second offered.
    pub rate: f64,
    pub secs: f64,
    pub observations: u64,
    /// Alerts expected (red-flag readings sent) and received.
    pub expected_alerts: u64,
    pub alerts: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The first half: observation sent → vitalwatch built its alert (`emittedAt`; wall
    /// clock, 1 ms resolution).
    pub to_alert_p50_ms: f64,
    pub to_alert_p99_ms: f64,
    /// The second half: alert built → read from the alert topic.
    pub alert_to_read_p50_ms: f64,
    pub alert_to_read_p99_ms: f64,
    /// vitalwatch's own read-to-acknowledged histogram over the run (bucket resolution).
    pub processing_p50_ms: Option<f64>,
    pub processing_p99_ms: Option<f64>,
    pub peak_rss: u64,
    /// Sorted latencies (ms), thinned to at most 2000 points for the CDF plot.
    #[serde(skip)]
    pub cdf: Vec<(f64, f64)>,
}

/// Runs `subject` (on empty topics), offers `rate` observations/s for `secs`, and
/// measures the alerts.
pub fn run(
    subject: &Subject<'_>,
    alert_partitions: i32,
    rate: u64,
    secs: f64,
    patients: u32,
) -> anyhow::Result<Latency> {
    let mut running = subject.start()?;
    running.wait_ready(Duration::from_secs(90))?;

    let reader = AlertReader::start(subject.brokers, subject.alerts, alert_partitions)?;
    let n = (rate as f64 * secs).round().max(1.0) as u64;
    // Two hours back: unique, ordered, and never in the future.
    let base = now_ms() - 7_200_000;
    let mut sent_at: Vec<Option<(Instant, i64)>> = vec![None; n as usize];
    let mut ward = super::traffic(7, patients);
    let mut pump = Pump::with_linger(subject.brokers, subject.input, "vitalwatch-bench", 1)?;
    warm_up(&mut pump, patients, base - 1)?;
    let pacer = Pacer::new(rate);
    let mut expected = 0u64;
    for i in 0..n {
        pacer.wait(i, &pump);
        let msg = ward.next(base + i as i64);
        if msg.kind == Kind::Abnormal {
            expected += 1;
            sent_at[i as usize] = Some((Instant::now(), now_ms()));
        }
        pump.send(msg.key.as_bytes(), &msg.payload)?;
    }
    let offered_secs = pacer.elapsed().as_secs_f64();
    pump.finish(Duration::from_secs(60))?;

    // Every red-flag reading raises one alert; wait for them, or for silence.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (0, Instant::now());
    while Instant::now() < deadline {
        let got = reader.count();
        if got >= expected as usize {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let received = reader.stop();
    // A scrape the exporter garbled reads as no latency figures, not a failed run.
    let metrics = scrape::Scrape::parse(&running.metrics().unwrap_or_default()).unwrap_or_default();
    let peak_rss = super::child::Sample::of(running.pid())?.peak_rss;

    // Whole latency, and its two halves by wall clock (millisecond resolution): send →
    // vitalwatch built the alert (`emittedAt`), and alert built → read.
    let mut ms = Vec::with_capacity(received.len());
    let mut to_emit = Vec::with_capacity(received.len());
    let mut from_emit = Vec::with_capacity(received.len());
    for &(observed_at, emitted_at, at, at_wall) in &received {
        let Some((sent, sent_wall)) = usize::try_from(observed_at - base)
            .ok()
            .and_then(|i| sent_at.get(i).copied().flatten())
        else {
            continue;
        };
        ms.push(at.saturating_duration_since(sent).as_secs_f64() * 1e3);
        to_emit.push((emitted_at - sent_wall) as f64);
        from_emit.push((at_wall - emitted_at) as f64);
    }
    ms.sort_by(f64::total_cmp);
    to_emit.sort_by(f64::total_cmp);
    from_emit.sort_by(f64::total_cmp);
    let q = |p: f64| quantile(&ms, p);
    let name = "vitalwatch_processing_duration_seconds";
    Ok(Latency {
        rate: n as f64 / offered_secs.max(1e-9),
        secs: offered_secs,
        observations: n,
        expected_alerts: expected,
        alerts: ms.len() as u64,
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: ms.last().copied().unwrap_or(0.0),
        to_alert_p50_ms: quantile(&to_emit, 0.5),
        to_alert_p99_ms: quantile(&to_emit, 0.99),
        alert_to_read_p50_ms: quantile(&from_emit, 0.5),
        alert_to_read_p99_ms: quantile(&from_emit, 0.99),
        processing_p50_ms: metrics.quantile(name, 0.50).map(|s| s * 1e3),
        processing_p99_ms: metrics.quantile(name, 0.99).map(|s| s * 1e3),
        peak_rss,
        cdf: thin_cdf(&ms, 2000),
    })
}

/// The highest rate vitalwatch sustains with the load generator beside it: `n` messages
/// produced as fast as the producer goes while vitalwatch consumes, from the first send
/// until vitalwatch's committed offsets reach the end. On one machine the producer and
/// the broker take their share of the cores, so this is the "maximum" a latency run at
/// half load is measured against.
pub fn saturate(
    subject: &Subject<'_>,
    partitions: i32,
    n: u64,
    patients: u32,
) -> anyhow::Result<f64> {
    let mut running = subject.start()?;
    running.wait_ready(Duration::from_secs(90))?;
    let mut ward = super::traffic(11, patients);
    let mut pump = Pump::new(subject.brokers, subject.input, "vitalwatch-bench")?;
    warm_up(&mut pump, patients, now_ms())?;
    let started = Instant::now();
    for _ in 0..n {
        let msg = ward.next(now_ms());
        pump.send(msg.key.as_bytes(), &msg.payload)?;
    }
    pump.finish(Duration::from_secs(60))?;
    let ends: Vec<(i32, i64)> =
        super::child::watermarks(subject.brokers, subject.input, partitions)?
            .into_iter()
            .map(|(p, _, high)| (p, high))
            .collect();
    running.wait_committed(subject, &ends)?;
    Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Sends one ordinary reading and waits for its acknowledgement: an idempotent producer
/// holds its first messages until the broker has given it a producer id (half a second
/// on the mock cluster), which would otherwise count as latency of the first messages.
fn warm_up(pump: &mut Pump, patients: u32, timestamp: i64) -> anyhow::Result<()> {
    pump.connect(Duration::from_secs(10))?;
    let mut ward = Ward::new(WardConfig {
        seed: 99,
        patients,
        course: None,
        abnormal_ratio: 0.0,
        invalid_ratio: 0.0,
        too_large_bytes: vitalwatch::settings::defaults()
            .decode_limits()
            .max_message_bytes
            + 1,
        // No COPD patients: the traffic the tests and benchmarks are calibrated on.
        copd: false,
    });
    let msg = ward.next(timestamp);
    pump.send(msg.key.as_bytes(), &msg.payload)?;
    pump.finish(Duration::from_secs(30))?;
    Ok(())
}

/// Nearest-rank quantile of sorted values (0 when empty).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn thin_cdf(sorted: &[f64], points: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(points).max(1);
    let mut v: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    v.push((sorted[n - 1], 1.0));
    v
}

/// Reads the alert topic on its own thread, noting when each alert arrived.
struct AlertReader {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(i64, i64, Instant, i64)>>,
    seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl AlertReader {
    fn start(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<AlertReader> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "vitalwatch-bench-alerts")
            .set("enable.auto.commit", "false")
            // Answer as soon as one alert is there: this reader is the latency probe.
            .set("fetch.wait.max.ms", "5")
            .set("fetch.min.bytes", "1")
            .create()
            .context("cannot create the alert reader")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                        let at = Instant::now();
                        if let Some(alert) = m
                            .payload()
                            .and_then(|p| serde_json::from_slice::<OwnedAlert>(p).ok())
                        {
                            got.push((alert.observed_at, alert.emitted_at, at, now_ms()));
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                got
            })
        };
        Ok(AlertReader { stop, thread, seen })
    }

    fn count(&self) -> usize {
        self.seen.load(Ordering::Relaxed)
    }

    fn stop(self) -> Vec<(i64, i64, Instant, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
