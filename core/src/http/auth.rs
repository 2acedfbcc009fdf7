//! Bearer tokens for writes, compared in constant time, with rotation (several tokens at once), the
//! redacted [`Secret`] a token is configured as, and the [`RefusalLog`] that keeps refusals from flooding
//! the log.

use axum::http::HeaderValue;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Compares a presented secret with the expected one in time that depends only on the presented length:
/// neither where they differ nor the expected length shows in the timing (the length is folded into the
/// result instead of returning early; the attacker already knows the presented length).
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        // Nothing to index; an empty secret is refused at configuration anyway.
        return presented.is_empty();
    }
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, byte) in presented.iter().enumerate() {
        // black_box keeps the optimizer from turning the fold into an early exit.
        diff = std::hint::black_box(diff | (byte ^ expected[i % expected.len()]));
    }
    diff == 0
}

/// The bearer tokens that authorize writes. Several are accepted at once so a token can be rotated without
/// downtime: deploy `new,old`, move the clients to `new`, then deploy `new` alone.
#[derive(Clone)]
pub struct BearerTokens(Vec<String>);

impl BearerTokens {
    /// Parses a comma-separated list (spaces around items ignored). Refuses an empty list or an empty item: a
    /// set but empty variable is a mistake, and must not mean "no authentication".
    pub fn parse(raw: &str) -> Result<Self, String> {
        let tokens: Vec<String> = raw.split(',').map(|t| t.trim().to_owned()).collect();
        if tokens.iter().any(String::is_empty) {
            return Err(
                "the token list has an empty token (a stray comma, or an empty value?)".into(),
            );
        }
        Ok(Self(tokens))
    }

    /// Whether an `Authorization` header value is `Bearer <one of the tokens>`. Every token is compared, so
    /// the time does not tell which one (if any) matched.
    pub fn accepts(&self, authorization: Option<&HeaderValue>) -> bool {
        // `<scheme> <token>`; the scheme is case-insensitive (RFC 9110 11.1), the token compared exactly.
        let presented = authorization
            .map(HeaderValue::as_bytes)
            .and_then(|v| {
                let (scheme, token) = v.split_at_checked(b"Bearer ".len())?;
                scheme.eq_ignore_ascii_case(b"Bearer ").then_some(token)
            })
            .unwrap_or(b"");
        self.0.iter().fold(false, |ok, token| {
            ok | constant_time_eq(presented, token.as_bytes())
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for BearerTokens {
    /// Never prints a token: configurations are logged and shown in panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BearerTokens(<{} redacted>)", self.0.len())
    }
}

/// A secret from the command line or environment; `Debug` never shows it (configurations end up in logs and
/// panic messages), and parsing never fails, so clap never echoes it in an error either.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// At most one log line of refused writes per this interval and process.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Aggregates refused writes into at most one log line per interval: a client sending wrong tokens as fast as
/// it can (31,000 a second wrote 6 MB/s of log) costs one line per interval, which counts them. The first
/// refusal is logged at once; the ones after it are counted, and the next refusal at least an interval after
/// the last line logs their number (so a burst's tail shows in the next line; the metric counts each at once).
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    /// When the last line was logged, and the refusals since it that no line counted yet.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one refusal at `now`. Returns the number of refusals to log (this one and those not logged yet)
    /// when a line is due, None when this one is only counted.
    pub fn record(&self, now: Instant) -> Option<u64> {
        // A std mutex: held for a few instructions, never across an await.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last_line, pending) = &mut *state;
        *pending += 1;
        let due = last_line.is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if !due {
            return None;
        }
        *last_line = Some(now);
        Some(std::mem::take(pending))
    }

    /// The interval between two lines.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secretsecret", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn tokens_parse_as_a_list_and_refuse_empty_items() {
        let t = BearerTokens::parse("new, old").unwrap();
        assert_eq!(t.len(), 2);
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(t.accepts(Some(&header("Bearer new"))));
        assert!(t.accepts(Some(&header("Bearer old"))));
        assert!(!t.accepts(Some(&header("Bearer new, old"))));
        assert!(!t.accepts(Some(&header("Bearer other"))));
        assert!(!t.accepts(Some(&header("new"))));
        assert!(!t.accepts(Some(&header("Bearer new "))));
        assert!(!t.accepts(Some(&header("Bearernew"))));
        // The scheme is case-insensitive (RFC 9110 11.1); the token is not.
        assert!(t.accepts(Some(&header("bearer new"))));
        assert!(t.accepts(Some(&header("BEARER old"))));
        assert!(!t.accepts(Some(&header("bearer NEW"))));
        assert!(!t.accepts(None));
        for bad in ["", " ", "a,", ",a", "a,,b"] {
            assert!(BearerTokens::parse(bad).is_err(), "{bad:?}");
        }
        assert!(!format!("{t:?}").contains("new"));
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(log.record(at(0)), Some(1), "the first is logged at once");
        for ms in 1..=500 {
            assert_eq!(log.record(at(ms)), None);
        }
        assert_eq!(log.record(at(9_999)), None);
        assert_eq!(
            log.record(at(10_000)),
            Some(502),
            "the ones since, and this one"
        );
        assert_eq!(log.record(at(10_001)), None);
        // After a quiet time the next refusal is logged at once, with the one still pending.
        assert_eq!(log.record(at(60_000)), Some(2));
    }

    proptest! {
        /// The comparison agrees with `==` on arbitrary bytes, including different lengths and prefixes.
        #[test]
        fn constant_time_eq_is_equality(a in proptest::collection::vec(any::<u8>(), 0..40),
                                        b in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
            let mut longer = b.clone();
            longer.extend_from_slice(&b);
            prop_assert_eq!(constant_time_eq(&longer, &b), b.is_empty());
        }
    }
}
