//! Configuration: built-in defaults, then `--config FILE`, then `VITALWATCH_*` variables.
//!
//! The defaults are `config/default.toml`, compiled into the binary so that it runs from
//! any directory. [`Settings::load`] merges the layers, deserialises them into one typed
//! tree and validates it; every error names the key and the problem, and start-up stops
//! there rather than running a half-configured service next to patients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::pipeline::{MANAGED_CLIENT_KEYS, PipelineConfig, broker_host};
use crate::rules::RuleSet;
use crate::rules::state::StateLimits;
use crate::secret::ClientProps;
pub(crate) use crate::telemetry::LogFormat;
use crate::vitals::DecodeLimits;

mod sources;
pub use sources::{KeySource, Origin};

/// The shipped defaults.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The settings of [`DEFAULT_TOML`] alone (no file, no environment), parsed once: where
/// the library, the tools and the tests take a default value from, so that each is
/// written in `config/default.toml` only.
pub fn defaults() -> &'static Settings {
    static DEFAULTS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| {
        Settings::load_with_env(None, std::iter::empty())
            // The file is compiled in and a unit test loads it: this cannot fail in a
            // build whose tests passed.
            .unwrap_or_else(|e| panic!("config/default.toml, as compiled in: {e:#}"))
    })
}

/// Environment variable prefix: `VITALWATCH_<SECTION>__<KEY>`.
pub(crate) const ENV_PREFIX: &str = "VITALWATCH";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub pipeline: PipelineSettings,
    pub rules: RulesSettings,
    pub(crate) http: HttpSettings,
    pub(crate) admin: AdminSettings,
    pub(crate) log: LogSettings,
    /// Which layer set what (not a key).
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub(crate) bootstrap_servers: String,
    pub(crate) group_id: String,
    /// Static group membership: this replica's stable name (a StatefulSet pod's name);
    /// "" for dynamic membership.
    pub(crate) group_instance_id: String,
    pub input_topic: String,
    pub alert_topic: String,
    pub dlq_topic: String,
    /// Where observations not keyed by their patient id are re-keyed, so that one
    /// patient's observations meet in one replica; "" turns it off.
    pub repartition_topic: String,
    /// Each patient's rule state, restored when a partition is assigned; "" keeps it in
    /// memory only.
    pub state_topic: String,
    /// Per-patient clinical settings (SpO2 scale, overrides, suppression), compacted,
    /// keyed by patient id, co-partitioned with the input topic; "" turns it off.
    pub context_topic: String,
    /// The partitioner the input's producers use (`murmur2`: Java clients; `crc32`:
    /// librdkafka-based clients), to tell which observations are on their patient's
    /// partition.
    pub input_partitioner: crate::pipeline::repartition::Partitioner,
    /// Refuse to start unless the brokers are reached over TLS with the certificate and
    /// host name verified.
    pub(crate) require_tls: bool,
    /// A file holding the SASL password (a trailing newline is ignored), read at start
    /// into `sasl.password`; "" for none.
    pub(crate) sasl_password_file: PathBuf,
    /// librdkafka properties passed through to every client, flattened to dotted names;
    /// credentials are kept redacted (see [`crate::secret`]).
    #[serde(default, deserialize_with = "flatten_client")]
    pub client: ClientProps,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    pub workers: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_future_skew_secs: u64,
    /// Observations older than this go to the DLQ as `stale` instead of alerting.
    pub(crate) max_observation_age_secs: u64,
    pub(crate) shutdown_timeout_secs: u64,
    /// A partition's state restore that takes longer goes live with what it has.
    pub(crate) restore_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSettings {
    pub file: PathBuf,
    /// Re-read the rules file this often (and on SIGHUP); 0 reloads on SIGHUP only.
    pub(crate) reload_interval_secs: u64,
    /// Forget a patient's rule state after this long without an observation.
    pub(crate) state_ttl_secs: u64,
    /// The most patients one worker keeps rule state for (least recently seen go first).
    pub(crate) max_patients_per_worker: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSettings {
    pub(crate) listen: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSettings {
    pub(crate) listen: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSettings {
    pub(crate) format: LogFormat,
    pub(crate) level: String,
}

impl LogSettings {
    /// `log.level` as a tracing filter: `warning` read as `warn`, levels in lower case.
    /// The error names the valid levels.
    pub(crate) fn filter(&self) -> Result<String, String> {
        log_filter(&self.level)
    }
}

/// The levels `log.level` accepts, with the spelling tracing wants.
const LOG_LEVELS: [(&str, &str); 7] = [
    ("error", "error"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("info", "info"),
    ("debug", "debug"),
    ("trace", "trace"),
    ("off", "off"),
];

/// A level (`info`), or comma-separated directives (`info,rdkafka=warn`), as a tracing
/// filter. A bare word that is no level is refused: tracing would read it as a module
/// name and log nothing at all.
pub(crate) fn log_filter(spec: &str) -> Result<String, String> {
    let level = |word: &str| {
        LOG_LEVELS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word.trim()))
            .map(|(_, level)| *level)
    };
    let valid = "error, warn (or warning), info, debug, trace, off";
    let mut out = Vec::new();
    for directive in spec.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        match directive.rsplit_once('=') {
            Some((target, lvl)) if !target.trim().is_empty() => match level(lvl) {
                Some(l) => out.push(format!("{}={l}", target.trim())),
                None => {
                    return Err(format!(
                        "\"{directive}\": \"{lvl}\" is not a level; use {valid}"
                    ));
                }
            },
            _ => match level(directive) {
                Some(l) => out.push(l.to_owned()),
                None => {
                    return Err(format!(
                        "\"{directive}\" is not a level; use {valid}, or target=level directives such as \"info,rdkafka=warn\""
                    ));
                }
            },
        }
    }
    if out.is_empty() {
        return Err(format!("is empty; use {valid}"));
    }
    let filter = out.join(",");
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| format!("\"{spec}\": {e}"))?;
    Ok(filter)
}

