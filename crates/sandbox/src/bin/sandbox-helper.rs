//! A bare sandbox helper: what `agentgrid __sandbox` does, without the rest of agentgrid. The
//! crate's tests run programs through it, the way the launch crate runs them through agentgrid.

fn main() {
    if sandbox::is_helper_invocation() {
        sandbox::helper_main();
    }
    eprintln!(
        "sandbox-helper is started by agentgrid's tests as `sandbox-helper {}`",
        sandbox::HELPER_ARG
    );
    std::process::exit(2);
}
