//! The connection under every handle.
//!
//! - `client`: the connection to one node or to a Redis Cluster, and where each command goes.
//! - `route`: commands about a partition, which failures are retried, and scripts run where their keys live.
//! - `url`: the Redis URL, parsed once into one typed value (nodes, cluster, TLS, credentials, redacted).
//! - `tls`: the CA file a TLS server is verified against.
//! - `unreachable`: a failed connection's error, naming the server and the cause (refused, timed out, TLS,
//!   authentication, a cluster node behind a single-node URL).
//! - `clock`: Redis's clock and the append deadline on it.
//! - `scripts`: the Lua scripts in `lua/`.

pub(in crate::redis) mod client;
pub(in crate::redis) mod clock;
mod route;
pub(in crate::redis) mod scripts;
mod tls;
mod unreachable;
pub(in crate::redis) mod url;
