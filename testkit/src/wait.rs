//! Waiting on a condition instead of sleeping: [`wait_until`] polls a check until it holds or a deadline
//! passes, then fails naming what was awaited and the last answer seen ([`poll_until`] returns that instead);
//! [`holds_for`] is its converse, for a check that something does *not* happen, polled for a bound the caller
//! justifies.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between two polls; it doubles after each miss up to [`MAX_POLL`], so a condition that
/// holds at once costs a few milliseconds and a long wait costs a poll every 50 ms.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(50);

/// What a polled check answers: `true`, `Some(value)` or `Ok(value)` when it holds; otherwise what it saw,
/// for the failure message.
pub trait Outcome {
    /// What the wait returns once the check holds.
    type Value;
    /// The value, or a description of what was seen instead.
    fn into_result(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn into_result(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".into())
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `check` until it holds and returns its value; panics with `what` and the last answer once `within`
/// has passed. A check under way at the deadline is waited for (up to `within` itself: one that hangs fails
/// too), so that one slow answer near the end still counts, as it would in a hand-written loop.
pub async fn wait_until<O, F, Fut>(what: impl Display, within: Duration, check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    match poll_until(within, check).await {
        Ok(value) => value,
        Err(last) => panic!("{what}: not within {within:?}; last seen: {last}"),
    }
}

/// [`wait_until`] for a caller that goes on either way: the value once `check` holds, or the last answer once
/// `within` has passed.
pub async fn poll_until<O, F, Fut>(within: Duration, mut check: F) -> Result<O::Value, String>
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = Instant::now() + within;
    let mut pause = FIRST_POLL;
    loop {
        let last = match tokio::time::timeout(within, check()).await {
            Ok(answer) => match answer.into_result() {
                Ok(value) => return Ok(value),
                Err(last) => last,
            },
            Err(_) => return Err(format!("a check did not answer within {within:?}")),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Polls `check` for `bound` and panics, with `what` and the answer, the first time it does not hold: a check
/// that something does not happen. Use it only where no event can tell that the thing can no longer happen;
/// the caller says why `bound` suffices (for example, the period of the loop that would make it happen).
pub async fn holds_for<O, F, Fut>(what: impl Display, bound: Duration, mut check: F)
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let end = Instant::now() + bound;
    loop {
        if let Err(seen) = check().await.into_result() {
            panic!("{what}: {seen}");
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(MAX_POLL.min(left)).await;
    }
}
