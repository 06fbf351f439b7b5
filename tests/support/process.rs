//! The binary under test as a process: `vitalwatch run` (configured only through
//! `VITALWATCH_*` variables) with its log and its HTTP listener, runs that must end on
//! their own (a start-up that must fail, `check-config`), any other subcommand, and a
//! temporary directory for the files they read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::http::{Scrape, get_text, scrape};
use super::wait::wait_for;

/// The binary under test: `VW_E2E_BIN`, or the one cargo built for this test profile
/// (`target/release/vitalwatch` under `cargo test --release`).
pub fn binary() -> PathBuf {
    std::env::var_os("VW_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vitalwatch")))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/e2e/logs/<scenario>/`, emptied: the end-to-end suite's logs.
pub fn log_dir(scenario: &str) -> PathBuf {
    log_dir_in("e2e", scenario)
}

/// `target/<area>/logs/<scenario>/`, emptied.
pub fn log_dir_in(area: &str, scenario: &str) -> PathBuf {
    let dir = repo_root()
        .join("target")
        .join(area)
        .join("logs")
        .join(scenario);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// `vitalwatch <args>` from the crate root, with no `VITALWATCH_*` or `RUST_LOG`
/// inherited from the test's environment.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args).current_dir(repo_root());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("VITALWATCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `vitalwatch <args>` with the suite's own settings (loopback HTTP on a port the OS
/// picks, no admin listener, JSON logs at info), then `env` on top.
fn service_command(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = command(args);
    cmd.env("VITALWATCH_HTTP__LISTEN", "127.0.0.1:0")
        .env("VITALWATCH_ADMIN__LISTEN", "")
        .env("VITALWATCH_LOG__FORMAT", "json")
        .env("VITALWATCH_LOG__LEVEL", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Copies a child's output into its log file line by line, keeps the lines, and reports
/// the address of the HTTP listener when the service logs it.
fn tee(
    out: impl Read + Send + 'static,
    file: Arc<Mutex<File>>,
    lines: Arc<Mutex<Vec<String>>>,
    addr_tx: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
            if let Some(tx) = &addr_tx
                && let Some(addr) = listener_addr(&line)
            {
                let _ = tx.send(addr);
            }
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
        }
    });
}

/// A child's output, line by line, on a channel that closes when the output does.
pub fn line_channel(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The address in the `serving /metrics /healthz /readyz` event (JSON log format).
fn listener_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "serving /metrics /healthz /readyz" {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

/// One `vitalwatch run` process.
pub struct Vitalwatch {
    pub name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    pub log: PathBuf,
}

impl Vitalwatch {
    /// Starts `vitalwatch run` with `env` on top of the suite's own settings (loopback
    /// HTTP on a port the OS picks, no admin listener, JSON logs at info) and waits until
    /// it serves HTTP.
    pub fn start(name: &str, env: &[(String, String)], logs: &Path) -> Vitalwatch {
        let log = logs.join(format!("{name}.log"));
        let file = Arc::new(Mutex::new(File::create(&log).expect("log file")));
        let mut child = service_command(&["run"], env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        tee(
            child.stdout.take().expect("stdout"),
            file.clone(),
            lines.clone(),
            None,
        );
        tee(
            child.stderr.take().expect("stderr"),
            file,
            lines.clone(),
            Some(tx),
        );
        let mut vw = Vitalwatch {
            name: name.to_owned(),
            child: Some(child),
            status: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(100)) {
                vw.addr = addr;
                break;
            }
            if let Some(status) = vw.try_wait() {
                panic!(
                    "{name} exited during start-up ({status}); log {}:\n{}",
                    vw.log.display(),
                    vw.tail(30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not log its HTTP address within 30 s; log {}:\n{}",
                vw.log.display(),
                vw.tail(30)
            );
        }
        vw
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = &mut self.child
            && let Ok(Some(s)) = child.try_wait()
        {
            self.status = Some(s);
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// SIGKILL, like the OOM killer: no drain, no commit, no leaving the group.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child
            && self.status.is_none()
        {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit. Returns the status and how long
    /// the shutdown took; panics if the process is still running after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        self.signal("-TERM");
        let status = wait_for(
            timeout,
            &format!("{} to exit after SIGTERM", self.name),
            || self.try_wait().ok_or_else(|| "still running".to_owned()),
        );
        (status, sent.elapsed())
    }

    /// Sends `sig` (`-TERM`, `-HUP`, `-INT`) to the process.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// GET `path` on the service's HTTP listener: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        get_text(self.addr, path)
    }

    pub fn readyz(&self) -> Result<(u16, String), String> {
        self.get("/readyz")
    }

    pub fn metrics(&self) -> Scrape {
        scrape(self.addr)
    }

    /// Messages this process has read from the input topic so far.
    pub fn consumed(&self) -> f64 {
        self.metrics()
            .sum("vitalwatch_messages_consumed_total", &[])
    }

    /// Waits until the process has read at least one message (it has an assignment
    /// and the pipeline runs).
    pub fn wait_consuming(&self, timeout: Duration) {
        wait_for(timeout, &format!("{} to consume", self.name), || {
            let n = self.consumed();
            if n > 0.0 {
                Ok(())
            } else {
                Err(format!("consumed {n}; /readyz {:?}", self.readyz()))
            }
        })
    }

    /// Waits until `/readyz` answers 200: partitions assigned, both sinks delivering.
    pub fn wait_ready(&self, timeout: Duration) {
        wait_for(timeout, &format!("{} ready", self.name), || {
            match self.readyz() {
                Ok((200, _)) => Ok(()),
                other => Err(format!("/readyz {other:?}")),
            }
        })
    }

    /// Log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The `fields` of every JSON log event whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("fields").cloned())
            .filter(|f| f.get("message").and_then(|m| m.as_str()) == Some(message))
            .collect()
    }

    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Vitalwatch {
    /// A failed test must not leave the process running.
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `vitalwatch` process that ended on its own: exit status and output.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Both outputs, in `target/e2e/logs/<scenario>/<name>.log`.
    pub log: PathBuf,
    /// From the start to the exit.
    pub took: Duration,
}

impl Exited {
    /// stdout and stderr together.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `vitalwatch <args>` (`run` that must fail at start, `check-config`) with the
/// suite's own settings and `env`, and waits up to `timeout` for it to exit on its own.
/// Kills it and panics (with its output) if it is still running then.
pub fn run_to_exit(
    args: &[&str],
    env: &[(String, String)],
    logs: &Path,
    name: &str,
    timeout: Duration,
) -> Exited {
    let log = logs.join(format!("{name}.log"));
    let started = Instant::now();
    let mut child = service_command(args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
    let collect = |out: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut raw = Vec::new();
            if let Some(mut out) = out {
                let _ = out.read_to_end(&mut raw);
            }
            String::from_utf8_lossy(&raw).into_owned()
        })
    };
    let stdout = collect(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    );
    let deadline = started + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let command = format!("vitalwatch {} ({name})", args.join(" "));
    let ended = status.map_or_else(
        || format!("still running after {timeout:?}: killed"),
        |s| s.to_string(),
    );
    let _ = std::fs::write(
        &log,
        format!("== {command}: {ended}\n== stdout\n{stdout}\n== stderr\n{stderr}"),
    );
    let Some(status) = status else {
        panic!("{command} did not exit within {timeout:?}; stdout:\n{stdout}\nstderr:\n{stderr}");
    };
    Exited {
        status,
        stdout,
        stderr,
        log,
        took,
    }
}

/// Sends `signal` (`-TERM`, `-HUP`, `-INT`) to process `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot send {signal} to pid {pid}");
}

/// A directory under the system temp dir, unique to this test process and call, removed
/// on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vitalwatch-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, text).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
