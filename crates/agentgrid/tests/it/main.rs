//! End-to-end tests: the real `agentgrid` binary on real git repositories in temp dirs.

mod cli;
mod control;
mod crash;
mod escape;
mod gateway;
mod run;
mod sandbox_escape;
mod support;
