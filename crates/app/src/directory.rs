//! Who is who in the organisation: which agency each agent belongs to, its role there, the
//! topics it follows, and each agency's coordinator and escalation deadline. Delivery by role,
//! agency and topic, and escalation through a coordinator, ask this and nothing else.
//!
//! The faces build it from the manifests (the app depends on no manifest type) and hand it to
//! [`App::with_directory`](crate::App::with_directory). Roles are scoped to their agency: a
//! message an agent writes to `role:R` is for role R of *its own* agency and is stored as
//! `role:AGENCY/R`, so that the developers of another agency, or another agency's
//! coordinator, never read it; a person may write to `role:R` (every agency's R) or to
//! `role:AGENCY/R`.

use std::collections::BTreeMap;

use domain::{Duration, Receiver};

use crate::Error;

/// The role every agency's coordinator holds.
pub const COORDINATOR_ROLE: &str = "coordinator";

/// How long a coordinator may leave an escalation open before it goes up to people, when
/// the agency names no `escalation_deadline`.
pub const DEFAULT_ESCALATION_DEADLINE: Duration = Duration(10 * 60 * 1000);

/// The most topics one agent may follow, so that an inbox read stays a bounded number of
/// indexed lookups.
pub const TOPICS_PER_AGENT: usize = 32;

/// One agency as delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyEntry {
    pub coordinator: String,
    /// Every member with its role, the coordinator first.
    pub members: Vec<(String, String)>,
    /// How long its coordinator may leave an escalation open.
    pub escalation_deadline: Duration,
}

impl AgencyEntry {
    pub fn roles(&self) -> Vec<&str> {
        let mut roles: Vec<&str> = self.members.iter().map(|(_, r)| r.as_str()).collect();
        roles.dedup();
        roles
    }
}

/// The organisation; empty (no agencies, no topics) unless a face filled it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    agencies: BTreeMap<String, AgencyEntry>,
    /// Per agent: its agency and role.
    membership: BTreeMap<String, (String, String)>,
    /// Per agent: the topics it follows.
    topics: BTreeMap<String, Vec<String>>,
    /// Whether it was built from the manifests: only then does a person's message to a role
    /// or agency that does not exist get refused.
    known: bool,
}

impl Directory {
    /// A directory built from the manifests: references to agencies and roles it does not
    /// hold are refused.
    pub fn known() -> Directory {
        Directory {
            known: true,
            ..Directory::default()
        }
    }

    /// Adds an agency with its members (agent, role), the coordinator among them.
    pub fn add_agency(
        &mut self,
        name: &str,
        coordinator: &str,
        specialists: &[(String, String)],
        escalation_deadline: Duration,
    ) {
        let mut members = vec![(coordinator.to_string(), COORDINATOR_ROLE.to_string())];
        members.extend(specialists.iter().cloned());
        for (agent, role) in &members {
            self.membership
                .insert(agent.clone(), (name.to_string(), role.clone()));
        }
        self.agencies.insert(
            name.to_string(),
            AgencyEntry {
                coordinator: coordinator.to_string(),
                members,
                escalation_deadline,
            },
        );
    }

    /// `agent` follows `topics` (the first [`TOPICS_PER_AGENT`]).
    pub fn subscribe(&mut self, agent: &str, topics: &[String]) {
        let list = self.topics.entry(agent.to_string()).or_default();
        for t in topics.iter().take(TOPICS_PER_AGENT) {
            if !list.contains(t) {
                list.push(t.clone());
            }
        }
    }

    /// The agency and role of `agent`, if it is a member of one.
    pub fn member(&self, agent: &str) -> Option<(&str, &str)> {
        self.membership
            .get(agent)
            .map(|(a, r)| (a.as_str(), r.as_str()))
    }

    pub fn agency(&self, name: &str) -> Option<&AgencyEntry> {
        self.agencies.get(name)
    }

    pub fn agencies(&self) -> impl Iterator<Item = (&str, &AgencyEntry)> {
        self.agencies.iter().map(|(n, a)| (n.as_str(), a))
    }

    /// The receivers beyond its agent, task and execution whose messages an execution of
    /// `agent` reads: its agency, its role (qualified and plain) and its topics.
    pub fn receivers_of(&self, agent: &str) -> Vec<Receiver> {
        let mut out = Vec::new();
        if let Some((agency, role)) = self.member(agent) {
            out.push(Receiver::Agency(agency.to_string()));
            out.push(Receiver::Role(format!("{agency}/{role}")));
            out.push(Receiver::Role(role.to_string()));
        }
        for t in self.topics.get(agent).into_iter().flatten() {
            out.push(Receiver::Topic(t.clone()));
        }
        out
    }

