//! The bench's outputs: the targets as ratios, `results.json`, `results.md` and two SVG
//! plots (throughput against workers, latency CDF).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use super::{Drain, Results, default_workers};

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub vitalwatch: String,
    pub librdkafka: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            vitalwatch: env!("CARGO_PKG_VERSION").to_owned(),
            librdkafka: rdkafka::util::get_rdkafka_version().1,
        }
    }
}

/// One target of the performance issue, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub id: &'static str,
    pub what: String,
    pub measured: String,
    pub ratio: f64,
    pub goal: String,
    pub met: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median rate of the drains of `consumer` at `workers` (`None`: the raw consumer).
pub fn median_rate(drains: &[Drain], consumer: &str, workers: Option<usize>) -> f64 {
    median(select(drains, consumer, workers).map(|d| d.rate).collect())
}

fn median_of(
    drains: &[Drain],
    consumer: &str,
    workers: Option<usize>,
    f: fn(&Drain) -> f64,
) -> f64 {
    median(select(drains, consumer, workers).map(f).collect())
}

fn select<'a>(
    drains: &'a [Drain],
    consumer: &'a str,
    workers: Option<usize>,
) -> impl Iterator<Item = &'a Drain> + 'a {
    drains
        .iter()
        .filter(move |d| d.consumer == consumer && d.workers == workers)
}

/// The worker count the headline ratios use: the default when it was measured.
fn headline_workers(results: &Results) -> usize {
    if results.plan.workers.contains(&default_workers()) {
        default_workers()
    } else {
        results.plan.workers.iter().copied().max().unwrap_or(1)
    }
}

pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let w = headline_workers(r);
    let raw = median_rate(&r.drains, "raw", None);
    let vw = median_rate(&r.drains, "vitalwatch", Some(w));
    if raw > 0.0 {
        let ratio = vw / raw;
        t.push(Target {
            id: "1",
            what: format!("drain rate, vitalwatch ({w} workers) / raw consume"),
            measured: format!("{vw:.0} / {raw:.0} msg/s"),
            ratio,
            goal: "≥ 0.7".into(),
            met: ratio >= 0.7,
        });
    }
    let bare = median(
        r.inprocess
            .iter()
            .filter(|x| x.workers.is_none())
            .map(|x| x.rate)
            .collect(),
    );
    let inproc = median(
        r.inprocess
            .iter()
            .filter(|x| x.workers == Some(w))
            .map(|x| x.rate)
            .collect(),
    );
    if bare > 0.0 && inproc > 0.0 {
        let ratio = inproc / bare;
        t.push(Target {
            id: "2",
            what: format!("in-process pipeline ({w} workers) / bare decode loop"),
            measured: format!("{inproc:.0} / {bare:.0} msg/s"),
            ratio,
            goal: "≥ 0.5".into(),
            met: ratio >= 0.5,
        });
    }
    if let (Some(small), Some(large)) = (r.memory.first(), r.memory.last())
        && r.memory.len() >= 2
    {
        let peak = r.memory.iter().map(|d| d.peak_rss_mib).fold(0.0, f64::max);
        t.push(Target {
            id: "3a",
            what: "peak RSS, largest backlog".into(),
            measured: format!("{peak:.1} MiB"),
            ratio: peak / 128.0,
            goal: "≤ 128 MiB (ratio ≤ 1)".into(),
            met: peak <= 128.0,
        });
        let growth = large.peak_rss_mib / small.peak_rss_mib.max(1e-9);
        t.push(Target {
            id: "3b",
            what: format!(
                "peak RSS growth, {} → {} message backlog",
                small.messages, large.messages
            ),
            measured: format!("{:.1} → {:.1} MiB", small.peak_rss_mib, large.peak_rss_mib),
            ratio: growth,
            goal: "< 1.10".into(),
            met: growth < 1.10,
        });
    }
    if let Some(l) = &r.latency
        && l.p50_ms > 0.0
    {
        let ratio = l.p99_ms / l.p50_ms;
        t.push(Target {
            id: "4",
            what: format!("latency p99 / p50 at {:.0} msg/s", l.rate),
            measured: format!("{:.2} / {:.2} ms", l.p99_ms, l.p50_ms),
            ratio,
            goal: "≤ 3".into(),
            met: ratio <= 3.0,
        });
    }
    let cpu = |w| median_rate(&r.cpu_bound, "vitalwatch", Some(w));
    if r.plan.workers.contains(&1) && r.plan.workers.contains(&2) && cpu(1) > 0.0 {
        let ratio = cpu(2) / cpu(1);
        t.push(Target {
            id: "5a",
            what: "CPU-bound rules, 2 workers / 1 worker".into(),
            measured: format!("{:.0} / {:.0} msg/s", cpu(2), cpu(1)),
            ratio,
            goal: "≥ 1.6".into(),
            met: ratio >= 1.6,
        });
    }
    if r.plan.workers.contains(&2) && r.plan.workers.contains(&8) && cpu(2) > 0.0 {
        let ratio = cpu(8) / cpu(2);
        t.push(Target {
            id: "5b",
            what: "CPU-bound rules, 8 workers / 2 workers".into(),
            measured: format!("{:.0} / {:.0} msg/s", cpu(8), cpu(2)),
            ratio,
            goal: "≥ 1.0".into(),
            met: ratio >= 1.0,
        });
    }
    t
}

