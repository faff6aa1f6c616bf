//! `text2img eval`: an independent judge of caption fidelity on `shapes`. Colours and size are
//! read analytically (`colour`), the shape kind by a small CNN trained on real images
//! (`shape_net`); `report` holds the eval captions, scores and diversity.

pub mod colour;
pub mod report;
pub mod shape_net;
pub mod style;
