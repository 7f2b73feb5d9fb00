//! Delivery through the organisation at the application layer: who reads a role's and an
//! agency's messages, who may acknowledge them (not an execution of another agent, not one
//! that was never shown it, not one that ended), and the escalation line's bounds.

use std::sync::Arc;

use app::{AckMessage, Actor, Directory, Escalate, EscalateUp, ReadInbox, SendMessage};
use domain::{
    ExecutionId, ExecutionKind, ExecutionState, MessageType, NewMessage, Receiver, TaskId, Usage,
};
use store::{Change, Store};

use crate::{T0, ada, fixture};

fn organisation() -> Arc<Directory> {
    let mut d = Directory::known();
    d.add_agency(
        "code",
        "code-lead",
        &[
            ("coder".into(), "developer".into()),
            ("reviewer".into(), "developer".into()),
        ],
        app::DEFAULT_ESCALATION_DEADLINE,
    );
    Arc::new(d)
}

/// A task with a running execution of `agent`.
async fn running(f: &crate::Fixture, agent: &str) -> (TaskId, ExecutionId) {
    let task = f
        .app
        .execute(&ada(), app::AddTask::titled(format!("work of {agent}")))
        .await
        .unwrap()
        .id;
    let claim = Change::CreateExecution {
        task_id: task,
        kind: ExecutionKind::Work,
        agent: agent.into(),
        attempt: 1,
        lease: None,
    };
    let e = f
        .store
        .apply("engine", T0, vec![claim])
        .await
        .unwrap()
        .executions[0]
        .id;
    (task, e)
}

fn as_agent(e: ExecutionId, agent: &str) -> Actor {
    Actor::Execution {
        id: e,
        agent: agent.into(),
    }
}

#[tokio::test]
async fn only_a_reader_that_was_shown_it_and_still_runs_acknowledges() {
    let f = fixture();
    let app = f.app.clone().with_directory(organisation());
    let (_, coder) = running(&f, "coder").await;
    let (_, reviewer) = running(&f, "reviewer").await;
    let (_, lead) = running(&f, "code-lead").await;
    let message = NewMessage::new(
        "role:developer".parse().unwrap(),
        MessageType::Question,
        serde_json::json!({"text": "CSV?"}),
    );
    let sent = app.execute(&ada(), SendMessage { message }).await.unwrap();
    let id = sent.message.id;

    // The coordinator is not a developer: the message is not in its inbox, and it may not
    // take it.
    let shown = app
        .execute(&as_agent(lead, "code-lead"), ReadInbox { execution: lead })
        .await
        .unwrap();
    assert!(shown.is_empty());
    let err = app
        .execute(&as_agent(lead, "code-lead"), AckMessage { id })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not one of its readers"),
        "{err}"
    );

    // The reviewer is a reader but was never shown it.
    let err = app
        .execute(&as_agent(reviewer, "reviewer"), AckMessage { id })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("was never delivered to execution #{reviewer}")),
        "{err}"
    );

    // The coder is shown it, then its execution ends: a stale execution acknowledges nothing.
    let shown = app
        .execute(&as_agent(coder, "coder"), ReadInbox { execution: coder })
        .await
        .unwrap();
    assert_eq!(shown.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
    let finish = Change::FinishExecution {
        id: coder,
        state: ExecutionState::Lost,
        exit_code: None,
        usage: Usage::default(),
        summary: None,
    };
    f.store.apply("engine", T0, vec![finish]).await.unwrap();
    let err = app
        .execute(&as_agent(coder, "coder"), AckMessage { id })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has ended"), "{err}");

    // Shown to the reviewer, it is taken once.
    app.execute(
        &as_agent(reviewer, "reviewer"),
        ReadInbox {
            execution: reviewer,
        },
    )
    .await
    .unwrap();
    let acked = app
        .execute(&as_agent(reviewer, "reviewer"), AckMessage { id })
        .await
        .unwrap();
    assert_eq!(
        acked.acked_by.as_deref(),
        Some(format!("agent:reviewer#{reviewer}").as_str())
    );
    let events = f
        .store
        .entity_events(domain::EntityKind::Message, id.0)
        .await
        .unwrap();
    let acks = events
        .iter()
        .filter(|e| e.kind.name() == "message_acked")
        .count();
    assert_eq!(acks, 1);
}

#[tokio::test]
async fn the_escalation_line_has_two_steps_and_no_way_down() {
    let f = fixture();
    let app = f.app.clone().with_directory(organisation());
    let (task, coder) = running(&f, "coder").await;
    let (_, lead) = running(&f, "code-lead").await;
    let escalate = |text: &str| Escalate {
        severity: "high".into(),
        text: text.into(),
        task: None,
    };
    let asked = app
        .execute(&as_agent(coder, "coder"), escalate("Which schema?"))
        .await
        .unwrap();
    assert_eq!(
        asked.message.receiver,
        Receiver::Role("code/coordinator".into())
    );
    assert_eq!(asked.message.task_id, Some(task));
    let woke = asked.woke.expect("the coordinator is woken");
    let made = f.store.task(woke).await.unwrap().unwrap();
    assert_eq!(made.agent.as_deref(), Some("code-lead"));
    // A second escalation wakes the same task, which has not started yet.
    let again = app
        .execute(&as_agent(coder, "coder"), escalate("And the index?"))
        .await
        .unwrap();
    assert_eq!(again.woke, Some(woke));

    // The specialist cannot send its own escalation up, nor one as a message.
    let err = app
        .execute(
            &as_agent(coder, "coder"),
            EscalateUp {
                id: asked.message.id,
                note: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not one of its readers"), "{err}");
    let down = NewMessage::new(
        "people".parse().unwrap(),
        MessageType::Escalation,
        serde_json::json!({"text": "x", "severity": "low"}),
    );
    let err = app
        .execute(&as_agent(lead, "code-lead"), SendMessage { message: down })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ctl escalate"), "{err}");

    // The coordinator's own question goes to people, and from there nowhere higher.
    let own = app
        .execute(&as_agent(lead, "code-lead"), escalate("May I?"))
        .await
        .unwrap();
    assert_eq!(own.message.receiver, Receiver::People);
    assert_eq!(own.woke, None);
    let err = app
        .execute(
            &Actor::Engine,
            EscalateUp {
                id: own.message.id,
                note: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("goes no higher"), "{err}");

    // The coordinator reads the question and answers it with a plain `ANSWER` correlated
    // with it: the escalation is acknowledged and the answer goes to the asking task.
    app.execute(&as_agent(lead, "code-lead"), ReadInbox { execution: lead })
        .await
        .unwrap();
    let answer = NewMessage {
        correlation: Some(format!("M{}", asked.message.id)),
        ..NewMessage::new(
            "agent:coder".parse().unwrap(),
            MessageType::Answer,
            serde_json::json!({"text": "v2"}),
        )
    };
    let sent = app
        .execute(
            &as_agent(lead, "code-lead"),
            SendMessage { message: answer },
        )
        .await
        .unwrap();
    assert_eq!(sent.message.receiver, Receiver::Task(task));
    let question = f.store.message(asked.message.id).await.unwrap().unwrap();
    assert_eq!(question.state, domain::MessageState::Acked);
    assert_eq!(
        question.acked_by.as_deref(),
        Some(format!("agent:code-lead#{lead}").as_str())
    );
}
