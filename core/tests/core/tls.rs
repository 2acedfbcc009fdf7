//! TLS both ways against real servers, and what a failed connection says: a TLS-only redis-server and a
//! PostgreSQL that refuses plain connections, both with a certificate of the test's own CA.

use std::net::TcpListener;
use std::path::PathBuf;
use topk_core::config::RedisConfig;
use topk_core::domain::{VideoId, Window};
use topk_core::redis::{RedisStore, StoreError};
use topk_testkit::fixtures::{
    apply_log, migrated_pool_at, ping_error, redis_config_at, store_for, top,
};
use topk_testkit::{free_port, tls_postgres, TlsCerts, TlsRedisServer};

fn config(url: &str, ca: Option<PathBuf>, timeout_ms: u64) -> RedisConfig {
    RedisConfig {
        redis_ca_file: ca,
        redis_timeout_ms: timeout_ms,
        ..redis_config_at(url, "tls", 2)
    }
}

/// Asserts that a ping through a store on `cfg` fails saying `says`.
async fn assert_ping_fails(cfg: &RedisConfig, says: &str) {
    let err = ping_error(cfg).await;
    assert!(err.contains(says), "{err}");
}

/// Asserts that a ping to plain Redis on `port` of this host (commands timing out after `timeout_ms`) fails
/// naming the server, then saying `cause`.
async fn assert_plain_ping_fails(port: u16, timeout_ms: u64, cause: &str) {
    let cfg = config(&format!("redis://127.0.0.1:{port}"), None, timeout_ms);
    assert_ping_fails(&cfg, &format!("Redis at 127.0.0.1:{port}: {cause}")).await;
}

#[tokio::test]
async fn rediss_with_the_ca_file_appends_applies_and_ranks() {
    let certs = TlsCerts::new();
    let server = TlsRedisServer::start(&certs);
    let store = store_for(&config(&server.url(), Some(certs.ca.clone()), 5_000)).await;

    let views = [
        (VideoId::parse("a").unwrap(), 3),
        (VideoId::parse("b").unwrap(), 5),
    ];
    store.writer().append(&views).await.unwrap();
    assert_eq!(apply_log(&store, "w", 10).await, 8);

    let top = top(&store, Window::All, 10).await;
    assert_eq!(top, [("b".into(), 5), ("a".into(), 3)]);
}

#[tokio::test]
async fn rediss_without_the_ca_file_refuses_the_untrusted_certificate() {
    let certs = TlsCerts::new();
    let server = TlsRedisServer::start(&certs);
    // The system's roots do not include the test's CA.
    let at = format!("Redis at 127.0.0.1:{}", server.port());
    let untrusted = format!("{at}: TLS: invalid peer certificate: UnknownIssuer");
    assert_ping_fails(&config(&server.url(), None, 2_000), &untrusted).await;
}

#[tokio::test]
async fn plain_redis_to_the_tls_port_fails_naming_the_server() {
    let certs = TlsCerts::new();
    let server = TlsRedisServer::start(&certs);
    assert_plain_ping_fails(server.port(), 1_000, "").await;
}

#[tokio::test]
async fn a_ca_file_that_cannot_work_is_refused_at_start() {
    let certs = TlsCerts::new();
    let plain = config("redis://127.0.0.1:1", Some(certs.ca.clone()), 1_000);
    let err = RedisStore::connect(&plain).await.unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(
        err.to_string()
            .contains("TOPK_REDIS_CA_FILE is set but TOPK_REDIS_URL is not rediss://"),
        "{err}"
    );

    let missing = config(
        "rediss://127.0.0.1:1",
        Some("/nonexistent/ca.pem".into()),
        1_000,
    );
    let err = RedisStore::connect(&missing).await.unwrap_err().to_string();
    assert!(
        err.contains("TOPK_REDIS_CA_FILE /nonexistent/ca.pem: cannot be read"),
        "{err}"
    );
}

#[tokio::test]
async fn a_closed_port_is_reported_as_connection_refused() {
    let port = free_port();
    assert_plain_ping_fails(port, 1_000, "connection refused").await;
}

#[tokio::test]
async fn a_server_that_never_answers_is_reported_as_timed_out() {
    // Connecting succeeds (the kernel accepts into the backlog) but nothing ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    assert_plain_ping_fails(port, 300, "timed out after 300 ms").await;
}

#[tokio::test]
async fn postgres_verify_full_connects_and_plain_is_refused_by_the_server() {
    let certs = TlsCerts::new();
    let server = tls_postgres(&certs);
    let url = server.create_database("tls");

    let verified = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        certs.ca.display()
    );
    let pool = migrated_pool_at(&verified).await;
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl, "the connection is encrypted");

    let plain = topk_core::db::pool(&topk_core::config::DatabaseConfig {
        database_url: format!("{url}?sslmode=disable"),
    })
    .unwrap();
    let err = sqlx::query("SELECT 1")
        .execute(&plain)
        .await
        .expect_err("the server refuses a connection without TLS")
        .to_string();
    assert!(err.contains("no encryption"), "{err}");
}

#[tokio::test]
async fn postgres_failures_name_the_server_and_the_cause() {
    let port = free_port();
    let closed = topk_core::db::pool(&topk_core::config::DatabaseConfig {
        database_url: format!("postgres://postgres@127.0.0.1:{port}/topk"),
    })
    .unwrap();
    let err = sqlx::query("SELECT 1").execute(&closed).await.unwrap_err();
    let err = topk_core::db::unreachable::named(&closed, err)
        .await
        .to_string();
    assert!(
        err.contains(&format!("Postgres at 127.0.0.1:{port}: connection refused")),
        "{err}"
    );

    // verify-full without the test's CA: the server's certificate is not trusted.
    let certs = TlsCerts::new();
    let server = tls_postgres(&certs);
    let untrusted = topk_core::db::pool(&topk_core::config::DatabaseConfig {
        database_url: format!("{}?sslmode=verify-full", server.admin_url()),
    })
    .unwrap();
    let err = sqlx::query("SELECT 1")
        .execute(&untrusted)
        .await
        .unwrap_err();
    let err = topk_core::db::unreachable::named(&untrusted, err)
        .await
        .to_string();
    assert!(
        err.contains(&format!(
            "Postgres at 127.0.0.1:{}: invalid peer certificate: UnknownIssuer",
            server.port()
        )),
        "{err}"
    );
}
