//! What `/readyz` checks: that every supervised loop of the process runs, and the checks its role adds (Redis
//! answers; Postgres is reachable and migrated; the ingest backlog's state). Checks run concurrently, each
//! within [`CHECK_TIMEOUT`], so a frozen dependency makes the process not ready instead of hanging the probe.

use crate::redis::RedisStore;
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

/// The checks of one process. Cloned into every handler's state.
#[derive(Clone)]
pub struct Readiness {
    liveness: Liveness,
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    /// Readiness that only needs the process's loops to run.
    pub fn new(liveness: Liveness) -> Self {
        Self {
            liveness,
            checks: Vec::new(),
        }
    }

    /// Adds a check named `name`: its value is reported under that name when it passes.
    pub fn with<F>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<Value, NotReady>> + Send + Sync + 'static,
    {
        self.checks.push((name, Arc::new(check)));
        self
    }

    /// Adds "redis": Redis answers a PING.
    pub fn with_redis(self, store: RedisStore) -> Self {
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

    /// Adds "postgres": Postgres answers and has every migration of this build.
    pub fn with_postgres(self, pool: sqlx::PgPool) -> Self {
        self.with("postgres", move || {
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

    /// Runs every check: each passing check's value by name, or every failure.
    pub async fn evaluate(&self) -> Result<BTreeMap<&'static str, Value>, Vec<NotReady>> {
        let results =
            futures::future::join_all(self.checks.iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(NotReady {
                        what: display_name(name).to_owned(),
                        cause: format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
                    }),
                };
                (*name, outcome)
            }))
            .await;
        let mut passed = BTreeMap::new();
        let mut failed = Vec::new();
        if self.liveness.failed() {
            failed.push(NotReady {
                what: "the process (a background loop died; it is stopping)".into(),
                cause: "a supervised task died".into(),
            });
        }
        for (name, outcome) in results {
            match outcome {
                Ok(value) => {
                    passed.insert(name, value);
                }
                Err(e) => failed.push(e),
            }
        }
        if failed.is_empty() {
            Ok(passed)
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
