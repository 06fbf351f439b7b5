//! Scenario 3: scale out and in. Three replicas in one group on a 12-partition topic
//! each get partitions and process some; mid-stream one is SIGKILLed and a fourth one
//! added. Nothing is lost.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::kafka::{self, Topics};
use crate::process::{self, Load, Loadgen, Vitalwatch};
use crate::summary::Scenario;
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, check_outputs, seed, service_env};

const MESSAGES: u64 = 100_000;
const RATE: u64 = 4_000;
const PARTITIONS: i32 = 12;

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn three_replicas_share_the_partitions_and_lose_nothing_when_one_dies_and_one_joins() {
    let mut sc = Scenario::begin("scale");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "scale", PARTITIONS);
    let logs = process::log_dir("scale");
    let mut rng = StdRng::seed_from_u64(seed());
    let env = service_env(&topics, &[]);

    let load = Loadgen::start(
        &brokers,
        &Load::new(&topics.input, MESSAGES, RATE, 3),
        &logs,
        "loadgen",
    );
    let mut replicas: Vec<Vitalwatch> = (1..=3)
        .map(|i| Vitalwatch::start(&format!("vw-{i}"), &env, &logs))
        .collect();

    // Spread: every replica gets partitions and processes some of them.
    let counts = wait_for(LONG, "all three replicas consuming", || {
        let counts: Vec<f64> = replicas.iter().map(Vitalwatch::consumed).collect();
        if counts.iter().all(|&c| c > 0.0) {
            Ok(counts)
        } else {
            Err(format!("consumed per replica {counts:?}"))
        }
    });
    let members = kafka::group_members(&brokers, &topics.group);
    sc.step(format!(
        "three replicas consuming: {counts:?} messages so far; group members: {members:?}"
    ));
    if let Ok(m) = &members {
        assert_eq!(m.len(), 3, "three members in {}", topics.group);
    }

    // Scale in (a crash) and out (a new replica) while messages keep arriving.
    std::thread::sleep(Duration::from_millis(rng.random_range(0..=2_000)));
    let mut dead = replicas.remove(1);
    let dead_consumed = dead.consumed();
    dead.kill();
    sc.kills += 1;
    sc.step(format!(
        "SIGKILL {} (pid {}) after it consumed {dead_consumed}",
        dead.name,
        dead.pid()
    ));
    let added = Vitalwatch::start("vw-4", &env, &logs);
    added.wait_consuming(LONG);
    sc.step("vw-4 joined and consumes");
    replicas.push(added);

    let produced = load.wait(LONG);
    sc.step(format!("loadgen done: {produced}"));
    topics.wait_committed_to_end(LONG);
    let mut consumed = vec![(dead.name.clone(), dead_consumed)];
    for vw in &mut replicas {
        consumed.push((vw.name.clone(), vw.consumed()));
        let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
        assert!(status.success(), "{}: {status}\n{}", vw.name, vw.tail(20));
        sc.step(format!("{} stopped by SIGTERM in {took:.2?}", vw.name));
    }
    for (name, n) in &consumed {
        assert!(*n > 0.0, "{name} processed nothing: {consumed:?}");
    }

    let (expected, tally) = check_outputs(&topics);
    sc.messages = Some(expected.messages);
    sc.lost = Some(tally.lost());
    sc.duplicates = Some(tally.duplicates());
    sc.note(format!(
        "consumed per replica (re-reads included): {}",
        consumed
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    println!("{tally}");
    assert_eq!(expected.messages as u64, MESSAGES);
    tally.assert_nothing_lost();
}
