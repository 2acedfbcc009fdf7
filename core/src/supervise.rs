//! Supervised background tasks: a process's loops (workers, retirer, refreshers, scheduler) run in one
//! [`Supervisor`]. A loop that ends before the process is told to stop, returns an error or panics is a dead
//! loop in a process that would otherwise look healthy: the supervisor logs its cause, marks the process
//! unhealthy, stops every other task, and makes the process exit non-zero so that its supervisor (systemd,
//! Kubernetes, compose) restarts it.

use futures::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Whether every supervised loop of the process still runs: `/readyz` answers 503 once one has died.
#[derive(Debug, Clone, Default)]
pub struct Liveness(Arc<AtomicBool>);

impl Liveness {
    /// Whether a supervised task has died.
    pub fn failed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn fail(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Named long-running tasks that share one stop token.
pub struct Supervisor {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    stop: CancellationToken,
    liveness: Liveness,
}

impl Supervisor {
    /// A supervisor whose tasks stop on `stop`; it cancels `stop` itself when one of them dies, and marks
    /// `liveness` (the flag the process's `/readyz` reads).
    pub fn new(stop: CancellationToken, liveness: Liveness) -> Self {
        Self {
            tasks: JoinSet::new(),
            stop,
            liveness,
        }
    }

    /// Whether no task was spawned.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts `task` under `name`. It must run until the stop token is cancelled; ending earlier, with an
    /// error or by panicking, fails the process.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.spawn(async move {
            // Caught here rather than from the JoinError, so that the log names the task that panicked.
            let outcome = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => Err(anyhow::anyhow!(
                    "panicked: {}",
                    panic_message(panic.as_ref())
                )),
            };
            (name, outcome)
        });
    }

    /// Waits until every task has ended. `Ok` when they all ended because the process was told to stop;
    /// otherwise the first task that died is named in the error, after the others were stopped and awaited.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_death: Option<anyhow::Error> = None;
        while let Some(joined) = self.tasks.join_next().await {
            let death = match joined {
                Ok((_, Ok(()))) if self.stop.is_cancelled() => None,
                Ok((name, Ok(()))) => Some(anyhow::anyhow!("task '{name}' ended on its own")),
                Ok((name, Err(e))) => Some(e.context(format!("task '{name}' failed"))),
                Err(e) => Some(anyhow::anyhow!("a task could not be joined: {e}")),
            };
            if let Some(death) = death {
                tracing::error!(
                    error = format!("{death:#}"),
                    "a background task died: stopping the process"
                );
                self.liveness.fail();
                self.stop.cancel();
                first_death.get_or_insert(death);
            }
        }
        first_death.map_or(Ok(()), Err)
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A loop that runs until the stop token, as every supervised task should.
    fn well_behaved(stop: &CancellationToken) -> impl Future<Output = anyhow::Result<()>> {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            Ok(())
        }
    }

    /// Runs `dying` beside a well-behaved loop; returns the error `wait` gave, the stop token and the flag.
    async fn supervise(
        dying: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> (anyhow::Result<()>, CancellationToken, Liveness) {
        let (stop, liveness) = (CancellationToken::new(), Liveness::default());
        let mut tasks = Supervisor::new(stop.clone(), liveness.clone());
        tasks.spawn("steady", well_behaved(&stop));
        tasks.spawn("dying", dying);
        let waited = tokio::time::timeout(Duration::from_secs(10), tasks.wait())
            .await
            .expect("the supervisor stopped the other task");
        (waited, stop, liveness)
    }

    #[tokio::test]
    async fn a_panic_an_error_or_an_early_end_stops_everything_and_names_the_task() {
        let panicking = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("injected failure");
        };
        let failing = async { Err(anyhow::anyhow!("Redis said no")) };
        let ending = async { Ok(()) };
        for (outcome, want) in [
            (
                supervise(panicking).await,
                "task 'dying' failed: panicked: injected failure",
            ),
            (
                supervise(failing).await,
                "task 'dying' failed: Redis said no",
            ),
            (supervise(ending).await, "task 'dying' ended on its own"),
        ] {
            let (waited, stop, liveness) = outcome;
            let err = waited.expect_err("a dead task went unnoticed");
            assert_eq!(format!("{err:#}"), want);
            assert!(stop.is_cancelled() && liveness.failed());
        }
    }

    #[tokio::test]
    async fn tasks_that_end_because_the_process_stops_are_no_failure() {
        let (stop, liveness) = (CancellationToken::new(), Liveness::default());
        let mut tasks = Supervisor::new(stop.clone(), liveness.clone());
        for _ in 0..3 {
            tasks.spawn("steady", well_behaved(&stop));
        }
        stop.cancel();
        tasks.wait().await.unwrap();
        assert!(!liveness.failed());
    }
}
