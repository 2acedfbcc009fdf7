//! The Redis client (redis-rs), behind one small type: a connection to one node or to a Redis Cluster, and
//! where each command goes.
//!
//! - One node: a [`ConnectionManager`] (one multiplexed connection, reconnected in the background). A command
//!   lost with its connection fails and is never sent again: a resent append could log a batch twice.
//! - Redis Cluster: redis-rs's cluster connection, which follows MOVED and ASK, waits and retries on TRYAGAIN
//!   and CLUSTERDOWN, refreshes its slot map after a failover, and resends a command lost with its connection.
//!   That resend is safe here: every append on a cluster carries a key that each call looks up before it
//!   writes (`writer/append_cluster.rs`), and every other write is a script that checks the state it changes
//!   (entry ownership, cursors).
//!
//! Every command names a key of the partition it is about ([`Route::Key`]), so on a cluster it goes to the
//! node that owns that partition even when it has no key of its own (TIME, SCAN, WAIT).

use super::{tls, unreachable};
use crate::redis::{RedisUrl, Result, StoreError};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Cmd, FromRedisValue, TlsCertificates};
use std::path::Path;
use std::time::Duration;

pub use ::redis::Value;

/// Tries of one command on a cluster (redirections, TRYAGAIN, a reconnect), within the command timeout.
const CLUSTER_RETRIES: u32 = 6;

/// Where a command goes.
#[derive(Debug, Clone)]
pub(in crate::redis) enum Route {
    /// The primary that owns this key's hash slot (a partition's keys share the slot of its `{p}` tag).
    Key(String),
    /// This node, `host:port` (benchmark measurements of every primary).
    #[cfg(feature = "bench")]
    Node(String),
}

/// A connection to one Redis node or to a Redis Cluster.
#[derive(Clone)]
pub(in crate::redis) struct Connection {
    kind: Kind,
    /// A second connection, for WAIT and the replication checks around it alone: WAIT holds its connection
    /// until the replicas answer, and every command behind it on a multiplexed connection would wait too.
    waits: Kind,
    /// The longest a command may take, waiting for a connection included.
    timeout: Duration,
    /// How errors name the server (`Redis at host:port`), so a failed connection says where it failed.
    server: String,
}

#[derive(Clone)]
enum Kind {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Kind {
    fn is_single(&self) -> bool {
        matches!(self, Kind::Single(_))
    }

