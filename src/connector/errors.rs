//! What a call's answer means for its field (docs/SHAPING.md): which
//! statuses make a nullable field null (`null_on`), when a 2xx answer is a
//! failure (`error_when`), and the GraphQL error a failed call becomes
//! (`errors`: message, code and extensions as templates over the response
//! and the request).
//!
//! Nothing of the upstream's answer reaches the client but what these
//! templates name: without them the error is Conflux's own, which names
//! the service and the status only.

use std::borrow::Cow;

use http::HeaderMap;
use serde_json::Value;
use sonic_rs::JsonValueTrait;

use super::request::render_value;
use super::template::{Looked, Placeholder, Root, Scope, Template};
use crate::error::FieldError;
use crate::upstream::json::{self, Json};

/// `errors = { message, code, extensions }`, each a template; an absent
/// one (or one without a value) falls back to Conflux's own.
#[derive(Debug, Default, Clone)]
pub struct ErrorTemplates {
    pub message: Option<Template>,
    pub code: Option<Template>,
    pub extensions: Vec<(String, Template)>,
}

/// The rules of one call: the service's defaults with the mapping's own
/// keys over them.
#[derive(Debug, Clone)]
pub struct AnswerRules {
    pub errors: ErrorTemplates,
    /// Statuses that make a nullable field null without an error.
    pub null_on: Vec<u16>,
    /// A template over a 2xx answer: a value that is not null or false
    /// makes the answer a failure.
    pub error_when: Option<Template>,
    /// An `errors` template names `{response.body.…}`: error bodies are
    /// read (decided once here, not per call).
    pub reads_error_body: bool,
}

impl Default for AnswerRules {
    fn default() -> Self {
        AnswerRules {
            errors: ErrorTemplates::default(),
            null_on: vec![404],
            error_when: None,
            reads_error_body: false,
        }
    }
}

/// A mapping's own `errors`, `null_on`, `error_when`: what it overrides.
#[derive(Debug, Default, Clone)]
pub struct AnswerOverrides {
    pub errors: ErrorTemplates,
    pub null_on: Option<Vec<u16>>,
    pub error_when: Option<Template>,
}

impl AnswerOverrides {
    pub fn is_empty(&self) -> bool {
        self.errors.message.is_none()
            && self.errors.code.is_none()
            && self.errors.extensions.is_empty()
            && self.null_on.is_none()
            && self.error_when.is_none()
    }
}

impl AnswerRules {
    /// These rules with `overrides` over them, key by key (`message`,
    /// `code`, each `extensions` entry, `null_on`, `error_when`).
    pub fn with(&self, overrides: &AnswerOverrides) -> AnswerRules {
        let mut rules = self.clone();
        let own = &overrides.errors;
        if own.message.is_some() {
            rules.errors.message.clone_from(&own.message);
        }
        if own.code.is_some() {
            rules.errors.code.clone_from(&own.code);
        }
        for (name, template) in &own.extensions {
            match rules.errors.extensions.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = template.clone(),
                None => rules
                    .errors
                    .extensions
                    .push((name.clone(), template.clone())),
            }
        }
        if let Some(null_on) = &overrides.null_on {
            rules.null_on.clone_from(null_on);
        }
        if overrides.error_when.is_some() {
            rules.error_when.clone_from(&overrides.error_when);
        }
        rules.reads_error_body = rules.names_body();
        rules
    }

    /// Whether a non-2xx answer's body is worth reading: a template of
    /// `errors` names `{response.body.…}`.
    fn names_body(&self) -> bool {
        let e = &self.errors;
        e.message
            .iter()
            .chain(e.code.iter())
            .chain(e.extensions.iter().map(|(_, t)| t))
            .flat_map(|t| t.placeholders())
            .any(|p| p.root == Root::Response && p.path.first().is_some_and(|s| s == "body"))
    }

    /// Does `status` make a nullable field null?
    pub fn nulls(&self, status: u16) -> bool {
        self.null_on.contains(&status)
    }

    /// Is this 2xx answer a failure (`error_when`)?
    pub fn fails(&self, response: &Response<'_>, scope: &dyn Scope) -> bool {
        let Some(template) = &self.error_when else {
            return false;
        };
        let scope = ResponseScope {
            inner: scope,
            response,
        };
        match render_value(template, &scope) {
            None => false,
            Some(Looked::Upstream(value)) => !(value.is_null() || value.as_bool() == Some(false)),
            Some(Looked::Input(value)) => !matches!(*value, Value::Null | Value::Bool(false)),
        }
    }

    /// `base` (Conflux's own error for the failure) shaped by `errors`.
    /// `service` and `status` stay Conflux's.
    pub fn shape(
        &self,
        mut base: FieldError,
        response: &Response<'_>,
        scope: &dyn Scope,
    ) -> FieldError {
        let templates = &self.errors;
        if templates.message.is_none()
            && templates.code.is_none()
            && templates.extensions.is_empty()
        {
            return base;
        }
        let scope = ResponseScope {
            inner: scope,
            response,
        };
        if let Some(message) = templates
            .message
            .as_ref()
            .and_then(|t| t.render_text(&scope))
        {
            base.message = message;
        }
        let code = templates
            .code
            .as_ref()
            .and_then(|t| t.render_text(&scope))
            .filter(|code| !code.is_empty());
        let mut extensions = Vec::new();
        for (name, template) in &templates.extensions {
            if RESERVED.contains(&name.as_str()) {
                continue;
            }
            let Some(value) = render_value(template, &scope).filter(|v| !v.is_null()) else {
                continue;
            };
            extensions.push((name.clone(), to_serde(&value)));
        }
        base.shaped = Some(Box::new(crate::error::ShapedError { code, extensions }));
        base
    }
}

