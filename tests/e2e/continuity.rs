//! Continuity: durable patient state (`kafka.state_topic`) carries open episodes, their
//! cooldowns and the NEWS2 chart across restarts, crashes and rebalances.
//!
//! The rules here remember things (a threshold rule with a cooldown and
//! `emit_resolved = true`, and NEWS2 with `emit_resolved`), so the oracle is not the
//! per-message one of `oracle.rs`: it is vitalwatch's own [`Evaluator`] replaying the
//! input topic, partition by partition, as one process that never stopped would have
//! evaluated it. With durable state a restart changes nothing in what is published:
//! every alert the replay raises must be on the alert topic (by `alertId`), nothing else
//! may be, and a duplicate is the same alert again (same id, same phase, same episode).
//!
//! Every patient of the ward scenarios has exactly one episode per rule family (its
//! pulse breaches from the first reading to the recovery): one `start` and one `end` each,
//! with reminders (`continue`) in between as the cooldown comes due. A restart that lost
//! the state would open a second episode (a second `start`, a new `episodeId`) and the
//! first one would never end.
//!
//! 1. `continuity-rolling`: 200 patients, three SIGTERM restarts while the feed goes on.
//! 2. `continuity-sigkill`: the same, five SIGKILLs.
//! 3. `continuity-news2`: a full NEWS2 chart scoring 4 before a restart, one worse
//!    reading after it: `news2_medium` scored 5 from the full chart, nothing missing.
//! 4. `continuity-scale`: 1 → 3 → 1 replicas mid-stream (cooperative-sticky): the
//!    partitions that stay put keep being committed during each rebalance, and the ones
//!    that move keep their patients' state.
//! 5. `continuity-static`: two static members (`kafka.group_instance_id`); one restarts
//!    three times (SIGTERM, SIGKILL, SIGTERM) within the session timeout: no rebalance
//!    on the other, which keeps flowing, and the restarted one gets its partitions back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vitalwatch::alert::{AlertId, OwnedAlert, Source, alert_id, episode_id};
use vitalwatch::rules::news2;
use vitalwatch::rules::state::{Evaluator, Reading};
use vitalwatch::rules::{AlertStatus, RuleSet};
use vitalwatch::vitals::{Metric, decode};

use crate::kafka::{self, Feeder, Record, Topics};
use crate::process::{self, Vitalwatch};
use crate::summary::Scenario;
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, seed, service_env};

/// Observation time between two rounds of the ward's readings.
const ROUND_OBS_MS: i64 = 5_000;
/// Wall time between two rounds.
const ROUND_WALL: Duration = Duration::from_millis(250);
/// Patients start breaching over this many rounds (a cooldown's worth).
const STAGGER: i64 = 6;
/// Rounds of normal readings that end every episode.
const RECOVERY_ROUNDS: usize = 3;

/// The rules of this module: stateful episodes with reminders and ends.
const RULES: &str = r#"# e2e continuity: episodes with memory (cooldown, hysteresis, resolved events)
[defaults]
cooldown_secs = 30
emit_resolved = true

[news2]
max_age_secs = 3600
cooldown_secs = 30
clear_margin = 1
emit_resolved = true

[[threshold]]
id = "heart_rate_high"
metric = "heart_rate"
above = 130
severity = "medium"
clear_margin = 5
"#;

fn rules_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-continuity-rules.toml");
        std::fs::write(&path, RULES)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    })
    .clone()
}

fn rules() -> Arc<RuleSet> {
    Arc::new(RuleSet::parse(RULES, &rules_file()).expect("the continuity rules"))
}

/// `run`'s environment on `topics` with this module's rules (the state topic is in
/// `topics.env()`).
fn continuity_env(topics: &Topics, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = service_env(topics, extra);
    env.retain(|(k, _)| k != "VITALWATCH_RULES__FILE");
    env.push((
        "VITALWATCH_RULES__FILE".into(),
        rules_file().display().to_string(),
    ));
    env
}

fn observation(patient: &str, metric: Metric, value: f64, ts: i64) -> Vec<u8> {
    format!(
        r#"{{"patientId":"{patient}","metric":"{metric}","value":{value},"timestamp":{ts},"deviceId":"bed-{patient}"}}"#
    )
    .into_bytes()
}

/// The id of the `resolved` event of `rule_id` at `source`, as `vitalwatch::alert`
/// derives it (its bytes are the ids' contract; the function itself is crate-private):
/// the firing id's XXH3-128 input followed by `"\0resolved"`.
fn resolved_id(source: &Source<'_>, rule_id: &str) -> AlertId {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(source.topic.len() as u32).to_le_bytes());
    h.update(source.topic.as_bytes());
    h.update(&source.partition.to_le_bytes());
    h.update(&source.offset.to_le_bytes());
    h.update(rule_id.as_bytes());
    h.update("\u{0}resolved".as_bytes());
    AlertId(h.digest128())
}

/// The episode family of a rule id: NEWS2's two bands are one episode.
fn family(rule_id: &str) -> &str {
    if rule_id.starts_with("news2_") {
        "news2"
    } else {
        rule_id
    }
}

/// One alert the replay raises.
#[derive(Debug, Clone, PartialEq)]
struct Want {
    patient_id: String,
    rule_id: String,
    phase: &'static str,
    status: &'static str,
    episode_id: String,
    source: (i32, i64),
}

