//! Scenario 1: SIGKILL cycles. 200 000 messages (normal, red-flag and malformed) arrive
//! while vitalwatch is killed with SIGKILL at random moments 10 times and restarted each
//! time; the last instance runs to the end. Every expected alert and dead letter must be
//! there; duplicates are counted, and each must carry its original's `alertId`.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::kafka::{self, Topics};
use crate::process::{self, Load, Loadgen, Vitalwatch};
use crate::summary::Scenario;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, check_outputs, seed, service_env};

const MESSAGES: u64 = 200_000;
const KILLS: usize = 10;
/// Production spans the kill cycles (each costs about a session timeout before the next
/// instance gets the partitions), so most kills hit an instance with work in flight.
const RATE: u64 = 2_500;
/// A kill comes at a random moment up to this long after the instance got partitions.
const MAX_KILL_DELAY_MS: u64 = 3_000;

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn sigkill_cycles_lose_nothing_and_duplicates_keep_their_alert_id() {
    let mut sc = Scenario::begin("sigkill");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "sigkill", 6);
    let logs = process::log_dir("sigkill");
    let mut rng = StdRng::seed_from_u64(seed());
    let env = service_env(&topics, &[]);

    let load = Loadgen::start(
        &brokers,
        &Load::new(&topics.input, MESSAGES, RATE, 1),
        &logs,
        "loadgen",
    );
    sc.step(format!(
        "loadgen: {MESSAGES} messages at {RATE}/s into {} (6 partitions)",
        topics.input
    ));

    for i in 1..=KILLS {
        let mut vw = Vitalwatch::start(&format!("vw-{i}"), &env, &logs);
        vw.wait_ready(LONG);
        let delay = rng.random_range(0..=MAX_KILL_DELAY_MS);
        // The kill moment itself is the scenario's randomness, not a settling delay.
        std::thread::sleep(Duration::from_millis(delay));
        let metrics = vw.metrics();
        let consumed = metrics.sum("vitalwatch_messages_consumed_total", &[]);
        let inflight = metrics.sum("vitalwatch_inflight_messages", &[]);
        vw.kill();
        sc.kills += 1;
        sc.step(format!(
            "kill {i}/{KILLS}: SIGKILL pid {} {delay} ms after it got partitions; it had consumed {consumed}, {inflight} in flight at its last offset store; committed now {:?}",
            vw.pid(),
            topics.committed()
        ));
    }

    let mut last = Vitalwatch::start("vw-final", &env, &logs);
    let produced = load.wait(LONG);
    sc.step(format!("loadgen done: {produced}"));
    let end = topics.wait_committed_to_end(LONG);
    sc.step(format!("vw-final committed the end of the input: {end:?}"));
    let (status, took) = last.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "vw-final: {status}\n{}", last.tail(20));
    sc.step(format!(
        "vw-final stopped by SIGTERM in {took:.1?}: {status}"
    ));

    let (expected, tally) = check_outputs(&topics);
    sc.messages = Some(expected.messages);
    sc.lost = Some(tally.lost());
    sc.duplicates = Some(tally.duplicates());
    sc.note(format!(
        "{} alerts + {} dead letters expected; duplicates: {} alerts, {} dead letters, every duplicate with its original's alertId",
        tally.expected_alerts, tally.expected_dlq, tally.duplicate_alerts, tally.duplicate_dlq
    ));
    println!("{tally}");
    assert_eq!(
        expected.messages as u64, MESSAGES,
        "input topic holds what loadgen sent"
    );
    assert!(!expected.alerts.is_empty() && !expected.dlq.is_empty());
    // `wrong_alerts` covers duplicates: each copy must match the oracle's alertId.
    tally.assert_nothing_lost();
}
