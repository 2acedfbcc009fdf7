//! Sending a command about a partition, and sending it again when Redis says it did not run it.
//!
//! Every command names a key of its partition, so on Redis Cluster it goes straight to the node that owns
//! the partition (`client.rs`). The cluster connection itself follows MOVED and ASK and retries TRYAGAIN and
//! CLUSTERDOWN; what still comes back saying the command did not run (LOADING after a restart, TRYAGAIN for
//! longer than the client's retries while a slot moves) is retried here with a short backoff until the store's
//! timeout. A command lost with its connection on one node is not: it may have run (appends retry those under
//! their idempotency key, `append.rs`).

use crate::redis::connection::client::{Route, Value};
use crate::redis::connection::scripts::Lua;
use crate::redis::{Result, Shared, StoreError};
use ::redis::{Cmd, FromRedisValue, ToRedisArgs};
use std::future::Future;
use std::time::{Duration, Instant};

/// First and longest pause between two tries of a command Redis did not run.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(250));

impl StoreError {
    /// Redis answered that it did not run the command: sending it again cannot double anything.
    pub fn is_not_run(&self) -> bool {
        let StoreError::Redis(e) = self else {
            return false;
        };
        matches!(
            e.code(),
            Some("TRYAGAIN" | "CLUSTERDOWN" | "MOVED" | "ASK" | "LOADING" | "MASTERDOWN")
        )
    }

    /// The `kind` label of `topk_redis_errors_total` ([`crate::metrics::REDIS_ERROR_KINDS`]).
    pub fn kind(&self) -> &'static str {
        let StoreError::Redis(e) = self else {
            return "other";
        };
        if e.is_timeout() {
            "timeout"
        } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
            "connection"
        } else if e.is_cluster_error() || self.is_not_run() {
            "cluster"
        } else if e.code() == Some("NOSCRIPT") || e.to_string().contains("script") {
            "script"
        } else {
            "other"
        }
    }

    /// Counts this failed command in `topk_redis_errors_total`.
    pub(in crate::redis) fn count(&self) {
        metrics::counter!("topk_redis_errors_total", "kind" => self.kind()).increment(1);
    }
}

impl Shared {
    /// `cmd` once, on the node that owns `key`.
    async fn query<R: FromRedisValue>(&self, cmd: &Cmd, key: &str) -> Result<R> {
        self.query_routed(cmd, Route::Key(key.to_owned())).await
    }
}

impl Shared {
    /// Runs `op` again while Redis answers that it did not run it, for at most the store's timeout.
    pub(in crate::redis) async fn retry_not_run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let give_up = Instant::now() + self.timeout;
        let mut pause = BACKOFF.0;
        loop {
            match op().await {
                Err(e) if e.is_not_run() && Instant::now() + pause < give_up => {
                    tracing::debug!(error = %e, "redis did not run the command; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BACKOFF.1);
                }
                other => return other,
            }
        }
    }

    /// Runs `script` on the node that owns its keys (they share one partition's slot). A node that does not
    /// know the script yet (new, restarted, or promoted) gets it first, that node alone: loading it on every
    /// node would make one unreachable node stop the writes to all the others.
    pub(in crate::redis) async fn eval<R: FromRedisValue, T: ToRedisArgs>(
        &self,
        script: &Lua,
        keys: Vec<String>,
        args: Vec<T>,
    ) -> Result<R> {
        let node = keys.first().cloned().unwrap_or_default();
        let mut evalsha = ::redis::cmd("EVALSHA");
        evalsha.arg(&script.sha).arg(keys.len()).arg(&keys);
        for a in &args {
            evalsha.arg(a);
        }
        self.retry_not_run(|| async {
            match self.query::<Value>(&evalsha, &node).await {
                Err(StoreError::Redis(e)) if e.code() == Some("NOSCRIPT") => {
                    let mut load = ::redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(script.source);
                    let _: String = self.query(&load, &node).await?;
                    self.query(&evalsha, &node).await
                }
                other => other,
            }
            .and_then(|reply| {
                ::redis::from_redis_value(reply).map_err(|e| StoreError::Reply(e.to_string()))
            })
        })
        .await
    }

    /// Sends the command `name` with `args` to the node that owns `key`'s slot. `key` is the command's key
    /// (for commands like SCAN that have none: a key of the partition whose node is meant).
    pub(in crate::redis) async fn on_key<R: FromRedisValue, T: ToRedisArgs>(
        &self,
        name: &'static str,
        key: &str,
        args: Vec<T>,
    ) -> Result<R> {
        let mut cmd = ::redis::cmd(name);
        for a in &args {
            cmd.arg(a);
        }
        self.retry_not_run(|| self.query(&cmd, key)).await
    }

    /// [`Self::on_key`] on the connection kept for WAIT and the replication checks around it (`client.rs`).
    pub(in crate::redis) async fn on_key_waiting<R: FromRedisValue, T: ToRedisArgs>(
        &self,
        name: &'static str,
        key: &str,
        args: Vec<T>,
    ) -> Result<R> {
        let mut cmd = ::redis::cmd(name);
        for a in &args {
            cmd.arg(a);
        }
        let route = || Route::Key(key.to_owned());
        self.retry_not_run(|| async {
            let result = self.conn.query_waiting(&cmd, route()).await;
            if let Err(e) = &result {
                e.count();
            }
            result
        })
        .await
    }

    /// [`Self::on_key`] for a command whose first argument is its key.
    pub(in crate::redis) async fn on_first_key<R: FromRedisValue>(
        &self,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<R> {
        let key = args.first().cloned().unwrap_or_default();
        self.on_key(name, &key, args).await
    }

    /// `cmd` once, where `route` says; a failure is counted (but for a missing script, which [`Self::eval`]
    /// loads and which is routine after a restart or failover).
    pub(in crate::redis) async fn query_routed<R: FromRedisValue>(
        &self,
        cmd: &Cmd,
        route: Route,
    ) -> Result<R> {
        let result = self.conn.query(cmd, route).await;
        if let Err(e) = &result {
            if !matches!(e, StoreError::Redis(r) if r.code() == Some("NOSCRIPT")) {
                e.count();
            }
        }
        result
    }
}
