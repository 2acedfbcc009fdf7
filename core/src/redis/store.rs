//! The connection every handle shares ([`Shared`]) and the store that opens it and hands out the role
//! handles ([`RedisStore`]).

use super::applier::LeaderCaps;
use super::connection::{client, clock, scripts};
use super::writer::NodeMap;
use super::{Result, StoreError};
use crate::config::RedisConfig;
use crate::keys::KeySchema;
use std::time::Duration;

/// What every role's handle holds: the connection, the key schema, the scripts and the settings. Its only
/// public methods are what every role may use; everything else is for the handles in this folder.
pub struct Shared {
    pub(in crate::redis) conn: client::Connection,
    pub(in crate::redis) keys: KeySchema,
    pub(in crate::redis) caps: LeaderCaps,
    pub(in crate::redis) timeout: Duration,
    pub(in crate::redis) clock: std::sync::Arc<clock::ClockOffset>,
    pub(in crate::redis) scripts: scripts::Scripts,
    /// The URL names a Redis Cluster: no command may touch two partitions.
    pub(in crate::redis) cluster: bool,
    /// How errors name the server.
    pub(in crate::redis) server: String,
    /// Replicas that must confirm an append before it returns (WAIT).
    pub(in crate::redis) wait_replicas: u32,
    /// How long a partition remembers the key an append without one was given on a cluster.
    pub(in crate::redis) generated_key_retention: Duration,
    /// On a cluster, the primary of each partition, for appends grouped by node.
    pub(in crate::redis) nodes: std::sync::Arc<NodeMap>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("server", &self.server)
            .field("keys", &self.keys)
            .finish()
    }
}

impl Shared {
    /// Another reference to the same connection and settings, for a handle of this folder. (Not `Clone`: a
    /// `Shared` outside this folder could otherwise be turned into any handle.)
    pub(in crate::redis) fn share(&self) -> Shared {
        Shared {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            caps: self.caps,
            timeout: self.timeout,
            clock: self.clock.clone(),
            scripts: self.scripts.clone(),
            cluster: self.cluster,
            server: self.server.clone(),
            wait_replicas: self.wait_replicas,
            generated_key_retention: self.generated_key_retention,
            nodes: self.nodes.clone(),
        }
    }

    /// The deployment's key schema (partitions, the partition of a video).
    pub fn keys(&self) -> &KeySchema {
        &self.keys
    }

    /// How errors name the Redis server (`Redis at host:port`, `Redis Cluster at ...`), without credentials.
    pub fn server_name(&self) -> &str {
        &self.server
    }

    /// Whether the connection is to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Round trip to Redis (readiness).
    pub async fn ping(&self) -> Result<()> {
        let _: String = self
            .on_key("PING", &self.keys.log(0), Vec::<String>::new())
            .await?;
        Ok(())
    }
}

/// Declares a role handle: a newtype over [`Shared`] that reaches the shared part by `Deref` and nothing else;
/// with `store.getter`, also [`RedisStore`]'s method that hands it out, declared beside it.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, store.$getter:ident) => {
        handle!($(#[$doc])* $name);

        impl $crate::redis::RedisStore {
            $(#[$doc])*
            pub fn $getter(&self) -> $name {
                $name::new(self.share())
            }
        }
    };
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name {
            shared: Shared,
        }

        impl $name {
            pub(in crate::redis) fn new(shared: Shared) -> Self {
                Self { shared }
            }
        }

        impl Clone for $name {
            fn clone(&self) -> Self {
                Self::new(self.shared.share())
            }
        }

        impl std::ops::Deref for $name {
            type Target = Shared;
            fn deref(&self) -> &Shared {
                &self.shared
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.shared).finish()
            }
        }
    };
}
pub(in crate::redis) use handle;

handle!(
    /// The connection to Redis, from which each role takes its handle.
    RedisStore
);

