//! The subcommands: settings → telemetry → the work → an exit code.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{CheckConfigArgs, Cli, Command};
use crate::pipeline::{self, Hooks, Status};
use crate::rules::RuleSet;
use crate::rules::live::{LiveRules, Reloader};
use crate::settings::Settings;
use crate::signals::Signals;
use crate::telemetry;

/// How long start-up waits for a first answer from the brokers before going on without
/// one (a TLS or login failure ends the wait at once).
const PREFLIGHT_WAIT: Duration = Duration::from_secs(10);
/// How long `check-config` waits for the brokers before it checks offline only.
const CHECK_CONFIG_WAIT: Duration = Duration::from_secs(5);

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig(args) => report(check_config(&args)),
        Command::Healthcheck(args) => report(healthcheck(args.config.as_deref())),
        Command::Run(args) => report(run_service(args.config.as_deref())),
        #[cfg(feature = "tools")]
        Command::Tool(command) => crate::tools::main(command),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Settings and rules, validated, or the first problem found: everything `run` checks
/// before it connects (`check-config` runs exactly this).
pub(crate) fn load(config: Option<&Path>) -> anyhow::Result<(Settings, RuleSet)> {
    let settings = Settings::load(config)?;
    let rules = RuleSet::load(&settings.rules.file).map_err(|e| {
        if e.line.is_none() && !settings.rules.file.is_file() {
            anyhow::anyhow!("{e}\n  {}", settings.rules_file_hint())
        } else {
            anyhow::anyhow!("{e}")
        }
    })?;
    settings
        .check_rules(&rules)
        .map_err(|e| anyhow::anyhow!("rules file {}: {e}", settings.rules.file.display()))?;
    // What librdkafka would refuse when the clients are created, without connecting.
    settings.check_clients().context("invalid configuration")?;
    Ok((settings, rules))
}

fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let (settings, rules) = load(args.config.as_deref())?;
    for warning in &settings.origin.warnings {
        eprintln!("warning: {warning}");
    }
    if args.print {
        print!("{}", settings.to_toml()?);
        return Ok(());
    }
    // The brokers, when they answer: what run would refuse at start-up (a TLS or login
    // failure, a missing topic). Offline checks only when they do not.
    let brokers = if args.offline {
        "not contacted (--offline)".to_owned()
    } else {
        let config = settings.pipeline_config();
        let outcome = pipeline::preflight::check(&config, CHECK_CONFIG_WAIT)?;
        match &outcome {
            pipeline::preflight::Outcome::Connected { topics } => {
                let problems = outcome.topic_problems();
                if !problems.is_empty() {
                    anyhow::bail!(
                        "the brokers at {} are missing what vitalwatch needs: {}",
                        settings.kafka.bootstrap_servers,
                        problems.join("; ")
                    );
                }
                let listed: Vec<String> = topics
                    .iter()
                    .map(|(_, name, p)| format!("{name} ({})", p.unwrap_or(0)))
                    .collect();
                format!("reachable; topics exist: {}", listed.join(", "))
            }
            pipeline::preflight::Outcome::Unreachable => format!(
                "no broker answered within {} s; topics not checked (run checks them when it starts)",
                CHECK_CONFIG_WAIT.as_secs()
            ),
        }
    };
    println!("brokers {}: {brokers}", settings.kafka.bootstrap_servers);
    println!(
        "configuration ok: {} rules{} from {}; brokers {} ({}{}), input {}, group {}, {} workers",
        rules.len(),
        if rules.news2().is_some() {
            " and the NEWS2 score"
        } else {
            ""
        },
        settings.rules.file.display(),
        settings.kafka.bootstrap_servers,
        settings.kafka.security_protocol(),
        if settings.kafka.require_tls {
            ", TLS required"
        } else {
            ""
        },
        settings.kafka.input_topic,
        settings.kafka.group_id,
        settings.pipeline.workers,
    );
    Ok(())
}

