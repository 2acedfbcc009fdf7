//! A failed Postgres connection's error, reworded to name the server and the cause (connection refused,
//! timed out, TLS), as `redis/unreachable.rs` does for Redis: sqlx reports "Connection refused (os error
//! 111)" without the address. The pool connects lazily, inside whichever statement needs a connection, so
//! callers that log or answer a Postgres failure pass it through [`named`].

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Connection;
use std::io;
use std::time::Duration;

/// How long the diagnostic connection try of a timed-out pool may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `e` naming the server of `pool` (`Postgres at host:port`) when it is a connection failure; any other
/// error (a statement's) as it is. The variant is kept, except `PoolTimedOut`: the pool retries failed
/// connections until its acquire timeout and then drops their cause, so one direct connection try (at most
/// [`PROBE_TIMEOUT`]) finds it again, and its error, named, is returned instead.
pub async fn named(pool: &PgPool, e: sqlx::Error) -> sqlx::Error {
    let options = pool.connect_options();
    let server = format!("Postgres at {}:{}", options.get_host(), options.get_port());
    let e = match e {
        sqlx::Error::PoolTimedOut => {
            match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options)).await {
                Ok(Err(cause)) => cause,
                Err(_) => sqlx::Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("timed out after {} ms", PROBE_TIMEOUT.as_millis()),
                )),
                // Postgres answers: every connection of the pool was busy.
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return sqlx::Error::PoolTimedOut;
                }
            }
        }
        other => other,
    };
    match e {
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
