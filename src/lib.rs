//! vitalwatch checks patient vital signs from Kafka against clinical rules and publishes
//! alerts, without losing an observation or an alert.
//!
//! Observations arrive on `patient-data`. The ingest thread ([`pipeline::ingest`]) reads
//! them in a consumer group, decodes and validates each one ([`vitals`]) and routes it by
//! patient to one of a fixed pool of workers ([`pipeline::worker`]); malformed input goes
//! to the dead-letter topic with a reason. A worker evaluates the rules ([`rules`]) and
//! publishes the alerts it raises ([`alert`]) through an idempotent producer
//! ([`pipeline::sink`]). An input offset becomes committable only when its message is done
//! and every message before it in the partition is done too ([`pipeline::offsets`]), so a
//! crash or a rebalance re-reads unfinished work instead of losing it.
//!
//! - [`settings`]: layered configuration and its validation.
//! - [`telemetry`] and [`metrics`]: logs and the Prometheus metrics.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`; [`admin`]: `/debug/pprof/*` on loopback.
//! - `tools` (the default-on `tools` feature): the demo, the traffic generator and the
//!   bench, which use the library from outside as the tests do.
//! - [`app`]: the subcommands `main` dispatches to.

pub mod admin;
pub mod alert;
pub mod app;
pub mod cli;
pub mod clock;
pub mod deadletter;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod rules;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod telemetry;
#[cfg(feature = "tools")]
pub mod tools;
pub mod vitals;
