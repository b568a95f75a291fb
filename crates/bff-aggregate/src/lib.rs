//! Declarative aggregation: a route's backends compiled once into a [`Plan`] (a DAG of downstream calls
//! with pre-parsed path templates and JSONPath [`Selector`]s), executed with concurrent fan-out, merged into
//! one JSON object, with partial results when optional backends fail.
#![forbid(unsafe_code)]

mod plan;
mod select;

pub use self::{
    plan::{DownstreamPath, Plan, PlanError, PlanProblem, check_path_properties},
    select::{Selector, SelectorError, Step},
};
