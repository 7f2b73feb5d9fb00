//! End-to-end tests: the real `agentgrid` binary on real git repositories in temp dirs.

mod budget;
mod cli;
mod control;
mod crash;
mod escape;
mod gateway;
mod run;
mod support;
