//! A failed connection's error, reworded to name the server and the cause an operator acts on: connection
//! refused (nothing listens: Redis down, wrong port), timed out (a firewall, a frozen server, a wrong host),
//! or TLS (certificate not trusted, wrong name, plain text on one side).
//!
//! redis-rs reports these as bare I/O errors ("Connection refused (os error 111)") without the address. The
//! reworded error keeps its I/O kind, so `RedisError::is_timeout` and the like still answer as before.

use crate::redis::StoreError;
use ::redis::RedisError;
use std::io;
use std::time::Duration;

/// `e` naming `server` (e.g. `Redis at 127.0.0.1:6379`) when it is a connection failure; any other error
/// (a reply of the server's) as it is.
pub(in crate::redis) fn name(e: StoreError, server: &str, timeout: Duration) -> StoreError {
    let StoreError::Redis(redis) = &e else {
        return e;
    };
    if redis.kind() == ::redis::ErrorKind::AuthenticationFailed
        || matches!(redis.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        return auth_failed(redis, server);
    }
    let Some(kind) = io_kind(redis) else {
        return e;
    };
    let cause = match kind {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out_after(timeout),
        // tokio-rustls reports every handshake failure (an untrusted or misnamed certificate, an alert from
        // the server, a peer that does not speak TLS) as InvalidData carrying rustls's error.
        io::ErrorKind::InvalidData => format!("TLS: {redis}"),
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe => {
            format!("connection closed by the server ({redis})")
        }
        _ => redis.to_string(),
    };
    StoreError::Redis(RedisError::from(io::Error::new(
        kind,
        format!("{server}: {cause}"),
    )))
}

/// The I/O error kind of a connection failure, `None` for any other error.
fn io_kind(e: &RedisError) -> Option<io::ErrorKind> {
    // redis-rs keeps the I/O error behind an `Arc<dyn Error>`, its source; the public predicates below tell
    // fewer kinds apart (not TLS's InvalidData) but still hold if that changes.
    let exact = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>())
        .and_then(|arc| arc.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    exact.or_else(|| {
        if e.is_connection_refusal() {
            Some(io::ErrorKind::ConnectionRefused)
        } else if e.is_timeout() {
            Some(io::ErrorKind::TimedOut)
        } else if e.is_connection_dropped() {
            Some(io::ErrorKind::ConnectionReset)
        } else {
            e.is_io_error().then_some(io::ErrorKind::Other)
        }
    })
}

/// The error of a command that got no answer within `timeout` (connecting included).
pub(in crate::redis) fn timed_out(server: &str, timeout: Duration) -> StoreError {
    StoreError::Redis(RedisError::from(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{server}: {}", timed_out_after(timeout)),
    )))
}

fn timed_out_after(timeout: Duration) -> String {
    format!("timed out after {} ms", timeout.as_millis())
}

/// A command's error reply, explained where the operator has something to change: a single-node URL that
/// points at a cluster node (MOVED, ASK, CLUSTERDOWN: "use redis-cluster://"), and an authentication that
/// failed. Any other error as it is.
pub(in crate::redis) fn explain_reply(
    e: RedisError,
    server: &str,
    single_node_url: bool,
) -> StoreError {
    match e.code() {
        Some("MOVED" | "ASK" | "CLUSTERDOWN") if single_node_url => StoreError::Config(format!(
            "{server} is a Redis Cluster node (it answered {e}): set TOPK_REDIS_URL to \
             redis-cluster://host:port?node=host:port&... (rediss-cluster:// with TLS) to use the cluster"
        )),
        Some("NOAUTH" | "WRONGPASS") => auth_failed(&e, server),
        _ => StoreError::Redis(e),
    }
}

/// An authentication refused by the server, naming it and what to check; the password is never in it.
fn auth_failed(e: &RedisError, server: &str) -> StoreError {
    StoreError::Config(format!(
        "{server}: authentication failed ({e}): check the user and password in TOPK_REDIS_URL \
         (redis://user:password@host:port, or redis://:password@host:port for the default user)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(kind: io::ErrorKind, text: &str) -> StoreError {
        StoreError::Redis(RedisError::from(io::Error::new(kind, text.to_owned())))
    }

    #[test]
    fn connection_failures_name_the_server_and_the_cause() {
        let t = Duration::from_millis(2000);
        let s = "Redis at 127.0.0.1:6390";
        // (what the client said, what the error says, whether it still reads as that kind of failure)
        let refused: fn(&RedisError) -> bool = RedisError::is_connection_refusal;
        let timeout: fn(&RedisError) -> bool = RedisError::is_timeout;
        let any: fn(&RedisError) -> bool = |_| true;
        for (kind, said, says, still) in [
            (
                io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
                "connection refused",
                refused,
            ),
            (
                io::ErrorKind::TimedOut,
                "deadline has elapsed",
                "timed out after 2000 ms",
                timeout,
            ),
            (
                io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
                "TLS: invalid peer certificate: UnknownIssuer",
                any,
            ),
        ] {
            let named = name(io_error(kind, said), s, t);
            assert_eq!(named.to_string(), format!("redis: {s}: {says}"));
            assert!(matches!(&named, StoreError::Redis(e) if still(e)), "{said}");
        }
        assert_eq!(
            timed_out(s, t).to_string(),
            "redis: Redis at 127.0.0.1:6390: timed out after 2000 ms"
        );
    }

    #[test]
    fn other_errors_stay_as_they_are() {
        let reply = StoreError::Reply("nonsense".into());
        assert_eq!(
            name(reply, "Redis at a:1", Duration::ZERO).to_string(),
            "unexpected reply from redis: nonsense"
        );
    }
}
