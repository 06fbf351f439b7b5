//! Scenario 7: security. A local CA and certificates made with the `openssl` CLI, a
//! nisshi broker whose listener speaks only TLS (`--cert`/`--key`) and requires SASL
//! logins (`--authentication`, a SCRAM-SHA-512 user), and vitalwatch with
//! `kafka.require_tls = true` and its password in a file:
//!
//! - the right settings process a known input through TLS and SASL exactly (oracle,
//!   committed to the end) and stop cleanly on SIGTERM;
//! - a CA that did not sign the broker's certificate, a host name the certificate does
//!   not hold, and a wrong password each stop `vitalwatch run` at start-up, within a
//!   deadline, with exit code 1 and a message that says which;
//! - `require_tls` with a plaintext `security.protocol` is refused by `run` and by
//!   `check-config` before any broker is contacted;
//! - the password (and the wrong one) appears in no output of any vitalwatch process.
//!
//! nisshi's own `user create` and `topic create` speak plaintext only, so the broker
//! (sqlite storage, port `VW_E2E_TLS_PORT`, default 19094) first starts in plaintext to
//! create the user and the topics, and then restarts on the same port and data with TLS
//! and authentication. Its certificate names `DNS:localhost` only and it advertises
//! `localhost`, so bootstrapping through `127.0.0.1` is the host-name mismatch.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vitalwatch::clock::now_ms;

use crate::broker::OwnBroker;
use crate::kafka::{Client, Feeder, Topics};
use crate::process::{self, Exited, Vitalwatch, repo_root, run_to_exit};
use crate::summary::Scenario;
use crate::wait::wait_for;
use crate::{LONG, SHUTDOWN_TIMEOUT_SECS, client_var, service_env};

/// The SCRAM user vitalwatch logs in as.
const USER: &str = "vitalwatch-e2e";
/// Its password: a marker that must never show in any vitalwatch output.
const PASSWORD: &str = "vw-e2e-S3cret-7c41f0d9";
/// A wrong password, given through `VITALWATCH_KAFKA__CLIENT__SASL__PASSWORD`: also a
/// marker that must never show.
const WRONG_PASSWORD: &str = "vw-e2e-Wr0ng-2b96de13";
/// A start-up that must fail has this long to exit (a deadline, not a measurement; the
/// start-up check itself gives up waiting for a broker after 10 s).
const FAIL_DEADLINE: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 3;
/// The known input of the happy path.
const MESSAGES: usize = 600;

/// The scenario's files: certificates, keys and the password file.
struct Pki {
    ca: PathBuf,
    wrong_ca: PathBuf,
    broker_cert: PathBuf,
    broker_key: PathBuf,
    password_file: PathBuf,
}

/// Runs the `openssl` CLI in `dir`; a missing CLI fails the test with what to install.
fn openssl(dir: &Path, args: &[&str]) {
    let out = match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the openssl CLI is missing; the security scenario makes its certificates with it: \
             scripts/ensure-build-deps.sh e2e installs it (apt-get install openssl)"
        ),
        Err(e) => panic!("cannot run openssl: {e}"),
    };
    assert!(
        out.status.success(),
        "openssl {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA (EC P-256, valid 2 days): `<name>.crt` and `<name>.key`.
fn make_ca(dir: &Path, name: &str, subject: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.crt"))
}

/// A fresh `target/e2e/security/` with a CA, an unrelated second CA, a broker
/// certificate from the first for `DNS:localhost` only, and the password file.
fn make_pki() -> Pki {
    let dir = repo_root().join("target/e2e/security");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("security dir");
    let ca = make_ca(&dir, "ca", "/CN=vitalwatch e2e CA");
    let wrong_ca = make_ca(&dir, "wrong-ca", "/CN=some other CA");
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "broker.key",
            "-out",
            "broker.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("broker.ext"),
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:localhost\n",
    )
    .expect("broker.ext");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "broker.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "broker.crt",
            "-days",
            "2",
            "-extfile",
            "broker.ext",
        ],
    );
    // As a secret manager mounts it: one line with a trailing newline (ignored).
    let password_file = dir.join("sasl-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    Pki {
        ca,
        wrong_ca,
        broker_cert: dir.join("broker.crt"),
        broker_key: dir.join("broker.key"),
        password_file,
    }
}

