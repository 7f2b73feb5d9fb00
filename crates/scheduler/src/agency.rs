//! Agencies as the scheduler sees them, and the contract net: a call for proposals to an
//! agency's capable specialists, bids by rule, and one award with its reasons.
//!
//! A [`Call`] is a small state machine: it is opened with the agents it invites and a deadline,
//! each invited agent answers once (a [`Bid`] or a decline), and [`Call::close`] awards it once:
//! to the best bid as soon as every invited agent has answered or the deadline has passed, to
//! the fallback (the agency's coordinator) when the deadline passed with no bid. Nothing here
//! reads a clock: the time comes in with every call.

use domain::{Duration, Timestamp};

/// One agency: where its work comes from, who is in it, and its cap.
#[derive(Debug, Clone, PartialEq)]
pub struct AgencyPolicy {
    pub name: String,
    /// Tasks carrying one of these labels come to this agency.
    pub labels: Vec<String>,
    /// Tasks whose every `needs:X` is covered (here or by a member) come to this agency.
    pub capabilities: Vec<String>,
    /// The agent that takes what no specialist fits.
    pub coordinator: String,
    pub specialists: Vec<SpecialistPolicy>,
    /// Most executions of the agency's agents at once.
    pub concurrency: Option<u32>,
    pub mode: RoutingMode,
    /// What the agency's agents together may use of models per UTC day; none starts once it
    /// is used up ([`Snapshot::agency_spend`](crate::Snapshot)).
    pub day_budget: DayBudget,
}

/// A daily budget: tokens and cost in millionths of a dollar; `None` limits nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayBudget {
    pub tokens: Option<u64>,
    pub cost_micros: Option<u64>,
}

impl DayBudget {
    /// Why `used` has used this budget up, or `None` while there is room.
    pub fn spent(&self, used: &domain::ModelUsage) -> Option<String> {
        if let Some(max) = self.tokens
            && used.tokens.total() >= max
        {
            return Some(format!(
                "{max} tokens a day ({} used today)",
                used.tokens.total()
            ));
        }
        if let Some(max) = self.cost_micros
            && used.cost_micros >= max
        {
            return Some(format!(
                "{} a day ({} spent today)",
                domain::event::dollars(max),
                domain::event::dollars(used.cost_micros)
            ));
        }
        None
    }
}

impl AgencyPolicy {
    pub fn new(name: impl Into<String>, coordinator: impl Into<String>) -> AgencyPolicy {
        AgencyPolicy {
            name: name.into(),
            labels: Vec::new(),
            capabilities: Vec::new(),
            coordinator: coordinator.into(),
            specialists: Vec::new(),
            concurrency: None,
            mode: RoutingMode::Rule,
            day_budget: DayBudget::default(),
        }
    }

    /// Whether `agent` is the coordinator or one of the specialists.
    pub fn has_member(&self, agent: &str) -> bool {
        self.coordinator == agent || self.specialists.iter().any(|s| s.agent == agent)
    }
}

/// One specialist of an agency.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecialistPolicy {
    pub agent: String,
    pub role: String,
    /// What it can do besides its agent's own capabilities.
    pub capabilities: Vec<String>,
    /// Its cost estimate per task, relative to the others, for contract-net bids.
    pub cost: f64,
}

impl SpecialistPolicy {
    pub fn new(agent: impl Into<String>, role: impl Into<String>) -> SpecialistPolicy {
        SpecialistPolicy {
            agent: agent.into(),
            role: role.into(),
            capabilities: Vec::new(),
            cost: 1.0,
        }
    }
}

/// How a task that reached an agency finds its agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoutingMode {
    /// The specialist of the task's role with the capabilities it needs and the least load.
    Rule,
    /// A call for proposals open for `deadline`; bids by rule; the coordinator when none.
    ContractNet { deadline: Duration },
}

/// A specialist's proposal for a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub agent: String,
    /// The estimated cost: the specialist's cost times one plus its current load.
    pub cost: f64,
    /// How well it fits the task, from 0 to 1.
    pub confidence: f64,
}

