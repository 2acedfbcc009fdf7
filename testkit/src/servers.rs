//! The Redis and PostgreSQL shared by one test process, started on first use, and names that keep tests
//! apart on them (a Redis key prefix, a database per test); and a Redis Cluster shared the same way, started
//! only for the tests that ask for it.

use crate::postgres::{psql, start_postgres};
use crate::process::{unique_name, watch_and_stop};
use crate::redis_cluster::RedisCluster;
use crate::redis_server::RedisServer;
use std::sync::OnceLock;

/// The servers shared by one test process.
#[derive(Debug)]
pub struct Servers {
    pub redis_url: String,
    /// URL of the `postgres` maintenance database, for creating test databases.
    pub postgres_admin_url: String,
    pg_port: u16,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

static CLUSTER_URL: OnceLock<String> = OnceLock::new();

/// The node timeout of the shared cluster: nothing kills its nodes, so it only bounds a stray hiccup.
const SHARED_CLUSTER_NODE_TIMEOUT_MS: u64 = 5_000;

/// The shared Redis and Postgres of this test process, started on first call.
pub fn servers() -> &'static Servers {
    SERVERS.get_or_init(|| {
        let redis_url = std::env::var("TOPK_TEST_REDIS_URL")
            .ok()
            .unwrap_or_else(|| {
                let server = RedisServer::start();
                let url = server.url();
                watch_and_stop(&format!("kill {}", server.pid()), &server.dir);
                std::mem::forget(server);
                url
            });
        let (postgres_admin_url, pg_port) = match std::env::var("TOPK_TEST_DATABASE_URL") {
            Ok(url) => {
                let port = url
                    .rsplit_once(':')
                    .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
                    .unwrap_or(5432);
                (url, port)
            }
            Err(_) => start_postgres(),
        };
        Servers {
            redis_url,
            postgres_admin_url,
            pg_port,
        }
    })
}

/// The `redis-cluster://` URL of the Redis Cluster shared by this test process (3 primaries with one replica
/// each), started on first call; `TOPK_TEST_REDIS_CLUSTER_URL` reuses a running one instead. Tests keep
/// apart on it with [`unique_name`] as on the shared Redis; one that kills a node or moves a slot starts a
/// [`RedisCluster`] of its own.
pub fn cluster_url() -> String {
    CLUSTER_URL
        .get_or_init(|| {
            std::env::var("TOPK_TEST_REDIS_CLUSTER_URL")
                .ok()
                .unwrap_or_else(|| {
                    let cluster = RedisCluster::start(3, SHARED_CLUSTER_NODE_TIMEOUT_MS);
                    let url = cluster.url();
                    // Its watchdog (started with it) stops the nodes once this process exits.
                    std::mem::forget(cluster);
                    url
                })
        })
        .clone()
}

/// Creates an empty database for one test and returns its URL.
pub fn fresh_database(label: &str) -> String {
    let s = servers();
    let name = unique_name(label);
    psql(s.pg_port, &format!("CREATE DATABASE {name}")).expect("create test database");
    let base = s
        .postgres_admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&s.postgres_admin_url);
    format!("{base}/{name}")
}