    fn open(url: &RedisUrl, certs: Option<TlsCertificates>, timeout: Duration) -> Result<Self> {
        let nodes = url.connection_infos();
        if url.is_cluster() {
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .overall_response_timeout(Some(timeout))
                .retries(CLUSTER_RETRIES)
                .min_retry_wait(10)
                .max_retry_wait(250);
            // The nodes the cluster reports are reached the same way, verified against the same CA, with
            // the same credentials (the client takes them from the seeds).
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build()?;
            let config = ::redis::cluster::ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            return Ok(Kind::Cluster(
                client.get_pending_async_connection_with_config(config),
            ));
        }
        let node = nodes.into_iter().next().expect("a URL names a node");
        let client = match certs {
            Some(certs) => ::redis::Client::build_with_tls(node, certs)?,
            None => ::redis::Client::open(node)?,
        };
        // One reconnection try per failed command: a command waits for the reconnection in progress, and a
        // long series of tries would hold every command past its timeout while Redis is down.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        Ok(Kind::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }
}

impl Connection {
    /// Connects to `url` in the background, to one node or to a cluster, with its credentials. While Redis
    /// is unreachable, commands fail within `timeout`; the connection keeps trying. With TLS the server's
    /// certificate is verified against `ca_file` (PEM), or the system's roots without one (`tls.rs`).
    pub fn open(url: &RedisUrl, ca_file: Option<&Path>, timeout: Duration) -> Result<Self> {
        let certs = tls::certificates(url, ca_file)?;
        let open = || Kind::open(url, certs.clone(), timeout);
        Ok(Self {
            kind: open()?,
            waits: open()?,
            timeout,
            server: url.server_name(),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// Sends `cmd` where `route` says and converts the reply; fails after the timeout whatever the client is
    /// waiting for (an answer, or a connection to send on).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd, route: Route) -> Result<T> {
        self.query_on(&self.kind, cmd, route).await
    }

    /// [`Self::query`] on the connection kept for WAIT and the replication checks around it.
    pub async fn query_waiting<T: FromRedisValue>(&self, cmd: &Cmd, route: Route) -> Result<T> {
        self.query_on(&self.waits, cmd, route).await
    }

    async fn query_on<T: FromRedisValue>(&self, kind: &Kind, cmd: &Cmd, route: Route) -> Result<T> {
        // A failed connection (refused, timed out, TLS) surfaces here: its error names the server and cause.
        let reply = tokio::time::timeout(self.timeout, Self::send(kind, cmd, route))
            .await
            .map_err(|_| unreachable::timed_out(&self.server, self.timeout))?
            .map_err(|e| unreachable::name(e, &self.server, self.timeout))?;
        // An error reply comes back as a value; it is the command's error.
        let reply = reply
            .extract_error()
            .map_err(|e| unreachable::explain_reply(e, &self.server, kind.is_single()))?;
        ::redis::from_redis_value(reply).map_err(|e| StoreError::Reply(e.to_string()))
    }

    /// Sends `pipe`, a transaction (`MULTI` ... `EXEC`) of commands on one key's node, and returns the replies
    /// of its commands; fails after the timeout like [`Self::query`].
    pub async fn transaction(&self, pipe: &::redis::Pipeline, key: &str) -> Result<Vec<Value>> {
        let sent = async {
            Ok::<_, StoreError>(match &self.kind {
                Kind::Single(conn) => pipe.query_async::<Vec<Value>>(&mut conn.clone()).await?,
                Kind::Cluster(conn) => {
                    let route = SingleNodeRoutingInfo::SpecificNode(
                        ::redis::cluster_routing::Route::with_key(key, SlotAddr::Master),
                    );
                    // MULTI's and each command's QUEUED reply come first, then EXEC's array.
                    let mut replies = conn
                        .clone()
                        .route_pipeline(pipe.clone(), pipe.len() + 1, 1, route)
                        .await?;
                    let exec = replies.pop().unwrap_or(Value::Nil).extract_error()?;
                    ::redis::from_redis_value(exec).map_err(|e| StoreError::Reply(e.to_string()))?
                }
            })
        };
        tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| unreachable::timed_out(&self.server, self.timeout))?
            .map_err(|e| unreachable::name(e, &self.server, self.timeout))
    }

    async fn send(kind: &Kind, cmd: &Cmd, route: Route) -> Result<Value> {
        Ok(match kind {
            Kind::Single(conn) => conn.clone().send_packed_command(cmd).await?,
            Kind::Cluster(conn) => {
                let routing = match route {
                    Route::Key(key) => SingleNodeRoutingInfo::SpecificNode(
                        ::redis::cluster_routing::Route::with_key(key, SlotAddr::Master),
                    ),
                    #[cfg(feature = "bench")]
                    Route::Node(addr) => {
                        let (host, port) = addr.rsplit_once(':').unwrap_or((&addr, "6379"));
                        SingleNodeRoutingInfo::ByAddress {
                            host: host.to_owned(),
                            port: port.parse().unwrap_or(6379),
                        }
                    }
                };
                conn.clone()
                    .route_command(cmd.clone(), RoutingInfo::SingleNode(routing))
                    .await?
            }
        })
    }
}

impl Connection {
    /// Sends `pipe` (commands on one node: on a cluster, the node that owns `route`'s key).
    #[cfg(feature = "bench")]
    pub async fn query_pipeline(&self, pipe: &::redis::Pipeline, route: Route) -> Result<()> {
        match &self.kind {
            Kind::Single(conn) => {
                let _: () = pipe.query_async(&mut conn.clone()).await?;
            }
            Kind::Cluster(conn) => {
                let Route::Key(key) = route else {
                    return Err(StoreError::Reply("a pipeline is routed by a key".into()));
                };
                let route = ::redis::cluster_routing::Route::with_key(key, SlotAddr::Master);
                let replies = conn
                    .clone()
                    .route_pipeline(
                        pipe.clone(),
                        0,
                        pipe.len(),
                        SingleNodeRoutingInfo::SpecificNode(route),
                    )
                    .await?;
                for reply in replies {
                    reply.extract_error()?;
                }
            }
        }
        Ok(())
    }
}

/// Reading replies without a schema (stream entries, script results).
pub(in crate::redis) trait ValueExt: Sized {
    fn into_array(self) -> Vec<Value>;
    /// The items of an array that read as strings (ids, fields), in order.
    fn into_strings(self) -> Vec<String>;
    fn as_string(&self) -> Option<String>;
    fn as_i64(&self) -> Option<i64>;
    fn is_null(&self) -> bool;
}

impl ValueExt for Value {
    fn into_array(self) -> Vec<Value> {
        match self {
            Value::Array(items) | Value::Set(items) => items,
            Value::Nil => Vec::new(),
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => vec![other],
        }
    }

    fn into_strings(self) -> Vec<String> {
        self.into_array()
            .into_iter()
            .filter_map(|v| v.as_string())
            .collect()
    }

    fn as_string(&self) -> Option<String> {
        match self {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            Value::VerbatimString { text, .. } => Some(text.clone()),
            Value::Int(n) => Some(n.to_string()),
            Value::Double(d) => Some(d.to_string()),
            Value::Okay => Some("OK".to_owned()),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            other => other.as_string()?.parse().ok(),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Value::Nil)
    }
}