pub fn targets_table(targets: &[Target]) -> String {
    let mut s = String::from(
        "| # | measure | measured | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for t in targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {} | {} |",
            t.id,
            t.what,
            t.measured,
            t.ratio,
            t.goal,
            if t.met { "yes" } else { "**no**" }
        );
    }
    s
}

fn drains_table(title: &str, drains: &[Drain], configs: &[(&str, Option<usize>)]) -> String {
    let mut s = format!(
        "### {title}\n\n| consumer | workers | runs | msg/s (median) | min–max | CPU-s per M msgs | peak RSS MiB |\n|---|---|---|---|---|---|---|\n"
    );
    for &(consumer, workers) in configs {
        let runs: Vec<&Drain> = select(drains, consumer, workers).collect();
        if runs.is_empty() {
            continue;
        }
        let rates: Vec<f64> = runs.iter().map(|d| d.rate).collect();
        let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rates.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "| {consumer} | {} | {} | {:.0} | {min:.0}–{max:.0} | {:.2} | {:.1} |",
            workers.map_or("-".into(), |w| w.to_string()),
            runs.len(),
            median(rates),
            median_of(drains, consumer, workers, |d| d.cpu_secs_per_million),
            median_of(drains, consumer, workers, |d| d.peak_rss_mib),
        );
    }
    s
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "## vitalwatch bench\n\n{} cores ({}), Linux {}, vitalwatch {}, librdkafka {}; broker: {}. {} messages per drain, {} round(s), {} partitions; run took {:.0} s.\n",
        m.cores,
        m.cpu,
        m.kernel,
        m.vitalwatch,
        m.librdkafka,
        r.broker,
        r.plan.messages,
        r.plan.rounds,
        r.plan.partitions,
        r.elapsed_secs
    );
    s.push_str("### Targets\n\n");
    s.push_str(&targets_table(&r.targets));
    s.push('\n');
    if !r.inprocess.is_empty() {
        s.push_str(
            "### In-process (no Kafka)\n\n| loop | runs | msg/s (median) |\n|---|---|---|\n",
        );
        let mut kinds: Vec<Option<usize>> = vec![None];
        kinds.extend(r.plan.workers.iter().map(|&w| Some(w)));
        for k in kinds {
            let rates: Vec<f64> = r
                .inprocess
                .iter()
                .filter(|x| x.workers == k)
                .map(|x| x.rate)
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} |",
                k.map_or("bare decode".to_owned(), |w| format!(
                    "pipeline, {w} workers"
                )),
                rates.len(),
                median(rates)
            );
        }
        s.push('\n');
    }
    let mut configs = vec![("raw", None)];
    configs.extend(r.plan.workers.iter().map(|&w| ("vitalwatch", Some(w))));
    let mut with_memory = configs.clone();
    with_memory.extend(
        r.plan
            .workers
            .iter()
            .map(|&w| (super::MEMORY_STATE, Some(w))),
    );
    s.push_str(&drains_table(
        "Drain: shipped rules",
        &r.drains,
        &with_memory,
    ));
    s.push('\n');
    s.push_str(&state_cost(r));
    s.push_str(&drains_table(
        &format!(
            "Drain: CPU-bound rules ({} per metric, {} messages)",
            r.plan.cpu_bound_rules_per_metric, r.plan.cpu_bound_messages
        ),
        &r.cpu_bound,
        &configs[1..],
    ));
    s.push('\n');
    if let Some(max) = r.saturated_rate {
        let _ = writeln!(
            s,
            "### Maximum with the producer beside it\n\n{max:.0} msg/s produced and processed at once (vitalwatch at {} workers; the bench's producer and the broker share the machine). The latency run offers half of it.\n",
            default_workers()
        );
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(
            s,
            "### Latency at {:.0} msg/s\n\nObservation sent → alert read by a consumer of the alert topic, {} alerts ({} expected) over {:.1} s:\n\n| p50 | p90 | p99 | p99.9 | max | vitalwatch read→acked p50 / p99 (histogram) | peak RSS MiB |\n|---|---|---|---|---|---|---|\n| {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} / {} | {:.1} |\n",
            l.rate,
            l.alerts,
            l.expected_alerts,
            l.secs,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            l.processing_p50_ms
                .map_or("-".into(), |v| format!("{v:.2} ms")),
            l.processing_p99_ms
                .map_or("-".into(), |v| format!("{v:.2} ms")),
            l.peak_rss as f64 / (1024.0 * 1024.0),
        );
    }
    if !r.memory.is_empty() {
        s.push_str("### Memory\n\n| backlog | msg/s | peak RSS MiB |\n|---|---|---|\n");
        for d in &r.memory {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.1} |",
                d.messages, d.rate, d.peak_rss_mib
            );
        }
    }
    s
}

