//! The frontend's contract of a BFF (CONTRACT section 8): the OpenAPI 3.1 document of its public routes
//! ([`document`]), which `bff openapi` prints and `GET /admin/openapi.json` serves, and a typed,
//! dependency-free TypeScript client made from such a document ([`typescript`], `bff client`).
#![forbid(unsafe_code)]

mod document;
mod typescript;

pub use self::{
    document::{RustRoute, document},
    typescript::{ClientError, typescript},
};
