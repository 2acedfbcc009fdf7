//! The admin address (`TOPK_ADMIN_ADDR`): `/healthz`, `/readyz` and `/metrics` on a listener of their own, for
//! processes that serve no other HTTP and for deployments that keep probes and scrapes off the public port.

use super::health::health_routes;
use super::readiness::Readiness;
use crate::config::HttpConfig;
use crate::supervise::Supervisor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the admin routes on `listener` until `stop`, as a task of `tasks` (a dead admin server fails the
/// process like any other loop).
pub fn spawn(
    tasks: &mut Supervisor,
    listener: TcpListener,
    readiness: Readiness,
    stop: &CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin address serving /healthz, /readyz and /metrics");
    }
    let app = health_routes().with_state(readiness);
    let stop = stop.clone();
    tasks.spawn("admin server", async move {
        super::serve::serve(listener, app, &HttpConfig::default(), stop).await?;
        Ok(())
    });
}
