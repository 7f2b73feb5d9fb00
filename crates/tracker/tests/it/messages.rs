//! The rules of mailboxes: payloads by type, bounds per sender, coalesced alerts, fencing by
//! execution, time to live, and one acknowledgement.

use domain::message::limits;
use domain::{
    Duration, ExecutionState, MessageId, MessageState, MessageType, NewMessage, Receiver,
    TaskState, Timestamp, Usage,
};
use serde_json::json;
use tracker::Change;

use crate::World;

fn status(receiver: Receiver) -> NewMessage {
    NewMessage::new(receiver, MessageType::Status, json!({"text": "halfway"}))
}

fn send(w: &mut World, new: NewMessage) -> MessageId {
    let id = w.state.next_message_id();
    w.ok(Change::SendMessage(new));
    id
}

fn finish(w: &mut World, id: domain::ExecutionId) {
    w.ok(Change::FinishExecution {
        id,
        state: ExecutionState::Cancelled,
        exit_code: None,
        usage: Usage::default(),
        summary: None,
    });
}

#[test]
fn a_bad_payload_or_envelope_is_refused_and_changes_nothing() {
    let mut w = World::new();
    let bad = [
        (
            NewMessage::new(Receiver::Broadcast, MessageType::Task, json!({})),
            "needs `title`",
        ),
        (
            NewMessage::new(
                Receiver::Broadcast,
                MessageType::Status,
                json!({"text": "x".repeat(limits::PAYLOAD_BYTES)}),
            ),
            "at most 16384 bytes",
        ),
        (
            NewMessage {
                correlation: Some("a\nb".into()),
                ..status(Receiver::People)
            },
            "correlation id",
        ),
        (
            NewMessage {
                ttl: Some(Duration(limits::MAX_TTL_MS + 1)),
                ..status(Receiver::People)
            },
            "time to live",
        ),
        (
            status(Receiver::Execution(domain::ExecutionId(9))),
            "execution #9 does not exist",
        ),
    ];
    for (new, says) in bad {
        let refusal = w.refused(Change::SendMessage(new));
        assert!(refusal.contains(says), "{refusal}");
    }
    assert_eq!(w.state.messages().count(), 0);
}

#[test]
fn a_message_to_an_execution_never_reaches_a_later_one() {
    let mut w = World::new();
    let task = w.titled("a");
    let first = w.claim(task);
    let m = send(&mut w, status(Receiver::Execution(first)));
    w.ok(Change::DeliverMessage { id: m, to: first });
    finish(&mut w, first);
    w.ok(Change::SetTaskState {
        id: task,
        to: TaskState::Open,
        reason: None,
    });
    let second = w.claim(task);
    let refusal = w.refused(Change::DeliverMessage { id: m, to: second });
    assert!(
        refusal.contains(&format!(
            "is for execution:{first}, not for execution #{second}"
        )),
        "{refusal}"
    );
    w.actor = "agent:coder#2";
    let refusal = w.refused(Change::AckMessage {
        id: m,
        by: Some(second),
    });
    assert!(refusal.contains("not for execution"), "{refusal}");
    // Nor to the first one, now that it ended.
    let refusal = w.refused(Change::DeliverMessage { id: m, to: first });
    assert!(refusal.contains("already finished"), "{refusal}");
    let refusal = w.refused(Change::SendMessage(status(Receiver::Execution(first))));
    assert!(refusal.contains("would never be read"), "{refusal}");
}

#[test]
fn a_message_is_acknowledged_once_and_only_after_it_was_delivered() {
    let mut w = World::new();
    let task = w.titled("a");
    let e = w.claim(task);
    let m = send(&mut w, status(Receiver::Agent("coder".into())));
    w.actor = "agent:coder#1";
    let refusal = w.refused(Change::AckMessage { id: m, by: Some(e) });
    assert!(refusal.contains("never delivered"), "{refusal}");
    w.ok(Change::DeliverMessage { id: m, to: e });
    w.ok(Change::DeliverMessage { id: m, to: e });
    w.ok(Change::AckMessage { id: m, by: Some(e) });
    let refusal = w.refused(Change::AckMessage { id: m, by: Some(e) });
    assert!(
        refusal.contains("acknowledged already by agent:coder#1"),
        "{refusal}"
    );
    let refusal = w.refused(Change::DeliverMessage { id: m, to: e });
    assert!(refusal.contains("acknowledged once"), "{refusal}");
    let msg = w.state.message(m).unwrap();
    assert_eq!((msg.state, msg.deliveries), (MessageState::Acked, 2));
    // A message for another agent is not this one's to read.
    let other = send(&mut w, status(Receiver::Agent("reviewer".into())));
    let refusal = w.refused(Change::DeliverMessage { id: other, to: e });
    assert!(refusal.contains("is for agent:reviewer"), "{refusal}");
}

#[test]
fn nothing_is_delivered_or_acknowledged_after_its_time_to_live() {
    let mut w = World::new();
    let task = w.titled("a");
    let e = w.claim(task);
    let m = send(
        &mut w,
        NewMessage {
            ttl: Some(Duration::from_secs(10)),
            ..status(Receiver::Execution(e))
        },
    );
    w.ok(Change::DeliverMessage { id: m, to: e });
    let refusal = w.refused(Change::ExpireMessage { id: m });
    assert!(refusal.contains("has not expired"), "{refusal}");
    w.now = Timestamp(w.now.0 + 10_000);
    for change in [
        Change::DeliverMessage { id: m, to: e },
        Change::AckMessage { id: m, by: None },
    ] {
        let refusal = w.refused(change);
        assert!(refusal.contains("time to live ran out"), "{refusal}");
    }
    w.ok(Change::ExpireMessage { id: m });
    let msg = w.state.message(m).unwrap();
    assert_eq!(msg.state, MessageState::Dead);
    assert!(msg.dead_reason.as_deref().unwrap().starts_with("expired"));
    let refusal = w.refused(Change::ExpireMessage { id: m });
    assert!(refusal.contains("is dead already"), "{refusal}");
}