/// What one uninterrupted evaluator raises over the input, by `alertId`.
fn replay(topic: &str, input: &[Record]) -> BTreeMap<String, Want> {
    let rules = rules();
    let limits = vitalwatch::settings::defaults().decode_limits();
    let now = vitalwatch::clock::now_ms();
    let mut by_partition: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for r in input {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut want = BTreeMap::new();
    for (p, mut records) in by_partition {
        records.sort_by_key(|r| r.offset);
        let mut eval = Evaluator::new(
            rules.clone(),
            vitalwatch::settings::defaults().state_limits(),
        );
        for r in records {
            let obs = decode(r.value(), &limits, now).expect("the ward's input is valid");
            let mut out = Vec::new();
            eval.observe(
                &obs.patient_id,
                Reading::of(&obs),
                (p as u64, 1),
                0,
                &mut out,
            );
            let source = Source {
                topic,
                partition: p,
                offset: r.offset,
            };
            for event in out {
                let rule_id = rules.event_rule_id(&event);
                let step = event.step();
                let (id, status) = match event.status() {
                    AlertStatus::Firing => (alert_id(&source, rule_id), "firing"),
                    AlertStatus::Resolved => (resolved_id(&source, rule_id), "resolved"),
                };
                let episode = episode_id(
                    &obs.patient_id,
                    rules.event_episode_key(&event),
                    step.opened_at,
                );
                want.insert(
                    id.to_string(),
                    Want {
                        patient_id: obs.patient_id.to_string(),
                        rule_id: rule_id.to_owned(),
                        phase: step.phase.as_str(),
                        status,
                        episode_id: episode.to_string(),
                        source: (p, r.offset),
                    },
                );
            }
        }
    }
    want
}

/// The alert topic against the replay, and the episode structure of what it holds.
#[derive(Debug, Default)]
struct Continuity {
    expected: usize,
    records: usize,
    lost: usize,
    duplicates: usize,
    unexpected: usize,
    /// Present by id but differing from the replay (or a duplicate differing from its
    /// first copy).
    wrong: usize,
    /// By phase, distinct alert ids on the topic.
    phases: BTreeMap<String, usize>,
    /// (patient, family) with more than one distinct `start` alert id.
    restarted_episodes: usize,
    /// `end`s whose episode id is no `start`'s of the same patient and family.
    orphan_ends: usize,
    /// Episodes (by id) without an `end`.
    unended: usize,
    /// Episodes (by id) with `start` count other than 1.
    episodes: usize,
    problems: Vec<String>,
}

impl Continuity {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 12 {
            self.problems.push(p);
        }
    }

    fn check(topic: &str, input: &[Record], alerts: &[Record]) -> Continuity {
        let want = replay(topic, input);
        let mut c = Continuity {
            expected: want.len(),
            records: alerts.len(),
            ..Continuity::default()
        };
        let mut seen: BTreeMap<String, OwnedAlert> = BTreeMap::new();
        for r in alerts {
            let alert: OwnedAlert = match serde_json::from_slice(r.value()) {
                Ok(a) => a,
                Err(e) => {
                    c.unexpected += 1;
                    c.problem(format!(
                        "unparseable alert at {}/{}: {e}",
                        r.partition, r.offset
                    ));
                    continue;
                }
            };
            if let Some(first) = seen.get(&alert.alert_id) {
                c.duplicates += 1;
                let same = first.phase == alert.phase
                    && first.episode_id == alert.episode_id
                    && first.rule_id == alert.rule_id
                    && first.status == alert.status
                    && first.source == alert.source
                    && first.value == alert.value;
                if !same {
                    c.wrong += 1;
                    c.problem(format!("duplicate differs: {alert:?} vs {first:?}"));
                }
                continue;
            }
            match want.get(&alert.alert_id) {
                None => {
                    c.unexpected += 1;
                    c.problem(format!(
                        "unexpected {} {} {} episode {} at {}/{}",
                        alert.patient_id,
                        alert.rule_id,
                        alert.phase,
                        alert.episode_id,
                        alert.source.partition,
                        alert.source.offset
                    ));
                }
                Some(w) => {
                    let right = w.patient_id == alert.patient_id
                        && w.rule_id == alert.rule_id
                        && w.phase == alert.phase
                        && w.status == alert.status
                        && w.episode_id == alert.episode_id
                        && w.source == (alert.source.partition, alert.source.offset)
                        && alert.source.topic == topic
                        && r.key.as_deref() == Some(alert.patient_id.as_bytes());
                    if !right {
                        c.wrong += 1;
                        c.problem(format!("differs from the replay: {alert:?} vs {w:?}"));
                    }
                }
            }
            seen.insert(alert.alert_id.clone(), alert);
        }
        for (id, w) in &want {
            if !seen.contains_key(id) {
                c.lost += 1;
                c.problem(format!("lost {w:?} ({id})"));
            }
        }
        // The episode structure of what the topic holds, whatever the replay says.
        let mut starts: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut start_count: BTreeMap<String, usize> = BTreeMap::new();
        let mut ends: BTreeMap<String, (String, String)> = BTreeMap::new();
        for a in seen.values() {
            *c.phases.entry(a.phase.clone()).or_default() += 1;
            let fam = (a.patient_id.clone(), family(&a.rule_id).to_owned());
            match a.phase.as_str() {
                "start" => {
                    starts.entry(fam).or_default().insert(a.episode_id.clone());
                    *start_count.entry(a.episode_id.clone()).or_default() += 1;
                }
                "end" => {
                    ends.insert(a.episode_id.clone(), fam);
                }
                _ => {}
            }
        }
        for (fam, episodes) in &starts {
            if episodes.len() > 1 {
                c.restarted_episodes += 1;
                let fam = fam.clone();
                c.problem(format!("{fam:?}: {} episodes started", episodes.len()));
            }
        }
        for (episode, fam) in &ends {
            if !starts.get(fam).is_some_and(|s| s.contains(episode)) {
                c.orphan_ends += 1;
                let (episode, fam) = (episode.clone(), fam.clone());
                c.problem(format!(
                    "{fam:?}: end of episode {episode}, which no start opened"
                ));
            }
        }
        c.episodes = start_count.len();
        for (episode, n) in &start_count {
            if !ends.contains_key(episode) {
                c.unended += 1;
            }
            if *n != 1 {
                c.wrong += 1;
            }
        }
        c
    }

    /// The scenario's counts for the summary table.
    fn record(&self, sc: &mut Scenario, messages: usize) {
        sc.messages = Some(messages);
        sc.lost = Some(self.lost);
        sc.duplicates = Some(self.duplicates);
    }

    /// The alerts and episodes, for a note.
    fn brief(&self) -> String {
        format!(
            "alerts {} (phases {:?}), {} episodes, started twice {}",
            self.expected, self.phases, self.episodes, self.restarted_episodes
        )
    }

    fn ok(&self) -> bool {
        self.lost == 0
            && self.unexpected == 0
            && self.wrong == 0
            && self.restarted_episodes == 0
            && self.orphan_ends == 0
            && self.unended == 0
    }
}

