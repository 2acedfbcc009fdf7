//! Test support: a private `redis-server` and PostgreSQL for one test run, and isolation per test.
//!
//! The servers (and a Redis Cluster, for the tests that ask for one with [`cluster_url`]) start on first
//! use, on free loopback ports, with data in a temporary folder, and a watchdog shell stops them and removes
//! the folder when the test process exits (statics are never dropped).
//! `TOPK_TEST_REDIS_URL` / `TOPK_TEST_DATABASE_URL` (a server URL ending in `/postgres`) /
//! `TOPK_TEST_REDIS_CLUSTER_URL` (a `redis-cluster://` URL) reuse running servers.
//! Each test isolates itself with [`unique_name`] (a Redis key prefix) and [`fresh_database`].
//! Tests that kill, freeze or restart Redis start their own with [`RedisServer::start`] (or
//! [`RedisServer::start_persistent`]), and observe any server with [`RedisConn`], a client of their own.
//! Tests that kill or freeze a cluster node, or move a slot, start their own [`RedisCluster`].
//!
//! # Layout
//! - [`mod@servers`]: the shared servers of a test process (and its shared cluster, [`cluster_url`]),
//!   [`unique_name`] and [`fresh_database`].
//! - [`redis_server`]: [`RedisServer`], a redis-server a test owns.
//! - [`redis_cluster`]: [`RedisCluster`], a Redis Cluster a test owns (kill, freeze, failover, live slot
//!   migration), and [`slot_of`], a key's hash slot.
//! - [`resp`]: [`RedisConn`], a blocking RESP client to observe a server.
//! - [`postgres`]: [`PgServer`], `psql` and the PostgreSQL programs.
//! - [`tls`]: [`TlsCerts`], a private CA and a server certificate for loopback, a TLS-only
//!   [`TlsRedisServer`], and [`tls_postgres`], a PostgreSQL that refuses plain connections.
//! - [`process`]: signals, ports, and the watchdog that cleans up after the test process.
//! - [`kafka`]: [`KafkaBroker`], a Kafka-compatible broker (tansu; memory storage, or durable on disk) a test
//!   owns: bootstrap address, topics, kill and restart.
//! - [`log_capture`]: [`LogCapture`], what the code under test logs, for the test to read; and
//!   [`init_test_log`], which prints the logs only when `TEST_LOG` is set.
//! - [`wait`]: [`wait_until`], a condition polled to a deadline instead of a sleep, and [`holds_for`], a
//!   bounded check that something does not happen.
//! - `stack` (feature `stack`): `Stack`, `topk-ingest` and `topk-api` in the test's process on free ports, on
//!   a key prefix and a database of their own, and the ranking poller.
//! - [`chromium`]: a headless Chromium for the web page's tests (installed once with apt-get when missing),
//!   loading a page for its DOM or a screenshot.
//! - [`fixtures`]: typed async fixtures over topk's own types: a store on the shared Redis, a migrated
//!   database, the whole log applied, every window retired and sealed, and the brute-force window oracle.

pub mod chromium;
pub mod fixtures;
pub mod kafka;
pub mod log_capture;
pub mod postgres;
pub mod process;
pub mod redis_access;
pub mod redis_cluster;
pub mod redis_server;
pub mod resp;
pub mod servers;
#[cfg(feature = "stack")]
pub mod stack;
pub mod tls;
pub mod wait;

pub use kafka::KafkaBroker;
pub use log_capture::{init_test_log, LogCapture};
pub use postgres::{pg_bin, psql, PgServer};
pub use process::unique_name;
pub use process::{free_port, signal, wait_port};
pub use redis_access::RedisAccess;
pub use redis_cluster::{port_serving, slot_of, RedisCluster, SlotRange};
pub use redis_server::RedisServer;
pub use resp::{RedisConn, Reply};
pub use servers::{cluster_url, fresh_database, servers, Servers};
#[cfg(feature = "stack")]
pub use stack::{Stack, StackBuilder};
pub use tls::{tls_postgres, TlsCerts, TlsRedisServer};
pub use wait::{holds_for, poll_until, wait_until};
