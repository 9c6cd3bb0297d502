//! Admission: everything that refuses work before execution, so refused
//! requests never reach an upstream (docs/CONFIG.md `[limits]`, `[rate_limit]`,
//! `[persisted_queries]`; codes in docs/ERRORS.md).

pub mod cache;
pub mod documents;
pub mod expansion;
pub mod limits;
pub mod persisted;
pub mod rate_limit;
