//! Reading numbers back from the Prometheus text the pipeline exports, so the demo shows
//! what a dashboard would (queue depth, processing latency) without reaching into the
//! pipeline.

/// One sample line: name, label text (without braces), value.
fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.trim().rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            match series.split_once('{') {
                Some((name, rest)) => Some((name, rest.strip_suffix('}')?, value)),
                None => Some((series, "", value)),
            }
        })
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// Sum of every series of metric `name` (0 when absent).
pub fn sum(text: &str, name: &str) -> f64 {
    samples(text)
        .filter(|(n, _, _)| *n == name)
        .map(|(_, _, v)| v)
        .sum()
}

/// Quantile `q` of histogram or summary `name`: the exporter's own quantile when it
/// renders a summary, else interpolated from the histogram buckets as PromQL's
/// `histogram_quantile` does. `None` without observations.
pub fn quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let summary = samples(text).find(|(n, labels, _)| {
        *n == name && label(labels, "quantile").and_then(|v| v.parse::<f64>().ok()) == Some(q)
    });
    if let Some((_, _, v)) = summary {
        let count = sum(text, &format!("{name}_count"));
        return (count > 0.0).then_some(v);
    }
    let bucket_name = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples(text)
        .filter(|(n, _, _)| *n == bucket_name)
        .filter_map(|(_, labels, v)| {
            let le = label(labels, "le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let share = if count > lower.1 {
                (rank - lower.1) / (count - lower.1)
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * share);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_and_reads_summary_quantiles() {
        let text = "# TYPE q gauge\nq{worker=\"0\"} 2\nq{worker=\"1\"} 3\nother 9\n\
                    lat{quantile=\"0.5\"} 0.002\nlat{quantile=\"0.99\"} 0.01\nlat_sum 1\nlat_count 100\n";
        assert_eq!(sum(text, "q"), 5.0);
        assert_eq!(sum(text, "missing"), 0.0);
        assert_eq!(quantile(text, "lat", 0.5), Some(0.002));
        assert_eq!(quantile(text, "lat", 0.99), Some(0.01));
    }

    #[test]
    fn interpolates_histogram_buckets() {
        let text = "lat_bucket{le=\"0.001\"} 50\nlat_bucket{le=\"0.01\"} 100\n\
                    lat_bucket{le=\"+Inf\"} 100\nlat_sum 0.3\nlat_count 100\n";
        assert_eq!(quantile(text, "lat", 0.5), Some(0.001));
        let p75 = quantile(text, "lat", 0.75).unwrap();
        assert!((p75 - 0.0055).abs() < 1e-9, "{p75}");
        assert_eq!(quantile("lat_count 0\n", "lat", 0.5), None);
    }
}
