//! The core's integration tests, one binary: the Redis store against a real redis-server (`store`), a
//! source's records appended exactly once by offset (`source`), the HTTP server loop's limits on real sockets
//! (`serve`), TLS to Redis and Postgres with what a failed connection says (`tls`), Redis with credentials
//! (`credentials`), batches under one `Idempotency-Key` (`idempotency`), batches appended as a group, one
//! script per cluster primary (`group`) and the view wire format (`wire`). The spans around Redis and Postgres
//! calls are tested in a binary of their own (`tests/spans.rs`).

mod credentials;
mod group;
mod idempotency;
mod rankings;
mod serve;
mod source;
mod store;
mod tls;
mod wire;
