//! orch-core: the pure domain of orch.
//!
//! Identifiers, the pipeline model and its validation, frontmatter parsing, gate evaluation, the
//! transition function with its budgets, the staging verdict fold, the canonical tracker states
//! and role files. Every decision orch makes is a function here over inputs passed in.
//!
//! Invariant: this crate does no I/O, spawns nothing, is not async and reads no clock. Time, file
//! contents and process outcomes come in as arguments; decisions go out as data.

pub mod frontmatter;
pub mod gate;
pub mod glob;
pub mod id;
pub mod pipeline;
pub mod protected;
pub mod role;
pub mod spend;
pub mod staging;
pub mod states;
pub mod toml_error;
pub mod transition;

pub use id::{IdError, ItemId, ProjectId, RoleName, StageName};
