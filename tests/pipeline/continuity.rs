//! Durable patient state (`kafka.state_topic`): what clinicians see does not change
//! because the pipeline stopped, crashed or was restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::Recorder;
use crate::helpers::*;
use crate::support::cluster::Running;
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

/// A pipeline on `cluster` in `group` that keeps running.
fn member(cluster: &Cluster, group: &str, hooks: Hooks) -> Running {
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    start(config, rules(), hooks)
}

/// Waits until `group`'s committed offsets reach the end of every input partition.
async fn until_committed(cluster: &Cluster, group: &str) {
    let end = cluster.end_offsets();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cluster.committed(group) != end {
        assert!(
            std::time::Instant::now() < deadline,
            "committed {:?} never reached {end:?}",
            cluster.committed(group)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two members under cooperative-sticky: the first keeps some partitions through the
/// join (never drops to none), the patients that move keep their open episodes; when
/// the second leaves, the first restores the partitions it had given away and uses what
/// the second wrote there, not what it remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalances_move_patients_with_their_state() {
    let cluster = Cluster::new(4).with_state();
    let group = "continuity-cooperative";
    let patients = 40;
    let t0 = vitalwatch::clock::now_ms() - 60 * MIN;

    cluster.produce(&round(patients, t0, 140.0)).await;
    let a = member(&cluster, group, Hooks::default());
    assert!(
        a.wait_for(Duration::from_secs(60), |s| s.counts().evaluated
            >= patients as u64)
            .await
    );
    until_committed(&cluster, group).await;

    // b joins: a gives away some partitions and keeps the others throughout.
    let b = member(&cluster, group, Hooks::default());
    let mut fewest = usize::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(b.status.assigned_partitions() > 0
        && a.status.assigned_partitions() + b.status.assigned_partitions() == 4
        && b.status.readiness().is_ok())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "b never got partitions"
        );
        fewest = fewest.min(a.status.assigned_partitions());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fewest = fewest.min(a.status.assigned_partitions());
    assert!(
        fewest > 0,
        "a lost every partition during the join (an eager rebalance)"
    );

    // Still breaching (within the cooldown), then recovered: the ends come from both.
    cluster.produce(&round(patients, t0 + MIN, 141.0)).await;
    cluster.produce(&round(patients, t0 + 2 * MIN, 80.0)).await;
    until_committed(&cluster, group).await;

    // b leaves; its partitions come back to a, whose memory of them is from before the
    // ends. The state topic has the ends: a breach now opens new episodes.
    let report = b.stop().await;
    assert!(report.clean, "{report:?}");
    assert!(
        a.wait_for(Duration::from_secs(60), |s| s.assigned_partitions() == 4
            && s.readiness().is_ok())
            .await
    );
    cluster.produce(&round(patients, t0 + 3 * MIN, 150.0)).await;
    until_committed(&cluster, group).await;
    let report = a.stop().await;
    assert!(report.clean, "{report:?}");

    let alerts = cluster.alerts(3 * patients);
    let starts = by_phase(&alerts, "start");
    let ends = by_phase(&alerts, "end");
    assert_eq!(ends.len(), patients, "every first episode ends once");
    assert_eq!(
        starts.len(),
        2 * patients,
        "one start per episode: the first, and the one after the end"
    );
    let ended: BTreeSet<(&str, &str)> = ends
        .iter()
        .map(|a| (a.patient_id.as_str(), a.episode_id.as_str()))
        .collect();
    let first: BTreeSet<(&str, &str)> = starts
        .iter()
        .filter(|a| a.observed_at == t0)
        .map(|a| (a.patient_id.as_str(), a.episode_id.as_str()))
        .collect();
    assert_eq!(ended, first, "each end names the first episode");
    eprintln!("cooperative: a kept at least {fewest} of 4 partitions through the join");
}

/// A restore slowed down, then a second member joins: the partitions taken from the
/// first mid-restore are restored in full by the second; no episode opens twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_in_the_middle_of_a_restore_leaves_the_next_owner_a_full_restore() {
    let cluster = Cluster::new(4).with_state();
    let group = "continuity-mid-restore";
    let patients = 40;
    let t0 = vitalwatch::clock::now_ms() - 60 * MIN;
    cluster.produce(&round(patients, t0, 140.0)).await;
    run_until(&cluster, group, patients as u64, Hooks::default(), false).await;

    // a restores slowly: every partition's records wait 4 s before they are handed over.
    let slow = Hooks {
        before_restore: Some(Arc::new(|_| Some(Duration::from_secs(4)))),
        ..Hooks::default()
    };
    let a = member(&cluster, group, slow);
    assert!(
        a.wait_for(Duration::from_secs(60), |s| s.restoring() > 0)
            .await,
        "a never began restoring"
    );
    assert!(a.status.readiness().is_err(), "not ready while restoring");
    let b = member(&cluster, group, Hooks::default());
    assert!(
        b.wait_for(Duration::from_secs(60), |s| s.assigned_partitions() > 0
            && s.readiness().is_ok())
            .await
    );
    assert!(
        a.wait_for(Duration::from_secs(60), |s| s.readiness().is_ok())
            .await
    );
    cluster.produce(&round(patients, t0 + MIN, 141.0)).await;
    cluster.produce(&round(patients, t0 + 2 * MIN, 80.0)).await;
    until_committed(&cluster, group).await;
    assert!(b.stop().await.clean);
    assert!(a.stop().await.clean);

    let alerts = cluster.alerts(2 * patients);
    let starts = by_phase(&alerts, "start");
    let ends = by_phase(&alerts, "end");
    assert_eq!(starts.len(), patients, "no episode opened twice");
    assert_eq!(ends.len(), patients);
    let opened: BTreeMap<&str, &str> = starts
        .iter()
        .map(|a| (a.patient_id.as_str(), a.episode_id.as_str()))
        .collect();
    for end in &ends {
        assert_eq!(
            opened.get(end.patient_id.as_str()),
            Some(&end.episode_id.as_str())
        );
    }
}

/// The alert topic's broker goes down after the state topic has seen checkpoints, and
/// comes back: every partition's commits catch up with its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_catch_up_after_an_alert_outage_with_durable_state() {
    let group = "continuity-outage";
    let cluster = Cluster::with_alerts_on_their_own_broker(4, group).with_state();
    let rules = Arc::new(RuleSet::news2_red_flags().stateless());
    let mut config = cluster.config(group);
    fast_group_timeouts(&mut config);
    config.client.insert("message.timeout.ms", "1500");
    config.client.insert("queue.buffering.max.messages", "200");
    config.queue_capacity = 64;
    config.workers = 8;
    let running = start(config, rules, Hooks::default());
    cluster.produce(&traffic(2_000, 200, 0)).await;
    until_committed(&cluster, group).await;

    cluster.mock.broker_down(2).unwrap();
    cluster.produce(&traffic(4_000, 200, 0)).await;
    assert!(
        running
            .wait_for(Duration::from_secs(30), |s| s.counts().consumed >= 6_000)
            .await,
        "{:?}",
        running.status.counts()
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.mock.broker_up(2).unwrap();
    until_committed(&cluster, group).await;
    assert!(running.stop().await.clean);
}