impl std::fmt::Display for Continuity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "alerts: {} expected, {} records, lost {}, duplicates {}, unexpected {}, wrong {}; \
             phases {:?}; {} episodes, {} started twice, {} orphan ends, {} never ended",
            self.expected,
            self.records,
            self.lost,
            self.duplicates,
            self.unexpected,
            self.wrong,
            self.phases,
            self.episodes,
            self.restarted_episodes,
            self.orphan_ends,
            self.unended
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// A ward whose every patient's pulse breaches (135–144 /min: `heart_rate_high`, and a
/// single NEWS2 3) from one of the first [`STAGGER`] rounds until [`Feed::recover`],
/// then is normal for [`RECOVERY_ROUNDS`] rounds. One reading per patient per round, keyed by patient.
struct Feed {
    recover: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: Option<JoinHandle<usize>>,
}

impl Feed {
    fn start(topics: &Topics, patients: usize, seed: u64) -> Feed {
        let recover = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (client, topic) = (topics.client.clone(), topics.input.clone());
        let (stop, count) = (recover.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            let feeder = Feeder::new(&client, &topic);
            let ids: Vec<String> = (0..patients).map(|i| format!("W-{i:06}")).collect();
            let mut rng = StdRng::seed_from_u64(seed);
            // Three hours ago: the run's observation time stays in the past.
            let t0 = vitalwatch::clock::now_ms() - 3 * 3_600_000;
            let mut round = 0i64;
            let mut sent = 0;
            let mut recovery = 0;
            let mut next = Instant::now();
            while recovery < RECOVERY_ROUNDS {
                let recovering = stop.load(Ordering::SeqCst);
                let ts = t0 + round * ROUND_OBS_MS;
                for (i, id) in ids.iter().enumerate() {
                    // Patient i breaches from round i % STAGGER: the reminders of a
                    // partition's patients are spread over the rounds, not all at once.
                    let pulse = if recovering || round < (i as i64 % STAGGER) {
                        80.0
                    } else {
                        f64::from(rng.random_range(135..=144u32))
                    };
                    feeder.send_keyed(
                        id.as_bytes(),
                        &observation(id, Metric::HeartRate, pulse, ts),
                    );
                    sent += 1;
                }
                if recovering {
                    recovery += 1;
                }
                round += 1;
                count.store(round as u64, Ordering::SeqCst);
                next += ROUND_WALL;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    // The feed's pace, not a settling delay.
                    std::thread::sleep(wait);
                }
            }
            feeder.finish();
            sent
        });
        Feed {
            recover,
            rounds,
            thread: Some(thread),
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }

    /// Waits until `n` more rounds were sent (`what` names the wait if it times out).
    fn wait_rounds(&self, n: u64, what: &str) {
        let from = self.rounds();
        wait_for(LONG, what, || {
            if self.rounds() >= from + n {
                Ok(())
            } else {
                Err(format!("round {}", self.rounds()))
            }
        });
    }

    /// Every patient recovers; returns the messages sent once the feed has finished.
    fn recover(mut self) -> usize {
        self.recover.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("feed thread")
            .join()
            .expect("feed thread panicked")
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.recover.store(true, Ordering::SeqCst);
    }
}

/// The `patient state restored` events of `vw`: (partitions, records, max elapsed ms).
fn restores(vw: &Vitalwatch) -> (usize, u64, u64) {
    let events = vw.events("patient state restored");
    let records = events.iter().filter_map(|e| e["records"].as_u64()).sum();
    let elapsed = events
        .iter()
        .filter_map(|e| e["elapsed_ms"].as_u64())
        .max()
        .unwrap_or(0);
    (events.len(), records, elapsed)
}

/// Restore problems an instance logged (timeouts, failures).
fn restore_problems(vw: &Vitalwatch) -> Vec<String> {
    vw.lines()
        .into_iter()
        .filter(|l| {
            l.contains("patient state restore timed out")
                || l.contains("patient state restore failed")
        })
        .collect()
}

/// Counters of a state metric on `vw` now.
fn state_metric(vw: &Vitalwatch, name: &str) -> f64 {
    vw.metrics().sum(name, &[])
}

/// Per-instance numbers for the notes.
#[derive(Default)]
struct Instances {
    restored_partitions: usize,
    restored_records: u64,
    max_restore_ms: u64,
    skipped: f64,
    restore_problems: Vec<String>,
}

impl Instances {
    /// The restores, for a note.
    fn brief(&self) -> String {
        format!(
            "restores {} partitions, {} records, slowest {} ms",
            self.restored_partitions, self.restored_records, self.max_restore_ms
        )
    }

    /// No restore went live before it was complete.
    fn assert_restores_complete(&self) {
        assert!(
            self.restore_problems.is_empty(),
            "restores went live early:\n{}",
            self.restore_problems.join("\n")
        );
    }

    fn add(&mut self, vw: &Vitalwatch) {
        let (parts, records, ms) = restores(vw);
        self.restored_partitions += parts;
        self.restored_records += records;
        self.max_restore_ms = self.max_restore_ms.max(ms);
        self.restore_problems.extend(restore_problems(vw));
    }
}

