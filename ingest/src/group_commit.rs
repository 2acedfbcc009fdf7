//! Group commit: the batches of concurrent `POST /v1/views` requests go to the log together, one entry per
//! partition for the group ([`LogWriter::append_group`]), instead of one entry per partition and request.
//! Every per-entry cost Redis pays (the script, the stream entry, the workers' read and acknowledgement) is
//! then paid once per group, and the workers' steps carry more views each, which they aggregate better.
//!
//! Each request is still answered only after its own batch is stored (or refused), with its own outcome, and
//! stays retry-safe under its own key. The first request of a group starts it; the requests that arrive
//! within the linger (`TOPK_INGEST_LINGER_MS`), or while every one of the [`IN_FLIGHT`] groups already being
//! appended waits on Redis, join it. So under load groups grow on their own, and an idle receiver adds at
//! most the linger to a request's time. The group is appended by a task of its own, so a client that hangs up
//! cancels nothing of the others' answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use topk_core::domain::IdempotencyKey;
use topk_core::redis::{AppendOutcome, AppendRequest, LogWriter, StoreError};
use topk_core::wire::DatedBatch;

/// Groups appended at once: while they all wait on Redis, further requests gather into the next group.
pub const IN_FLIGHT: usize = 4;

/// Views in one group at most: on one node a group is one script, which must stay short.
pub const MAX_GROUP_VIEWS: usize = 100_000;

/// One request waiting for its group.
struct Waiting {
    batch: DatedBatch,
    key: Option<IdempotencyKey>,
    answer: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The group being gathered, if any.
#[derive(Default)]
struct Forming {
    waiting: Vec<Waiting>,
    views: usize,
}

/// The receiver's group commit: shared by every request of the process.
#[derive(Clone)]
pub struct GroupCommit {
    writer: LogWriter,
    linger: Duration,
    retention: Duration,
    forming: Arc<Mutex<Option<Forming>>>,
    slots: Arc<Semaphore>,
}

impl GroupCommit {
    /// Group commit over `writer`: a group gathers for `linger` after its first batch; keys are kept for
    /// `retention`.
    pub fn new(writer: LogWriter, linger: Duration, retention: Duration) -> Self {
        Self {
            writer,
            linger,
            retention,
            forming: Arc::default(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Appends `batch` (under `key`, when the producer sent one) with the batches that arrive with it, and
    /// returns its own outcome.
    pub async fn append(
        &self,
        batch: DatedBatch,
        key: Option<IdempotencyKey>,
    ) -> Result<AppendOutcome, StoreError> {
        let (answer, answered) = oneshot::channel();
        let size = batch.elements();
        let waiting = Waiting { batch, key, answer };
        let starts_group = {
            let mut forming = self.forming.lock().expect("group lock");
            match forming.as_mut() {
                Some(group) if group.views + size <= MAX_GROUP_VIEWS => {
                    group.views += size;
                    group.waiting.push(waiting);
                    false
                }
                // None gathering, or this one would make it too large: it starts the next (a full group
                // being gathered is taken by its own task as usual).
                _ => {
                    let full = forming.replace(Forming {
                        waiting: vec![waiting],
                        views: size,
                    });
                    if let Some(full) = full {
                        self.spawn_append(full);
                    }
                    true
                }
            }
        };
        if starts_group {
            let this = self.clone();
            tokio::spawn(async move { this.gather_and_append().await });
        }
        answered
            .await
            .map_err(|_| StoreError::Reply("the group of this batch was dropped".into()))?
    }

    /// Lets the group gather for the linger and until a slot is free, then takes it and appends it.
    async fn gather_and_append(&self) {
        tokio::time::sleep(self.linger).await;
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let group = self.forming.lock().expect("group lock").take();
        if let Some(group) = group {
            append(&self.writer, group, self.retention).await;
        }
        drop(slot);
    }

    /// Appends a group that was full before its gatherer took it, in a task of its own.
    fn spawn_append(&self, group: Forming) {
        let (writer, retention, slots) = (self.writer.clone(), self.retention, self.slots.clone());
        tokio::spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            append(&writer, group, retention).await;
            drop(slot);
        });
    }
}

/// Appends one group and answers each of its requests.
async fn append(writer: &LogWriter, group: Forming, retention: Duration) {
    let requests: Vec<AppendRequest<'_>> = group
        .waiting
        .iter()
        .map(|w| AppendRequest {
            views: &w.batch.undated,
            dated: &w.batch.dated,
            key: w.key.as_ref(),
        })
        .collect();
    metrics::counter!("topk_ingest_groups_total").increment(1);
    let outcomes = writer.append_group(&requests, retention).await;
    for (waiting, outcome) in group.waiting.into_iter().zip(outcomes) {
        // A request whose client is gone is still stored; only its answer is lost (it may retry under its
        // key, like any request whose answer was lost).
        let _ = waiting.answer.send(outcome);
    }
}
