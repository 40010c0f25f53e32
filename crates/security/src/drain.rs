//! Graceful shutdown with a drain period, shared by every service: after the shutdown signal
//! the service marks itself draining (its readiness endpoint answers 503) and keeps serving for
//! the drain period, so load balancers take it out of rotation before its port closes.

use std::future::Future;
use std::time::Duration;

/// Resolves once `shutdown` has and, when `drain` is not zero, `mark_draining` has been called
/// and `drain` has passed: the signal to hand to `with_graceful_shutdown`.
pub async fn after_drain(
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    mark_draining: impl FnOnce(),
) {
    shutdown.await;
    if !drain.is_zero() {
        mark_draining();
        tracing::info!(?drain, "shutting down: not ready, draining");
        tokio::time::sleep(drain).await;
    }
}
