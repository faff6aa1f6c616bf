//! The graph executor, in three phases (as in ggml): construct (ops recorded, per-sample shapes
//! checked), plan (for one batch size: node order is fixed, every intermediate gets an offset
//! in one arena by lifetime, scratch is the largest any node needs), run (no allocation, one
//! `match` over the closed op enum).

mod builder;
mod exec;
mod plan;

pub use builder::{Graph, GraphBuilder, Node, Op, Param, ParamData, ParamId, ValueId};
pub use exec::{thread_pool, Backend, Session};
pub use plan::Plan;
