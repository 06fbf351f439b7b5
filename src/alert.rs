//! The output wire format: one alert per Kafka message on `patient-alerts`.
//!
//! An alert's id is derived from where its observation was read (topic, partition,
//! offset) and which rule fired. Delivery is at-least-once, so after a crash the same
//! observation may be evaluated twice; the second copy of its alert carries the same
//! `alertId` and a downstream consumer drops it.

use std::fmt;

use serde::Serialize;
use serde::ser::SerializeMap;
use xxhash_rust::xxh3::Xxh3;

use crate::rules::news2;
use crate::rules::state::{Applied, Reading};
use crate::rules::{AlertStatus, Breakdown, Event, Phase, RuleSet, Scored, Severity};

/// Where the observation behind an alert was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The deterministic id of the alert that `rule_id` raised for the observation at
/// `source`: 128 bits of XXH3 over the four parts, as 32 hex digits.
pub fn alert_id(source: &Source<'_>, rule_id: &str) -> AlertId {
    alert_hash(source, rule_id, "")
}

/// The id of the `resolved` event that ends `rule_id`'s alert at `source`. A rule id
/// never contains a control character, so no rule's firing alert can share it.
pub(crate) fn resolved_id(source: &Source<'_>, rule_id: &str) -> AlertId {
    alert_hash(source, rule_id, "\u{0}resolved")
}

/// XXH3-128 over the length-prefixed topic, the partition, the offset, then `rule_id`
/// and `suffix`, streamed (no buffer per alert). The bytes are the ids' contract:
/// consumers de-duplicate across versions by them.
fn alert_hash(source: &Source<'_>, rule_id: &str, suffix: &str) -> AlertId {
    let mut h = Xxh3::new();
    // Length-prefix the variable parts so that ("ab", "c") and ("a", "bc") differ.
    h.update(&(source.topic.len() as u32).to_le_bytes());
    h.update(source.topic.as_bytes());
    h.update(&source.partition.to_le_bytes());
    h.update(&source.offset.to_le_bytes());
    h.update(rule_id.as_bytes());
    h.update(suffix.as_bytes());
    AlertId(h.digest128())
}

/// The id of `patient_id`'s episode of `episode_key` (a rule id, or NEWS2's key) opened
/// by the reading observed at `opened_at`: 128 bits of XXH3, as 32 hex digits. The same
/// for the episode's `start`, `continue`, `escalate` and `end`, and the same again when
/// the readings are evaluated a second time (at-least-once), because it depends on what
/// was observed, not on where or when it was read.
pub fn episode_id(patient_id: &str, episode_key: &str, opened_at: i64) -> AlertId {
    let mut h = Xxh3::new();
    // A domain of its own: no episode id is an alert id.
    h.update(b"episode\0");
    h.update(&(patient_id.len() as u32).to_le_bytes());
    h.update(patient_id.as_bytes());
    h.update(&(episode_key.len() as u32).to_le_bytes());
    h.update(episode_key.as_bytes());
    h.update(&opened_at.to_le_bytes());
    AlertId(h.digest128())
}

/// An alert id; displays and serialises as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertId(pub u128);

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for AlertId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One alert as published. Borrows everything from the observation and the rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Alert<'a> {
    pub(crate) alert_id: AlertId,
    pub(crate) patient_id: &'a str,
    pub(crate) rule_id: &'a str,
    pub(crate) severity: Severity,
    /// `firing` for an alert (first or repeated), `resolved` when it cleared.
    pub(crate) status: AlertStatus,
    /// The same for every alert of one episode: its opening, reminders, escalation and end.
    pub(crate) episode_id: AlertId,
    /// `start`, `continue`, `escalate` or `end`.
    pub(crate) phase: Phase,
    /// The observation's metric; `news2` for the aggregate score.
    pub(crate) metric: &'a str,
    /// The observed value; the aggregate score for NEWS2.
    pub(crate) value: f64,
    /// The rule's `above`/`below`; for NEWS2 the aggregate that starts the band (5, 7),
    /// or 3 when a single parameter scoring 3 raised a medium alert.
    pub(crate) threshold: f64,
    /// The observation's timestamp, Unix epoch milliseconds.
    pub(crate) observed_at: i64,
    /// When vitalwatch raised the alert, Unix epoch milliseconds.
    pub(crate) emitted_at: i64,
    pub(crate) source: Source<'a>,
    /// The NEWS2 chart behind a `news2_*` alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) news2: Option<News2Chart<'a>>,
    /// The SpO2 scale a NEWS2 or SpO2 alert was evaluated on (1 unless the patient's
    /// context says 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) spo2_scale: Option<u8>,
    /// Under a patient context: whether the context suppressed the alert when it was
    /// observed (it is published all the same, and a console decides what to show).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suppressed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suppress_reason: Option<&'a str>,
    /// Under a patient context: the context record's version (its offset on the context
    /// topic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) context_version: Option<i64>,
}

