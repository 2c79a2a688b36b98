//! The seccs content store.

pub mod backend;
