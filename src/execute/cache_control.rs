//! The `Cache-Control` of a query's answer (docs/CACHING.md): the smallest
//! lifetime among the calls it needed,
//! `private` when any of them was the user's own, `public` otherwise; and
//! `no-store` when any call may not be reused, when no call was made, and
//! for answers no cache may keep (errors, mutations, batches, anything
//! but a 200), which `execute::run` and `http` decide.

use std::time::Duration;

use http::HeaderValue;

use crate::fetch::Lifetime;

pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The calls of one operation, as far as the client's cache is concerned.
#[derive(Debug, Default)]
pub struct CacheControl {
    calls: usize,
    no_store: bool,
    private: bool,
    max_age: Option<Duration>,
}

impl CacheControl {
    /// Counts one call's answer.
    pub fn add(&mut self, lifetime: Lifetime) {
        self.calls += 1;
        self.private |= lifetime.private;
        match lifetime.max_age {
            Some(age) => self.max_age = Some(self.max_age.map_or(age, |m| m.min(age))),
            None => self.no_store = true,
        }
    }

    /// The header for an answer made of these calls alone.
    pub fn header(&self) -> HeaderValue {
        match self.max_age {
            Some(age) if !self.no_store && self.calls > 0 => {
                let scope = if self.private { "private" } else { "public" };
                // Whole seconds, rounded down.
                HeaderValue::from_str(&format!("{scope}, max-age={}", age.as_secs()))
                    .unwrap_or(NO_STORE)
            }
            _ => NO_STORE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(secs: Option<u64>, private: bool) -> Lifetime {
        Lifetime {
            max_age: secs.map(Duration::from_secs),
            private,
        }
    }

    #[test]
    fn the_smallest_lifetime_wins_and_one_private_call_makes_it_private() {
        let mut cc = CacheControl::default();
        assert_eq!(cc.header(), "no-store", "no call at all");
        cc.add(lifetime(Some(30), false));
        assert_eq!(cc.header(), "public, max-age=30");
        cc.add(lifetime(Some(10), true));
        assert_eq!(cc.header(), "private, max-age=10");
        cc.add(lifetime(None, false));
        assert_eq!(cc.header(), "no-store");
    }
}