/// The scenario's broker: started in plaintext on fresh data, given the SCRAM user and
/// the scenario's topics, and restarted on the same port and data with TLS and
/// authentication.
fn start_secure(port: &str, pki: &Pki) -> (OwnBroker, Topics) {
    let b = OwnBroker::start(port);
    b.script(
        &["add-user", USER, &pki.password_file.display().to_string()],
        &[],
    );
    let topics = Topics::create(format!("127.0.0.1:{port}").as_str(), "security", PARTITIONS);
    b.script(&["stop"], &[]);
    b.script(
        &["start"],
        &[
            ("AUTH", Path::new("1")),
            ("TLS_CERT", &pki.broker_cert),
            ("TLS_KEY", &pki.broker_key),
            ("ADVERTISED_HOST", Path::new("localhost")),
        ],
    );
    (b, topics)
}

/// The librdkafka properties of a TLS + SCRAM-SHA-512 client trusting `ca` (the
/// password is not among them). IPv4 only: the broker listens on 127.0.0.1, and
/// `localhost` may resolve to ::1 first.
fn secure_props(ca: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("broker.address.family", "v4".to_owned()),
        ("security.protocol", "sasl_ssl".to_owned()),
        ("ssl.ca.location", ca.display().to_string()),
        ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
        ("sasl.username", USER.to_owned()),
    ]
}

/// Sets `key` in `env`, replacing an earlier value.
fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

/// Neither password shows anywhere in `output`.
fn assert_no_secret(what: &str, output: &str) {
    for marker in [PASSWORD, WRONG_PASSWORD] {
        assert!(
            !output.contains(marker),
            "{what}: the SASL password {marker:?} appears in its output:\n{output}"
        );
    }
}

/// A start-up that must fail: exit code 1 within [`FAIL_DEADLINE`], every one of
/// `clear` in stderr, no password anywhere.
fn assert_refused(sc: &Scenario, case: &str, exited: &Exited, clear: &[&str]) {
    assert_eq!(
        exited.status.code(),
        Some(1),
        "{case}: exit code; log {}; stderr:\n{}",
        exited.log.display(),
        exited.stderr
    );
    for part in clear {
        assert!(
            exited.stderr.contains(part),
            "{case}: stderr does not say {part:?} (log {}):\n{}",
            exited.log.display(),
            exited.stderr
        );
    }
    assert_no_secret(case, &exited.output());
    let error = exited
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    sc.step(format!("{case}: exit 1 after {:.2?}: {error}", exited.took));
}

