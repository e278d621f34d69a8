//! Renderings of a [`crate::snapshot::Snapshot`].

pub mod json;
pub mod text;
