//! Mailboxes: a message persists with its deliveries and is acknowledged once even by racing
//! callers, an announcement once by each reading agent, identical alerts open once, inboxes and
//! sweeps follow receivers and time, and a flooding sender is bounded across batches.

use std::sync::Arc;

use domain::message::limits;
use domain::{
    Duration, EntityKind, ExecutionId, ExecutionState, Message, MessageId, MessageState,
    MessageType, NewMessage, Receiver, Timestamp, Usage,
};
use store::{Applied, Change, MessageFilter, MessageSweep, Store};

use super::{T0, apply, create, start};
use crate::Fresh;

async fn apply_at(store: &dyn Store, now: Timestamp, changes: Vec<Change>) -> Applied {
    let names: Vec<&str> = changes.iter().map(Change::name).collect();
    match store.apply("conformance", now, changes).await {
        Ok(applied) => applied,
        Err(e) => panic!("the batch {names:?} was refused at {now}: {e}"),
    }
}

fn status(receiver: Receiver, text: &str) -> NewMessage {
    NewMessage::new(
        receiver,
        MessageType::Status,
        serde_json::json!({ "text": text }),
    )
}

async fn send(store: &dyn Store, new: NewMessage) -> Message {
    let applied = apply(store, vec![Change::SendMessage(new)]).await;
    applied.messages[0].clone()
}

async fn stored(store: &dyn Store, id: MessageId) -> Message {
    store
        .message(id)
        .await
        .expect("the message reads")
        .expect("the message exists")
}

/// A message's row is what its batch returned and what the fold of its own events gives; a
/// second acknowledgement is refused and writes nothing.
pub async fn a_message_persists_and_is_acknowledged_once(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, domain::NewTask::titled("a")).await;
    let e = start(store, task).await;
    let sent = send(
        store,
        NewMessage {
            correlation: Some("c-1".into()),
            ttl: Some(Duration::from_secs(60)),
            task: Some(task),
            ..status(Receiver::Execution(e), "halfway")
        },
    )
    .await;
    assert_eq!(stored(store, sent.id).await, sent);
    assert_eq!(sent.state, MessageState::Pending);
    let delivered = apply(
        store,
        vec![
            Change::DeliverMessage { id: sent.id, to: e },
            Change::DeliverMessage { id: sent.id, to: e },
        ],
    )
    .await;
    assert_eq!(delivered.messages[0].deliveries, 2);
    let acked = apply(
        store,
        vec![Change::AckMessage {
            id: sent.id,
            by: Some(e),
        }],
    )
    .await;
    assert_eq!(acked.messages[0].state, MessageState::Acked);
    let seq = store.last_seq().await.unwrap();
    let again = store
        .apply(
            "conformance",
            T0,
            vec![Change::AckMessage {
                id: sent.id,
                by: Some(e),
            }],
        )
        .await
        .expect_err("a second acknowledgement is refused");
    assert!(again.to_string().contains("acknowledged once"), "{again}");
    assert_eq!(
        store.last_seq().await.unwrap(),
        seq,
        "a refusal writes nothing"
    );
    let row = stored(store, sent.id).await;
    assert_eq!(row, acked.messages[0]);
    // The row is the fold of the message's own events.
    let mut folded = tracker::State::complete();
    let events = store
        .entity_events(EntityKind::Message, sent.id.0)
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.entity_seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for event in &events {
        tracker::evolve(&mut folded, &tracker::Event::Logged(event.into()));
    }
    assert_eq!(folded.message(sent.id), Some(&row));
}

/// Callers that acknowledge the same message at once: one succeeds, the rest are refused.
pub async fn racing_acknowledgements_take_one(fresh: Fresh) {
    let store = fresh.store.clone();
    let sent = send(&*store, status(Receiver::People, "look")).await;
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .apply(
                        "conformance",
                        T0,
                        vec![Change::AckMessage {
                            id: sent.id,
                            by: None,
                        }],
                    )
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for racer in racers {
        if racer.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "exactly one acknowledgement is taken");
    let acks = store
        .entity_events(EntityKind::Message, sent.id.0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.name() == "message_acked")
        .count();
    assert_eq!(acks, 1);
}

