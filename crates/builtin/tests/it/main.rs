//! The built-in agent's parts against the real file system and the scripted model server:
//! path confinement, each tool's checks and bounds, and the loop's ends.

mod confine;
mod model_loop;
mod tools;
