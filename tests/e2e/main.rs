//! End-to-end suite: the `vitalwatch` binary as a process against a real
//! Kafka-compatible broker (nisshi), broken on purpose.
//!
//! `scripts/e2e.sh` builds the release binary, starts the broker, exports
//! `VW_E2E_BROKERS` (and the ports of the scenarios' own brokers, `VW_E2E_SQLITE_PORT`
//! and `VW_E2E_TLS_PORT`) and `VW_E2E_BIN` (the release binary, the service under test)
//! and runs `cargo test --test e2e -- --ignored --test-threads=1`. Every test is `#[ignore]`, so a plain `cargo test` lists them
//! without needing a broker.
//!
//! Each scenario creates fresh topics and a fresh consumer group, feeds the input with
//! `vitalwatch loadgen` (or, for hand-made hostile input, its own producer), runs
//! `vitalwatch run` configured only through `VITALWATCH_*` variables, and compares the
//! alert and DLQ topics with an oracle computed from what the input topic actually holds
//! (`oracle.rs`). Nothing sleeps to let things settle: the suite waits on conditions with
//! deadlines (committed offsets, `/readyz`, `/metrics`, process exit). The only sleeps
//! are the scenario's own: the random moment of a kill, and how long an outage lasts.
//!
//! Every scenario appends a row to `target/e2e/summary.tsv` (`summary.rs`).

#[path = "../support/mod.rs"]
mod support;

mod broker;
mod kafka;
mod oracle;
mod process;
mod summary;
use support::wait;

mod broker_restart;
mod charts;
mod context;
mod continuity;
mod poison;
mod scale;
mod security;
mod sigkill;
mod sigterm;
mod sink_outage;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka::Topics;
use oracle::{Expected, Tally};

/// `pipeline.shutdown_timeout_secs` for every instance the suite starts.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 15;

/// The shipped thresholds with every breach alerting and NEWS2 off, the rules of every
/// scenario: each message's alerts then follow from the message alone, so the oracle
/// stays exact when a kill or a rebalance re-delivers a message to fresh patient state
/// (which is rebuilt from new observations by design; docs/rules.md).
pub fn every_breach_rules() -> vitalwatch::rules::RuleSet {
    vitalwatch::rules::RuleSet::news2_red_flags().stateless()
}

/// [`every_breach_rules`] as a file for `vitalwatch run`.
fn every_breach_rules_file() -> std::path::PathBuf {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-every-breach-rules.toml");
        std::fs::write(&path, every_breach_rules().to_toml())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    })
    .clone()
}

/// Consumer-group timing for every instance: a SIGKILLed member is noticed after
/// `session.timeout.ms` (the group waits that long before giving its partitions to the
/// others). 6 s is Kafka's `group.min.session.timeout.ms`; the default 45 s would make
/// each kill cost 45 s.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;

/// The environment for `vitalwatch run` on `topics`: the topic and group variables, the
/// shutdown deadline, the group timing, and `extra` librdkafka properties, all as
/// `VITALWATCH_*` variables (`[kafka.client]` properties as
/// `VITALWATCH_KAFKA__CLIENT__SESSION__TIMEOUT__MS`: the dots become `__`).
pub fn service_env(topics: &Topics, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = topics.env();
    env.push((
        "VITALWATCH_RULES__FILE".into(),
        every_breach_rules_file().display().to_string(),
    ));
    env.push((
        "VITALWATCH_PIPELINE__SHUTDOWN_TIMEOUT_SECS".into(),
        SHUTDOWN_TIMEOUT_SECS.to_string(),
    ));
    let mut client = vec![
        ("session.timeout.ms", SESSION_TIMEOUT_MS.to_string()),
        ("heartbeat.interval.ms", "1000".to_owned()),
    ];
    client.extend(extra.iter().cloned());
    for (prop, value) in client {
        env.push((client_var(prop), value));
    }
    env
}

/// `session.timeout.ms` → `VITALWATCH_KAFKA__CLIENT__SESSION__TIMEOUT__MS`.
pub fn client_var(property: &str) -> String {
    format!(
        "VITALWATCH_KAFKA__CLIENT__{}",
        property.replace('.', "__").to_uppercase()
    )
}

/// The run's random seed: `VW_E2E_SEED`, or the clock (printed, to replay a run).
pub fn seed() -> u64 {
    let seed = std::env::var("VW_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    println!("seed {seed} (VW_E2E_SEED={seed} replays the kill moments)");
    seed
}

/// Reads the input, alert and DLQ topics back and tallies them against the oracle.
pub fn check_outputs(topics: &Topics) -> (Expected, Tally) {
    let input = kafka::read_all(&topics.client, &topics.input);
    let expected = Expected::from_input(&topics.input, &input);
    let alerts = kafka::read_all(&topics.client, &topics.alerts);
    let dlq = kafka::read_all(&topics.client, &topics.dlq);
    let tally = oracle::tally(&expected, &alerts, &dlq);
    (expected, tally)
}

/// Generous bound for work that normally takes seconds: a deadline, not a measurement.
pub const LONG: Duration = Duration::from_secs(240);