/// An announcement is acknowledged by each agent that reads it, for itself and once: one
/// reader's acknowledgement takes it out of that reader's inbox only, and the message stays open
/// for the others until its time to live ends.
pub async fn an_announcement_is_acknowledged_once_per_reader(fresh: Fresh) {
    let store = &*fresh.store;
    let coder = start(store, create(store, domain::NewTask::titled("a")).await).await;
    let b = create(store, domain::NewTask::titled("b")).await;
    let reviewer = apply(
        store,
        vec![Change::CreateExecution {
            task_id: b,
            kind: domain::ExecutionKind::Work,
            agent: "reviewer".into(),
            attempt: 1,
            lease: None,
        }],
    )
    .await
    .executions[0]
        .id;
    let sent = send(store, status(Receiver::Broadcast, "main is red")).await;
    let inbox = |agent: &'static str, e: ExecutionId| async move {
        let receivers = vec![format!("agent:{agent}"), "broadcast".to_string()];
        store
            .inbox(&receivers, Some(e), Some(agent), T0, 10)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    };
    let ack = |by| Change::AckMessage { id: sent.id, by };
    let refused = |changes: Vec<Change>| async move {
        store
            .apply("conformance", T0, changes)
            .await
            .unwrap_err()
            .to_string()
    };
    let err = refused(vec![ack(None)]).await;
    assert!(
        err.contains("each agent that reads it acknowledges it"),
        "{err}"
    );
    let err = refused(vec![ack(Some(coder))]).await;
    assert!(err.contains("was never delivered"), "{err}");
    for e in [coder, reviewer] {
        apply(store, vec![Change::DeliverMessage { id: sent.id, to: e }]).await;
    }
    apply(store, vec![ack(Some(coder))]).await;
    let err = refused(vec![ack(Some(coder))]).await;
    assert!(
        err.contains("acknowledged already for agent coder"),
        "{err}"
    );
    assert!(inbox("coder", coder).await.is_empty(), "read by the coder");
    assert_eq!(
        inbox("reviewer", reviewer).await,
        [sent.id],
        "not by the reviewer"
    );
    apply(store, vec![ack(Some(reviewer))]).await;
    assert!(inbox("reviewer", reviewer).await.is_empty());
    let m = stored(store, sent.id).await;
    assert!(
        m.state.is_open(),
        "still open for later readers: {:?}",
        m.state
    );
    let reads: Vec<String> = store
        .entity_events(EntityKind::Message, sent.id.0)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            domain::EventKind::MessageReaderAcked { reader, .. } => Some(reader),
            _ => None,
        })
        .collect();
    assert_eq!(reads, ["coder", "reviewer"]);
}

/// Identical alerts sent at once by racing callers open one message; the rest are coalesced
/// into it. Once it is read, the same alert opens a new one.
pub async fn identical_alerts_open_once(fresh: Fresh) {
    let store = fresh.store.clone();
    let alert = || {
        NewMessage::new(
            Receiver::People,
            MessageType::Alert,
            serde_json::json!({"text": "disk full"}),
        )
    };
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .apply("conformance", T0, vec![Change::SendMessage(alert())])
                    .await
            })
        })
        .collect();
    for racer in racers {
        racer.await.unwrap().expect("an alert is sent or coalesced");
    }
    let open = store
        .messages(&MessageFilter::default())
        .await
        .expect("messages list");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].coalesced, 5);
    apply(
        &*store,
        vec![Change::AckMessage {
            id: open[0].id,
            by: None,
        }],
    )
    .await;
    let second = send(&*store, alert()).await;
    assert_ne!(second.id, open[0].id);
    assert_eq!(second.coalesced, 0);
}

