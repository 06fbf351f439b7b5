//! The measured processes: the raw-consume limit (`vitalwatch bench-raw`, a plain rdkafka
//! consumer loop) and the subject (`vitalwatch run`), each a child process so that its
//! CPU time and peak RSS are its own, sampled from `/proc` at the start and the end of
//! its drain.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::tools::cli::BenchRawArgs;
use vitalwatch::http;

/// How long a child may take to join the group and see its first message.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// The subject's `auto.commit.interval.ms` in drains (vitalwatch's default is 1000).
pub const COMMIT_INTERVAL_MS: u64 = 100;
/// How often the parent looks at the subject's committed offsets.
const COMMIT_POLL: Duration = Duration::from_millis(20);

/// CPU time and memory of a process, read from `/proc/<pid>`.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// User + system CPU seconds over all threads so far.
    pub cpu_secs: f64,
    /// Peak resident set size so far (VmHWM), bytes.
    pub peak_rss: u64,
}

impl Sample {
    pub fn of(pid: u32) -> anyhow::Result<Sample> {
        let at = Instant::now();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        // The command name (field 2) may hold spaces: count fields after its ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("unexpected /proc/PID/stat format")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the ')'.
        let ticks: u64 = fields
            .get(11..13)
            .context("short /proc/PID/stat")?
            .iter()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .sum();
        // SAFETY: sysconf has no preconditions.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Ok(Sample {
            at,
            cpu_secs: ticks as f64 / per_sec,
            peak_rss: peak_kib * 1024,
        })
    }
}

/// One measured drain of a backlog.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    pub messages: u64,
    pub secs: f64,
    pub cpu_secs: f64,
    pub peak_rss: u64,
}

impl Drained {
    fn between(messages: u64, start: Sample, end: Sample) -> Drained {
        Drained {
            messages,
            secs: end.at.duration_since(start.at).as_secs_f64(),
            cpu_secs: (end.cpu_secs - start.cpu_secs).max(0.0),
            peak_rss: end.peak_rss,
        }
    }
}

/// A child that is killed when dropped, whatever happened in between.
struct Guard(Child);

/// Children die with the bench: if it is interrupted (Ctrl-C, a CI timeout), a drain
/// left running would go on using the CPU and the port.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.log"));
    std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))
}

/// The raw-consume limit: `vitalwatch bench-raw` drains `messages` from `topic`; it says
/// `first` on stdout at its first message and `done` at its last.
pub fn drain_raw(
    exe: &Path,
    brokers: &str,
    topic: &str,
    group: &str,
    messages: u64,
    logs: &Path,
) -> anyhow::Result<Drained> {
    let child = die_with_parent(&mut Command::new(exe))
        .args(["bench-raw", "--brokers", brokers, "--topic", topic])
        .args(["--group", group, "--messages", &messages.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file(logs, group)?)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut child = Guard(child);
    let pid = child.0.id();
    let stdout = child.0.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |word: &str, timeout: Duration| -> anyhow::Result<Sample> {
        match rx.recv_timeout(timeout) {
            Ok(line) if line == word => Sample::of(pid),
            Ok(line) => bail!("bench-raw said `{line}`, expected `{word}`"),
            Err(_) => bail!(
                "bench-raw did not say `{word}` within {timeout:?}; see {}",
                logs.join(format!("{group}.log")).display()
            ),
        }
    };
    let start = expect("first", START_TIMEOUT)?;
    let end = expect("done", Duration::from_secs(3600))?;
    Ok(Drained::between(messages, start, end))
}

/// What the subject runs with.
pub struct Subject<'a> {
    pub exe: &'a Path,
    pub brokers: &'a str,
    pub input: &'a str,
    pub alerts: &'a str,
    pub dlq: &'a str,
    pub repartition: &'a str,
    pub state: &'a str,
    pub group: &'a str,
    pub workers: usize,
    pub rules: Option<&'a Path>,
    pub logs: &'a Path,
    /// `log.level` of the child (`warn`; the restore stage reads `info` lines).
    pub log_level: &'a str,
    /// The broker is the mock cluster (see [`MOCK_FETCH_WAIT_MS`] and
    /// [`MOCK_SESSION_TIMEOUT_MS`]).
    pub mock: bool,
}

