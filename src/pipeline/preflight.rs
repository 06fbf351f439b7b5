//! The start-up check of the connection to the brokers and of the topics.
//!
//! A broker that is down at start is a condition vitalwatch waits out (librdkafka
//! retries; `/readyz` answers 503 meanwhile). A TLS handshake or SASL authentication
//! that fails is not: it is a configuration error that no retry fixes, and running on
//! with it would look like an outage. Nor is a topic that does not exist: a typo in
//! `kafka.alert_topic` would otherwise publish alerts nobody reads (vitalwatch never
//! creates topics). [`check`] connects with the consumer's settings, reads every topic's
//! metadata, and turns such a failure into a start-up error that says what to fix.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{info, warn};

use super::PipelineConfig;

/// How long the check goes on after every broker was reported down, for the error that
/// explains it (a failed TLS handshake is reported around the same moment).
const ALL_DOWN_GRACE: Duration = Duration::from_millis(1500);

/// How the check ended (when it did not fail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Metadata came back: connected, TLS and SASL (if configured) accepted.
    Connected {
        /// Each topic vitalwatch uses, by its config key, with its partition count (`None`
        /// when the brokers do not have it).
        topics: Vec<(&'static str, String, Option<usize>)>,
    },
    /// No answer within the time given, and no error that retrying cannot fix.
    Unreachable,
}

impl Outcome {
    /// The partition count of the topic of `key` (`kafka.input_topic`, ...).
    pub fn partitions(&self, key: &str) -> Option<usize> {
        match self {
            Outcome::Connected { topics } => topics
                .iter()
                .find(|(k, _, _)| *k == key)
                .and_then(|(_, _, p)| *p),
            Outcome::Unreachable => None,
        }
    }

    /// What is wrong with the topics, one problem each, naming the key and the topic.
    pub fn topic_problems(&self) -> Vec<String> {
        let Outcome::Connected { topics } = self else {
            return Vec::new();
        };
        let mut problems: Vec<String> = topics
            .iter()
            .filter(|(_, _, p)| p.is_none())
            .map(|(key, name, _)| {
                format!(
                    "{key}: topic \"{name}\" does not exist on the brokers (vitalwatch never creates topics: create it, or correct the name)"
                )
            })
            .collect();
        if let (Some(input), Some(repartition)) = (
            self.partitions("kafka.input_topic"),
            self.partitions("kafka.repartition_topic"),
        ) && input != repartition
        {
            problems.push(format!(
                "kafka.repartition_topic: has {repartition} partitions but kafka.input_topic has {input}; \
                 give it as many (a patient's home partition is the same number in both)"
            ));
        }
        if let (Some(input), Some(state)) = (
            self.partitions("kafka.input_topic"),
            self.partitions("kafka.state_topic"),
        ) && input != state
        {
            problems.push(format!(
                "kafka.state_topic: has {state} partitions but kafka.input_topic has {input}; \
                 give it as many (a patient's state is kept in the partition of the same number)"
            ));
        }
        if let (Some(input), Some(context)) = (
            self.partitions("kafka.input_topic"),
            self.partitions("kafka.context_topic"),
        ) && input != context
        {
            problems.push(format!(
                "kafka.context_topic: has {context} partitions but kafka.input_topic has {input}; \
                 give it as many (a patient's context is read with the input partition of the same number)"
            ));
        }
        problems
    }
}

/// Records the first TLS or authentication error librdkafka reports, and whether every
/// broker is down (nothing to wait for).
#[derive(Default)]
struct Probe {
    fatal: Mutex<Option<(RDKafkaErrorCode, String)>>,
    all_down: std::sync::atomic::AtomicBool,
}

impl ClientContext for Probe {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = match error {
            KafkaError::Global(code) => code,
            _ => return,
        };
        if code == RDKafkaErrorCode::AllBrokersDown {
            self.all_down
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let fatal = match code {
            RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed => code,
            // A TLS client on a plaintext port: librdkafka files it under transport
            // errors, but it is the same kind of mistake.
            RDKafkaErrorCode::BrokerTransportFailure
                if reason.contains("PLAINTEXT broker listener") =>
            {
                RDKafkaErrorCode::SSL
            }
            _ => return,
        };
        if let Ok(mut first) = self.fatal.lock() {
            first.get_or_insert_with(|| (fatal, reason.to_owned()));
        }
    }
}

impl ConsumerContext for Probe {}

