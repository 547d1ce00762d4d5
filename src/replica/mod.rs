//! Read/write splitting: writes to the primary, reads to fit replicas.
//!
//! [`Classify`] decides whether a request only reads ([`Access::Read`]) or may write
//! ([`Access::Write`]); explicit intent (an [`Access`] request extension) always wins. The
//! built-in classifiers are [`HttpMethods`] (Rails' rule for HTTP APIs) and
//! [`SqlClassifier`], a conservative classifier of PostgreSQL statement text: only a plain
//! read may go to a replica; anything it is not sure of goes to the primary.

mod classify;
mod sql;

pub use classify::{Access, Classify, HttpMethods};
pub use sql::SqlClassifier;
