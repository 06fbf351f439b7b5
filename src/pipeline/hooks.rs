//! What tests hook into the pipeline. Production leaves them empty.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::work::Work;

/// Hooks for tests. Production leaves them empty.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called by a worker before evaluating; a returned duration is awaited first
    /// (skewed work, slow paths, order recording).
    #[allow(clippy::type_complexity)]
    pub before_evaluate: Option<Arc<dyn Fn(&Work) -> Option<Duration> + Send + Sync>>,
    /// Cancelling it stops the pipeline like a killed process: nothing is committed,
    /// closed or flushed.
    pub crash: Option<CancellationToken>,
    /// Called by the state restore before it hands over records of a partition; a
    /// returned duration is slept first (a slow restore).
    #[allow(clippy::type_complexity)]
    pub before_restore: Option<Arc<dyn Fn(i32) -> Option<Duration> + Send + Sync>>,
}