/// Connects to the brokers with the consumer's settings and fetches the metadata of
/// every topic vitalwatch uses, for at most `wait` (less when every broker refuses the
/// connection). Blocking: call it from `spawn_blocking`.
///
/// Errors on a failed TLS handshake (untrusted certificate, host name mismatch) or a
/// refused SASL login, naming the brokers and the settings to check. Missing topics are
/// not errors here ([`Outcome::topic_problems`]).
pub fn check(config: &PipelineConfig, wait: Duration) -> anyhow::Result<Outcome> {
    let client: BaseConsumer<Probe> = config
        .consumer_config()
        .create_with_context(Probe::default())
        .map_err(|e| anyhow::anyhow!("cannot create the Kafka client: {e}"))?;
    let mut deadline = Instant::now() + wait;
    loop {
        // Serves librdkafka's error events into Probe::error.
        let _ = client.poll(Duration::from_millis(50));
        if let Some(failure) = take_fatal(client.context()) {
            return Err(explain(config, failure));
        }
        // Every broker down: nothing to wait for, but a TLS or login failure that caused
        // it may be reported just after; give it a moment to arrive.
        if client
            .context()
            .all_down
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            deadline = deadline.min(Instant::now() + ALL_DOWN_GRACE);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Outcome::Unreachable);
        }
        let attempt = left.min(Duration::from_millis(500));
        if client
            .fetch_metadata(Some(&config.input_topic), attempt)
            .is_ok()
        {
            let _ = client.poll(Duration::ZERO);
            if let Some(failure) = take_fatal(client.context()) {
                return Err(explain(config, failure));
            }
            let mut topics = Vec::new();
            for (key, name) in config.topics() {
                let partitions = client
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()
                    .and_then(|md| {
                        md.topics()
                            .iter()
                            .find(|t| t.name() == name && t.error().is_none())
                            .map(|t| t.partitions().len())
                    })
                    .filter(|&n| n > 0);
                topics.push((key, name.to_owned(), partitions));
            }
            return Ok(Outcome::Connected { topics });
        }
    }
}

/// [`check`], logged: `Ok` when vitalwatch should go on starting; an error for a TLS or
/// login failure and for a missing topic.
pub(crate) fn check_and_log(config: &PipelineConfig, wait: Duration) -> anyhow::Result<()> {
    let outcome = check(config, wait)?;
    match &outcome {
        Outcome::Connected { .. } => {
            let problems = outcome.topic_problems();
            if !problems.is_empty() {
                anyhow::bail!(
                    "the brokers at {} are missing what vitalwatch needs: {}",
                    config.bootstrap_servers,
                    problems.join("; ")
                );
            }
            info!(
                brokers = %config.bootstrap_servers,
                input = %config.input_topic,
                input_partitions = outcome.partitions("kafka.input_topic").unwrap_or(0),
                topics = "all exist",
                "connected to the brokers"
            );
        }
        Outcome::Unreachable => warn!(
            brokers = %config.bootstrap_servers,
            wait_secs = wait.as_secs(),
            "no broker answered yet; starting anyway and retrying (/readyz answers 503 until the group assigns partitions); the topics are not checked"
        ),
    }
    Ok(())
}

fn take_fatal(probe: &Probe) -> Option<(RDKafkaErrorCode, String)> {
    probe.fatal.lock().ok().and_then(|mut f| f.take())
}

fn explain(config: &PipelineConfig, (code, reason): (RDKafkaErrorCode, String)) -> anyhow::Error {
    let brokers = &config.bootstrap_servers;
    if code == RDKafkaErrorCode::SSL
        && let Some(diagnosis) = diagnose_certificate(config)
    {
        return anyhow::anyhow!(
            "cannot connect to the Kafka brokers {brokers}: {diagnosis} (librdkafka: {reason})"
        );
    }
    let hint = match code {
        RDKafkaErrorCode::SSL if reason.contains("verify") || reason.contains("certificate") => {
            "the broker's certificate was not accepted: check that kafka.client.\"ssl.ca.location\" \
             is the CA that signed it, and that the certificate names the host used in \
             kafka.bootstrap_servers (and the hosts the brokers advertise)"
        }
        RDKafkaErrorCode::SSL => {
            "the TLS handshake failed: check that the broker's port speaks TLS, and \
             kafka.client \"ssl.*\" settings (CA, client certificate and key)"
        }
        _ => {
            "the brokers refused the login: check kafka.client.\"sasl.mechanism\" and \
             \"sasl.username\", and the password (kafka.sasl_password_file or \
             VITALWATCH_KAFKA__CLIENT__SASL__PASSWORD)"
        }
    };
    anyhow::anyhow!("cannot connect to the Kafka brokers {brokers}: {reason}; {hint}")
}

