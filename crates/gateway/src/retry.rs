//! How long to wait before retrying a request a provider refused as rate limited or
//! overloaded.

use axum::http::HeaderMap;
use domain::Duration;

use crate::config::RetryPolicy;

/// The statuses worth waiting for: rate limited, unavailable, and Anthropic's overloaded.
pub(crate) fn retryable(status: u16) -> bool {
    matches!(status, 429 | 503 | 529)
}

/// Whether an error body says the account's quota or credit is used up (OpenAI's
/// `insufficient_quota` 429, Anthropic's `billing_error`): no wait makes that pass, so it is
/// never retried.
pub(crate) fn is_quota(body: &[u8]) -> bool {
    const CODES: [&[u8]; 3] = [
        b"insufficient_quota",
        b"billing_hard_limit_reached",
        b"billing_error",
    ];
    CODES
        .iter()
        .any(|code| body.windows(code.len()).any(|w| w == *code))
}

/// The wait before the attempt after `attempt` (from 1): what the provider asked for in
/// `retry-after-ms` or `retry-after` (seconds), else exponential backoff from the policy's
/// initial delay; never longer than the policy's maximum.
pub(crate) fn delay(headers: &HeaderMap, attempt: u32, policy: &RetryPolicy) -> Duration {
    let asked = header_ms(headers, "retry-after-ms", 1.0)
        .or_else(|| header_ms(headers, "retry-after", 1000.0));
    let wait = asked.unwrap_or_else(|| {
        let doublings = attempt.saturating_sub(1).min(32);
        policy.initial_delay.saturating_mul(1u64 << doublings)
    });
    wait.min(policy.max_delay)
}

/// A header holding a non-negative number, scaled to milliseconds. `retry-after` may also hold
/// an HTTP date; that form is left to the backoff, as providers send seconds.
fn header_ms(headers: &HeaderMap, name: &str, scale: f64) -> Option<Duration> {
    let text = headers.get(name)?.to_str().ok()?;
    let value: f64 = text.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some(Duration::from_millis((value * scale).ceil() as u64))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    #[test]
    fn quota_errors_are_told_from_rate_limits() {
        assert!(super::is_quota(
            br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#
        ));
        assert!(super::is_quota(
            br#"{"type":"error","error":{"type":"billing_error"}}"#
        ));
        assert!(!super::is_quota(
            br#"{"error":{"type":"requests","code":"rate_limit_exceeded"}}"#
        ));
    }

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let none = HeaderMap::new();
        let waits: Vec<u64> = (1..=6)
            .map(|a| delay(&none, a, &policy()).as_millis())
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(delay(&none, u32::MAX, &policy()).as_millis(), 1000);
    }

    #[test]
    fn the_providers_retry_after_wins_and_is_capped() {
        let p = policy();
        assert_eq!(
            delay(&headers(&[("retry-after", "0")]), 3, &p).as_millis(),
            0
        );
        assert_eq!(
            delay(&headers(&[("retry-after", "0.25")]), 1, &p).as_millis(),
            250
        );
        assert_eq!(
            delay(&headers(&[("retry-after", "30")]), 1, &p).as_millis(),
            1000
        );
        assert_eq!(
            delay(
                &headers(&[("retry-after-ms", "42"), ("retry-after", "1")]),
                1,
                &p
            )
            .as_millis(),
            42,
            "the finer header wins"
        );
        // A date or garbage falls back to backoff.
        let dated = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(delay(&dated, 2, &p).as_millis(), 200);
        assert_eq!(
            delay(&headers(&[("retry-after", "-5")]), 1, &p).as_millis(),
            100
        );
    }

    #[test]
    fn only_rate_limits_and_overload_are_retried() {
        assert!(retryable(429) && retryable(503) && retryable(529));
        assert!(!retryable(500) && !retryable(400) && !retryable(401) && !retryable(502));
    }
}
