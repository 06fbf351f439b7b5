//! The state-restore stage: what a restart costs with durable patient state. A service
//! drains a backlog over `patients` patients (each one's state saved in the state topic),
//! stops (SIGTERM), and a second one in the same group starts: from its start to ready, and the
//! time and bytes its restore took, as it logs them ("patient state restored").

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::{Broker, default_workers};

/// One restore measured.
#[derive(Debug, Clone, Serialize)]
pub struct Restore {
    pub patients: u64,
    /// State records in the topic when the restart began (compaction aside, one per
    /// patient written, plus rewrites).
    pub topic_records: u64,
    /// Records and bytes the restart read back, over its partitions.
    pub records: u64,
    pub bytes: u64,
    /// The slowest partition's restore, from assignment to live.
    pub restore_ms: f64,
    /// From the process start to `/readyz` 200 (start-up, group join and restore).
    pub ready_secs: f64,
}

pub(super) fn run(
    broker: &mut Broker,
    exe: &Path,
    logs: &Path,
    patients: u64,
) -> anyhow::Result<Restore> {
    // Two readings a patient on average: nearly every patient gets state.
    let messages = patients * 2;
    let topics = broker.topics(&format!("restore{patients}"), messages)?;
    let ends = broker.load_patients(&topics, messages, patients as u32)?;
    let group = broker.group("restore");
    let subject = topics.subject(exe, broker, &group, default_workers(), None, logs);
    let mut first = subject.start()?;
    first.wait_ready(Duration::from_secs(90))?;
    first.wait_committed(&subject, &ends)?;
    // Stopped as a rollout stops it: it saves its state, commits and leaves the group,
    // so the restart's assignment does not wait for a dead member's session to expire.
    first.terminate(Duration::from_secs(60))?;
    let topic_records = broker.records(&topics.state, topics.partitions)?;

    let mut subject = topics.subject(exe, broker, &group, default_workers(), None, logs);
    subject.log_level = "info";
    let started = Instant::now();
    let mut running = subject.start()?;
    running.wait_ready(Duration::from_secs(300))?;
    let ready_secs = started.elapsed().as_secs_f64();
    // The log lines are written before readiness turns; give the file a moment.
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(&running.log)
        .with_context(|| format!("cannot read {}", running.log.display()))?;
    drop(running);
    let (mut records, mut bytes, mut restore_ms) = (0u64, 0u64, 0f64);
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        if f["message"] != "patient state restored" {
            continue;
        }
        records += f["records"].as_u64().unwrap_or(0);
        bytes += f["bytes"].as_u64().unwrap_or(0);
        restore_ms = restore_ms.max(f["elapsed_ms"].as_f64().unwrap_or(0.0));
    }
    Ok(Restore {
        patients,
        topic_records,
        records,
        bytes,
        restore_ms,
        ready_secs,
    })
}
