//! Command-line subcommands, one module per verb family.

pub mod data;
