//! What `run` says at its start about the project: the mistakes `validate` finds, each with its
//! place and what to do, and the differences between the checkout and the agents' view.

use crate::checks::Severity;
use crate::project::Project;

/// Prints the findings of the project's checks on standard error: errors as `validate` shows
/// them (file:line:col), then a line saying what they mean for this run; warnings after.
pub async fn say_findings(project: &Project, manifests: &manifest::Project) {
    let findings = crate::checks::project(&project.root, manifests).await;
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    for error in &errors {
        eprintln!(
            "{} {}",
            crate::output::error_prefix(),
            domain::text::one_line(&error.render_place())
        );
    }
    if !errors.is_empty() {
        eprintln!(
            "{} {} problem(s) in the configuration: a task that needs what they name fails at \
             once, without retrying; fix them (`agentgrid validate` lists them again), then \
             `agentgrid task reopen` those tasks",
            crate::output::warning_prefix_err(),
            errors.len()
        );
    }
    for warning in findings.iter().filter(|f| f.severity == Severity::Warning) {
        eprintln!(
            "{} {}",
            crate::output::warning_prefix_err(),
            domain::text::one_line(&warning.message)
        );
    }
}
