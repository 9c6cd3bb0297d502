//! Passive health: a circuit breaker per instance. `failures` consecutive
//! failed calls open it for `open_ms`; then exactly one trial call is let
//! through, and its outcome closes the breaker or opens it again.
//!
//! The breaker only decides; the instance logs and counts the transitions
//! it reports, so the state machine stays a pure function of calls and time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CircuitBreakerConfig;

/// Where a breaker stands, as the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Ejected: no call until the open period ends (then the next call is
    /// the trial).
    Open,
    /// One trial call is in flight; nothing else gets through.
    HalfOpen,
}

/// How a call was let through, so its outcome is recorded the right way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Normal,
    /// The one call after an open period that decides about the instance.
    Trial,
}

/// A change worth a log line and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed → open: too many consecutive failures.
    Ejected,
    /// The trial failed: open again for another period.
    TrialFailed,
    /// The trial succeeded: closed.
    Recovered,
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failures: u32,
    open: Duration,
    // A plain mutex: every critical section is a few comparisons, never
    // held across an await.
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(config: &CircuitBreakerConfig) -> Self {
        CircuitBreaker {
            failures: config.failures.max(1),
            open: config.open,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call could be let through now, without taking the trial.
    pub fn accepts_calls(&self, now: Instant) -> bool {
        match *self.state() {
            State::Closed { .. } => true,
            State::Open { until } => now >= until,
            State::HalfOpen => false,
        }
    }

    /// Ejected: open and within its open period. A breaker whose period
    /// has ended, or whose trial is in flight, is not ejected: it is about
    /// to decide, and readiness must not wait for traffic to get there.
    pub fn is_ejected(&self, now: Instant) -> bool {
        matches!(*self.state(), State::Open { until } if now < until)
    }

    pub fn circuit_state(&self) -> CircuitState {
        match *self.state() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    /// Lets a call through, or not. The first call after the open period
    /// becomes the trial and closes the door behind it.
    pub fn admit(&self, now: Instant) -> Option<Admission> {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Some(Admission::Normal),
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                Some(Admission::Trial)
            }
            State::Open { .. } | State::HalfOpen => None,
        }
    }

    /// Records the outcome of a call let through by `admit`.
    pub fn record(&self, admission: Admission, failed: bool, now: Instant) -> Option<Transition> {
        let mut state = self.state();
        match (admission, &mut *state) {
            (Admission::Trial, State::HalfOpen) if failed => {
                *state = State::Open {
                    until: now + self.open,
                };
                Some(Transition::TrialFailed)
            }
            (Admission::Trial, State::HalfOpen) => {
                *state = State::Closed {
                    consecutive_failures: 0,
                };
                Some(Transition::Recovered)
            }
            (
                Admission::Normal,
                State::Closed {
                    consecutive_failures,
                },
            ) => {
                if !failed {
                    *consecutive_failures = 0;
                    return None;
                }
                *consecutive_failures += 1;
                if *consecutive_failures < self.failures {
                    return None;
                }
                *state = State::Open {
                    until: now + self.open,
                };
                Some(Transition::Ejected)
            }
            // A call that started before the breaker opened: its outcome
            // is old news, the trial decides.
            _ => None,
        }
    }

    /// The trial call was cancelled before it had an outcome (its caller
    /// gave up): the next call may try instead, rather than the instance
    /// staying half-open forever.
    pub fn abandon_trial(&self, now: Instant) {
        let mut state = self.state();
        if matches!(*state, State::HalfOpen) {
            *state = State::Open { until: now };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, open_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(&CircuitBreakerConfig {
            failures,
            open: Duration::from_millis(open_ms),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(3, 1000);
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit(now), Some(Admission::Normal));
            assert_eq!(b.record(Admission::Normal, true, now), None);
        }
        // A success in between starts the count again.
        assert_eq!(b.record(Admission::Normal, false, now), None);
        for _ in 0..2 {
            assert_eq!(b.record(Admission::Normal, true, now), None);
        }
        assert_eq!(
            b.record(Admission::Normal, true, now),
            Some(Transition::Ejected)
        );
        assert!(b.is_ejected(now));
        assert_eq!(b.admit(now), None);
        assert_eq!(b.circuit_state(), CircuitState::Open);
    }

    #[test]
    fn one_trial_after_the_open_period_decides() {
        let b = breaker(1, 1000);
        let start = Instant::now();
        b.record(Admission::Normal, true, start);
        let later = start + Duration::from_millis(999);
        assert!(!b.accepts_calls(later));
        let after = start + Duration::from_millis(1000);
        assert!(b.accepts_calls(after));
        assert!(!b.is_ejected(after));
        assert_eq!(b.admit(after), Some(Admission::Trial));
        // Only one trial at a time.
        assert_eq!(b.admit(after), None);
        assert_eq!(b.circuit_state(), CircuitState::HalfOpen);
        assert!(!b.is_ejected(after), "half-open is not ejected");
        assert_eq!(
            b.record(Admission::Trial, false, after),
            Some(Transition::Recovered)
        );
        assert_eq!(b.admit(after), Some(Admission::Normal));
    }

    #[test]
    fn a_failed_trial_opens_again_for_a_full_period() {
        let b = breaker(1, 1000);
        let start = Instant::now();
        b.record(Admission::Normal, true, start);
        let trial_at = start + Duration::from_millis(1500);
        assert_eq!(b.admit(trial_at), Some(Admission::Trial));
        assert_eq!(
            b.record(Admission::Trial, true, trial_at),
            Some(Transition::TrialFailed)
        );
        assert!(b.is_ejected(trial_at + Duration::from_millis(999)));
        assert_eq!(
            b.admit(trial_at + Duration::from_millis(1000)),
            Some(Admission::Trial)
        );
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_call_try() {
        let b = breaker(1, 1000);
        let start = Instant::now();
        b.record(Admission::Normal, true, start);
        let after = start + Duration::from_secs(2);
        assert_eq!(b.admit(after), Some(Admission::Trial));
        b.abandon_trial(after);
        assert_eq!(b.admit(after), Some(Admission::Trial));
    }

    #[test]
    fn late_outcomes_of_normal_calls_do_not_touch_an_open_breaker() {
        let b = breaker(1, 1000);
        let start = Instant::now();
        b.record(Admission::Normal, true, start);
        assert_eq!(b.record(Admission::Normal, false, start), None);
        assert!(b.is_ejected(start));
        let after = start + Duration::from_secs(2);
        assert_eq!(b.admit(after), Some(Admission::Trial));
        assert_eq!(b.record(Admission::Normal, false, after), None);
        assert_eq!(b.circuit_state(), CircuitState::HalfOpen);
    }
}
