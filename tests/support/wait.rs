//! Waiting on conditions with deadlines: the suite never sleeps to let things settle.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const TICK: Duration = Duration::from_millis(200);

/// Checks `check` until it returns `Ok`, and returns its value. Panics after `timeout`
/// with `what` and the last `Err` (the state the condition was stuck in).
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for: {what}; last state: {state}")
            }
            Err(_) => std::thread::sleep(TICK),
        }
    }
}