    /// The receiver a message written to `receiver` is stored under, or why it may not be
    /// written: `sender` is the writing agent (`None` for a person or the engine).
    pub(crate) fn resolve(
        &self,
        sender: Option<&str>,
        receiver: Receiver,
    ) -> Result<Receiver, Error> {
        match (&receiver, sender) {
            (Receiver::Role(name), Some(agent)) => {
                let Some((agency, _)) = self.member(agent) else {
                    return Err(Error::invalid(format!(
                        "agent {agent} is in no agency, so it has no roles to write to; write to \
                         an agency as agency:NAME and its members read it"
                    )));
                };
                let role = match name.split_once('/') {
                    Some((a, r)) if a == agency => r,
                    Some((a, _)) => {
                        return Err(Error::invalid(format!(
                            "role:{name} is a role of the agency {a}, and agent {agent} is in \
                             {agency}: an agent writes to the roles of its own agency only; \
                             write to agency:{a} instead"
                        )));
                    }
                    None => name.as_str(),
                };
                self.check_role(agency, role)?;
                Ok(Receiver::Role(format!("{agency}/{role}")))
            }
            (Receiver::Role(name), None) if self.known => {
                match name.split_once('/') {
                    Some((agency, role)) => self.check_role(agency, role)?,
                    None if self
                        .agencies
                        .values()
                        .any(|a| a.roles().contains(&name.as_str())) => {}
                    None => {
                        return Err(Error::invalid(format!(
                            "no agency has the role `{name}` (roles: {}); name one of them",
                            self.all_roles()
                        )));
                    }
                }
                Ok(receiver)
            }
            (Receiver::Agency(name), _) if self.known || sender.is_some() => {
                self.check_agency(name)?;
                Ok(receiver)
            }
            _ => Ok(receiver),
        }
    }

    /// Whether an execution of `agent` is one of the readers of `receiver`'s messages
    /// (role, agency and topic receivers; the others are the tracker's to judge).
    pub fn eligible(&self, agent: &str, receiver: &Receiver) -> bool {
        match receiver {
            Receiver::Role(_) | Receiver::Agency(_) | Receiver::Topic(_) => {
                self.receivers_of(agent).contains(receiver)
            }
            _ => true,
        }
    }

    fn check_agency(&self, name: &str) -> Result<&AgencyEntry, Error> {
        self.agencies.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.agencies.keys().map(String::as_str).collect();
            Error::invalid(format!(
                "`{name}` is not an agency of the project (agencies: {}); name one of them",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    fn check_role(&self, agency: &str, role: &str) -> Result<(), Error> {
        let entry = self.check_agency(agency)?;
        if entry.roles().contains(&role) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "`{role}` is not a role of the agency {agency} (roles: {}); name one of them",
            entry.roles().join(", ")
        )))
    }

    fn all_roles(&self) -> String {
        let mut roles: Vec<&str> = self.agencies.values().flat_map(|a| a.roles()).collect();
        roles.sort_unstable();
        roles.dedup();
        if roles.is_empty() {
            "none".into()
        } else {
            roles.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Directory {
        let mut d = Directory::known();
        d.add_agency(
            "code",
            "code-lead",
            &[("coder".into(), "developer".into())],
            DEFAULT_ESCALATION_DEADLINE,
        );
        d.add_agency("qa", "qa-lead", &[], DEFAULT_ESCALATION_DEADLINE);
        d.subscribe("coder", &["builds".into()]);
        d
    }

    #[test]
    fn an_agents_role_message_stays_in_its_agency_and_outsiders_are_refused() {
        let d = org();
        let to = |s: &str| s.parse::<Receiver>().unwrap();
        assert_eq!(
            d.resolve(Some("coder"), to("role:coordinator")).unwrap(),
            to("role:code/coordinator")
        );
        let err = d
            .resolve(Some("qa-lead"), to("role:code/coordinator"))
            .unwrap_err();
        assert!(err.to_string().contains("roles of its own agency"), "{err}");
        let err = d
            .resolve(Some("loner"), to("role:coordinator"))
            .unwrap_err();
        assert!(err.to_string().contains("in no agency"), "{err}");
        let err = d.resolve(None, to("role:tester")).unwrap_err();
        assert!(err.to_string().contains("no agency has the role"), "{err}");
        let err = d.resolve(None, to("agency:ops")).unwrap_err();
        assert!(err.to_string().contains("agencies: code, qa"), "{err}");
        assert_eq!(
            d.resolve(None, to("role:developer")).unwrap(),
            to("role:developer")
        );
    }

    #[test]
    fn readers_are_the_members_and_subscribers() {
        let d = org();
        let to = |s: &str| s.parse::<Receiver>().unwrap();
        assert!(d.eligible("coder", &to("role:code/developer")));
        assert!(d.eligible("coder", &to("topic:builds")));
        assert!(d.eligible("code-lead", &to("agency:code")));
        assert!(!d.eligible("qa-lead", &to("role:code/coordinator")));
        assert!(!d.eligible("qa-lead", &to("agency:code")));
        assert!(!d.eligible("code-lead", &to("topic:builds")));
    }
}
