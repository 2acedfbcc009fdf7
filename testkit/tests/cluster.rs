//! The testkit's Redis Cluster: slots as the server computes them, a live slot migration, and a failover.

use std::time::{Duration, Instant};
use topk_testkit::{cluster_url, slot_of, RedisCluster, RedisConn, Reply};

fn text(reply: std::io::Result<Reply>) -> Option<String> {
    reply.expect("reply").text()
}

/// The shared cluster's URL names three primaries, and every node computes slots as `slot_of` does.
#[test]
fn slot_of_agrees_with_the_server() {
    let url = cluster_url();
    let rest = url.strip_prefix("redis-cluster://").expect("cluster URL");
    let (first, query) = rest.split_once('?').expect("node parameters");
    assert_eq!(query.matches("node=127.0.0.1:").count(), 2, "{url}");
    let port: u16 = first.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut conn = RedisConn::open(port).expect("connect to the shared cluster");
    for key in [
        "P:{3}:log",
        "P:{3}:day",
        "P:{15}:log",
        "topk:P:{0}:minute",
        "{}x",
        "a{b}c{d}",
        "no tag",
        "",
    ] {
        let slot = conn.cmd(&["CLUSTER", "KEYSLOT", key]).expect("KEYSLOT");
        assert_eq!(slot.int(), Some(i64::from(slot_of(key))), "{key}");
    }
}

/// A slot moves with its keys while the source answers ASK for the keys already moved, and the new owner
/// serves them afterwards.
#[test]
fn a_slot_migrates_live_with_its_keys() {
    let cluster = RedisCluster::start(3, 2_000);
    let key = "P:{3}:log";
    let slot = slot_of(key);
    let from = cluster.primary_for_slot(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    let keys: Vec<String> = (0..10).map(|i| format!("P:{{3}}:k{i}")).collect();
    let mut src = cluster.conn(from);
    for k in std::iter::once(key).chain(keys.iter().map(String::as_str)) {
        assert_eq!(text(src.cmd(&["SET", k, "v"])), Some("OK".into()));
    }
    assert!(text(cluster.conn(to).cmd(&["GET", key])).is_none());

    let mut steps = Vec::new();
    cluster.migrate_slot_each(slot, to, 4, |moved| {
        steps.push(moved);
        if moved > 0 {
            // The first batch (GETKEYSINSLOT order) is on the target now: the source redirects with ASK.
            let mut probe = cluster.conn(from);
            let asked = (0..=10)
                .map(|i| {
                    if i == 10 {
                        key.to_owned()
                    } else {
                        format!("P:{{3}}:k{i}")
                    }
                })
                .map(|k| probe.cmd(&["GET", &k]).expect("GET"))
                .filter(|r| matches!(r, Reply::Error(e) if e.starts_with("ASK ")))
                .count();
            assert_eq!(asked, moved, "keys redirected after {moved} moved");
        }
    });
    assert_eq!(steps, vec![0, 4, 8, 11]);

    assert_eq!(cluster.primary_for_slot(slot), to);
    let mut dst = cluster.conn(to);
    assert_eq!(text(dst.cmd(&["GET", key])), Some("v".into()));
    assert_eq!(
        dst.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
            .unwrap()
            .int(),
        Some(11)
    );
    match src.cmd(&["GET", key]).unwrap() {
        Reply::Error(e) => assert_eq!(e, format!("MOVED {slot} 127.0.0.1:{to}")),
        other => panic!("the old owner answered {other:?}"),
    }
    // A slow migration of an empty slot: the pause applies once, before the (empty) key loop.
    let empty = slot_of("P:{4}:log");
    let owner = cluster.primary_for_slot(empty);
    let target = *cluster.primaries().iter().find(|&&p| p != owner).unwrap();
    let started = Instant::now();
    cluster.migrate_slot_with(empty, target, 10, Duration::from_millis(200));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(cluster.primary_for_slot(empty), target);
}

/// Killing a primary promotes its replica, which still holds what was replicated before the kill.
#[test]
fn a_killed_primary_fails_over_to_its_replica() {
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1_000);
    let start_time = started.elapsed();
    let slot = slot_of("P:{7}:log");
    let primary = cluster.primary_for_slot(slot);
    let replica = cluster.replica_of(primary);
    assert_ne!(cluster.node_pid(primary), 0);
    let mut conn = cluster.conn(primary);
    assert_eq!(
        text(conn.cmd(&["SET", "P:{7}:log", "kept"])),
        Some("OK".into())
    );
    assert_eq!(
        conn.cmd(&["WAIT", "1", "5000"]).unwrap().int(),
        Some(1),
        "replicated"
    );

    let killed = Instant::now();
    cluster.kill(primary);
    assert_eq!(cluster.node_pid(primary), 0);
    let new = cluster.wait_failover(primary);
    let failover_time = killed.elapsed();
    assert_eq!(new, replica);
    assert_eq!(cluster.primary_for_slot(slot), replica);
    assert!(cluster.primaries().contains(&replica));
    assert!(!cluster.url().contains(&format!(":{primary}")));
    assert_eq!(
        text(cluster.conn(replica).cmd(&["GET", "P:{7}:log"])),
        Some("kept".into())
    );

    // The old primary comes back as a replica of its successor.
    cluster.start_again(primary);
    let end = Instant::now() + Duration::from_secs(30);
    while cluster.replica_of(replica) != primary {
        assert!(
            Instant::now() < end,
            "{primary} did not rejoin as a replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_ok();
    println!("cluster start {start_time:?}, failover {failover_time:?} with a 1 s node timeout");
}

/// A frozen primary is replaced like a dead one, and rejoins as a replica once it runs again.
#[test]
fn a_frozen_primary_is_replaced() {
    let cluster = RedisCluster::start(3, 1_000);
    let primary = cluster.primaries()[0];
    let replica = cluster.replica_of(primary);
    cluster.pause(primary);
    assert_eq!(cluster.wait_failover(primary), replica);
    cluster.resume(primary);
    let end = Instant::now() + Duration::from_secs(30);
    while role(primary).as_deref() != Some("slave") {
        assert!(
            Instant::now() < end,
            "{primary} did not turn into a replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_ok();
}

/// The first word of ROLE on a node (`master` or `slave`), if it answers.
fn role(port: u16) -> Option<String> {
    let reply = RedisConn::open(port).ok()?.cmd(&["ROLE"]).ok()?;
    reply.array()?.first()?.text()
}
