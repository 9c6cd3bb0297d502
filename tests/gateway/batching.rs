//! Batching tests: see the batching issue.