const WARD_PARTITIONS: i32 = 6;
const WARD_PATIENTS: usize = 200;

/// The rolling restart and the SIGKILL scenarios: `cycles` instances each stopped by
/// `stop` under load, a last one running to the end.
fn restarts(name: &'static str, cycles: usize, kill: bool) {
    let mut sc = Scenario::begin(name);
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, name, WARD_PARTITIONS);
    let logs = process::log_dir(name);
    let mut rng = StdRng::seed_from_u64(seed());
    let env = continuity_env(&topics, &[]);
    let mut inst = Instances::default();

    let mut vw = Vitalwatch::start("vw-1", &env, &logs);
    vw.wait_ready(LONG);
    let feed = Feed::start(&topics, WARD_PATIENTS, rng.random());
    sc.step(format!(
        "feed: {WARD_PATIENTS} patients breaching, one round every {ROUND_WALL:?} ({} obs s apart), {WARD_PARTITIONS} partitions; state topic {} ({})",
        ROUND_OBS_MS / 1000,
        topics.state,
        kafka::state_topic_kind()
    ));
    // Every episode is open, and a reminder is due, before the first stop.
    wait_for(LONG, "every patient's episodes open", || {
        let open = vw.metrics().sum("vitalwatch_alerts_emitted_total", &[]);
        if feed.rounds() >= 8 && open >= (2 * WARD_PATIENTS) as f64 {
            Ok(())
        } else {
            Err(format!("{open} alerts, {} rounds", feed.rounds()))
        }
    });
    let mut stop_times = Vec::new();
    for i in 1..=cycles {
        let delay = rng.random_range(500..=3_000);
        // The moment of the stop is the scenario's randomness, not a settling delay.
        std::thread::sleep(Duration::from_millis(delay));
        inst.skipped += state_metric(&vw, "vitalwatch_state_readings_skipped_total");
        let written = state_metric(&vw, "vitalwatch_state_records_written_total");
        let pid = vw.pid();
        if kill {
            vw.kill();
            sc.kills += 1;
        } else {
            let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
            assert!(status.success(), "{}: {status}\n{}", vw.name, vw.tail(20));
            stop_times.push(took);
        }
        inst.add(&vw);
        sc.step(format!(
            "{} {i}/{cycles}: {} pid {pid} {delay} ms in (round {}), it had written {written} state records; committed {:?}",
            if kill { "kill" } else { "stop" },
            if kill { "SIGKILL" } else { "SIGTERM" },
            feed.rounds(),
            topics.committed()
        ));
        vw = Vitalwatch::start(&format!("vw-{}", i + 1), &env, &logs);
        vw.wait_ready(LONG);
        let (parts, records, ms) = restores(&vw);
        sc.step(format!(
            "{} ready: restored {parts} partitions, {records} records, slowest {ms} ms",
            vw.name
        ));
    }
    // A reminder comes due on the last instance before the patients recover.
    feed.wait_rounds(6, "a cooldown's worth of rounds on the last instance");
    let sent = feed.recover();
    sc.step(format!("feed done: {sent} readings, then recovery"));
    topics.wait_committed_to_end(LONG);
    inst.skipped += state_metric(&vw, "vitalwatch_state_readings_skipped_total");
    let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{}: {status}\n{}", vw.name, vw.tail(20));
    stop_times.push(took);
    inst.add(&vw);

    let input = kafka::read_all(&topics.client, &topics.input);
    let alerts = kafka::read_all(&topics.client, &topics.alerts);
    let c = Continuity::check(&topics.input, &input, &alerts);
    println!("{c}");
    c.record(&mut sc, input.len());
    sc.note(format!(
        "{cycles} {} under load, {WARD_PATIENTS} patients; {}; {}; readings skipped as already counted {}; state topic {}",
        if kill { "SIGKILLs" } else { "SIGTERM restarts" },
        c.brief(),
        inst.brief(),
        inst.skipped,
        kafka::state_topic_kind()
    ));
    if !kill {
        sc.note(format!(
            "stops exit 0 in {:.1}-{:.1} s",
            stop_times.iter().min().unwrap().as_secs_f64(),
            stop_times.iter().max().unwrap().as_secs_f64()
        ));
    }
    inst.assert_restores_complete();
    assert_eq!(input.len(), sent, "the input holds what the feed sent");
    assert_eq!(
        c.episodes,
        2 * WARD_PATIENTS,
        "one heart_rate_high and one NEWS2 episode per patient\n{c}"
    );
    assert!(c.phases.get("continue").copied().unwrap_or(0) > 0, "{c}");
    assert!(c.ok(), "{c}");
    if !kill {
        // A clean stop commits what it did: nothing is done twice.
        assert_eq!(c.duplicates, 0, "{c}");
    }
}

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn rolling_restarts_keep_open_episodes_open() {
    restarts("continuity-rolling", 3, false);
}

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn sigkills_open_no_new_episodes_and_lose_no_end() {
    restarts("continuity-sigkill", 5, true);
}

