//! The core's integration tests, one binary: the Redis store against a real redis-server (`store`), the
//! HTTP server loop's limits on real sockets (`serve`), and TLS to Redis and Postgres with what a failed
//! connection says (`tls`).

mod serve;
mod store;
mod tls;
