//! `vitalwatch loadgen`: synthetic vital signs for any broker.

use std::process::ExitCode;

use crate::cli::LoadgenArgs;

pub fn main(_args: LoadgenArgs) -> ExitCode {
    eprintln!("vitalwatch loadgen is not available yet");
    ExitCode::from(2)
}
