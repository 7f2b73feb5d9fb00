//! How long to wait before retrying a request a provider refused as rate limited or
//! overloaded.

use axum::http::HeaderMap;
use domain::Duration;

use crate::config::RetryPolicy;

/// The statuses worth waiting for: rate limited, unavailable, and Anthropic's overloaded.
pub(crate) fn retryable(status: u16) -> bool {
    matches!(status, 429 | 503 | 529)
}

/// What a provider's refusal means for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The account's quota or credit is used up: no wait of seconds makes it pass. `reset` is
    /// how long until the provider says it resets, when it says.
    Quota {
        reason: String,
        reset: Option<Duration>,
    },
    /// A passing rate limit or overload: wait and try again.
    Busy,
    /// Anything else: passed on to the agent as it came.
    Other,
}

/// The error codes (OpenAI's `error.code` or `error.type`, Anthropic's `error.type`) that mean
/// a used-up quota or billing problem.
const QUOTA_CODES: [&str; 5] = [
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "billing_error",
    "credit_balance_too_low",
];

/// Tells a used-up quota from a passing rate limit by the provider's own error code, read as
/// JSON (`error.type`, `error.code`), and by Anthropic's credit-balance message on 400/402/403.
/// A body that is not JSON is searched for the codes as bytes, so a proxy that wraps the
/// provider's answer is still understood.
pub(crate) fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Refused {
    if !matches!(status, 400 | 402 | 403 | 429 | 503 | 529) {
        return Refused::Other;
    }
    let quota = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let error = &json["error"];
            let field = |name: &str| error[name].as_str().unwrap_or_default().to_owned();
            let (kind, code) = (field("type"), field("code"));
            let message = field("message").to_ascii_lowercase();
            let named = QUOTA_CODES
                .iter()
                .find(|c| **c == code || **c == kind)
                .map(|c| (*c).to_owned());
            let credit = matches!(status, 400 | 402 | 403)
                && (message.contains("credit balance") || message.contains("billing"));
            named.or_else(|| credit.then(|| format!("{status} {kind}")))
        }
        Err(_) => QUOTA_CODES
            .iter()
            .find(|code| body.windows(code.len()).any(|w| w == code.as_bytes()))
            .map(|c| (*c).to_owned()),
    };
    match quota {
        Some(code) => Refused::Quota {
            reason: format!("quota: {code}"),
            reset: reset_after(headers),
        },
        None if retryable(status) => Refused::Busy,
        None => Refused::Other,
    }
}

/// When the provider says its limits reset: `retry-after(-ms)`, OpenAI's
/// `x-ratelimit-reset-requests`/`-tokens` (`6m0s`, `20ms`), Anthropic's
/// `anthropic-ratelimit-*-reset` (an RFC 3339 time, measured against the `date` header when
/// there is one, else taken as from now). The latest of those given.
pub(crate) fn reset_after(headers: &HeaderMap) -> Option<Duration> {
    let mut latest: Option<Duration> = None;
    let mut take = |d: Duration| latest = Some(latest.map_or(d, |l| l.max(d)));
    if let Some(d) = header_ms(headers, "retry-after-ms", 1.0)
        .or_else(|| header_ms(headers, "retry-after", 1000.0))
    {
        take(d);
    }
    let now = headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    for (name, value) in headers {
        let name = name.as_str();
        let Ok(text) = value.to_str() else { continue };
        if name.starts_with("x-ratelimit-reset-") {
            if let Some(d) = parse_go_duration(text.trim()) {
                take(d);
            }
        } else if name.starts_with("anthropic-ratelimit-")
            && name.ends_with("-reset")
            && let (Some(at), Some(now)) = (parse_rfc3339(text.trim()), now)
        {
            take(Duration::from_millis(at.saturating_sub(now).max(0) as u64));
        }
    }
    latest
}

/// A duration as OpenAI writes it in its reset headers: `1s`, `6m0s`, `1h2m3.5s`, `20ms`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    total
        .is_finite()
        .then(|| Duration::from_millis(total.ceil() as u64))
}

/// Milliseconds since the epoch of an RFC 3339 time in UTC or with an offset, such as
/// `2026-01-01T00:00:00Z` or `2026-01-01T01:00:00.5+01:00`.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let digits = &frac[..end];
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = padded.parse().ok()?;
        rest = &frac[end..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 60 + rest[4..6].parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60) * 1000) + millis)
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) in milliseconds since the epoch.
fn parse_http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let iso = format!("{year}-{month:02}-{:02}T{time}Z", day.parse::<u32>().ok()?);
    parse_rfc3339(&iso)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
        let none = HeaderMap::new();
        let quota = |status, body: &[u8]| {
            matches!(super::classify(status, &none, body), Refused::Quota { .. })
        };
        assert!(quota(
            429,
            br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#
        ));
        assert!(quota(
            429,
            br#"{"error":{"type":"requests","code":"billing_hard_limit_reached"}}"#
        ));
        assert!(quota(
            529,
            br#"{"type":"error","error":{"type":"billing_error"}}"#
        ));
        assert!(quota(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#
        ));
        assert!(
            quota(429, b"<html>insufficient_quota</html>"),
            "not JSON: by bytes"
        );
        assert_eq!(
            super::classify(
                429,
                &none,
                br#"{"error":{"type":"requests","code":"rate_limit_exceeded"}}"#
            ),
            Refused::Busy
        );
        // A message that merely mentions a code is not the code.
        assert_eq!(
            super::classify(429, &none, br#"{"error":{"type":"requests","code":"rate_limit_exceeded","message":"not insufficient_quota"}}"#),
            Refused::Busy
        );
        assert_eq!(
            super::classify(400, &none, br#"{"error":{"type":"invalid_request_error"}}"#),
            Refused::Other
        );
        assert_eq!(
            super::classify(500, &none, br#"{"error":{"type":"insufficient_quota"}}"#),
            Refused::Other
        );
    }

    #[test]
    fn the_reset_comes_from_the_latest_header_given() {
        assert_eq!(reset_after(&HeaderMap::new()), None);
        assert_eq!(
            reset_after(&headers(&[
                ("x-ratelimit-reset-requests", "1m30s"),
                ("x-ratelimit-reset-tokens", "20ms")
            ])),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            reset_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            reset_after(&headers(&[
                ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ("anthropic-ratelimit-tokens-reset", "2015-10-21T08:28:00Z"),
                (
                    "anthropic-ratelimit-requests-reset",
                    "2015-10-21T07:28:30.5+00:00"
                ),
            ])),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
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
