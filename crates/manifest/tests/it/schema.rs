//! The committed schema file matches the types. `UPDATE_SCHEMA=1 cargo test -p manifest`
//! rewrites it after a change to the manifest types.

use std::path::PathBuf;

#[test]
fn the_committed_schema_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema/agentgrid.schema.json");
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&manifest::json_schema()).unwrap()
    );
    if std::env::var("UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is missing or out of date; run `UPDATE_SCHEMA=1 cargo test -p manifest` and commit the result",
        path.display()
    );
}

#[test]
fn the_schema_covers_both_manifest_kinds() {
    let schema = manifest::json_schema();
    let refs: Vec<&str> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["$ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "#/$defs/AgentManifest",
            "#/$defs/ConfigManifest",
            "#/$defs/AgencyManifest"
        ]
    );
    assert_eq!(
        schema["$defs"]["AgentManifest"]["additionalProperties"],
        false
    );
}