/// The known input: 600 messages over 3 partitions and 40 patients; every 10th a red
/// flag, every 25th malformed (wrong type or not JSON).
fn feed(topics: &Topics) {
    let feeder = Feeder::new(&topics.client, &topics.input);
    let now = now_ms();
    for i in 0..MESSAGES {
        let patient = format!("P-SEC-{:03}", i % 40);
        let ts = now - (MESSAGES - i) as i64;
        let payload = if i % 25 == 7 {
            if i % 2 == 0 {
                "not json at all".to_owned()
            } else {
                format!(
                    r#"{{"patientId":"{patient}","metric":"heart_rate","value":"fast","timestamp":{ts}}}"#
                )
            }
        } else if i % 10 == 3 {
            format!(
                r#"{{"patientId":"{patient}","metric":"heart_rate","value":150.0,"timestamp":{ts}}}"#
            )
        } else {
            format!(r#"{{"patientId":"{patient}","metric":"spo2","value":97.0,"timestamp":{ts}}}"#)
        };
        feeder.send(
            (i % PARTITIONS as usize) as i32,
            Some(patient.as_bytes()),
            Some(payload.as_bytes()),
        );
    }
    feeder.finish();
}

#[test]
#[ignore = "needs the nisshi broker and the openssl CLI: scripts/e2e.sh"]
fn security_tls_and_sasl_scram_process_everything_and_bad_certificate_host_or_password_fail_at_start()
 {
    let mut sc = Scenario::begin("security");
    let pki = make_pki();
    let port = std::env::var("VW_E2E_TLS_PORT").unwrap_or_else(|_| "19094".to_owned());
    let (broker, topics) = start_secure(&port, &pki);
    let secure = format!("localhost:{}", broker.port);
    let mut client = Client::new(&secure).with("sasl.password", PASSWORD);
    for (k, v) in secure_props(&pki.ca) {
        client = client.with(k, &v);
    }
    let topics = topics.reached_by(client);
    let logs = process::log_dir("security");
    sc.step(format!(
        "certificates in target/e2e/security (CA, wrong CA, broker for DNS:localhost); \
         broker on {secure} with TLS and SCRAM-SHA-512 user {USER}"
    ));

    // The settings of every case: TLS required and verified, SCRAM, password from a file.
    let mut env = service_env(&topics, &secure_props(&pki.ca));
    set(&mut env, "VITALWATCH_KAFKA__REQUIRE_TLS", "true");
    set(
        &mut env,
        "VITALWATCH_KAFKA__SASL_PASSWORD_FILE",
        &pki.password_file.display().to_string(),
    );

    let checked = run_to_exit(
        &["check-config"],
        &env,
        &logs,
        "check-config",
        FAIL_DEADLINE,
    );
    assert!(
        checked.status.success(),
        "check-config of the good settings: {}\n{}",
        checked.status,
        checked.output()
    );
    assert!(
        checked.stdout.contains("sasl_ssl, TLS required"),
        "check-config names the protocol and require_tls: {}",
        checked.stdout
    );
    assert_no_secret("check-config", &checked.output());
    sc.step(format!("check-config: {}", checked.stdout.trim()));

    // b. A CA that did not sign the broker's certificate.
    let mut wrong_ca = env.clone();
    set(
        &mut wrong_ca,
        &client_var("ssl.ca.location"),
        &pki.wrong_ca.display().to_string(),
    );
    let exited = run_to_exit(&["run"], &wrong_ca, &logs, "wrong-ca", FAIL_DEADLINE);
    assert_refused(
        &sc,
        "wrong CA",
        &exited,
        &["the broker's certificate is not trusted", "wrong-ca.crt"],
    );
    let took_wrong_ca = exited.took;

    // c. A host name the certificate does not hold: 127.0.0.1 (it is for localhost).
    let mut mismatch = env.clone();
    set(
        &mut mismatch,
        "VITALWATCH_KAFKA__BOOTSTRAP_SERVERS",
        &format!("127.0.0.1:{}", broker.port),
    );
    let exited = run_to_exit(&["run"], &mismatch, &logs, "host-mismatch", FAIL_DEADLINE);
    assert_refused(
        &sc,
        "host mismatch",
        &exited,
        &["is not for host \"127.0.0.1\"", "it is for localhost"],
    );
    let took_mismatch = exited.took;

    // d. A wrong password, this time through the environment instead of the file.
    let mut wrong_password = env.clone();
    set(
        &mut wrong_password,
        "VITALWATCH_KAFKA__SASL_PASSWORD_FILE",
        "",
    );
    set(
        &mut wrong_password,
        &client_var("sasl.password"),
        WRONG_PASSWORD,
    );
    let exited = run_to_exit(
        &["run"],
        &wrong_password,
        &logs,
        "wrong-password",
        FAIL_DEADLINE,
    );
    assert_refused(
        &sc,
        "wrong password",
        &exited,
        &["SASL authentication", "the brokers refused the login"],
    );
    let took_password = exited.took;

    // a. The right settings: a known input, processed exactly, through TLS and SASL.
    let mut vw = Vitalwatch::start("vw", &env, &logs);
    vw.wait_ready(LONG);
    let connected = vw.events("connected to the brokers");
    assert_eq!(
        connected.len(),
        1,
        "the start-up check connected: {}",
        vw.tail(20)
    );
    sc.step(format!(
        "vitalwatch ready over TLS + SASL: {}",
        connected[0]
    ));
    feed(&topics);
    sc.step(format!("{MESSAGES} messages produced over TLS + SASL"));
    let committed = topics.wait_committed_to_end(LONG);
    sc.step(format!("committed to the end: {committed:?}"));
    let (status, took) = vw.terminate(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 10));
    assert!(status.success(), "{status}\n{}", vw.tail(20));
    sc.step(format!("stopped by SIGTERM in {took:.2?}"));
    wait_for(
        Duration::from_secs(10),
        "the service's output read to its end",
        || {
            // The output pipes close at exit; the tee threads catch up right after.
            if vw.lines().iter().any(|l| l.contains("listeners stopped")) {
                Ok(())
            } else {
                Err(vw.tail(3))
            }
        },
    );
    assert_no_secret("vitalwatch run", &vw.lines().join("\n"));

    let (expected, tally) = crate::check_outputs(&topics);
    sc.messages = Some(expected.messages);
    sc.lost = Some(tally.lost());
    sc.duplicates = Some(tally.duplicates());
    println!("{tally}");
    assert_eq!(expected.messages, MESSAGES, "the input as stored");
    assert!(
        !expected.alerts.is_empty() && !expected.dlq.is_empty(),
        "the input raises alerts and dead letters: {tally}"
    );
    tally.assert_exact();
    sc.note(format!(
        "TLS (own CA, EC P-256) + SCRAM-SHA-512, require_tls, password file; {} alerts + {} dead letters exact; \
         refused at start: wrong CA {:.1} s, host mismatch {:.1} s, wrong password {:.1} s; password in no output",
        expected.alerts.len(),
        expected.dlq.len(),
        took_wrong_ca.as_secs_f64(),
        took_mismatch.as_secs_f64(),
        took_password.as_secs_f64(),
    ));
}

