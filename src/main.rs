//! The `vitalwatch` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vitalwatch::cli::Cli::parse();
    vitalwatch::app::main(cli)
}
