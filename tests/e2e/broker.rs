//! A scenario's own broker, on its own port, through `scripts/broker.sh` with sqlite
//! storage (topics, data and committed offsets survive a restart); stopped when dropped.

use std::path::Path;
use std::process::Command;

use crate::process::repo_root;

pub struct OwnBroker {
    pub port: String,
}

impl OwnBroker {
    /// Starts on fresh data.
    pub fn start(port: &str) -> OwnBroker {
        let b = OwnBroker {
            port: port.to_owned(),
        };
        b.script(&["start"], &[("FRESH", Path::new("1"))]);
        b
    }

    /// `scripts/broker.sh <args[0]> <port> <args[1..]>` with `env`; panics unless it
    /// succeeds.
    pub fn script(&self, args: &[&str], env: &[(&str, &Path)]) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/broker.sh"))
            .arg(args[0])
            .arg(&self.port)
            .args(&args[1..])
            .env("STORAGE", "sqlite")
            .current_dir(repo_root());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let status = cmd.status().expect("run scripts/broker.sh");
        assert!(
            status.success(),
            "scripts/broker.sh {} {}: {status} (log target/e2e/broker-{}.log)",
            args[0],
            self.port,
            self.port
        );
    }

    /// Bootstrap servers on loopback.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/broker.sh"))
            .args(["stop", &self.port])
            .current_dir(repo_root())
            .status();
    }
}