#[test]
#[ignore = "part of the end-to-end suite: scripts/e2e.sh"]
fn security_require_tls_refuses_plaintext_in_run_and_check_config() {
    let mut sc = Scenario::begin("security-require-tls");
    let logs = process::log_dir("security-require-tls");
    // No broker is contacted: the settings are refused first. The address is a
    // placeholder nothing listens on.
    let mut env = vec![
        (
            "VITALWATCH_KAFKA__BOOTSTRAP_SERVERS".to_owned(),
            "127.0.0.1:9".to_owned(),
        ),
        (
            "VITALWATCH_KAFKA__REQUIRE_TLS".to_owned(),
            "true".to_owned(),
        ),
    ];
    for (k, v) in [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", PASSWORD),
    ] {
        env.push((client_var(k), v.to_owned()));
    }
    let clear = [
        "kafka.require_tls",
        "\"sasl_plaintext\"",
        "sends patient data unencrypted",
    ];
    let mut took = Vec::new();
    for (args, name) in [
        (&["run"][..], "run"),
        (&["check-config"][..], "check-config"),
    ] {
        let exited = run_to_exit(args, &env, &logs, name, FAIL_DEADLINE);
        assert_refused(&sc, &format!("{name} with sasl_plaintext"), &exited, &clear);
        assert!(
            !exited.stdout.contains("configuration ok"),
            "{name}: {}",
            exited.stdout
        );
        took.push(format!("{name} {:.2} s", exited.took.as_secs_f64()));
    }
    sc.note(format!(
        "require_tls with sasl_plaintext refused by {}; password in no output",
        took.join(", ")
    ));
}
