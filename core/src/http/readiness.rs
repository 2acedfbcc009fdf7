//! What `/readyz` checks: that every supervised loop of the process runs, and the checks its role adds (Redis
//! answers; Postgres is reachable and migrated; the ingest backlog's state). Checks run concurrently, each
//! within [`CHECK_TIMEOUT`], so a frozen dependency makes the process not ready instead of hanging the probe.
//!
//! Readiness means "can serve what this process exists for": a dependency that only part of the process
//! needs (Postgres for the API's history) is added with [`OnFailure::Degrades`], so its outage leaves the
//! process ready, `"status": "degraded"`, instead of pulling every instance out of its load balancer.

use crate::redis::Shared;
use crate::supervise::Liveness;
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest one check may take before it counts as failed (probes commonly time out after 1 to 5 s).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// A failed check: the dependency it names, and the cause (logged, not sent).
#[derive(Debug)]
pub struct NotReady {
    pub what: String,
    pub cause: String,
}

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<Value, NotReady>> + Send + Sync>;

/// What a failed check means for the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The process cannot do its work without it: `/readyz` answers 503.
    NotReady,
    /// Only the named feature fails (its routes answer 503): `/readyz` stays 200 and reports the check as
    /// `"unavailable: ..."` and the feature under `degraded`.
    Degrades(&'static str),
}

/// What `/readyz` found when the process is ready.
#[derive(Debug, Default)]
pub struct Report {
    /// Each check by name: its value when it passed, `"unavailable: <what>"` when it failed but only degrades.
    pub checks: BTreeMap<&'static str, Value>,
    /// The features that answer 503 until a dependency is back (empty: fully ready).
    pub degraded: Vec<&'static str>,
}

/// The checks of one process. Cloned into every handler's state.
#[derive(Clone)]
pub struct Readiness {
    liveness: Liveness,
    checks: Vec<(&'static str, OnFailure, Check)>,
}

impl Readiness {
    /// Readiness that only needs the process's loops to run.
    pub fn new(liveness: Liveness) -> Self {
        Self {
            liveness,
            checks: Vec::new(),
        }
    }

    /// Adds a check named `name` that the process needs: its value is reported under that name when it
    /// passes; when it fails the process is not ready.
    pub fn with<F>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<Value, NotReady>> + Send + Sync + 'static,
    {
        self.with_check(name, OnFailure::NotReady, check)
    }

    /// Adds a check named `name` with what its failure means.
    pub fn with_check<F>(mut self, name: &'static str, on_failure: OnFailure, check: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<Value, NotReady>> + Send + Sync + 'static,
    {
        self.checks.push((name, on_failure, Arc::new(check)));
        self
    }

    /// Adds "redis": Redis answers a PING.
    pub fn with_redis<H>(self, store: H) -> Self
    where
        H: std::ops::Deref<Target = Shared> + Clone + Send + Sync + 'static,
    {
        self.with("redis", move || {
            let store = store.clone();
            Box::pin(async move {
                store.ping().await.map_err(|e| NotReady {
                    what: "Redis".into(),
                    cause: e.to_string(),
                })?;
                Ok(Value::from("ok"))
            })
        })
    }

    /// Adds "postgres": Postgres answers and has every migration of this build; `on_failure` says whether the
    /// process needs it (the snapshotter) or only a feature does (the API's history).
    pub fn with_postgres(self, pool: sqlx::PgPool, on_failure: OnFailure) -> Self {
        self.with_check("postgres", on_failure, move || {
            let pool = pool.clone();
            Box::pin(async move {
                let pending = match crate::db::pending_migrations(&pool).await {
                    Ok(pending) => pending,
                    Err(e) => {
                        return Err(NotReady {
                            what: "Postgres".into(),
                            cause: crate::db::unreachable::named(&pool, e).await.to_string(),
                        })
                    }
                };
                if !pending.is_empty() {
                    return Err(NotReady {
                        what: "Postgres (not migrated: run topk-snapshotter migrate)".into(),
                        cause: format!("migrations not applied: {pending:?}"),
                    });
                }
                Ok(Value::from("ok"))
            })
        })
    }

    /// Whether a supervised loop of the process has died.
    pub fn loops_failed(&self) -> bool {
        self.liveness.failed()
    }

    /// Runs every check: what they found when the process is ready (degraded or not), or every failure
    /// that makes it not ready.
    pub async fn evaluate(&self) -> Result<Report, Vec<NotReady>> {
        let results = futures::future::join_all(self.checks.iter().map(
            |(name, on_failure, check)| async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(NotReady {
                        what: display_name(name).to_owned(),
                        cause: format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
                    }),
                };
                (*name, *on_failure, outcome)
            },
        ))
        .await;
        let mut report = Report::default();
        let mut failed = Vec::new();
        if self.liveness.failed() {
            failed.push(NotReady {
                what: "the process (a background loop died; it is stopping)".into(),
                cause: "a supervised task died".into(),
            });
        }
        for (name, on_failure, outcome) in results {
            match (outcome, on_failure) {
                (Ok(value), _) => {
                    report.checks.insert(name, value);
                }
                (Err(e), OnFailure::NotReady) => failed.push(e),
                (Err(e), OnFailure::Degrades(feature)) => {
                    tracing::warn!(check = %e.what, error = %e.cause, "degraded: {feature} unavailable");
                    report
                        .checks
                        .insert(name, Value::from(format!("unavailable: {}", e.what)));
                    report.degraded.push(feature);
                }
            }
        }
        if failed.is_empty() {
            Ok(report)
        } else {
            Err(failed)
        }
    }
}

/// How a check's name reads in an answer: "Redis", "Postgres", or the name itself.
fn display_name(name: &str) -> &str {
    match name {
        "redis" => "Redis",
        "postgres" => "Postgres",
        other => other,
    }
}