/// The bid a specialist makes by rule, or `None` when it declines: when it lacks a capability
/// the task needs, or has no room left under its agent's cap.
///
/// `needs` are the task's required capabilities, `wanted` the task's other labels (what the
/// specialist's capabilities and its agent's labels are matched against for the confidence),
/// `capabilities` everything the specialist can do, `load` its running executions and `cap` its
/// agent's concurrency cap.
pub fn rule_bid(
    specialist: &SpecialistPolicy,
    capabilities: &[&str],
    needs: &[&str],
    wanted: &[&str],
    load: u32,
    cap: Option<u32>,
) -> Option<Bid> {
    if !needs.iter().all(|n| capabilities.contains(n)) {
        return None;
    }
    if cap.is_some_and(|cap| load >= cap) {
        return None;
    }
    let matched = wanted.iter().filter(|w| capabilities.contains(w)).count();
    let confidence = if wanted.is_empty() {
        1.0
    } else {
        0.5 + 0.5 * matched as f64 / wanted.len() as f64
    };
    Some(Bid {
        agent: specialist.agent.clone(),
        cost: specialist.cost * f64::from(1 + load),
        confidence,
    })
}

/// Why a call refused an answer; the call is left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotInvited(String),
    AlreadyAnswered(String),
    PastDeadline,
    AlreadyAwarded,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotInvited(a) => write!(f, "`{a}` was not invited to bid"),
            Refusal::AlreadyAnswered(a) => write!(f, "`{a}` has already answered"),
            Refusal::PastDeadline => write!(f, "the call for proposals is past its deadline"),
            Refusal::AlreadyAwarded => write!(f, "the task is already awarded"),
        }
    }
}

/// Who got the task and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Award {
    pub agent: String,
    /// True when nobody bid and the fallback took it.
    pub fallback: bool,
    pub reason: String,
}

/// A call for proposals for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub agency: String,
    invited: Vec<String>,
    deadline: Timestamp,
    /// Each invited agent's answer, in the order they came.
    answers: Vec<(String, Option<Bid>)>,
    award: Option<Award>,
}

impl Call {
    pub fn open(
        agency: impl Into<String>,
        invited: Vec<String>,
        now: Timestamp,
        window: Duration,
    ) -> Call {
        Call {
            agency: agency.into(),
            invited,
            deadline: now.plus(window),
            answers: Vec::new(),
            award: None,
        }
    }

    pub fn deadline(&self) -> Timestamp {
        self.deadline
    }

    pub fn award(&self) -> Option<&Award> {
        self.award.as_ref()
    }

    pub fn bids(&self) -> impl Iterator<Item = &Bid> {
        self.answers.iter().filter_map(|(_, b)| b.as_ref())
    }

    /// Records an invited agent's bid (`Some`) or decline (`None`).
    pub fn answer(&mut self, agent: &str, bid: Option<Bid>, now: Timestamp) -> Result<(), Refusal> {
        if self.award.is_some() {
            return Err(Refusal::AlreadyAwarded);
        }
        if now > self.deadline {
            return Err(Refusal::PastDeadline);
        }
        if !self.invited.iter().any(|a| a == agent) {
            return Err(Refusal::NotInvited(agent.to_string()));
        }
        if self.answers.iter().any(|(a, _)| a == agent) {
            return Err(Refusal::AlreadyAnswered(agent.to_string()));
        }
        let bid = bid.map(|mut b| {
            b.agent = agent.to_string();
            b
        });
        self.answers.push((agent.to_string(), bid));
        Ok(())
    }

