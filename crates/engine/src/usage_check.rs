//! The usage an agent's CLI reports, cross-checked against the gateway's metering of the same
//! execution when it ends.
//!
//! Both are recorded (the CLI's as its `usage` events, the gateway's as model usage), and the
//! gateway's is the one budgets and costs count: the CLI's account is the agent's output and
//! may be wrong or made up. A difference beyond [`TOLERANCE_PERCENT`] (and [`TOLERANCE_TOKENS`],
//! so that a few tokens of rounding on a small run say nothing) becomes a warning event, which
//! points at a CLI that reaches a model some other way, or at a miscount on either side.

use domain::{AgentEvent, Tokens};

/// How far apart, in percent of the larger count, the two may be without a warning.
pub(crate) const TOLERANCE_PERCENT: u64 = 10;

/// How many tokens apart the two may always be.
pub(crate) const TOLERANCE_TOKENS: u64 = 64;

/// What one execution's CLI said it used, summed over its usage events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reported {
    pub tokens: Tokens,
    /// The iteration of the last usage event; `None` while the CLI reported none.
    pub iteration: Option<u32>,
}

impl Reported {
    /// Takes in one recorded agent event of iteration `iteration`.
    pub(crate) fn add(&mut self, iteration: u32, event: &AgentEvent) {
        if let AgentEvent::Usage {
            input_tokens,
            output_tokens,
            cached_tokens,
        } = event
        {
            self.tokens.add(&Tokens {
                input: *input_tokens,
                output: *output_tokens,
                cached: *cached_tokens,
            });
            self.iteration = Some(iteration);
        }
    }
}

/// The warning to record when the CLI's report and the metering disagree, with the iteration
/// to record it under; `None` when they agree or the CLI reported nothing to compare.
pub(crate) fn mismatch(
    reported: &Reported,
    metered: &domain::ModelUsage,
) -> Option<(u32, AgentEvent)> {
    let iteration = reported.iteration?;
    let apart = |said: u64, counted: u64| {
        let difference = said.abs_diff(counted);
        let allowed = (said.max(counted) * TOLERANCE_PERCENT / 100).max(TOLERANCE_TOKENS);
        difference > allowed
    };
    let (said, counted) = (reported.tokens, metered.tokens);
    if !apart(said.input, counted.input) && !apart(said.output, counted.output) {
        return None;
    }
    let message = format!(
        "the CLI reported {} input and {} output tokens, but the gateway metered {} input and \
         {} output tokens in {} requests; budgets and costs count the gateway's figures",
        said.input, said.output, counted.input, counted.output, metered.requests,
    );
    Some((iteration, AgentEvent::Warning { message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(said: (u64, u64), counted: (u64, u64), expect_warning: bool) {
        let mut reported = Reported::default();
        reported.add(
            2,
            &AgentEvent::Usage {
                input_tokens: said.0,
                output_tokens: said.1,
                cached_tokens: 0,
            },
        );
        let metered = domain::ModelUsage {
            requests: 3,
            tokens: Tokens {
                input: counted.0,
                output: counted.1,
                cached: 0,
            },
            ..domain::ModelUsage::default()
        };
        let found = mismatch(&reported, &metered);
        assert_eq!(
            found.is_some(),
            expect_warning,
            "{said:?} vs {counted:?}: {found:?}"
        );
        if let Some((iteration, AgentEvent::Warning { message })) = found {
            assert_eq!(iteration, 2);
            assert!(
                message.contains(&format!("reported {} input", said.0))
                    && message.contains(&format!("metered {} input", counted.0)),
                "{message}"
            );
        }
    }

    #[test]
    fn agreement_within_the_tolerance_says_nothing() {
        check((280, 30), (280, 30), false);
        check((10_000, 500), (10_900, 500), false);
        check((40, 0), (100, 10), false);
    }

    #[test]
    fn a_difference_beyond_it_is_a_warning() {
        check((5_000, 40), (0, 0), true);
        check((10_000, 500), (12_000, 500), true);
        check((1_000, 100), (1_000, 400), true);
    }

    #[test]
    fn nothing_is_compared_when_the_cli_reported_nothing() {
        let mut reported = Reported::default();
        reported.add(1, &AgentEvent::Message { text: "hi".into() });
        let metered = domain::ModelUsage {
            tokens: Tokens {
                input: 900,
                ..Tokens::default()
            },
            ..domain::ModelUsage::default()
        };
        assert_eq!(mismatch(&reported, &metered), None);
    }
}
