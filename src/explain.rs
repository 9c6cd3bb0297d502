//! `conflux explain` (docs/PLAN.md): the upstream calls a document would
//! make, predicted from its plan without making any. The document goes the
//! way every request goes (`execute::run`: persisted queries, parse,
//! `[limits]`, variables, validation, plan) with `explain` set, so what it
//! prints is what `conflux-explain: 1` answers and what
//! `[limits].max_upstream_calls` judges.

use http::HeaderMap;

use crate::execute::planned::Prediction;
use crate::execute::run::{self, Caller, GraphqlRequest, Report};
use crate::gateway::Gateway;
use crate::telemetry::trace::RequestTrace;

/// The prediction for `document`'s operation (`operation` names it when the
/// document has several), or the errors that refuse the document, each as
/// `SOURCE:LINE:COL: message` (`SOURCE: message` without a location).
pub async fn explain(
    gateway: &Gateway,
    source: &str,
    document: String,
    operation: Option<String>,
    variables: Option<serde_json::Value>,
) -> Result<Prediction, Vec<String>> {
    let headers = HeaderMap::new();
    let trace = RequestTrace::from_headers(&headers);
    let caller = Caller {
        headers: &headers,
        trace: &trace,
        debug: false,
        claims: None,
        over_get: false,
        incremental: false,
        explain: true,
        rate_key: None,
        subscriber: None,
    };
    let request = GraphqlRequest {
        query: Some(document),
        operation_name: operation,
        variables,
        extensions: None,
    };
    let mut report = Report::default();
    let outcome = run::run(gateway, caller, request, &mut report).await;
    if !outcome.errors.is_empty() {
        return Err(outcome
            .errors
            .iter()
            .map(|error| match error.locations.first() {
                Some(pos) => format!("{source}:{}:{}: {}", pos.line, pos.column, error.message),
                None => format!("{source}: {}", error.message),
            })
            .collect());
    }
    report
        .prediction
        .ok_or_else(|| vec!["the operation could not be planned".to_owned()])
}
