//! The snapshotter on real Postgres and Redis: idempotence, catch-up, concurrent writers, rebuild after a loss,
//! log replay after a rebuild, and the history endpoint.
//!
//! One binary for the crate (one link), a module per subject:
//! - `helpers`: private Redis prefixes, fresh databases, the real worker step, the rows Postgres holds;
//! - `snapshots`: the minute job (idempotence, catch-up, open minutes, chunks); `writes`: its Postgres writes
//!   (COPY and upsert paths, overlapping writers, byte-order ids);
//! - `leader`: one writer at a time; `schedule`: `run` on its schedules; `cli`: the command line;
//! - `faults`: Postgres stopped or a connection killed under a run;
//! - `rebuild`: `rebuild-redis` after a loss; `rebuild_late`: and after back-dated views; `verify`: the
//!   consistency report;
//! - `history`: ranking snapshots through the API, and the upkeep of `video_stats`;
//! - `range`: the exact top K of any range against a brute-force sum over the views sent; `range_threshold`:
//!   the threshold algorithm on larger, skewed or flat lists against the plain SQL.

mod cli;
mod faults;
mod helpers;
mod history;
mod late;
mod leader;
mod one_off;
mod range;
mod range_threshold;
mod rebuild;
mod rebuild_late;
mod rebuild_rerun;
mod schedule;
mod snapshots;
mod verify;
mod writes;
