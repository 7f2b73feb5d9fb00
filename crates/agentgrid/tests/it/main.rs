//! End-to-end tests: the real `agentgrid` binary on real git repositories in temp dirs.

mod bounds;
mod budget;
mod cancel;
mod cli;
mod control;
mod crash;
mod escape;
mod gateway;
mod git_drivers;
mod git_escape;
mod idempotent;
mod judge;
mod judge_attacks;
mod lies;
mod merges;
mod quota;
mod real_cli;
mod restart;
mod run;
mod sandbox_escape;
mod slow_work;
mod splits;
mod store_lock;
mod support;
mod text;
mod verdict;