fn run_service(config: Option<&Path>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vw-worker")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        // First: a signal must never find the process without its handler.
        let signals = Signals::install();
        let shutdown = signals.shutdown();
        let (settings, rules) = load(config)?;
        telemetry::init(
            settings.log.format,
            &settings.log.filter().unwrap_or_else(|_| "info".into()),
        );
        info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %settings.origin.describe(),
            rules_file = %settings.rules.file.display(),
            threshold_rules = rules.len(),
            news2 = rules.news2().is_some(),
            "vitalwatch starting"
        );
        for warning in &settings.origin.warnings {
            warn!("{warning}");
        }
        if let Some(warning) = settings.kafka.plaintext_warning() {
            warn!("{warning}");
        }
        // The listeners outlive the pipeline: the drain shows in /metrics and /readyz
        // answers 503 while it runs. They stop once the pipeline has returned.
        let listeners = CancellationToken::new();
        let _stop_listeners = listeners.clone().drop_guard();
        let status = Status::new();
        let addr =
            crate::http::spawn(settings.http_listen()?, status.clone(), listeners.clone()).await?;
        info!(%addr, "serving /metrics /healthz /readyz");
        match settings.admin_listen()? {
            Some(listen) => {
                let addr = crate::admin::spawn(listen, listeners.clone()).await?;
                info!(%addr, "serving /debug/pprof/profile and /debug/pprof/flamegraph");
            }
            None => info!("admin listener disabled (admin.listen is empty)"),
        }
        let pipeline_config = settings.pipeline_config();
        // A TLS or SASL misconfiguration stops the start here, with what to fix.
        let probe_config = pipeline_config.clone();
        let preflight = tokio::task::spawn_blocking(move || {
            pipeline::preflight::check_and_log(&probe_config, PREFLIGHT_WAIT)
        });
        // A SIGTERM while the brokers are being waited for stops at once: nothing was
        // read, nothing needs draining.
        tokio::select! {
            checked = preflight => checked.context("the broker connection check panicked")??,
            () = shutdown.cancelled() => {
                info!("shutdown during start-up: nothing was read, nothing to drain");
                return Ok(());
            }
        }
        let rules = LiveRules::new(Arc::new(rules));
        crate::metrics::install()?;
        crate::metrics::rules_loaded(rules.load().rule_count());
        let settings_for_check = settings.clone();
        let reloader = Reloader::new(
            &settings.rules.file,
            rules.clone(),
            Box::new(move |r| settings_for_check.check_rules(r)),
        );
        let poll = (settings.rules.reload_interval_secs > 0)
            .then(|| Duration::from_secs(settings.rules.reload_interval_secs));
        reloader.spawn(poll, signals.hangups(), listeners.clone());
        let report = pipeline::run(
            pipeline_config,
            rules,
            status,
            shutdown,
            Hooks::default(),
        )
        .await?;
        listeners.cancel();
        info!(clean = report.clean, "shutdown: listeners stopped");
        if report.clean {
            Ok(())
        } else {
            anyhow::bail!(
                "shutdown did not finish within pipeline.shutdown_timeout_secs = {}; unfinished messages were left uncommitted",
                settings.pipeline.shutdown_timeout_secs
            )
        }
    });
    // A profile being symbolized or a slow scrape must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// `GET /healthz` on this host's `http.listen` port, with the settings `run` would use:
/// the container image's health check.
fn healthcheck(config: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::load(config)?;
    let listen = settings.http_listen()?;
    // A wildcard listen address is reached on loopback; a specific one only at itself.
    let addr = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    match crate::http::get(addr, "/healthz", HEALTHCHECK_TIMEOUT) {
        Ok(r) if r.status == 200 => {
            println!("healthz {addr}: {}", r.text().trim());
            Ok(())
        }
        Ok(r) => anyhow::bail!("healthz {addr}: HTTP {}: {}", r.status, r.text().trim()),
        Err(e) => anyhow::bail!("healthz {addr}: {e:#}"),
    }
}

/// Bound on the health check's connection and answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);
