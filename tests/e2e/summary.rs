//! One summary row per scenario, appended to `target/e2e/summary.tsv` (or
//! `VW_E2E_SUMMARY`) when the scenario ends, passed or failed; `scripts/e2e.sh` prints
//! the table at the end of the run.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub const HEADER: &str = "scenario\tresult\tmessages\tkills\tlost\tduplicates\tduration_s\tnotes";

/// A running scenario; its row is written when it is dropped.
pub struct Scenario {
    name: &'static str,
    started: Instant,
    pub messages: Option<usize>,
    pub kills: usize,
    pub lost: Option<usize>,
    pub duplicates: Option<usize>,
    pub notes: String,
    /// A result other than pass/FAIL (e.g. "not covered").
    pub result: Option<&'static str>,
}

impl Scenario {
    pub fn begin(name: &'static str) -> Scenario {
        println!("\n=== scenario {name}");
        Scenario {
            name,
            started: Instant::now(),
            messages: None,
            kills: 0,
            lost: None,
            duplicates: None,
            notes: String::new(),
            result: None,
        }
    }

    pub fn note(&mut self, note: impl AsRef<str>) {
        if !self.notes.is_empty() {
            self.notes.push_str("; ");
        }
        self.notes.push_str(note.as_ref());
    }

    /// Prints a progress line with the time since the scenario began.
    pub fn step(&self, what: impl AsRef<str>) {
        println!(
            "[{:>6.1}s] {}: {}",
            self.started.elapsed().as_secs_f64(),
            self.name,
            what.as_ref()
        );
    }
}

fn path() -> PathBuf {
    std::env::var_os("VW_E2E_SUMMARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e/summary.tsv"))
}

fn opt(v: Option<usize>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let result = if std::thread::panicking() {
            "FAIL"
        } else {
            self.result.unwrap_or("pass")
        };
        let row = format!(
            "{}\t{result}\t{}\t{}\t{}\t{}\t{:.1}\t{}",
            self.name,
            opt(self.messages),
            self.kills,
            opt(self.lost),
            opt(self.duplicates),
            self.started.elapsed().as_secs_f64(),
            self.notes.replace(['\t', '\n'], " ")
        );
        println!("summary: {}", row.replace('\t', " | "));
        let path = path();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let fresh = !path.exists();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            if fresh {
                let _ = writeln!(f, "{HEADER}");
            }
            let _ = writeln!(f, "{row}");
        }
    }
}
