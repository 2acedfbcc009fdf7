//! Window state written whole: a window's hash and leader set, and a sealed minute (restores, benchmark
//! fills and tests).

use crate::domain::Window;
use crate::keys::Partition;
use crate::redis::connection::client::Value;
use crate::redis::{Recovery, Result};
use crate::sealed;

impl Recovery {
    /// Replaces `window` of partition `p` with `counts`: its hash, its leader set and thresholds (restores,
    /// benchmark fills). Leaders are every video when they fit under the cap, else those at or above the
    /// KEEP-th count, which is then the threshold.
    pub async fn seed_window<'a>(
        &self,
        p: Partition,
        window: Window,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<()> {
        let k = &self.keys;
        let (hash, set) = (k.window(p, window), k.leaders(p, window));
        let _: i64 = self
            .on_first_key("DEL", vec![hash.clone(), set.clone()])
            .await?;
        let mut counts: Vec<(&str, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        for chunk in counts.chunks(1000) {
            let mut args = vec![hash.clone()];
            for (video, n) in chunk {
                args.push((*video).to_owned());
                args.push(n.to_string());
            }
            let _: i64 = self.on_first_key("HSET", args).await?;
        }
        let mut threshold = 1;
        if counts.len() > self.caps.max as usize {
            counts.sort_unstable_by_key(|(_, n)| std::cmp::Reverse(*n));
            threshold = counts[self.caps.keep as usize - 1].1;
            counts.retain(|(_, n)| *n >= threshold);
        }
        self.zadd_chunks(set, counts.into_iter()).await?;
        let name = window.as_str();
        let _: Value = self
            .on_first_key(
                "HSET",
                vec![
                    k.leader_state(p),
                    format!("{name}:enter"),
                    threshold.to_string(),
                    format!("{name}:complete"),
                    threshold.to_string(),
                ],
            )
            .await?;
        let _: i64 = self
            .on_first_key("HDEL", vec![k.leader_state(p), format!("{name}:fill")])
            .await?;
        Ok(())
    }

    /// Writes one closed minute of partition `p` as a sealed blob and indexes it (restores, benchmark fills).
    pub async fn seed_sealed_minute(
        &self,
        p: Partition,
        minute: i64,
        counts: &[(String, u64)],
    ) -> Result<()> {
        let k = &self.keys;
        let blob = sealed::encode(counts.iter().map(|(video, n)| (video.as_str(), *n)));
        let _: Value = self
            .on_first_key("SET", vec![k.sealed_minute(p, minute), blob])
            .await?;
        let _: Value = self
            .on_first_key(
                "ZADD",
                vec![k.minute_index(p), minute.to_string(), minute.to_string()],
            )
            .await?;
        Ok(())
    }

    /// Adds `(member, score)` pairs to a sorted set, 1000 per command (leader sets, benchmark baselines).
    pub async fn zadd_chunks<'a>(
        &self,
        key: String,
        members: impl Iterator<Item = (&'a str, u64)>,
    ) -> Result<()> {
        let mut args = vec![key.clone()];
        for (video, n) in members {
            args.push(n.to_string());
            args.push(video.to_owned());
            if args.len() >= 2001 {
                let _: i64 = self
                    .on_first_key("ZADD", std::mem::replace(&mut args, vec![key.clone()]))
                    .await?;
            }
        }
        if args.len() > 1 {
            let _: i64 = self.on_first_key("ZADD", args).await?;
        }
        Ok(())
    }
}
