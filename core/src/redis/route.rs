//! Where a command goes and when it is sent again. Every command carries the hash slot of the key it is about,
//! so on Redis Cluster it goes straight to the node that owns the key's partition (fred follows MOVED and ASK
//! itself: a redirected command has not run). Replies that say the command did not run (TRYAGAIN while a slot
//! is half migrated, CLUSTERDOWN during a failover, LOADING) are retried here with a short backoff until the
//! store's timeout; a lost connection is not, since the command may have run (appends retry those under
//! their idempotency key, `log.rs`).

use super::{RedisStore, Result, StoreError};
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use std::future::Future;
use std::time::{Duration, Instant};

/// First and longest pause between two tries of a command the cluster did not run.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(250));

/// The hash slot of `key` (its `{partition}` tag decides it).
pub(super) fn slot_of(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}

impl StoreError {
    /// Redis answered that it did not run the command: sending it again cannot double anything.
    pub fn is_not_run(&self) -> bool {
        let StoreError::Redis(e) = self else {
            return false;
        };
        let details = e.details().trim_start();
        [
            "TRYAGAIN",
            "CLUSTERDOWN",
            "MOVED",
            "ASK",
            "LOADING",
            "MASTERDOWN",
        ]
        .iter()
        .any(|reply| details.starts_with(reply))
    }
}

impl RedisStore {
    /// Runs `op` again while Redis answers that it did not run it, for at most the store's timeout.
    pub(super) async fn retry_not_run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let give_up = Instant::now() + self.timeout;
        let mut pause = BACKOFF.0;
        loop {
            match op().await {
                Err(e) if e.is_not_run() && Instant::now() + pause < give_up => {
                    tracing::debug!(error = %e, "redis did not run the command; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BACKOFF.1);
                }
                other => return other,
            }
        }
    }

    /// Runs `script` on the node that owns its keys (they share one partition's slot). A node that does not
    /// know the script yet (new, restarted, or promoted) gets it first, that node alone: loading it on every
    /// node would make one unreachable node stop the writes to all the others.
    pub(super) async fn eval<R: FromValue, T: Into<Value>>(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<T>,
    ) -> Result<R> {
        let args: Vec<Value> = args.into_iter().map(Into::into).collect();
        self.retry_not_run(|| async {
            match self
                .client
                .evalsha(script.sha1().clone(), keys.clone(), args.clone())
                .await
            {
                Err(e) if e.details().starts_with("NOSCRIPT") => {
                    let lua = script.lua().map(|l| l.to_string()).unwrap_or_default();
                    let node = keys.first().cloned().unwrap_or_default();
                    let _: String = self
                        .on_key("SCRIPT", &node, vec!["LOAD".to_owned(), lua])
                        .await?;
                    Ok(self
                        .client
                        .evalsha(script.sha1().clone(), keys.clone(), args.clone())
                        .await?)
                }
                other => Ok(other?),
            }
        })
        .await
    }

    /// Sends the command `name` with `args` to the node that owns `key`'s slot. `key` is the command's key
    /// (for commands like SCAN that have none: a key of the partition whose node is meant).
    pub(super) async fn on_key<R: FromValue, T: Into<Value>>(
        &self,
        name: &'static str,
        key: &str,
        args: Vec<T>,
    ) -> Result<R> {
        let args: Vec<Value> = args.into_iter().map(Into::into).collect();
        let command = CustomCommand::new_static(name, ClusterHash::Custom(slot_of(key)), false);
        self.retry_not_run(|| async {
            Ok(self.client.custom(command.clone(), args.clone()).await?)
        })
        .await
    }

    /// [`Self::on_key`] for a command whose first argument is its key.
    pub(super) async fn on_first_key<R: FromValue>(
        &self,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<R> {
        let key = args.first().cloned().unwrap_or_default();
        self.on_key(name, &key, args).await
    }
}
