//! Times as a person reads them: how far off, and the clock time (UTC, the only zone the
//! binary knows without a time-zone database).

use app::{EngineState, Timer, TimerKind};
use domain::Timestamp;

/// `8 m`, `45 s`, `2 h 5 m`, `3 d 4 h`: a span rounded to what a reader needs.
pub fn span(ms: u64) -> String {
    let secs = ms / 1000;
    // Minutes round up, as a countdown does: 7 m 10 s to go reads "8 m".
    let minutes = ms.div_ceil(60_000);
    match secs {
        0..60 => format!("{secs} s"),
        _ if minutes < 60 => format!("{minutes} m"),
        3600..86_400 => match (secs % 3600) / 60 {
            0 => format!("{} h", secs / 3600),
            m => format!("{} h {m} m", secs / 3600),
        },
        _ => match (secs % 86_400) / 3600 {
            0 => format!("{} d", secs / 86_400),
            h => format!("{} d {h} h", secs / 86_400),
        },
    }
}

/// The clock time of `at` in UTC, with the date when it is not `now`'s day.
pub fn clock(at: Timestamp, now: Timestamp) -> String {
    let text = at.to_rfc3339();
    let same_day = text.get(..10) == now.to_rfc3339().get(..10);
    let time = text.get(11..16).unwrap_or("");
    if same_day {
        format!("{time} UTC")
    } else {
        format!("{} {time} UTC", text.get(..10).unwrap_or(""))
    }
}

/// `in 8 m, at 18:49 UTC`, or `due now (since 18:41 UTC)` for a time already past.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    if at > now {
        format!(
            "in {}, at {}",
            span(at.since(now).as_millis()),
            clock(at, now)
        )
    } else {
        format!("due now (since {})", clock(at, now))
    }
}

/// What a task's timer means, for a person: `next try in 8 m, at 18:49 UTC`.
pub fn timer(t: &Timer, now: Timestamp) -> String {
    let what = match t.kind {
        TimerKind::Retry => "next try",
        TimerKind::Continuation => "goes on",
        TimerKind::Resume => "resume",
    };
    format!("{what} {}", relative(t.at, now))
}

/// One line on the engine: whether it runs, since when, with which pid.
pub fn engine(state: &EngineState, now: Timestamp) -> Option<String> {
    match state {
        EngineState::Unknown => None,
        EngineState::Stopped => Some("engine: not running (start one with `agentgrid run`)".into()),
        EngineState::Running { pid, since } => {
            let pid = pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"));
            Some(match since {
                Some(since) => format!(
                    "engine: running ({pid}), since {} ({} ago)",
                    clock(*since, now),
                    span(now.since(*since).as_millis())
                ),
                None => format!("engine: running ({pid})"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_to_what_a_reader_needs() {
        assert_eq!(span(0), "0 s");
        assert_eq!(span(45_900), "45 s");
        assert_eq!(span(7 * 60_000 + 1), "8 m");
        assert_eq!(span(3_600_000 + 5 * 60_000), "1 h 5 m");
        assert_eq!(span(2 * 3_600_000), "2 h");
        assert_eq!(span(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
    }

    #[test]
    fn a_time_reads_as_how_far_off_and_when() {
        // 2026-12-02T18:41:00Z
        let now = Timestamp(1_796_236_860_000);
        let at = Timestamp(now.0 + 8 * 60_000);
        assert_eq!(relative(at, now), "in 8 m, at 18:49 UTC");
        assert_eq!(relative(now, at), "due now (since 18:41 UTC)");
        let tomorrow = Timestamp(now.0 + 86_400_000);
        assert_eq!(relative(tomorrow, now), "in 1 d, at 2026-12-03 18:41 UTC");
    }
}
