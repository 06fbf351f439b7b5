//! The tools wing: what runs beside the service, never inside it.
//!
//! - [`demo`]: the whole service on an in-process Kafka cluster fed by a simulated ward.
//! - [`loadgen`]: synthetic vital signs produced to a topic.
//! - [`bench`]: throughput, CPU, memory and latency against a raw consumer on the same
//!   broker.
//! - [`ward`]: the simulated ward all three draw their observations from.
//! - [`scrape`]: a reader of the Prometheus text format, for the tools and the tests.
//!
//! The tools use the library as its tests do, through its public items; no service
//! module imports from here (`scripts/check-layers.py` holds CI to that). The wing and its
//! dependencies (plotters, indicatif, console, rand) are the `tools` cargo feature, on by
//! default; `cargo build --no-default-features` builds a binary with `run`,
//! `check-config` and `healthcheck` only.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod loadgen;
pub mod scrape;
pub mod ward;

use std::process::ExitCode;

pub use cli::Command;

/// Runs one tool's subcommand to its exit code.
pub fn main(command: Command) -> ExitCode {
    match command {
        Command::Demo(args) => demo::main(args),
        Command::Loadgen(args) => loadgen::main(args),
        Command::Bench(args) => bench::main(args),
        Command::BenchRaw(args) => bench::raw_main(args),
    }
}
