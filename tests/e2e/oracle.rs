//! The oracle: what the alert and DLQ topics must hold, computed with the library's own
//! decoder and rules from what the input topic actually holds, and the tally of what
//! they do hold against it (lost, duplicates, anything unexpected).

use std::collections::BTreeMap;
use std::fmt;

use vitalwatch::alert::{OwnedAlert, Source, alert_id};
use vitalwatch::vitals::decode;

use crate::every_breach_rules;
use crate::kafka::Record;

/// (partition, offset) of an input message.
pub type At = (i32, i64);

/// One alert the input must raise.
#[derive(Debug, Clone)]
pub struct ExpectedAlert {
    pub alert_id: String,
    pub patient_id: String,
    pub value: f64,
    pub observed_at: i64,
}

/// One dead letter the input must produce.
#[derive(Debug, Clone)]
pub struct ExpectedDlq {
    pub reason: &'static str,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub timestamp: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Expected {
    pub input_topic: String,
    pub messages: usize,
    /// (partition, offset, rule id) → the alert.
    pub alerts: BTreeMap<(i32, i64, String), ExpectedAlert>,
    pub dlq: BTreeMap<At, ExpectedDlq>,
}

impl Expected {
    /// Decodes and evaluates every input record as vitalwatch does with its default
    /// limits (the suite never changes `pipeline.max_message_bytes` or the skew).
    pub fn from_input(input_topic: &str, input: &[Record]) -> Expected {
        let rules = every_breach_rules();
        let limits = vitalwatch::settings::defaults().decode_limits();
        let now = vitalwatch::clock::now_ms();
        let mut e = Expected {
            input_topic: input_topic.to_owned(),
            messages: input.len(),
            ..Expected::default()
        };
        for r in input {
            let payload = r.payload.as_deref().unwrap_or_default();
            match decode(payload, &limits, now) {
                Ok(obs) => {
                    let source = Source {
                        topic: input_topic,
                        partition: r.partition,
                        offset: r.offset,
                    };
                    for rule in rules.evaluate(&obs) {
                        e.alerts.insert(
                            (r.partition, r.offset, rule.id.clone()),
                            ExpectedAlert {
                                alert_id: alert_id(&source, &rule.id).to_string(),
                                patient_id: obs.patient_id.to_string(),
                                value: obs.value,
                                observed_at: obs.timestamp,
                            },
                        );
                    }
                }
                Err(err) => {
                    e.dlq.insert(
                        (r.partition, r.offset),
                        ExpectedDlq {
                            reason: err.reason(),
                            key: r.key.clone(),
                            payload: payload.to_vec(),
                            timestamp: r.timestamp,
                        },
                    );
                }
            }
        }
        e
    }

    /// Only the messages below `ends[partition]`.
    pub fn below(&self, ends: &[i64]) -> Expected {
        let keep = |p: i32, o: i64| ends.get(p as usize).is_some_and(|&end| o < end);
        Expected {
            input_topic: self.input_topic.clone(),
            messages: 0,
            alerts: self
                .alerts
                .iter()
                .filter(|((p, o, _), _)| keep(*p, *o))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            dlq: self
                .dlq
                .iter()
                .filter(|((p, o), _)| keep(*p, *o))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        }
    }

    /// Per partition, the lowest offset at or above `from[p]` whose message raises an
    /// alert (i64::MAX when none): the first message an unwritable alert topic blocks.
    pub fn first_alerting(&self, from: &[i64]) -> Vec<i64> {
        (0..from.len())
            .map(|p| {
                self.alerts
                    .keys()
                    .filter(|(ap, o, _)| *ap == p as i32 && *o >= from[p])
                    .map(|(_, o, _)| *o)
                    .min()
                    .unwrap_or(i64::MAX)
            })
            .collect()
    }
}

