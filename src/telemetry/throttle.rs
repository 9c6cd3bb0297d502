//! A warning said at most once per interval: an unreachable Redis must be
//! reported, but not once per request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: Mutex::new(None),
        }
    }

    /// True at most once per interval: the caller logs then.
    pub fn ready(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_it_once_per_interval() {
        let throttle = Throttle::new(Duration::from_secs(60));
        assert!(throttle.ready());
        assert!(!throttle.ready());
    }
}