/// Upper bounds that catch a misplaced zero or unit, not tuning limits.
const MAX_WORKERS: usize = 4096;
const MAX_QUEUE_CAPACITY: usize = 1 << 20;
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Ten years: a backfill of a trial's history may need a wide bound, never an endless one.
const MAX_OBSERVATION_AGE_SECS: u64 = 10 * 365 * 86_400;

impl Settings {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut origin = Origin::default();
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            let text = sources::read_file(path, &mut origin)?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: config::Map<String, String> =
            sources::check_env(env, &mut origin)?.into_iter().collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                // No try_parsing: values stay strings until serde asks for a number, so a
                // librdkafka property like a digits-only SASL password keeps its zeros.
                .source(Some(env)),
        );
        let source = origin.describe();
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| anyhow::anyhow!("{}", origin.annotate_config_error(&e)))
            .with_context(|| format!("invalid configuration (from {source})"))?;
        settings.origin = origin;
        settings.resolve_rules_file();
        settings
            .kafka
            .read_password_file()
            .with_context(|| format!("invalid configuration (from {source})"))?;
        settings
            .validate()
            .with_context(|| format!("invalid configuration (from {source})"))?;
        Ok(settings)
    }

    /// Makes `rules.file` absolute: relative to the config file when that file set it,
    /// otherwise to the working directory (the built-in default, or a variable).
    fn resolve_rules_file(&mut self) {
        let base = match self.origin.of("rules.file") {
            KeySource::File { path, .. } => path.parent().map(Path::to_owned),
            _ => None,
        };
        self.origin.rules_file_as_written = self.rules.file.clone();
        if self.rules.file.is_relative()
            && let Some(dir) = base
        {
            self.rules.file = dir.join(&self.rules.file);
        }
        self.rules.file = sources::absolute(&self.rules.file);
    }

    /// Why the rules file was looked for where it was, and which key to set: for an
    /// error about a rules file that cannot be read.
    pub(crate) fn rules_file_hint(&self) -> String {
        let written = self.origin.rules_file_as_written.display();
        let origin = match self.origin.of("rules.file") {
            KeySource::Default => "the built-in default".to_owned(),
            source => format!("set in {source}"),
        };
        let relative_to = match (
            self.origin.of("rules.file"),
            self.origin.rules_file_as_written.is_relative(),
        ) {
            (_, false) => String::new(),
            (KeySource::File { .. }, true) => ", relative to that file's directory".to_owned(),
            (_, true) => match std::env::current_dir() {
                Ok(cwd) => format!(", relative to the working directory {}", cwd.display()),
                Err(_) => ", relative to the working directory".to_owned(),
            },
        };
        format!(
            "rules.file is \"{written}\" ({origin}{relative_to}); set rules.file in the config file \
             (a relative path is taken from that file's directory) or {ENV_PREFIX}_RULES__FILE"
        )
    }

    /// Where `key` was set, for an error message: ` (set in FILE line N)`, ` (set by VAR)`
    /// or nothing for a default.
    fn set_at(&self, key: &str) -> String {
        match self.origin.of(key) {
            KeySource::Default => String::new(),
            KeySource::File { path, line } => format!(" (set in {} line {line})", path.display()),
            KeySource::Env(var) => format!(" (set by {var})"),
        }
    }

    /// What the pipeline runs with.
    pub fn pipeline_config(&self) -> PipelineConfig {
        let k = &self.kafka;
        PipelineConfig {
            bootstrap_servers: k.bootstrap_servers.clone(),
            group_id: k.group_id.clone(),
            group_instance_id: Some(k.group_instance_id.trim().to_owned())
                .filter(|t| !t.is_empty()),
            input_topic: k.input_topic.clone(),
            alert_topic: k.alert_topic.clone(),
            dlq_topic: k.dlq_topic.clone(),
            repartition_topic: Some(k.repartition_topic.clone()).filter(|t| !t.is_empty()),
            state_topic: Some(k.state_topic.clone()).filter(|t| !t.is_empty()),
            context_topic: Some(k.context_topic.clone()).filter(|t| !t.is_empty()),
            restore_timeout: Duration::from_secs(self.pipeline.restore_timeout_secs),
            input_partitioner: k.input_partitioner,
            client: k.client.clone(),
            workers: self.pipeline.workers,
            queue_capacity: self.pipeline.queue_capacity,
            limits: self.decode_limits(),
            state_limits: self.state_limits(),
            shutdown_timeout: self.shutdown_timeout(),
        }
    }

    /// What librdkafka would refuse when `run` creates its clients, found without
    /// connecting; the error names the property and where it was set, never its value.
    pub(crate) fn check_clients(&self) -> anyhow::Result<()> {
        match self.pipeline_config().check_clients() {
            Ok(()) => Ok(()),
            Err(e) if e.property.is_empty() => bail!("{e}"),
            Err(e) => bail!(
                "kafka.client.\"{}\"{}: librdkafka refuses it: {}",
                e.property,
                self.set_at(&format!("kafka.client.{}", e.property)),
                e.problem
            ),
        }
    }

    /// The effective configuration as TOML, credentials shown as `[redacted]`
    /// (`check-config --print`).
    pub(crate) fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot print the configuration")
    }

    /// Checks every value; the error lists each bad key with its problem.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let mut problems: Vec<String> = Vec::new();
        let mut check = |ok: bool, key: &str, problem: &str| {
            if !ok {
                problems.push(format!("{key}{}: {problem}", self.set_at(key)));
            }
        };
        let k = &self.kafka;
        check(
            !k.bootstrap_servers.trim().is_empty(),
            "kafka.bootstrap_servers",
            "must name at least one broker (host:port)",
        );
        check(
            !k.group_id.trim().is_empty(),
            "kafka.group_id",
            "must not be empty",
        );
        check(
            k.group_instance_id.len() <= 249
                && !k.group_instance_id.chars().any(|c| c.is_control()),
            "kafka.group_instance_id",
            "must be at most 249 characters, without control characters (or \"\" for dynamic membership)",
        );
        for (key, topic) in [
            ("kafka.input_topic", &k.input_topic),
            ("kafka.alert_topic", &k.alert_topic),
            ("kafka.dlq_topic", &k.dlq_topic),
        ] {
            check(
                valid_topic_name(topic),
                key,
                "must be a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -",
            );
        }
        check(
            k.repartition_topic.is_empty() || valid_topic_name(&k.repartition_topic),
            "kafka.repartition_topic",
            "must be a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ - (or \"\" for off)",
        );
        check(
            k.input_topic != k.alert_topic && k.input_topic != k.dlq_topic,
            "kafka.input_topic",
            "must differ from kafka.alert_topic and kafka.dlq_topic (vitalwatch would read its own output)",
        );
        check(
            k.repartition_topic.is_empty()
                || ![&k.input_topic, &k.alert_topic, &k.dlq_topic].contains(&&k.repartition_topic),
            "kafka.repartition_topic",
            "must differ from kafka.input_topic, kafka.alert_topic and kafka.dlq_topic",
        );
        check(
            k.state_topic.is_empty() || valid_topic_name(&k.state_topic),
            "kafka.state_topic",
            "must be a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ - (or \"\" for off)",
        );
        check(
            k.state_topic.is_empty()
                || ![
                    &k.input_topic,
                    &k.alert_topic,
                    &k.dlq_topic,
                    &k.repartition_topic,
                ]
                .contains(&&k.state_topic),
            "kafka.state_topic",
            "must differ from kafka.input_topic, kafka.alert_topic, kafka.dlq_topic and kafka.repartition_topic",
        );
        check(
            k.context_topic.is_empty() || valid_topic_name(&k.context_topic),
            "kafka.context_topic",
            "must be a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ - (or \"\" for off)",
        );
        check(
            k.context_topic.is_empty()
                || ![
                    &k.input_topic,
                    &k.alert_topic,
                    &k.dlq_topic,
                    &k.repartition_topic,
                    &k.state_topic,
                ]
                .contains(&&k.context_topic),
            "kafka.context_topic",
            "must differ from kafka.input_topic, kafka.alert_topic, kafka.dlq_topic, kafka.repartition_topic and kafka.state_topic",
        );
        let p = &self.pipeline;
        check(
            (1..=3600).contains(&p.restore_timeout_secs),
            "pipeline.restore_timeout_secs",
            &format!("must be between 1 and 3600, is {}", p.restore_timeout_secs),
        );
        check(
            (1..=MAX_WORKERS).contains(&p.workers),
            "pipeline.workers",
            &format!("must be between 1 and {MAX_WORKERS}, is {}", p.workers),
        );
        check(
            (1..=MAX_QUEUE_CAPACITY).contains(&p.queue_capacity),
            "pipeline.queue_capacity",
            &format!(
                "must be between 1 and {MAX_QUEUE_CAPACITY}, is {}",
                p.queue_capacity
            ),
        );
        check(
            (64..=MAX_MESSAGE_BYTES).contains(&p.max_message_bytes),
            "pipeline.max_message_bytes",
            &format!(
                "must be between 64 and {MAX_MESSAGE_BYTES}, is {}",
                p.max_message_bytes
            ),
        );
        check(
            (60..=MAX_OBSERVATION_AGE_SECS).contains(&p.max_observation_age_secs),
            "pipeline.max_observation_age_secs",
            &format!(
                "must be 60 (a minute) to {MAX_OBSERVATION_AGE_SECS} (ten years), is {}",
                p.max_observation_age_secs
            ),
        );
        check(
            p.shutdown_timeout_secs >= 1,
            "pipeline.shutdown_timeout_secs",
            "must be at least 1",
        );
        let r = &self.rules;
        check(
            !r.file.as_os_str().is_empty(),
            "rules.file",
            "must name a rules file",
        );
        check(
            r.reload_interval_secs <= 3600,
            "rules.reload_interval_secs",
            &format!(
                "must be 0 (SIGHUP only) to 3600, is {}",
                r.reload_interval_secs
            ),
        );
        check(
            (1..=7 * 86_400).contains(&r.state_ttl_secs),
            "rules.state_ttl_secs",
            &format!("must be 1 to 604800 (a week), is {}", r.state_ttl_secs),
        );
        check(
            (1..=10_000_000).contains(&r.max_patients_per_worker),
            "rules.max_patients_per_worker",
            &format!("must be 1 to 10000000, is {}", r.max_patients_per_worker),
        );
        check(
            self.http.listen.parse::<SocketAddr>().is_ok(),
            "http.listen",
            &format!(
                "\"{}\" is not an address:port such as 0.0.0.0:9464",
                self.http.listen
            ),
        );
        check(
            self.admin.listen.is_empty() || self.admin.listen.parse::<SocketAddr>().is_ok(),
            "admin.listen",
            &format!(
                "\"{}\" is not an address:port such as 127.0.0.1:6060 (or \"\" to disable)",
                self.admin.listen
            ),
        );
        if let Err(problem) = self.log.filter() {
            check(false, "log.level", &problem);
        }
        for key in self.kafka.client.names() {
            if MANAGED_CLIENT_KEYS.contains(&key) {
                problems.push(format!(
                    "kafka.client.\"{key}\"{}: is set by vitalwatch itself and cannot be overridden (its delivery guarantee and its topic checks depend on it)",
                    self.set_at(&format!("kafka.client.{key}"))
                ));
            }
        }
        if let Err(problem) = self.kafka.tls_problem() {
            problems.push(problem);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.pipeline.shutdown_timeout_secs)
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        let ms = |secs: u64| (secs.min(i64::MAX as u64 / 1000) as i64) * 1000;
        DecodeLimits {
            max_message_bytes: self.pipeline.max_message_bytes,
            max_future_skew_ms: ms(self.pipeline.max_future_skew_secs),
            max_age_ms: ms(self.pipeline.max_observation_age_secs),
        }
    }

    /// Patient rule state limits per worker (validated at load).
    pub fn state_limits(&self) -> StateLimits {
        StateLimits {
            ttl_ms: self.rules.state_ttl_secs.min(i64::MAX as u64 / 1000) as i64 * 1000,
            capacity: NonZeroUsize::new(self.rules.max_patients_per_worker)
                .unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// What a rules file must satisfy beyond itself: the state TTL must outlast every
    /// span the rules look back over, or state would be forgotten while still needed.
    pub(crate) fn check_rules(&self, rules: &RuleSet) -> Result<(), String> {
        let needed_secs = (rules.longest_memory_ms() + 999) / 1000;
        if needed_secs > self.state_ttl_secs_i64() {
            return Err(format!(
                "the rules look back {needed_secs} s (for_secs, cooldown_secs or news2.max_age_secs) \
                 but rules.state_ttl_secs is {}: raise rules.state_ttl_secs to at least {needed_secs}",
                self.rules.state_ttl_secs
            ));
        }
        Ok(())
    }

    fn state_ttl_secs_i64(&self) -> i64 {
        self.rules.state_ttl_secs.min(i64::MAX as u64) as i64
    }

    /// The metrics/health listener (validated at load).
    pub fn http_listen(&self) -> anyhow::Result<SocketAddr> {
        self.http
            .listen
            .parse()
            .with_context(|| format!("http.listen \"{}\"", self.http.listen))
    }

    /// The admin (pprof) listener, or `None` when disabled.
    pub fn admin_listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.admin.listen.is_empty() {
            return Ok(None);
        }
        self.admin
            .listen
            .parse()
            .map(Some)
            .with_context(|| format!("admin.listen \"{}\"", self.admin.listen))
    }
}

