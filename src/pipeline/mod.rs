//! The Kafka pipeline: ingest → per-patient workers → alert and DLQ sinks → offsets.
//!
//! [`run`] starts everything and returns when the pipeline has stopped. The stop signal is
//! a parameter (a [`CancellationToken`]): `main` ties it to SIGTERM/SIGINT, tests and the
//! demo cancel it at will. Delivery is at-least-once: an offset is stored for commit only
//! when its message is done (evaluated with every alert acknowledged, or dead-lettered
//! with the DLQ record acknowledged), and only for the partition assignment it was read
//! under. See `docs/architecture.md` for the whole argument.

mod commit;
mod config;
mod context_feed;
mod durable;
mod hooks;
pub mod ingest;
pub mod inprocess;
pub mod offsets;
pub mod preflight;
mod record;
pub mod repartition;
mod run;
pub(crate) mod sink;
mod status;
mod work;
pub(crate) mod worker;

pub(crate) use commit::MANAGED_CLIENT_KEYS;
pub use config::{ClientConfigError, PipelineConfig, broker_host, fetch_tuning};
pub use hooks::Hooks;
pub use record::Record;
pub use run::{Report, run};
pub use status::{Assignment, Counts, Status, WorkerProbe};
pub use work::{Observed, Origin, Work};
