//! The loop against the scripted model server: it ends on an answer without a tool call, on
//! the turn limit, and on an API error, and says which.

use builtin::{Error, Event, Limits, LoopOptions, Model, ModelOptions, Tools, Workspace};
use modelfixture::{Script, Step};
use serde_json::json;

async fn run(
    steps: Vec<Step>,
    max_turns: u32,
) -> (
    Result<builtin::Finished, Error>,
    Vec<Event>,
    tempfile::TempDir,
) {
    let fixture = modelfixture::spawn(Script::new(steps)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tools = Tools {
        workspace: Workspace::open(dir.path()).unwrap(),
        limits: Limits::default(),
        control: None,
        command_env: launch::base_env(),
    };
    let model = Model::new(ModelOptions {
        base_url: fixture.base_url().trim_end_matches("/v1").to_string(),
        api_key: "token".into(),
        model: "claude".into(),
        max_tokens: 100,
    })
    .unwrap();
    let mut events = Vec::new();
    let result = builtin::run(
        &model,
        &tools,
        &LoopOptions { max_turns },
        "do it",
        &mut |e| events.push(e.clone()),
    )
    .await;
    (result, events, dir)
}

#[tokio::test]
async fn the_loop_ends_on_an_answer_without_a_tool_call() {
    let (result, events, dir) = run(
        vec![
            Step::call("", "write_file", json!({"path": "f", "content": "x"}), 5, 2),
            Step::reply("all done", 7, 3, 0),
        ],
        10,
    )
    .await;
    let done = result.unwrap();
    assert_eq!(done.turns, 2);
    assert_eq!(done.text, "all done");
    assert_eq!(done.usage.output, 5);
    assert_eq!(std::fs::read_to_string(dir.path().join("f")).unwrap(), "x");
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["start", "assistant", "tool", "assistant", "result"]);
}

#[tokio::test]
async fn the_turn_limit_and_api_errors_end_the_run_with_the_reason() {
    let call = || Step::call("", "list_files", json!({}), 1, 1);
    let (result, events, _dir) = run(vec![call(), call(), call()], 2).await;
    assert!(matches!(result, Err(Error::TooManyTurns(2))), "{result:?}");
    assert!(matches!(events.last(), Some(Event::Error { turns: 2, .. })));

    let refusal = Step {
        status: Some(402),
        error_message: Some("credit balance is too low".into()),
        ..Step::default()
    };
    let (result, _events, _dir) = run(vec![refusal], 5).await;
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the model API answered HTTP 402: billing_error: credit balance is too low"
    );
}

#[test]
fn malformed_answers_are_errors_that_say_what_was_wrong() {
    use builtin::model::parse_reply;
    let check = |answer: serde_json::Value, expected: &str| {
        let err = parse_reply(&answer).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    };
    check(json!({"content": "text"}), "no `content` list");
    check(
        json!({"content": [{"type": "text", "text": 5}]}),
        "block 0 is text without a string",
    );
    check(
        json!({"content": [{"type": "tool_use", "name": "read_file", "input": {}}]}),
        "block 0 is a tool call without a usable id and name",
    );
    check(
        json!({"content": [{"type": "tool_use", "id": "x".repeat(300), "name": "edit"}]}),
        "without a usable id",
    );
    // Blocks the loop does not know are kept and otherwise ignored; missing usage counts zero.
    let reply = parse_reply(&json!({"content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "ok"}]})).unwrap();
    assert_eq!(reply.text, "ok");
    assert_eq!(reply.content.len(), 2);
    assert_eq!(reply.usage, domain::Tokens::default());
}

#[test]
fn an_answer_s_usage_is_read_in_the_gateway_s_convention_and_cannot_overflow() {
    use builtin::model::parse_reply;
    let reply = parse_reply(&json!({"content": [], "usage": {"input_tokens": 10,
        "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5, "output_tokens": 7}}))
    .unwrap();
    assert_eq!(
        reply.usage,
        domain::Tokens {
            input: 45,
            output: 7,
            cached: 30,
        }
    );
    // The numbers are the model side's: huge ones saturate instead of wrapping or panicking.
    let reply = parse_reply(&json!({"content": [], "usage": {"input_tokens": u64::MAX,
        "cache_read_input_tokens": u64::MAX, "cache_creation_input_tokens": 1,
        "output_tokens": u64::MAX}}))
    .unwrap();
    assert_eq!(reply.usage.input, u64::MAX);
    assert_eq!(reply.usage.total(), u64::MAX);
}

#[tokio::test]
async fn an_answer_with_too_many_calls_runs_only_the_first_ones() {
    let dir = tempfile::tempdir().unwrap();
    let tools = Tools {
        workspace: Workspace::open(dir.path()).unwrap(),
        limits: Limits::default(),
        control: None,
        command_env: launch::base_env(),
    };
    let calls: Vec<builtin::model::Call> = (0..builtin::MAX_CALLS_PER_TURN + 2)
        .map(|i| builtin::model::Call {
            id: format!("c{i}"),
            name: "write_file".into(),
            input: json!({"path": format!("f{i}"), "content": "x"}),
        })
        .collect();
    let mut events = Vec::new();
    let results = builtin::answer_calls(&tools, &calls, 1, &mut |e| events.push(e.clone())).await;
    assert_eq!(results.len(), calls.len());
    assert_eq!(events.len(), calls.len());
    let last = builtin::MAX_CALLS_PER_TURN - 1;
    assert!(dir.path().join(format!("f{last}")).exists());
    assert!(!dir.path().join(format!("f{}", last + 1)).exists());
    assert_eq!(results[last + 1]["is_error"], true);
    assert_eq!(results[last + 1]["tool_use_id"], format!("c{}", last + 1));
    assert!(
        results[last + 1]["content"]
            .as_str()
            .unwrap()
            .contains("at most 64 tool calls"),
        "{}",
        results[last + 1]
    );
}
