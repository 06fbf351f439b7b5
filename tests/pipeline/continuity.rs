//! Durable patient state (`kafka.state_topic`): what clinicians see does not change
//! because the pipeline stopped, crashed or was restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::Recorder;
use crate::helpers::*;
use vitalwatch::alert::OwnedAlert;
use vitalwatch::pipeline::Hooks;
use vitalwatch::rules::RuleSet;

const MIN: i64 = 60_000;

/// Heart rate above 130 opens an episode, a reminder after 10 minutes, a resolved event
/// at the end.
fn rules() -> Arc<RuleSet> {
    Arc::new(
        RuleSet::parse(
            "[[threshold]]\nid = \"hr_high\"\nmetric = \"heart_rate\"\nabove = 130\nseverity = \"high\"\ncooldown_secs = 600\nemit_resolved = true\n",
            std::path::Path::new("continuity.toml"),
        )
        .expect("rules"),
    )
}

/// One heart-rate reading for each of `patients` patients at `at`.
fn round(patients: usize, at: i64, value: f64) -> Vec<(String, Vec<u8>)> {
    (0..patients)
        .map(|i| {
            let p = format!("P-{i:04}");
            let payload = observation(&p, "heart_rate", value, at);
            (p, payload)
        })
        .collect()
}

/// Runs a pipeline on `cluster` until it evaluated `n` more readings, then stops it
/// (SIGTERM), or crashes it when `crash`.
async fn run_until(cluster: &Cluster, group: &str, n: u64, hooks: Hooks, crash: bool) {
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    let running = start(config, rules(), hooks);
    // A crash run has a reading that hangs its worker: wait for everything to be read.
    assert!(
        running
            .wait_for(Duration::from_secs(60), |s| if crash {
                s.counts().consumed >= n
            } else {
                s.counts().evaluated >= n
            })
            .await,
        "{:?}",
        running.status.counts()
    );
    if crash {
        // Let a checkpoint or two be taken and committed first.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(running.crash().await.crashed);
    } else {
        let report = running.stop().await;
        assert!(report.clean, "{report:?}");
    }
}

fn by_phase<'a>(alerts: &'a [OwnedAlert], phase: &str) -> Vec<&'a OwnedAlert> {
    alerts.iter().filter(|a| a.phase == phase).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_episodes_survive_restarts_without_a_second_page_and_end_with_their_id() {
    let cluster = Cluster::new(2).with_state();
    let group = "continuity-restart";
    let patients = 40;
    let t0 = vitalwatch::clock::now_ms() - 60 * MIN;

    // Every patient's episode opens; the pipeline stops; two more breaching rounds
    // within the cooldown, each read by a fresh pipeline; then every patient recovers.
    let mut produced = 0;
    for (k, (at, value)) in [
        (t0, 140.0),
        (t0 + MIN, 141.0),
        (t0 + 2 * MIN, 142.0),
        (t0 + 3 * MIN, 80.0),
    ]
    .into_iter()
    .enumerate()
    {
        let msgs = round(patients, at, value);
        produced += msgs.len() as u64;
        cluster.produce(&msgs).await;
        // Each run reads only what was not committed: count what this one must evaluate.
        let _ = k;
        run_until(&cluster, group, msgs.len() as u64, Hooks::default(), false).await;
    }
    assert_eq!(cluster.committed(group), cluster.end_offsets());

    let alerts = cluster.alerts(2 * patients);
    let starts = by_phase(&alerts, "start");
    let ends = by_phase(&alerts, "end");
    assert_eq!(
        starts.len(),
        patients,
        "one page per patient, not one per restart"
    );
    assert_eq!(ends.len(), patients, "every episode ends");
    assert!(
        by_phase(&alerts, "continue").is_empty(),
        "no reminder within the cooldown"
    );
    let opened: BTreeMap<&str, &str> = starts
        .iter()
        .map(|a| (a.patient_id.as_str(), a.episode_id.as_str()))
        .collect();
    for end in &ends {
        assert_eq!(
            opened.get(end.patient_id.as_str()),
            Some(&end.episode_id.as_str()),
            "the end names the episode its opening named"
        );
    }
    eprintln!(
        "restart continuity: {produced} readings, {} alerts",
        alerts.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_evaluation_before_commit_neither_pages_again_nor_loses_an_alert() {
    let cluster = Cluster::new(2).with_state();
    let group = "continuity-crash";
    let patients = 40;
    let t0 = vitalwatch::clock::now_ms() - 60 * MIN;

    // Episodes open and are saved; the pipeline stops cleanly.
    cluster.produce(&round(patients, t0, 140.0)).await;
    run_until(&cluster, group, patients as u64, Hooks::default(), false).await;
    let saved = cluster.committed(group);

    // A breaching round and the recovery round; one reading of partition 0 hangs, so
    // the readings after it are evaluated (ends published) but nothing of partition 0
    // past it is committed; then the process dies.
    let mut later = round(patients, t0 + MIN, 141.0);
    later.extend(round(patients, t0 + 2 * MIN, 80.0));
    cluster.produce(&later).await;
    let rec = Arc::new(Recorder::default());
    let stuck = saved[0] + 3;
    let hooks = rec.hook("first", move |w| {
        (w.done.claim.partition == 0 && w.done.offset == stuck).then_some(Duration::from_secs(3600))
    });
    run_until(&cluster, group, later.len() as u64, hooks, true).await;
    let after_crash = cluster.committed(group);
    assert!(
        after_crash[0] <= stuck,
        "committed past the unfinished reading"
    );

    // A fresh pipeline reads the uncommitted rest again.
    let redo: i64 = cluster
        .end_offsets()
        .iter()
        .zip(&after_crash)
        .map(|(end, c)| end - c.max(&0))
        .sum();
    run_until(&cluster, group, redo as u64, Hooks::default(), false).await;
    assert_eq!(cluster.committed(group), cluster.end_offsets());

    let alerts = cluster.alerts(2 * patients);
    let starts: BTreeSet<&str> = by_phase(&alerts, "start")
        .iter()
        .map(|a| a.alert_id.as_str())
        .collect();
    let ends: BTreeSet<(&str, &str)> = by_phase(&alerts, "end")
        .iter()
        .map(|a| (a.patient_id.as_str(), a.episode_id.as_str()))
        .collect();
    assert_eq!(
        starts.len(),
        patients,
        "no second episode for a condition already open"
    );
    assert_eq!(ends.len(), patients, "every end published");
    let end_ids: BTreeSet<&str> = by_phase(&alerts, "end")
        .iter()
        .map(|a| a.alert_id.as_str())
        .collect();
    assert_eq!(
        end_ids.len(),
        patients,
        "duplicates only as the same alertId"
    );
    let opened: BTreeSet<(&str, &str)> = by_phase(&alerts, "start")
        .iter()
        .map(|a| (a.patient_id.as_str(), a.episode_id.as_str()))
        .collect();
    assert_eq!(ends, opened, "each end names its opening's episode");
    eprintln!(
        "crash continuity: committed {saved:?} → {after_crash:?}, re-read {redo}, {} alerts",
        alerts.len()
    );
}