/// An inbox holds what is open and live for its receivers and execution, most urgent first;
/// the sweep finds what expired and what is for an execution that ended, and recording it
/// empties the inbox of them.
pub async fn inboxes_and_sweeps_follow_receivers_and_time(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, domain::NewTask::titled("a")).await;
    let e = start(store, task).await;
    let agent = send(
        store,
        status(Receiver::Agent("coder".into()), "to the agent"),
    )
    .await;
    let urgent = send(
        store,
        NewMessage {
            priority: domain::Priority::Urgent,
            ..status(Receiver::Execution(e), "to the execution")
        },
    )
    .await;
    let short = send(
        store,
        NewMessage {
            ttl: Some(Duration::from_secs(5)),
            ..status(Receiver::Agent("coder".into()), "soon gone")
        },
    )
    .await;
    let other = send(
        store,
        status(Receiver::Agent("reviewer".into()), "not mine"),
    )
    .await;
    let receivers = vec!["agent:coder".to_string(), "broadcast".to_string()];
    let inbox = store
        .inbox(&receivers, Some(e), Some("coder"), T0, 10)
        .await
        .unwrap();
    let ids: Vec<MessageId> = inbox.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![urgent.id, agent.id, short.id]);
    assert!(!ids.contains(&other.id));
    let later = T0.plus(Duration::from_secs(5));
    let inbox = store
        .inbox(&receivers, Some(e), Some("coder"), later, 10)
        .await
        .unwrap();
    assert_eq!(inbox.len(), 2, "the expired one is not shown");
    // The execution ends: what is for it alone can never be read.
    apply_at(
        store,
        later,
        vec![Change::FinishExecution {
            id: e,
            state: ExecutionState::Cancelled,
            exit_code: None,
            usage: Usage::default(),
            summary: None,
        }],
    )
    .await;
    let due = store.messages_due(later, 10).await.unwrap();
    assert_eq!(
        due,
        vec![
            MessageSweep::Expired(short.id),
            MessageSweep::ExecutionEnded {
                id: urgent.id,
                execution: e,
                state: "cancelled".into()
            }
        ]
    );
    apply_at(store, later, due.iter().map(MessageSweep::change).collect()).await;
    assert!(store.messages_due(later, 10).await.unwrap().is_empty());
    for id in [short.id, urgent.id] {
        let m = stored(store, id).await;
        assert_eq!(m.state, MessageState::Dead);
        assert!(m.dead_reason.is_some());
    }
    let dead = store
        .messages(&MessageFilter {
            state: Some(MessageState::Dead),
            ..MessageFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
}

/// An execution's open messages are counted across batches: the one past the bound is
/// refused and writes nothing.
pub async fn a_flooding_sender_is_bounded_across_batches(fresh: Fresh) {
    let store = &*fresh.store;
    let task = create(store, domain::NewTask::titled("a")).await;
    let e: ExecutionId = start(store, task).await;
    let from = |n: u32| NewMessage {
        sender_execution: Some(e),
        ..status(Receiver::People, &format!("step {n}"))
    };
    for chunk in (0..limits::OPEN_PER_SENDER).collect::<Vec<_>>().chunks(25) {
        let changes = chunk
            .iter()
            .map(|n| Change::SendMessage(from(*n)))
            .collect();
        apply(store, changes).await;
    }
    let seq = store.last_seq().await.unwrap();
    let refused = store
        .apply("conformance", T0, vec![Change::SendMessage(from(1000))])
        .await
        .expect_err("one message too many is refused");
    assert!(
        refused.to_string().contains("most it may have open"),
        "{refused}"
    );
    assert_eq!(store.last_seq().await.unwrap(), seq);
}

/// `any_open_message` says whether a message is pending or delivered: false on an empty
/// store, true once one is sent and while it is delivered, false again once it is
/// acknowledged (the engine skips every mailbox read for a prompt while it says false).
pub async fn any_open_message_follows_the_messages_states(fresh: Fresh) {
    let store = &*fresh.store;
    let open = || async { store.any_open_message().await.expect("the probe reads") };
    assert!(!open().await, "an empty store has no open message");
    let task = create(store, domain::NewTask::titled("a")).await;
    let e = start(store, task).await;
    let sent = send(store, status(Receiver::Execution(e), "halfway")).await;
    assert!(open().await, "a pending message is open");
    apply(store, vec![Change::DeliverMessage { id: sent.id, to: e }]).await;
    assert!(open().await, "a delivered message is open");
    apply(
        store,
        vec![Change::AckMessage {
            id: sent.id,
            by: Some(e),
        }],
    )
    .await;
    assert!(!open().await, "an acknowledged message is not");
}

/// `remarked_tasks`, where a backend can tell, names exactly the tasks with a comment, an
/// answer or feedback (what a prompt is told), and none that was only created or worked on.
pub async fn remarked_tasks_are_those_with_something_said(fresh: Fresh) {
    let store = &*fresh.store;
    let quiet = create(store, domain::NewTask::titled("quiet")).await;
    let commented = create(store, domain::NewTask::titled("commented")).await;
    let fed_back = create(store, domain::NewTask::titled("fed back")).await;
    start(store, quiet).await;
    let remarked = || async { store.remarked_tasks().await.expect("the list reads") };
    let Some(none) = remarked().await else {
        // This backend cannot tell; every prompt reads what was said.
        return;
    };
    assert!(none.is_empty(), "nothing was said yet: {none:?}");
    apply(
        store,
        vec![
            Change::Comment {
                id: commented,
                text: "mind the header".into(),
            },
            Change::Feedback {
                id: fed_back,
                text: "too slow".into(),
            },
        ],
    )
    .await;
    let mut found = remarked().await.expect("the backend told before");
    found.sort();
    assert_eq!(found, vec![commented, fed_back]);
}
