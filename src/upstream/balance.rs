//! Instance selection: which of a service's eligible instances gets the
//! next call. Which instances are eligible (healthy, not ejected, not yet
//! tried by this call) is the caller's business; this module only chooses.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::LoadBalancing;

#[derive(Debug)]
pub enum Balancer {
    /// Each call takes the next eligible instance after the previous pick.
    RoundRobin { next: AtomicUsize },
    /// Power of two choices: two eligible instances drawn at random, the
    /// one with fewer calls in flight wins. Nearly as good as scanning for
    /// the least loaded, without herding every caller onto the same one.
    LeastRequests,
}

impl Balancer {
    pub fn new(policy: LoadBalancing) -> Self {
        match policy {
            LoadBalancing::RoundRobin => Balancer::RoundRobin {
                next: AtomicUsize::new(0),
            },
            LoadBalancing::LeastRequests => Balancer::LeastRequests,
        }
    }

    /// Picks one of the instances `0..count` for which `eligible` holds;
    /// `in_flight` tells an instance's current load. `None` when none is
    /// eligible.
    pub fn pick(
        &self,
        count: usize,
        eligible: impl Fn(usize) -> bool,
        in_flight: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        match self {
            Balancer::RoundRobin { next } => {
                if count == 0 {
                    return None;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..count)
                    .map(|offset| start.wrapping_add(offset) % count)
                    .find(|&index| eligible(index))
            }
            Balancer::LeastRequests => {
                let candidates: Vec<usize> = (0..count).filter(|&i| eligible(i)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    len => {
                        let first = fastrand::usize(..len);
                        // A second, distinct draw.
                        let second = (first + 1 + fastrand::usize(..len - 1)) % len;
                        let (a, b) = (candidates[first], candidates[second]);
                        Some(if in_flight(b) < in_flight(a) { b } else { a })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_turns_and_skips_the_ineligible() {
        let rr = Balancer::new(LoadBalancing::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| rr.pick(3, |_| true, |_| 0)).collect();
        assert_eq!(
            picks,
            [Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]
        );
        let picks: Vec<_> = (0..4).map(|_| rr.pick(3, |i| i != 1, |_| 0)).collect();
        assert_eq!(picks, [Some(0), Some(2), Some(2), Some(0)]);
        assert_eq!(rr.pick(3, |_| false, |_| 0), None);
        assert_eq!(rr.pick(0, |_| true, |_| 0), None);
    }

    #[test]
    fn least_requests_never_picks_the_busier_of_two() {
        let lr = Balancer::new(LoadBalancing::LeastRequests);
        for _ in 0..100 {
            assert_eq!(
                lr.pick(2, |_| true, |i| if i == 0 { 5 } else { 0 }),
                Some(1)
            );
        }
    }

    #[test]
    fn least_requests_avoids_the_busiest_of_many() {
        let lr = Balancer::new(LoadBalancing::LeastRequests);
        // With two choices the busiest of four can only win against
        // itself, which the distinct draws rule out.
        for _ in 0..200 {
            let pick = lr.pick(4, |_| true, |i| if i == 2 { 9 } else { 1 });
            assert_ne!(pick, Some(2));
        }
        assert_eq!(lr.pick(4, |i| i == 3, |_| 0), Some(3));
        assert_eq!(lr.pick(4, |_| false, |_| 0), None);
    }
}