    /// Awards the call when it can be: once every invited agent answered, or once the deadline
    /// passed. The best bid wins (highest confidence, then lowest cost, then the agent invited
    /// first); with no bid, `fallback` takes the task. `None` while the call is still open. A
    /// call is awarded once: later closes give the same award.
    pub fn close(&mut self, now: Timestamp, fallback: &str) -> Option<&Award> {
        if self.award.is_some() {
            return self.award.as_ref();
        }
        let all_answered = self.invited.len() == self.answers.len();
        if !all_answered && now < self.deadline {
            return None;
        }
        let rank = |agent: &str| self.invited.iter().position(|a| a == agent);
        let best = self.bids().min_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.cost.total_cmp(&b.cost))
                .then(rank(&a.agent).cmp(&rank(&b.agent)))
        });
        let bids: Vec<String> = self
            .bids()
            .map(|b| {
                format!(
                    "{} (confidence {:.2}, cost {:.2})",
                    b.agent, b.confidence, b.cost
                )
            })
            .collect();
        let award = match best {
            Some(bid) => Award {
                agent: bid.agent.clone(),
                fallback: false,
                reason: format!(
                    "contract net in agency `{}`: awarded to `{}`, the best of {} bid(s): {}",
                    self.agency,
                    bid.agent,
                    bids.len(),
                    bids.join(", ")
                ),
            },
            None => {
                let why = if all_answered {
                    format!("all {} invited agent(s) declined", self.invited.len())
                } else {
                    "no bid came before the deadline".to_string()
                };
                Award {
                    agent: fallback.to_string(),
                    fallback: true,
                    reason: format!(
                        "contract net in agency `{}`: {why}; its coordinator `{fallback}` takes \
                         the task",
                        self.agency
                    ),
                }
            }
        };
        self.award = Some(award);
        self.award.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(agent: &str, confidence: f64, cost: f64) -> Option<Bid> {
        Some(Bid {
            agent: agent.into(),
            cost,
            confidence,
        })
    }

    fn call() -> Call {
        Call::open(
            "code",
            vec!["a".into(), "b".into()],
            Timestamp(1_000),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn the_best_bid_wins_once_everyone_answered() {
        let mut c = call();
        c.answer("a", bid("a", 0.5, 1.0), Timestamp(1_000)).unwrap();
        assert_eq!(
            c.close(Timestamp(1_001), "lead"),
            None,
            "b has not answered"
        );
        c.answer("b", bid("b", 0.9, 3.0), Timestamp(1_002)).unwrap();
        let award = c.close(Timestamp(1_002), "lead").unwrap().clone();
        assert_eq!(award.agent, "b");
        assert!(!award.fallback);
        assert!(
            award.reason.contains("the best of 2 bid(s)"),
            "{}",
            award.reason
        );
        assert_eq!(
            c.answer("a", None, Timestamp(1_003)),
            Err(Refusal::AlreadyAwarded)
        );
    }

    #[test]
    fn equal_confidence_goes_to_the_cheaper_then_the_first_invited() {
        let mut c = call();
        c.answer("b", bid("b", 1.0, 1.0), Timestamp(1_000)).unwrap();
        c.answer("a", bid("a", 1.0, 2.0), Timestamp(1_000)).unwrap();
        assert_eq!(c.close(Timestamp(1_000), "lead").unwrap().agent, "b");
        let mut c = call();
        c.answer("b", bid("b", 1.0, 1.0), Timestamp(1_000)).unwrap();
        c.answer("a", bid("a", 1.0, 1.0), Timestamp(1_000)).unwrap();
        assert_eq!(c.close(Timestamp(1_000), "lead").unwrap().agent, "a");
    }

    #[test]
    fn the_deadline_hands_the_task_to_the_fallback() {
        let mut c = call();
        assert_eq!(c.close(Timestamp(30_999), "lead"), None);
        let award = c.close(Timestamp(31_000), "lead").unwrap().clone();
        assert_eq!(award.agent, "lead");
        assert!(award.fallback);
        assert!(
            award.reason.contains("no bid came before the deadline"),
            "{}",
            award.reason
        );
        assert_eq!(
            c.answer("a", bid("a", 1.0, 1.0), Timestamp(31_000)),
            Err(Refusal::AlreadyAwarded)
        );
    }

    #[test]
    fn declines_from_everyone_fall_back_at_once() {
        let mut c = call();
        c.answer("a", None, Timestamp(1_000)).unwrap();
        c.answer("b", None, Timestamp(1_000)).unwrap();
        let award = c.close(Timestamp(1_000), "lead").unwrap();
        assert_eq!(award.agent, "lead");
        assert!(award.reason.contains("all 2 invited agent(s) declined"));
    }

    #[test]
    fn bad_answers_are_refused_and_change_nothing() {
        let mut c = call();
        assert_eq!(
            c.answer("x", bid("x", 1.0, 1.0), Timestamp(1_000)),
            Err(Refusal::NotInvited("x".into()))
        );
        c.answer("a", bid("a", 0.5, 1.0), Timestamp(1_000)).unwrap();
        let before = c.clone();
        assert_eq!(
            c.answer("a", bid("a", 1.0, 1.0), Timestamp(1_000)),
            Err(Refusal::AlreadyAnswered("a".into()))
        );
        assert_eq!(
            c.answer("b", bid("b", 1.0, 1.0), Timestamp(31_001)),
            Err(Refusal::PastDeadline)
        );
        assert_eq!(c, before);
    }

    #[test]
    fn rule_bids_decline_without_capability_or_room() {
        let s = SpecialistPolicy::new("coder", "developer");
        assert_eq!(rule_bid(&s, &["rust"], &["python"], &[], 0, None), None);
        assert_eq!(rule_bid(&s, &["rust"], &["rust"], &[], 2, Some(2)), None);
        let b = rule_bid(&s, &["rust", "api"], &["rust"], &["api", "ui"], 1, Some(2)).unwrap();
        assert_eq!(b.cost, 2.0, "cost grows with the load");
        assert_eq!(b.confidence, 0.75, "one of two wanted labels matched");
    }
}
