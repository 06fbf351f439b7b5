//! `vitalwatch demo`: the whole service on an in-process Kafka cluster fed by a ward.

use std::process::ExitCode;

use crate::cli::DemoArgs;

pub fn main(_args: DemoArgs) -> ExitCode {
    eprintln!("vitalwatch demo is not available yet");
    ExitCode::from(2)
}
