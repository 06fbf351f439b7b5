//! The command line: the service's `run`, `check-config` and `healthcheck`, and, in a
//! build with the `tools` feature (the default), the tools' `demo`, `loadgen` and `bench`.

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

/// Where settings come from, for the help of every command that reads them.
const CONFIG_HELP: &str = "Configuration, each layer over the one before:
  1. the built-in defaults (config/default.toml in the source tree, compiled into the binary);
  2. --config FILE: only the keys it sets (a relative rules.file is taken from FILE's directory);
  3. environment variables VITALWATCH_<SECTION>__<KEY>, two underscores between section and
     key, e.g. VITALWATCH_KAFKA__BOOTSTRAP_SERVERS=kafka:9093 or VITALWATCH_PIPELINE__WORKERS=4;
     librdkafka properties as VITALWATCH_KAFKA__CLIENT__<PROPERTY> with dots as __
     (VITALWATCH_KAFKA__CLIENT__SECURITY__PROTOCOL=SASL_SSL).
`vitalwatch check-config [-c FILE] --print` shows the result, credentials redacted.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: consume patient-data, publish alerts and dead letters.
    #[command(after_help = CONFIG_HELP)]
    Run(ConfigArg),
    /// Validate configuration and rules as `run` would, and the brokers and topics when
    /// they answer, then exit (non-zero on any error).
    #[command(after_help = CONFIG_HELP)]
    CheckConfig(CheckConfigArgs),
    /// GET /healthz of the service running on this host (the port of http.listen, from
    /// the same settings as `run`); exit 0 on 200. The container image's health check.
    #[command(after_help = CONFIG_HELP)]
    Healthcheck(ConfigArg),
    // demo, loadgen, bench: the tools wing (src/tools).
    #[cfg(feature = "tools")]
    #[command(flatten)]
    Tool(crate::tools::Command),
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Configuration file layered over the built-in defaults.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration (every key, credentials as [redacted]) instead
    /// of the summary.
    #[arg(long)]
    pub(crate) print: bool,
    /// Do not contact the brokers (by default, when they answer within 5 s, the TLS and
    /// SASL settings and every topic are checked as `run` checks them at start).
    #[arg(long)]
    pub(crate) offline: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file layered over the built-in defaults.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}
