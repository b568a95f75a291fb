//! The embedded gateway: the [`Edge`] layer every public request passes (request id, trace context,
//! deadline, load shedding, body limit, JSON errors), and [`BffError`], the one error type whose responses
//! are the JSON errors of CONTRACT section 3.
#![forbid(unsafe_code)]

mod error;
mod layer;

pub use self::{
    error::{BffError, Result},
    layer::{Edge, EdgeLayer, EdgePolicy},
};