/// A chart scoring 4: RR 21 (2), SpO2 95 (1), air (0), SBP 125 (0), pulse 95 (1),
/// alert (0), 36.8 °C (0).
const CHART_SCORING_4: [(Metric, f64); 7] = [
    (Metric::RespiratoryRate, 21.0),
    (Metric::Spo2, 95.0),
    (Metric::SupplementalOxygen, 0.0),
    (Metric::SystolicBp, 125.0),
    (Metric::HeartRate, 95.0),
    (Metric::Consciousness, 0.0),
    (Metric::Temperature, 36.8),
];
const NEWS2_PATIENTS: usize = 24;

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn a_news2_chart_survives_a_restart() {
    let mut sc = Scenario::begin("continuity-news2");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "cont-news2", 3);
    let logs = process::log_dir("continuity-news2");
    let env = continuity_env(&topics, &[]);
    let patients: Vec<String> = (0..NEWS2_PATIENTS).map(|i| format!("N-{i:06}")).collect();
    let t0 = vitalwatch::clock::now_ms() - 600_000;

    let mut vw = Vitalwatch::start("vw-1", &env, &logs);
    vw.wait_ready(LONG);
    let feeder = Feeder::new(&topics.client, &topics.input);
    for p in &patients {
        for (i, &(metric, value)) in CHART_SCORING_4.iter().enumerate() {
            feeder.send_keyed(p.as_bytes(), &observation(p, metric, value, t0 + i as i64));
        }
    }
    feeder.finish();
    topics.wait_committed_to_end(LONG);
    let before = kafka::read_all(&topics.client, &topics.alerts).len();
    let written = state_metric(&vw, "vitalwatch_state_records_written_total");
    let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw.tail(20));
    sc.step(format!(
        "{NEWS2_PATIENTS} full charts scoring 4 committed ({before} alerts), {written} state records written; vw-1 stopped in {took:.2?}"
    ));

    let mut vw2 = Vitalwatch::start("vw-2", &env, &logs);
    vw2.wait_ready(LONG);
    let (parts, records, ms) = restores(&vw2);
    sc.step(format!(
        "vw-2 ready: restored {parts} partitions, {records} records, slowest {ms} ms"
    ));
    // One worse reading each: 38.5 °C scores 1, so the full chart scores 5.
    let feeder = Feeder::new(&topics.client, &topics.input);
    for p in &patients {
        feeder.send_keyed(
            p.as_bytes(),
            &observation(p, Metric::Temperature, 38.5, t0 + 60_000),
        );
    }
    feeder.finish();
    topics.wait_committed_to_end(LONG);
    let (status, _) = vw2.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw2.tail(20));

    let input = kafka::read_all(&topics.client, &topics.input);
    let records_out = kafka::read_all(&topics.client, &topics.alerts);
    let c = Continuity::check(&topics.input, &input, &records_out);
    println!("{c}");
    // The full chart, as an oracle of the input scores it.
    let limits = vitalwatch::settings::defaults().decode_limits();
    let now = vitalwatch::clock::now_ms();
    let mut charts: BTreeMap<String, BTreeMap<Metric, (i64, f64)>> = BTreeMap::new();
    for r in &input {
        let obs = decode(r.value(), &limits, now).expect("valid input");
        let latest = charts
            .entry(obs.patient_id.to_string())
            .or_default()
            .entry(obs.metric)
            .or_insert((i64::MIN, 0.0));
        if obs.timestamp >= latest.0 {
            *latest = (obs.timestamp, obs.value);
        }
    }
    let scores: BTreeSet<u8> = charts
        .values()
        .map(|chart| {
            chart
                .iter()
                .map(|(m, (_, v))| news2::score(*m, *v).unwrap_or(0))
                .sum()
        })
        .collect();
    assert_eq!(scores, BTreeSet::from([5]), "every full chart scores 5");
    let alerts: Vec<OwnedAlert> = records_out
        .iter()
        .map(|r| serde_json::from_slice(r.value()).expect("alert"))
        .collect();
    let mut wrong = Vec::new();
    let mut scored = BTreeSet::new();
    for p in &patients {
        let mine: Vec<&OwnedAlert> = alerts.iter().filter(|a| &a.patient_id == p).collect();
        match mine.as_slice() {
            [a] if a.rule_id == "news2_medium" && a.phase == "start" => {
                let chart = a.news2.as_ref().expect("breakdown");
                scored.insert(a.value as u8);
                if a.value != 5.0 || chart["missing"] != serde_json::json!([]) {
                    wrong.push(format!(
                        "{p}: news2_medium scored {} (missing {}), the full chart scores 5",
                        a.value, chart["missing"]
                    ));
                }
            }
            other => wrong.push(format!(
                "{p}: {:?}",
                other
                    .iter()
                    .map(|a| format!("{} {} {}", a.rule_id, a.phase, a.value))
                    .collect::<Vec<_>>()
            )),
        }
    }
    c.record(&mut sc, input.len());
    sc.note(format!(
        "{NEWS2_PATIENTS} charts scoring 4 before a SIGTERM restart, 38.5 °C after it: {} news2_medium scored {scored:?} with nothing missing (oracle 5); \
         restored {records} records over {parts} partitions, slowest {ms} ms",
        patients.len() - wrong.len()
    ));
    assert_eq!(before, 0, "a chart scoring 4 raises nothing");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(c.lost == 0 && c.unexpected == 0 && c.wrong == 0, "{c}");
}

/// The input topic, the alert topic's records, and those records as alerts.
fn outcome(topics: &Topics) -> (Vec<Record>, Vec<Record>, Vec<OwnedAlert>) {
    let input = kafka::read_all(&topics.client, &topics.input);
    let records = kafka::read_all(&topics.client, &topics.alerts);
    let alerts = records
        .iter()
        .filter_map(|r| serde_json::from_slice(r.value()).ok())
        .collect();
    (input, records, alerts)
}

/// Partitions `vw` owns now, from its `partitions assigned` and `partitions revoked`
/// events (cooperative-sticky: both are incremental).
fn owned(vw: &Vitalwatch) -> BTreeSet<i32> {
    let mut owned = BTreeSet::new();
    for line in vw.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let f = &v["fields"];
        let parts = || -> Vec<i32> {
            f["partitions"]
                .as_str()
                .unwrap_or_default()
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        };
        match f["message"].as_str() {
            Some("partitions assigned") => owned.extend(parts()),
            Some("partitions revoked") => {
                for p in parts() {
                    owned.remove(&p);
                }
            }
            _ => {}
        }
    }
    owned
}

/// When a sample was taken, and the group's committed offset of each partition then.
type Sample = (Instant, Vec<i64>);

