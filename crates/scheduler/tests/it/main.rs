//! Tests of the scheduler's rules (one case each) and of its properties under random worlds.

mod agencies;
mod area_leases;
mod families;
mod props;
mod rules;
mod world;