/// The mock cluster answers a fetch that found no data only after the consumer's full
/// `fetch.wait.max.ms` (500 ms by default), even when data arrives meanwhile; a real
/// broker answers as soon as data is there. On the mock the subject waits at most this
/// long, so that the latency run measures vitalwatch rather than the mock.
pub const MOCK_FETCH_WAIT_MS: u64 = 5;

/// The mock cluster holds a join to a group that already has members, or is still
/// rebalancing after one left, for the session timeout less 1 s (`rdkafka_mock_cgrp.c`);
/// at librdkafka's default 45 s the restore stage's second subject waited 44 s for its
/// partitions. On the mock the subject's session is this long (Kafka's minimum).
pub const MOCK_SESSION_TIMEOUT_MS: u64 = 6_000;

/// `vitalwatch run` as configured by its environment, and the address of its /metrics.
pub struct Running {
    child: Guard,
    pub http: SocketAddr,
    pub log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Stops the child with SIGTERM (it drains, commits and leaves its group) and waits
    /// up to `timeout` for it to exit.
    pub fn terminate(mut self, timeout: Duration) -> anyhow::Result<()> {
        // SAFETY: kill(2) on the child's own pid; no memory is involved.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.0.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "vitalwatch did not exit within {timeout:?} of SIGTERM; see {}",
            self.log.display()
        )
    }

    /// Waits until `/readyz` answers 200 (subscribed, partitions assigned).
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait()? {
                bail!(
                    "vitalwatch exited with {status} before it was ready; see {}",
                    self.log.display()
                );
            }
            if http::get(self.http, "/readyz", HTTP_TIMEOUT).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "vitalwatch not ready after {timeout:?}; see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn metrics(&self) -> anyhow::Result<String> {
        let r = http::get(self.http, "/metrics", HTTP_TIMEOUT)?;
        if r.status != 200 {
            bail!("/metrics answered {}", r.status);
        }
        Ok(r.text())
    }
}

impl Subject<'_> {
    pub fn start(&self) -> anyhow::Result<Running> {
        let http = free_port()?;
        let log = self.logs.join(format!("{}.log", self.group));
        let mut cmd = Command::new(self.exe);
        die_with_parent(&mut cmd);
        cmd.arg("run")
            .env("VITALWATCH_KAFKA__BOOTSTRAP_SERVERS", self.brokers)
            .env("VITALWATCH_KAFKA__GROUP_ID", self.group)
            .env("VITALWATCH_KAFKA__INPUT_TOPIC", self.input)
            .env("VITALWATCH_KAFKA__ALERT_TOPIC", self.alerts)
            .env("VITALWATCH_KAFKA__DLQ_TOPIC", self.dlq)
            .env("VITALWATCH_KAFKA__REPARTITION_TOPIC", self.repartition)
            .env("VITALWATCH_KAFKA__STATE_TOPIC", self.state)
            .env("VITALWATCH_PIPELINE__WORKERS", self.workers.to_string())
            .env("VITALWATCH_HTTP__LISTEN", http.to_string())
            .env("VITALWATCH_ADMIN__LISTEN", "")
            .env("VITALWATCH_LOG__LEVEL", self.log_level)
            // Commits every second by default: a drain of a few seconds would be
            // measured to the next tick. 100 ms keeps that error small.
            .env(
                "VITALWATCH_KAFKA__CLIENT__AUTO__COMMIT__INTERVAL__MS",
                COMMIT_INTERVAL_MS.to_string(),
            )
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(self.logs, self.group)?);
        if self.mock {
            cmd.env(
                "VITALWATCH_KAFKA__CLIENT__FETCH__WAIT__MAX__MS",
                MOCK_FETCH_WAIT_MS.to_string(),
            )
            .env(
                "VITALWATCH_KAFKA__CLIENT__SESSION__TIMEOUT__MS",
                MOCK_SESSION_TIMEOUT_MS.to_string(),
            );
        }
        if let Some(rules) = self.rules {
            cmd.env("VITALWATCH_RULES__FILE", rules);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        Ok(Running {
            child: Guard(child),
            http,
            log,
        })
    }

    /// Drains the backlog: from the moment the subject is ready (partitions assigned)
    /// until its committed offsets reach `ends` (the high watermark per partition).
    pub fn drain(&self, ends: &[(i32, i64)]) -> anyhow::Result<Drained> {
        let messages: i64 = ends.iter().map(|&(_, e)| e).sum();
        let mut running = self.start()?;
        running.wait_ready(START_TIMEOUT)?;
        let start = Sample::of(running.pid())?;
        running.wait_committed(self, ends)?;
        let end = Sample::of(running.pid())?;
        Ok(Drained::between(messages as u64, start, end))
    }
}

