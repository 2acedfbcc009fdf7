//! What a test sent and what each request was answered.

use std::collections::HashMap;

/// One batch of views: (video, count) pairs.
pub type Batch = Vec<(String, u64)>;

/// What the test sent and what each request was answered, per video.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Views of batches answered 202: each must be counted exactly once.
    pub accepted: HashMap<String, u64>,
    /// Views of batches that got no answer, or an error status: each may be counted at most once.
    pub unanswered: HashMap<String, u64>,
    pub views_sent: u64,
    pub views_accepted: u64,
    pub views_unanswered: u64,
    /// Views refused with a status (503, 429, ...), a subset of the unanswered ones.
    pub views_refused: u64,
    pub batches_accepted: u64,
    /// Each accepted batch: when its request started and when its answer came (wall ms), and its views.
    pub accepted_batches: Vec<(i64, i64, Batch)>,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        for (v, n) in &other.accepted {
            *self.accepted.entry(v.clone()).or_default() += n;
        }
        for (v, n) in &other.unanswered {
            *self.unanswered.entry(v.clone()).or_default() += n;
        }
        self.views_sent += other.views_sent;
        self.views_accepted += other.views_accepted;
        self.views_unanswered += other.views_unanswered;
        self.views_refused += other.views_refused;
        self.batches_accepted += other.batches_accepted;
        self.accepted_batches
            .extend(other.accepted_batches.iter().cloned());
    }
}