#[test]
fn identical_alerts_are_coalesced_while_the_first_is_open() {
    let mut w = World::new();
    let alert = || {
        NewMessage::new(
            Receiver::People,
            MessageType::Alert,
            json!({"text": "disk full"}),
        )
    };
    let first = send(&mut w, alert());
    for _ in 0..5 {
        w.ok(Change::SendMessage(alert()));
    }
    assert_eq!(w.state.messages().count(), 1);
    assert_eq!(w.state.message(first).unwrap().coalesced, 5);
    w.ok(Change::AckMessage {
        id: first,
        by: None,
    });
    // Once it was read, the same alert is news again.
    let second = send(&mut w, alert());
    assert_ne!(first, second);
    assert_eq!(w.state.messages().count(), 2);
}

#[test]
fn an_execution_that_floods_is_refused_at_its_bound() {
    let mut w = World::new();
    let task = w.titled("a");
    let e = w.claim(task);
    let from = |n: u32| NewMessage {
        sender_execution: Some(e),
        ..NewMessage::new(
            Receiver::People,
            MessageType::Status,
            json!({"text": format!("step {n}")}),
        )
    };
    for n in 0..limits::OPEN_PER_SENDER {
        w.ok(Change::SendMessage(from(n)));
    }
    let refusal = w.refused(Change::SendMessage(from(1000)));
    assert!(refusal.contains("the most it may have open"), "{refusal}");
    // A message read frees its slot.
    w.ok(Change::AckMessage {
        id: MessageId(1),
        by: None,
    });
    w.ok(Change::SendMessage(from(1001)));
    assert_eq!(w.state.sent_by(e).open, limits::OPEN_PER_SENDER);
    // An ended execution sends nothing.
    finish(&mut w, e);
    let refusal = w.refused(Change::SendMessage(from(1002)));
    assert!(refusal.contains("already finished"), "{refusal}");
}

#[test]
fn announcements_are_acknowledged_once_by_each_reader_and_end_with_their_time_to_live() {
    let mut w = World::new();
    let task = w.titled("a");
    let e = w.claim(task);
    let other = w.titled("b");
    let reviewer = w.state.next_execution_id();
    w.ok(Change::CreateExecution {
        task_id: other,
        kind: domain::ExecutionKind::Work,
        agent: "reviewer".into(),
        attempt: 1,
        lease: None,
    });
    let m = send(&mut w, status(Receiver::Broadcast));
    let msg = w.state.message(m).unwrap();
    assert_eq!(
        msg.expires_at,
        Some(Timestamp(w.now.0 + limits::ANNOUNCEMENT_TTL_MS as i64))
    );
    let refusal = w.refused(Change::AckMessage { id: m, by: Some(e) });
    assert!(refusal.contains("was never delivered"), "{refusal}");
    for _ in 0..limits::DELIVERIES + 2 {
        w.ok(Change::DeliverMessage { id: m, to: e });
    }
    assert_eq!(w.state.message(m).unwrap().state, MessageState::Delivered);
    let refusal = w.refused(Change::AckMessage { id: m, by: None });
    assert!(
        refusal.contains("is an announcement: each agent that reads it"),
        "{refusal}"
    );
    w.ok(Change::AckMessage { id: m, by: Some(e) });
    assert!(w.state.read_by(m, "coder"));
    assert!(!w.state.read_by(m, "reviewer"));
    let refusal = w.refused(Change::AckMessage { id: m, by: Some(e) });
    assert!(
        refusal.contains("acknowledged already for agent coder"),
        "{refusal}"
    );
    // The other reader's acknowledgement is its own, and the message stays open for more.
    w.ok(Change::DeliverMessage {
        id: m,
        to: reviewer,
    });
    w.ok(Change::AckMessage {
        id: m,
        by: Some(reviewer),
    });
    assert!(w.state.read_by(m, "reviewer"));
    assert_eq!(w.state.message(m).unwrap().state, MessageState::Delivered);
    // Its time runs out all the same.
    w.now = Timestamp(w.now.0 + limits::ANNOUNCEMENT_TTL_MS as i64);
    w.ok(Change::ExpireMessage { id: m });
    assert_eq!(w.state.message(m).unwrap().state, MessageState::Dead);
}

#[test]
fn a_message_delivered_too_often_unread_becomes_a_dead_letter() {
    let mut w = World::new();
    let task = w.titled("a");
    let e = w.claim(task);
    let m = send(&mut w, status(Receiver::Execution(e)));
    for _ in 0..limits::DELIVERIES {
        w.ok(Change::DeliverMessage { id: m, to: e });
    }
    w.ok(Change::DeliverMessage { id: m, to: e });
    let msg = w.state.message(m).unwrap();
    assert_eq!(msg.state, MessageState::Dead);
    assert!(
        msg.dead_reason
            .as_deref()
            .unwrap()
            .contains("never acknowledged")
    );
    assert_eq!(msg.deliveries, limits::DELIVERIES);
}
