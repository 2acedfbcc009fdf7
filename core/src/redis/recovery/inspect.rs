//! Reads of the window state itself, for tests and `verify`: a window's hash, its leader set, and every way
//! the leader set breaks the rules that make its top K exact.

use crate::domain::Window;
use crate::keys::Partition;
use crate::redis::{Recovery, Result, Shared};
use std::collections::HashMap;

impl Recovery {
    /// The newest slice of `window` already retired on partition `p` (`None` before its first retirement).
    pub async fn cursor(&self, p: Partition, window: Window) -> Result<Option<i64>> {
        self.read_cursor(p, window).await
    }

    /// Every video's count in `window` of partition `p` (tests, verification).
    pub async fn window_counts(
        &self,
        p: Partition,
        window: Window,
    ) -> Result<HashMap<String, u64>> {
        self.hash_counts(self.keys.window(p, window)).await
    }

    /// The leaders of `window` on partition `p` with their scores (tests check them against the hash).
    pub async fn leader_counts(
        &self,
        p: Partition,
        window: Window,
    ) -> Result<HashMap<String, u64>> {
        let all = self.range_rev(self.keys.leaders(p, window), None).await?;
        Ok(all.into_iter().map(|r| (r.video_id, r.views)).collect())
    }

    /// Every way `window`'s leader set on partition `p` breaks the rules of `lua/leaders.lua` (empty when it
    /// holds them, so its top K is exact): tests and `verify` call it.
    pub async fn leader_violations(&self, p: Partition, window: Window) -> Result<Vec<String>> {
        let counts = self.window_counts(p, window).await?;
        let leaders = self.leader_counts(p, window).await?;
        let name = window.as_str();
        let state: Vec<Option<u64>> = self
            .on_first_key(
                "HMGET",
                vec![
                    self.keys.leader_state(p),
                    format!("{name}:enter"),
                    format!("{name}:complete"),
                ],
            )
            .await?;
        let enter = state.first().copied().flatten().unwrap_or(1);
        let complete = state.get(1).copied().flatten().unwrap_or(1);
        let mut out = Vec::new();
        if enter > complete {
            out.push(format!("enter {enter} is above complete {complete}"));
        }
        for (video, score) in &leaders {
            match counts.get(video) {
                Some(n) if n == score && *n >= enter => {}
                n => out.push(format!(
                    "leader {video} has score {score}, count {n:?}, enter {enter}"
                )),
            }
        }
        for (video, n) in &counts {
            if *n >= complete && !leaders.contains_key(video) {
                out.push(format!(
                    "{video} counts {n} >= complete {complete} but is no leader"
                ));
            }
        }
        let above = leaders.values().filter(|n| **n >= complete).count();
        if above < self.caps.min as usize && complete > 1 {
            out.push(format!(
                "only {above} leaders >= complete {complete} of {} videos",
                counts.len()
            ));
        }
        Ok(out)
    }

    /// A hash of counts per video (HGETALL).
    async fn hash_counts(&self, key: String) -> Result<HashMap<String, u64>> {
        let all: HashMap<String, i64> = self.on_first_key("HGETALL", vec![key]).await?;
        Ok(all
            .into_iter()
            .map(|(video, n)| (video, n.max(0) as u64))
            .collect())
    }
}

impl Shared {
    /// The newest slice of `window` already retired on partition `p`, for any role that needs it.
    pub(in crate::redis) async fn read_cursor(
        &self,
        p: Partition,
        window: Window,
    ) -> Result<Option<i64>> {
        self.on_first_key(
            "HGET",
            vec![self.keys.cursors(p), window.as_str().to_owned()],
        )
        .await
    }
}
