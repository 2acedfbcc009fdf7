//! The workload: video ids drawn Zipf(s) over N videos, encoded as the POST body clients send.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use std::collections::HashMap;
use topk_core::domain::VideoId;

/// Draws video ids `v<rank>`, rank 1 the most viewed.
pub struct Workload {
    zipf: Zipf<f64>,
    rng: StdRng,
}

impl Workload {
    /// Ranks 1..=`videos` with exponent `s`; the same `seed` draws the same ids.
    pub fn new(videos: u64, s: f64, seed: u64) -> anyhow::Result<Self> {
        Ok(Self {
            zipf: Zipf::new(videos as f64, s)?,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// One video id.
    pub fn video(&mut self) -> String {
        format!("v{}", self.zipf.sample(&mut self.rng) as u64)
    }

    /// A POST body of `n` views (count 1 each, as apps send them) and its number of views.
    pub fn batch(&mut self, n: usize) -> (Vec<u8>, u64) {
        let mut body = Vec::with_capacity(n * 24);
        body.push(b'[');
        for i in 0..n {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"videoId\":\"");
            body.extend_from_slice(self.video().as_bytes());
            body.extend_from_slice(b"\"}");
        }
        body.push(b']');
        (body, n as u64)
    }

    /// `n` views counted per video, as the receiver hands a batch to the log (for phases that log directly).
    pub fn counted(&mut self, n: usize) -> anyhow::Result<Vec<(VideoId, u64)>> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for _ in 0..n {
            *counts.entry(self.video()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(v, n)| Ok((VideoId::parse(&v).map_err(anyhow::Error::msg)?, n)))
            .collect()
    }

    /// Pre-generated bodies, so the load generator spends its time sending rather than drawing.
    pub fn batches(&mut self, count: usize, n: usize) -> Vec<(Bytes, u64)> {
        (0..count)
            .map(|_| {
                let (body, views) = self.batch(n);
                (Bytes::from(body), views)
            })
            .collect()
    }
}