/// Why the first broker's certificate is refused, found with a TLS handshake of our own
/// against the same CA: an untrusted chain, or a certificate for another host. `None`
/// when the handshake does not tell (then librdkafka's message stands alone).
fn diagnose_certificate(config: &PipelineConfig) -> Option<String> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    use openssl::x509::X509VerifyResult;

    let props: std::collections::BTreeMap<&str, &str> = config.client.expose().collect();
    let ca = props.get("ssl.ca.location").copied();
    let server = config.bootstrap_servers.split(',').next()?.trim();
    let server = server.rsplit_once("://").map_or(server, |(_, s)| s);
    let host = crate::pipeline::broker_host(server);

    // verify: None = accept any certificate (to read its names), Some(check_host).
    let handshake = |verify: Option<bool>| -> Option<(X509VerifyResult, Vec<String>)> {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).ok()?;
        match ca {
            Some(path) if path != "probe" => builder.set_ca_file(path).ok()?,
            // As librdkafka's "probe": the vendored OpenSSL's own default paths point
            // into its build directory.
            _ => match SYSTEM_CA_FILES
                .iter()
                .find(|f| std::path::Path::new(f).is_file())
            {
                Some(file) => builder.set_ca_file(file).ok()?,
                None => builder.set_default_verify_paths().ok()?,
            },
        }
        builder.set_verify(match verify {
            Some(_) => SslVerifyMode::PEER,
            None => SslVerifyMode::NONE,
        });
        let mut ssl = builder.build().configure().ok()?;
        ssl.set_verify_hostname(verify == Some(true));
        let tcp = std::net::TcpStream::connect(server).ok()?;
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        let (result, cert) = match ssl.connect(host, tcp) {
            Ok(stream) => (X509VerifyResult::OK, stream.ssl().peer_certificate()),
            Err(openssl::ssl::HandshakeError::Failure(mid)) => {
                (mid.ssl().verify_result(), mid.ssl().peer_certificate())
            }
            Err(_) => return None,
        };
        Some((
            result,
            cert.map(|c| certificate_names(&c)).unwrap_or_default(),
        ))
    };

    let trusted = match ca.filter(|c| *c != "probe") {
        Some(path) => format!("kafka.client.\"ssl.ca.location\" = {path}"),
        None => {
            "the system's CA certificates (kafka.client.\"ssl.ca.location\" is not set)".to_owned()
        }
    };
    let (chain, _) = handshake(Some(false))?;
    if chain != X509VerifyResult::OK {
        return Some(format!(
            "the broker's certificate is not trusted: {} (checked against {trusted}; \
             point ssl.ca.location at the CA that signed the broker's certificate)",
            chain.error_string()
        ));
    }
    let (name, _) = handshake(Some(true))?;
    if name == X509VerifyResult::OK {
        return None;
    }
    let names = handshake(None).map(|(_, names)| names).unwrap_or_default();
    Some(format!(
        "the broker's certificate is signed by a trusted CA but is not for host \"{host}\" \
         ({}; it is for {}): connect by a name the certificate holds (kafka.bootstrap_servers \
         and the brokers' advertised listeners), or reissue the certificate",
        name.error_string(),
        if names.is_empty() {
            "no host name".to_owned()
        } else {
            names.join(", ")
        },
    ))
}

/// Where Linux distributions keep their CA bundle.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// The DNS names and IP addresses a certificate is for (its subject alternative names,
/// or its common name when it has none).
fn certificate_names(cert: &openssl::x509::X509Ref) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| {
                    n.dnsname().map(str::to_owned).or_else(|| {
                        n.ipaddress().and_then(|ip| match ip.len() {
                            4 => <[u8; 4]>::try_from(ip)
                                .ok()
                                .map(|b| std::net::IpAddr::from(b).to_string()),
                            16 => <[u8; 16]>::try_from(ip)
                                .ok()
                                .map(|b| std::net::IpAddr::from(b).to_string()),
                            _ => None,
                        })
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            cert.subject_name()
                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                .filter_map(|e| e.data().to_string().ok()),
        );
    }
    names
}