/// The group's committed offsets, sampled every 100 ms on a thread of its own.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(topics: &Topics) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt, t) = (samples.clone(), stop.clone(), topics.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let c = t.committed();
                s.lock().unwrap().push((Instant::now(), c));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn between(&self, from: Instant, to: Instant) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .cloned()
            .collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per partition over `samples`: how many times its committed offset advanced, and the
/// longest it stood still (from the first sample to the last).
fn progress(samples: &[Sample], partitions: usize) -> Vec<(usize, Duration)> {
    (0..partitions)
        .map(|p| {
            let mut advances = 0;
            let mut longest = Duration::ZERO;
            let mut since = samples.first().map(|s| s.0);
            for w in samples.windows(2) {
                if w[1].1[p] > w[0].1[p] {
                    advances += 1;
                    since = Some(w[1].0);
                } else if let Some(s) = since {
                    longest = longest.max(w[1].0 - s);
                }
            }
            (advances, longest)
        })
        .collect()
}
const SCALE_PARTITIONS: i32 = 12;
const SCALE_PATIENTS: usize = 240;
/// Committed offsets move about once a second or two (a checkpoint every second, then
/// auto-commit every second), so they are looked at until this long after a window.
const COMMIT_SLACK: Duration = Duration::from_millis(2_500);
/// While a partition flows, its patients' reminders are emitted every round (250 ms);
/// a longer silence within a rebalance window means it stopped.
const FLOWING_GAP_MS: i64 = 1_500;

/// One rebalance (or restart): when it began and ended (the monotonic and the wall
/// clock), and the partitions that stayed with one instance throughout.
struct Window {
    what: &'static str,
    partitions: i32,
    from: Instant,
    to: Instant,
    from_ms: i64,
    to_ms: i64,
    kept: BTreeSet<i32>,
}

impl Window {
    fn begin(what: &'static str, partitions: i32) -> Window {
        Window {
            what,
            partitions,
            from: Instant::now(),
            to: Instant::now(),
            from_ms: vitalwatch::clock::now_ms(),
            to_ms: 0,
            kept: BTreeSet::new(),
        }
    }

    fn end(&mut self, kept: BTreeSet<i32>) {
        self.to = Instant::now();
        self.to_ms = vitalwatch::clock::now_ms();
        self.kept = kept;
    }

    /// The evidence: per partition, the longest silence in alert emission within the
    /// window, and the committed offsets' advances within it (plus [`COMMIT_SLACK`]).
    /// Returns the text and the kept partitions that stopped.
    fn report(&self, sampler: &Sampler, alerts: &[OwnedAlert]) -> (String, Vec<String>) {
        let samples = sampler.between(self.from, self.to + COMMIT_SLACK);
        let prog = progress(&samples, self.partitions as usize);
        let mut stopped = Vec::new();
        let mut kept = Vec::new();
        let mut moved = Vec::new();
        for p in 0..self.partitions {
            let mut emitted: Vec<i64> = alerts
                .iter()
                .filter(|a| a.source.partition == p)
                .map(|a| a.emitted_at)
                .filter(|&t| t >= self.from_ms && t <= self.to_ms)
                .collect();
            emitted.sort_unstable();
            let mut edges = vec![self.from_ms];
            edges.extend(&emitted);
            edges.push(self.to_ms);
            let gap = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            let (advances, still) = prog[p as usize];
            let text = format!(
                "p{p} {} alerts, silent <= {:.1} s, commits +{advances} (still <= {:.1} s)",
                emitted.len(),
                gap as f64 / 1000.0,
                still.as_secs_f64()
            );
            if self.kept.contains(&p) {
                if gap > FLOWING_GAP_MS {
                    stopped.push(format!(
                        "{}: kept partition {p} emitted nothing for {gap} ms in the window",
                        self.what
                    ));
                }
                if advances == 0 {
                    stopped.push(format!(
                        "{}: kept partition {p}'s committed offset did not advance within the window + {COMMIT_SLACK:?}",
                        self.what
                    ));
                }
                kept.push(text);
            } else {
                moved.push(text);
            }
        }
        let text = format!(
            "{}: window {:.1} s ({} offset samples to {:.1} s after); kept {:?}: {}; moved: {}",
            self.what,
            (self.to - self.from).as_secs_f64(),
            samples.len(),
            COMMIT_SLACK.as_secs_f64(),
            self.kept,
            kept.join(", "),
            moved.join(", ")
        );
        (text, stopped)
    }
}

