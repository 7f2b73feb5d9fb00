//! Rendering prompt and argument templates with strict undefined names.

use domain::{ExecutionId, ExecutionKind, TaskId, TaskState};
use manifest::{Error, ExecutionView, PromptContext, TaskView, render_arg, render_prompt};

fn task(id: i64, title: &str) -> TaskView {
    TaskView {
        id: TaskId(id),
        title: title.into(),
        body: String::new(),
        labels: vec![],
        priority: 2,
        state: TaskState::Open,
        branch: None,
        summary: None,
        merge_failed: None,
    }
}

fn context() -> PromptContext {
    PromptContext {
        task: task(12, "Fix the parser"),
        parent: None,
        children: vec![],
        attempt: 1,
        iteration: 1,
        feedback: None,
        comments: None,
        answer: None,
        inbox: None,
        handoff: None,
        execution: ExecutionView {
            id: ExecutionId(3),
            kind: ExecutionKind::Work,
        },
        agent: "worker".into(),
        agency: None,
        workflow: None,
    }
}

#[test]
fn task_fields_render() {
    let out = render_prompt(
        "#{{ task.id }}: {{ task.title }} ({{ task.state }}, p{{ task.priority }})",
        &context(),
    )
    .unwrap();
    assert_eq!(out, "#12: Fix the parser (open, p2)");
    let out = render_prompt("{{ execution.kind }} {{ execution.id }} by {{ agent }}, attempt {{ attempt }}.{{ iteration }}", &context()).unwrap();
    assert_eq!(out, "work 3 by worker, attempt 1.1");
}

#[test]
fn unknown_names_are_errors_that_name_them() {
    let err = render_prompt("line one\n{{ task.titel }}", &context()).unwrap_err();
    match &err {
        Error::UndefinedVariable { name, line, hint } => {
            assert_eq!(name, "task.titel");
            assert_eq!(*line, 2);
            assert!(hint.contains("title"), "{hint}");
        }
        other => panic!("expected an undefined variable, got {other:?}"),
    }
    assert!(err.to_string().contains("`task.titel`"), "{err}");

    let err = render_prompt("{{ nonsense }}", &context()).unwrap_err();
    assert!(
        matches!(&err, Error::UndefinedVariable { name, .. } if name == "nonsense"),
        "{err:?}"
    );
    // `prompt` exists only for command arguments and environment values.
    assert!(matches!(
        render_prompt("{{ prompt }}", &context()),
        Err(Error::UndefinedVariable { .. })
    ));
}

#[test]
fn syntax_errors_say_where() {
    let err = render_prompt("ok\n{% if feedback %}", &context()).unwrap_err();
    assert!(
        matches!(err, Error::TemplateSyntax { line: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn parent_and_children_render_in_conditions_and_loops() {
    let template = "{% if parent %}Part of #{{ parent.id }} {{ parent.title }}.\n{% endif %}\
                    {% for c in children %}- #{{ c.id }} {{ c.title }}: {{ c.state }}{% if c.summary %} ({{ c.summary }}){% endif %}\n{% endfor %}";
    assert_eq!(render_prompt(template, &context()).unwrap(), "");

    let mut ctx = context();
    ctx.parent = Some(task(7, "Reporting"));
    let mut done = task(13, "Lexer");
    done.state = TaskState::Done;
    done.summary = Some("tokens work".into());
    ctx.children = vec![done, task(14, "Grammar")];
    assert_eq!(
        render_prompt(template, &ctx).unwrap(),
        "Part of #7 Reporting.\n- #13 Lexer: done (tokens work)\n- #14 Grammar: open\n"
    );
}

#[test]
fn feedback_renders_only_when_there_is_some() {
    let template = "Do it.\n{% if feedback %}Last time:\n{{ feedback }}\n{% endif %}";
    assert_eq!(render_prompt(template, &context()).unwrap(), "Do it.\n");
    let mut ctx = context();
    ctx.feedback = Some("2 tests failed".into());
    assert_eq!(
        render_prompt(template, &ctx).unwrap(),
        "Do it.\nLast time:\n2 tests failed\n"
    );
    // An absent value printed without a guard is empty, not the word "none".
    assert_eq!(render_prompt("[{{ feedback }}]", &context()).unwrap(), "[]");
}

#[test]
fn arguments_also_see_the_prompt() {
    let ctx = context();
    assert_eq!(
        render_arg("--prompt={{ prompt }}", &ctx, "hello").unwrap(),
        "--prompt=hello"
    );
    assert_eq!(
        render_arg("task-{{ task.id }}", &ctx, "hello").unwrap(),
        "task-12"
    );
    assert!(
        matches!(render_arg("{{ promt }}", &ctx, "x"), Err(Error::UndefinedVariable { name, .. }) if name == "promt")
    );
}

#[test]
fn the_full_example_prompt_renders() {
    let agents = manifest::parse_agents(crate::FULL_AGENT, std::path::Path::new("w.yaml")).unwrap();
    let prompt = &agents[0].spec().prompt;
    let mut ctx = context();
    assert_eq!(
        render_prompt(prompt, &ctx).unwrap(),
        "You work on task #12: Fix the parser\n\n"
    );
    ctx.feedback = Some("boom".into());
    // The example writes `\n` inside a literal block, so it stays a backslash and an n.
    assert_eq!(
        render_prompt(prompt, &ctx).unwrap(),
        "You work on task #12: Fix the parser\nLast iteration failed:\\nboom\n"
    );
}

#[test]
fn the_default_prompt_renders_both_sample_shapes() {
    let sample = PromptContext::sample();
    let full = render_prompt(manifest::DEFAULT_PROMPT, &sample).unwrap();
    assert!(full.contains("task #42: Add CSV export"), "{full}");
    assert!(full.contains("part of #7: Reporting"), "{full}");
    assert!(full.contains("- #43 Write the CSV writer (done)"), "{full}");
    assert!(full.contains("tests: 1 of 3 failed"), "{full}");
    let bare = render_prompt(manifest::DEFAULT_PROMPT, &context()).unwrap();
    assert!(
        !bare.contains("part of") && !bare.contains("sub-tasks") && !bare.contains("validation"),
        "{bare}"
    );
}