impl KafkaSettings {
    /// `security.protocol` as librdkafka reads it (case-insensitive, `plaintext` when unset).
    pub(crate) fn security_protocol(&self) -> String {
        self.client
            .get("security.protocol")
            .unwrap_or("plaintext")
            .to_ascii_lowercase()
    }

    /// Whether the connection to the brokers is encrypted.
    pub(crate) fn uses_tls(&self) -> bool {
        matches!(self.security_protocol().as_str(), "ssl" | "sasl_ssl")
    }

    /// With `require_tls`: TLS on, with both the certificate chain and the broker's host
    /// name verified. The problem names the key to change.
    fn tls_problem(&self) -> Result<(), String> {
        if !self.require_tls {
            return Ok(());
        }
        let protocol = self.security_protocol();
        if !self.uses_tls() {
            return Err(format!(
                "kafka.require_tls: is true but kafka.client.\"security.protocol\" is \"{protocol}\", \
                 which sends patient data unencrypted; set it to \"ssl\" or \"sasl_ssl\" \
                 (or kafka.require_tls = false for a local test broker)"
            ));
        }
        let off = |key: &str, off_value: &str| {
            self.client
                .get(key)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(off_value))
        };
        if off("enable.ssl.certificate.verification", "false") {
            return Err(
                "kafka.client.\"enable.ssl.certificate.verification\": must not be false while \
                 kafka.require_tls is true (anyone could impersonate the broker)"
                    .to_owned(),
            );
        }
        if off("ssl.endpoint.identification.algorithm", "none") {
            return Err("kafka.client.\"ssl.endpoint.identification.algorithm\": must not be \"none\" while \
                 kafka.require_tls is true (the broker's certificate would not be checked against its host name)"
                .to_owned());
        }
        Ok(())
    }

    /// A warning for the log when patient data would cross a network unencrypted: no TLS
    /// and a broker that is not on this host.
    pub(crate) fn plaintext_warning(&self) -> Option<String> {
        if self.uses_tls() {
            return None;
        }
        let remote: Vec<&str> = self
            .bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && !is_loopback(broker_host(s)))
            .collect();
        (!remote.is_empty()).then(|| {
            format!(
                "kafka.client.\"security.protocol\" is \"{}\": patient data travels unencrypted to {}; \
                 use \"ssl\" or \"sasl_ssl\" and set kafka.require_tls = true (docs/security.md)",
                self.security_protocol(),
                remote.join(",")
            )
        })
    }

    /// Reads `sasl_password_file` into `client."sasl.password"`. The error names the key
    /// and the path, never the content.
    fn read_password_file(&mut self) -> anyhow::Result<()> {
        if self.sasl_password_file.as_os_str().is_empty() {
            return Ok(());
        }
        let path = self.sasl_password_file.display();
        if self.client.has("sasl.password") {
            bail!(
                "kafka.sasl_password_file ({path}) and kafka.client.\"sasl.password\" are both set; keep one"
            );
        }
        let text = std::fs::read_to_string(&self.sasl_password_file)
            .with_context(|| format!("kafka.sasl_password_file: cannot read {path}"))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            bail!("kafka.sasl_password_file: {path} is empty");
        }
        // A credential by name: ClientProps keeps it as a redacted Secret.
        self.client.insert("sasl.password", password);
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn valid_topic_name(t: &str) -> bool {
    (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `[kafka.client]` may be written flat (`"ssl.ca.location" = "..."`) or nested
/// (`ssl.ca.location = "..."`, which TOML reads as tables); both become dotted names.
fn flatten_client<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ClientProps, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Node {
        Str(String),
        Int(i64),
        Float(f64),
        Bool(bool),
        Table(BTreeMap<String, Node>),
    }
    fn walk(prefix: &str, node: Node, out: &mut ClientProps) {
        let value = match node {
            Node::Str(s) => s,
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Bool(b) => b.to_string(),
            Node::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
                return;
            }
        };
        out.insert(prefix.to_owned(), value);
    }
    let root = Option::<BTreeMap<String, Node>>::deserialize(d)?.unwrap_or_default();
    let mut out = ClientProps::default();
    walk("", Node::Table(root), &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_match_the_design() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(s.kafka.input_topic, "patient-data");
        assert_eq!(s.kafka.alert_topic, "patient-alerts");
        assert_eq!(s.kafka.dlq_topic, "patient-data-dlq");
        assert_eq!(s.pipeline.workers, 8);
        assert_eq!(s.pipeline.queue_capacity, 1024);
        assert_eq!(s.shutdown_timeout(), Duration::from_secs(25));
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(
            s.admin_listen().unwrap().unwrap().to_string(),
            "127.0.0.1:6060"
        );
        assert!(s.kafka.client.is_empty());
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
                ("VITALWATCH_PIPELINE__WORKERS", "3"),
                ("VITALWATCH_ADMIN__LISTEN", ""),
            ]),
        )
        .unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "127.0.0.1:19092");
        assert_eq!(s.pipeline.workers, 3);
        assert_eq!(s.admin_listen().unwrap(), None);
    }

    #[test]
    fn client_properties_from_the_environment_are_passed_verbatim() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("VITALWATCH_KAFKA__CLIENT__SASL_PASSWORD_LIKE", "0123"),
                ("VITALWATCH_KAFKA__CLIENT__OTHER", "1e3"),
            ]),
        )
        .unwrap();
        let exposed: BTreeMap<&str, &str> = s.kafka.client.expose().collect();
        assert_eq!(exposed["sasl_password_like"], "0123");
        assert_eq!(s.kafka.client.get("other"), Some("1e3"));
    }

    #[test]
    fn zero_workers_is_rejected_naming_the_key() {
        let err = Settings::load_with_env(None, env(&[("VITALWATCH_PIPELINE__WORKERS", "0")]))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("pipeline.workers"), "{msg}");
        assert!(msg.contains("between 1 and"), "{msg}");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        for (var, value, key) in [
            (
                "VITALWATCH_PIPELINE__QUEUE_CAPACITY",
                "0",
                "pipeline.queue_capacity",
            ),
            ("VITALWATCH_KAFKA__INPUT_TOPIC", "", "kafka.input_topic"),
            (
                "VITALWATCH_KAFKA__DLQ_TOPIC",
                "bad topic",
                "kafka.dlq_topic",
            ),
            ("VITALWATCH_LOG__FORMAT", "xml", "log.format"),
            (
                "VITALWATCH_HTTP__LISTEN",
                "nine-four-six-four",
                "http.listen",
            ),
            ("VITALWATCH_ADMIN__LISTEN", "localhost", "admin.listen"),
            ("VITALWATCH_PIPELINE__WORKERS", "many", "pipeline.workers"),
            (
                "VITALWATCH_PIPELINE__SHUTDOWN_TIMEOUT_SECS",
                "0",
                "pipeline.shutdown_timeout_secs",
            ),
        ] {
            let err = Settings::load_with_env(None, env(&[(var, value)])).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(key), "{var}={value}: {msg}");
        }
    }

    #[test]
    fn config_file_layers_over_defaults_and_flattens_client_properties() {
        let dir = std::env::temp_dir().join(format!("vw-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("site.toml");
        std::fs::write(
            &path,
            "[pipeline]\nworkers = 2\n[kafka.client]\nsecurity.protocol = \"ssl\"\n\"ssl.ca.location\" = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(Some(&path), env(&[])).unwrap();
        assert_eq!(s.pipeline.workers, 2);
        assert_eq!(s.pipeline.queue_capacity, 1024);
        assert_eq!(s.kafka.client.get("security.protocol"), Some("ssl"));
        assert_eq!(s.kafka.client.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    #[test]
    fn unknown_keys_and_managed_client_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("vw-settings-u-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let typo = dir.join("typo.toml");
        std::fs::write(&typo, "[pipeline]\nworker = 2\n").unwrap();
        let msg = format!(
            "{:#}",
            Settings::load_with_env(Some(&typo), env(&[])).unwrap_err()
        );
        assert!(msg.contains("worker"), "{msg}");

        let managed = dir.join("managed.toml");
        std::fs::write(
            &managed,
            "[kafka.client]\n\"enable.auto.offset.store\" = true\n",
        )
        .unwrap();
        let msg = format!(
            "{:#}",
            Settings::load_with_env(Some(&managed), env(&[])).unwrap_err()
        );
        assert!(msg.contains("enable.auto.offset.store"), "{msg}");

        let missing = dir.join("nope.toml");
        let msg = format!(
            "{:#}",
            Settings::load_with_env(Some(&missing), env(&[])).unwrap_err()
        );
        assert!(msg.contains("nope.toml"), "{msg}");
    }

    #[test]
    fn require_tls_refuses_plaintext_and_disabled_verification() {
        let tls = [
            ("VITALWATCH_KAFKA__REQUIRE_TLS", "true"),
            ("VITALWATCH_KAFKA__CLIENT__SECURITY__PROTOCOL", "SASL_SSL"),
        ];
        assert!(Settings::load_with_env(None, env(&tls)).is_ok());
        for protocol in ["plaintext", "SASL_PLAINTEXT"] {
            let err = Settings::load_with_env(
                None,
                env(&[
                    ("VITALWATCH_KAFKA__REQUIRE_TLS", "true"),
                    ("VITALWATCH_KAFKA__CLIENT__SECURITY__PROTOCOL", protocol),
                ]),
            )
            .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("kafka.require_tls"), "{msg}");
            assert!(msg.contains("security.protocol"), "{msg}");
        }
        let unset =
            Settings::load_with_env(None, env(&[("VITALWATCH_KAFKA__REQUIRE_TLS", "true")]));
        assert!(format!("{:#}", unset.unwrap_err()).contains("\"plaintext\""));
        for (var, value, key) in [
            (
                "VITALWATCH_KAFKA__CLIENT__ENABLE__SSL__CERTIFICATE__VERIFICATION",
                "false",
                "enable.ssl.certificate.verification",
            ),
            (
                "VITALWATCH_KAFKA__CLIENT__SSL__ENDPOINT__IDENTIFICATION__ALGORITHM",
                "none",
                "ssl.endpoint.identification.algorithm",
            ),
        ] {
            let mut vars = tls.to_vec();
            vars.push((var, value));
            let msg = format!(
                "{:#}",
                Settings::load_with_env(None, env(&vars)).unwrap_err()
            );
            assert!(msg.contains(key), "{msg}");
            // Without require_tls the same settings load (a test broker with a self-signed
            // certificate).
            assert!(Settings::load_with_env(None, env(&vars[1..])).is_ok());
        }
    }

    #[test]
    fn plaintext_to_a_remote_broker_is_warned_about() {
        let warning = |servers: &str, protocol: &str| {
            Settings::load_with_env(
                None,
                env(&[
                    ("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS", servers),
                    ("VITALWATCH_KAFKA__CLIENT__SECURITY__PROTOCOL", protocol),
                ]),
            )
            .unwrap()
            .kafka
            .plaintext_warning()
        };
        for local in [
            "localhost:9092",
            "127.0.0.1:9092,[::1]:9093",
            "PLAINTEXT://127.0.0.2:1",
        ] {
            assert_eq!(warning(local, "plaintext"), None, "{local}");
        }
        let w = warning("localhost:9092,kafka-1.ward:9092", "sasl_plaintext").unwrap();
        assert!(
            w.contains("kafka-1.ward:9092") && !w.contains("localhost"),
            "{w}"
        );
        assert_eq!(warning("kafka-1.ward:9092", "ssl"), None);
        assert_eq!(broker_host("[fe80::1]:9092"), "fe80::1");
        assert_eq!(broker_host("SSL://kafka:9093"), "kafka");
        assert_eq!(broker_host("::1"), "::1");
    }

    #[test]
    fn the_sasl_password_comes_from_a_file_and_never_shows() {
        let dir = std::env::temp_dir().join(format!("vw-settings-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "0123-MARKER\n").unwrap();
        let var = (
            "VITALWATCH_KAFKA__SASL_PASSWORD_FILE",
            file.to_str().unwrap(),
        );
        let s = Settings::load_with_env(None, env(&[var])).unwrap();
        let exposed: BTreeMap<&str, &str> = s.kafka.client.expose().collect();
        assert_eq!(exposed["sasl.password"], "0123-MARKER");
        let config = s.pipeline_config();
        for shown in [format!("{s:?}"), format!("{s:#?}"), format!("{config:?}")] {
            assert!(!shown.contains("MARKER"), "{shown}");
            assert!(shown.contains("sasl.password"), "{shown}");
        }
        // Also from the environment, equally redacted.
        let s = Settings::load_with_env(
            None,
            env(&[("VITALWATCH_KAFKA__CLIENT__SASL__PASSWORD", "env-MARKER")]),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("MARKER"));
        assert!(s.kafka.client.has("sasl.password"));

        let both = Settings::load_with_env(
            None,
            env(&[
                var,
                ("VITALWATCH_KAFKA__CLIENT__SASL__PASSWORD", "env-MARKER"),
            ]),
        );
        let msg = format!("{:#}", both.unwrap_err());
        assert!(msg.contains("both set") && !msg.contains("MARKER"), "{msg}");
        let missing = dir.join("absent");
        let msg = format!(
            "{:#}",
            Settings::load_with_env(
                None,
                env(&[(
                    "VITALWATCH_KAFKA__SASL_PASSWORD_FILE",
                    missing.to_str().unwrap()
                )])
            )
            .unwrap_err()
        );
        assert!(
            msg.contains("kafka.sasl_password_file") && msg.contains("absent"),
            "{msg}"
        );
        std::fs::write(&file, "\n").unwrap();
        let msg = format!(
            "{:#}",
            Settings::load_with_env(None, env(&[var])).unwrap_err()
        );
        assert!(msg.contains("is empty"), "{msg}");
    }
}