/// What a failed call comes to for its field.
#[derive(Debug, Clone)]
pub enum Failed {
    /// A status in `null_on`: null on a nullable field.
    Null(u16),
    Error(FieldError),
}

impl AnswerRules {
    /// A failed call as its field sees it: a status in `null_on` nulls
    /// it; any other status is the error `errors` makes of it; other
    /// failures (timeouts, connections, bodies) are Conflux's own errors.
    pub fn failed(&self, err: &crate::upstream::UpstreamError, scope: &dyn Scope) -> Failed {
        let crate::upstream::UpstreamFailure::Status(status, answer) = &err.failure else {
            return Failed::Error(err.to_field_error());
        };
        if self.nulls(*status) {
            return Failed::Null(*status);
        }
        let response = Response {
            status: *status,
            headers: answer.as_ref().map(|a| &a.headers),
            body: answer.as_ref().and_then(|a| a.body.as_ref()),
        };
        Failed::Error(self.shape(err.to_field_error(), &response, scope))
    }
}

/// Extension names Conflux sets itself: `code` from `errors.code`,
/// `service` and `status` always its own.
const RESERVED: [&str; 3] = ["code", "service", "status"];

fn to_serde(value: &Looked<'_>) -> Value {
    match value {
        Looked::Input(value) => value.clone().into_owned(),
        Looked::Upstream(value) => {
            serde_json::from_str(&sonic_rs::to_string(*value).unwrap_or_default())
                .unwrap_or(Value::Null)
        }
    }
}

/// What the response templates read of an upstream answer.
pub struct Response<'a> {
    pub status: u16,
    pub headers: Option<&'a HeaderMap>,
    /// The body, when it was JSON.
    pub body: Option<&'a Json>,
}

/// The request's scope, with `{response.…}` added.
struct ResponseScope<'a> {
    inner: &'a dyn Scope,
    response: &'a Response<'a>,
}

impl Scope for ResponseScope<'_> {
    fn lookup(&self, placeholder: &Placeholder) -> Option<Looked<'_>> {
        if placeholder.root != Root::Response {
            return self.inner.lookup(placeholder);
        }
        let (first, rest) = placeholder.path.split_first()?;
        match first.as_str() {
            "status" if rest.is_empty() => {
                Some(Looked::Input(Cow::Owned(Value::from(self.response.status))))
            }
            "body" => json::at(self.response.body?, rest).map(Looked::Upstream),
            "headers" if !rest.is_empty() => {
                let value = self.response.headers?.get(rest.join(".").as_str())?;
                let text = value.to_str().ok()?.to_owned();
                Some(Looked::Input(Cow::Owned(Value::String(text))))
            }
            _ => None,
        }
    }
}

/// Checks a `{response.…}` placeholder's path; the message is for `check`.
pub fn check_response_placeholder(placeholder: &Placeholder) -> Result<(), String> {
    match placeholder.path.split_first() {
        Some((first, rest)) if first == "status" && rest.is_empty() => Ok(()),
        Some((first, _)) if first == "body" => Ok(()),
        Some((first, rest)) if first == "headers" && !rest.is_empty() => Ok(()),
        _ => Err(format!(
            "`{placeholder}`: expected `{{response.status}}`, `{{response.body.…}}` or `{{response.headers.NAME}}`"
        )),
    }
}
