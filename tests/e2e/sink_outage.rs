//! Scenario 4: the alert sink goes away. The alert topic is deleted mid-run (and
//! vitalwatch's producers never recreate it: they run with `allow.auto.create.topics=false`) for
//! longer than `max.poll.interval.ms`, with enough red-flag input meanwhile to fill the
//! producer queue, the worker queues and pause ingest. vitalwatch must report not-ready,
//! commit nothing past the first message whose alert is stuck, stay in its group (no
//! zombie: no lost assignment, no rebalance), and deliver every alert once the topic is
//! back, without a restart.
//!
//! Deleting the topic deletes the alerts already in it, so the suite reads them (all of
//! the first phase, committed) before deleting it, the way a downstream consumer would
//! have, and tallies the union of both readings.

use std::time::{Duration, Instant};

use crate::kafka::{self, ALERT_PARTITIONS, Topics};
use crate::oracle::{self, Expected};
use crate::process::{self, Load, Loadgen, Vitalwatch};
use crate::summary::Scenario;
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, service_env};

const PHASE1: u64 = 20_000;
const PHASE2: u64 = 30_000;
/// `max.poll.interval.ms` for this scenario: the outage lasts well beyond it.
const MAX_POLL_INTERVAL_MS: u64 = 10_000;
/// How long the alert topic stays away (at least; longer if readiness takes longer to
/// turn false).
const OUTAGE: Duration = Duration::from_secs(25);
/// Small producer queue, so that the stuck alerts back up into the workers and ingest.
const PRODUCER_QUEUE: u64 = 1_000;

fn rebalances(vw: &Vitalwatch) -> (f64, f64, f64) {
    let m = vw.metrics();
    let n = |event| m.sum("vitalwatch_rebalances_total", &[("event", event)]);
    (n("assign"), n("revoke"), n("lost"))
}

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn alert_topic_outage_blocks_commits_keeps_the_member_and_loses_nothing() {
    let mut sc = Scenario::begin("sink-outage");
    let brokers = kafka::brokers();
    let topics = Topics::create(&brokers, "outage", 6);
    let logs = process::log_dir("sink-outage");
    let env = service_env(
        &topics,
        &[
            // allow.auto.create.topics=false needs no setting: vitalwatch's producers
            // never create a topic.
            ("max.poll.interval.ms", MAX_POLL_INTERVAL_MS.to_string()),
            ("queue.buffering.max.messages", PRODUCER_QUEUE.to_string()),
        ],
    );
    let mut vw = Vitalwatch::start("vw", &env, &logs);

    // Phase 1: healthy. Everything committed, every alert read by "downstream".
    Loadgen::start(
        &brokers,
        &Load::new(&topics.input, PHASE1, 0, 4),
        &logs,
        "loadgen-1",
    )
    .wait(LONG);
    let phase1_end = topics.wait_committed_to_end(LONG);
    let alerts1 = kafka::read_all(&brokers, &topics.alerts);
    let input1 = kafka::read_all(&brokers, &topics.input);
    let tally1 = oracle::tally(
        &Expected::from_input(&topics.input, &input1),
        &alerts1,
        &kafka::read_all(&brokers, &topics.dlq),
    );
    sc.step(format!("phase 1 done, committed {phase1_end:?}: {tally1}"));
    tally1.assert_exact();
    let before = rebalances(&vw);

    // The outage.
    kafka::delete_topic(&brokers, &topics.alerts);
    let outage_started = Instant::now();
    sc.step(format!("alert topic {} deleted", topics.alerts));
    let mut load2 = Load::new(&topics.input, PHASE2, 0, 5);
    load2.abnormal_ratio = 0.2;
    Loadgen::start(&brokers, &load2, &logs, "loadgen-2").wait(LONG);
    let input = kafka::read_all(&brokers, &topics.input);
    let expected = Expected::from_input(&topics.input, &input);
    let stuck_at = expected.first_alerting(&phase1_end);
    sc.step(format!(
        "phase 2 produced ({PHASE2} messages, 20% red flags); first alerting offset per partition {stuck_at:?}"
    ));

    let reason = wait_for(
        LONG,
        "/readyz to report the alert sink failing",
        || match vw.readyz() {
            Ok((503, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        },
    );
    sc.step(format!(
        "/readyz 503 after {:.1?}: {reason:?}",
        outage_started.elapsed()
    ));
    assert!(reason.contains("alert sink failing"), "{reason}");

    // Hold the outage, checking the invariants all along.
    let mut checks = 0;
    while outage_started.elapsed() < OUTAGE || checks < 5 {
        assert!(
            vw.is_running(),
            "vitalwatch died during the outage\n{}",
            vw.tail(20)
        );
        let health = vw.get("/healthz");
        assert!(
            matches!(health, Ok((200, _))),
            "/healthz during the outage: {health:?}"
        );
        let ready = vw.readyz();
        assert!(matches!(ready, Ok((503, _))), "/readyz: {ready:?}");
        let committed = topics.committed();
        for (p, (&c, &stuck)) in committed.iter().zip(&stuck_at).enumerate() {
            assert!(
                c <= stuck,
                "partition {p}: committed {c} past the stuck message at {stuck} ({committed:?})"
            );
        }
        checks += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let committed_in_outage = topics.committed();
    let after = rebalances(&vw);
    let members = kafka::group_members(&brokers, &topics.group);
    let paused =
        vw.events("worker queues full: partitions paused, still polling to stay in the group");
    sc.step(format!(
        "outage held {:.1?} (max.poll.interval.ms = {MAX_POLL_INTERVAL_MS}): committed {committed_in_outage:?} ≤ stuck {stuck_at:?}; rebalances (assign, revoke, lost) {before:?} → {after:?}; members {members:?}; ingest paused {} time(s)",
        outage_started.elapsed(),
        paused.len()
    ));
    assert_eq!(
        before, after,
        "no rebalance, no lost assignment during the outage"
    );
    if let Ok(m) = &members {
        assert_eq!(m.len(), 1, "still one member in {}", topics.group);
    }
    assert!(
        !paused.is_empty(),
        "the stuck sink backed up into ingest (the path that risks max.poll.interval.ms)"
    );

    // Back: every alert arrives, without a restart.
    kafka::create_topics(&brokers, &[(&topics.alerts, ALERT_PARTITIONS)]);
    let back = Instant::now();
    sc.step("alert topic recreated");
    topics.wait_committed_to_end(LONG);
    vw.wait_ready(LONG);
    sc.step(format!(
        "recovered {:.1?} after the topic came back; committed the end",
        back.elapsed()
    ));
    let mut alerts = alerts1;
    alerts.extend(kafka::read_all(&brokers, &topics.alerts));
    let dlq = kafka::read_all(&brokers, &topics.dlq);
    let tally = oracle::tally(&expected, &alerts, &dlq);
    let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw.tail(20));
    sc.step(format!("stopped by SIGTERM in {took:.2?}"));

    sc.messages = Some(expected.messages);
    sc.lost = Some(tally.lost());
    sc.duplicates = Some(tally.duplicates());
    sc.note(format!(
        "topic deleted {:.0} s (max.poll.interval.ms {} s); readyz 503 `{}`; commits held at the stuck offsets; no rebalance",
        back.duration_since(outage_started).as_secs_f64(),
        MAX_POLL_INTERVAL_MS / 1000,
        reason.trim()
    ));
    println!("{tally}");
    tally.assert_nothing_lost();
}
