//! Reading a Prometheus text exposition back: the samples of `/metrics` with their labels,
//! sums over matching series and quantiles of histograms and summaries. The demo and the
//! bench show what a dashboard would (queue depth, processing latency) without reaching
//! into the pipeline; the tests check the scrape with the same reader.
//!
//! Strict where the format is: one `# TYPE` line per family, quoted label values with
//! their escapes (`\\`, `\"`, `\n`), `+Inf`, `-Inf` and `NaN` values. A line that breaks
//! the format is an error naming the line, not a sample quietly left out.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// `# TYPE` per metric family: `counter`, `gauge`, `histogram`, `summary`, `untyped`.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

/// A line that is not the text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for ParseError {}

impl Scrape {
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut scrape = Scrape::default();
        for (i, line) in text.lines().enumerate() {
            let error = |problem: String| ParseError {
                line: i + 1,
                problem,
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| error(format!("a TYPE line without a type: {line}")))?;
                if scrape
                    .types
                    .insert(name.to_owned(), kind.trim().to_owned())
                    .is_some()
                {
                    return Err(error(format!("a second # TYPE line for {name}")));
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            scrape.samples.push(sample(line).map_err(error)?);
        }
        Ok(scrape)
    }

    /// The samples of `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Values of the series of `name` whose labels include `labels`.
    pub fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels).map(|s| s.value).collect()
    }

    /// Sum over the series of `name` whose labels include `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Quantile `q` of histogram or summary `name`: the exporter's own quantile when it
    /// renders a summary, else interpolated from the histogram buckets as PromQL's
    /// `histogram_quantile` does. `None` without observations.
    pub fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        let summary = self
            .matching(name, &[])
            .find(|s| s.labels.get("quantile").and_then(|v| v.parse::<f64>().ok()) == Some(q));
        if let Some(s) = summary {
            let count = self.sum(&format!("{name}_count"), &[]);
            return (count > 0.0).then_some(s.value);
        }
        let mut buckets: Vec<(f64, f64)> = self
            .matching(&format!("{name}_bucket"), &[])
            .filter_map(|s| {
                let le = s.labels.get("le")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, s.value))
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
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("a sample without a value: {line}"))?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        while let Some(&(i, c)) = chars.peek() {
            if c == '}' {
                end = Some(i);
                break;
            }
            if c == ',' || c == ' ' {
                chars.next();
                continue;
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} without a quoted value: {line}"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("label {key} has an unterminated value: {line}"));
            }
            labels.insert(key, value);
        }
        let end = end.ok_or_else(|| format!("unterminated labels: {line}"))?;
        rest = &body[end + 1..];
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("a sample without a value: {line}"))?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .map_err(|_| format!("sample value {v} is not a number: {line}"))?,
    };
    Ok(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_and_reads_summary_quantiles() {
        let text = "# TYPE q gauge\nq{worker=\"0\"} 2\nq{worker=\"1\"} 3\nother 9\n\
                    lat{quantile=\"0.5\"} 0.002\nlat{quantile=\"0.99\"} 0.01\nlat_sum 1\nlat_count 100\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(s.sum("q", &[]), 5.0);
        assert_eq!(s.sum("q", &[("worker", "1")]), 3.0);
        assert_eq!(s.sum("missing", &[]), 0.0);
        assert_eq!(s.quantile("lat", 0.5), Some(0.002));
        assert_eq!(s.quantile("lat", 0.99), Some(0.01));
        assert_eq!(s.types["q"], "gauge");
    }

    #[test]
    fn interpolates_histogram_buckets() {
        let text = "lat_bucket{le=\"0.001\"} 50\nlat_bucket{le=\"0.01\"} 100\n\
                    lat_bucket{le=\"+Inf\"} 100\nlat_sum 0.3\nlat_count 100\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(s.quantile("lat", 0.5), Some(0.001));
        let p75 = s.quantile("lat", 0.75).unwrap();
        assert!((p75 - 0.0055).abs() < 1e-9, "{p75}");
        let empty = Scrape::parse("lat_count 0\n").unwrap();
        assert_eq!(empty.quantile("lat", 0.5), None);
    }

    #[test]
    fn label_escapes_and_special_values() {
        let s = Scrape::parse("m{a=\"x\\\"y\\\\z\\n\",b=\"\"} +Inf\nn NaN\n").unwrap();
        assert_eq!(s.samples[0].labels["a"], "x\"y\\z\n");
        assert_eq!(s.samples[0].labels["b"], "");
        assert_eq!(s.samples[0].value, f64::INFINITY);
        assert!(s.samples[1].value.is_nan());
    }

    #[test]
    fn what_breaks_the_format_is_an_error_naming_the_line() {
        let twice = Scrape::parse("# TYPE m counter\nm 1\n# TYPE m counter\n").unwrap_err();
        assert_eq!(twice.line, 3);
        assert!(Scrape::parse("m{a=\"x} 1\n").is_err());
        assert!(Scrape::parse("m one\n").is_err());
        assert!(Scrape::parse("m\n").is_err());
    }
}
