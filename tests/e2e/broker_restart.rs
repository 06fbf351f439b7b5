//! Scenario 6: the broker restarts. A second nisshi broker on persistent storage
//! (`STORAGE=sqlite scripts/broker.sh`: topics, data and committed offsets survive a
//! restart) is stopped for 20 s mid-run and started again on the same port. The same
//! vitalwatch process rides it out, without a restart, and loses nothing.

use crate::broker::OwnBroker;
use std::time::{Duration, Instant};

use crate::kafka::Topics;
use crate::process::{self, Load, Loadgen, Vitalwatch};
use crate::summary::Scenario;
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, service_env};

const MESSAGES: u64 = 40_000;
const RATE: u64 = 2_000;
/// How long the broker stays down.
const DOWN: Duration = Duration::from_secs(20);

#[test]
#[ignore = "needs the nisshi broker: scripts/e2e.sh"]
fn broker_down_for_20s_and_back_vitalwatch_recovers_without_restart_and_loses_nothing() {
    let mut sc = Scenario::begin("broker-restart");
    let port = std::env::var("VW_E2E_SQLITE_PORT").unwrap_or_else(|_| "19093".to_owned());
    let broker = OwnBroker::start(&port);
    let brokers = broker.brokers();
    let topics = Topics::create(&brokers, "restart", 6);
    let logs = process::log_dir("broker-restart");
    let mut vw = Vitalwatch::start("vw", &service_env(&topics, &[]), &logs);
    let load = Loadgen::start(
        &brokers,
        &Load::new(&topics.input, MESSAGES, RATE, 6),
        &logs,
        "loadgen",
    );
    sc.step(format!(
        "sqlite broker on {brokers}; loadgen {MESSAGES} messages at {RATE}/s"
    ));

    // Mid-run: a quarter of the messages processed.
    wait_for(LONG, "a quarter of the input consumed", || {
        let n = vw.consumed();
        if n >= (MESSAGES / 4) as f64 {
            Ok(())
        } else {
            Err(format!("consumed {n}"))
        }
    });
    let committed_before = topics.committed();
    broker.script(&["stop"], &[]);
    let down = Instant::now();
    sc.step(format!(
        "broker stopped (committed {committed_before:?}); down for {DOWN:?}"
    ));
    // The outage itself is the scenario: it lasts DOWN, checked every second.
    while down.elapsed() < DOWN {
        assert!(
            vw.is_running(),
            "vitalwatch exited while the broker was down\n{}",
            vw.tail(20)
        );
        let health = vw.get("/healthz");
        assert!(
            matches!(health, Ok((200, _))),
            "/healthz must not follow the broker: {health:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let ready_while_down = vw.readyz();
    broker.script(&["start"], &[]);
    sc.step(format!(
        "broker back after {:.1?}; /readyz just before: {ready_while_down:?}",
        down.elapsed()
    ));

    let produced = load.wait(LONG);
    sc.step(format!("loadgen done: {produced}"));
    topics.wait_committed_to_end(LONG);
    assert!(vw.is_running(), "the same process finished the work");
    vw.wait_ready(LONG);
    sc.step(format!("same process (pid {}) committed the end", vw.pid()));
    let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw.tail(20));
    sc.step(format!("stopped by SIGTERM in {took:.2?}"));

    let (expected, tally) = crate::check_outputs(&topics);
    sc.messages = Some(expected.messages);
    sc.lost = Some(tally.lost());
    sc.duplicates = Some(tally.duplicates());
    sc.note(format!(
        "sqlite storage; broker down {} s mid-run; no vitalwatch restart; loadgen's input as stored: {} messages",
        DOWN.as_secs(),
        expected.messages
    ));
    println!("{tally}");
    assert!(
        expected.messages as u64 >= MESSAGES,
        "the input survived the restart"
    );
    tally.assert_nothing_lost();
}
