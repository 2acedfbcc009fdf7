//! A slot moved live from one primary to another, as `redis-cli --cluster reshard` does.

use super::slots::SLOTS;
use super::topology::wait_until;
use super::{RedisCluster, WAIT};
use crate::resp::{RedisConn, Reply};
use std::time::Duration;

impl RedisCluster {
    /// Moves `slot` with its keys to the primary on `to_port`, live, as `redis-cli --cluster reshard` does
    /// (100 keys per `MIGRATE`), and waits until every live node sees the new owner.
    pub fn migrate_slot(&self, slot: u16, to_port: u16) {
        self.migrate_slot_each(slot, to_port, 100, |_| {});
    }

    /// [`Self::migrate_slot`] `keys_per_step` keys at a time, sleeping `pause_between_steps` once the slot is
    /// marked migrating and after every batch: slow enough for a load to meet the slot mid-move (`ASK`).
    pub fn migrate_slot_with(
        &self,
        slot: u16,
        to_port: u16,
        keys_per_step: usize,
        pause_between_steps: Duration,
    ) {
        self.migrate_slot_each(slot, to_port, keys_per_step, |_| {
            std::thread::sleep(pause_between_steps)
        });
    }

    /// [`Self::migrate_slot`] `keys_per_step` keys at a time, calling `between(keys moved so far)` once the
    /// slot is marked importing on the target and migrating on the source, and after every batch.
    pub fn migrate_slot_each(
        &self,
        slot: u16,
        to_port: u16,
        keys_per_step: usize,
        mut between: impl FnMut(usize),
    ) {
        assert!(slot < SLOTS, "slot {slot} is out of range");
        assert!(keys_per_step > 0, "keys_per_step must be positive");
        let from_port = self.primary_for_slot(slot);
        if from_port == to_port {
            return;
        }
        assert!(
            self.primaries().contains(&to_port),
            "{to_port} is not a primary serving slots"
        );
        let (from_id, to_id) = (self.node_id(from_port), self.node_id(to_port));
        let slot_s = slot.to_string();
        let mut from = self.conn(from_port);
        let mut to = self.conn(to_port);
        ok(
            &mut to,
            &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id],
        );
        ok(
            &mut from,
            &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id],
        );
        between(0);
        let (to_s, count_s) = (to_port.to_string(), keys_per_step.to_string());
        let mut moved = 0;
        loop {
            let keys = ok(&mut from, &["CLUSTER", "GETKEYSINSLOT", &slot_s, &count_s]);
            let keys: Vec<String> = keys
                .array()
                .unwrap_or_default()
                .iter()
                .filter_map(Reply::text)
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            ok(&mut from, &args);
            moved += keys.len();
            between(moved);
        }
        // The target first (it bumps its config epoch, so its claim wins), then the source, then the others.
        let others: Vec<u16> = self
            .primaries()
            .into_iter()
            .filter(|p| ![from_port, to_port].contains(p) && self.live_ports().contains(p))
            .collect();
        for port in [to_port, from_port].into_iter().chain(others) {
            ok(
                &mut self.conn(port),
                &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id],
            );
        }
        let bound = WAIT + Duration::from_millis(2 * self.node_timeout_ms);
        wait_until(
            &format!("every node to see slot {slot} on {to_port}"),
            bound,
            || {
                let map = self.check_ok()?;
                match map.iter().find(|r| (r.start..=r.end).contains(&slot)) {
                    Some(r) if r.primary == to_port => Ok(()),
                    other => Err(format!("slot {slot} is on {other:?}")),
                }
            },
        );
    }
}

/// Sends a command that must not fail.
fn ok(conn: &mut RedisConn, args: &[&str]) -> Reply {
    match conn.cmd(args) {
        Ok(Reply::Error(e)) => panic!("{} replied -{e}", args[..2].join(" ")),
        Ok(reply) => reply,
        Err(e) => panic!("{}: {e}", args[..2].join(" ")),
    }
}
