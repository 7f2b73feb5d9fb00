//! Tests of the scheduler's rules (one case each) and of its properties under random worlds.

mod props;
mod rules;
mod world;
