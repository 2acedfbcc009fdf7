//! Redis with credentials, as managed services run it: a password (`requirepass`, `masterauth`) or an ACL
//! user with the `default` user off, on one node and on a Redis Cluster, plain and TLS only (a cluster's bus
//! and replication too). Each store appends, applies and ranks, and on a cluster waits for a replica, which
//! proves the replicas authenticate as well. The password never shows in the settings or an error.

use std::path::PathBuf;
use topk_core::config::RedisConfig;
use topk_core::domain::{VideoId, Window};
use topk_testkit::fixtures::{self, apply_log, redis_config_at, store_for, top};
use topk_testkit::redis_access::PASSWORD;
use topk_testkit::{RedisAccess, RedisCluster, RedisServer, TlsCerts};

fn config(url: &str, ca: Option<PathBuf>, wait_replicas: u32) -> RedisConfig {
    RedisConfig {
        redis_ca_file: ca,
        wait_replicas,
        ..redis_config_at(url, "auth", 6)
    }
}

/// Appends views to every partition through a store on `cfg`, applies them and reads the ranking back.
async fn append_apply_rank(cfg: &RedisConfig) {
    let settings = format!("{cfg:?}");
    assert!(
        !settings.contains(PASSWORD),
        "the settings print the password: {settings}"
    );
    let store = store_for(cfg).await;
    let views: Vec<(VideoId, u64)> = (0..12u64)
        .map(|i| (VideoId::parse(&format!("v{i}")).unwrap(), i + 1))
        .collect();
    store.writer().append(&views).await.expect("append");
    assert_eq!(apply_log(&store, "w", 100).await, 78);
    let top = top(&store, Window::All, 10).await;
    assert_eq!(
        top[..3],
        [("v11".into(), 12), ("v10".into(), 11), ("v9".into(), 10)]
    );
}

/// The error a ping through a store on `cfg` ends with, which never shows the password.
async fn ping_error(cfg: &RedisConfig) -> String {
    let err = fixtures::ping_error(cfg).await;
    assert!(
        !err.contains(PASSWORD),
        "the error shows the password: {err}"
    );
    err
}

#[tokio::test]
async fn one_node_with_a_password() {
    let server = RedisServer::start_secured(RedisAccess::password());
    assert!(server.url().starts_with("redis://:"));
    append_apply_rank(&config(&server.url(), None, 0)).await;

    let wrong = server.url().replace(PASSWORD, "not-the-password");
    let at = format!(
        "Redis at 127.0.0.1:{}: authentication failed",
        server.port()
    );
    let err = ping_error(&config(&wrong, None, 0)).await;
    assert!(err.contains(&at) && err.contains("TOPK_REDIS_URL"), "{err}");
    let none = format!("redis://127.0.0.1:{}", server.port());
    let err = ping_error(&config(&none, None, 0)).await;
    assert!(err.contains(&at), "{err}");
}

#[tokio::test]
async fn one_node_with_an_acl_user_over_tls() {
    let certs = TlsCerts::new();
    let server = RedisServer::start_secured(RedisAccess::acl_user().with_tls(&certs));
    assert!(server.url().starts_with("rediss://topk:"));
    append_apply_rank(&config(&server.url(), Some(certs.ca.clone()), 0)).await;

    // The default user is off: a password alone is not enough.
    let default_user = server.url().replace("topk:", ":");
    let err = ping_error(&config(&default_user, Some(certs.ca.clone()), 0)).await;
    assert!(err.contains("authentication failed"), "{err}");
}

#[tokio::test]
async fn a_cluster_with_a_password() {
    let cluster = tokio::task::spawn_blocking(|| {
        RedisCluster::start_secured(3, 5_000, RedisAccess::password())
    })
    .await
    .unwrap();
    let url = cluster.url();
    assert!(
        url.starts_with("redis-cluster://:") && url.contains("?node="),
        "{url}"
    );
    // Waiting for a replica also proves the replicas authenticate to their primaries (masterauth).
    append_apply_rank(&config(&url, None, 1)).await;
}

#[tokio::test]
async fn a_tls_only_cluster_with_an_acl_user() {
    let certs = TlsCerts::new();
    let access = RedisAccess::acl_user().with_tls(&certs);
    let cluster =
        tokio::task::spawn_blocking(move || RedisCluster::start_secured(3, 5_000, access))
            .await
            .unwrap();
    let url = cluster.url();
    assert!(url.starts_with("rediss-cluster://topk:"), "{url}");
    append_apply_rank(&config(&url, Some(certs.ca.clone()), 1)).await;
}
