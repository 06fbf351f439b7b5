//! `vitalwatch loadgen` as the suite runs it; the service's processes are the tests'
//! shared [`crate::support::process`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

pub use crate::support::process::*;
use crate::wait::wait_for;

/// What `vitalwatch loadgen` is asked to produce.
#[derive(Debug, Clone)]
pub struct Load {
    pub topic: String,
    pub messages: u64,
    /// Messages per second; 0 = as fast as the broker takes them.
    pub rate: u64,
    pub seed: u64,
    pub abnormal_ratio: f64,
    pub invalid_ratio: f64,
}

impl Load {
    pub fn new(topic: &str, messages: u64, rate: u64, seed: u64) -> Load {
        Load {
            topic: topic.to_owned(),
            messages,
            rate,
            seed,
            abnormal_ratio: 0.05,
            invalid_ratio: 0.01,
        }
    }
}

/// One `vitalwatch loadgen` process.
pub struct Loadgen {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Loadgen {
    pub fn start(brokers: &str, load: &Load, logs: &Path, name: &str) -> Loadgen {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let messages = load.messages.to_string();
        let rate = load.rate.to_string();
        let seed = load.seed.to_string();
        let abnormal = load.abnormal_ratio.to_string();
        let invalid = load.invalid_ratio.to_string();
        let child = command(&[
            "loadgen",
            "--brokers",
            brokers,
            "--topic",
            &load.topic,
            "--messages",
            &messages,
            "--rate",
            &rate,
            "--seed",
            &seed,
            "--abnormal-ratio",
            &abnormal,
            "--invalid-ratio",
            &invalid,
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start loadgen");
        Loadgen {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Waits for loadgen to finish; panics unless it exited 0. Returns its last line.
    pub fn wait(mut self, timeout: Duration) -> String {
        let status = wait_for(timeout, &format!("{} to finish", self.name), || match self
            .child
            .try_wait()
        {
            Ok(Some(s)) => Ok(s),
            _ => Err("still producing".to_owned()),
        });
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            status.success(),
            "{} failed ({status}); log {}:\n{log}",
            self.name,
            self.log.display()
        );
        log.lines().last().unwrap_or_default().to_owned()
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
