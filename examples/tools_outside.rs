//! The tools wing (src/tools: demo, loadgen, bench, the ward simulator, the Prometheus
//! text reader) compiled as a client of the library. The tools name the service as
//! `vitalwatch::…`; mounted here, outside the crate, that is the library's public items
//! and nothing else, so a tool that reaches for a `pub(crate)` item fails to build here,
//! naming it. `cargo clippy --all-targets` builds this (CI runs it).
//!
//! Running it prints the tools' commands; run them as `vitalwatch demo`, `vitalwatch
//! loadgen` and `vitalwatch bench`.

#![allow(dead_code)]

use clap::{CommandFactory, Parser};

#[path = "../src/tools/mod.rs"]
mod tools;

/// The tools' commands, as the `vitalwatch` binary has them.
#[derive(Parser)]
#[command(name = "vitalwatch")]
struct Tools {
    #[command(subcommand)]
    command: tools::Command,
}

fn main() -> std::io::Result<()> {
    Tools::command().print_help()
}
