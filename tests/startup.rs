//! SIGTERM at each moment of start-up ends `vitalwatch run` with exit 0: before any broker
//! answers, during the consumer group's first join, and right after the assignment. The
//! built binary against librdkafka's mock cluster, which this test process hosts (its
//! brokers listen on loopback ports), or against a peer that accepts connections and
//! never answers.
//!
//! Each test checks from the service's own log that the signal landed in the moment it
//! names, so a start-up that got faster or slower cannot make it test another moment.

#![cfg(unix)]

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use support::process::{Vitalwatch, log_dir_in};
use support::wait::wait_for;

/// Bound on the exit after SIGTERM: the shutdown deadline below and some.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// `vitalwatch run` on `brokers` with the topics and group of this test.
fn env(brokers: &str, name: &str) -> Vec<(String, String)> {
    [
        ("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS", brokers.to_owned()),
        ("VITALWATCH_KAFKA__INPUT_TOPIC", format!("{name}-data")),
        ("VITALWATCH_KAFKA__ALERT_TOPIC", format!("{name}-alerts")),
        ("VITALWATCH_KAFKA__DLQ_TOPIC", format!("{name}-dlq")),
        ("VITALWATCH_KAFKA__REPARTITION_TOPIC", String::new()),
        ("VITALWATCH_KAFKA__STATE_TOPIC", String::new()),
        ("VITALWATCH_KAFKA__GROUP_ID", format!("{name}-group")),
        (
            "VITALWATCH_PIPELINE__SHUTDOWN_TIMEOUT_SECS",
            "10".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A mock cluster with the topics of [`env`].
fn cluster(name: &str) -> MockCluster<'static, DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in [("data", 2), ("alerts", 1), ("dlq", 1)] {
        mock.create_topic(&format!("{name}-{topic}"), partitions, 1)
            .expect("topic");
    }
    mock
}

/// Whether the log has an event with this message.
fn logged(vw: &Vitalwatch, message: &str) -> bool {
    !vw.events(message).is_empty()
}

/// Field report item 13: SIGTERM while start-up waits for brokers that do not answer is
/// acted on at once (exit 0, nothing started), not after the wait.
#[test]
fn sigterm_during_the_broker_wait_stops_at_once() {
    // A peer that accepts connections and never answers: librdkafka keeps waiting.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in silent.incoming().take(8).flatten() {
            conns.push(c);
        }
        conns
    });
    let logs = log_dir_in("startup", "broker-wait");
    // `start` returns once the HTTP listener is up, which is before the broker check.
    let mut vw = Vitalwatch::start("broker-wait", &env(&addr.to_string(), "wait"), &logs);
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    let (status, _) = vw.terminate(Duration::from_secs(20));
    let took = sent.elapsed();
    let log = vw.lines().join("\n");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        took < Duration::from_secs(5),
        "stopped {took:?} after SIGTERM, the broker wait is 10 s\n{log}"
    );
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(!log.contains("\"pipeline started\""), "{log}");
    drop(held);
}

/// SIGTERM once the brokers answered and the consumer asked to join the group, before
/// the group assigned anything: librdkafka's mock coordinator holds a group's first join
/// for 3 s (Kafka's `group.initial.rebalance.delay.ms`), which is the moment hit here.
#[test]
fn sigterm_during_the_group_join_exits_0() {
    let _cluster = cluster("join");
    let brokers = _cluster.bootstrap_servers();
    let logs = log_dir_in("startup", "group-join");
    let mut vw = Vitalwatch::start("group-join", &env(&brokers, "join"), &logs);
    wait_for(Duration::from_secs(20), "the broker check to pass", || {
        if logged(&vw, "connected to the brokers") {
            Ok(())
        } else {
            Err(vw.tail(5))
        }
    });
    let (status, _) = vw.terminate(EXIT_WITHIN);
    let log = vw.tail(40);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        !logged(&vw, "partitions assigned"),
        "the signal came after the join, not during it:\n{log}"
    );
    assert!(logged(&vw, "shutdown requested"), "{log}");
}

/// SIGTERM as soon as `/readyz` says the partitions are assigned.
#[test]
fn sigterm_right_after_the_assignment_exits_0() {
    let _cluster = cluster("assigned");
    let brokers = _cluster.bootstrap_servers();
    let logs = log_dir_in("startup", "assigned");
    let mut vw = Vitalwatch::start("assigned", &env(&brokers, "assigned"), &logs);
    wait_for(Duration::from_secs(60), "/readyz 200", || {
        match vw.readyz() {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (status, _) = vw.terminate(EXIT_WITHIN);
    let log = vw.tail(40);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(logged(&vw, "partitions assigned"), "{log}");
    assert!(logged(&vw, "shutdown requested"), "{log}");
}