/// What the output topics hold compared with [`Expected`].
#[derive(Debug, Default)]
pub struct Tally {
    pub expected_alerts: usize,
    pub alert_records: usize,
    pub lost_alerts: usize,
    pub duplicate_alerts: usize,
    /// Alerts for no expected (message, rule), or not parseable.
    pub unexpected_alerts: usize,
    /// Alerts whose id or content differs from the oracle's (a duplicate with another
    /// id counts here).
    pub wrong_alerts: usize,
    pub expected_dlq: usize,
    pub dlq_records: usize,
    pub lost_dlq: usize,
    pub duplicate_dlq: usize,
    pub unexpected_dlq: usize,
    /// Dead letters with a wrong reason, missing headers or a changed key or payload.
    pub wrong_dlq: usize,
    /// The first few problems, for the failure message.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn lost(&self) -> usize {
        self.lost_alerts + self.lost_dlq
    }

    pub fn duplicates(&self) -> usize {
        self.duplicate_alerts + self.duplicate_dlq
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 10 {
            self.problems.push(p);
        }
    }

    /// Nothing lost, nothing unexpected, every record right. Duplicates allowed.
    pub fn assert_nothing_lost(&self) {
        assert!(
            self.lost() == 0
                && self.unexpected_alerts == 0
                && self.wrong_alerts == 0
                && self.unexpected_dlq == 0
                && self.wrong_dlq == 0,
            "{self}"
        );
    }

    /// As [`Tally::assert_nothing_lost`], and no duplicates either.
    pub fn assert_exact(&self) {
        self.assert_nothing_lost();
        assert_eq!(self.duplicates(), 0, "{self}");
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alerts: {} expected, {} records, lost {}, duplicates {}, unexpected {}, wrong {}; \
             dead letters: {} expected, {} records, lost {}, duplicates {}, unexpected {}, wrong {}",
            self.expected_alerts,
            self.alert_records,
            self.lost_alerts,
            self.duplicate_alerts,
            self.unexpected_alerts,
            self.wrong_alerts,
            self.expected_dlq,
            self.dlq_records,
            self.lost_dlq,
            self.duplicate_dlq,
            self.unexpected_dlq,
            self.wrong_dlq,
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Compares the alert and DLQ records with the oracle. Records for messages the oracle
/// does not cover count as unexpected.
pub fn tally(expected: &Expected, alerts: &[Record], dlq: &[Record]) -> Tally {
    let mut t = Tally {
        expected_alerts: expected.alerts.len(),
        alert_records: alerts.len(),
        expected_dlq: expected.dlq.len(),
        dlq_records: dlq.len(),
        ..Tally::default()
    };

    let mut seen: BTreeMap<(i32, i64, String), (usize, OwnedAlert)> = BTreeMap::new();
    for r in alerts {
        let payload = r.payload.as_deref().unwrap_or_default();
        let alert: OwnedAlert = match serde_json::from_slice(payload) {
            Ok(a) => a,
            Err(e) => {
                t.unexpected_alerts += 1;
                t.problem(format!(
                    "unparseable alert at {}/{}: {e}",
                    r.partition, r.offset
                ));
                continue;
            }
        };
        let key = (
            alert.source.partition,
            alert.source.offset,
            alert.rule_id.clone(),
        );
        let Some(want) = expected
            .alerts
            .get(&key)
            .filter(|_| alert.source.topic == expected.input_topic)
        else {
            t.unexpected_alerts += 1;
            t.problem(format!("unexpected alert {alert:?}"));
            continue;
        };
        let right = alert.alert_id == want.alert_id
            && alert.patient_id == want.patient_id
            && alert.value == want.value
            && alert.observed_at == want.observed_at
            && r.key.as_deref() == Some(want.patient_id.as_bytes());
        if !right {
            t.wrong_alerts += 1;
            t.problem(format!(
                "alert differs from the oracle: {alert:?} vs {want:?}"
            ));
        }
        match seen.get_mut(&key) {
            Some((n, first)) => {
                *n += 1;
                t.duplicate_alerts += 1;
                // A duplicate is the same alert again: same id, same content.
                if alert.alert_id != first.alert_id
                    || alert.severity != first.severity
                    || alert.threshold != first.threshold
                {
                    t.wrong_alerts += 1;
                    t.problem(format!("duplicate differs: {alert:?} vs {first:?}"));
                }
            }
            None => {
                seen.insert(key, (1, alert));
            }
        }
    }
    for (key, want) in &expected.alerts {
        if !seen.contains_key(key) {
            t.lost_alerts += 1;
            t.problem(format!("lost alert {key:?} {}", want.alert_id));
        }
    }

    let mut seen_dlq: BTreeMap<At, usize> = BTreeMap::new();
    for r in dlq {
        let at = (
            r.header("vitalwatch.source.partition")
                .and_then(|v| v.parse::<i32>().ok()),
            r.header("vitalwatch.source.offset")
                .and_then(|v| v.parse::<i64>().ok()),
        );
        let (Some(p), Some(o)) = at else {
            t.unexpected_dlq += 1;
            t.problem(format!(
                "dead letter without source headers: {:?}",
                r.headers
            ));
            continue;
        };
        let Some(want) = expected
            .dlq
            .get(&(p, o))
            .filter(|_| r.header("vitalwatch.source.topic") == Some(&expected.input_topic))
        else {
            t.unexpected_dlq += 1;
            t.problem(format!(
                "unexpected dead letter for {p}/{o}: {:?}",
                r.headers
            ));
            continue;
        };
        let message = r.header("vitalwatch.error.message").unwrap_or_default();
        let timestamp = want.timestamp.map(|t| t.to_string()).unwrap_or_default();
        let right = r.header("vitalwatch.error.reason") == Some(want.reason)
            && !message.is_empty()
            && r.header("vitalwatch.source.timestamp") == Some(timestamp.as_str())
            && r.key == want.key
            && r.payload.as_deref().unwrap_or_default() == want.payload.as_slice();
        if !right {
            t.wrong_dlq += 1;
            t.problem(format!(
                "dead letter for {p}/{o} differs: headers {:?}, key {:?}, {} payload bytes; expected reason {}, {} payload bytes",
                r.headers,
                r.key.as_deref().map(String::from_utf8_lossy),
                r.payload.as_ref().map_or(0, Vec::len),
                want.reason,
                want.payload.len()
            ));
        }
        let n = seen_dlq.entry((p, o)).or_default();
        *n += 1;
        if *n > 1 {
            t.duplicate_dlq += 1;
        }
    }
    for at in expected.dlq.keys() {
        if !seen_dlq.contains_key(at) {
            t.lost_dlq += 1;
            t.problem(format!("lost dead letter {at:?}"));
        }
    }
    t
}