/// What durable patient state costs: the drains with and without it, measured in the
/// same run, and the restores.
fn state_cost(r: &Results) -> String {
    let mut s = String::new();
    let memory = super::MEMORY_STATE;
    if r.drains.iter().any(|d| d.consumer == memory) {
        let _ = writeln!(
            s,
            "### Durable patient state: steady-state cost

`vitalwatch` runs with a state topic (the default), `{memory}` with `kafka.state_topic = \"\"`, on the same backlog in the same run.\n\n| workers | msg/s with / without | CPU-s per M msgs with / without | state records written per input message |\n|---|---|---|---|"
        );
        for &w in &r.plan.workers {
            let with = median_rate(&r.drains, "vitalwatch", Some(w));
            let without = median_rate(&r.drains, memory, Some(w));
            let cpu_with = median_of(&r.drains, "vitalwatch", Some(w), |d| d.cpu_secs_per_million);
            let cpu_without = median_of(&r.drains, memory, Some(w), |d| d.cpu_secs_per_million);
            let per_message = median(
                select(&r.drains, "vitalwatch", Some(w))
                    .filter_map(|d| d.state_records.map(|n| n as f64 / d.messages.max(1) as f64))
                    .collect(),
            );
            let _ = writeln!(
                s,
                "| {w} | {with:.0} / {without:.0} = {:.2} | {cpu_with:.2} / {cpu_without:.2} = {:.2} | {per_message:.3} |",
                with / without.max(1e-9),
                cpu_with / cpu_without.max(1e-9),
            );
        }
        s.push('\n');
    }
    if !r.restores.is_empty() {
        s.push_str(
            "### Durable patient state: restore\n\nA service drains a backlog of two readings per patient, is stopped with SIGTERM, and a second one in its group starts: its restore of every partition (assignment to live, the slowest partition) and the bytes it read back.\n\n| patients | records in the state topic | records read back | bytes read | restore (slowest partition) | start to ready |\n|---|---|---|---|---|---|\n",
        );
        for x in &r.restores {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} MiB | {:.0} ms | {:.2} s |",
                x.patients,
                x.topic_records,
                x.records,
                x.bytes as f64 / (1024.0 * 1024.0),
                x.restore_ms,
                x.ready_secs
            );
        }
        s.push('\n');
    }
    s
}

pub fn write(r: &Results, out: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(r)?;
    let path = out.join("results.json");
    std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    let path = out.join("results.md");
    std::fs::write(&path, markdown(r))
        .with_context(|| format!("cannot write {}", path.display()))?;
    throughput_plot(r, &out.join("throughput.svg"))?;
    if let Some(l) = &r.latency {
        latency_plot(l, &out.join("latency-cdf.svg"))?;
    }
    Ok(())
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

fn throughput_plot(r: &Results, path: &Path) -> anyhow::Result<()> {
    let workers = &r.plan.workers;
    let series = |drains: &[Drain]| -> Vec<(f64, f64)> {
        workers
            .iter()
            .map(|&w| (w as f64, median_rate(drains, "vitalwatch", Some(w))))
            .collect()
    };
    let shipped = series(&r.drains);
    let cpu = series(&r.cpu_bound);
    let raw = median_rate(&r.drains, "raw", None);
    let top = shipped.iter().chain(&cpu).map(|p| p.1).fold(raw, f64::max) * 1.15;
    let max_w = workers.iter().copied().max().unwrap_or(1) as f64;

    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Drain throughput against workers", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((0.8f64..max_w * 1.25).log_scale(), 0f64..top.max(1.0))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("messages / s")
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_err)?;
    let raw_line = vec![(0.8, raw), (max_w * 1.25, raw)];
    chart
        .draw_series(LineSeries::new(raw_line, BLACK.stroke_width(2)))
        .map_err(plot_err)?
        .label("raw consume limit")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (points, color, label) in [
        (&shipped, BLUE, "vitalwatch, shipped rules"),
        (&cpu, RED, "vitalwatch, CPU-bound rules"),
    ] {
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn latency_plot(l: &super::Latency, path: &Path) -> anyhow::Result<()> {
    if l.cdf.is_empty() {
        return Ok(());
    }
    let lo = l.cdf.first().map_or(0.01, |p| p.0).max(0.01) * 0.8;
    let hi = l.max_ms.max(lo * 2.0) * 1.2;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Observation → alert latency at {:.0} msg/s", l.rate),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds (log scale)")
        .y_desc("fraction of alerts")
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x}"))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            l.cdf.iter().map(|&(x, y)| (x.max(lo), y)),
            BLUE.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("CDF")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    for (v, y) in [(l.p50_ms, 0.5), (l.p99_ms, 0.99), (l.p999_ms, 0.999)] {
        chart
            .draw_series(std::iter::once(Circle::new(
                (v.max(lo), y),
                4,
                RED.filled(),
            )))
            .map_err(plot_err)?;
    }
    chart
        .draw_series(std::iter::once(Text::new(
            format!(
                "p50 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms",
                l.p50_ms, l.p99_ms, l.p999_ms
            ),
            (lo * 1.1, 0.1),
            ("sans-serif", 15),
        )))
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}
