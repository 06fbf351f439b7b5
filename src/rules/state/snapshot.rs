//! One patient's rule state as a record of the state topic (`kafka.state_topic`).
//!
//! The value is a small JSON document, readable with any Kafka tool:
//!
//! ```json
//! {"v":1,"group":"vitalwatch","patientId":"P-000123","seenAt":1763798460000,"offsets":[1041,-1],
//!  "news2":{"chart":[[22.0,1763798400000],null,null,null,null,null,[38.1,1763798400000]],
//!           "episode":{"severity":"medium","alerted":2,"alertedAt":1763798400000,
//!                      "openedAt":1763798400000}},
//!  "rules":[{"id":"heart_rate_high","sig":"9c0b…","breachSince":1763798400000,
//!            "episode":null}]}
//! ```
//!
//! - `group`: the consumer group that wrote it. Its offsets mean something only to that
//!   group: a record of another group (two groups given one state topic) is refused.
//! - `seenAt`: wall-clock time of the patient's last reading (the state TTL runs on).
//! - `offsets`: the offsets of the last reading the state reflects, on the patient's
//!   partition of the input topic and of the repartition topic (-1: none). A reading at
//!   or below them that is read again (after a crash, a rewind) is not counted twice.
//! - `news2.chart`: each NEWS2 parameter's latest `[value, observation time]`, in the
//!   order of the chart; scores are computed again when the record is read.
//! - `rules`: the runs and open episodes of threshold rules, by rule id, with the
//!   signature of the rule's metric, condition and `for_secs` they were built under: a
//!   rule that changed meanwhile starts afresh, as after a hot reload.

use serde::{Deserialize, Serialize};

use crate::rules::RuleSet;
use crate::rules::alarm::Episode;
use crate::rules::event::Severity;
use crate::rules::news2::News2State;
use crate::rules::threshold::RuleMemory;

/// The only version written; a record of another is not applied.
const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    v: u8,
    #[serde(borrow)]
    group: std::borrow::Cow<'a, str>,
    #[serde(rename = "patientId", borrow)]
    patient_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "seenAt")]
    seen_at: i64,
    offsets: [i64; 2],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    news2: Option<News2Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RuleRecord<'a>>,
}

#[derive(Serialize, Deserialize)]
struct News2Record {
    chart: [Option<(f64, i64)>; 7],
    episode: Option<EpisodeRecord>,
}

#[derive(Serialize, Deserialize)]
struct RuleRecord<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    /// Hex: a u64 does not survive every JSON reader.
    sig: String,
    #[serde(rename = "breachSince")]
    breach_since: Option<i64>,
    episode: Option<EpisodeRecord>,
}

#[derive(Serialize, Deserialize)]
struct EpisodeRecord {
    severity: String,
    alerted: u8,
    #[serde(rename = "alertedAt")]
    alerted_at: i64,
    #[serde(rename = "openedAt")]
    opened_at: i64,
}

impl EpisodeRecord {
    fn of(e: &Episode) -> EpisodeRecord {
        EpisodeRecord {
            severity: e.severity.as_str().to_owned(),
            alerted: e.alerted,
            alerted_at: e.alerted_at,
            opened_at: e.opened_at,
        }
    }

    fn episode(&self) -> Result<Episode, SnapshotError> {
        Ok(Episode {
            severity: Severity::from_wire(&self.severity).ok_or(SnapshotError::Invalid)?,
            alerted: self.alerted,
            alerted_at: self.alerted_at,
            opened_at: self.opened_at,
        })
    }
}

/// Why a state record was not applied (counted, never logged with its content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a state record this version writes (not JSON, missing fields, bad values).
    Invalid,
    /// A record of another version.
    Version,
    /// Its `patientId` is not its key.
    Key,
    /// Written by another consumer group.
    Group,
}

impl SnapshotError {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            SnapshotError::Invalid => "invalid",
            SnapshotError::Version => "version",
            SnapshotError::Key => "key",
            SnapshotError::Group => "group",
        }
    }
}

/// What a record holds, in the evaluator's terms.
pub(in crate::rules) struct Snapshot {
    pub(in crate::rules) seen_at: i64,
    pub(in crate::rules) offsets: [i64; 2],
    pub(in crate::rules) news2: News2State,
    pub(in crate::rules) rules: Vec<(u32, RuleMemory)>,
}

/// What a record is written from: a patient's state, borrowed.
pub(in crate::rules) struct Parts<'a> {
    pub(in crate::rules) seen_at: i64,
    pub(in crate::rules) offsets: [i64; 2],
    pub(in crate::rules) news2: &'a News2State,
    pub(in crate::rules) rules: &'a [(u32, RuleMemory)],
}

/// The record of one patient, written by consumer group `group`, appended to `out`.
pub(in crate::rules) fn encode(
    group: &str,
    patient: &str,
    parts: Parts<'_>,
    set: &RuleSet,
    out: &mut Vec<u8>,
) {
    let Parts {
        seen_at,
        offsets,
        news2,
        rules,
    } = parts;
    let (chart, episode) = news2.parts();
    let news2 = (chart.iter().any(Option::is_some) || episode.is_some()).then(|| News2Record {
        chart,
        episode: episode.as_ref().map(EpisodeRecord::of),
    });
    let rules = rules
        .iter()
        .map(|(i, memory)| {
            let rule = &set.rules()[*i as usize];
            let (breach_since, episode) = memory.parts();
            RuleRecord {
                id: rule.id.as_str().into(),
                sig: format!("{:016x}", rule.signature()),
                breach_since,
                episode: episode.as_ref().map(EpisodeRecord::of),
            }
        })
        .collect();
    let record = Record {
        v: VERSION,
        group: group.into(),
        patient_id: patient.into(),
        seen_at,
        offsets,
        news2,
        rules,
    };
    // Serialising plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &record);
}

/// Reads the record of `key` against the rules in force: memory of a rule that is gone
/// or changed is dropped, and so is a NEWS2 episode while NEWS2 is off.
pub(in crate::rules) fn decode(
    group: &str,
    key: &str,
    value: &[u8],
    set: &RuleSet,
) -> Result<Snapshot, SnapshotError> {
    let record: Record<'_> = serde_json::from_slice(value).map_err(|_| SnapshotError::Invalid)?;
    if record.v != VERSION {
        return Err(SnapshotError::Version);
    }
    if record.patient_id != key {
        return Err(SnapshotError::Key);
    }
    if record.group != group {
        return Err(SnapshotError::Group);
    }
    let news2 = match record.news2 {
        Some(n) => {
            let episode = match (&n.episode, set.news2()) {
                (Some(e), Some(_)) => Some(e.episode()?),
                _ => None,
            };
            News2State::from_parts(n.chart, episode)
        }
        None => News2State::NEW,
    };
    let mut rules = Vec::with_capacity(record.rules.len());
    for r in &record.rules {
        let Some(i) = set.rules().iter().position(|rule| rule.id == r.id) else {
            continue;
        };
        if format!("{:016x}", set.rules()[i].signature()) != r.sig {
            continue;
        }
        let episode = r.episode.as_ref().map(EpisodeRecord::episode).transpose()?;
        rules.push((i as u32, RuleMemory::from_parts(r.breach_since, episode)));
    }
    Ok(Snapshot {
        seen_at: record.seen_at,
        offsets: record.offsets,
        news2,
        rules,
    })
}
