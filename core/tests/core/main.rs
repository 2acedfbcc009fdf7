//! The core's integration tests, one binary: the Redis store against a real redis-server (`store`), and the
//! HTTP server loop's limits on real sockets (`serve`).

mod serve;
mod store;
