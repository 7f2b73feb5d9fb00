//! The JSON Schema of the manifests, generated from the types, for editors and `agentgrid`'s docs.

use schemars::generate::SchemaSettings;

use crate::{AgencyManifest, AgentManifest, ConfigManifest};

/// One schema accepting either manifest kind, with a definition for each.
pub fn json_schema() -> serde_json::Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let agent = generator.subschema_for::<AgentManifest>();
    let config = generator.subschema_for::<ConfigManifest>();
    let agency = generator.subschema_for::<AgencyManifest>();
    let context = generator.subschema_for::<crate::PromptContext>();
    let definitions = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://agentgrid.dev/schema/agentgrid.schema.json",
        "title": "agentgrid manifest",
        "description": "An agent (.agentgrid/agents/*.yaml, kind Agent), the project settings (.agentgrid/config.yaml, kind Config) or an agency (.agentgrid/agencies/*.yaml, kind Agency).",
        "oneOf": [agent, config, agency],
        // Not a manifest: what `spec.prompt` and the runtime's argument and environment
        // templates can use (those add `prompt`, the rendered prompt), for editors and docs.
        "x-promptContext": context,
        "$defs": definitions,
    })
}

/// The definition names used in the schema, with the fields the decoders accept for each; a test
/// holds the two in step.
#[cfg(test)]
pub(crate) fn decoder_fields() -> Vec<(String, &'static [&'static str])> {
    use crate::{agent, config};
    use schemars::JsonSchema;
    fn name<T: JsonSchema>() -> String {
        T::schema_name().into_owned()
    }
    vec![
        (name::<AgentManifest>(), agent::MANIFEST_FIELDS),
        (name::<crate::AgentMetadata>(), agent::METADATA_FIELDS),
        (name::<crate::AgentSpec>(), agent::SPEC_FIELDS),
        (name::<crate::Runtime>(), agent::RUNTIME_FIELDS),
        (name::<crate::Routing>(), agent::ROUTING_FIELDS),
        (name::<crate::Limits>(), agent::LIMITS_FIELDS),
        (name::<crate::Validation>(), agent::VALIDATION_FIELDS),
        (name::<crate::Validator>(), agent::VALIDATOR_FIELDS),
        (name::<ConfigManifest>(), config::MANIFEST_FIELDS),
        (name::<crate::ConfigMetadata>(), config::METADATA_FIELDS),
        (name::<crate::ConfigSpec>(), config::SPEC_FIELDS),
        (name::<crate::Concurrency>(), config::CONCURRENCY_FIELDS),
        (name::<crate::Retry>(), config::RETRY_FIELDS),
        (name::<crate::Continuation>(), config::CONTINUATION_FIELDS),
        (name::<crate::Resume>(), config::RESUME_FIELDS),
        (name::<crate::Guards>(), config::GUARDS_FIELDS),
        (name::<crate::WorkspaceConfig>(), config::WORKSPACE_FIELDS),
        (name::<crate::Hooks>(), config::HOOKS_FIELDS),
        (name::<crate::HookCommand>(), config::HOOK_FIELDS),
        (
            name::<crate::SandboxProfile>(),
            crate::sandbox::SANDBOX_FIELDS,
        ),
        (
            name::<crate::ResourceLimits>(),
            crate::sandbox::SANDBOX_LIMITS_FIELDS,
        ),
        (name::<crate::Models>(), crate::models::MODELS_FIELDS),
        (name::<crate::Provider>(), crate::models::PROVIDER_FIELDS),
        (name::<crate::ModelAlias>(), crate::models::ALIAS_FIELDS),
        (name::<crate::Prices>(), crate::models::PRICES_FIELDS),
        (
            name::<crate::ModelRetry>(),
            crate::models::MODEL_RETRY_FIELDS,
        ),
        (
            name::<crate::ModelLimits>(),
            crate::models::MODEL_LIMITS_FIELDS,
        ),
        (name::<crate::Budgets>(), crate::models::BUDGETS_FIELDS),
        (name::<crate::Budget>(), crate::models::BUDGET_FIELDS),
        (name::<AgencyManifest>(), agent::MANIFEST_FIELDS),
        (
            name::<crate::AgencyMetadata>(),
            crate::agency::METADATA_FIELDS,
        ),
        (name::<crate::AgencySpec>(), crate::agency::SPEC_FIELDS),
        (
            name::<crate::Specialist>(),
            crate::agency::SPECIALIST_FIELDS,
        ),
        (name::<crate::AgencyLimits>(), crate::agency::LIMITS_FIELDS),
        (name::<crate::Policies>(), crate::agency::POLICIES_FIELDS),
        (name::<crate::HandoffRule>(), crate::agency::HANDOFF_FIELDS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoders list allowed fields by hand; they must be exactly the fields of the types.
    #[test]
    fn decoder_field_lists_match_the_schema() {
        let schema = json_schema();
        for (name, fields) in decoder_fields() {
            let props = schema["$defs"][&name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no definition {name} in the schema"));
            let mut in_schema: Vec<&str> = props.keys().map(String::as_str).collect();
            let mut in_decoder = fields.to_vec();
            in_schema.sort();
            in_decoder.sort();
            assert_eq!(in_schema, in_decoder, "fields of {name}");
        }
    }

    /// The prompt context in the schema names exactly what templates may use.
    #[test]
    fn the_prompt_context_is_in_the_schema() {
        let schema = json_schema();
        assert_eq!(schema["x-promptContext"]["$ref"], "#/$defs/PromptContext");
        let props = schema["$defs"]["PromptContext"]["properties"]
            .as_object()
            .unwrap();
        let mut in_schema: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut names = crate::CONTEXT_NAMES.to_vec();
        in_schema.sort();
        names.sort();
        assert_eq!(in_schema, names);
        let task = schema["$defs"]["TaskView"]["properties"]
            .as_object()
            .unwrap();
        let mut fields: Vec<&str> = task.keys().map(String::as_str).collect();
        let mut known = crate::TASK_FIELDS.to_vec();
        fields.sort();
        known.sort();
        assert_eq!(fields, known);
    }

    #[test]
    fn defaults_and_constants_appear_in_the_schema() {
        let schema = json_schema();
        let defs = &schema["$defs"];
        assert_eq!(
            defs["AgentManifest"]["properties"]["apiVersion"]["const"],
            "agentgrid.dev/v1"
        );
        assert_eq!(
            defs["ConfigManifest"]["properties"]["kind"]["const"],
            "Config"
        );
        assert_eq!(defs["Limits"]["properties"]["timeout"]["default"], "30m");
        assert_eq!(
            defs["Guards"]["properties"]["max_executions_per_tree"]["default"],
            200
        );
        // `command` is required only for the `command` runtime; the built-in one refuses it and
        // a CLI's type has a program of its own.
        let runtime = &defs["Runtime"];
        assert!(runtime["required"].is_null(), "{runtime}");
        assert!(runtime["properties"]["model"].is_object());
        assert_eq!(runtime["if"]["properties"]["type"]["const"], "builtin");
        assert_eq!(
            runtime["else"]["else"]["required"],
            serde_json::json!(["command"])
        );
        assert_eq!(
            runtime["then"]["not"]["anyOf"][0]["required"],
            serde_json::json!(["command"])
        );
    }
}
