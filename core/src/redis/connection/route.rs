//! Sending a command about a partition, and sending it again when Redis says it did not run it.
//!
//! Every command names a key of its partition, so on Redis Cluster it goes straight to the node that owns
//! the partition (`client.rs`). The cluster connection itself follows MOVED and ASK and retries TRYAGAIN and
//! CLUSTERDOWN; what still comes back saying the command did not run (LOADING after a restart, TRYAGAIN for
//! longer than the client's retries while a slot moves) is retried here with a short backoff until the store's
//! timeout. A command lost with its connection on one node is not: it may have run (appends retry those under
//! their idempotency key, `writer/append_cluster.rs`).
//!
//! Every command runs in a TRACE span (`redis.command`: its name, the key it is routed by), every script in a
//! DEBUG span (`redis.script`: its name, its first key) around its tries. The append and apply paths are hot:
//! a span that is not enabled costs a level check, and its fields are lazy (`Display` wrappers formatted only
//! when a subscriber records them).

use crate::redis::connection::client::{Route, Value};
use crate::redis::connection::scripts::{Lua, Scripts};
use crate::redis::{Result, Shared, StoreError};
use ::redis::{Arg, Cmd, FromRedisValue, ToRedisArgs};
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// First and longest pause between two tries of a command Redis did not run.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(250));

impl StoreError {
    /// A transaction Redis refused whole (`EXECABORT`): on a cluster, its commands were redirected while
    /// their slot moves.
    pub fn is_aborted_transaction(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.code() == Some("EXECABORT"))
    }

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
    /// know the script yet (new, restarted, or promoted) gets it whole with `EVAL`, that node alone: loading it
    /// on every node would make one unreachable node stop the writes to all the others. (`EVAL`, not `SCRIPT
    /// LOAD` then `EVALSHA`: while a slot moves, the node that answers a redirected `EVALSHA` is not the one a
    /// `SCRIPT LOAD` routed by the key reaches; `EVAL` follows the redirection itself.)
    pub(in crate::redis) async fn eval<R: FromRedisValue, T: ToRedisArgs>(
        &self,
        script: &Lua,
        keys: Vec<String>,
        args: Vec<T>,
    ) -> Result<R> {
        let node = keys.first().cloned().unwrap_or_default();
        let span = tracing::debug_span!(
            "redis.script",
            script = %ScriptName(&self.scripts, script),
            key = node.as_str()
        );
        let call = |name: &str, script: &str| {
            let mut cmd = ::redis::cmd(name);
            cmd.arg(script).arg(keys.len()).arg(&keys);
            for a in &args {
                cmd.arg(a);
            }
            cmd
        };
        let evalsha = call("EVALSHA", &script.sha);
        self.retry_not_run(|| async {
            match self.query::<Value>(&evalsha, &node).await {
                Err(StoreError::Redis(e)) if e.code() == Some("NOSCRIPT") => {
                    self.query(&call("EVAL", script.source), &node).await
                }
                other => other,
            }
            .and_then(|reply| {
                ::redis::from_redis_value(reply).map_err(|e| StoreError::Reply(e.to_string()))
            })
        })
        .instrument(span)
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
        let cmd = command(name, &args);
        self.retry_not_run(|| self.query(&cmd, key)).await
    }

    /// [`Self::on_key`] on the connection kept for WAIT and the replication checks around it (`client.rs`).
    pub(in crate::redis) async fn on_key_waiting<R: FromRedisValue>(
        &self,
        name: &'static str,
        key: &str,
        args: &[&str],
    ) -> Result<R> {
        let cmd = command(name, args);
        self.retry_not_run(|| self.query_on(Connection::Waiting, &cmd, Route::Key(key.to_owned())))
            .await
    }

    /// `pipe` as one transaction (`MULTI` ... `EXEC`) on the node that owns `key`'s slot: reads that must see one
    /// moment of a partition without a script's cost of passing every reply through Lua. The replies of its
    /// commands, in order.
    pub(in crate::redis) async fn transaction(
        &self,
        pipe: &::redis::Pipeline,
        key: &str,
    ) -> Result<Vec<Value>> {
        self.retry_not_run(|| async {
            let result = self.conn.transaction(pipe, key).await;
            match &result {
                // The caller reads another way (a slot on the move): not a failure of Redis.
                Err(e) if e.is_aborted_transaction() => {}
                Err(e) => e.count(),
                Ok(_) => {}
            }
            result
        })
        .instrument(tracing::trace_span!("redis.command", command = %"MULTI", key))
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
        self.query_on(Connection::Main, cmd, route).await
    }

    /// [`Self::query_routed`] on one of the client's connections.
    async fn query_on<R: FromRedisValue>(
        &self,
        connection: Connection,
        cmd: &Cmd,
        route: Route,
    ) -> Result<R> {
        let span = command_span(cmd, target(&route));
        let result = match connection {
            Connection::Main => self.conn.query(cmd, route).instrument(span).await,
            Connection::Waiting => self.conn.query_waiting(cmd, route).instrument(span).await,
        };
        if let Err(e) = &result {
            if !matches!(e, StoreError::Redis(r) if r.code() == Some("NOSCRIPT")) {
                e.count();
            }
        }
        result
    }
}

/// Which of the client's connections a command goes on (`client.rs`).
#[derive(Clone, Copy)]
enum Connection {
    Main,
    /// Kept for WAIT and the replication checks around it.
    Waiting,
}

/// The span of one command sent to Redis (see the module's doc for its cost).
fn command_span(cmd: &Cmd, key: &str) -> tracing::Span {
    tracing::trace_span!("redis.command", command = %CommandName(cmd), key)
}

/// What a command is routed by: its key (or, in benchmark measurements, a node's address).
fn target(route: &Route) -> &str {
    match route {
        Route::Key(key) => key,
        #[cfg(feature = "bench")]
        Route::Node(addr) => addr,
    }
}

/// A command's name (`GET`, `EVALSHA`), formatted only when its span is recorded.
struct CommandName<'a>(&'a Cmd);

impl fmt::Display for CommandName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.args_iter().next() {
            Some(Arg::Simple(name)) => f.write_str(&String::from_utf8_lossy(name)),
            _ => Ok(()),
        }
    }
}

/// A script's name (`apply`, `append`), found among the store's scripts by its SHA-1 when its span is
/// recorded (the scripts carry no name of their own); another script shows the start of its SHA-1.
struct ScriptName<'a>(&'a Scripts, &'a Lua);

impl fmt::Display for ScriptName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let named = [
            (&s.append, "append"),
            (&s.claim_key, "claim_key"),
            (&s.append_source, "append_source"),
            (&s.dead_letter, "dead_letter"),
            (&s.apply, "apply"),
            (&s.retire, "retire"),
            (&s.fill, "fill"),
            (&s.seal, "seal"),
            (&s.read_bucket, "read_bucket"),
            (&s.leaders_read, "leaders_read"),
            (&s.group_state, "group_state"),
            (&s.close_minutes, "close_minutes"),
        ];
        match named.iter().find(|(lua, _)| lua.sha == self.1.sha) {
            Some((_, name)) => f.write_str(name),
            None => f.write_str(self.1.sha.get(..12).unwrap_or(&self.1.sha)),
        }
    }
}

/// The command `name` with `args`.
fn command<T: ToRedisArgs>(name: &'static str, args: &[T]) -> Cmd {
    let mut cmd = ::redis::cmd(name);
    for a in args {
        cmd.arg(a);
    }
    cmd
}
