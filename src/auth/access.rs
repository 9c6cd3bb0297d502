//! `@authenticated` and `@requiresScopes` (docs/AUTH.md) as a rule per field,
//! computed once from the SDL and checked before the field resolves.

use serde_json::Value;

use crate::error::{ErrorCode, FieldError};

/// What a caller needs to see one field. Every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessRule {
    pub authenticated: bool,
    /// Each entry is one `@requiresScopes`: OR of ANDs.
    pub scopes: Vec<Vec<Vec<String>>>,
}

impl AccessRule {
    pub fn is_open(&self) -> bool {
        !self.authenticated && self.scopes.is_empty()
    }

    /// `UNAUTHENTICATED` without a token, `FORBIDDEN` when scopes are missing.
    pub fn check(&self, claims: Option<&Value>) -> Result<(), FieldError> {
        let Some(claims) = claims else {
            return Err(FieldError::new(
                ErrorCode::Unauthenticated,
                "this field requires an authenticated caller",
            ));
        };
        let granted = scopes_of(claims);
        for any_of in &self.scopes {
            let satisfied = any_of.iter().any(|all_of| {
                all_of
                    .iter()
                    .all(|scope| granted.iter().any(|g| g == scope))
            });
            if !satisfied {
                return Err(FieldError::new(
                    ErrorCode::Forbidden,
                    "the token lacks the scopes this field requires",
                ));
            }
        }
        Ok(())
    }
}

/// Scopes from `scope` (space-separated) or `scp` (an array, or a string).
pub fn scopes_of(claims: &Value) -> Vec<&str> {
    let mut scopes = Vec::new();
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(text)) => scopes.extend(text.split_whitespace()),
            Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(scopes: &[&[&str]]) -> AccessRule {
        AccessRule {
            authenticated: false,
            scopes: vec![scopes
                .iter()
                .map(|all| all.iter().map(|s| s.to_string()).collect())
                .collect()],
        }
    }

    #[test]
    fn requires_scopes_is_an_or_of_ands() {
        let r = rule(&[&["orders:read", "users:read"], &["admin"]]);
        assert!(r.check(Some(&json!({"scope": "admin"}))).is_ok());
        assert!(r
            .check(Some(&json!({"scp": ["users:read", "orders:read"]})))
            .is_ok());
        let err = r
            .check(Some(&json!({"scope": "orders:read"})))
            .expect_err("missing one");
        assert_eq!(err.code, ErrorCode::Forbidden);
        let err = r.check(None).expect_err("anonymous");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
    }
}
