//! The command line: `run`, `demo`, `check-config`, `loadgen`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vitalwatch",
    version,
    about = "Checks patient vital signs from Kafka against clinical rules and publishes alerts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: consume patient-data, publish alerts and dead letters.
    Run(ConfigArg),
    /// The whole service on an in-process Kafka cluster fed by a simulated ward.
    Demo(DemoArgs),
    /// Validate configuration and rules, then exit (non-zero on any error).
    CheckConfig(ConfigArg),
    /// Produce synthetic vital signs to a topic.
    Loadgen(LoadgenArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file layered over the built-in defaults.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Configuration file layered over the built-in defaults.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Simulated patients on the ward.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub patients: u32,
    /// Observations per second the ward sends.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// How long to run, in seconds (0 = until Ctrl-C).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub duration: u64,
    /// Seed of the ward simulator (same seed, same ward).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args, Clone)]
pub struct LoadgenArgs {
    /// Bootstrap servers, host:port[,host:port...].
    #[arg(long, value_name = "B")]
    pub brokers: String,
    /// Topic to produce to.
    #[arg(long, value_name = "T", default_value = "patient-data")]
    pub topic: String,
    /// Messages to produce.
    #[arg(long, value_name = "N")]
    pub messages: u64,
    /// Messages per second (0 = as fast as the broker takes them).
    #[arg(long, value_name = "R", default_value_t = 0)]
    pub rate: u64,
    /// Distinct patients.
    #[arg(long, value_name = "P", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub patients: u32,
    /// Share of valid observations that breach a NEWS2 red flag.
    #[arg(long, value_name = "F", default_value_t = 0.05, value_parser = ratio)]
    pub abnormal_ratio: f64,
    /// Share of messages that are malformed (one of each DLQ reason in turn).
    #[arg(long, value_name = "F", default_value_t = 0.01, value_parser = ratio)]
    pub invalid_ratio: f64,
    /// Seed: the same seed and flags give byte-identical messages.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}