/// A NEWS2 breakdown as JSON: `{"score":7,"parameters":{"respiratory_rate":{"value":22,
/// "score":2,"observedAt":…},…},"missing":["consciousness"],"stale":["temperature"]}`.
/// `parameters` holds what the score counts; `missing` were never observed for the
/// patient (since the state was built), `stale` only longer ago than `max_age_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct News2Chart<'a>(pub &'a Breakdown);

impl Serialize for News2Chart<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Param {
            value: f64,
            score: u8,
            observed_at: i64,
        }
        struct Counted<'a>(&'a Breakdown);
        impl Serialize for Counted<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                for (p, metric) in self.0.parameters.iter().zip(news2::PARAMETERS) {
                    if let Some(p) = p.filter(|p| !p.stale) {
                        map.serialize_entry(
                            metric.as_str(),
                            &Param {
                                value: p.value,
                                score: p.score,
                                observed_at: p.observed_at,
                            },
                        )?;
                    }
                }
                map.end()
            }
        }
        let names = |keep: fn(&Option<Scored>) -> bool| -> Vec<&str> {
            self.0
                .parameters
                .iter()
                .zip(news2::PARAMETERS)
                .filter(|(p, _)| keep(p))
                .map(|(_, m)| m.as_str())
                .collect()
        };
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("score", &self.0.aggregate.total)?;
        map.serialize_entry("parameters", &Counted(self.0))?;
        map.serialize_entry("missing", &names(|p| p.is_none()))?;
        map.serialize_entry("stale", &names(|p| p.is_some_and(|p| p.stale)))?;
        map.end()
    }
}

impl<'a> Alert<'a> {
    /// The alert that `event` (of `rules`) raises for `patient_id`'s `reading`, read at
    /// `source`, published at `emitted_at`.
    pub(crate) fn from_event(
        event: &'a Event,
        rules: &'a RuleSet,
        patient_id: &'a str,
        reading: Reading,
        source: Source<'a>,
        emitted_at: i64,
    ) -> Alert<'a> {
        let rule_id = rules.event_rule_id(event);
        let step = event.step();
        let status = step.phase.status();
        let (severity, metric, value, threshold, news2) = match event {
            Event::Threshold { rule, .. } => {
                let rule = &rules.rules()[*rule];
                (
                    rule.severity,
                    rule.metric.as_str(),
                    reading.value,
                    rule.condition.threshold(),
                    None,
                )
            }
            Event::News2 {
                severity,
                breakdown,
                ..
            } => (
                *severity,
                "news2",
                f64::from(breakdown.aggregate.total),
                breakdown.aggregate.band_threshold(),
                Some(News2Chart(breakdown)),
            ),
        };
        Alert {
            alert_id: match status {
                AlertStatus::Firing => alert_id(&source, rule_id),
                AlertStatus::Resolved => resolved_id(&source, rule_id),
            },
            patient_id,
            rule_id,
            severity,
            status,
            episode_id: episode_id(patient_id, rules.event_episode_key(event), step.opened_at),
            phase: step.phase,
            metric,
            value,
            threshold,
            observed_at: reading.timestamp,
            emitted_at,
            source,
            spo2_scale: (metric == "news2" || metric == "spo2").then_some(1),
            news2,
            suppressed: None,
            suppress_reason: None,
            context_version: None,
        }
    }

    /// The alert as evaluated under the patient's context `context` (`None`: the
    /// defaults, unchanged): the threshold actually used, the SpO2 scale, the
    /// suppression and the context's version.
    pub(crate) fn under(
        mut self,
        context: Option<&'a Applied>,
        rules: &RuleSet,
        event: &Event,
    ) -> Alert<'a> {
        let Some(c) = context else {
            return self;
        };
        if let Event::Threshold { rule, .. } = event {
            self.threshold = c.condition(rules, *rule).threshold();
        }
        if self.spo2_scale.is_some() {
            self.spo2_scale = Some(c.spo2_scale().number());
        }
        let reason = c.suppressed_at(self.observed_at);
        self.suppressed = Some(reason.is_some());
        self.suppress_reason = reason;
        self.context_version = Some(c.version());
        self
    }

    /// Appends the JSON encoding to `out` (reuse one buffer across alerts).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        // Writing plain strings and finite numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }

    #[cfg(test)]
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }
}

