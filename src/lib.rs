//! vitalwatch checks patient vital signs from Kafka against clinical rules and publishes
//! alerts, without losing an observation or an alert.
//!
//! Observations arrive on `patient-data`. The ingest thread ([`pipeline::ingest`]) reads
//! them in a consumer group, decodes and validates each one ([`vitals`]) and routes it by
//! patient to one of a fixed pool of workers; malformed input goes to the dead-letter
//! topic with a reason. A worker evaluates the rules ([`rules`]) and publishes the alerts
//! they raise ([`alert`]) through an idempotent producer. An input offset becomes
//! committable only when its message is done and every message before it in the
//! partition is done too ([`pipeline::offsets`]); when offsets are committed is the
//! commit policy's. A crash or a rebalance re-reads unfinished work instead of losing it.
//!
//! The modules, from the leaves up (no module depends on one above it; CI checks):
//!
//! - [`vitals`], [`alert`] and the dead-letter format: the wire formats.
//! - [`rules`]: the rule kinds, the rules file, per-patient state; [`rules::live`] the
//!   set in force and its hot reload.
//! - [`pipeline`]: consumer, router, workers, sinks, offsets, the commit policy.
//! - [`settings`]: layered configuration and its validation; [`settings::defaults`] the
//!   shipped defaults, parsed once.
//! - [`metrics`], [`telemetry`]: the Prometheus metrics and the logs; [`http`] serves
//!   `/metrics`, `/healthz`, `/readyz`, [`admin`] `/debug/pprof/*` on loopback.
//! - [`signals`], [`clock`], [`secret`]: signals, the wall clock, credentials that never
//!   print.
//! - [`app`] and [`cli`]: the composition root that `main` hands over to.
//! - `tools` (the default-on `tools` feature): the demo, the traffic generator and the
//!   bench, which use this library from outside, through the items it exports, as the
//!   tests do.
//!
//! What is `pub` is what the tests, benches, examples and tools use; the rest is
//! `pub(crate)`.

pub mod admin;
pub mod alert;
pub mod app;
pub mod cli;
pub mod clock;
mod deadletter;
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

// The tools name the service as `vitalwatch::…`, as any client of the library does, so
// the same source also compiles outside the crate (examples/tools_outside.rs), where only
// the library's public items are in reach.
#[cfg(feature = "tools")]
extern crate self as vitalwatch;
pub mod vitals;
