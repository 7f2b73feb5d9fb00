//! Tests of the workflow machine: its steps, its replay and the checks of a definition.

mod check;
mod fixtures;
mod machine;
mod replay;
mod sim;
