//! Setting up an agent CLI's runtime: the model alias it asks for, checked against the node's
//! models before anything runs.

use manifest::{Models, Runtime, RuntimeKind};

use crate::Error;

/// The alias a known CLI asks the gateway for: the manifest's `model`, else the alias
/// `default`, else the only alias. `None` for the `command` runtime, which picks its own.
pub(crate) fn model_alias(
    agent: &str,
    runtime: &Runtime,
    models: &Models,
) -> Result<Option<String>, Error> {
    if runtime.kind == RuntimeKind::Command {
        return Ok(None);
    }
    let kind = runtime.kind.name();
    let aliases: Vec<&str> = models.aliases.keys().map(String::as_str).collect();
    if aliases.is_empty() {
        return Err(Error::Setup(format!(
            "agent `{agent}` runs `{kind}`, which reaches models only through agentgrid's \
             gateway, but the config has no `models:` section: add a provider and an alias \
             under `models:` in .agentgrid/config.yaml"
        )));
    }
    match &runtime.model {
        Some(model) if models.aliases.contains_key(model) => Ok(Some(model.clone())),
        Some(model) => Err(Error::Setup(format!(
            "agent `{agent}`: `runtime.model` is `{model}`, which is not a model alias of the \
             config; use one of: {}",
            aliases.join(", ")
        ))),
        None if models.aliases.contains_key("default") => Ok(Some("default".into())),
        None if aliases.len() == 1 => Ok(Some(aliases[0].to_string())),
        None => Err(Error::Setup(format!(
            "agent `{agent}` runs `{kind}` and the config has several model aliases ({}) and \
             none named `default`: set `runtime.model` to the one it should use",
            aliases.join(", ")
        ))),
    }
}
