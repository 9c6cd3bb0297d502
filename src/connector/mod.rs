//! From a field's mapping to an upstream request, and from the upstream's
//! JSON back to the field's GraphQL value. Plain functions, independent of
//! the GraphQL executor, so a planned fast path can reuse them.

pub mod coerce;
pub mod errors;
pub mod request;
pub mod shape;
pub mod template;
