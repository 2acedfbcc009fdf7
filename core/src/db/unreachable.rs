//! A failed Postgres connection's error, reworded to name the server and the cause (connection refused,
//! timed out, TLS), as `redis/unreachable.rs` does for Redis: sqlx reports "Connection refused (os error
//! 111)" without the address. The pool connects lazily, inside whichever statement needs a connection, so
//! callers that log or answer a Postgres failure pass it through [`named`] (the reads of history do it
//! themselves and return a [`HistoryError`]).

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Connection;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the diagnostic connection try of a timed-out pool may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// At most one diagnostic connection per this period: when Postgres is saturated rather than down, every
/// failing request opening one more connection would add to its load. Between probes the last cause is used.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The cause a probe found: its kind and its message, named (None: Postgres answered, the pool was only full).
type Cause = Option<(io::ErrorKind, String)>;

/// The latest probe of each server (`host:port`): when, and what it found.
static LAST_PROBE: Mutex<Vec<(String, Instant, Cause)>> = Mutex::new(Vec::new());

/// `e` naming the server of `pool` (`Postgres at host:port`) when it is a connection failure; any other
/// error (a statement's) as it is. The variant is kept, except `PoolTimedOut`: the pool retries failed
/// connections until its acquire timeout and then drops their cause, so one direct connection try (at most
/// `PROBE_TIMEOUT`) finds it again, and its error, named, is returned instead.
pub async fn named(pool: &PgPool, e: sqlx::Error) -> sqlx::Error {
    let options = pool.connect_options();
    let server = format!("Postgres at {}:{}", options.get_host(), options.get_port());
    let e = match e {
        sqlx::Error::PoolTimedOut => {
            let recent = LAST_PROBE
                .lock()
                .expect("probe lock")
                .iter()
                .find(|(s, at, _)| *s == server && at.elapsed() < PROBE_EVERY)
                .map(|(_, _, cause)| cause.clone());
            let cause = match recent {
                Some(cause) => cause,
                None => {
                    let cause = probe(&options).await;
                    let mut probes = LAST_PROBE.lock().expect("probe lock");
                    probes.retain(|(s, _, _)| *s != server);
                    probes.push((server.clone(), Instant::now(), cause.clone()));
                    cause
                }
            };
            match cause {
                Some((kind, text)) => sqlx::Error::Io(io::Error::new(kind, text)),
                // Postgres answers: every connection of the pool was busy.
                None => return sqlx::Error::PoolTimedOut,
            }
        }
        other => other,
    };
    match e {
        sqlx::Error::Io(io) if io.to_string().starts_with("Postgres at ") => sqlx::Error::Io(io),
        sqlx::Error::Io(io) => {
            let cause = match io.kind() {
                io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                io::ErrorKind::TimedOut => io.to_string(),
                _ => io.to_string(),
            };
            sqlx::Error::Io(io::Error::new(io.kind(), format!("{server}: {cause}")))
        }
        sqlx::Error::Tls(tls) => sqlx::Error::Tls(format!("{server}: {tls}").into()),
        other => other,
    }
}

/// A failed read of history (ranking snapshots, a video's hours), which the API answers 503: a connection
/// failure names the server and its cause ([`named`]), so the reads do that themselves.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HistoryError(sqlx::Error);

impl HistoryError {
    /// Runs `read`, statements on `pool`; its error, named.
    pub(crate) async fn naming<T>(
        pool: &PgPool,
        read: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, Self> {
        match read.await {
            Ok(value) => Ok(value),
            Err(e) => Err(Self(named(pool, e).await)),
        }
    }
}

/// One direct connection try: the cause it failed with, named, or None when Postgres answered.
async fn probe(options: &sqlx::postgres::PgConnectOptions) -> Cause {
    let server = format!("Postgres at {}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
        Ok(Err(sqlx::Error::Io(io))) if io.kind() == io::ErrorKind::ConnectionRefused => {
            Some((io.kind(), format!("{server}: connection refused")))
        }
        Ok(Err(sqlx::Error::Tls(tls))) => Some((io::ErrorKind::Other, format!("{server}: {tls}"))),
        Ok(Err(sqlx::Error::Io(io))) => Some((io.kind(), format!("{server}: {io}"))),
        Ok(Err(e)) => Some((io::ErrorKind::Other, format!("{server}: {e}"))),
        Err(_) => Some((
            io::ErrorKind::TimedOut,
            format!("{server}: timed out after {} ms", PROBE_TIMEOUT.as_millis()),
        )),
    }
}