impl Running {
    /// Waits until the subject's committed offsets reach `ends` on every partition.
    pub fn wait_committed(
        &mut self,
        subject: &Subject<'_>,
        ends: &[(i32, i64)],
    ) -> anyhow::Result<()> {
        let watcher = CommitWatcher::new(subject.brokers, subject.group, subject.input, ends)?;
        loop {
            if watcher.caught_up()? {
                return Ok(());
            }
            if let Some(status) = self.child.0.try_wait()? {
                bail!(
                    "vitalwatch exited with {status} while draining; see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(COMMIT_POLL);
        }
    }
}

/// Reads a group's committed offsets without joining it.
struct CommitWatcher {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
    ends: Vec<(i32, i64)>,
}

impl CommitWatcher {
    fn new(brokers: &str, group: &str, topic: &str, ends: &[(i32, i64)]) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create the offset watcher")?;
        let mut tpl = TopicPartitionList::new();
        for &(p, _) in ends {
            tpl.add_partition(topic, p);
        }
        Ok(CommitWatcher {
            consumer,
            tpl,
            ends: ends.to_vec(),
        })
    }

    fn caught_up(&self) -> anyhow::Result<bool> {
        let committed = match self
            .consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(5))
        {
            Ok(c) => c,
            // The coordinator may still be loading the group: not there yet.
            Err(_) => return Ok(false),
        };
        Ok(self.ends.iter().all(|&(p, end)| {
            end == 0
                || committed
                    .elements()
                    .iter()
                    .find(|e| e.partition() == p)
                    .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end))
        }))
    }
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
pub fn watermarks(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a consumer for watermarks")?;
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("cannot read the watermarks of {topic}/{p}"))?;
            Ok((p, low, high))
        })
        .collect()
}

/// A loopback address nobody listens on right now.
fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?)
}

/// Bound on one GET of the child's listener.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `vitalwatch bench-raw`: the raw-consume limit. Reads `--messages` messages in a
/// consumer group and touches every payload, nothing else; says `first` and `done` on
/// stdout, then waits to be killed (so the parent can read its `/proc` entry).
pub fn raw_main(args: BenchRawArgs) -> ExitCode {
    match raw(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn raw(args: &BenchRawArgs) -> anyhow::Result<()> {
    let consumer: BaseConsumer = super::consumer_tuning(&mut ClientConfig::new())
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .context("cannot create the consumer")?;
    consumer.subscribe(&[&args.topic])?;
    let mut out = std::io::stdout();
    let (mut count, mut bytes) = (0u64, 0usize);
    let mut progress = (0u64, Instant::now());
    while count < args.messages {
        if progress.1.elapsed() > Duration::from_secs(5) {
            if progress.0 == count {
                let position = consumer.position().map(|p| {
                    p.elements()
                        .iter()
                        .map(|e| format!("{}:{:?}", e.partition(), e.offset()))
                        .collect::<Vec<_>>()
                        .join(" ")
                });
                eprintln!("no progress for 5 s at {count} messages; positions {position:?}");
            }
            progress = (count, Instant::now());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                count += 1;
                bytes = bytes.wrapping_add(m.payload_len());
                if count == 1 {
                    writeln!(out, "first")?;
                    out.flush()?;
                }
            }
            Some(Err(e)) => eprintln!("consume error: {e}"),
            None => {}
        }
    }
    writeln!(out, "done")?;
    out.flush()?;
    eprintln!("consumed {count} messages, {bytes} payload bytes");
    // Stay (and stay measurable) until the parent kills us or closes stdin.
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    Ok(())
}
