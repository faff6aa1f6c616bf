//! Training: networks laid out unfused (`graph`), run forward and backward at a batch size
//! (`session`), their parameters, gradients and running statistics (`net`).

pub mod attributes;
pub mod augment;
pub mod captions;
pub mod checkpoint;
pub mod gan;
pub mod graph;
pub mod net;
pub mod posterior;
pub mod session;
pub mod sje;
pub mod style;

pub use net::TrainNet;
pub use session::{Mode, ParamStore, TrainSession};
