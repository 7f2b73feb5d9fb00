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
    assert_eq!(done.usage.output_tokens, 5);
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