/// An alert read back from the alert topic (tests, the demo's console, e2e oracles).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedAlert {
    pub alert_id: String,
    pub patient_id: String,
    pub rule_id: String,
    pub severity: String,
    /// Absent in alerts from before the field existed; read as `firing`.
    #[serde(default = "firing")]
    pub status: String,
    /// Absent in alerts from before the field existed.
    #[serde(default)]
    pub episode_id: String,
    /// Absent in alerts from before the field existed.
    #[serde(default)]
    pub phase: String,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub observed_at: i64,
    pub emitted_at: i64,
    pub source: OwnedSource,
    #[serde(default)]
    pub news2: Option<serde_json::Value>,
    /// NEWS2 and SpO2 alerts: the SpO2 scale used.
    #[serde(default)]
    pub spo2_scale: Option<u8>,
    /// Alerts evaluated under a patient context.
    #[serde(default)]
    pub suppressed: Option<bool>,
    #[serde(default)]
    pub suppress_reason: Option<String>,
    #[serde(default)]
    pub context_version: Option<i64>,
}

fn firing() -> String {
    "firing".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct OwnedSource {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vitals::Metric;

    fn src(offset: i64) -> Source<'static> {
        Source {
            topic: "patient-data",
            partition: 3,
            offset,
        }
    }

    #[test]
    fn alert_id_is_stable_across_runs() {
        // A fixed value: if this changes, every deployed consumer's dedup breaks.
        assert_eq!(
            alert_id(&src(12345), "heart_rate_high").to_string(),
            alert_id(&src(12345), "heart_rate_high").to_string()
        );
        assert_eq!(
            alert_id(&src(12345), "heart_rate_high").to_string(),
            STABLE_ID
        );
    }

    /// `alert_id` of patient-data/3@12345 for heart_rate_high, as every release computes it.
    const STABLE_ID: &str = "fba55588450ab944eaf7fe21183f1b53";

    #[test]
    fn alert_id_is_xxh3_128_of_the_documented_layout() {
        // The layout, spelled out independently of `alert_id`: u32 LE topic length, topic
        // bytes, i32 LE partition, i64 LE offset, rule id bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&12u32.to_le_bytes());
        bytes.extend_from_slice(b"patient-data");
        bytes.extend_from_slice(&3i32.to_le_bytes());
        bytes.extend_from_slice(&12345i64.to_le_bytes());
        bytes.extend_from_slice(b"heart_rate_high");
        let id = alert_id(&src(12345), "heart_rate_high");
        assert_eq!(id.0, xxhash_rust::xxh3::xxh3_128(&bytes));
        assert_eq!(format!("{:032x}", id.0), STABLE_ID);
    }

    #[test]
    fn alert_id_displays_as_32_lowercase_hex_digits() {
        assert_eq!(AlertId(1).to_string(), format!("{}1", "0".repeat(31)));
        assert_eq!(AlertId(u128::MAX).to_string(), "f".repeat(32));
        assert_eq!(
            serde_json::to_string(&AlertId(0xAB)).unwrap(),
            format!("\"{}ab\"", "0".repeat(30))
        );
        for offset in [0, 1, 12345, i64::MAX] {
            let shown = alert_id(&src(offset), "spo2_low").to_string();
            assert_eq!(shown.len(), 32);
            assert!(
                shown
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{shown}"
            );
        }
    }

    /// Consumers de-duplicate by these ids across deploys: the bytes hashed never change.
    #[test]
    fn ids_are_pinned() {
        let s = src(12345);
        assert_eq!(
            alert_id(&s, "heart_rate_high").to_string(),
            "fba55588450ab944eaf7fe21183f1b53"
        );
        assert_eq!(
            resolved_id(&s, "heart_rate_high").to_string(),
            "d4fd9a8545c176aae887cbfe6f155967"
        );
        assert_eq!(
            episode_id("P-000123", "heart_rate_high", 1_763_798_400_000).to_string(),
            "d3bd3580045ba799b280db4ae3046138"
        );
    }

    #[test]
    fn topic_and_rule_bytes_cannot_be_traded() {
        let ab_c = alert_id(
            &Source {
                topic: "ab",
                ..src(1)
            },
            "c",
        );
        let a_bc = alert_id(
            &Source {
                topic: "a",
                ..src(1)
            },
            "bc",
        );
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn alert_id_differs_per_rule_offset_partition_and_topic() {
        let base = alert_id(&src(12345), "heart_rate_high");
        assert_ne!(base, alert_id(&src(12345), "heart_rate_low"));
        assert_ne!(base, alert_id(&src(12346), "heart_rate_high"));
        let other_partition = Source {
            partition: 4,
            ..src(12345)
        };
        assert_ne!(base, alert_id(&other_partition, "heart_rate_high"));
        let other_topic = Source {
            topic: "patient-data-2",
            ..src(12345)
        };
        assert_ne!(base, alert_id(&other_topic, "heart_rate_high"));
    }

    #[test]
    fn alert_encodes_to_the_contract_shape() {
        let alert = Alert {
            alert_id: alert_id(&src(12345), "heart_rate_high"),
            patient_id: "P-000123",
            rule_id: "heart_rate_high",
            severity: Severity::Medium,
            status: AlertStatus::Firing,
            episode_id: episode_id("P-000123", "heart_rate_high", 1_763_798_400_000),
            phase: Phase::Start,
            metric: "heart_rate",
            value: 138.0,
            threshold: 130.0,
            observed_at: 1_763_798_400_000,
            emitted_at: 1_763_798_400_123,
            source: src(12345),
            news2: None,
            spo2_scale: None,
            suppressed: None,
            suppress_reason: None,
            context_version: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&alert.to_json()).unwrap();
        assert_eq!(json["alertId"].as_str().unwrap().len(), 32);
        assert_eq!(json["patientId"], "P-000123");
        assert_eq!(json["ruleId"], "heart_rate_high");
        assert_eq!(json["severity"], "medium");
        assert_eq!(json["status"], "firing");
        assert_eq!(json["episodeId"].as_str().unwrap().len(), 32);
        assert_ne!(json["episodeId"], json["alertId"]);
        assert_eq!(json["phase"], "start");
        assert!(json.get("news2").is_none());
        assert_eq!(json["metric"], "heart_rate");
        assert_eq!(json["value"], 138.0);
        assert_eq!(json["threshold"], 130.0);
        assert_eq!(json["observedAt"], 1_763_798_400_000_i64);
        assert_eq!(json["emittedAt"], 1_763_798_400_123_i64);
        assert_eq!(json["source"]["topic"], "patient-data");
        assert_eq!(json["source"]["partition"], 3);
        assert_eq!(json["source"]["offset"], 12345);
        let back: OwnedAlert = serde_json::from_slice(&alert.to_json()).unwrap();
        assert_eq!(back.alert_id, alert.alert_id.to_string());
        assert_eq!(back.episode_id, alert.episode_id.to_string());
        assert_eq!(back.phase, "start");
    }

    /// `(phase, episodeId, rule)` of every alert `readings` (seconds, metric, value) raise
    /// for one patient under `toml`, each reading at its own offset.
    fn episodes(toml: &str, readings: &[(i64, Metric, f64)]) -> Vec<(String, String, String)> {
        use crate::rules::state::Evaluator;
        let rules = std::sync::Arc::new(
            RuleSet::parse(toml, std::path::Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}")),
        );
        let mut eval = Evaluator::new(rules.clone(), crate::settings::defaults().state_limits());
        let mut out = Vec::new();
        for (i, &(s, metric, value)) in readings.iter().enumerate() {
            let reading = Reading {
                metric,
                value,
                timestamp: 1_763_798_400_000 + s * 1000,
            };
            let mut events = Vec::new();
            eval.observe("P-1", reading, (0, 1), s * 1000, &mut events);
            for e in &events {
                let a = Alert::from_event(e, &rules, "P-1", reading, src(i as i64), 0);
                out.push((
                    a.phase.as_str().to_owned(),
                    a.episode_id.to_string(),
                    a.rule_id.to_owned(),
                ));
            }
        }
        out
    }

    #[test]
    fn an_episode_keeps_one_id_from_start_through_reminders_to_end() {
        let toml = "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\n\
                    severity = \"medium\"\ncooldown_secs = 60\nclear_margin = 5\nemit_resolved = true\n";
        let hr = Metric::HeartRate;
        let readings = [
            (0, hr, 140.0),
            (30, hr, 141.0),  // within the cooldown: nothing
            (60, hr, 142.0),  // reminder
            (90, hr, 120.0),  // cleared: end
            (120, hr, 140.0), // a new episode
        ];
        let got = episodes(toml, &readings);
        let phases: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(phases, ["start", "continue", "end", "start"]);
        assert_eq!(got[0].1, got[1].1);
        assert_eq!(got[0].1, got[2].1);
        assert_ne!(got[0].1, got[3].1, "a new episode has a new id");
        // At-least-once: the same readings evaluated again (after a crash, by another
        // instance) give the same ids.
        assert_eq!(episodes(toml, &readings), got);
    }

    #[test]
    fn news2_escalation_and_end_stay_in_the_episode_that_medium_opened() {
        use Metric::*;
        let toml = "[news2]\nemit_resolved = true\ncooldown_secs = 3600\n";
        // A full chart scoring 5 (medium), then oxygen (+2: 7, high), then recovery.
        let mut readings = vec![
            (0, RespiratoryRate, 10.0),
            (0, Spo2, 95.0),
            (0, SupplementalOxygen, 0.0),
            (0, SystolicBp, 105.0),
            (0, HeartRate, 95.0),
            (0, Consciousness, 0.0),
            (0, Temperature, 38.5),
            (60, SupplementalOxygen, 1.0),
        ];
        for m in [
            RespiratoryRate,
            Spo2,
            SupplementalOxygen,
            SystolicBp,
            HeartRate,
            Temperature,
        ] {
            let normal = match m {
                RespiratoryRate => 16.0,
                Spo2 => 97.0,
                SupplementalOxygen => 0.0,
                SystolicBp => 125.0,
                HeartRate => 80.0,
                _ => 36.8,
            };
            readings.push((120, m, normal));
        }
        let got = episodes(toml, &readings);
        let shown: Vec<(&str, &str)> = got
            .iter()
            .map(|(p, _, r)| (p.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("start", "news2_medium"),
                ("escalate", "news2_high"),
                ("end", "news2_medium"),
                ("end", "news2_high"),
            ]
        );
        assert!(got.iter().all(|(_, id, _)| *id == got[0].1), "{got:?}");
    }

    #[test]
    fn episode_ids_differ_per_patient_rule_and_opening() {
        let base = episode_id("P-1", "hr_high", 1);
        assert_ne!(base, episode_id("P-2", "hr_high", 1));
        assert_ne!(base, episode_id("P-1", "hr_low", 1));
        assert_ne!(base, episode_id("P-1", "hr_high", 2));
        assert_ne!(episode_id("ab", "c", 1), episode_id("a", "bc", 1));
    }
}
