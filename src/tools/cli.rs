//! The tools' command line: `demo`, `loadgen`, `bench` (and the bench's hidden
//! `bench-raw` child).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole service on an in-process Kafka cluster fed by a simulated ward.
    Demo(DemoArgs),
    /// Produce synthetic vital signs to a topic.
    Loadgen(LoadgenArgs),
    /// Measure throughput, CPU, memory and latency against a raw consumer on the same
    /// broker (see docs/benchmarks.md).
    Bench(BenchArgs),
    /// The bench's raw-consume limit: drain a topic with a plain consumer loop.
    #[command(hide = true)]
    BenchRaw(BenchRawArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Bootstrap servers of the broker to measure against (default: librdkafka's
    /// in-process mock cluster).
    #[arg(long, value_name = "B")]
    pub brokers: Option<String>,
    /// A short run (100 000 messages, one round, 5 s of latency): checks the method
    /// and gives rough ratios in a minute or two.
    #[arg(long)]
    pub quick: bool,
    /// Backlog per drain [default: 1 000 000, --quick 100 000].
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// How many times each drain is repeated, alternating raw and vitalwatch
    /// [default: 3, --quick 1].
    #[arg(long, value_name = "R")]
    pub rounds: Option<u32>,
    /// Worker counts to measure.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,2,4,8"
    )]
    pub workers: Vec<usize>,
    /// Partitions of every bench topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub partitions: i32,
    /// Rules per metric in the CPU-bound rule set.
    #[arg(long, value_name = "K", default_value_t = 20_000)]
    pub cpu_rules: usize,
    /// Length of the latency run [default: 20, --quick 5].
    #[arg(long, value_name = "SECS")]
    pub latency_secs: Option<f64>,
    /// Rate of the latency run [default: half the highest drain rate measured].
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub latency_rate: Option<u64>,
    /// Skip the memory runs (a backlog of --messages and of four times as many).
    #[arg(long)]
    pub skip_memory: bool,
    /// Run the service with `kafka.state_topic = ""` (rule state in memory only), to
    /// measure what durable patient state costs against a run without this flag.
    #[arg(long)]
    pub no_state: bool,
    /// Patient counts of the state-restore stage (default 10000 with --quick, else
    /// 10000,100000).
    #[arg(long, value_name = "N,N", value_delimiter = ',')]
    pub restore_patients: Vec<u64>,
    /// Directory for results.json, results.md, the plots and the children's logs.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub out: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct BenchRawArgs {
    #[arg(long)]
    pub brokers: String,
    #[arg(long)]
    pub topic: String,
    #[arg(long)]
    pub group: String,
    #[arg(long)]
    pub messages: u64,
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
    /// Where to serve /metrics /healthz /readyz (default: http.listen from the
    /// configuration, or a free loopback port when that one is taken).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Partitions of the input topic on the in-process cluster.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub partitions: i32,
}

#[derive(Debug, Args, Clone)]
pub struct LoadgenArgs {
    /// Bootstrap servers, host:port[,host:port...].
    #[arg(long, value_name = "B", required_unless_present = "mock")]
    pub brokers: Option<String>,
    /// Produce to an in-process mock cluster instead of a broker (measures the
    /// generator and the client; the data is gone when loadgen exits).
    #[arg(long, conflicts_with = "brokers")]
    pub mock: bool,
    /// Partitions of the topic `--mock` creates (ignored without `--mock`).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub partitions: i32,
    /// Topic to produce to.
    #[arg(long, value_name = "T", default_value = "patient-data")]
    pub topic: String,
    /// A vitalwatch configuration whose `[kafka.client]` settings (TLS, SASL,
    /// `kafka.sasl_password_file`) loadgen uses too; `VITALWATCH_*` variables apply as
    /// for `run`.
    #[arg(short, long, value_name = "FILE", conflicts_with = "mock")]
    pub config: Option<PathBuf>,
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
    /// Observation timestamps: `now` (the default) is the wall clock at sending, as a
    /// live feed's; a Unix epoch millisecond makes the first observation that old and
    /// each next one 1 ms later, so that two runs are byte-identical (vitalwatch
    /// dead-letters observations older than pipeline.max_observation_age_secs as stale).
    #[arg(long, value_name = "MS|now", default_value = "now", value_parser = base_timestamp)]
    pub base_timestamp: BaseTimestamp,
}

/// Where loadgen's observation timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseTimestamp {
    /// The wall clock when each message is generated.
    Now,
    /// This Unix epoch millisecond plus the message's sequence number.
    Fixed(i64),
}

fn base_timestamp(s: &str) -> Result<BaseTimestamp, String> {
    if s == "now" {
        return Ok(BaseTimestamp::Now);
    }
    match s.parse::<i64>() {
        Ok(ms) if ms >= vitalwatch::vitals::MIN_TIMESTAMP_MS => Ok(BaseTimestamp::Fixed(ms)),
        Ok(_) => Err(format!(
            "{s} is before 2000-01-01 (vitalwatch would dead-letter every message)"
        )),
        Err(_) => Err(format!(
            "`{s}` is neither `now` nor Unix epoch milliseconds"
        )),
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}
