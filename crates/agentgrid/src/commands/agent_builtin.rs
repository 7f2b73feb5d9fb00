//! `agentgrid __agent-builtin`: the built-in agent, as the engine starts it inside an
//! execution's sandbox. The loop is the `builtin` crate's; this reads the environment the
//! engine gives every agent, prints the loop's events and turns its failure into exit 1.

use std::io::Read;
use std::path::PathBuf;

use crate::user_error;

/// The most of a prompt read from stdin.
const MAX_PROMPT_BYTES: u64 = 4 << 20;

/// Variables the commands the model runs do not get: with them the workspace's code (tests,
/// build scripts) could act as the agent.
const HIDDEN_FROM_COMMANDS: &[&str] = &[
    "AGENTGRID_TOKEN",
    "AGENTGRID_CONTROL_SOCKET",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
];

pub async fn agent_builtin(model: Option<String>, max_turns: u32) -> anyhow::Result<u8> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(base_url), Some(api_key)) = (var("ANTHROPIC_BASE_URL"), var("ANTHROPIC_API_KEY"))
    else {
        return Err(user_error(
            "the built-in agent needs the model gateway: ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY \
             are not set. Configure `models:` in .agentgrid/config.yaml and give the agent \
             `sandbox: {network: gateway}`",
        ));
    };
    let mut prompt = String::new();
    std::io::stdin()
        .take(MAX_PROMPT_BYTES)
        .read_to_string(&mut prompt)?;
    if prompt.trim().is_empty()
        && let Some(file) = var("AGENTGRID_PROMPT_FILE")
    {
        prompt = std::fs::read_to_string(&file)?;
    }
    if prompt.trim().is_empty() {
        return Err(user_error(
            "the built-in agent got an empty prompt on stdin",
        ));
    }
    let dir = match var("AGENTGRID_WORKSPACE") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()?,
    };
    let workspace = builtin::Workspace::open(&dir)
        .map_err(|e| anyhow::anyhow!("cannot open the workspace {}: {e}", dir.display()))?;
    let control = match (var("AGENTGRID_CONTROL_SOCKET"), var("AGENTGRID_TOKEN")) {
        (Some(socket), Some(token)) => Some(builtin::Control {
            socket: socket.into(),
            token,
        }),
        _ => None,
    };
    let command_env = std::env::vars()
        .filter(|(k, _)| !HIDDEN_FROM_COMMANDS.contains(&k.as_str()))
        .collect();
    let tools = builtin::Tools {
        workspace,
        limits: builtin::Limits::default(),
        control,
        command_env,
    };
    let model = builtin::Model::new(builtin::ModelOptions {
        base_url,
        api_key,
        model: model.unwrap_or_else(|| "default".into()),
        max_tokens: 8192,
    })?;
    let options = builtin::LoopOptions { max_turns };
    let mut emit = |event: &builtin::Event| {
        if let Ok(line) = serde_json::to_string(event) {
            outln!("{line}");
        }
    };
    match builtin::run(&model, &tools, &options, &prompt, &mut emit).await {
        Ok(_) => Ok(crate::exit::OK),
        Err(e) => {
            eprintln!("agentgrid builtin agent: {e}");
            Ok(crate::exit::FAILED)
        }
    }
}
