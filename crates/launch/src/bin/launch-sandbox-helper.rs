//! The sandbox helper for this crate's tests: in agentgrid the binary itself is the helper
//! (`agentgrid __sandbox`), but tests run from a test binary, which cannot be. Tests point
//! `SandboxSpec::helper` here.

fn main() {
    if sandbox::is_helper_invocation() {
        sandbox::helper_main();
    }
    eprintln!(
        "launch-sandbox-helper only runs as `launch-sandbox-helper {}`, started by the launch \
         crate's tests",
        sandbox::HELPER_ARG
    );
    std::process::exit(2);
}
