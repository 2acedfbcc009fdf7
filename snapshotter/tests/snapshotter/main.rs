//! The snapshotter on real Postgres and Redis: idempotence, catch-up, concurrent writers, rebuild after a loss,
//! log replay after a rebuild, and the history endpoint.

mod faults;
mod helpers;
mod history;
mod leader;
mod rebuild;
mod snapshots;
mod verify;
mod writes;
