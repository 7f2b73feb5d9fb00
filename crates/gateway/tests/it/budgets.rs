//! Budgets: a request over budget is refused in the provider's shape, the engine hears of it
//! once, and totals are kept per execution, tree and agent-day.

use domain::ExecutionId;
use gateway::{Baseline, BudgetScope, Budgets, Limit, ModelUsage, Notice, day_bounds};
use modelfixture::Step;

use crate::{
    PRICES, Setup, T0, TOKEN, chat_body, identity, json_of, messages_body, responses_body, usage_of,
};

fn budget_of(notice: Notice) -> gateway::BudgetExceeded {
    match notice {
        Notice::BudgetExceeded(over) => over,
        other => panic!("expected a budget notice, got {other:?}"),
    }
}

#[tokio::test]
async fn an_execution_over_its_token_budget_is_refused_in_each_shape_and_reported_once() {
    let budgets = Budgets {
        execution: Limit {
            max_tokens: Some(100),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = Setup::new(
        vec![
            Step::reply("spent", 90, 20, 0),
            Step::reply("never sent", 1, 1, 0),
        ],
        budgets,
    )
    .await;
    // The first request starts under budget and is let through; it ends over.
    let first = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(usage_of(s.notice().await).tokens.output, 20);

    let refused = s
        .post("/chat/completions", Some(TOKEN), &chat_body("gpt", true))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let error = json_of(refused).await;
    assert_eq!(error["error"]["type"], "insufficient_quota", "{error}");
    assert_eq!(error["error"]["code"], "insufficient_quota", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the execution budget of 100 tokens is used up (110 used)"),
        "{message}"
    );
    let over = budget_of(s.notice().await);
    assert_eq!(over.execution, ExecutionId(1));
    assert_eq!(over.scope, BudgetScope::Execution);

    let refused = s
        .post("/messages", Some(TOKEN), &messages_body("sonnet", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let error = json_of(refused).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "billing_error", "{error}");
    let refused = s
        .post("/responses", Some(TOKEN), &responses_body("gpt", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    s.no_notice();
    assert_eq!(
        s.fixture.requests().len(),
        1,
        "refused requests never go upstream"
    );
}

async fn send(s: &Setup, token: &str) -> u16 {
    s.post("/chat/completions", Some(token), &chat_body("gpt", false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn executions_of_one_tree_share_its_cost_budget_and_totals_add_up() {
    let tree_cap = Budgets {
        tree: Limit {
            max_tokens: None,
            max_cost_micros: Some(PRICES.cost_micros(900, 100, 0)),
        },
        ..Budgets::default()
    };
    let mut s = Setup::new(
        vec![
            Step::reply("a", 600, 50, 100),
            Step::reply("b", 400, 50, 0),
            Step::reply("c", 5, 5, 0),
        ],
        tree_cap,
    )
    .await;
    let registry = s.gateway.registry().clone();
    registry.register("agx-second", identity(2, 1, "codex", tree_cap));
    registry.register("agx-other-tree", identity(3, 9, "claude", tree_cap));

    assert_eq!(send(&s, TOKEN).await, 200);
    assert_eq!(send(&s, "agx-second").await, 200);
    usage_of(s.notice().await);
    usage_of(s.notice().await);
    // Together they spent more than the tree allows: both are refused now...
    assert_eq!(send(&s, "agx-second").await, 429);
    assert_eq!(budget_of(s.notice().await).scope, BudgetScope::Tree);
    assert_eq!(send(&s, TOKEN).await, 429);
    assert_eq!(budget_of(s.notice().await).execution, ExecutionId(1));
    // ...while another tree is not.
    assert_eq!(send(&s, "agx-other-tree").await, 200);
    usage_of(s.notice().await);

    let first = registry.execution_totals(ExecutionId(1));
    assert_eq!(
        first,
        ModelUsage {
            requests: 1,
            tokens: domain::Tokens {
                input: 600,
                output: 50,
                cached: 100,
            },
            cost_micros: PRICES.cost_micros(600, 50, 100),
        }
    );
    let tree = registry.tree_totals(domain::TaskId(1));
    assert_eq!(
        (tree.requests, tree.tokens.input, tree.tokens.output),
        (2, 1000, 100)
    );
    assert_eq!(
        tree.cost_micros,
        PRICES.cost_micros(600, 50, 100) + PRICES.cost_micros(400, 50, 0)
    );
    let claude_today = registry.agent_day_totals("claude");
    assert_eq!(
        (claude_today.requests, claude_today.tokens.total()),
        (2, 660)
    );
    assert_eq!(registry.agent_day_totals("codex").tokens.total(), 450);
}

#[tokio::test]
async fn an_agent_day_budget_counts_what_the_store_knew_and_resets_the_next_day() {
    let daily = Budgets {
        agent_day: Limit {
            max_tokens: Some(1_000),
            max_cost_micros: None,
        },
        ..Budgets::default()
    };
    let mut s = Setup::new(vec![Step::reply("tomorrow", 10, 10, 0)], Budgets::default()).await;
    let mut late = identity(5, 5, "night-owl", daily);
    late.baseline = Baseline {
        tree: ModelUsage::default(),
        agent_day: ModelUsage {
            requests: 40,
            tokens: domain::Tokens {
                input: 900,
                output: 100,
                cached: 0,
            },
            cost_micros: 0,
        },
    };
    s.gateway.registry().register("agx-late", late);
    let refused = s
        .post(
            "/messages",
            Some("agx-late"),
            &messages_body("sonnet", false),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    let over = budget_of(s.notice().await);
    assert_eq!(over.scope, BudgetScope::AgentDay);
    assert!(
        over.reason.contains("1000 tokens is used up"),
        "{}",
        over.reason
    );

    s.clock.set(day_bounds(T0).1);
    let next_day = s
        .post(
            "/messages",
            Some("agx-late"),
            &messages_body("sonnet", false),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(next_day.status(), 200);
    assert_eq!(usage_of(s.notice().await).execution, ExecutionId(5));
}