fn revoked(vw: &Vitalwatch) -> BTreeSet<i32> {
    vw.events("partitions revoked")
        .iter()
        .flat_map(|e| {
            e["partitions"]
                .as_str()
                .unwrap_or_default()
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .filter_map(|s| s.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn scaling_1_3_1_moves_only_what_must_move_and_keeps_state() {
    let mut sc = Scenario::begin("continuity-scale");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "cont-scale", SCALE_PARTITIONS);
    let logs = process::log_dir("continuity-scale");
    let env = continuity_env(&topics, &[]);
    let mut inst = Instances::default();
    let all: BTreeSet<i32> = (0..SCALE_PARTITIONS).collect();

    let mut vw1 = Vitalwatch::start("vw-1", &env, &logs);
    vw1.wait_ready(LONG);
    let feed = Feed::start(&topics, SCALE_PATIENTS, 4);
    let sampler = Sampler::start(&topics);
    wait_for(LONG, "every patient's episodes open on vw-1", || {
        let n = vw1.metrics().sum("vitalwatch_alerts_emitted_total", &[]);
        if n >= (2 * SCALE_PATIENTS) as f64 && feed.rounds() >= 12 {
            Ok(())
        } else {
            Err(format!("{n} alerts"))
        }
    });
    assert_eq!(owned(&vw1), all, "vw-1 owns every partition");
    sc.step(format!(
        "vw-1 alone owns {SCALE_PARTITIONS} partitions; {SCALE_PATIENTS} patients breaching; committed {:?}",
        topics.committed()
    ));

    // 1 → 3.
    let mut out = Window::begin("1 → 3", SCALE_PARTITIONS);
    let mut vw2 = Vitalwatch::start("vw-2", &env, &logs);
    let mut vw3 = Vitalwatch::start("vw-3", &env, &logs);
    let split = wait_for(LONG, "three replicas own the partitions, all ready", || {
        let (a, b, c) = (owned(&vw1), owned(&vw2), owned(&vw3));
        let ready = [&vw1, &vw2, &vw3]
            .iter()
            .all(|vw| matches!(vw.readyz(), Ok((200, _))));
        let union: BTreeSet<i32> = a.iter().chain(&b).chain(&c).copied().collect();
        if !a.is_empty() && !b.is_empty() && !c.is_empty() && union == all && ready {
            Ok((a, b, c))
        } else {
            Err(format!(
                "vw-1 {a:?}, vw-2 {b:?}, vw-3 {c:?}, all ready {ready}"
            ))
        }
    });
    // vw-1's partitions that it never gave up.
    let gave_up = revoked(&vw1);
    out.end(split.0.difference(&gave_up).copied().collect());
    let vw1_restores_out = restores(&vw1).0;
    sc.step(format!(
        "1 → 3 in {:.1} s: vw-1 {:?} (gave up {gave_up:?}), vw-2 {:?}, vw-3 {:?}; restores (partitions, records, slowest ms) vw-2 {:?}, vw-3 {:?}",
        (out.to - out.from).as_secs_f64(),
        split.0,
        split.1,
        split.2,
        restores(&vw2),
        restores(&vw3)
    ));
    // Three replicas work for a while: reminders come due on the moved patients.
    feed.wait_rounds(8, "a cooldown's worth of rounds on three replicas");

    // 3 → 1.
    let mut back = Window::begin("3 → 1", SCALE_PARTITIONS);
    let kept_in = owned(&vw1);
    for vw in [&mut vw2, &mut vw3] {
        vw.signal("-TERM");
    }
    for vw in [&mut vw2, &mut vw3] {
        let status = wait_for(
            Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10),
            &format!("{} to exit", vw.name),
            || vw.try_wait().ok_or_else(|| "running".to_owned()),
        );
        assert!(status.success(), "{}: {status}\n{}", vw.name, vw.tail(20));
        inst.add(vw);
    }
    wait_for(LONG, "vw-1 owns every partition again, ready", || {
        let a = owned(&vw1);
        if a == all && matches!(vw1.readyz(), Ok((200, _))) {
            Ok(())
        } else {
            Err(format!("vw-1 {a:?}, /readyz {:?}", vw1.readyz()))
        }
    });
    let gave_up_in: BTreeSet<i32> = revoked(&vw1).difference(&gave_up).copied().collect();
    back.end(kept_in.difference(&gave_up_in).copied().collect());
    let (restored_in, _, _) = restores(&vw1);
    sc.step(format!(
        "3 → 1 in {:.1} s: vw-1 owns all again, gave up {gave_up_in:?}; it restored {} partitions in all ({} at start, {} at the scale-in)",
        (back.to - back.from).as_secs_f64(),
        restored_in,
        vw1_restores_out,
        restored_in - vw1_restores_out
    ));

    // Past the last window's commit slack, too.
    feed.wait_rounds(12, "a cooldown's worth of rounds on vw-1");
    let sent = feed.recover();
    topics.wait_committed_to_end(LONG);
    let (status, _) = vw1.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw1.tail(20));
    inst.add(&vw1);

    let (input, records, alerts) = outcome(&topics);
    let (out_text, mut stopped) = out.report(&sampler, &alerts);
    let (back_text, stopped_back) = back.report(&sampler, &alerts);
    stopped.extend(stopped_back);
    sc.step(&out_text);
    sc.step(&back_text);
    let c = Continuity::check(&topics.input, &input, &records);
    println!("{c}");
    c.record(&mut sc, input.len());
    sc.note(format!(
        "{SCALE_PATIENTS} patients on {SCALE_PARTITIONS} partitions; 1 → 3 in {:.1} s, vw-1 kept {:?}; 3 → 1 in {:.1} s, vw-1 restored only the {} partitions it got back; {}; {}",
        (out.to - out.from).as_secs_f64(),
        out.kept,
        (back.to - back.from).as_secs_f64(),
        restored_in - vw1_restores_out,
        c.brief(),
        inst.brief()
    ));
    inst.assert_restores_complete();
    assert_eq!(input.len(), sent);
    assert!(
        !out.kept.is_empty(),
        "vw-1 kept some partitions when two joined"
    );
    assert_eq!(
        back.kept, kept_in,
        "vw-1 gave up nothing when the others left"
    );
    assert_eq!(
        restored_in - vw1_restores_out,
        SCALE_PARTITIONS as usize - kept_in.len(),
        "vw-1 restored exactly the partitions it got back"
    );
    assert!(stopped.is_empty(), "{}", stopped.join("\n"));
    assert_eq!(c.episodes, 2 * SCALE_PATIENTS, "{c}");
    assert!(c.ok(), "{c}");
}

/// How many `partitions assigned` and `partitions revoked` events `vw` logged: each
/// rebalance that involves it logs at least one.
fn rebalance_events(vw: &Vitalwatch) -> usize {
    vw.events("partitions assigned").len() + vw.events("partitions revoked").len()
}

/// `run`'s environment as the static group member `instance`.
fn static_member(base: &[(String, String)], instance: &str) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    env.push((
        "VITALWATCH_KAFKA__GROUP_INSTANCE_ID".into(),
        instance.to_owned(),
    ));
    env
}

