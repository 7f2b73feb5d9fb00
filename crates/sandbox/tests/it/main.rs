//! The sandbox, mechanism by mechanism, through the real helper binary.

mod filesystem;
mod git;
mod limits;
mod network;
mod process;
mod support;