impl RedisStore {
    /// Builds the client and starts connecting. Returns at once: while Redis is unreachable every command
    /// fails within the configured timeout, and the client keeps reconnecting in the background.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        let timeout = cfg.timeout();
        let conn = client::Connection::open(&cfg.redis_url, cfg.redis_ca_file.as_deref(), timeout)?;
        let cluster = conn.is_cluster();
        let store = Self::new(Shared {
            conn,
            keys: KeySchema::new(cfg.key_prefix.clone(), cfg.partitions),
            caps: LeaderCaps::for_partitions(cfg.partitions),
            timeout,
            clock: Default::default(),
            scripts: scripts::Scripts::load(),
            cluster,
            server: cfg.redis_url.server_name(),
            wait_replicas: cfg.wait_replicas,
            generated_key_retention: Duration::from_secs(300),
            nodes: Default::default(),
        });
        // Give the first connection a moment so a healthy start is ready at once; not fatal when Redis is down.
        let _ = store.ping().await;
        Ok(store)
    }

    /// The same store remembering the keys it generates for appends without one (on a cluster, or with
    /// replicas awaited) for `retention`, like producers' keys.
    pub fn with_generated_key_retention(mut self, retention: Duration) -> Self {
        self.shared.generated_key_retention = retention;
        self
    }

    /// The same store with other leader caps: tests use tiny ones so that trims and refills happen often.
    pub fn with_leader_caps(mut self, caps: LeaderCaps) -> Self {
        assert!(
            0 < caps.min && caps.min <= caps.keep && caps.keep < caps.max,
            "leader caps must satisfy 0 < min <= keep < max"
        );
        self.shared.caps = caps;
        self
    }

    /// Lets the connection go: it closes once the last command in flight has its answer and the last handle
    /// is dropped.
    pub async fn quit(&self) {}

    /// Records this process's layout if the deployment has none yet, and refuses one that differs.
    pub async fn check_layout(&self) -> Result<()> {
        self.shared.check_layout().await
    }

    /// [`Self::check_layout`] at a process's start: a layout that differs, or settings that cannot work (a
    /// cluster node behind a single-node URL, credentials refused), are errors (the process must not
    /// start); Redis not answering yet is only logged, since a service may start before its Redis.
    pub async fn check_layout_at_start(&self) -> Result<()> {
        match self.check_layout().await {
            Err(e @ (StoreError::Layout { .. } | StoreError::Config(_))) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "could not check the deployment's layout in Redis yet");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

impl Shared {
    /// Records this process's layout (partition count, key layout version) if the deployment has none yet,
    /// and refuses one that differs ([`StoreError::Layout`]): a process with another partition count would
    /// look for videos in the wrong partitions and drop them from the rankings, or write them there.
    pub(in crate::redis) async fn check_layout(&self) -> Result<()> {
        self.check_server_kind().await?;
        let configured = self.keys.layout_value();
        let layout = self.keys.layout();
        let _: Option<String> = self
            .on_key("SET", &layout, vec![layout.as_str(), &configured, "NX"])
            .await?;
        let recorded: Option<String> = self.on_key("GET", &layout, vec![&layout]).await?;
        match recorded {
            Some(recorded) if recorded != configured => Err(StoreError::Layout {
                recorded,
                configured,
            }),
            _ => Ok(()),
        }
    }

    /// A single-node URL that names a Redis Cluster node would reach the partitions of that node only (the
    /// others answer MOVED): refused, saying which URL to use.
    async fn check_server_kind(&self) -> Result<()> {
        if self.cluster {
            return Ok(());
        }
        // A server that refuses INFO (some managed services rename it) is taken at its URL's word.
        let Ok(info) = self
            .on_key::<String, _>("INFO", &self.keys.layout(), vec!["cluster"])
            .await
        else {
            return Ok(());
        };
        if super::Info::parse(&info).field("cluster_enabled") == Some("1") {
            return Err(StoreError::Config(format!(
                "{} is a Redis Cluster node: set TOPK_REDIS_URL to redis-cluster://host:port?node=host:port&... \
                 (rediss-cluster:// with TLS) to use the cluster",
                self.server_name()
            )));
        }
        Ok(())
    }
}