/// Static membership: two members, `a` (the first to join, so the group's leader) and
/// `b`. `a` is stopped and started again with the same `group.instance.id` three times
/// (SIGTERM, SIGKILL, SIGTERM) within the session timeout: `b` sees no rebalance at all
/// (not one more assigned or revoked event), its partitions keep flowing, and `a` gets
/// its own partitions back and restores their state.
#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn static_members_restart_without_a_rebalance() {
    let mut sc = Scenario::begin("continuity-static");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "cont-static", WARD_PARTITIONS);
    let logs = process::log_dir("continuity-static");
    let base = continuity_env(&topics, &[]);
    let (env_a, env_b) = (
        static_member(&base, "vw-static-a"),
        static_member(&base, "vw-static-b"),
    );
    let mut rng = StdRng::seed_from_u64(seed());
    let mut inst = Instances::default();
    let all: BTreeSet<i32> = (0..WARD_PARTITIONS).collect();

    let mut a = Vitalwatch::start("a-1", &env_a, &logs);
    a.wait_ready(LONG);
    let mut b = Vitalwatch::start("b", &env_b, &logs);
    let (held_a, held_b) = wait_for(LONG, "a and b split the partitions, both ready", || {
        let (pa, pb) = (owned(&a), owned(&b));
        let ready = [&a, &b]
            .iter()
            .all(|vw| matches!(vw.readyz(), Ok((200, _))));
        let union: BTreeSet<i32> = pa.union(&pb).copied().collect();
        if !pa.is_empty() && !pb.is_empty() && pa.is_disjoint(&pb) && union == all && ready {
            Ok((pa, pb))
        } else {
            Err(format!("a {pa:?}, b {pb:?}, both ready {ready}"))
        }
    });
    let feed = Feed::start(&topics, WARD_PATIENTS, rng.random());
    let sampler = Sampler::start(&topics);
    wait_for(LONG, "every patient's episodes open", || {
        let open = a.metrics().sum("vitalwatch_alerts_emitted_total", &[])
            + b.metrics().sum("vitalwatch_alerts_emitted_total", &[]);
        if feed.rounds() >= 8 && open >= (2 * WARD_PATIENTS) as f64 {
            Ok(())
        } else {
            Err(format!("{open} alerts, {} rounds", feed.rounds()))
        }
    });
    let b_events = rebalance_events(&b);
    sc.step(format!(
        "static members: a (vw-static-a) holds {held_a:?}, b (vw-static-b) holds {held_b:?}; b logged {b_events} assign/revoke events joining; \
         {WARD_PATIENTS} patients breaching on {WARD_PARTITIONS} partitions, state topic {}",
        kafka::state_topic_kind()
    ));

    let mut windows = Vec::new();
    let mut back_in = Vec::new();
    for i in 1..=3 {
        let kill = i == 2;
        let delay = rng.random_range(500..=3_000);
        // The moment of the stop is the scenario's randomness, not a settling delay.
        std::thread::sleep(Duration::from_millis(delay));
        let mut w = Window::begin(
            if kill { "SIGKILL a" } else { "SIGTERM a" },
            WARD_PARTITIONS,
        );
        inst.skipped += state_metric(&a, "vitalwatch_state_readings_skipped_total");
        if kill {
            a.kill();
            sc.kills += 1;
        } else {
            let (status, _) = a.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
            assert!(status.success(), "{}: {status}\n{}", a.name, a.tail(20));
        }
        inst.add(&a);
        let down = w.from.elapsed();
        a = Vitalwatch::start(&format!("a-{}", i + 1), &env_a, &logs);
        a.wait_ready(LONG);
        let got = owned(&a);
        w.end(held_b.clone());
        let took = (w.to - w.from).as_secs_f64();
        let (parts, records, ms) = restores(&a);
        sc.step(format!(
            "{} {i}/3 {delay} ms in (round {}): stopped in {:.1} s, {} ready {:.1} s after the stop holding {got:?}, restored {parts} partitions, {records} records, slowest {ms} ms; \
             b's assign/revoke events {}",
            w.what,
            feed.rounds(),
            down.as_secs_f64(),
            a.name,
            took,
            rebalance_events(&b)
        ));
        assert_eq!(
            got,
            held_a,
            "{} got a's partitions back\n{}",
            a.name,
            a.tail(20)
        );
        assert_eq!(
            rebalance_events(&b),
            b_events,
            "b saw a rebalance when a restarted as a static member\n{}",
            b.tail(20)
        );
        back_in.push(took);
        windows.push(w);
    }
    feed.wait_rounds(12, "a cooldown's worth of rounds after the last restart");
    let sent = feed.recover();
    topics.wait_committed_to_end(LONG);
    for vw in [&mut a, &mut b] {
        inst.skipped += state_metric(vw, "vitalwatch_state_readings_skipped_total");
        let (status, _) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
        assert!(status.success(), "{}: {status}\n{}", vw.name, vw.tail(20));
        inst.add(vw);
    }

    let (input, records, alerts) = outcome(&topics);
    let mut stopped = Vec::new();
    for w in &windows {
        let (text, s) = w.report(&sampler, &alerts);
        sc.step(&text);
        stopped.extend(s);
    }
    let c = Continuity::check(&topics.input, &input, &records);
    println!("{c}");
    c.record(&mut sc, input.len());
    sc.note(format!(
        "static membership: a restarted 3 times (SIGTERM, SIGKILL, SIGTERM), back with its partitions {held_a:?} {:.1}-{:.1} s after each stop, b saw no rebalance ({b_events} events throughout) and its partitions {held_b:?} kept flowing; \
         {}; {}; readings skipped as already counted {}",
        back_in.iter().copied().fold(f64::INFINITY, f64::min),
        back_in.iter().copied().fold(0.0, f64::max),
        c.brief(),
        inst.brief(),
        inst.skipped
    ));
    inst.assert_restores_complete();
    assert_eq!(input.len(), sent);
    assert!(stopped.is_empty(), "{}", stopped.join("\n"));
    assert_eq!(c.episodes, 2 * WARD_PATIENTS, "{c}");
    assert!(c.ok(), "{c}");
}
